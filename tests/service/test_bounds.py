"""Bounded resources (issue 12) against a real API process: what one cheap request may cost it, read from
/proc (peak RSS: VmHWM, reset through clear_refs; bytes written: /proc/<pid>/io), and how long /healthz waits
meanwhile. Each hostile input is small to send and would have cost the API gigabytes before."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from remote.localstack import LocalStack, running_stack
from tests.service.conftest import TINY, _need_redis

pytestmark = pytest.mark.slow
MB = 1 << 20
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    _need_redis()
    root = tmp_path_factory.mktemp("bounds")
    (root / "api-tmp").mkdir()
    with running_stack(root / "stack", worker=False, extra_env={"TMPDIR": str(root / "api-tmp")}) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack: LocalStack):
    with httpx.Client(base_url=stack.url, headers=stack.headers(), timeout=120) as c:
        yield c


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak RSS starts again from the current RSS


def written(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise AssertionError("no write_bytes")


class Cost:
    """Peak RSS growth, bytes written and the slowest /healthz of the API while the block runs."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack, self.pid = stack, stack.procs["api"].pid
        self.healthz: list[float] = []

    def __enter__(self) -> Cost:
        reset_peak(self.pid)
        self.rss0, self.written0 = peak_rss(self.pid), written(self.pid)
        self._stop = threading.Event()
        # the client is made here, not in the thread: on a slow host making it took longer than a short
        # block, and the probe never sent a request (an empty list of /healthz times)
        self._client = httpx.Client(base_url=self.stack.url, timeout=30)
        self._probe = threading.Thread(target=self._poll, daemon=True)
        self._probe.start()
        return self

    def _poll(self) -> None:
        while True:  # at least one probe, however short the block
            start = time.perf_counter()
            self._client.get("/healthz")
            self.healthz.append(time.perf_counter() - start)
            if self._stop.wait(0.02):
                return

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.1)
        self._stop.set()
        self._probe.join(30)
        self._client.close()
        self.rss = peak_rss(self.pid) - self.rss0
        self.written = written(self.pid) - self.written0

    def report(self, what: str, response: httpx.Response) -> None:
        """One line of figures (pytest -s shows them; docs/reliability.md quotes them)."""
        print(
            f"\n{what}: {response.status_code}, answer {len(response.content)} B, API peak RSS "
            f"+{self.rss / MB:.1f} MB, written {self.written / MB:.1f} MB, slowest /healthz "
            f"{max(self.healthz, default=0) * 1000:.0f} ms"
        )


def csv_of(synth_dir: Path) -> bytes:
    return (synth_dir / "utterances.csv").read_bytes()


def zeros_member(zf: zipfile.ZipFile, name: str, nbytes: int, header: bytes = b"") -> None:
    with zf.open(name, "w", force_zip64=True) as f:
        f.write(header)
        chunk = bytes(16 * MB)
        for start in range(0, nbytes, len(chunk)):
            f.write(chunk[: min(len(chunk), nbytes - start)])


def test_zip_bomb_is_refused_unwritten(stack: LocalStack, api: httpx.Client, synth_dir: Path) -> None:
    """A 0.3 MB zip whose features.npz inflates to 300 MB (1,000:1): today it was written out in full to
    $TMPDIR before being refused; now it is refused on its declared sizes, nothing extracted."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("utterances.csv", csv_of(synth_dir))
        zeros_member(zf, "features.npz", 300 * MB)
    bomb = buf.getvalue()
    assert len(bomb) < MB
    with Cost(stack) as cost:
        r = api.post("/v1/datasets", files={"archive": ("bomb.zip", bomb)})
    cost.report(f"zip bomb ({len(bomb) / MB:.2f} MB, 300 MB inside)", r)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_dataset", r.text
    assert "times the archive's size" in r.text
    assert cost.written < 16 * MB, cost.written  # the upload itself, not its content
    assert list(Path(stack.extra_env["TMPDIR"]).iterdir()) == []  # never $TMPDIR


def test_tar_gz_bomb_stops_at_the_ratio(stack: LocalStack, api: httpx.Client, synth_dir: Path) -> None:
    """A tar.gz declares nothing up front: its stream is cut off once it inflates past 100 x its size."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("utterances.csv")
        data = csv_of(synth_dir)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("features.npz")
        info.size = 300 * MB
        tf.addfile(info, _Zeros(info.size))
    bomb = raw.getvalue()
    with Cost(stack) as cost:
        r = api.post("/v1/datasets", files={"archive": ("bomb.tar.gz", bomb)})
    cost.report(f"tar.gz bomb ({len(bomb) / MB:.2f} MB, 300 MB inside)", r)
    assert r.status_code == 422 and "exceeds the limit" in r.text, r.text
    assert cost.written < 16 * MB + 100 * len(bomb), cost.written
    assert list(Path(stack.extra_env["TMPDIR"]).iterdir()) == []


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readinto(self, b) -> int:  # type: ignore[override]
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k

    def readable(self) -> bool:
        return True


def test_npz_bomb_is_refused_on_its_headers(stack: LocalStack, api: httpx.Client, synth_dir: Path) -> None:
    """features.npz of 0.4 MB whose text array declares 400 MB of zeros: today accepted (201) at the cost of
    the array in the API's memory; now refused from its .npy header, before a byte of it is read."""
    ids = np.array([line.split(",")[0] for line in csv_of(synth_dir).decode().splitlines()[1:]])
    n = len(ids)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        small = {"id": ids, "audio": np.zeros((n, 16), np.float32), "vision": np.zeros((n, 24), np.float32)}
        for name, arr in small.items():
            with zf.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
        width = 400 * MB // 4 // n
        header = io.BytesIO()
        declared = {"descr": "<f4", "fortran_order": False, "shape": (n, width)}
        np.lib.format.write_array_header_1_0(header, declared)
        zeros_member(zf, "text.npy", n * width * 4, header.getvalue())
    npz = buf.getvalue()
    assert len(npz) < MB
    with Cost(stack) as cost:
        r = api.post(
            "/v1/datasets",
            files={"utterances": ("utterances.csv", csv_of(synth_dir)), "features": ("features.npz", npz)},
        )
    cost.report(f"npz bomb ({len(npz) / MB:.2f} MB, 400 MB declared)", r)
    assert r.status_code == 422, r.text
    assert any(d["field"] == "features.npz.text" for d in r.json()["error"]["details"]), r.text
    assert cost.rss < 64 * MB, cost.rss / MB


def test_predict_bodies_cost_little(stack: LocalStack, api: httpx.Client, synth_dir: Path) -> None:
    """Today a 10 MB body of strings made a 0.5 GB error answer and gigabytes of RSS, and held /healthz for
    seconds. Now: over MAX_PREDICT_BODY_BYTES (8 MiB) it is refused unread, more numbers than
    MAX_PREDICT_VALUES or more objects than MAX_PREDICT_BATCH utterances hold are refused unparsed (200,000
    objects held /healthz for 1.1 s on a CI machine), and what is parsed stops at its first error, off the
    loop."""
    model = _trained_model(stack, api, synth_dir)
    cases = [
        (json.dumps({"utterances": [{"features": {"text": ["x"] * 2_500_000}}]}), 413),  # 10 MB
        (json.dumps({"utterances": [{"features": {"text": ["x"] * 1_500_000}}]}), 413),  # 6 MB, too many
        (json.dumps({"utterances": [{"features": {"text": [1.5] * 900_000}}]}), 422),  # 4.5 MB, wrong dim
        (json.dumps({"utterances": [{"features": {"text": ["x"] * 900_000}}]}), 422),  # 3.6 MB, strings
        (json.dumps({"utterances": [{"features": {"bogus": {}}}] * 200_000}), 422),  # 5.8 MB of objects
    ]
    for body, status in cases:
        with Cost(stack) as cost:
            r = api.post(f"/v1/models/{model}/predict", content=body, headers=JSON)
        cost.report(f"predict body of {len(body) / MB:.1f} MB ({body[:48]}...)", r)
        assert r.status_code == status, (len(body), r.status_code, r.text[:300])
        assert len(r.content) < 2000  # one problem named, not one per element
        assert cost.rss < 200 * MB, (len(body), cost.rss / MB)
        assert max(cost.healthz) < 1.0, (len(body), max(cost.healthz))


def test_unknown_model_ids_leave_nothing_behind(stack: LocalStack, api: httpx.Client) -> None:
    """Each unknown model id used to leave an asyncio.Lock in the model pool for ever."""
    body = {"utterances": [{"features": {"audio": [0.0] * 16}}]}
    for _ in range(200):
        assert api.post(f"/v1/models/{os.urandom(16).hex()}/predict", json=body).status_code == 404
    metrics = httpx.get(f"{stack.url}/metrics", headers=stack.headers(admin=True)).text
    assert 'unilabel_model_pool{state="loading"} 0.0' in metrics, metrics[-800:]


def test_duplicate_csv_column_and_string_seed_are_refused(api: httpx.Client, synth_dir: Path) -> None:
    lines = csv_of(synth_dir).decode().splitlines()
    doubled = "\n".join([lines[0] + ",label"] + [line + ",0.5" for line in lines[1:]]) + "\n"
    features = (synth_dir / "features.npz").read_bytes()
    r = api.post(
        "/v1/datasets",
        files={"utterances": ("utterances.csv", doubled.encode()), "features": ("features.npz", features)},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "utterances.csv.label", r.text
    assert "appears 2 times" in r.json()["error"]["message"]
    ds = api.post(
        "/v1/datasets",
        files={"utterances": ("utterances.csv", csv_of(synth_dir)), "features": ("features.npz", features)},
    ).json()["id"]
    r = api.post("/v1/jobs", json={"dataset_id": ds, "seed": "5"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "body.seed", r.text


def _trained_model(stack: LocalStack, api: httpx.Client, synth_dir: Path) -> str:
    from worker.artifacts import ArtifactStore
    from worker.lifecycle import JobStore
    from worker.settings import Settings
    from worker.tasks import run_job

    files = {
        "utterances": ("utterances.csv", csv_of(synth_dir)),
        "features": ("features.npz", (synth_dir / "features.npz").read_bytes()),
    }
    ds = api.post("/v1/datasets", files=files).json()["id"]
    job = api.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": TINY}).json()["id"]
    s = Settings(redis_url=stack.redis_url, artifact_dir=stack.artifact_dir, device="cpu")
    assert run_job(job, JobStore.from_url(s.redis_url), ArtifactStore(s.artifact_dir), s) == "succeeded"
    return job


def test_archives_are_read_on_the_volume(stack: LocalStack, api: httpx.Client, synth_dir: Path) -> None:
    """A good archive is read from the artifact volume's staging, which is gone afterwards."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("utterances.csv", "features.npz"):
            zf.write(synth_dir / name, name)
    r = api.post("/v1/datasets", files={"archive": ("ds.zip", buf.getvalue())})
    assert r.status_code in (200, 201), r.text
    assert list(Path(stack.extra_env["TMPDIR"]).iterdir()) == []
    assert list((stack.artifact_dir / "tmp").iterdir()) == []
