"""``unilabel-remote jobs | datasets | models --offset N --limit N | --all`` against a running API over Redis:
the pages hold the right items, newest first, and --all gathers them across requests. The items are cheap, as
in test_page_browser.py: jobs claimed in Redis without a task, datasets' summaries copied on disk and model
cards written there (no worker runs)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from remote.cli import main
from remote.client import LabelClient
from remote.localstack import LocalStack, running_stack
from tests.service.conftest import _need_redis

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    _need_redis()
    with running_stack(tmp_path_factory.mktemp("paging") / "stack", worker=False) as s:
        yield s


@pytest.fixture(scope="module")
def listed(stack: LocalStack, synth_dir: Path) -> dict:
    """A key's 5 jobs, 5 datasets and 5 models, each list newest first, and the key."""
    from worker.lifecycle import JobStore

    key = stack.create_key("paging-cli")
    with LabelClient(stack.url, timeout=60, api_key=key) as api:
        uploaded = api.upload(synth_dir)
        owner = api.usage()["key_id"]
    store = JobStore.from_url(stack.redis_url)
    spec = {"owner": owner, "dataset_id": "d" * 64, "strategy": "mug", "hyperparameters": {}}
    jobs = []
    for seed in range(5):  # cancelled at once: none counts against the key's job quotas
        job = store.claim({**spec, "seed": seed, "code_version": "paging-test"})[0]
        store.transition(job, ("queued",), state="cancelled", finished_at=time.time())
        jobs.append(job)
    summary = json.loads(
        (stack.artifact_dir / "datasets" / owner / uploaded["id"] / "summary.json").read_text()
    )
    datasets = [uploaded["id"]]
    for i in range(1, 5):  # each a second newer than the one before
        ident = f"{owner}{i:048x}"
        (stack.artifact_dir / "datasets" / owner / ident).mkdir(parents=True)
        made = {**summary, "id": ident, "created_at": summary["created_at"] + i}
        (stack.artifact_dir / "datasets" / owner / ident / "summary.json").write_text(json.dumps(made))
        datasets.append(ident)
    models = [f"{owner}{i:016x}" for i in range(5)]
    for i, ident in enumerate(models):
        card = {
            "id": ident,
            "job_id": ident,
            "owner": owner,
            "dataset_id": "d" * 64,
            "dataset_sha256": None,
            "strategy": "copy",
            "seed": i,
            "hyperparameters": {},
            "metrics": {},
            "input_spec": {},
            "created_at": 1_800_000_000 + i,
            "code_version": "paging-test",
        }
        (stack.artifact_dir / "runs" / ident).mkdir(parents=True)
        (stack.artifact_dir / "runs" / ident / "card.json").write_text(json.dumps(card))
    newest_first = {"jobs": jobs[::-1], "datasets": datasets[::-1], "models": models[::-1]}
    return {"key": key, **newest_first}


def _run(stack: LocalStack, key: str, capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(["--url", stack.url, "--key", key, *argv]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("kind", ["jobs", "datasets", "models"])
def test_offset_limit_and_all_list_the_right_items_in_order(
    stack: LocalStack, listed: dict, kind: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, ids = listed["key"], listed[kind]

    def table(*argv: str) -> tuple[list[str], str]:
        *rows, footer = _run(stack, key, capsys, kind, *argv).splitlines()
        return [row.split()[0] for row in rows[1:]], footer  # each row's id, below the header

    assert table("--limit", "2") == (ids[:2], f"{kind} 1–2 of 5 (--offset 2 --limit 2 for older)")
    assert table("--offset", "2", "--limit", "2") == (
        ids[2:4],
        f"{kind} 3–4 of 5 (--offset 4 --limit 2 for older)",
    )
    assert table("--offset", "4", "--limit", "2") == (ids[4:], f"{kind} 5–5 of 5")
    assert table("--offset", "3") == (ids[3:], f"{kind} 4–5 of 5")
    assert table("--offset", "9") == ([], f"no {kind} at --offset 9, of 5 (--offset 0 for the oldest)")
    assert table() == (ids, f"5 {kind}")  # the whole list: said as before
    page = json.loads(_run(stack, key, capsys, kind, "--offset", "1", "--limit", "3", "--json"))
    assert [item["id"] for item in page["items"]] == ids[1:4] and page["total"] == 5

    monkeypatch.setattr("remote.paging.PAGE_MAX", 2)  # --all's pages as small as the list: three requests
    every = json.loads(_run(stack, key, capsys, kind, "--all", "--json"))
    assert [item["id"] for item in every["items"]] == ids and every["total"] == 5
    assert table("--all", "--offset", "1") == (ids[1:], f"{kind} 2–5 of 5")


def test_jobs_state_pages_too(stack: LocalStack, listed: dict, capsys: pytest.CaptureFixture) -> None:
    out = _run(stack, listed["key"], capsys, "jobs", "--state", "cancelled", "--offset", "1", "--limit", "2")
    *rows, footer = out.splitlines()
    assert [row.split()[0] for row in rows[1:]] == listed["jobs"][1:3]
    assert footer == "jobs 2–3 of 5 (--offset 3 --limit 2 for older)"
    assert _run(stack, listed["key"], capsys, "jobs", "--state", "queued", "--offset", "2") == "no jobs\n"
