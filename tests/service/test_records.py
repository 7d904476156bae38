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


# quotas, leases and the reaper, against the same Redis ----------------------------------------------------
OTHER_HOST = "otherhost"  # a lease token of another host: never judged by this host's processes


def running(jobs: JobStore, fp: str, attempts: int = 1, lease_in: float = 60.0, **fields) -> str:
    """A job running under another host's lease that expires ``lease_in`` seconds from now."""
    job_id, _ = new(jobs, fp)
    jobs.transition(
        job_id,
        ("queued",),
        state="running",
        attempts=attempts,
        lease_token=f"{OTHER_HOST}:1:{fp}",
        lease_until=jobs.redis_now() + lease_in,
        **fields,
    )
    return job_id


def test_running_jobs_count_toward_concurrent_jobs_only_and_per_key(jobs: JobStore) -> None:
    from worker.lifecycle import QuotaExceeded

    spec = {**SPEC, "owner": "k1"}
    first = jobs.create_or_get(uuid.uuid4().hex, spec, "one", (1, 2))
    jobs.transition(first, ("queued",), state="running")
    second = jobs.create_or_get(uuid.uuid4().hex, spec, "two", (1, 2))  # a running job is not queued
    assert second != first and jobs.get(second)["state"] == "queued"
    with pytest.raises(QuotaExceeded) as queued_full:
        jobs.create_or_get(uuid.uuid4().hex, spec, "three", (1, 0))
    assert (queued_full.value.name, queued_full.value.count, queued_full.value.limit) == ("queued_jobs", 1, 1)
    with pytest.raises(QuotaExceeded) as inflight_full:  # one queued and one running: 2 of 2
        jobs.create_or_get(uuid.uuid4().hex, spec, "three", (0, 2))
    assert (inflight_full.value.name, inflight_full.value.count) == ("concurrent_jobs", 2)
    # another key's jobs are its own
    other = jobs.create_or_get(uuid.uuid4().hex, {**SPEC, "owner": "k2"}, "three", (1, 1))
    assert jobs.get(other)["owner"] == "k2"
    # a job that ended counts toward neither
    jobs.transition(first, ("running",), state="succeeded")
    assert jobs.get(jobs.create_or_get(uuid.uuid4().hex, spec, "three", (0, 2)))["state"] == "queued"


def test_only_the_lease_holder_writes_progress_and_the_end(jobs: JobStore) -> None:
    job_id, _ = new(jobs)
    holder, stale = f"{OTHER_HOST}:1:now", f"{OTHER_HOST}:1:before"
    assert jobs.start(jobs.get(job_id), 3, holder, 30)
    rec = jobs.get(job_id)
    assert rec["lease_token"] == holder and rec["lease_until"] >= jobs.redis_now() + 29  # a lease of 30 s
    jobs.update(job_id, token=stale, progress=0.5, stage="meta")
    jobs.finish(job_id, 1.0, stale, state="succeeded", model_id=job_id)
    rec = jobs.get(job_id)
    assert (rec["state"], rec["progress"], rec.get("stage")) == ("running", 0.0, None)
    assert not rec.get("model_id") and not rec.get("finished_at")
    jobs.update(job_id, token=holder, progress=0.5)
    jobs.finish(job_id, 1.0, holder, state="succeeded", model_id=job_id)
    rec = jobs.get(job_id)
    assert (rec["state"], rec["progress"], rec["model_id"]) == ("succeeded", 0.5, job_id)


def test_of_two_deliveries_of_a_job_only_one_starts_it_until_its_lease_expires(jobs: JobStore) -> None:
    job_id, _ = new(jobs)
    read_by_both = jobs.get(job_id)  # two deliveries read the queued record at once
    assert jobs.start(read_by_both, 3, f"{OTHER_HOST}:1:a", 30)
    assert not jobs.start(read_by_both, 3, f"{OTHER_HOST}:2:b", 30)  # the other delivery's race is lost
    assert not jobs.start(jobs.get(job_id), 3, f"{OTHER_HOST}:3:c", 30)  # the lease is held: dropped
    rec = jobs.get(job_id)
    assert rec["lease_token"] == f"{OTHER_HOST}:1:a" and rec["attempts"] == 1
    jobs.r.hset(jobs.key(job_id), "lease_until", repr(jobs.redis_now() - 1))  # its worker was lost
    assert jobs.start(jobs.get(job_id), 3, f"{OTHER_HOST}:4:d", 30)
    rec = jobs.get(job_id)
    assert rec["lease_token"] == f"{OTHER_HOST}:4:d" and rec["attempts"] == 2 and "lost" in rec["error"]


def test_a_lease_is_held_by_a_live_process_until_it_expires() -> None:
    import os
    import socket

    from worker.leases import lease_is_held

    here = socket.gethostname()
    now = 1000.0

    def held(token: str, until: float = now + 30) -> bool:
        return lease_is_held({"lease_token": token, "lease_until": until}, now)

    assert held(f"{OTHER_HOST}:1:x") and held(f"{here}:{os.getppid()}:x")  # another live process
    assert not held(f"{OTHER_HOST}:1:x", now - 1) and not held(f"{OTHER_HOST}:1:x", now)
    assert not held(f"{here}:{os.getpid()}:x")  # this very process: the attempt it ran is over
    assert not held("") and not lease_is_held({"lease_until": now + 30}, now)


def test_a_heartbeat_renews_only_its_own_lease_and_hears_a_cancel(jobs: JobStore) -> None:
    from worker.leases import Heartbeat

    job_id, _ = new(jobs)
    token = f"{OTHER_HOST}:1:a"
    assert jobs.start(jobs.get(job_id), 3, token, 5)
    beat = Heartbeat(jobs, job_id, token, 3600, 30)  # renewed by hand here, its thread never started
    assert beat.renew() == "held" and jobs.get(job_id)["lease_until"] >= jobs.redis_now() + 29
    assert jobs.request_cancel(job_id) == "running"
    assert beat.renew() == "cancel" and not beat.lost
    stale = Heartbeat(jobs, job_id, f"{OTHER_HOST}:1:before", 3600, 300)
    until = jobs.get(job_id)["lease_until"]
    assert stale.renew() == "lost" and stale.lost
    assert jobs.get(job_id)["lease_until"] == until  # not renewed by the stale attempt


def test_the_reaper_takes_back_only_jobs_whose_lease_expired(jobs: JobStore) -> None:
    from worker.leases import reap_expired

    sent: list[str] = []
    live = running(jobs, "live")
    lost = running(jobs, "lost", lease_in=-1)
    last = running(jobs, "last", attempts=3, lease_in=-1)
    cancel = running(jobs, "cancel", lease_in=-1, cancel_requested=True)
    reap_expired(jobs, 30, 3, lambda job_id: lambda: sent.append(job_id))
    assert jobs.get(live)["state"] == "running" and jobs.get(live)["lease_token"]
    rec = jobs.get(lost)
    assert rec["state"] == "queued" and "attempt 1 lost with its worker" in rec["error"]
    assert rec["lease_token"] is None and rec["sent_at"] and sent == [lost]  # its new message, sent
    rec = jobs.get(last)
    assert rec["state"] == "failed" and "JOB_MAX_ATTEMPTS=3" in rec["error"] and rec["finished_at"]
    assert jobs.get(cancel)["state"] == "cancelled"
    assert jobs.r.smembers("unilabel:active") == {live, lost}


def test_a_queued_job_never_sent_its_message_is_sent_one_after_the_grace(jobs: JobStore) -> None:
    import time

    from worker.leases import resend_unsent

    sent: list[str] = []

    def send(job_id: str):
        return lambda: sent.append(job_id)

    def aged(fp: str) -> str:
        job_id, _ = new(jobs, fp)
        jobs.r.hset(jobs.key(job_id), "updated_at", repr(time.time() - 60))
        return job_id

    new(jobs, "fresh")  # its submission may still be sending it
    unsent = aged("unsent")
    delivered = aged("sent")
    jobs.r.hset(jobs.key(delivered), "sent_at", repr(time.time() - 59))
    legacy = aged("legacy")  # recorded before sent_at existed: left alone
    jobs.r.hdel(jobs.key(legacy), "sent_at")
    assert resend_unsent(jobs, 10, send) == [unsent] and sent == [unsent]
    assert jobs.get(unsent)["sent_at"]  # recorded as sent now


def test_a_kill_at_the_hard_time_limit_fails_only_the_attempt_it_killed(jobs: JobStore) -> None:
    from worker.leases import fail_killed

    job_id, _ = new(jobs)
    assert jobs.start(jobs.get(job_id), 3, f"{OTHER_HOST}:1:a", 30, delivery="second")
    assert not fail_killed(jobs, job_id, "first", "time limit")  # an earlier delivery's kill
    assert jobs.get(job_id)["state"] == "running"
    assert fail_killed(jobs, job_id, "second", "time limit")
    rec = jobs.get(job_id)
    assert (rec["state"], rec["error"], rec.get("lease_token")) == ("failed", "time limit", None)


def test_an_idempotency_key_stands_for_its_job_for_the_ttl_given(jobs: JobStore) -> None:
    from worker.idempotency import PENDING_S

    keys = jobs.idempotency_keys
    job_id, _ = new(jobs)
    taken, _ = keys.take("k", "body", "owner")
    assert keys.bind("k", taken, job_id, 24 * 3600, "owner")
    assert jobs.r.ttl(keys.name("k", "owner")) > PENDING_S
    assert keys.take("k", "body", "owner") == ("", jobs.get(job_id))
    assert keys.take("k", "another body", "another owner")[1] is None  # another key's space


def test_each_key_claims_its_own_job_for_a_run_and_its_own_datasets_deletes_block_only_it(
    jobs: JobStore,
) -> None:
    from worker.lifecycle import DatasetDeleting

    alice, bob = {**SPEC, "owner": "a" * 16}, {**SPEC, "owner": "b" * 16}
    first = jobs.create_or_get(uuid.uuid4().hex, alice, "same run")
    assert jobs.create_or_get(uuid.uuid4().hex, bob, "same run") != first
    with jobs.deleting_dataset(bob["owner"], SPEC["dataset_id"]):
        with pytest.raises(DatasetDeleting):
            jobs.create_or_get(uuid.uuid4().hex, bob, "another run")
        assert jobs.get(jobs.create_or_get(uuid.uuid4().hex, alice, "another run"))["owner"] == alice["owner"]


def test_a_redelivery_of_a_job_whose_cancel_was_asked_ends_it_instead_of_training(jobs: JobStore) -> None:
    job_id = running(jobs, "asked")
    assert jobs.request_cancel(job_id) == "running"  # flagged while its worker trained; then it was lost
    jobs.r.hset(jobs.key(job_id), "lease_until", repr(jobs.redis_now() - 1))
    assert not jobs.start(jobs.get(job_id), 3, f"{OTHER_HOST}:2:b", 30)
    rec = jobs.get(job_id)
    assert rec["state"] == "cancelled" and rec["attempts"] == 1 and rec["finished_at"]


def test_a_job_whose_message_the_broker_refuses_fails_at_once(jobs: JobStore) -> None:
    job_id, _ = new(jobs)

    def broker_down() -> None:
        raise ConnectionError("broker unreachable")

    assert jobs.enqueue(job_id, broker_down) is False
    rec = jobs.get(job_id)
    assert rec["state"] == "failed" and "could not enqueue" in rec["error"] and rec["sent_at"] is None
    assert jobs.r.smembers("unilabel:active") == set()  # what the reaper and the quotas go through


def test_the_sweep_keeps_the_run_its_job_writes_now_and_only_that(jobs: JobStore, tmp_path) -> None:
    """runs/.<job>.partial-<pid> is a run being written while the job runs in that process (worker_pid): the
    sweep leaves it, and removes one an earlier attempt or a finished job left; while Redis cannot tell, it
    leaves them all."""
    import os

    from worker.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path / "artifacts")
    live, _ = new(jobs, "live")
    assert jobs.start(jobs.get(live), 3, f"{OTHER_HOST}:1:a", 30)  # worker_pid: this process
    done, _ = new(jobs, "done")
    jobs.transition(done, ("queued",), state="succeeded", worker_pid=os.getpid())

    def partial(job_id: str, pid: int):
        path = store.runs / f".{job_id}.partial-{pid}"
        path.mkdir(parents=True)
        (path / "model.safetensors").write_text("x")
        for p in (path / "model.safetensors", path):
            os.utime(p, (0, 0))
        return path

    writing, earlier, finished = partial(live, os.getpid()), partial(live, 1), partial(done, os.getpid())
    unreachable = JobStore.from_url("redis://127.0.0.1:1/0", timeout_s=2)
    assert store.sweep_staging(idle_s=3600, run_is_live=unreachable.runs_in) == 0
    assert store.sweep_staging(idle_s=3600, run_is_live=jobs.runs_in) == 2
    assert writing.exists() and not earlier.exists() and not finished.exists()


def test_a_heartbeat_thread_renews_the_lease_through_an_outage_until_it_is_lost(jobs: JobStore) -> None:
    import time

    from redis.exceptions import ConnectionError as RedisConnectionError

    from worker.leases import Heartbeat

    job_id, _ = new(jobs)
    token = f"{OTHER_HOST}:1:a"
    assert jobs.start(jobs.get(job_id), 3, token, 1)

    def until(predicate, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def lease_ahead() -> bool:  # renewed since it was last pushed back in time
        return (jobs.get(job_id)["lease_until"] or 0) > jobs.redis_now() + 0.5

    with Heartbeat(jobs, job_id, token, every_s=0.05, lease_s=1) as beat:
        real, failures = beat.renew, []

        def flaky() -> str:  # Redis away for the first renewals
            if len(failures) < 3:
                failures.append(1)
                raise RedisConnectionError("Error 111 connecting")
            return real()

        beat.renew = flaky
        jobs.r.hset(jobs.key(job_id), "lease_until", repr(jobs.redis_now()))
        until(lambda: len(failures) == 3)
        until(lease_ahead)  # renewed again once Redis answers
        assert not beat.lost
        jobs.r.hset(jobs.key(job_id), "lease_token", f"{OTHER_HOST}:2:b")  # re-queued and taken meanwhile
        until(lambda: beat.lost)
        beat._thread.join(1)
        assert not beat._thread.is_alive()  # it stops renewing
    assert jobs.get(job_id)["lease_token"] == f"{OTHER_HOST}:2:b"


def test_a_job_whose_resend_another_api_process_holds_is_not_sent_twice(jobs: JobStore) -> None:
    import time

    from worker.leases import resend_unsent

    sent: list[str] = []
    job_id, _ = new(jobs)
    jobs.r.hset(jobs.key(job_id), "updated_at", repr(time.time() - 60))
    jobs.r.set(f"unilabel:resend:{job_id}", "1", ex=10)  # another API process is sending it
    assert resend_unsent(jobs, 10, lambda j: lambda: sent.append(j)) == [] and sent == []
    jobs.r.delete(f"unilabel:resend:{job_id}")  # it died before sending: the lock expired
    assert resend_unsent(jobs, 10, lambda j: lambda: sent.append(j)) == [job_id] and sent == [job_id]


def test_jobs_recorded_before_the_active_sets_are_adopted_into_them(jobs: JobStore) -> None:
    """Records written by a version without the active sets: queued and running jobs are put in them at the
    API's start (the reaper and the quotas read only the sets); finished ones stay out."""
    queued, _ = new(jobs, "queued")
    live = running(jobs, "running")
    done, _ = new(jobs, "done")
    jobs.transition(done, ("queued",), state="succeeded")
    owner = "k" * 16
    jobs.r.hset(jobs.key(live), "owner", owner)
    jobs.r.delete("unilabel:active", f"unilabel:owner:{owner}:active", "unilabel:owner::active")
    jobs.adopt_untracked()
    assert jobs.r.smembers("unilabel:active") == {queued, live}
    assert jobs.r.smembers(f"unilabel:owner:{owner}:active") == {live}
