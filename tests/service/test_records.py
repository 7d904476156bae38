"""Job records in Redis: dedup by fingerprint, guarded transitions, cancellation, idempotency keys."""

from __future__ import annotations

import json
import uuid

import pytest

from worker.lifecycle import JobStore, fingerprint
from worker.settings import Settings

SPEC = {
    "dataset_id": "d" * 64,
    "strategy": "mug",
    "seed": 1,
    "hyperparameters": {"lr": 0.1},
    "code_version": "v",
}


@pytest.fixture
def jobs(settings: Settings) -> JobStore:
    return JobStore.from_url(settings.redis_url)


def new(jobs: JobStore, fp: str = "fp") -> tuple[str, str]:
    job_id = uuid.uuid4().hex
    return job_id, jobs.create_or_get(job_id, SPEC, fp)


def test_fingerprint_is_order_free_and_complete() -> None:
    a = fingerprint("d", "mug", 1, {"a": 1, "b": 2}, "v")
    assert a == fingerprint("d", "mug", 1, {"b": 2, "a": 1}, "v")
    assert a != fingerprint("d", "mug", 2, {"a": 1, "b": 2}, "v")
    assert a != fingerprint("d", "mug", 1, {"a": 1, "b": 2}, "w")


def test_same_fingerprint_gives_the_same_job_until_it_fails(jobs: JobStore) -> None:
    first, owner = new(jobs)
    assert owner == first
    second, owner = new(jobs)
    assert owner == first and jobs.get(second) is None  # nothing half-created
    jobs.transition(first, ("queued",), state="failed", error="x")
    third, owner = new(jobs)
    assert owner == third  # a failed run may be tried again
    jobs.transition(third, ("queued",), state="succeeded")
    assert new(jobs)[1] == third


def test_record_round_trip(jobs: JobStore) -> None:
    job_id, _ = new(jobs)
    rec = jobs.get(job_id)
    assert rec["state"] == "queued" and rec["seed"] == 1 and rec["hyperparameters"] == {"lr": 0.1}
    assert rec["attempts"] == 0 and rec["cancel_requested"] is False and rec.get("stage") is None
    jobs.update(job_id, stage="meta", epoch=3, progress=0.5, losses={"l": 1.0})
    rec = jobs.get(job_id)
    assert (rec["stage"], rec["epoch"], rec["progress"], rec["losses"]) == ("meta", 3, 0.5, {"l": 1.0})
    assert jobs.total() == 1 and [r["id"] for r in jobs.list()] == [job_id]
    assert jobs.counts_by_state()["queued"] == 1


def test_transitions_are_guarded(jobs: JobStore) -> None:
    job_id, _ = new(jobs)
    assert jobs.transition(job_id, ("running",), state="succeeded") is None
    assert jobs.transition(job_id, ("queued",), state="running") == "queued"
    assert jobs.get(job_id)["state"] == "running"
    assert jobs.transition("nope", ("queued",), state="running") is None


def test_cancel_queued_at_once_running_by_flag_finished_never(jobs: JobStore) -> None:
    queued, _ = new(jobs, "a")
    assert jobs.request_cancel(queued) == "cancelled"
    running, _ = new(jobs, "b")
    jobs.transition(running, ("queued",), state="running")
    assert jobs.request_cancel(running) == "running" and jobs.cancel_requested(running)
    assert jobs.request_cancel(queued) is None


def test_an_idempotency_key_is_taken_before_its_job_and_stands_for_it_once_bound(jobs: JobStore) -> None:
    """Two requests with one key at the same time (two API processes) made two jobs, and both were answered
    with the first's, under either body."""
    from worker.idempotency import IdempotencyKeyBusy, IdempotencyKeyReused

    keys = jobs.idempotency_keys
    job_id, _ = new(jobs, "idem")
    taken, rec = keys.take("k", "body")
    assert taken and rec is None and json.loads(jobs.r.get(keys.name("k", "")))["job_id"] is None
    with pytest.raises(IdempotencyKeyBusy):  # the first request has not named its job yet
        keys.take("k", "body")
    with pytest.raises(IdempotencyKeyReused):
        keys.take("k", "another body")
    assert keys.bind("k", taken, job_id, 60)
    assert keys.take("k", "body") == ("", jobs.get(job_id))
    with pytest.raises(IdempotencyKeyReused):
        keys.take("k", "another body")
    assert keys.take("other", "body")[1] is None
    # a request that made no job frees the key, but not once another request took it
    taken, _ = keys.take("k2", "body")
    keys.release("k2", taken)
    again, _ = keys.take("k2", "body")
    keys.release("k2", taken)
    assert jobs.r.get(keys.name("k2", "")) == again
    # nor bound by a request that held it so long that it expired and another request took it
    jobs.r.delete(keys.name("k2", ""))
    later, _ = keys.take("k2", "another body")
    assert not keys.bind("k2", again, job_id, 60) and jobs.r.get(keys.name("k2", "")) == later
    # a key whose job's record is gone is free again
    jobs.r.delete(jobs.key(job_id))
    taken, rec = keys.take("k", "body")
    assert taken and rec is None


def test_a_call_over_a_connection_gone_silent_gives_up() -> None:
    """A Redis host lost without a reset (a partition) held a job's final-state wait and its heartbeat for
    ever: the patience they count on is measured between RedisErrors."""
    import socket
    import time

    from redis.exceptions import RedisError

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts, never answers
    try:
        jobs = JobStore.from_url(f"redis://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(RedisError):
            jobs.get("f" * 32)
        assert time.monotonic() - started < 5
    finally:
        silent.close()
