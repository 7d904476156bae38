"""``LabelClient``, the label service's HTTP API as a Python class (``unilabel-remote``, remote/cli.py, is its
command line), and the prediction inputs a dataset gives.

Every request needs an API key (``api_key`` or env UNILABEL_API_KEY; ``unilabel-admin keys create NAME`` makes
one). Needs only httpx and numpy/pandas (to read a dataset); never torch.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from remote.errors import ClientError, error_of
from remote.progress import FINAL

if TYPE_CHECKING:
    from models.dataset import Dataset

DEFAULT_URL = os.environ.get("UNILABEL_URL", "http://127.0.0.1:8000")
KEY_ENV = "UNILABEL_API_KEY"


def clean_key(key: str | None, source: str) -> str | None:
    """``key`` without the whitespace around it, which a key read from a file or pasted often keeps (a
    trailing newline) and which the service's keys never hold (``ulk_``, then ASCII letters, digits, _ and -:
    service/keys.py). A ValueError naming ``source`` (``--key``, ``env UNILABEL_API_KEY``) for whitespace or
    another character no key has inside it: sent, such a key would fail in httpx, naming a header, not it."""
    if key is None:
        return None
    key = key.strip()
    if odd := next((ch for ch in key if not " " < ch < "\x7f"), None):
        what = "whitespace" if odd.isspace() else repr(odd)
        raise ValueError(
            f"{source}: the API key holds {what} inside it, which no key does (keys are ASCII letters, "
            "digits, _ and -): check its value"
        )
    return key


class LabelClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 60.0, api_key: str | None = None) -> None:
        """``api_key``: sent as ``Authorization: Bearer``; default env UNILABEL_API_KEY. Whitespace around the
        key is dropped (a key read from a file keeps its newline; no key holds whitespace); a key with
        whitespace or another character no key has inside it is a ValueError (``clean_key``)."""
        if api_key is not None:
            key = clean_key(api_key, "api_key")
        else:
            key = clean_key(os.environ.get(KEY_ENV), f"env {KEY_ENV}")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LabelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise error_of(response)
        return response

    # datasets ------------------------------------------------------------------------------------
    def upload(self, *paths: str | Path) -> dict[str, Any]:
        """A dataset folder, one archive, or the two files. Returns the dataset summary."""
        return self.upload_with_status(*paths)[0]

    def upload_with_status(self, *paths: str | Path) -> tuple[dict[str, Any], bool]:
        """As ``upload``, and whether the dataset is new (201) rather than already uploaded (200)."""
        items = [Path(p) for p in paths]
        roles = {"utterances.csv": "utterances", "features.npz": "features"}
        if len(items) == 1 and items[0].is_dir():
            missing = [name for name in roles if not (items[0] / name).is_file()]
            if missing:
                raise ValueError(f"{items[0]}: not a dataset folder (no {' or '.join(missing)} in it)")
            items = [items[0] / name for name in roles]
        if len(items) == 1 and items[0].name in roles:  # half a dataset: the service would refuse it
            other = next(name for name in roles if name != items[0].name)
            raise ValueError(f"{items[0]}: give {other} beside it, or the dataset folder {items[0].parent}")
        for p in items:  # named here, before anything is sent
            if not p.is_file():
                raise ValueError(
                    f"{p}: no such file (upload a dataset folder, an archive, or utterances.csv features.npz)"
                )
        with ExitStack() as opened:
            files = [
                (roles.get(p.name, "archive"), (p.name, opened.enter_context(open(p, "rb")))) for p in items
            ]
            files.sort(key=lambda f: ("utterances", "features", "archive").index(f[0]))
            response = self._call("POST", "/v1/datasets", files=files, timeout=None)
            return response.json(), response.status_code == 201

    def datasets(self, limit: int | None = None, offset: int | None = None) -> dict[str, Any]:
        """A page of the key's datasets, newest first: {items, total} (``limit`` None: the API's default)."""
        return self._call("GET", "/v1/datasets", params=_page(limit, offset)).json()

    def delete_dataset(self, dataset_id: str, owner: str | None = None) -> None:
        """Delete an uploaded dataset (the service refuses while a queued or running job uses it). ``owner``:
        with an admin key, the id of the key whose dataset it is (two keys' uploads of the same files share
        an id)."""
        self._call("DELETE", f"/v1/datasets/{dataset_id}", params={"owner": owner} if owner else None)

    def delete_model(self, model_id: str) -> None:
        """Delete a trained model and its run's labels and report (its job stays, with model_deleted_at)."""
        self._call("DELETE", f"/v1/models/{model_id}")

    def usage(self, key_id: str | None = None) -> dict[str, Any]:
        """This key's quotas and how much of each it uses now (``key_id``: another key's, for an admin)."""
        return self._call("GET", "/v1/usage", params={"key_id": key_id} if key_id else None).json()

    # jobs ----------------------------------------------------------------------------------------
    def submit(
        self,
        dataset_id: str,
        strategy: str = "mug",
        seed: int = 1111,
        hyperparameters: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        preset: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "dataset_id": dataset_id,
            "strategy": strategy,
            "seed": seed,
            "preset": preset,
            "hyperparameters": hyperparameters or {},
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/jobs", json=body, headers=headers).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}").json()

    def jobs(
        self, state: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> dict[str, Any]:
        """A page of the key's jobs (``state``: those in it), newest first: {items, total}."""
        return self._call("GET", "/v1/jobs", params=_page(limit, offset, state=state)).json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel").json()

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        poll: float = 0.5,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        on_away: Callable[[Exception], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is succeeded, failed or cancelled; returns the final record. ``on_update``: each
        poll's record; ``on_away``: each poll that did not reach the service.

        Rides out a service that is briefly away (the API restarting, Redis restarting: 503 or no connection)
        until ``timeout``; any other error answer is raised at once."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                job = self.job(job_id)
            except (httpx.TransportError, ClientError) as exc:
                if isinstance(exc, ClientError) and exc.status != 503:
                    raise
                if on_away:
                    on_away(exc)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"job {job_id}: service unreachable ({exc}) after {timeout} s"
                    ) from exc
                time.sleep(max(poll, 1.0))
                continue
            if on_update:
                on_update(job)
            if job["state"] in FINAL:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(poll)

    def labels(self, job_id: str, fmt: str = "csv") -> str | dict[str, Any]:
        response = self._call("GET", f"/v1/jobs/{job_id}/labels", params={"format": fmt})
        return response.text if fmt == "csv" else response.json()

    def report(self, job_id: str, fmt: str = "html") -> str | dict[str, Any]:
        """A finished job's label report: the self-contained page (html) or the data it plots (json). The
        first request of a job's report draws it (a second or two)."""
        response = self._call("GET", f"/v1/jobs/{job_id}/report", params={"format": fmt})
        return response.text if fmt == "html" else response.json()

    # models --------------------------------------------------------------------------------------
    def models(self, limit: int | None = None, offset: int | None = None) -> dict[str, Any]:
        """A page of the key's models, newest first: {items, total}."""
        return self._call("GET", "/v1/models", params=_page(limit, offset)).json()

    def model(self, model_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/models/{model_id}").json()

    def predict(self, model_id: str, utterances: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call("POST", f"/v1/models/{model_id}/predict", json={"utterances": utterances}).json()

    def download(self, model_id: str, out: str | Path) -> tuple[list[str], list[str]]:
        """A model's run directory (model.safetensors, model.json, config.json, metrics.json, the labels and
        predictions, ...) written to ``out``, which ``unilabel predict`` and ``unilabel report`` read as any
        run. Returns the files written and those the server does not have (a run of an older version).

        The files go into a hidden folder beside ``out``, renamed to ``out`` once all have come: an
        interrupted download leaves no half run directory that would fail later, in ``unilabel predict``, nor
        the folders above ``out`` that it made for it."""
        from models.report import through_link

        out = through_link(Path(out))  # the run goes where a link points, the link stays
        if out.exists() and not out.is_dir():
            raise ValueError(f"-o: {out} is a file; choose a directory")
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"-o: {out} already holds files; choose another directory")
        links = self.model(model_id)["links"]
        staging = out.parent / f".{out.name}.partial-{os.getpid()}"
        written, missing = [], []
        made = _missing_folders(out.parent)
        try:
            staging.mkdir(parents=True, exist_ok=True)
            for name, link in links.items():
                if "." not in name:  # self, predict, job: not files
                    continue
                try:
                    body = self._call("GET", link).content
                except ClientError as exc:
                    if exc.status != 404:
                        raise
                    missing.append(name)
                    continue
                (staging / name).write_bytes(body)
                written.append(name)
            staging.replace(out)
        except OSError as err:  # named as the user gave it, not as the hidden folder beside it
            why = "a part of that path is a file" if isinstance(err, NotADirectoryError) else err.strerror
            raise OSError(f"-o {out}: cannot be written: {why}") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if not out.exists():  # cut short: leave the filesystem as it was found
                _remove_empty(made)
        return written, missing


def _page(limit: int | None, offset: int | None, **query: str | None) -> dict[str, Any] | None:
    """A list's query: only what was asked for, so that an unpaged call gets the API's own default page."""
    params = {"limit": limit, "offset": offset, **query}
    return {name: value for name, value in params.items() if value is not None} or None


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those above it that do not exist yet, deepest first: the ones a mkdir(parents=True)
    of it makes."""
    return list(itertools.takewhile(lambda p: not p.exists(), [folder, *folder.parents]))


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: one that something else wrote into since it
    was made is kept, and so are those above it."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue  # never made: the cut came before the mkdir
        except OSError:
            return


def utterances_from_dataset(
    path: str | Path | Dataset,
    split: str | None = "test",
    n: int | None = 5,
    input_spec: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The first ``n`` utterances of ``split`` (None: every split; ``n`` None: all) of a dataset (its path,
    or the loaded Dataset) as prediction inputs. With a model card's ``input_spec``: only the modalities the
    model takes, as features or (``transcript: true``) through the transcript; without it every feature
    array, and the transcript if any."""
    from models.dataset_loader import load_dataset  # numpy/pandas only

    ds = path if not isinstance(path, str | Path) else load_dataset(path, for_training=False)
    rows = [i for i in range(len(ds.ids)) if split is None or ds.split[i] == split][:n]
    wanted = None if input_spec is None else {m for m, s in input_spec.items() if not s.get("transcript")}
    needs_transcript = input_spec is None or any(s.get("transcript") for s in input_spec.values())
    out = []
    for i in rows:
        features = {}
        for m, f in ds.features.items():
            if wanted is not None and m not in wanted:
                continue
            value = f.values[i]
            if f.lengths is not None:
                value = value[: int(f.lengths[i])]
            features[m] = value.tolist()
        utt: dict[str, Any] = {"id": str(ds.ids[i]), "features": features}
        if ds.transcripts is not None and needs_transcript:
            utt["transcript"] = ds.transcripts[i]
        out.append(utt)
    return out


if __name__ == "__main__":  # `python -m remote.client`, the command line's earlier name, runs it still
    from remote.cli import main

    raise SystemExit(main())
