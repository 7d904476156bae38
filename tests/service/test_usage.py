"""GET /v1/usage and ``unilabel-remote usage``: a key learnt its quotas only from the 429 or 413 that refused
it. Each count is the one its refusal checks, and a quota without a limit is counted too."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from api_schemas.usage import QUOTAS
from remote.listing import size_text
from service.quotas import tree_bytes
from tests.service.conftest import TINY, make_key, new_client, upload_dir
from tests.service.test_api import _utterance, error_of


def _usage(c) -> dict:
    r = c.get("/v1/usage")
    assert r.status_code == 200, r.text
    return r.json()


def _one_minute(c) -> None:
    """The per-minute counts compared below must fall in one window: when this one ends soon, wait for the
    next."""
    left = _usage(c)["minute_ends_in_s"]
    if left < 20:
        time.sleep(left + 0.2)


def test_usage_counts_what_each_quota_checks(settings, synth_dir) -> None:
    from worker.tasks import run_job

    limits = {"queued_jobs": 1, "stored_bytes": 10**9, "uploads_per_minute": 0, "predictions_per_minute": 5}
    key = make_key(settings, **limits)
    with new_client(settings, key=key, raise_server_exceptions=False) as c:
        svc = c.app.state.services
        _one_minute(c)
        first = _usage(c)
        assert first["key_id"] == key.split("_")[1] and first["name"].startswith("key-")
        assert {q: first[q] for q in QUOTAS} == {
            "queued_jobs": {"used": 0, "limit": 1},
            "concurrent_jobs": {"used": 0, "limit": settings.quota_concurrent_jobs},
            "stored_bytes": {"used": 0, "limit": 10**9},
            "uploads_per_minute": {"used": 0, "limit": None},  # 0: no limit
            "predictions_per_minute": {"used": 0, "limit": 5},
        }
        assert 0 < first["minute_ends_in_s"] <= 60

        dataset_id = upload_dir(c, synth_dir).json()["id"]
        job_id = c.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": TINY}).json()["id"]
        now = _usage(c)
        owner = first["key_id"]
        assert now["uploads_per_minute"]["used"] == 1  # counted without a limit
        assert now["stored_bytes"]["used"] == tree_bytes(svc.store.datasets / owner) > 0
        assert now["queued_jobs"]["used"] == now["concurrent_jobs"]["used"] == 1
        refused = c.post("/v1/jobs", json={"dataset_id": dataset_id, "seed": 2})
        assert refused.status_code == 429 and error_of(refused)["field"] == "quota.queued_jobs"

        assert run_job(job_id, svc.jobs, svc.store, svc.settings) == "succeeded"
        trained = _usage(c)
        assert trained["queued_jobs"]["used"] == trained["concurrent_jobs"]["used"] == 0
        run_bytes = tree_bytes(svc.store.runs / job_id)
        assert trained["stored_bytes"]["used"] == now["stored_bytes"]["used"] + run_bytes

        _one_minute(c)
        rng = np.random.default_rng(0)
        body = {"utterances": [_utterance(rng, f"u{i}") for i in range(3)]}
        assert c.post(f"/v1/models/{job_id}/predict", json=body).status_code == 200
        assert _usage(c)["predictions_per_minute"] == {"used": 3, "limit": 5}
        over = c.post(f"/v1/models/{job_id}/predict", json=body)  # 6 > 5: refused, and not counted
        assert over.status_code == 429 and error_of(over)["field"] == "quota.predictions_per_minute"
        assert _usage(c)["predictions_per_minute"] == {"used": 3, "limit": 5}

        assert c.delete(f"/v1/models/{job_id}").status_code == 204
        assert _usage(c)["stored_bytes"]["used"] == now["stored_bytes"]["used"]


def test_predictions_of_another_api_process_count_within_a_second(client, trained: dict) -> None:
    """Several API processes (API_WORKERS): the one that answers GET /v1/usage has not served the
    predictions; it reads what the others added to Redis (every half second)."""
    key = client.headers["Authorization"].removeprefix("Bearer ")
    body = {"utterances": [_utterance(np.random.default_rng(1), f"u{i}") for i in range(4)]}
    with new_client(client.app.state.services.settings, key=key, raise_server_exceptions=False) as other:
        _one_minute(other)
        before = _usage(other)["predictions_per_minute"]["used"]
        assert client.post(f"/v1/models/{trained['job_id']}/predict", json=body).status_code == 200
        deadline = time.monotonic() + 5
        while _usage(other)["predictions_per_minute"]["used"] != before + 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _usage(other)["predictions_per_minute"]["used"] == before + 4
        assert _usage(client)["predictions_per_minute"]["used"] == before + 4


def test_usage_is_the_callers_own_unless_an_admin_names_another_key(client, settings, synth_dir) -> None:
    """An admin key's usage is its own too (what another key stores is not counted in it); it may ask for any
    key's by id, revoked ones too (their files stay); no other key may."""
    from service.keys import KeyStore

    upload_dir(client, synth_dir)
    own = _usage(client)
    assert own["stored_bytes"]["used"] > 0
    admin = client.get("/v1/usage", headers=client.admin_headers).json()
    assert admin["stored_bytes"]["used"] == 0 and admin["key_id"] != own["key_id"]
    asked = f"/v1/usage?key_id={own['key_id']}"
    seen = client.get(asked, headers=client.admin_headers).json()
    assert seen | {"minute_ends_in_s": 0} == own | {"minute_ends_in_s": 0}
    assert client.get(f"/v1/usage?key_id={own['key_id']}").json()["key_id"] == own["key_id"]  # its own id

    other = make_key(settings, stored_bytes=5)
    r = client.get(f"/v1/usage?key_id={other.split('_')[1]}")
    assert r.status_code == 403 and error_of(r)["field"] == "query.key_id", r.text
    KeyStore.from_url(settings.redis_url).revoke(other.split("_")[1])
    revoked = client.get(f"/v1/usage?key_id={other.split('_')[1]}", headers=client.admin_headers).json()
    assert revoked["stored_bytes"] == {"used": 0, "limit": 5}
    r = client.get("/v1/usage?key_id=" + "0" * 16, headers=client.admin_headers)
    assert r.status_code == 404 and error_of(r)["field"] == "query.key_id", r.text
    for query in ("key_id=../etc", "owner=x"):
        r = client.get(f"/v1/usage?{query}", headers=client.admin_headers)
        assert r.status_code == 422 and error_of(r)["field"] == f"query.{query.split('=')[0]}", r.text


@pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")
def test_remote_usage_prints_a_row_per_quota(client, settings, synth_dir, monkeypatch, capsys) -> None:
    from remote.cli import main
    from remote.client import LabelClient

    monkeypatch.setattr(LabelClient, "__init__", lambda self, *a, **k: setattr(self, "http", client))
    monkeypatch.setattr(LabelClient, "close", lambda self: None)
    upload_dir(client, synth_dir)
    used = _usage(client)
    assert main(["usage"]) == 0
    header, *rows, minute = capsys.readouterr().out.splitlines()
    assert header.split() == ["quota", "used", "limit", "left"]
    table = {row.split()[0]: row.split()[1:] for row in rows}
    assert list(table) == list(QUOTAS)
    assert table["uploads_per_minute"] == ["1", "10", "9"]
    stored = used["stored_bytes"]["used"]
    left = size_text(settings.quota_stored_bytes - stored)
    assert table["stored_bytes"] == [*size_text(stored).split(), "20.0", "GiB", *left.split()]
    assert table["predictions_per_minute"] == ["0", "600,000", "600,000"]
    assert minute.startswith(f"key {used['name']} ({used['key_id']}); the per-minute counts start again in ")
    assert main(["usage", "--json"]) == 0 and '"stored_bytes"' in capsys.readouterr().out
    assert main(["usage", "--key-id", used["key_id"], "--json"]) == 0  # its own, by id
    assert json.loads(capsys.readouterr().out)["key_id"] == used["key_id"]
    assert main(["usage", "--key-id", "0" * 16]) == 2
    err = capsys.readouterr().err
    assert "403" in err and "needs an admin key" in err, err


def test_sizes_read_in_binary_units() -> None:
    assert [size_text(n) for n in (0, 1023, 1024, 49_869, 20 * 1024**3, 3 * 1024**5)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "48.7 KiB",
        "20.0 GiB",
        "3072.0 TiB",
    ]


def test_counts_being_added_to_redis_are_never_counted_twice(settings, monkeypatch) -> None:
    """A process's usage is Redis's total plus what it has not added yet. While a sync is under way, its
    counts are in Redis already (or about to be): they were counted twice; the limit still sees them."""
    import asyncio

    import redis.asyncio as aioredis
    from redis.asyncio.client import Pipeline

    from service.errors import ApiError
    from service.keys import Caller
    from service.quotas import SyncedRate, minute_window

    if minute_window(time.time())[1] < 5:  # the whole scenario in one minute's window
        time.sleep(minute_window(time.time())[1] + 0.1)
    caller = Caller("00000000000000aa", "k", limits={"predictions_per_minute": 6})

    async def scenario() -> None:
        client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        rate = SyncedRate(client, "predictions_per_minute")
        reply = asyncio.Event()
        execute = Pipeline.execute

        async def late_reply(self, *args, **kwargs):  # Redis has applied the counts; the answer comes later
            out = await execute(self, *args, **kwargs)
            await reply.wait()
            return out

        monkeypatch.setattr(Pipeline, "execute", late_reply)
        rate.take(settings, caller, 3)
        assert await rate.used(caller.owner) == 3
        sync = asyncio.create_task(rate.sync())
        for _ in range(100):  # until Redis holds the 3
            if await client.get(
                f"unilabel:rate:predictions_per_minute:{caller.owner}:{minute_window(time.time())[0]}"
            ):
                break
            await asyncio.sleep(0.01)
        assert await rate.used(caller.owner) == 3
        rate.take(settings, caller, 2)
        assert await rate.used(caller.owner) == 5
        with pytest.raises(ApiError) as refused:  # 3 being added + 2 + 2 > 6
            rate.take(settings, caller, 2)
        assert refused.value.status == 429
        reply.set()
        await sync
        assert await rate.used(caller.owner) == 5
        await rate.sync()
        assert await rate.used(caller.owner) == 5
        await client.aclose()

    asyncio.run(scenario())


def test_uploads_received_at_once_cannot_take_a_key_over_its_stored_bytes(
    settings, synth_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four uploads sent at once (two API processes) were all published: each had checked its room before
    it was received, when the others were not yet stored. The bytes received are checked again when
    published, one upload after the other."""
    import threading

    from service.quotas import room_to_publish

    size = sum(f.stat().st_size for f in synth_dir.iterdir())
    key = make_key(settings, stored_bytes=size + size // 2)  # room for one of them
    csv = (synth_dir / "utterances.csv").read_bytes()
    npz = (synth_dir / "features.npz").read_bytes()
    other = {"utterances": ("utterances.csv", csv.replace(b"\n", b"\r\n")), "features": ("features.npz", npz)}
    with new_client(settings, key=key, raise_server_exceptions=False) as c:
        inside, go_on, second_received, answers = threading.Event(), threading.Event(), threading.Event(), []

        def publishing(*args, **kwargs):  # the first upload's publish waits until the second was received
            if not inside.is_set():
                with room_to_publish(*args, **kwargs):
                    inside.set()
                    assert go_on.wait(30)
                    yield
            else:
                second_received.set()
                with room_to_publish(*args, **kwargs):
                    yield

        monkeypatch.setattr("service.routes.datasets.room_to_publish", contextmanager(publishing))
        first = threading.Thread(target=lambda: answers.append(upload_dir(c, synth_dir)))
        first.start()
        try:
            assert inside.wait(30)
            with new_client(settings, key=key, raise_server_exceptions=False) as other_process:
                second = threading.Thread(
                    target=lambda: answers.append(other_process.post("/v1/datasets", files=other))
                )
                second.start()
                assert second_received.wait(30)  # its room was checked before it was received: it fit
                go_on.set()
                second.join(30)
        finally:
            go_on.set()
            first.join(30)
        assert sorted(r.status_code for r in answers) == [201, 413], [r.text for r in answers]
        refused = next(r for r in answers if r.status_code == 413)
        assert (
            error_of(refused)["field"] == "quota.stored_bytes"
            and "more received" in error_of(refused)["message"]
        )
        assert (
            _usage(c)["stored_bytes"]["used"] <= size + size // 2
            and c.get("/v1/datasets").json()["total"] == 1
        )


def test_an_upload_waiting_too_long_for_the_keys_publish_lock_is_a_503_and_an_expired_lock_no_500(
    settings, synth_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ended in a 500: the lock's errors are RedisErrors the API did not map, and one came after the
    dataset was published."""
    from service.quotas import LOCK_PREFIX

    size = sum(f.stat().st_size for f in synth_dir.iterdir())
    key = make_key(settings, stored_bytes=10 * size)
    with new_client(settings, key=key, raise_server_exceptions=False) as c:
        owner = c.get("/v1/usage").json()["key_id"]
        svc = c.app.state.services
        lock = svc.jobs.r.lock(f"{LOCK_PREFIX}stored-bytes:{owner}", timeout=60)
        assert lock.acquire()  # another upload of the key publishing, for longer than one waits
        monkeypatch.setattr("service.quotas.LOCK_WAIT_S", 0.2)
        try:
            r = upload_dir(c, synth_dir)
        finally:
            lock.release()
        assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
        assert error_of(r)["field"] == "quota.stored_bytes" and c.get("/v1/datasets").json()["total"] == 0

        # the lock expires while the upload is published (a stalled volume)
        from models import report

        real = report.publish_dir

        def stalled(staging, out, **kw):
            svc.jobs.r.delete(f"{LOCK_PREFIX}stored-bytes:{owner}")
            return real(staging, out, **kw)

        monkeypatch.setattr("service.datasets.publish_dir", stalled)
        r = upload_dir(c, synth_dir)
        assert r.status_code == 201 and c.get("/v1/datasets").json()["total"] == 1, r.text


def test_a_key_may_use_its_whole_rate_and_not_one_more(settings) -> None:
    import asyncio

    import redis.asyncio as aioredis

    from service.errors import ApiError
    from service.keys import Caller
    from service.quotas import ExactRate, SyncedRate, minute_window

    caller = Caller("e" * 16, "edge", limits={"uploads_per_minute": 2, "predictions_per_minute": 3})
    if minute_window(time.time())[1] < 5:  # the counts below must fall in one window
        time.sleep(minute_window(time.time())[1] + 0.2)

    async def take_all() -> None:
        r = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        try:
            uploads = ExactRate(r, "uploads_per_minute")
            await uploads.take(settings, caller)
            await uploads.take(settings, caller)  # 2 of 2
            with pytest.raises(ApiError) as over:
                await uploads.take(settings, caller)
            assert over.value.status == 429 and await uploads.used(caller.owner) == 2
            predictions = SyncedRate(r, "predictions_per_minute")
            predictions.take(settings, caller, 3)  # 3 of 3
            with pytest.raises(ApiError) as over:
                predictions.take(settings, caller, 1)
            assert over.value.status == 429 and await predictions.used(caller.owner) == 3
        finally:
            await r.aclose()

    asyncio.run(take_all())


def test_a_request_over_the_whole_minutes_predictions_says_so(client, trained: dict, monkeypatch) -> None:
    """More utterances in one request than the key may predict in a minute never pass: a 413 that says how
    many one request may hold, no Retry-After, nothing counted (a 429 said "reached (0 this minute); retry in
    N s", and every retry was refused the same); as many as the limit pass."""
    monkeypatch.setattr(client.app.state.services.settings, "quota_predictions_per_minute", 3)
    _one_minute(client)
    used = _usage(client)["predictions_per_minute"]["used"]
    rng = np.random.default_rng(0)
    body = {"utterances": [_utterance(rng, f"u{i}") for i in range(4)]}
    r = client.post(f"/v1/models/{trained['job_id']}/predict", json=body)
    assert r.status_code == 413 and "retry-after" not in r.headers, r.text
    message = (
        "4 in one request is more than quota QUOTA_PREDICTIONS_PER_MINUTE=3 admits in any minute for this "
        "key; send at most 3 per request"
    )
    assert error_of(r) == {
        "code": "payload_too_large",
        "message": message,
        "field": "quota.predictions_per_minute",
        "details": [{"field": "quota.predictions_per_minute", "problem": message}],
    }
    assert _usage(client)["predictions_per_minute"]["used"] == used  # nothing counted
    if used == 0:  # the whole minute's worth in one request is admitted
        body["utterances"] = body["utterances"][:3]
        assert client.post(f"/v1/models/{trained['job_id']}/predict", json=body).status_code == 200


@pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")
def test_remote_predict_all_waits_out_the_keys_predictions_a_minute(
    client, trained: dict, synth_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """`unilabel-remote predict --dataset PATH --all` for more utterances than the key may predict in a minute
    ended at the API's first 429 (and before, at its 413: more than a minute's worth in one request), with
    nothing written. Against the API's own answers, the client cuts its requests to what one may hold, waits
    each minute out as Retry-After says and writes every prediction. The API's clock is moved by those waits
    (service/quotas.py reads it), so no minute passes here."""
    import service.quotas as quotas
    from remote import batch_predict, cli, predict_command
    from remote.client import LabelClient

    monkeypatch.setattr(LabelClient, "__init__", lambda self, *a, **k: setattr(self, "http", client))
    monkeypatch.setattr(LabelClient, "close", lambda self: None)
    monkeypatch.setattr(client.app.state.services.settings, "quota_predictions_per_minute", 8)
    ahead = 61 - time.time() % 60  # the API's minute has just begun: its first 8 pass
    monkeypatch.setattr(quotas, "time", SimpleNamespace(time=lambda: time.time() + ahead))
    slept = []

    def sleep(seconds: float) -> None:
        nonlocal ahead
        slept.append(seconds)
        ahead += seconds

    monkeypatch.setattr(predict_command, "predict_all", partial(batch_predict.predict_all, sleep=sleep))
    out = tmp_path / "predictions.csv"
    assert cli.main(["predict", trained["job_id"], "--dataset", str(synth_dir), "--all", "-o", str(out)]) == 0
    said = capsys.readouterr()
    assert said.out == f"20 predictions written to {out}\n"
    waited = [f"the key's quota of 8 predictions a minute reached; waiting {s:g} s" for s in slept]
    assert said.err.splitlines() == [
        "predicted 8 of 20",
        waited[0],
        "predicted 16 of 20",
        waited[1],
        "predicted 20 of 20",
    ]
    assert len(slept) == 2 and all(55 <= s <= 60 for s in slept), slept
    test_ids = pd.read_csv(synth_dir / "utterances.csv", dtype={"id": str}).query("split == 'test'")["id"]
    assert pd.read_csv(out, dtype={"id": str})["id"].tolist() == test_ids.tolist()


def test_a_keys_stored_bytes_leave_out_other_keys_models(client, trained: dict, settings) -> None:
    from tests.service.conftest import auth

    svc = client.app.state.services
    owner = svc.jobs.get(trained["job_id"])["owner"]
    own = _usage(client)["stored_bytes"]["used"]
    assert own == tree_bytes(svc.store.datasets / owner) + tree_bytes(svc.store.runs / trained["job_id"])
    other = client.get("/v1/usage", headers=auth(make_key(settings))).json()
    assert other["stored_bytes"]["used"] == 0


def test_a_key_may_fill_its_stored_bytes_to_the_byte(settings) -> None:
    from service.errors import ApiError
    from service.keys import Caller
    from service.quotas import room_to_publish
    from worker.artifacts import ArtifactStore
    from worker.lifecycle import JobStore

    jobs, store = JobStore.from_url(settings.redis_url), ArtifactStore(settings.artifact_dir)
    caller = Caller("f" * 16, "full", limits={"stored_bytes": 1000})
    with room_to_publish(jobs, store, settings, caller, 1000, "make room"):
        pass
    with pytest.raises(ApiError) as over:
        with room_to_publish(jobs, store, settings, caller, 1001, "make room"):
            pass
    assert over.value.status == 413 and over.value.field == "quota.stored_bytes"


def test_a_key_already_at_its_stored_bytes_is_refused_any_upload(client, synth_dir, monkeypatch) -> None:
    """QUOTA_STORED_BYTES lowered (or models trained) under what a key stores: its next upload is refused
    whatever its size, saying how much it stores and how to make room."""
    assert upload_dir(client, synth_dir).status_code == 201
    stored = _usage(client)["stored_bytes"]["used"]
    monkeypatch.setattr(client.app.state.services.settings, "quota_stored_bytes", stored)
    r = client.post("/v1/datasets", files={"archive": ("d.zip", b"PK\x05\x06" + b"\0" * 18)})
    assert r.status_code == 413 and error_of(r)["field"] == "quota.stored_bytes", r.text
    message = error_of(r)["message"]
    assert message.startswith(f"quota QUOTA_STORED_BYTES={stored} bytes reached for this key ({stored} bytes")
    assert "delete-model MODEL_ID" in message and _usage(client)["stored_bytes"]["used"] == stored


def test_a_refusal_names_whose_limit_it_met() -> None:
    """The server's QUOTA_* setting (an operator's, for every key) or the key's own limit (`unilabel-admin
    keys create --limit`): the message said QUOTA_UPLOADS_PER_MINUTE=2 for a key's own 2, sending its user
    to a setting that was 10."""
    from service.keys import Caller
    from service.quotas import over_any_minute, too_large, too_many

    server, own = Caller("a" * 16, "a"), Caller("b" * 16, "b", limits={"uploads_per_minute": 2})
    assert too_many(server, "uploads_per_minute", 10, 22.5, "per minute").message == (
        "quota QUOTA_UPLOADS_PER_MINUTE=10 reached for this key (per minute); retry in 23 s"
    )
    assert too_many(own, "uploads_per_minute", 2, 22.5, "per minute").message == (
        "this key's own quota uploads_per_minute=2 reached (per minute); retry in 23 s"
    )
    own = Caller("c" * 16, "c", limits={"predictions_per_minute": 3, "stored_bytes": 0})
    assert over_any_minute(own, "predictions_per_minute", 3, 4).message == (
        "4 in one request is more than this key's own quota predictions_per_minute=3 admits in any minute; "
        "send at most 3 per request"
    )
    assert too_large(own, "stored_bytes", 9, "9 bytes stored").message == (
        "this key's own quota stored_bytes=9 bytes reached (9 bytes stored)"
    )
