"""GET /v1/jobs/{id}/report in-process over a real Redis: the page and its data, the same access as the job's
other routes, 409 until the job has succeeded, the report built once and kept in the run directory, and no
server path in what is served."""

from __future__ import annotations

import asyncio
import base64
import re
import struct
from pathlib import Path

import pytest

from api_schemas.reports import LabelReportData
from service import reports
from tests.service.conftest import auth, make_key


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
    return struct.unpack(">II", png[16:24])


def test_report_page_and_data_of_a_finished_job(client, trained: dict, settings) -> None:
    job_id = trained["job_id"]
    page = client.get(f"/v1/jobs/{job_id}/report")
    assert page.status_code == 200, page.text[:500]
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert html.startswith("<!DOCTYPE html>") and "Label report: mug, seed 1111" in html
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 4, len(images)
    assert all(min(png_size(base64.b64decode(b))) > 100 for b in images)
    assert not re.search(r"<script|(?:src|href)=\"(?!data:|#)", html)  # nothing to load, nothing to run

    data = client.get(f"/v1/jobs/{job_id}/report", params={"format": "json"})
    assert data.status_code == 200 and data.headers["content-type"] == "application/json"
    report = LabelReportData.model_validate(data.json())
    assert report.run["name"] == job_id and report.run["strategy"] == "mug"
    # the dataset is named by its id, as the listings show it, not by the folder the store keeps it in
    short_id = trained["dataset_id"][:12]
    assert report.run["dataset"]["name"] == short_id and f"dataset {short_id} \u00b7 " in html
    assert "dataset data" not in html
    assert report.labels.modalities and report.disagreements.rows
    assert report.history is not None and "multitask" in report.history.stages
    for modality in report.labels.modalities:
        per = report.labels.per_modality[modality]
        assert len(per.scatter.y) == per.n == 80

    # nothing of the server's filesystem, nor the key's id (the datasets' folder names it)
    owner = client.app.state.services.store.datasets.iterdir().__next__().name
    for text in (html, data.text):
        assert str(settings.artifact_dir.resolve()) not in text and str(settings.artifact_dir) not in text
        assert owner not in text and "/tmp/" not in text


def test_report_is_built_once_and_kept_in_the_run_directory(
    client, trained: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = trained["job_id"]
    run_dir = client.app.state.services.store.run_dir(job_id)
    built: list[Path] = []
    real = reports.build_report

    def counted(path, *args, **kwargs):
        built.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(reports, "build_report", counted)
    first = client.get(f"/v1/jobs/{job_id}/report")
    assert first.status_code == 200 and len(built) == 1
    kept = run_dir / "report"
    assert (kept / "report.html").read_bytes() == first.content
    assert (kept / reports.STAMP).read_text().strip() == reports.report_version()
    assert (kept / "labels_vs_multimodal.png").is_file() and (kept / "report.json").is_file()
    again = client.get(f"/v1/jobs/{job_id}/report")
    data = client.get(f"/v1/jobs/{job_id}/report?format=json")
    assert again.content == first.content and data.content == (kept / "report.json").read_bytes()
    assert len(built) == 1  # both read from the run directory
    # drawn by another code version: built again
    (kept / reports.STAMP).write_text("0.0.0+other\n")
    assert client.get(f"/v1/jobs/{job_id}/report").content == first.content and len(built) == 2
    # by the same library and other service code (an image has no git commit to tell them apart): again
    (kept / reports.STAMP).write_text(reports.code_version() + "\n")
    assert client.get(f"/v1/jobs/{job_id}/report").content == first.content and len(built) == 3


def test_report_served_when_the_volume_cannot_keep_it(
    client, trained: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*_: object) -> None:
        raise ValueError("out: cannot write the report: Read-only file system")

    monkeypatch.setattr(reports, "write_files", read_only)
    r = client.get(f"/v1/jobs/{trained['job_id']}/report")
    assert r.status_code == 200 and '<img src="data:image/png' in r.text
    assert not (
        client.app.state.services.store.run_dir(trained["job_id"]) / "report" / reports.STAMP
    ).exists()
    assert client.get(f"/v1/jobs/{trained['job_id']}/report?format=json").json()["run"]["strategy"] == "mug"


def test_concurrent_requests_build_a_report_once(trained: dict, client, monkeypatch) -> None:
    run_dir = client.app.state.services.store.run_dir(trained["job_id"])
    calls: list[int] = []
    real = reports.build_report
    monkeypatch.setattr(reports, "build_report", lambda path, **kw: calls.append(1) or real(path, **kw))

    async def three() -> list[reports.ServedReport]:
        cache = reports.ReportCache()
        return await asyncio.gather(*(cache.get(run_dir, trained["dataset_id"]) for _ in range(3)))

    served = asyncio.run(three())
    assert len(calls) == 1 and len({s.html for s in served}) == 1


def test_report_needs_a_finished_job_of_the_callers_key(client, trained: dict, settings, synth_dir) -> None:
    job_id = trained["job_id"]
    queued = client.post("/v1/jobs", json={"dataset_id": trained["dataset_id"], "seed": 7}).json()
    assert queued["links"]["report"] is None
    r = client.get(f"/v1/jobs/{queued['id']}/report")
    assert r.status_code == 409
    err = error_of(r)
    assert err["field"] == "job_id" and err["message"].endswith("it is queued") and err["code"] == "conflict"
    assert client.get(f"/v1/jobs/{job_id}").json()["links"]["report"] == f"/v1/jobs/{job_id}/report"
    bad = client.get(f"/v1/jobs/{job_id}/report", params={"format": "pdf"})
    assert bad.status_code == 422 and error_of(bad)["field"] == "query.format"
    for unknown in ("0" * 32, "nope"):
        r = client.get(f"/v1/jobs/{unknown}/report")
        assert r.status_code == 404 and error_of(r)["field"] == "job_id"
    other = auth(make_key(settings))
    r = client.get(f"/v1/jobs/{job_id}/report", headers=other)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"  # not 403: it is not there for them
    assert client.get(f"/v1/jobs/{job_id}/report", headers={"Authorization": ""}).status_code == 401
    assert client.get(f"/v1/jobs/{job_id}/report", headers=client.admin_headers).status_code == 200


def test_scrub_paths_cuts_absolute_paths_in_sentences_only() -> None:
    note = "the dataset (data) cannot be read: /srv/artifacts/datasets/0123abcd/x/data/utterances.csv: bad"
    out = reports.scrub_paths({"notes": [note], "rows": [{"transcript": "see /usr/bin here", "id": "a/b"}]})
    assert out["notes"] == ["the dataset (data) cannot be read: utterances.csv: bad"]
    assert out["rows"] == [{"transcript": "see /usr/bin here", "id": "a/b"}]
    assert reports.scrub_paths("1/2 and/or ~/x") == "1/2 and/or ~/x"


def test_openapi_documents_the_report(client) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/jobs/{job_id}/report"]["get"]
    content = op["responses"]["200"]["content"]
    assert set(content) == {"text/html", "application/json"}
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/LabelReportData"}
    assert {"404", "409", "422", "401"} <= set(op["responses"])
    assert [p["name"] for p in op["parameters"]] == ["job_id", "format"]


def test_utterance_ids_are_reported_as_the_dataset_has_them(client, tmp_path: Path, synth_dir: Path) -> None:
    """Ids that look like paths or hold markup: the path scrub cut them ("/clips/v1/3" read "3", and
    "<script>x</script>" read "<script>x<script>"); the page escapes them, the data holds them as given."""
    import numpy as np
    import pandas as pd

    from tests.service.conftest import TINY, upload_dir
    from worker.tasks import run_job

    table = pd.read_csv(synth_dir / "utterances.csv", dtype=str, keep_default_na=False)
    shapes = ["/clips/v{}/3", "<script>alert({})</script>", "';alert({});//", "a/b/{}"]
    ids = [shapes[i % len(shapes)].format(i) for i in range(len(table))]
    table["id"] = ids
    (tmp_path / "ds").mkdir()
    table.to_csv(tmp_path / "ds" / "utterances.csv", index=False)
    arrays = dict(np.load(synth_dir / "features.npz", allow_pickle=False))
    np.savez(tmp_path / "ds" / "features.npz", **{**arrays, "id": np.array(ids)})
    dataset_id = upload_dir(client, tmp_path / "ds").json()["id"]
    job = client.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": TINY}).json()
    svc = client.app.state.services
    assert run_job(job["id"], svc.jobs, svc.store, svc.settings) == "succeeded"

    rows = client.get(f"/v1/jobs/{job['id']}/report?format=json").json()["disagreements"]["rows"]
    assert rows and {r["id"] for r in rows} <= set(ids)
    page = client.get(f"/v1/jobs/{job['id']}/report").text
    for row in rows:
        shown = row["id"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert shown.replace("'", "&#x27;") in page
    assert "<script>alert(" not in page
