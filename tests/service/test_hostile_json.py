"""JSON bodies from hostile or careless clients: bounded before they are read, and every refusal a 4xx naming
the body."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from service.body_limit import MAX_JSON_BODY_BYTES, capped


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_job_body_of_digits_or_nesting_the_parser_cannot_read_is_a_422_on_body(client) -> None:
    """FastAPI's own 400 "There was an error parsing the body", with no field, answered these."""
    bodies = {
        '{"dataset_id": "x", "seed": 1' + "0" * 5000 + "}": "4300 digits",  # Python's int limit
        '{"dataset_id": "x", "hyperparameters": {"lr": ' + "[" * 100_000 + "]" * 100_000 + "}}": "nested",
    }
    for body, words in bodies.items():
        r = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        error = _error(r, 422)
        assert error["code"] == "validation_error" and error["field"] == "body", error
        assert error["message"].startswith("not valid JSON") and words in error["message"], error
        assert "set_int_max_str_digits" not in error["message"]


def test_a_job_body_over_the_cap_is_a_413_declared_or_chunked(client) -> None:
    """Read whole into memory before: a 100 MB POST /v1/jobs took the API's peak RSS up by 300 MB."""
    big = json.dumps({"dataset_id": "a" * (MAX_JSON_BODY_BYTES + 10)}).encode()
    r = client.post("/v1/jobs", content=big, headers={"Content-Type": "application/json"})
    error = _error(r, 413)
    assert error["code"] == "payload_too_large" and error["field"] == "body"
    assert str(MAX_JSON_BODY_BYTES) in error["message"]

    def chunks():  # no Content-Length: counted as it arrives
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    r = client.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    error = _error(r, 413)
    assert error["code"] == "payload_too_large" and error["field"] == "body"
    # under the cap, the route answers as before
    r = client.post("/v1/jobs", json={"dataset_id": "a" * 200})
    assert _error(r, 422)["field"] == "body.dataset_id"


def test_a_declared_length_over_the_cap_is_refused_before_anything_is_read() -> None:
    """A body declaring 10 GB kept the connection waiting for it; now the 413 goes before any read."""
    sent: list[dict] = []
    reads: list[int] = []

    async def app(scope, receive, send) -> None:  # pragma: no cover - must not be called
        raise AssertionError("the app was called")

    async def receive() -> dict:
        reads.append(1)
        return {"type": "http.request", "body": b"", "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/jobs",
        "headers": [(b"content-length", b"10000000000"), (b"content-type", b"application/json")],
    }
    asyncio.run(capped(app, scope, receive, send, MAX_JSON_BODY_BYTES))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["field"] == "body"
    assert not reads


def test_an_upload_keeps_its_own_limit(client, synth_dir: Path, tmp_path: Path) -> None:
    """The cap is for JSON requests: an upload of more than 1 MiB (MAX_UPLOAD_BYTES) still goes through."""
    from tests.service.conftest import upload_dir

    (tmp_path / "utterances.csv").write_bytes((synth_dir / "utterances.csv").read_bytes())
    arrays = dict(np.load(synth_dir / "features.npz", allow_pickle=False))
    arrays["audio"] = np.random.default_rng(0).normal(size=(len(arrays["id"]), 2048)).astype(np.float32)
    np.savez(tmp_path / "features.npz", **arrays)
    assert (tmp_path / "features.npz").stat().st_size > MAX_JSON_BODY_BYTES
    assert upload_dir(client, tmp_path).status_code == 201


def test_a_sequence_sent_to_a_vector_model_names_its_utterance(client, trained: dict) -> None:
    """The first utterance predicted (and cached) first: the model's own check then said "features.audio[0]"
    (the first cache miss of its forward pass) on body.utterances, for the request's second utterance."""
    model = trained["job_id"]
    spec = client.get(f"/v1/models/{model}").json()["input_spec"]
    good = {"features": {m: [0.1] * s["dim"] for m, s in spec.items()}}
    assert client.post(f"/v1/models/{model}/predict", json={"utterances": [good]}).status_code == 200
    dim = spec["audio"]["dim"]
    bad = {"features": {**good["features"], "audio": [[0.1] * dim] * 3}}
    r = client.post(f"/v1/models/{model}/predict", json={"utterances": [good, bad]})
    error = _error(r, 422)
    assert error["field"] == "body.utterances.1.features.audio", error
    assert error["message"] == f"this model takes a [{dim}] vector, got shape [3, {dim}]"


def test_a_body_sent_with_a_file_answer_does_not_cut_the_answer(client) -> None:
    """The page (a FileResponse) reads the request while it answers, waiting for a disconnect: a chunked body
    past the cap raised there, after the answer had begun ("response already started"), and the page came
    back empty with a 200."""
    page = client.get("/")
    assert page.status_code == 200 and page.content

    def chunks():
        for _ in range(2 * MAX_JSON_BODY_BYTES // 65536):
            yield b"x" * 65536

    r = client.request("GET", "/", content=chunks())
    assert r.status_code == 200 and r.content == page.content


def test_an_upload_to_the_path_with_a_trailing_slash_is_redirected(client, synth_dir: Path) -> None:
    """POST /v1/datasets/ is redirected (307) to /v1/datasets, which clients follow with the body; an upload
    over 1 MiB got the JSON cap's 413 ("the API's JSON requests are a few kB") instead."""
    features = (synth_dir / "features.npz").read_bytes()
    files = {
        "utterances": ("utterances.csv", (synth_dir / "utterances.csv").read_bytes()),
        "features": ("features.npz", features + b"\0" * (MAX_JSON_BODY_BYTES - len(features) + 1)),
    }
    r = client.post("/v1/datasets/", files=files, follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].endswith("/v1/datasets"), r.text
