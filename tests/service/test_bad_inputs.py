"""Every class of bad input the service is known to meet, each answered with a 4xx that names the field at
fault, in the error shape, without a traceback. The table in docs/reliability.md is generated from CASES:

    UPDATE_DOCS=1 python -m pytest tests/service/test_bad_inputs.py      # rewrites the table
    python -m pytest tests/service/test_bad_inputs.py                    # checks it is up to date

In-process app over the test Redis (one trained model, one ordinary key, an admin key)."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.service.conftest import TINY, auth, make_key, new_client, upload_dir
from worker.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = "<!-- bad-inputs:begin (tests/service/test_bad_inputs.py) -->", "<!-- bad-inputs:end -->"
MB = 1 << 20
JSON = {"content-type": "application/json"}
MULTIPART = "multipart/form-data; boundary=x"
UNENDED = b'--x\r\nContent-Disposition: form-data; name="utterances"; filename="u.csv"\r\n\r\nid,split'


@dataclass(frozen=True)
class Case:
    area: str
    kind: str  # the class of bad input
    example: str
    send: Callable[[dict], object]  # the response to it, given the context
    status: int
    field: str | None  # the error's field (None: not checked)


def _files(ctx: dict, csv: bytes | None = None, npz: bytes | None = None) -> dict:
    return {
        "utterances": ("utterances.csv", csv if csv is not None else ctx["csv"]),
        "features": ("features.npz", npz if npz is not None else ctx["npz"]),
    }


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _zip(*members: tuple[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _zip_bomb() -> bytes:  # 64 MB of zeros
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("features.npz", "w", force_zip64=True) as f:
            for _ in range(8):
                f.write(bytes(8 * MB))
    return buf.getvalue()


def _npz_bomb(ids: np.ndarray) -> bytes:
    n, width = len(ids), 64 * MB // 4 // len(ids)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in {"id": ids, "audio": np.zeros((n, 16), np.float32)}.items():
            with zf.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
        with zf.open("text.npy", "w", force_zip64=True) as f:
            declared = {"descr": "<f4", "fortran_order": False, "shape": (n, width)}
            np.lib.format.write_array_header_1_0(f, declared)
            f.write(bytes(n * width * 4))
    return buf.getvalue()


def _csv_edit(ctx: dict, edit: Callable[[list[str]], list[str]]) -> bytes:
    return ("\n".join(edit(ctx["csv"].decode().splitlines())) + "\n").encode()


def _job(ctx: dict, body: dict, headers: dict | None = None):
    return ctx["c"].post("/v1/jobs", json={"dataset_id": ctx["ds"], **body}, headers=headers or {})


def _predict(ctx: dict, utterances: object = None, raw: bytes | None = None, model: str | None = None):
    body = raw if raw is not None else json.dumps({"utterances": utterances}).encode()
    headers = {"content-type": "application/json"}
    return ctx["c"].post(f"/v1/models/{model or ctx['model']}/predict", content=body, headers=headers)


def _stingy_predict(ctx: dict, n: int) -> object:
    """n utterances in one request of the key allowed 3 predictions a minute."""
    body = {"utterances": [_utt(ctx)] * n}
    return ctx["c"].post(f"/v1/models/{ctx['stingy_model']}/predict", json=body, headers=ctx["stingy"])


def _utt(ctx: dict, **features: object) -> dict:
    base = {m: [0.5] * d for m, d in ctx["dims"].items()}
    return {"features": {**base, **features}}


def _idem_reused(ctx: dict):
    _job(ctx, {"seed": 21}, {"Idempotency-Key": "k-reused"})
    return _job(ctx, {"seed": 22}, {"Idempotency-Key": "k-reused"})


def _cancel_finished(ctx: dict):
    return ctx["c"].post(f"/v1/jobs/{ctx['model']}/cancel")


def _labels_unfinished(ctx: dict):
    return ctx["c"].get(f"/v1/jobs/{_job(ctx, {'seed': 31}).json()['id']}/labels")


def _report_unfinished(ctx: dict):
    return ctx["c"].get(f"/v1/jobs/{_job(ctx, {'seed': 32}).json()['id']}/report")


def _revoked(ctx: dict):
    from service.keys import KeyStore

    key = make_key(ctx["settings"], name="revoked-one")
    KeyStore.from_url(ctx["settings"].redis_url).revoke("revoked-one")
    return ctx["c"].get("/v1/datasets", headers=auth(key))


def _quota(ctx: dict, limits: dict, send: Callable) -> object:
    headers = auth(make_key(ctx["settings"], **limits))
    response = None
    for _ in range(3):
        response = send(headers)
        if response.status_code >= 400:
            return response
    return response


def _upload(x: dict, files: object):
    return x["c"].post("/v1/datasets", files=files)


def _archive(x: dict, name: str, data: bytes):
    return _upload(x, {"archive": (name, data)})


def _csv(x: dict, edit: Callable[[list[str]], list[str]]):
    return _upload(x, _files(x, csv=_csv_edit(x, edit)))


def _arrays(x: dict, **changed: np.ndarray):
    return _upload(x, _files(x, npz=_npz(**{**x["arrays"], **changed})))


def _nan_first(a: np.ndarray) -> np.ndarray:
    out = a.astype(np.float64).copy()
    out.flat[0] = np.nan
    return out


def _no_split(lines: list[str]) -> list[str]:
    return [",".join(cell for k, cell in enumerate(line.split(",")) if k != 1) for line in lines]


def _bad_label(lines: list[str]) -> list[str]:
    first = re.sub(r",(train|valid|test),[^,]*", r",\1,high", lines[1], count=1)
    return [lines[0], first, *lines[2:]]


def _get(path: str, **kw: object) -> Callable[[dict], object]:
    return lambda x: x["c"].get(path.format(**x), **kw)


CASES: list[Case] = [
    # uploads
    Case("upload", "not multipart", "a JSON body",
         lambda x: x["c"].post("/v1/datasets", json={}), 415, "header.content-type"),
    Case("upload", "malformed multipart", "a part that never ends",
         lambda x: x["c"].post("/v1/datasets", content=UNENDED, headers={"content-type": MULTIPART}), 400,
         "body"),
    Case("upload", "a file missing", "utterances.csv alone",
         lambda x: _upload(x, {"utterances": ("utterances.csv", x["csv"])}), 422, "features"),
    Case("upload", "unknown part", "a part named notes",
         lambda x: _upload(x, {"notes": ("notes.txt", b"hi")}), 422, "notes"),
    Case("upload", "a part twice", "utterances sent twice",
         lambda x: _upload(x, [("utterances", ("u.csv", x["csv"]))] * 2), 422, "utterances"),
    Case("upload", "too many parts", "3 parts, MAX_UPLOAD_PARTS=2",
         lambda x: _upload(x, [*_files(x).items(), ("archive", ("x.zip", b"PK"))]), 413, "body"),
    Case("upload", "larger than MAX_UPLOAD_BYTES", "6 MB against 5 MB",
         lambda x: _upload(x, _files(x, npz=bytes(6 * MB))), 413, "body"),
    Case("archive", "neither zip nor gzip", "text named .zip",
         lambda x: _archive(x, "x.zip", b"not an archive"), 422, "archive"),
    Case("archive", "corrupt zip", "a zip header and garbage",
         lambda x: _archive(x, "x.zip", b"PK\x03\x04garbage"), 422, "archive"),
    Case("archive", "path traversal", "a member ../../etc/x",
         lambda x: _archive(x, "x.zip", _zip(("../../etc/x", b"x"))), 422, "archive.../../etc/x"),
    Case("archive", "link member", "a symbolic link to /etc/passwd",
         lambda x: _archive(x, "x.zip", _zip(("utterances.csv", x["csv"]), symlink="features.npz")), 422,
         "archive.features.npz"),
    Case("archive", "zip bomb", "64 MB of zeros in 64 kB",
         lambda x: _archive(x, "x.zip", x["zipbomb"]), 422, "archive"),
    Case("archive", "tar.gz bomb", "64 MB of zeros, gzip",
         lambda x: _archive(x, "x.tar.gz", x["tarbomb"]), 422, "archive"),
    Case("archive", "no dataset inside", "a zip of one text file",
         lambda x: _archive(x, "x.zip", _zip(("readme.txt", b"hi"))), 422, "archive"),
    Case("utterances.csv", "column named twice", "label, ..., label",
         lambda x: _csv(x, lambda ls: [ls[0] + ",label"] + [line + ",0" for line in ls[1:]]), 422,
         "utterances.csv.label"),
    Case("utterances.csv", "required column missing", "no split column",
         lambda x: _csv(x, _no_split), 422, "utterances.csv.split"),
    Case("utterances.csv", "unknown split", "split = bogus",
         lambda x: _upload(x, _files(x, csv=x["csv"].replace(b",train,", b",bogus,", 1))), 422,
         "utterances.csv.split"),
    Case("utterances.csv", "label not a number", "label = high",
         lambda x: _csv(x, _bad_label), 422, "utterances.csv.label"),
    Case("utterances.csv", "duplicate ids", "the first row twice",
         lambda x: _csv(x, lambda ls: [ls[0], ls[1], ls[1], *ls[3:]]), 422, "utterances.csv.id"),
    Case("utterances.csv", "not UTF-8", "Latin-1 bytes",
         lambda x: _upload(x, _files(x, csv=x["csv"] + b"\xff\xfe,\xe9\n")), 422, "utterances.csv"),
    Case("features.npz", "pickled object array", "ids as Python objects",
         lambda x: _upload(x, _files(x, npz=_npz(id=np.array([{"x": 1}], dtype=object)))), 422,
         "features.npz.id"),
    Case("features.npz", "array bomb", "64 MB declared in 70 kB",
         lambda x: _upload(x, _files(x, npz=x["npzbomb"])), 422, "features.npz.text"),
    Case("features.npz", "not an npz", "plain text",
         lambda x: _upload(x, _files(x, npz=b"hello")), 422, "features.npz"),
    Case("features.npz", "ids differ from the CSV", "ids reversed",
         lambda x: _arrays(x, id=x["arrays"]["id"][::-1]), 422, "features.npz.id"),
    Case("features.npz", "NaN features", "audio[0, 0] = NaN",
         lambda x: _arrays(x, audio=_nan_first(x["arrays"]["audio"])), 422, "features.npz.audio"),
    Case("features.npz", "wrong rank", "audio as a 1-D array",
         lambda x: _arrays(x, audio=x["arrays"]["audio"][:, 0]), 422, "features.npz.audio"),
    # jobs
    Case("job", "not JSON", "{not json",
         lambda x: x["c"].post("/v1/jobs", content=b"{not json", headers=JSON), 422, "body"),
    Case("job", "not UTF-8", "a byte 0xff in a string",
         lambda x: x["c"].post("/v1/jobs", content=b'{"dataset_id": "\xff"}', headers=JSON), 422, "body"),
    Case("job", "unknown field", "extra: 1", lambda x: _job(x, {"extra": 1}), 422, "body.extra"),
    Case("job", "seed as a string", 'seed: "5"', lambda x: _job(x, {"seed": "5"}), 422, "body.seed"),
    Case("job", "seed out of range", "seed: -1", lambda x: _job(x, {"seed": -1}), 422, "body.seed"),
    Case("job", "unknown dataset", "a 64-hex id never uploaded",
         lambda x: x["c"].post("/v1/jobs", json={"dataset_id": "f" * 64}), 422, "body.dataset_id"),
    Case("job", "unknown strategy", "strategy: nope",
         lambda x: _job(x, {"strategy": "nope"}), 422, "body.strategy"),
    Case("job", "unknown hyperparameter", "bogus: 1",
         lambda x: _job(x, {"hyperparameters": {"bogus": 1}}), 422, "body.hyperparameters.bogus"),
    Case("job", "a run's option as a hyperparameter", "hyperparameters: {preset: mosi}",
         lambda x: _job(x, {"hyperparameters": {"preset": "mosi"}}), 422, "body.hyperparameters.preset"),
    Case("job", "hyperparameter out of range", "lr: -1",
         lambda x: _job(x, {"hyperparameters": {"lr": -1}}), 422, "body.hyperparameters.lr"),
    Case("job", "text model as a path", "text_model: /etc",
         lambda x: _job(x, {"hyperparameters": {"text_model": "/etc"}}), 422,
         "body.hyperparameters.text_model"),
    Case("job", "text the dataset cannot give", "text_source: encoder, no transcripts",
         lambda x: _job(x, {"hyperparameters": {"text_source": "encoder"}}), 422,
         "body.hyperparameters.text_source"),
    Case("job", "unknown preset", "preset: imdb", lambda x: _job(x, {"preset": "imdb"}), 422, "body.preset"),
    Case("job", "Idempotency-Key reused", "the same key, another body", _idem_reused, 422,
         "header.idempotency-key"),
    Case("job", "cancel of a finished job", "a succeeded job", _cancel_finished, 409, "job_id"),
    Case("job", "labels before the end", "a queued job", _labels_unfinished, 409, "job_id"),
    Case("job", "report before the end", "a queued job", _report_unfinished, 409, "job_id"),
    Case("job", "unknown report format", "report?format=pdf",
         _get("/v1/jobs/{model}/report", params={"format": "pdf"}), 422, "query.format"),
    # prediction
    Case("predict", "not JSON", "{not json", lambda x: _predict(x, raw=b"{not json"), 422, "body"),
    Case("predict", "not UTF-8", "a byte 0xff in a string",
         lambda x: _predict(x, raw=b'{"utterances": [{"id": "\xff"}]}'), 422, "body"),
    Case("predict", "no utterances", "utterances: []", lambda x: _predict(x, []), 422, "body.utterances"),
    Case("predict", "too many utterances", "4097 of them",
         lambda x: _predict(x, [{"features": {}}] * 4097), 422, "body.utterances"),
    Case("predict", "wrong dimension", "audio of 2 numbers",
         lambda x: _predict(x, [_utt(x, audio=[1.0, 2.0])]), 422, "body.utterances.0.features.audio"),
    Case("predict", "unknown modality", "smell",
         lambda x: _predict(x, [_utt(x, smell=[1.0])]), 422, "body.utterances.0.features.smell"),
    Case("predict", "missing modality", "no audio",
         lambda x: _predict(x, [{"features": {m: [0.5] * d for m, d in x["dims"].items() if m != "audio"}}]),
         422, "body.utterances.0.features.audio"),
    Case("predict", "ragged sequence", "rows of 16 and 3",
         lambda x: _predict(x, [_utt(x, audio=[[1.0] * 16, [1.0] * 3])]), 422,
         "body.utterances.0.features.audio"),
    Case("predict", "strings for numbers", '"1.5"',
         lambda x: _predict(x, [_utt(x, audio=["1.5"] * 16)]), 422, "body.utterances.0.features.audio"),
    Case("predict", "booleans for numbers", "true",
         lambda x: _predict(x, [_utt(x, audio=[True] * 16)]), 422, "body.utterances.0.features.audio"),
    Case("predict", "NaN or Infinity", "a NaN literal",
         lambda x: _predict(x, raw=json.dumps({"utterances": [_utt(x, audio=[float("nan")] * 16)]}).encode()),
         422, "body"),
    Case("predict", "unknown field", "extra: 1",
         lambda x: _predict(x, [{**_utt(x), "extra": 1}]), 422, "body.utterances.0.extra"),
    Case("predict", "a modality beside features", '{"audio": [...]}, not under features',
         lambda x: _predict(x, [{"audio": _utt(x)["features"]["audio"]}]), 422, "body.utterances.0.audio"),
    Case("predict", "larger than MAX_PREDICT_BODY_BYTES", "9 MB",
         lambda x: _predict(x, raw=b" " * (9 * MB)), 413, "body"),
    Case("predict", "more numbers than MAX_PREDICT_VALUES", "1.2 million",
         lambda x: _predict(x, [_utt(x, audio=[0.0] * 1_200_000)]), 413, "body"),
    Case("predict", "unknown model", "a 32-hex id",
         lambda x: _predict(x, [_utt(x)], model="0" * 32), 404, "model_id"),
    Case("predict", "a query parameter", "predict?explain=1",
         lambda x: x["c"].post(f"/v1/models/{x['model']}/predict", params={"explain": 1},
                               json={"utterances": [_utt(x)]}), 422, "query.explain"),
    # ids, paths, methods
    Case("ids", "malformed id", "/v1/jobs/not-an-id", _get("/v1/jobs/not-an-id"), 404, "job_id"),
    Case("ids", "path traversal", "/v1/jobs/..%2f..", _get("/v1/jobs/..%2f.."), 404, None),
    Case("ids", "file not offered", "files/secrets.txt",
         _get("/v1/models/{model}/files/secrets.txt"), 404, "name"),
    Case("ids", "file path traversal", "files/..%2Fcard.json",
         _get("/v1/models/{model}/files/..%2Fcard.json"), 404, None),
    Case("ids", "page size out of range", "limit=0",
         _get("/v1/jobs", params={"limit": 0}), 422, "query.limit"),
    Case("ids", "unknown query parameter", "GET /v1/jobs?status=failed",
         _get("/v1/jobs", params={"status": "failed"}), 422, "query.status"),
    Case("ids", "not a job state", "GET /v1/jobs?state=done",
         _get("/v1/jobs", params={"state": "done"}), 422, "query.state"),
    Case("ids", "misspelt query parameter", "labels?fmt=csv",
         _get("/v1/jobs/{model}/labels", params={"fmt": "csv"}), 422, "query.fmt"),
    Case("ids", "unknown route", "/nothing", _get("/nothing"), 404, None),
    Case("ids", "wrong method", "PUT /v1/jobs", lambda x: x["c"].put("/v1/jobs"), 405, None),
    # access
    Case("access", "no API key", "no Authorization header",
         _get("/v1/datasets", headers={"Authorization": ""}), 401, "header.authorization"),
    Case("access", "malformed key", "Bearer nonsense",
         _get("/v1/datasets", headers={"Authorization": "Bearer nonsense"}), 401, "header.authorization"),
    Case("access", "revoked key", "a key revoked with unilabel-admin", _revoked, 401, "header.authorization"),
    Case("access", "another key's resource", "key B asks for A's model",
         lambda x: x["c"].get(f"/v1/models/{x['model']}", headers=x["other"]), 404, "model_id"),
    Case("access", "foreign Host", "Host: attacker.example",
         _get("/v1/datasets", headers={"Host": "attacker.example"}), 403, "header.host"),
    Case("access", "foreign Origin", "Origin: http://attacker.example",
         _get("/v1/datasets", headers={"Origin": "http://attacker.example"}), 403, "header.origin"),
    Case("access", "metrics without admin", "GET /metrics, ordinary key", _get("/metrics"), 403,
         "header.authorization"),
    # quotas
    Case("quota", "uploads per minute", "the 2nd upload, limit 1",
         lambda x: _quota(x, {"uploads_per_minute": 1},
                          lambda h: x["c"].post("/v1/datasets", files=_files(x), headers=h)), 429,
         "quota.uploads_per_minute"),
    Case("quota", "bytes stored", "limit 10 kB",
         lambda x: _quota(x, {"stored_bytes": 10_000},
                          lambda h: x["c"].post("/v1/datasets", files=_files(x), headers=h)), 413,
         "quota.stored_bytes"),
    Case("quota", "jobs queued", "the 2nd job, limit 1",
         lambda x: x["quota_jobs"](), 429, "quota.queued_jobs"),
    Case("quota", "predictions in one request", "4 utterances, limit 3 a minute",
         lambda x: _stingy_predict(x, 4), 413, "quota.predictions_per_minute"),
    Case("quota", "predictions per minute", "3 utterances then 1, limit 3",
         lambda x: (_stingy_predict(x, 3), _stingy_predict(x, 1))[1], 429, "quota.predictions_per_minute"),
]


def _tar_bomb() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("features.npz")
        info.size = 64 * MB
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    return raw.getvalue()


@pytest.fixture(scope="module")
def ctx(redis_stack, synth_dir, tmp_path_factory) -> dict:
    import redis

    from worker.tasks import run_job

    url = f"redis://127.0.0.1:{redis_stack.redis_port}/3"
    redis.Redis.from_url(url).flushdb()
    settings = Settings(
        redis_url=url,
        artifact_dir=tmp_path_factory.mktemp("bad-inputs"),
        device="cpu",
        allowed_hosts="testserver",
        max_upload_bytes=5 * MB,
        max_upload_parts=2,
        api_key_cache_s=0,
    )
    key = make_key(settings, uploads_per_minute=0)  # the quota cases have keys of their own
    with new_client(settings, key, raise_server_exceptions=False) as c:
        ds = upload_dir(c, synth_dir).json()["id"]
        job = c.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": TINY}).json()["id"]
        svc = c.app.state.services
        assert run_job(job, svc.jobs, svc.store, svc.settings) == "succeeded"
        arrays = dict(np.load(synth_dir / "features.npz", allow_pickle=False))
        stingy_key = make_key(settings, predictions_per_minute=3)
        stingy = auth(stingy_key)
        # the stingy key's own copy of the model: its dataset and job, trained
        csv, npz = (synth_dir / "utterances.csv").read_bytes(), (synth_dir / "features.npz").read_bytes()
        plain = {"csv": csv, "npz": npz}
        sds = c.post("/v1/datasets", files=_files(plain), headers=stingy).json()["id"]
        body = {"dataset_id": sds, "hyperparameters": TINY}
        sjob = c.post("/v1/jobs", json=body, headers=stingy).json()["id"]
        assert run_job(sjob, svc.jobs, svc.store, svc.settings) == "succeeded"
        jobs_key = auth(make_key(settings, queued_jobs=1))
        jds = c.post("/v1/datasets", files=_files(plain), headers=jobs_key).json()["id"]

        def quota_jobs():
            c.post("/v1/jobs", json={"dataset_id": jds, "seed": 1}, headers=jobs_key)
            return c.post("/v1/jobs", json={"dataset_id": jds, "seed": 2}, headers=jobs_key)

        yield {
            "c": c,
            "settings": settings,
            "ds": ds,
            "model": job,
            "dims": {"text": 32, "audio": 16, "vision": 24},
            "csv": (synth_dir / "utterances.csv").read_bytes(),
            "npz": (synth_dir / "features.npz").read_bytes(),
            "arrays": arrays,
            "ids": arrays["id"],
            "tarbomb": _tar_bomb(),
            "zipbomb": _zip_bomb(),
            "npzbomb": _npz_bomb(arrays["id"]),
            "other": auth(make_key(settings)),
            "stingy": stingy,
            "stingy_model": sjob,
            "quota_jobs": quota_jobs,
        }


def _answer(case: Case, ctx: dict) -> dict:
    response = case.send(ctx)
    assert "Traceback" not in response.text
    is_json = response.headers.get("content-type", "").startswith("application/json")
    error = response.json()["error"] if is_json else {}
    return {"status": response.status_code, "code": error.get("code"), "field": error.get("field")}


def table(rows: list[tuple[Case, dict]]) -> str:
    lines = ["| input | class of bad input | example | answer |", "|---|---|---|---|"]
    for case, got in rows:
        answer = f"{got['status']} `{got['code']}`" + (f", `{got['field']}`" if got["field"] else "")
        lines.append(f"| {case.area} | {case.kind} | {case.example} | {answer} |")
    return "\n".join(lines)


def test_every_bad_input_is_named_and_refused(ctx: dict) -> None:
    rows, wrong = [], []
    for case in CASES:
        got = _answer(case, ctx)
        rows.append((case, got))
        if got["status"] != case.status or (case.field is not None and got["field"] != case.field):
            wrong.append(f"{case.area} / {case.kind}: expected {case.status} {case.field}, got {got}")
    assert not wrong, "\n".join(wrong)
    assert all(400 <= got["status"] < 500 for _, got in rows)
    generated = table(rows)
    text = DOC.read_text() if DOC.exists() else ""
    if os.environ.get("UPDATE_DOCS"):
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOC.write_text(f"{head}{BEGIN}\n{generated}\n{END}{tail}")
        text = DOC.read_text()
    block = text.partition(BEGIN)[2].partition(END)[0].strip()
    assert block == generated, "docs/reliability.md's table is stale: UPDATE_DOCS=1 pytest " + __file__


def test_a_client_that_hangs_up_mid_upload_is_no_server_error(
    client, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that went away mid-upload was logged as an unhandled error, with two tracebacks."""
    import logging

    key = client.headers["authorization"].encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/datasets",
        "raw_path": b"/v1/datasets",
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"multipart/form-data; boundary=XyZ"),
            (b"authorization", key),
        ],
    }
    part = b'--XyZ\r\nContent-Disposition: form-data; name="utterances"; filename="u.csv"\r\n\r\nid,split\r\n'
    events = [{"type": "http.request", "body": part, "more_body": True}]
    sent: list[dict] = []

    async def receive() -> dict:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO):
        client.portal.call(client.app, scope, receive, send)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    staging = client.app.state.services.store.tmp
    assert not staging.exists() or list(staging.iterdir()) == []  # nothing of it kept
