"""One delivery of a training job (worker.tasks.run_job) without Celery: cancel, lost workers, failures."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.service.conftest import TINY, upload_dir, with_transcripts
from worker.tasks import run_job


def nothing_staged(svc, job_id: str) -> bool:
    """No upload staging, and no run being written (train() stages in runs/.<job>.partial-<pid>)."""
    return list(svc.store.tmp.iterdir()) == [] and list(svc.store.runs.glob(f".{job_id}.partial-*")) == []


@pytest.fixture
def svc(client):
    return client.app.state.services


@pytest.fixture
def queued(client, synth_dir) -> str:
    ds = upload_dir(client, synth_dir).json()["id"]
    return client.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": TINY}).json()["id"]


def test_progress_is_recorded(svc, queued: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    original = svc.jobs.update

    def spy(job_id: str, **fields) -> None:
        seen.append(fields)
        original(job_id, **fields)

    monkeypatch.setattr(svc.jobs, "update", spy)
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "succeeded"
    stages = [f["stage"] for f in seen if "stage" in f]
    assert stages[0] == "pretrain" and "meta" in stages and stages[-1] == "multitask"
    fractions = [f["progress"] for f in seen if "progress" in f]
    assert fractions == sorted(fractions) and "first_progress_at" in seen[0]
    rec = svc.jobs.get(queued)
    assert rec["attempts"] == 1 and rec["first_progress_at"] >= rec["started_at"]
    assert list(svc.store.tmp.iterdir()) == []  # staging cleaned


def test_cancel_between_epochs(svc, queued: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original = svc.jobs.update

    def cancel_after_first_epoch(job_id: str, **fields) -> None:
        original(job_id, **fields)
        svc.jobs.request_cancel(job_id)

    monkeypatch.setattr(svc.jobs, "update", cancel_after_first_epoch)
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "cancelled"
    assert svc.store.run_dir(queued) is None and list(svc.store.tmp.iterdir()) == []


def test_an_attempt_whose_job_was_taken_while_it_trained_publishes_and_records_nothing(
    svc, queued: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease expired while the worker was cut off from Redis (or stopped) and the job went to another
    attempt, or was cancelled, before the heartbeat could say so: the run must not appear beside it."""
    monkeypatch.setattr(svc.settings, "job_heartbeat_s", 3600.0)  # the heartbeat never gets to notice
    original = svc.jobs.update
    other = "otherhost:1:attempt2"

    def taken_after_the_first_epoch(job_id: str, **fields) -> None:
        original(job_id, **fields)
        svc.jobs.r.hset(
            svc.jobs.key(job_id), mapping={"lease_token": other, "lease_until": time.time() + 600}
        )

    monkeypatch.setattr(svc.jobs, "update", taken_after_the_first_epoch)
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "running"  # attempt 2's
    rec = svc.jobs.get(queued)
    assert rec["lease_token"] == other and not rec.get("finished_at") and not rec.get("model_id")
    assert svc.store.run_dir(queued) is None and nothing_staged(svc, queued)


def test_a_cancel_after_the_last_epoch_is_honoured_before_publishing(
    svc, queued: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the flag is set once the job runs, but the checks between epochs do not see it: as if it came after
    # the last of them
    original = svc.jobs.update

    def cancel_unseen(job_id: str, **fields) -> None:
        original(job_id, **fields)
        svc.jobs.r.hset(svc.jobs.key(job_id), "cancel_requested", "1")

    monkeypatch.setattr(svc.jobs, "update", cancel_unseen)
    monkeypatch.setattr(svc.jobs, "cancel_requested", lambda job_id: False)
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "cancelled"
    assert svc.store.run_dir(queued) is None and nothing_staged(svc, queued)


def test_redis_unreachable_when_publishing_keeps_nothing_and_records_nothing(
    svc, queued: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past JOB_RECORD_PATIENCE the check failed the job with the Redis error's text (the Redis host's name
    in it); the attempt cannot know whether it still holds the job, so it leaves it to the reaper."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from worker.leases import Heartbeat

    def unreachable(self) -> str:
        raise RedisConnectionError("Error 111 connecting to redis.internal:6379")

    monkeypatch.setattr(svc.settings, "job_heartbeat_s", 3600.0)
    monkeypatch.setattr(svc.settings, "job_record_patience", 0.3)
    monkeypatch.setattr(Heartbeat, "renew", unreachable)
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "running"
    rec = svc.jobs.get(queued)
    assert not rec.get("error") and not rec.get("finished_at") and rec["attempts"] == 1
    assert svc.store.run_dir(queued) is None and nothing_staged(svc, queued)


def test_an_attempt_that_lost_its_lease_stops_training_and_writes_no_progress(svc, queued: str) -> None:
    """Its heartbeat found the job taken from it: training stops at the next epoch, and its progress events
    do not overwrite the attempt that holds the job now."""
    from models.stages.common import ProgressEvent
    from worker.tasks import progress_writer, stop_check

    holder, stale = "otherhost:1:holder", "otherhost:2:stale"
    assert svc.jobs.start(svc.jobs.get(queued), 3, holder, 30)
    assert stop_check(svc.jobs, queued, lambda: True)()
    assert not stop_check(svc.jobs, queued, lambda: False)()
    progress_writer(svc.jobs, queued, stale)(ProgressEvent("meta", 1, 2, 0.5))
    rec = svc.jobs.get(queued)
    assert (rec.get("stage"), rec["progress"]) == (None, 0.0)
    progress_writer(svc.jobs, queued, holder)(ProgressEvent("meta", 1, 2, 0.5))
    rec = svc.jobs.get(queued)
    assert (rec["stage"], rec["epoch"], rec["progress"]) == ("meta", 1, 0.5)


def test_cancelled_while_queued_never_runs(svc, queued: str) -> None:
    svc.jobs.request_cancel(queued)
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "cancelled"
    assert svc.jobs.get(queued).get("started_at") is None


def test_redelivery_after_a_lost_worker(svc, queued: str) -> None:
    # the first delivery's worker died mid-run: the record says running, attempt 1
    svc.jobs.transition(queued, ("queued",), state="running", attempts=1)
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "succeeded"
    assert svc.jobs.get(queued)["attempts"] == 2


def test_too_many_lost_workers_fail_the_job(svc, queued: str) -> None:
    svc.jobs.transition(queued, ("queued",), state="running", attempts=svc.settings.job_max_attempts)
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "failed"
    assert "worker lost" in svc.jobs.get(queued)["error"]


def test_published_run_is_not_trained_again(svc, queued: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "succeeded"
    # the worker died after publishing, before writing the record: the redelivery only records success
    svc.jobs.update(queued, state="running")
    monkeypatch.setattr("worker.tasks.train", lambda *a, **k: pytest.fail("trained twice"))
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "succeeded"


def test_failures_are_recorded_without_traceback(svc, queued: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr("worker.tasks.train", broken)
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "failed"
    rec = svc.jobs.get(queued)
    assert rec["error"] == "training failed: RuntimeError: CUDA out of memory" and rec["finished_at"]
    assert list(svc.store.tmp.iterdir()) == []


def test_deleted_dataset_fails_the_job(svc, queued: str) -> None:
    rec = svc.jobs.get(queued)
    svc.store.discard(svc.store.dataset_dir(rec["owner"], rec["dataset_id"]))
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "failed"
    assert "was deleted" in svc.jobs.get(queued)["error"]


def test_unknown_job_message_is_dropped(svc) -> None:
    assert run_job("f" * 32, svc.jobs, svc.store, svc.settings) == "missing"


def test_redis_outage_during_training_is_ridden_out(
    svc, queued: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress writes and cancel checks fail while Redis is down: training goes on; the final state is
    retried until Redis answers again."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    down = {"progress": 3, "cancel": 3, "finish": 2}
    update, cancel, transition = svc.jobs.update, svc.jobs.cancel_requested, svc.jobs.transition

    def flaky(kind, real):
        def call(*args, **kwargs):
            if down[kind] > 0:
                down[kind] -= 1
                raise RedisConnectionError("Connection refused")
            return real(*args, **kwargs)

        return call

    recorded: list[tuple[float, dict]] = []

    def update_and_note(job_id: str, **fields) -> None:
        update(job_id, **fields)
        recorded.append((time.time(), fields))

    monkeypatch.setattr(svc.jobs, "update", flaky("progress", update_and_note))
    monkeypatch.setattr(svc.jobs, "cancel_requested", flaky("cancel", cancel))
    claimed = {"done": False}

    def transition_after_claim(*args, **kwargs):
        if not claimed["done"]:  # the claim at the start goes through; Redis dies later
            claimed["done"] = True
            return transition(*args, **kwargs)
        return flaky("finish", transition)(*args, **kwargs)

    monkeypatch.setattr(svc.jobs, "transition", transition_after_claim)
    monkeypatch.setattr("worker.job_records.time.sleep", lambda s: None)
    assert run_job(queued, svc.jobs, svc.store, svc.settings) == "succeeded"
    assert down == {"progress": 0, "cancel": 0, "finish": 0}
    rec = svc.jobs.get(queued)
    assert rec["attempts"] == 1 and rec["model_id"] == queued and rec["stage"] == "multitask"
    # the first write that got through carries the time of the first event, which Redis missed
    written_at, fields = recorded[0]
    assert rec["first_progress_at"] == fields["first_progress_at"] < written_at
    assert all("first_progress_at" not in f for _, f in recorded[1:])


def test_final_state_gives_up_after_the_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from worker.job_records import until_redis_answers

    clock = {"t": 0.0, "calls": 0}
    monkeypatch.setattr("worker.job_records.time.monotonic", lambda: clock["t"])
    monkeypatch.setattr("worker.job_records.time.sleep", lambda s: clock.__setitem__("t", clock["t"] + s))

    def never() -> None:
        clock["calls"] += 1
        raise RedisConnectionError("Connection refused")

    with pytest.raises(RedisConnectionError):
        until_redis_answers("job x", never, patience_s=30.0)
    assert 5 <= clock["calls"] <= 12 and clock["t"] <= 30.0  # backoff 0.2 s doubling to 5 s


@pytest.mark.parametrize(("setting", "side_by_side"), [(1, False), (3, True)])
def test_worker_meta_threads_setting_reaches_stage_2(
    svc, queued: str, monkeypatch: pytest.MonkeyPatch, setting: int, side_by_side: bool
) -> None:
    threads_of_meta_events: set[str] = set()
    original = svc.jobs.update

    def spy(job_id: str, **fields) -> None:
        if fields.get("stage") == "meta":
            threads_of_meta_events.add(threading.current_thread().name)
        original(job_id, **fields)

    monkeypatch.setattr(svc.jobs, "update", spy)
    settings = svc.settings.model_copy(update={"worker_meta_threads": setting})
    assert run_job(queued, svc.jobs, svc.store, settings) == "succeeded"
    assert threads_of_meta_events
    assert all(name.startswith("mucn") for name in threads_of_meta_events) is side_by_side


def test_the_worker_keeps_a_datasets_text_embeddings_with_it(
    client, synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the images HOME (/app) is not writable: the embeddings cache went nowhere and every job encoded its
    transcripts again. The worker keeps them in the dataset's folder on the volume: a second job reads them,
    and they go when the dataset is deleted (and, in its folder, count among the key's stored bytes)."""
    from models.text_encoder import TextEncoder

    monkeypatch.setenv("UNILABEL_CACHE_DIR", str(tmp_path / "not-here"))  # the dataset's folder wins
    ds = upload_dir(client, with_transcripts(synth_dir, tmp_path, text_features=False)).json()["id"]
    svc = client.app.state.services
    submitted = client.post("/v1/jobs", json={"dataset_id": ds, "hyperparameters": TINY}).json()
    first = svc.jobs.get(submitted["id"])
    cached = svc.store.text_cache_of(first["owner"], ds)
    assert cached.parent == svc.store.dataset_dir(first["owner"], ds)
    assert run_job(first["id"], svc.jobs, svc.store, svc.settings) == "succeeded"
    assert len(list(cached.glob("embeddings/*.npy"))) == 1 and not (tmp_path / "not-here").exists()
    encoded = []
    monkeypatch.setattr(TextEncoder, "encode", lambda self, texts, **kw: encoded.append(texts))
    again = client.post("/v1/jobs", json={"dataset_id": ds, "seed": 2, "hyperparameters": TINY}).json()
    assert run_job(again["id"], svc.jobs, svc.store, svc.settings) == "succeeded"
    assert encoded == []  # read from the cache
    assert client.delete(f"/v1/datasets/{ds}").status_code == 204
    assert not cached.exists()


def test_a_diverging_job_fails_naming_the_stage_and_settings(client, svc, synth_dir: Path) -> None:
    # lr=1 (within its range) makes MLC's losses overflow: the job ends failed with the reason, no run kept
    ds = upload_dir(client, synth_dir).json()["id"]
    hp = {"pretrain_epochs": 2, "mlc_epochs": 2, "multitask_max_epochs": 2, "lr": 1.0}
    job = client.post("/v1/jobs", json={"dataset_id": ds, "strategy": "mlc", "hyperparameters": hp}).json()
    assert run_job(job["id"], svc.jobs, svc.store, svc.settings) == "failed"
    error = svc.jobs.get(job["id"])["error"]
    assert error.startswith("training diverged: mlc epoch") and "lr=1.0 (default 0.001)" in error
    assert nothing_staged(svc, job["id"]) and not (svc.store.runs / job["id"]).exists()
