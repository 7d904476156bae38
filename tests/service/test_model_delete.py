"""DELETE /v1/models/{id}: a key's models counted toward its stored bytes, and only datasets could be
deleted. A deleted model is gone from every API process at its next request, its job says so, and the same
request trains again."""

from __future__ import annotations

import numpy as np

from tests.service.conftest import TINY, make_key, new_client
from tests.service.test_api import _utterance, error_of


def test_a_deleted_model_is_gone_everywhere_and_its_run_can_train_again(client, trained: dict) -> None:
    from service.quotas import stored_bytes, tree_bytes

    model_id = job_id = trained["job_id"]
    svc = client.app.state.services
    key = client.headers["Authorization"].removeprefix("Bearer ")
    body = {"utterances": [_utterance(np.random.default_rng(0), f"u{i}") for i in range(3)]}
    predict = f"/v1/models/{model_id}/predict"
    with new_client(svc.settings, key=key, raise_server_exceptions=False) as other_process:
        for api in (client, other_process):  # both load the model and keep the answer in their memos
            assert api.post(predict, json=body).status_code == 200
            assert api.post(predict, json=body).json()["predictions"][0]["cached"] is True
        owner = svc.jobs.get(job_id)["owner"]
        dataset_bytes = tree_bytes(svc.store.datasets / owner)
        assert stored_bytes(svc.jobs, svc.store, owner) > dataset_bytes

        assert client.delete(f"/v1/models/{model_id}").status_code == 204
        for api in (client, other_process):  # the other process had it loaded, its answer memoised
            r = api.post(predict, json=body)
            assert r.status_code == 404 and error_of(r)["field"] == "model_id", r.text
        assert not other_process.app.state.services.models.loaded(model_id)

    for path in ("", "/files/model.json", "/archive"):  # gone, and said so, as the job's labels say it
        r = client.get(f"/v1/models/{model_id}{path}")
        assert r.status_code == 410 and "model was deleted at" in error_of(r)["message"], path
    assert client.get("/v1/models").json()["total"] == 0
    r = client.delete(f"/v1/models/{model_id}")  # again: gone, as GET says
    assert r.status_code == 410 and error_of(r)["field"] == "model_id", r.text
    assert stored_bytes(svc.jobs, svc.store, owner) == dataset_bytes  # the run's bytes are free again

    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "succeeded" and job["model_id"] is None and job["model_deleted_at"]
    assert job["metrics"] and job["links"] == {
        "self": f"/v1/jobs/{job_id}",
        "labels": None,
        "report": None,
        "model": None,
        "cancel": None,
    }
    for path in ("labels", "report"):
        r = client.get(f"/v1/jobs/{job_id}/{path}")
        assert r.status_code == 410 and error_of(r)["field"] == "job_id", r.text
        assert "model was deleted at" in error_of(r)["message"] and "submit the job again" in r.text

    again = client.post("/v1/jobs", json={"dataset_id": trained["dataset_id"], "hyperparameters": TINY})
    assert again.status_code == 202 and again.json()["id"] != job_id  # not the old job: it trains anew


def test_only_the_models_key_or_an_admin_deletes_it(client, trained: dict) -> None:
    model_id = trained["job_id"]
    other = make_key(client.app.state.services.settings)
    r = client.delete(f"/v1/models/{model_id}", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404 and error_of(r)["field"] == "model_id"
    assert client.get(f"/v1/models/{model_id}").status_code == 200
    assert client.delete(f"/v1/models/{model_id}", headers=client.admin_headers).status_code == 204
    assert client.get(f"/v1/models/{model_id}").status_code == 410  # its job's owner learns it was deleted
    r = client.get(f"/v1/models/{model_id}", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404  # another key learns nothing of it, then as before


def test_forgetting_a_model_frees_only_its_own_fingerprint(client, synth_dir) -> None:
    """The fingerprint is freed only while it names this job; only a succeeded job's model is forgotten."""
    from tests.service.conftest import upload_dir
    from worker.lifecycle import fingerprint_key

    jobs = client.app.state.services.jobs
    dataset_id = upload_dir(client, synth_dir).json()["id"]
    queued = jobs.get(client.post("/v1/jobs", json={"dataset_id": dataset_id}).json()["id"])
    assert jobs.forget_model(queued) == "queued"
    fp_key = fingerprint_key(queued["owner"], queued["fingerprint"])
    assert jobs.r.get(fp_key) == queued["id"] and jobs.get(queued["id"]).get("model_deleted_at") is None

    jobs.transition(queued["id"], ("queued",), state="succeeded", model_id=queued["id"])
    jobs.r.set(fp_key, "f" * 32)  # the fingerprint names another job now (this one's, say, re-claimed)
    assert jobs.forget_model(queued) == "succeeded"
    assert jobs.r.get(fp_key) == "f" * 32
    rec = jobs.get(queued["id"])
    assert rec["state"] == "succeeded" and rec["model_id"] is None and rec["model_deleted_at"] > 0


def test_a_model_deleted_between_its_card_and_its_load_is_a_404(client, trained: dict, monkeypatch) -> None:
    """Another API process deletes the model after this one read its card, before it loads: 404, not 500."""
    from service import serving

    svc = client.app.state.services
    model_id = trained["job_id"]

    def card_then_gone(store, caller, ident):
        card = read_card(store, caller, ident)
        svc.store.discard(svc.store.run_dir(ident))
        return card

    read_card = serving.visible_card
    monkeypatch.setattr(serving, "visible_card", card_then_gone)
    body = {"utterances": [_utterance(np.random.default_rng(0), "u0")]}
    r = client.post(f"/v1/models/{model_id}/predict", json=body)
    assert r.status_code == 404 and error_of(r)["field"] == "model_id", r.text
    assert not svc.models.loaded(model_id)


def test_a_model_published_before_its_job_records_success_is_not_deleted_yet(client, trained: dict) -> None:
    """The worker publishes the run, then records the job succeeded: a delete between the two removed the
    files while the job went on to say succeeded, its model gone and its run never to be trained again."""
    job_id = trained["job_id"]
    svc = client.app.state.services
    svc.jobs.r.hset(svc.jobs.key(job_id), "state", "running")  # the instant between publish and record
    r = client.delete(f"/v1/models/{job_id}")
    assert r.status_code == 409 and error_of(r)["field"] == "model_id", r.text
    assert "still running" in error_of(r)["message"]
    assert svc.store.run_dir(job_id) is not None and not svc.jobs.get(job_id).get("model_deleted_at")
    svc.jobs.r.hset(svc.jobs.key(job_id), "state", "succeeded")
    assert client.delete(f"/v1/models/{job_id}").status_code == 204
    assert svc.store.run_dir(job_id) is None


def test_the_run_of_a_job_that_ended_otherwise_is_deleted(client, trained: dict) -> None:
    # a run left by an attempt whose job was then cancelled or failed: nothing would ever remove it else
    job_id = trained["job_id"]
    svc = client.app.state.services
    svc.jobs.r.hset(svc.jobs.key(job_id), "state", "cancelled")
    assert client.delete(f"/v1/models/{job_id}").status_code == 204
    assert svc.store.run_dir(job_id) is None


def test_a_job_that_records_success_during_the_delete_keeps_its_model(client, trained: dict) -> None:
    """The job's state was read twice: it recorded success between the two reads, and its files went while
    it went on saying succeeded."""
    job_id = trained["job_id"]
    svc = client.app.state.services
    svc.jobs.r.hset(svc.jobs.key(job_id), "state", "running")
    forget = svc.jobs.forget_model

    def then_succeeds(job):
        state = forget(job)
        svc.jobs.r.hset(svc.jobs.key(job_id), "state", "succeeded")  # the worker's record, just after
        return state

    svc.jobs.forget_model = then_succeeds
    try:
        r = client.delete(f"/v1/models/{job_id}")
    finally:
        svc.jobs.forget_model = forget
    assert r.status_code == 409 and svc.store.run_dir(job_id) is not None, r.text
    assert client.get(f"/v1/jobs/{job_id}/labels").status_code == 200
