"""The page at / in a real browser: headless Chromium (Debian's ``chromium``) loads it from a running stack
(redis-server, a Celery worker and the API under uvicorn, all on loopback) with the key in the fragment, and
the test reads what the page shows from the DOM Chromium dumps: each job's row and state text, a live job's
progress refreshed by polling, the finished job's report in the page's viewer with every figure decoded
(naturalWidth > 0); and /docs rendered by Swagger UI from the app's own assets.

Why --dump-dom rather than Selenium: one command per check, no driver to match Chromium's version and no extra
Python package. Choosing files in the upload form needs more: that test drives Chromium over the DevTools
protocol on a pipe (tests/service/cdp.py), still with no driver or package. The page writes what it shows
into data- attributes (its modules, service/static/*.js), and --virtual-time-budget lets its timers (polling)
run while Chromium waits for every fetch.
The flags turn off Chromium's own traffic (component updates, sync, QUIC ...): in a sandbox without a network
those connections are refused, and they have nothing to do with the page.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from remote.client import LabelClient
from remote.listing import size_text
from remote.localstack import LocalStack, running_stack
from tests.service.conftest import TINY, _need_redis

pytestmark = pytest.mark.slow
INSTALL = "apt-get install -y chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",  # as root (CI) Chromium refuses to start with its sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# runs long enough to be seen running (about a minute here; cancelled after); selfmm_weight is a setting
# MUG does not read, so the job has a note to show
# a job that runs until the module's tests are done: at the default batch size (3 batches an epoch here) it
# trained in 29 s on a fast host, before the test that needs it still running; batches of 4 make 20 an epoch
LIVE = {**TINY, "pretrain_epochs": 1000, "meta_epochs": 1000, "batch_size": 4, "selfmm_weight": 2}


def chromium() -> str:
    """Chromium's executable; a skip naming the install command, or a failure when CI is set."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        message = f"chromium is not installed ({INSTALL}; scripts/test.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


def run_chromium(url: str, profile: Path, *args: str, budget_ms: int = 8000, timeout: float = 120) -> str:
    """Chromium's standard output for ``url``, after ``budget_ms`` of the page's virtual time."""
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *args, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


class Elements(HTMLParser):
    """The attributes and text of the body, of every element with an id, of every job's, dataset's and model's
    row."""

    VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
    )

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self.rows: dict[str, dict[str, str]] = {}
        self.datasets: dict[str, dict[str, str]] = {}
        self.models: dict[str, dict[str, str]] = {}
        self.body: dict[str, str] = {}
        self._open: list[tuple[str, dict[str, str], list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.body = {k: v or "" for k, v in attrs}
        if tag not in self.VOID:
            self._open.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_data(self, data: str) -> None:
        for _, _, texts in self._open:
            texts.append(data)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            name, attrs, texts = self._open.pop()
            attrs["text"] = " ".join("".join(texts).split())
            if attrs.get("id"):
                self.by_id[attrs["id"]] = attrs
            if name == "tr" and attrs.get("data-job-id"):
                self.rows[attrs["data-job-id"]] = attrs
            if name == "tr" and attrs.get("data-dataset-id"):
                self.datasets[attrs["data-dataset-id"]] = attrs
            if name == "tr" and attrs.get("data-model-id"):
                self.models[attrs["data-model-id"]] = attrs
            if name == tag:
                return


def parse(dom: str) -> Elements:
    parser = Elements()
    parser.feed(dom)
    return parser


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    chromium()  # skip before starting anything
    _need_redis()
    # PUBLIC_DOCS as scripts/stack.py sets it: Swagger UI fetches /openapi.json without a key
    env = {"WORKER_TORCH_THREADS": "1", "PUBLIC_DOCS": "1"}
    with running_stack(tmp_path_factory.mktemp("browser"), extra_env=env) as s:
        yield s


@pytest.fixture(scope="module")
def jobs(stack: LocalStack, synth_dir: Path):
    """A TINY job that succeeded, then one that runs (cancelled at the end)."""
    with LabelClient(stack.url, timeout=60, api_key=stack.api_key) as api:
        dataset = api.upload(synth_dir)
        done = api.wait(api.submit(dataset["id"], "mug", 1111, TINY)["id"], timeout=120, poll=0.1)
        assert done["state"] == "succeeded", done
        live = api.submit(dataset["id"], "mug", 7, LIVE)
        deadline = time.monotonic() + 60
        while api.job(live["id"])["stage"] != "pretrain" and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            yield {"done": done, "live": live, "dataset": dataset}
        finally:
            if api.job(live["id"])["state"] in ("queued", "running"):  # the last test cancels it on the page
                api.cancel(live["id"])


def test_page_shows_jobs_live_and_the_report_with_its_figures(
    stack: LocalStack, jobs: dict, tmp_path: Path
) -> None:
    done, live = jobs["done"]["id"], jobs["live"]["id"]
    url = f"{stack.url}/#key={stack.api_key}&job={done}"
    page = parse(run_chromium(url, tmp_path / "profile", "--dump-dom", budget_ms=9000))
    assert page.body.get("data-state") == "ready", (page.body, page.by_id.get("status"))
    status = page.by_id["status"]["text"]
    assert "2 jobs, 1 queued or running · 1 dataset · 1 model" in status, status
    assert int(page.body["data-refreshes"]) >= 3, page.body  # polled while a job runs

    row = page.rows[done]
    assert row["data-state"] == "succeeded" and "succeeded" in row["text"] and "report" in row["text"]
    assert "labels CSV" in row["text"]
    running = page.rows[live]
    assert running["data-state"] == "running" and "running" in running["text"], running
    assert re.search(r"(pretrain|meta) epoch \d+/\d+ · \d+%", running["text"]), running  # stage and progress
    assert "%note: selfmm_weight: not read by strategy mug; it changes nothing" in running["text"], running
    assert "note:" not in row["text"]
    model = page.models[jobs["done"]["model_id"]]  # its files in one zip (GET /v1/models/{id}/archive)
    assert "report" in model["text"] and "model zip" in model["text"], model

    # the splits and modalities in their usual order (stored summaries' keys come sorted by name)
    dataset = page.datasets[jobs["dataset"]["id"]]
    assert "130train 80 · valid 30 · test 20text [32] · audio [16] · vision [24]" in dataset["text"], dataset

    viewer = page.by_id["viewer"]
    assert viewer["data-job-id"] == done and viewer["data-state"] == "shown", viewer
    images, decoded = int(viewer["data-images"]), int(viewer["data-decoded"])
    assert images >= 4 and decoded == images, viewer  # every figure of the report decoded
    # the key left the address bar: only the job to show stays in the fragment
    assert page.body.get("data-location", "").endswith(f"/#job={done}"), page.body


def test_page_shows_the_jobs_of_one_state(stack: LocalStack, jobs: dict, tmp_path: Path) -> None:
    """#state=S (the list's state picker, kept in the address bar): only that state's jobs, counted so."""
    done, live = jobs["done"]["id"], jobs["live"]["id"]
    url = f"{stack.url}/#key={stack.api_key}&state=succeeded"
    page = parse(run_chromium(url, tmp_path / "profile", "--dump-dom", budget_ms=4000))
    assert page.body.get("data-state") == "ready", (page.body, page.by_id.get("status"))
    assert list(page.rows) == [done], page.rows
    assert page.by_id["status"]["text"].startswith("1 succeeded job · 1 dataset"), page.by_id["status"]
    assert page.body.get("data-location", "").endswith("/#state=succeeded"), page.body  # the key left
    url = f"{stack.url}/#key={stack.api_key}&state=failed"
    page = parse(run_chromium(url, tmp_path / "profile2", "--dump-dom", budget_ms=4000))
    assert page.rows == {} and "hidden" not in page.by_id["jobs-none"], page.by_id["jobs-none"]
    assert "hidden" in page.by_id["jobs-empty"] and live not in str(page.rows)


def test_page_without_a_key_asks_for_one(stack: LocalStack, tmp_path: Path) -> None:
    page = parse(run_chromium(f"{stack.url}/", tmp_path / "profile", "--dump-dom", budget_ms=3000))
    assert page.body.get("data-state") == "no-key"
    assert "hidden" not in page.by_id["key-section"] and "hidden" in page.by_id["main"]
    bad = parse(
        run_chromium(f"{stack.url}/#key=ulk_nope", tmp_path / "profile2", "--dump-dom", budget_ms=3000)
    )
    assert bad.body.get("data-state") == "no-key"
    assert "The key was not accepted: HTTP 401 unauthorized" in bad.by_id["status"]["text"]


def test_page_shows_what_the_key_uses_of_its_quotas(
    stack: LocalStack, synth_dir: Path, tmp_path: Path
) -> None:
    """A key saw its quotas only in the 429 or 413 that refused it. The page shows each one's use under the
    status line (GET /v1/usage) and marks the one at its limit."""
    key = stack.create_key("quota-page", False, "uploads_per_minute=1")
    with LabelClient(stack.url, timeout=60, api_key=key) as api:
        left = api.usage()["minute_ends_in_s"]
        if left < 20:  # the upload and the page in one minute's count
            time.sleep(left + 0.2)
        api.upload(synth_dir)
        page = parse(
            run_chromium(f"{stack.url}/#key={key}", tmp_path / "profile", "--dump-dom", budget_ms=3000)
        )
        stored = api.usage()["stored_bytes"]["used"]
    assert page.body.get("data-state") == "ready", (page.body, page.by_id.get("status"))
    usage = page.by_id["usage"]
    assert "hidden" not in usage and usage["text"].startswith("Key quota-page: "), usage
    assert f"Key quota-page: {size_text(stored)} of 20.0 GiB stored · " in usage["text"], usage
    assert (
        "0 of 20 jobs queued · 0 of 25 queued or running · 1 of 1 uploads this minute · 0 of "
        in usage["text"]
    )
    assert usage["text"].endswith(" predictions this minute"), usage
    assert page.by_id["usage-uploads_per_minute"]["data-full"] == "true"  # its 429 comes next
    assert page.by_id["usage-stored_bytes"]["data-full"] == "false"


def test_docs_render_from_the_apps_own_assets(stack: LocalStack, tmp_path: Path) -> None:
    dom = run_chromium(f"{stack.url}/docs", tmp_path / "profile", "--dump-dom", budget_ms=6000)
    # Swagger UI drew the operations from /openapi.json: none of this is in the HTML the app sends
    assert 'class="swagger-ui' in dom and "/v1/jobs/{job_id}/report" in dom, dom[-2000:]


def test_screenshot_of_the_page(stack: LocalStack, jobs: dict, tmp_path: Path) -> None:
    """The command docs/service.md gives for a screenshot works: a PNG of the page with its lists."""
    shot = tmp_path / "page.png"
    url = f"{stack.url}/#key={stack.api_key}"
    run_chromium(url, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1300", budget_ms=6000)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert struct.unpack(">II", png[16:24]) == (1280, 1300)


def _submit(browser, form: str) -> str:
    """Submit #FORM-form as its button would; then its message, once the request has ended, as
    "done TEXT" or "failed TEXT"."""
    browser.evaluate(
        f"document.getElementById('{form}-message').dataset.outcome = '';"
        f"document.getElementById('{form}-form').requestSubmit()"
    )
    return browser.wait_for(
        f"(m => m.dataset.outcome && `${{m.dataset.outcome}} ${{m.textContent}}`)"
        f"(document.getElementById('{form}-message'))"
    )


def test_upload_start_and_cancel_a_job_from_the_page(
    stack: LocalStack, jobs: dict, synth_dir: Path, tmp_path: Path
) -> None:
    """The page uploads a dataset (its two files chosen in the file input), starts a job on it with a
    strategy, seed, preset and settings, and cancels it from its row; what the API refuses is shown in the
    form with its fields. Driven over the DevTools protocol (tests/service/cdp.py): choosing files and
    clicking need more than --dump-dom."""
    from tests.service.cdp import Browser

    lone = tmp_path / "lone" / "utterances.csv"
    lone.parent.mkdir()
    lone.write_bytes((synth_dir / "utterances.csv").read_bytes())
    dataset = jobs["dataset"]["id"]
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={stack.api_key}")
        browser.wait_for("document.body?.dataset.state === 'ready'")

        browser.set_files("upload-files", [lone])  # one of the two files: refused, naming the other
        said = _submit(browser, "upload")
        assert said.startswith("failed HTTP 422") and "[features]" in said, said
        named = tmp_path / "mine"  # any names: the page tells the files by their extensions
        named.mkdir()
        (named / "mosi-feats.npz").write_bytes((synth_dir / "features.npz").read_bytes())
        (named / "mosi.CSV").write_bytes((synth_dir / "utterances.csv").read_bytes())
        browser.set_files("upload-files", [named / "mosi-feats.npz", named / "mosi.CSV"])
        said = _submit(browser, "upload")
        uploaded = f"done Dataset {dataset[:10]}: 130 utterances (uploaded before); start a job on it above."
        assert said == uploaded, said
        assert browser.wait_for("document.getElementById('job-dataset').value") == dataset

        browser.evaluate("document.getElementById('job-settings').value = 'beta'")
        assert _submit(browser, "job") == 'failed settings: expected name=value, got "beta"'
        # batch_size 16: selfmm steps once per 4 batches, and 80 train rows make 3 batches of the default 32
        settings = "pretrain_epochs=1000 meta_epochs=1 multitask_max_epochs=1 beta=0.5 modalities=text,audio"
        settings += " batch_size=16"
        browser.evaluate(
            "document.getElementById('job-strategy').value = 'selfmm';"
            "document.getElementById('job-seed').value = '42';"
            "document.getElementById('job-preset').value = 'mosi';"
            f"document.getElementById('job-settings').value = '{settings}'"
        )
        said = _submit(browser, "job")
        assert said.startswith("done Job ") and said.endswith(" queued."), said
        job_id = browser.wait_for(
            "Array.from(document.querySelectorAll('#jobs tr[data-job-id]'), (tr) => tr.dataset.jobId)"
            f".find((id) => id.startsWith('{said.split()[2]}'))"
        )
        again = _submit(browser, "job")  # the same run again: that job, said to be it, not a new one
        rejoined = "is this run (same dataset, strategy, seed and settings), queued already: nothing new was "
        rejoined += "queued."
        assert again == f"done Job {job_id[:10]} {rejoined}", again
        with LabelClient(stack.url, timeout=60, api_key=stack.api_key) as api:
            job = api.job(job_id)
            assert (job["dataset_id"], job["strategy"], job["seed"]) == (dataset, "selfmm", 42), job
            hp = job["hyperparameters"]
            assert (hp["meta_epochs"], hp["beta"], hp["modalities"]) == (1, 0.5, ["text", "audio"]), hp
            assert job["preset"] == "mosi", job
            # and the row's cancel, once confirmed, ends it (queued behind the live job: cancelled at once)
            row = f"document.querySelector('#jobs tr[data-job-id=\"{job_id}\"]')"
            browser.evaluate(f"{row}.querySelector('button[data-action=\"cancel\"]').click()")
            asks = f"{row}.querySelector('button[data-action=\"cancel-yes\"]')"
            state = (
                f"[{asks} !== null, document.activeElement.outerHTML.slice(0, 120), "
                "document.body.dataset.refreshes, document.getElementById('notice').textContent]"
            )
            try:
                assert browser.wait_for(f"{asks} !== null && document.activeElement === {asks}")  # on "yes"
            except TimeoutError:
                pytest.fail(f"no focus on yes: {browser.evaluate(state)}")
            assert browser.evaluate(f"{row}.dataset.state") == "queued"  # nothing sent yet
            browser.evaluate(f"{asks}.click()")
            assert browser.wait_for(f"{row}?.dataset.state === 'cancelled' && {row}.textContent")
            assert api.job(job_id)["state"] == "cancelled"
            assert browser.evaluate(f"{row}.querySelector('button') === null")  # nothing left to cancel
        # a running job: stopped between epochs
        live = f"document.querySelector('#jobs tr[data-job-id=\"{jobs['live']['id']}\"]')"
        browser.evaluate(f"{live}.querySelector('button[data-action=\"cancel\"]').click()")
        browser.wait_for(f"{live}.querySelector('button[data-action=\"cancel-yes\"]') !== null")
        browser.evaluate(f"{live}.querySelector('button[data-action=\"cancel-yes\"]').click()")
        assert browser.wait_for(f"{live}?.dataset.state === 'cancelled'", timeout=90)


def test_delete_a_dataset_from_the_page(stack: LocalStack, synth_dir: Path, tmp_path: Path) -> None:
    """A dataset's delete asks in its row (the question outlives a refresh), is refused while a job uses the
    dataset (the API's 409 in the status line, the row kept), and once nothing does, removes it."""
    from tests.service.cdp import Browser

    other = tmp_path / "other"  # a dataset of its own: the other tests' stays
    other.mkdir()
    (other / "features.npz").write_bytes((synth_dir / "features.npz").read_bytes())
    lines = (synth_dir / "utterances.csv").read_text().splitlines()
    (other / "utterances.csv").write_text("\n".join([*lines, ""]) + "\n")  # other bytes, another id
    with LabelClient(stack.url, timeout=60, api_key=stack.api_key) as api:
        dataset = api.upload(other)["id"]
        user = api.submit(dataset, "mug", 8, LIVE)["id"]
        row = f"document.querySelector('#datasets tr[data-dataset-id=\"{dataset}\"]')"
        click = f"{row}.querySelector('button[data-action=\"%s\"]').click()"
        with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
            browser.open(f"{stack.url}/#key={stack.api_key}")
            browser.wait_for(f"document.body?.dataset.state === 'ready' && {row} !== null")
            browser.evaluate(click % "delete")
            assert browser.wait_for(f"{row}.querySelector('button[data-action=\"delete-yes\"]') !== null")
            refreshes = browser.evaluate("document.body.dataset.refreshes")
            browser.evaluate("document.getElementById('refresh').click()")
            browser.wait_for(f"document.body.dataset.refreshes !== '{refreshes}'")
            assert browser.evaluate(f"{row}.textContent").endswith("delete? yesno")  # still asking
            browser.evaluate(click % "delete-no")
            assert browser.wait_for(f"{row}.querySelector('button[data-action=\"delete\"]') !== null")

            browser.evaluate(click % "delete")
            browser.wait_for(f"{row}.querySelector('button[data-action=\"delete-yes\"]') !== null")
            browser.evaluate(click % "delete-yes")
            notice = (
                "!document.getElementById('notice').hidden && document.getElementById('notice').textContent"
            )
            said = browser.wait_for(notice)
            assert "HTTP 409" in said and user in said and "cancel them first" in said, said
            assert browser.wait_for(f"{row}.querySelector('button[data-action=\"delete\"]') !== null")
            refreshes = browser.evaluate("document.body.dataset.refreshes")
            browser.evaluate("document.getElementById('refresh').click()")
            browser.wait_for(f"document.body.dataset.refreshes !== '{refreshes}'")
            assert browser.evaluate(notice) == said  # the refusal outlives refreshes, until the next action
            assert dataset in {d["id"] for d in api.datasets()["items"]}

            api.cancel(user)
            assert api.wait(user, timeout=90, poll=0.2)["state"] == "cancelled"
            browser.evaluate(click % "delete")
            browser.wait_for(f"{row}.querySelector('button[data-action=\"delete-yes\"]') !== null")
            browser.evaluate(click % "delete-yes")
            assert browser.wait_for(f"{row} === null && document.body.dataset.state === 'ready'")
            assert dataset not in {d["id"] for d in api.datasets()["items"]}


def test_delete_a_model_from_the_page(stack: LocalStack, synth_dir: Path, tmp_path: Path) -> None:
    """A model's delete asks in its row as a dataset's does; once deleted, the model's row goes and its job's
    row says so, without the report and labels it no longer has."""
    from tests.service.cdp import Browser

    with LabelClient(stack.url, timeout=60, api_key=stack.api_key) as api:
        dataset = api.upload(synth_dir)["id"]
        job = api.wait(api.submit(dataset, "mug", 5, TINY)["id"], timeout=120, poll=0.1)  # a model of its own
        assert job["state"] == "succeeded", job
        model = job["model_id"]
        row = f"document.querySelector('#models tr[data-model-id=\"{model}\"]')"
        job_row = f"document.querySelector('#jobs tr[data-job-id=\"{job['id']}\"]')"
        click = f"{row}.querySelector('button[data-action=\"%s\"]').click()"
        with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
            browser.open(f"{stack.url}/#key={stack.api_key}")
            browser.wait_for(f"document.body?.dataset.state === 'ready' && {row} !== null")
            browser.evaluate(f"{job_row}.querySelector('button[data-action=\"report\"]').click()")
            browser.wait_for("document.getElementById('viewer').dataset.state === 'shown'")
            browser.evaluate(click % "delete")
            browser.wait_for(f"{row}.querySelector('button[data-action=\"delete-yes\"]') !== null")
            browser.evaluate(click % "delete-yes")
            assert browser.wait_for(f"{row} === null && document.body.dataset.state === 'ready'")
            said = browser.wait_for(
                f"{job_row}.textContent.includes('model deleted') && {job_row}.textContent"
            )
            assert "done · model deleted" in said, said
            assert browser.evaluate(f"{job_row}.querySelector('button[data-action=\"report\"]') === null")
            assert browser.evaluate("document.getElementById('viewer').hidden")  # its report closed with it
            # an address that asks for its report (#job=) opens the page without it, not with a 410
            browser.open(f"{stack.url}/#key={stack.api_key}&job={job['id']}")
            browser.wait_for(f"document.body?.dataset.state === 'ready' && {job_row} !== null")
            assert browser.evaluate("document.getElementById('viewer').hidden")
        assert model not in {m["id"] for m in api.models()["items"]}
        assert api.job(job["id"])["model_deleted_at"]


def test_an_admin_page_says_whose_dataset_and_deletes_that_one(
    stack: LocalStack, synth_dir: Path, tmp_path: Path
) -> None:
    """Two keys' uploads of the same files are two datasets with one id: an admin key's page shows whose each
    row is, asks and deletes in that row alone, and offers only the admin key's own datasets to train on."""
    from tests.service.cdp import Browser

    variant = tmp_path / "variant"  # files no other test uploads
    variant.mkdir()
    (variant / "features.npz").write_bytes((synth_dir / "features.npz").read_bytes())
    (variant / "utterances.csv").write_bytes(
        (synth_dir / "utterances.csv").read_bytes().replace(b"\n", b"\r\n")
    )
    owners = {}
    for name in ("page-a", "page-b"):
        key = stack.create_key(name)
        with LabelClient(stack.url, timeout=60, api_key=key) as api:
            dataset = api.upload(variant)["id"]
            owners[name] = (key, api.usage()["key_id"])
    rows = f"document.querySelectorAll('#datasets tr[data-dataset-id=\"{dataset}\"]')"
    row_of = "document.querySelector('#datasets tr[data-owner=\"%s\"]')"
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={stack.admin_key}")
        browser.wait_for(f"document.body?.dataset.state === 'ready' && {rows}.length === 2")
        a_row, b_row = row_of % owners["page-a"][1], row_of % owners["page-b"][1]
        assert f"key {owners['page-b'][1]}" in browser.evaluate(f"{b_row}.textContent")
        browser.evaluate(f"{b_row}.querySelector('button[data-action=\"delete\"]').click()")
        browser.wait_for(f"{b_row}.querySelector('button[data-action=\"delete-yes\"]') !== null")
        assert browser.evaluate(f"{a_row}.querySelector('button[data-action=\"delete-yes\"]') === null")
        browser.evaluate(f"{b_row}.querySelector('button[data-action=\"delete-yes\"]').click()")
        assert browser.wait_for(f"{rows}.length === 1 && {a_row} !== null")
        # the job form: an admin trains on its own datasets only (it has none here)
        options = "Array.from(document.getElementById('job-dataset').options, (o) => o.value)"
        assert dataset not in browser.evaluate(options)
    with LabelClient(stack.url, timeout=60, api_key=owners["page-b"][0]) as api:
        assert api.datasets()["total"] == 0
    with LabelClient(stack.url, timeout=60, api_key=owners["page-a"][0]) as api:
        assert [d["id"] for d in api.datasets()["items"]] == [dataset]


def test_the_page_on_a_phone_its_address_and_its_messages(
    stack: LocalStack, jobs: dict, synth_dir: Path, tmp_path: Path
) -> None:
    """On a 390 px phone the page keeps the screen's width (the tables scroll in their boxes); the address
    follows the report shown, which closes when its model is deleted elsewhere; an upload's problems are each
    said once; a setting's number is read as `unilabel train --set` reads it."""
    from tests.service.cdp import Browser

    with LabelClient(stack.url, timeout=60, api_key=stack.api_key) as api:
        live = jobs["live"]["id"]  # cancelled on the page by an earlier test; run alone, its job would wait
        if api.job(live)["state"] in ("queued", "running"):  # behind it on the one worker
            api.cancel(live)
        dataset = api.upload(synth_dir)["id"]
        job = api.wait(
            api.submit(dataset, "copy", 6, TINY)["id"], timeout=120, poll=0.1
        )  # a model of its own
        assert job["state"] == "succeeded", job
        job_row = f"document.querySelector('#jobs tr[data-job-id=\"{job['id']}\"]')"
        with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
            browser.open(f"{stack.url}/#key={stack.api_key}")
            browser.wait_for("document.body?.dataset.state === 'ready'")
            metrics = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
            browser.send("Emulation.setDeviceMetricsOverride", metrics)  # the page lays itself out again
            browser.wait_for(f"document.documentElement.clientWidth === 390 && {job_row} !== null")
            assert browser.evaluate("document.documentElement.scrollWidth") <= 390
            browser.send("Emulation.clearDeviceMetricsOverride", {})

            saved = tmp_path / "downloads"
            behavior = {"behavior": "allow", "downloadPath": str(saved)}
            browser.send("Browser.setDownloadBehavior", behavior, session=False)
            browser.evaluate(f"{job_row}.querySelector('button[data-action=\"labels\"]').click()")
            labels = saved / f"labels-{job['id']}.csv"
            deadline = time.monotonic() + 30
            while not labels.is_file() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert labels.read_text().startswith("id,label,label_T,label_A,label_V\n")
            again = f"{job_row}.querySelector('button[data-action=\"labels\"]')"
            assert browser.wait_for(f"{again}.textContent === 'labels CSV' && !{again}.disabled")

            # the keyboard focus stays on the button it was on across a refresh, in its own list (a model's
            # report button does what its job's does, in another table)
            model_report = (
                f'document.querySelector(\'#models tr[data-model-id="{job["model_id"]}"] '
                'button[data-action="report"]\')'
            )
            browser.evaluate(f"{model_report}.focus()")
            refreshes = browser.evaluate("document.body.dataset.refreshes")
            browser.evaluate("document.getElementById('refresh').click()")  # click() leaves the focus
            browser.wait_for(f"document.body.dataset.refreshes !== '{refreshes}'")
            assert browser.evaluate(f"document.activeElement === {model_report}")

            browser.evaluate(f"{job_row}.querySelector('button[data-action=\"report\"]').click()")
            browser.wait_for("document.getElementById('viewer').dataset.state === 'shown'")
            assert browser.evaluate("location.hash") == f"#job={job['id']}"  # a reload opens it again
            browser.evaluate("document.getElementById('viewer-close').click()")
            assert browser.evaluate("location.hash") == ""
            browser.evaluate(f"{job_row}.querySelector('button[data-action=\"report\"]').click()")
            browser.wait_for("document.getElementById('viewer').dataset.state === 'shown'")
            api.delete_model(job["model_id"])  # from elsewhere than this page
            browser.evaluate("document.getElementById('refresh').click()")
            assert browser.wait_for("document.getElementById('viewer').hidden && location.hash === ''")

            bad = tmp_path / "bad"
            bad.mkdir()
            lines = (synth_dir / "utterances.csv").read_text().splitlines()
            header = lines[0].split(",")
            first = lines[1].split(",")
            first[header.index("label")] = "abc"
            first[header.index("split")] = "training"
            (bad / "utterances.csv").write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
            browser.set_files("upload-files", [bad / "utterances.csv", synth_dir / "features.npz"])
            said = _submit(browser, "upload")
            assert said.startswith("failed HTTP 422") and said.count("column 'split'") == 1, said
            assert said.count("column 'label'") == 1 and "utterances.csv.split: utterances.csv:" not in said

            browser.evaluate("document.getElementById('job-settings').value = 'beta=0x10'")
            said = _submit(browser, "job")  # Python's float() does not read 0x10: text, refused as beta
            assert said.startswith("failed HTTP 422") and "beta" in said, said


def _record_job(stack: LocalStack, key: str, seed: int) -> str:
    """A queued job of ``key``'s in Redis whose task is never sent: it stays queued until the test moves it
    (JobStore.transition), as nothing runs it. Its dataset need not exist: the lists show only its id."""
    from worker.lifecycle import JobStore

    with LabelClient(stack.url, timeout=60, api_key=key) as api:
        owner = api.usage()["key_id"]
    spec = {"owner": owner, "dataset_id": "d" * 64, "strategy": "mug", "seed": seed, "hyperparameters": {}}
    job_id, created = JobStore.from_url(stack.redis_url).claim({**spec, "code_version": "page-test"})
    assert created
    return job_id


def _fail(stack: LocalStack, job_id: str, error: str) -> None:
    from worker.lifecycle import JobStore

    jobs = JobStore.from_url(stack.redis_url)
    ended = {"state": "failed", "finished_at": time.time(), "error": error}
    assert jobs.transition(job_id, ("queued", "running"), **ended)


def test_a_failed_jobs_error_is_said_and_a_long_one_folds(stack: LocalStack, tmp_path: Path) -> None:
    """A failed job's error is marked as one ("error: ...", not only the state's colour); a long one (the
    worker keeps 2000 characters) shows its start, the whole a click away, still open after a refresh; server
    text lands as text."""
    from tests.service.cdp import Browser

    key = stack.create_key("failed-page")
    short_job, long_job = _record_job(stack, key, 1), _record_job(stack, key, 2)
    _fail(stack, short_job, "could not enqueue: broker unreachable")
    tensor = "The size of tensor a (32) must match the size of tensor b (16) at non-singleton dimension 1. "
    long_error = ("training failed: RuntimeError: <img src=x id=injected> " + tensor * 20).strip()
    _fail(stack, long_job, long_error)
    row = "document.querySelector('#jobs tr[data-job-id=\"%s\"]')"
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={key}")
        browser.wait_for(f"document.body?.dataset.state === 'ready' && {row % long_job} !== null")
        said = browser.evaluate(f"{row % short_job}.querySelector('.job-error').textContent")
        assert said == "error: could not enqueue: broker unreachable", said
        folded = f"{row % long_job}.querySelector('details.job-error')"
        assert browser.evaluate(f"{folded}.open") is False
        summary = browser.evaluate(f"{folded}.querySelector('summary').textContent")
        assert summary.startswith("error: training failed: RuntimeError: <img") and summary.endswith("…")
        assert len(summary) < 200, summary
        height = f"{row % long_job}.getBoundingClientRect().height"
        folded_height = browser.evaluate(height)
        assert browser.evaluate("document.getElementById('injected') === null")  # text, never HTML

        browser.evaluate(f"(s => {{ s.focus(); s.click(); }})({folded}.querySelector('summary'))")
        assert browser.wait_for(f"{folded}.open && {folded}.textContent.includes('dimension 1. The size')")
        assert browser.evaluate(height) > 3 * folded_height  # the whole is much longer
        refreshes = browser.evaluate("document.body.dataset.refreshes")
        browser.evaluate("document.getElementById('refresh').click()")
        browser.wait_for(f"document.body.dataset.refreshes !== '{refreshes}'")
        assert browser.evaluate(f"{folded}.open")  # a row built anew keeps it open
        assert browser.evaluate(f"{folded}.textContent").endswith(long_error)
        assert browser.evaluate(f"document.activeElement === {folded}.querySelector('summary')")


def test_a_new_key_is_told_where_to_start(stack: LocalStack, synth_dir: Path, tmp_path: Path) -> None:
    """A key with no dataset and no job: the jobs list says to upload a dataset first (the job form cannot
    start anything yet) and how to make one to try, and takes the keyboard to the upload form; once a dataset
    is there, the usual "No jobs yet"."""
    from tests.service.cdp import Browser

    key = stack.create_key("new-page")
    shown = "(id => !document.getElementById(id).hidden)"
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={key}")
        browser.wait_for("document.body?.dataset.state === 'ready'")
        assert browser.evaluate(f"{shown}('jobs-first')") and not browser.evaluate(f"{shown}('jobs-empty')")
        first = browser.evaluate("document.getElementById('jobs-first').textContent")
        assert "First upload a dataset" in first and "unilabel synth DIR" in first, first
        none = browser.evaluate("document.getElementById('datasets-empty').textContent")
        assert "unilabel synth DIR" in none, none
        browser.evaluate("document.getElementById('to-upload').click()")
        assert browser.evaluate("document.activeElement.id") == "upload-files"

        with LabelClient(stack.url, timeout=60, api_key=key) as api:
            api.upload(synth_dir)
        refreshes = browser.evaluate("document.body.dataset.refreshes")
        browser.evaluate("document.getElementById('refresh').click()")
        browser.wait_for(f"document.body.dataset.refreshes !== '{refreshes}'")
        assert browser.evaluate(f"{shown}('jobs-empty')") and not browser.evaluate(f"{shown}('jobs-first')")


def test_the_lists_hold_whole_ids_to_copy(stack: LocalStack, jobs: dict, tmp_path: Path) -> None:
    """unilabel-remote and the API take a whole id only (a shortened one is a 404): each list's id cell holds
    the whole id, so that selecting and copying it gives that, while it shows the first characters."""
    from tests.service.cdp import Browser

    done, dataset = jobs["done"], jobs["dataset"]["id"]
    job_row = f'#jobs tr[data-job-id="{done["id"]}"]'
    cells = [
        (done["id"], f"{job_row} td:nth-child(1) code"),
        (dataset, f"{job_row} td:nth-child(4) code"),
        (dataset, f'#datasets tr[data-dataset-id="{dataset}"] td:nth-child(1) code'),
        (done["model_id"], f'#models tr[data-model-id="{done["model_id"]}"] td:nth-child(1) code'),
    ]
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={stack.api_key}")
        browser.wait_for("document.body?.dataset.state === 'ready'")
        for whole, selector in cells:
            code = f"document.querySelector('{selector}')"
            selected = browser.evaluate(f"(getSelection().selectAllChildren({code}), String(getSelection()))")
            assert selected == whole, (selector, selected)
            # shown cut, about ten characters wide
            width, chars = browser.evaluate(f"[{code}.clientWidth, {code}.scrollWidth]")
            assert width < chars and width < 120, (selector, width, chars)


def test_a_jobs_change_of_state_is_said_in_words(stack: LocalStack, tmp_path: Path) -> None:
    """A job that starts running, then fails, while the page is open: each change is said in a live region
    (role=status) with the job, its state and the error, not only by the row's colour."""
    from tests.service.cdp import Browser
    from worker.lifecycle import JobStore

    key = stack.create_key("changes-page")
    job = _record_job(stack, key, 3)
    changes = "document.getElementById('changes')"
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={key}")
        browser.wait_for("document.body?.dataset.state === 'ready'")
        assert browser.evaluate(f"{changes}.getAttribute('role')") == "status"
        assert browser.evaluate(f"{changes}.textContent") == ""  # the first load is no change
        assert JobStore.from_url(stack.redis_url).transition(job, ("queued",), state="running")
        said = browser.wait_for(f"{changes}.textContent.includes('running') && {changes}.textContent")
        assert f"Job {job[:10]} (mug, seed 3) running." in said, said
        _fail(stack, job, "training failed: MemoryError: out of memory")
        said = browser.wait_for(f"{changes}.textContent.includes('failed') && {changes}.textContent")
        assert f"Job {job[:10]} (mug, seed 3) failed: training failed: MemoryError: out of memory." in said


def test_an_upload_says_how_much_is_sent(stack: LocalStack, synth_dir: Path, tmp_path: Path) -> None:
    """A large upload is minutes of sending: the form says how much of it is sent, then that the service
    checks it, then the dataset. Here the browser's upload is throttled to about 3 s."""
    from tests.service.cdp import Browser

    key = stack.create_key("upload-progress-page")
    files = [synth_dir / "utterances.csv", synth_dir / "features.npz"]
    total = sum(f.stat().st_size for f in files)
    message = "document.getElementById('upload-message')"
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={key}")
        browser.wait_for("document.body?.dataset.state === 'ready'")
        browser.evaluate(
            f"window.said = []; new MutationObserver(() => said.push({message}.textContent))"
            f".observe({message}, {{ childList: true, characterData: true, subtree: true }})"
        )
        browser.send("Network.enable")
        slow = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": total / 3}
        browser.send("Network.emulateNetworkConditions", slow)
        browser.set_files("upload-files", files)
        assert _submit(browser, "upload").startswith("done Dataset "), browser.evaluate("said")
        said = browser.evaluate("said")
    progress = re.compile(r"Uploading utterances\.csv and features\.npz: (\d+)% of ([\d.]+) KiB…")
    sent = [m for m in map(progress.fullmatch, said) if m]
    percents = [int(m[1]) for m in sent]
    assert len(set(percents)) >= 2 and percents == sorted(percents), said  # it went on
    checked = re.fullmatch(r"Uploaded ([\d.]+) KiB; the service checks the dataset…", said[-2])
    assert checked and {m[2] for m in sent} == {checked[1]}, said
    # the request's size: the files and the multipart framing
    assert total / 1024 <= float(checked[1]) < (total + 2048) / 1024, said


def test_every_control_and_column_has_a_name(stack: LocalStack, jobs: dict, tmp_path: Path) -> None:
    """What a screen reader reads from Chromium's accessibility tree: every button, link, form control,
    progress bar and column header of the page with its lists has a name (the actions columns' headers were
    empty)."""
    from tests.service.cdp import Browser

    roles = {"button", "link", "textbox", "combobox", "spinbutton", "progressbar", "columnheader"}
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={stack.api_key}")
        model_row = "document.querySelectorAll('#models td').length"
        browser.wait_for(f"document.body?.dataset.state === 'ready' && {model_row}")
        browser.send("Accessibility.enable")
        nodes = browser.send("Accessibility.getFullAXTree")["nodes"]
    seen = [(n["role"]["value"], n.get("name", {}).get("value", "")) for n in nodes if not n.get("ignored")]
    assert {"button", "columnheader", "combobox"} <= {role for role, _ in seen}, seen
    unnamed = [role for role, name in seen if role in roles and not name.strip()]
    assert unnamed == [], unnamed


def _copies(stack: LocalStack, kind: str, source: Path, owner: str, ids: list[str], newer: bool) -> None:
    """Listed copies of a dataset's summary or a model's card under ``ids``, for ``owner``, each a second
    apart, newer or older than the source: the lists read only these files, and many uploads or jobs would
    take minutes."""
    name = "summary.json" if kind == "datasets" else "card.json"
    record = json.loads((source / name).read_text())
    for i, ident in enumerate(ids, 1):
        copy = stack.artifact_dir / kind / (owner if kind == "datasets" else "") / ident
        copy.mkdir(parents=True)
        made = {**record, "id": ident, "created_at": record["created_at"] + (i if newer else -i)}
        if kind == "runs":
            made.update(job_id=ident, owner=owner)
        (copy / name).write_text(json.dumps(made))


def _key_with_many_datasets(stack: LocalStack, synth_dir: Path, name: str) -> tuple[str, str, str, list[str]]:
    """A new key ``name`` with one uploaded dataset and 120 newer copies of its summary (_copies): the key,
    its id (the owner), the uploaded dataset's id (the oldest) and the copies' ids, oldest first."""
    key = stack.create_key(name)
    with LabelClient(stack.url, timeout=60, api_key=key) as api:
        oldest = api.upload(synth_dir)["id"]
        owner = api.usage()["key_id"]
    newer = [f"{owner}{i:048x}" for i in range(120)]
    _copies(stack, "datasets", stack.artifact_dir / "datasets" / owner / oldest, owner, newer, True)
    return key, owner, oldest, newer


def test_a_cut_list_says_so_and_the_job_form_offers_every_dataset(
    stack: LocalStack, jobs: dict, synth_dir: Path, tmp_path: Path
) -> None:
    """The datasets and models lists show the API's first page (100): a list cut short says so, and the job
    form still offers every dataset of the key's, the oldest (which the list leaves out) included."""
    from tests.service.cdp import Browser

    key, owner, oldest, newer = _key_with_many_datasets(stack, synth_dir, "many-page")
    with LabelClient(stack.url, timeout=60, api_key=key) as api:
        models = [f"{owner}{i:016x}" for i in range(101)]
        _copies(stack, "runs", stack.artifact_dir / "runs" / jobs["done"]["id"], owner, models, False)
        with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
            browser.open(f"{stack.url}/#key={key}")
            browser.wait_for("document.body?.dataset.state === 'ready'")
            status = browser.evaluate("document.getElementById('status').textContent")
            assert "121 datasets (the latest 100 shown) · 101 models (the latest 100 shown)" in status, status
            note = "(id => !document.getElementById(id).hidden && document.getElementById(id).textContent)"
            said = browser.evaluate(f"{note}('datasets-note')")
            cut = "The latest 100 of 121 datasets are shown; the job form offers all of this key's."
            assert said == cut, said
            assert browser.evaluate(f"{note}('models-note')") == "The latest 100 of 101 models are shown."
            assert browser.evaluate(f"{note}('jobs-note')") is False  # not cut
            assert browser.evaluate("document.querySelectorAll('#datasets tbody tr').length") == 100
            options = "Array.from(document.getElementById('job-dataset').options, (o) => o.value)"
            options = browser.evaluate(options)
            assert options == [*reversed(newer), oldest], options[-3:]

            browser.evaluate(f"document.getElementById('job-dataset').value = '{oldest}'")
            browser.evaluate("document.getElementById('job-strategy').value = 'copy'")
            said = _submit(browser, "job")  # queued, or running at once on an idle worker
            assert re.fullmatch(r"done Job [0-9a-f]{10} (queued|running)\.", said), said
        started = api.jobs()["items"][0]
        api.cancel(started["id"])
        assert started["dataset_id"] == oldest, started



def test_turning_the_datasets_pages_does_not_read_the_job_forms_menu_again(
    stack: LocalStack, synth_dir: Path, tmp_path: Path
) -> None:
    """The job form's dataset menu, read whole when the datasets list is cut, is read again when the key's
    datasets change (a delete, an upload), not at each turn of the list's pages: the page's fetch calls are
    counted (fetch wrapped over the DevTools protocol, which the page's content policy does not bind)."""
    from tests.service.cdp import Browser

    key, owner, _, newer = _key_with_many_datasets(stack, synth_dir, "menu-kept")
    text = "(id => document.getElementById(id).textContent)"
    options = "document.getElementById('job-dataset').options.length"
    reads = "window.asked.filter((path) => path.startsWith('/v1/datasets?limit=1000')).length"
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={key}")
        browser.wait_for(f"document.body?.dataset.state === 'ready' && {options} === 121")
        browser.evaluate(
            "window.asked = []; const sent = window.fetch;"
            "window.fetch = (path, init) => { window.asked.push(String(path)); return sent(path, init); }"
        )
        for which, shown in (("older", "101–121"), ("newer", "1–100"), ("older", "101–121")):
            browser.evaluate(f"document.getElementById('datasets-{which}').click()")
            browser.wait_for(f"{text}('datasets-range') === '{shown} of 121'")
        assert browser.evaluate(reads) == 0, browser.evaluate("window.asked")
        assert browser.evaluate(options) == 121

        shutil.rmtree(stack.artifact_dir / "datasets" / owner / newer[-1])  # the newest, deleted elsewhere
        browser.evaluate("document.getElementById('refresh').click()")
        browser.wait_for(f"{options} === 120")
        assert browser.evaluate(reads) == 1, browser.evaluate("window.asked")
        assert browser.evaluate(f"{text}('datasets-range')") == "101–120 of 120"


def test_a_cut_list_pages_to_its_older_items(
    stack: LocalStack, jobs: dict, synth_dir: Path, tmp_path: Path
) -> None:
    """A list cut short pages through the rest, 100 at a time: "newer" and "older" above it (named for their
    list to a screen reader) ask the API for that page (?offset=), whose range is said beside them, in the
    list's note and in the status line (a live region); the polling refreshes stay on it, the state picker
    starts the jobs again from the newest, the buttons wait while the service cannot be reached, and a page
    that the list no longer reaches (items deleted meanwhile) gives way to its last. The items are cheap:
    datasets' and models' records copied on disk (_copies), jobs claimed in Redis without a task."""
    from tests.service.cdp import Browser
    from worker.lifecycle import JobStore

    key, owner, oldest, newer = _key_with_many_datasets(stack, synth_dir, "paging-page")
    models = [f"{owner}{i:016x}" for i in range(105)]
    _copies(stack, "runs", stack.artifact_dir / "runs" / jobs["done"]["id"], owner, models, False)
    store = JobStore.from_url(stack.redis_url)
    spec = {"owner": owner, "dataset_id": "d" * 64, "strategy": "mug", "hyperparameters": {}}
    claimed = [store.claim({**spec, "seed": seed, "code_version": "page-test"})[0] for seed in range(130)]
    rows = {"jobs": "jobId", "datasets": "datasetId", "models": "modelId"}

    def ids(kind: str) -> list[str]:
        return browser.evaluate(
            f"Array.from(document.querySelectorAll('#{kind} tbody tr'), (tr) => tr.dataset.{rows[kind]})"
        )

    def turn(kind: str, which: str, shown: str) -> None:
        """Press "newer" or "older" as a keyboard user would (the focus on it), until ``shown`` is."""
        browser.evaluate(f"(b => {{ b.focus(); b.click(); }})(document.getElementById('{kind}-{which}'))")
        browser.wait_for(f"document.getElementById('{kind}-range').textContent === '{shown}'")

    def buttons(kind: str) -> list[bool]:
        pager = f"document.getElementById('{kind}-pager')"
        off = "(b) => b.getAttribute('aria-disabled') === 'true'"  # off, yet focusable (b.disabled is not)
        return browser.evaluate(f"Array.from({pager}.querySelectorAll('button'), {off})")

    text = "(id => document.getElementById(id).textContent)"
    focused = "document.activeElement.id"
    try:
        with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
            browser.open(f"{stack.url}/#key={key}")
            browser.wait_for("document.body?.dataset.state === 'ready'")
            status = browser.evaluate(f"{text}('status')")
            assert status.startswith("130 jobs (the latest 100 shown), "), status
            cut = " · 121 datasets (the latest 100 shown) · 105 models (the latest 100 shown)"
            assert status.endswith(cut), status
            for kind, total in (("jobs", 130), ("datasets", 121), ("models", 105)):
                assert browser.evaluate(f"document.getElementById('{kind}-pager').hidden") is False, kind
                assert browser.evaluate(f"{text}('{kind}-range')") == f"1–100 of {total}", kind
                assert buttons(kind) == [True, False], kind  # the newest shown: nothing newer
            browser.send("Accessibility.enable")
            nodes = browser.send("Accessibility.getFullAXTree")["nodes"]
            named = {n.get("name", {}).get("value") for n in nodes if n["role"].get("value") == "button"}
            for kind in rows:
                assert {f"newer {kind}", f"older {kind}"} <= named, kind

            turn("datasets", "older", "101–121 of 121")
            assert ids("datasets") == [*reversed(newer[:20]), oldest]  # the oldest, left out before
            said = browser.evaluate(f"{text}('datasets-note')")
            assert said == "101–121 of 121 datasets are shown; the job form offers all of this key's.", said
            assert " · 121 datasets (101–121 shown) · " in browser.evaluate(f"{text}('status')")
            assert buttons("datasets") == [False, True]  # the last page: nothing older
            assert browser.evaluate(focused) == "datasets-older"  # the focus kept on "older", now off
            assert browser.evaluate("document.getElementById('job-dataset').options.length") == 121
            refreshes = browser.evaluate("document.body.dataset.refreshes")
            browser.wait_for(f"document.body.dataset.refreshes !== '{refreshes}'")  # polled (jobs queued)
            assert browser.evaluate(f"{text}('datasets-range')") == "101–121 of 121"
            assert ids("datasets")[-1] == oldest

            turn("jobs", "older", "101–130 of 130")
            assert len(ids("jobs")) == 30 and claimed[0] in ids("jobs") and claimed[-1] not in ids("jobs")
            assert browser.evaluate(f"{text}('status')").startswith("130 jobs (101–130 shown), ")
            turn("models", "older", "101–105 of 105")
            assert ids("models") == models[100:]
            browser.evaluate(
                "(s => { s.value = 'queued'; s.dispatchEvent(new Event('change')); })"
                "(document.getElementById('job-state'))"
            )
            browser.wait_for(f"{text}('jobs-range') === '1–100 of 130'")  # another list: from its newest
            assert claimed[-1] in ids("jobs")

            turn("datasets", "newer", "1–100 of 121")
            assert ids("datasets")[0] == newer[-1]
            assert browser.evaluate(focused) == "datasets-newer"  # kept on "newer", now off

            network = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
            browser.send("Network.enable")
            browser.send("Network.emulateNetworkConditions", {**network, "offline": True})
            browser.evaluate("document.getElementById('refresh').click()")
            browser.wait_for("document.body.dataset.state === 'error'")
            pagers = "Array.from(document.querySelectorAll('.pager button'), (b) => b.ariaDisabled)"
            assert set(browser.evaluate(pagers)) == {"true"}, browser.evaluate(pagers)
            browser.send("Network.emulateNetworkConditions", {**network, "offline": False})
            browser.evaluate("document.getElementById('refresh').click()")
            browser.wait_for("document.body.dataset.state === 'ready'")
            assert buttons("datasets") == [True, False] and buttons("models") == [False, True]
            assert browser.evaluate(focused) == "datasets-newer"  # the keyboard's place kept

            turn("datasets", "older", "101–121 of 121")
            for ident in newer[:21]:  # deleted meanwhile: the list ends before the page shown
                shutil.rmtree(stack.artifact_dir / "datasets" / owner / ident)
            browser.evaluate("document.getElementById('refresh').click()")
            browser.wait_for(f"{text}('datasets-range') === '1–100 of 100'")
            assert browser.evaluate("document.getElementById('datasets-pager').hidden")  # not cut any more
            assert ids("datasets")[-1] == oldest
    finally:
        for job in claimed:
            store.transition(job, ("queued",), state="cancelled", finished_at=time.time())


def test_a_link_opens_the_report_of_a_job_not_on_the_page_shown(
    stack: LocalStack, synth_dir: Path, tmp_path: Path
) -> None:
    """`#job=ID` opens the report of any job the key sees: one older than the newest page, or of a state other
    than the one shown (asked for with GET /v1/jobs/ID); a job without a report, or one the key cannot see,
    is said in the notice, and the address lets it go."""
    from tests.service.cdp import Browser

    key = stack.create_key("link-older-job")
    with LabelClient(stack.url, timeout=60, api_key=key) as api:
        dataset = api.upload(synth_dir)["id"]
        done = api.wait(api.submit(dataset, "copy", 3, TINY)["id"], timeout=120, poll=0.1)
        assert done["state"] == "succeeded", done
    claimed = _claimed_jobs(stack, key, range(100), live=False)  # newer: the done job on the older page
    viewer = "document.getElementById('viewer')"
    notice = "document.body?.dataset.state === 'ready' && !document.getElementById('notice').hidden"
    notice += " && document.getElementById('notice-text').textContent"
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        for shown in ("", "&state=failed"):  # the older page; a state that leaves it out
            browser.open(f"{stack.url}/#key={key}&job={done['id']}{shown}")
            browser.wait_for("document.body?.dataset.state === 'ready'")
            row = f"document.querySelector('#jobs tr[data-job-id=\"{done['id']}\"]')"
            assert browser.evaluate(row) is None
            browser.wait_for(f"{viewer}.dataset.state === 'shown'", timeout=20)
            assert browser.evaluate(f"{viewer}.dataset.jobId") == done["id"]
            assert browser.evaluate("location.hash") == f"#job={done['id']}{shown}"

        browser.open(f"{stack.url}/#key={key}&state=failed&job={claimed[0]}")  # cancelled, not listed
        said = browser.wait_for(notice, timeout=20)
        assert said == f"Job {claimed[0][:10]} has no report: it is cancelled.", said
        assert browser.evaluate(f"{viewer}.hidden") and browser.evaluate("location.hash") == "#state=failed"

        unknown = "f" * 64
        browser.open(f"{stack.url}/#key={key}&job={unknown}")
        said = browser.wait_for(notice, timeout=20)
        words = f"The address names job {unknown[:10]}, which this key cannot see: "
        assert said == f"{words}there is no such job, or it is another key's.", said
        assert browser.evaluate("document.body.dataset.state") == "ready"
        assert browser.evaluate(f"{viewer}.hidden") and browser.evaluate("location.hash") == ""


def _claimed_jobs(stack: LocalStack, key: str, seeds: range, live: bool = True) -> list[str]:
    """Jobs of ``key``'s claimed in Redis without a task, one for each seed (oldest first): queued (cancelled
    by the test after), or already cancelled (``live`` False: none counts against the key's job quotas)."""
    from worker.lifecycle import JobStore

    with LabelClient(stack.url, timeout=60, api_key=key) as api:
        owner = api.usage()["key_id"]
    store = JobStore.from_url(stack.redis_url)
    spec = {"owner": owner, "dataset_id": "d" * 64, "strategy": "mug", "hyperparameters": {}}
    claimed = [store.claim({**spec, "seed": seed, "code_version": "page-test"})[0] for seed in seeds]
    if not live:
        for job in claimed:
            store.transition(job, ("queued",), state="cancelled", finished_at=time.time())
    return claimed


def test_a_last_page_of_one_item_says_which_it_is(stack: LocalStack, tmp_path: Path) -> None:
    """101 jobs: the older page holds one, the 101st, said as a range ("101–101 of 101"), not as "101 of 101"
    nor, in the status line, "101 jobs (101 shown)", which read as every job shown."""
    from tests.service.cdp import Browser

    key = stack.create_key("one-older-page")
    claimed = _claimed_jobs(stack, key, range(101), live=False)
    text = "(id => document.getElementById(id).textContent)"
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={key}")
        browser.wait_for("document.body?.dataset.state === 'ready'")
        assert browser.evaluate(f"{text}('jobs-range')") == "1–100 of 101"
        browser.evaluate("document.getElementById('jobs-older').click()")
        browser.wait_for(f"{text}('jobs-range') !== '1–100 of 101'")
        rows = "Array.from(document.querySelectorAll('#jobs tbody tr'), (tr) => tr.dataset.jobId)"
        assert browser.evaluate(rows) == [claimed[0]]
        assert browser.evaluate(f"{text}('jobs-range')") == "101–101 of 101"
        assert browser.evaluate(f"{text}('jobs-note')") == "101–101 of 101 jobs are shown."
        status = browser.evaluate(f"{text}('status')")
        assert status.startswith("101 jobs (101–101 shown), "), status



def test_enter_pressed_again_on_older_at_the_last_page_stays_there(stack: LocalStack, tmp_path: Path) -> None:
    """A keyboard user presses Enter on "older" until the last page: there "older" is off (said so to a screen
    reader) but keeps the focus, and a press does nothing; it does not hand the focus to "newer", which the
    next Enter would press, back to the first page."""
    from tests.service.cdp import Browser

    key = stack.create_key("enter-on-older")
    _claimed_jobs(stack, key, range(101), live=False)
    text = "(id => document.getElementById(id).textContent)"
    older = "document.getElementById('jobs-older')"

    def enter() -> None:
        keys = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        browser.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": "\r", **keys})
        browser.send("Input.dispatchKeyEvent", {"type": "keyUp", **keys})

    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={key}")
        browser.wait_for("document.body?.dataset.state === 'ready'")
        browser.evaluate(f"{older}.focus()")
        enter()
        browser.wait_for(f"{text}('jobs-range') === '101–101 of 101'")
        assert browser.evaluate(f"document.activeElement === {older} && {older}.ariaDisabled === 'true'")
        refreshes = browser.evaluate("document.body.dataset.refreshes")
        for _ in range(2):
            enter()
        time.sleep(1)
        assert browser.evaluate("document.body.dataset.refreshes") == refreshes  # nothing asked for
        assert browser.evaluate(f"{text}('jobs-range')") == "101–101 of 101"
        assert browser.evaluate(f"document.activeElement === {older}")
        browser.send("Accessibility.enable")
        nodes = browser.send("Accessibility.getFullAXTree")["nodes"]
        said = {
            n["name"]["value"]: {p["name"]: p["value"].get("value") for p in n.get("properties", [])}
            for n in nodes
            if n["role"].get("value") == "button" and n.get("name", {}).get("value", "").endswith(" jobs")
        }
        assert said["older jobs"].get("disabled") is True and said["older jobs"].get("focused") is True, said
        assert not said["newer jobs"].get("disabled"), said


def test_an_older_page_keeps_its_items_when_newer_ones_come(stack: LocalStack, tmp_path: Path) -> None:
    """A job that comes while the jobs' older page is shown goes on the newest page: the rows shown stay (not
    pushed down one, the last out of sight with the keyboard's focus on its cancel), and the range says where
    they are now ("102–201 of 202"); "newer" then shows those just before them."""
    from tests.service.cdp import Browser

    key = stack.create_key("older-page-stays")
    claimed = _claimed_jobs(stack, key, range(201))  # queued: polled every 2 s
    text = "(id => document.getElementById(id).textContent)"
    rows = "Array.from(document.querySelectorAll('#jobs tbody tr'), (tr) => tr.dataset.jobId)"
    row = f'#jobs tr[data-job-id="{claimed[1]}"]'
    cancel = f"document.querySelector('{row} button[data-action=\"cancel\"]')"
    came = None
    try:
        with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
            browser.open(f"{stack.url}/#key={key}")
            browser.wait_for("document.body?.dataset.state === 'ready'")
            browser.evaluate("document.getElementById('jobs-older').click()")
            browser.wait_for(f"{text}('jobs-range') === '101–200 of 201'")
            shown = browser.evaluate(rows)
            assert shown == claimed[100:0:-1]
            browser.evaluate(f"{cancel}.focus()")  # the last row's

            came = _claimed_jobs(stack, key, range(201, 202))[0]  # the newest
            try:
                browser.wait_for(f"{text}('status').startsWith('202 jobs')")
                browser.wait_for(f"{text}('jobs-range') !== '101–200 of 202'", timeout=10)
            except TimeoutError:
                pass  # asserted below
            assert browser.evaluate(f"{text}('jobs-range')") == "102–201 of 202"
            assert browser.evaluate(rows) == shown
            assert browser.evaluate(f"document.activeElement === {cancel}")
            assert browser.evaluate(f"{text}('jobs-note')") == "102–201 of 202 jobs are shown."
            assert browser.evaluate(f"{text}('status')").startswith("202 jobs (102–201 shown), ")

            browser.evaluate("document.getElementById('jobs-newer').click()")
            browser.wait_for(f"{text}('jobs-range') === '2–101 of 202'")
            assert browser.evaluate(rows) == claimed[200:100:-1]  # those just before, not the one that came
            browser.evaluate("document.getElementById('jobs-newer').click()")
            browser.wait_for(f"{text}('jobs-range') === '1–100 of 202'")
            assert browser.evaluate(rows)[0] == came
    finally:
        from worker.lifecycle import JobStore

        store = JobStore.from_url(stack.redis_url)
        for job in [*claimed, *([came] if came else [])]:
            store.transition(job, ("queued",), state="cancelled", finished_at=time.time())



def test_a_jobs_change_of_state_is_said_while_another_page_is_shown(
    stack: LocalStack, tmp_path: Path
) -> None:
    """A job seen queued is followed while the list shows another page (or another state): its start and its
    end are said in the live region as on the page that held it."""
    from tests.service.cdp import Browser
    from worker.lifecycle import JobStore

    key = stack.create_key("changes-older-page")
    _claimed_jobs(stack, key, range(100), live=False)
    job = _record_job(stack, key, 100)  # the newest, queued
    changes = "document.getElementById('changes')"
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={key}")
        browser.wait_for("document.body?.dataset.state === 'ready'")
        browser.evaluate("document.getElementById('jobs-older').click()")
        browser.wait_for("document.getElementById('jobs-range').textContent === '101–101 of 101'")
        assert browser.evaluate(f"{changes}.textContent") == ""
        assert JobStore.from_url(stack.redis_url).transition(job, ("queued",), state="running")
        said = browser.wait_for(f"{changes}.textContent.includes('running') && {changes}.textContent", 20)
        assert f"Job {job[:10]} (mug, seed 100) running." in said, said
        _fail(stack, job, "training failed: MemoryError: out of memory")
        said = browser.wait_for(f"{changes}.textContent.includes('failed') && {changes}.textContent", 20)
        assert f"Job {job[:10]} (mug, seed 100) failed: training failed: MemoryError: out of memory." in said
        assert browser.evaluate("document.getElementById('jobs-range').textContent") == "101–101 of 101"



def test_the_same_run_started_twice_from_an_older_page_is_said_to_be_one(
    stack: LocalStack, synth_dir: Path, tmp_path: Path
) -> None:
    """The job form used while the jobs' older page is shown (the new job goes on the newest, out of sight):
    the same run started again is said to be the job started before, not a new one, as on the newest page;
    and the job's end is said in the live region."""
    from tests.service.cdp import Browser

    key = stack.create_key("twice-older-page")
    with LabelClient(stack.url, timeout=60, api_key=key) as api:
        dataset = api.upload(synth_dir)["id"]
    _claimed_jobs(stack, key, range(101), live=False)
    text = "(id => document.getElementById(id).textContent)"
    # long enough to be queued or running still when started again (cancelled after)
    settings = " ".join(f"{name}={value}" for name, value in LIVE.items())
    started = None
    try:
        with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
            browser.open(f"{stack.url}/#key={key}")
            browser.wait_for("document.body?.dataset.state === 'ready'")
            browser.evaluate("document.getElementById('jobs-older').click()")
            browser.wait_for(f"{text}('jobs-range') === '101–101 of 101'")
            browser.evaluate(f"document.getElementById('job-settings').value = '{settings}'")
            said = _submit(browser, "job")
            assert re.fullmatch(r"done Job [0-9a-f]{10} (queued|running)\.", said), said
            started = said.split()[2]
            browser.wait_for(f"{text}('jobs-range') === '102–102 of 102'")  # still the oldest shown
            again = _submit(browser, "job")
            rejoined = rf"done Job {started} is this run \(same dataset, strategy, seed and settings\), "
            rejoined += r"(queued|running) already: nothing new was queued\."
            assert re.fullmatch(rejoined, again), again

            with LabelClient(stack.url, timeout=60, api_key=key) as api:  # its end said here too
                job = api.jobs()["items"][0]
                assert job["id"].startswith(started) and job["dataset_id"] == dataset, job
                api.cancel(job["id"])
            changes = "document.getElementById('changes').textContent"
            said = browser.wait_for(f"{changes}.includes('cancelled') && {changes}", timeout=90)
            assert f"Job {started} (mug, seed 1111) cancelled." in said, said
            started = None
    finally:
        if started:
            with LabelClient(stack.url, timeout=60, api_key=key) as api:
                job = api.jobs()["items"][0]
                if job["state"] in ("queued", "running") and not job.get("cancel_requested"):
                    api.cancel(job["id"])


def test_while_the_service_cannot_be_reached_the_lists_say_so_and_their_buttons_wait(
    stack: LocalStack, synth_dir: Path, tmp_path: Path
) -> None:
    """A refresh that fails leaves the lists as they were: they say since when (the last refresh that worked),
    and every button that would send a request is off until a refresh works again; "refresh now" stays."""
    from tests.service.cdp import Browser

    key = stack.create_key("offline-page")
    with LabelClient(stack.url, timeout=60, api_key=key) as api:
        dataset = api.upload(synth_dir)["id"]
    sending = "#main button[data-action], #upload-submit, #job-submit"
    buttons = f"Array.from(document.querySelectorAll('{sending}'), (b) => b.disabled)"
    note = "document.getElementById('datasets-note')"
    row = f'#datasets tr[data-dataset-id="{dataset}"]'
    delete = f"document.querySelector('{row} button[data-action=\"delete\"]')"
    network = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={key}")
        browser.wait_for(f"document.body?.dataset.state === 'ready' && {delete} !== null")
        assert browser.evaluate(f"{note}.hidden")  # not cut, not out of date
        updated = browser.evaluate("document.getElementById('updated').textContent")
        shown = updated.removeprefix(" · updated ")
        browser.evaluate(f"{delete}.focus()")

        browser.send("Network.enable")
        browser.send("Network.emulateNetworkConditions", {**network, "offline": True})
        browser.evaluate("document.getElementById('refresh').click()")
        browser.wait_for("document.body.dataset.state === 'error'")
        status = browser.evaluate("document.getElementById('status').textContent")
        assert status.startswith("Cannot refresh: the server cannot be reached ("), status
        assert browser.evaluate(f"{note}.hidden") is False
        said = browser.evaluate(f"{note}.textContent")
        assert said == f"Possibly out of date: as of {shown}, the last refresh that worked.", said
        assert browser.evaluate("document.getElementById('models-note').textContent") == said
        disabled = browser.evaluate(buttons)
        assert len(disabled) == 3 and all(disabled), disabled  # delete, upload, start a job
        assert browser.evaluate("document.getElementById('refresh').disabled") is False
        line = browser.evaluate("document.getElementById('updated').textContent")
        assert line == f" · the lists are as of {shown}; their buttons are off meanwhile", line

        browser.send("Network.emulateNetworkConditions", {**network, "offline": False})
        browser.evaluate("document.getElementById('refresh').click()")
        browser.wait_for("document.body.dataset.state === 'ready'")
        assert browser.evaluate(f"{note}.hidden")
        disabled = browser.evaluate(buttons)
        assert len(disabled) == 3 and not any(disabled), disabled
        assert browser.evaluate("document.body.dataset.offline") == "false"
        assert browser.evaluate(f"document.activeElement === {delete}")  # the keyboard's place kept


def test_a_quotas_refusal_says_the_limit_and_when_to_retry(
    stack: LocalStack, synth_dir: Path, tmp_path: Path
) -> None:
    """A 429 or 413 of a quota is said in the form in a page user's words (the limit, when to try again, what
    to do), without the server's setting or unilabel-remote's commands; the API's whole message is a click
    away."""
    from tests.service.cdp import Browser

    message = "document.getElementById('upload-message')"
    shown = f"Array.from({message}.childNodes, (n) => n.nodeName === 'DETAILS' ? '' : n.textContent).join('')"
    whole = f"{message}.querySelector('details.api-message').textContent"
    files = [synth_dir / "utterances.csv", synth_dir / "features.npz"]
    rated = stack.create_key("rated-page", False, "uploads_per_minute=1")
    stingy = stack.create_key("stingy-page", False, "stored_bytes=1000")
    with LabelClient(stack.url, timeout=60, api_key=rated) as api:
        left = api.usage()["minute_ends_in_s"]
    if left < 20:  # both uploads in one minute's count
        time.sleep(left + 0.2)
    with Browser(chromium(), FLAGS, tmp_path / "profile") as browser:
        browser.open(f"{stack.url}/#key={rated}")
        browser.wait_for("document.body?.dataset.state === 'ready'")
        browser.set_files("upload-files", files)
        assert _submit(browser, "upload").startswith("done Dataset ")
        browser.wait_for("document.getElementById('usage-uploads_per_minute').dataset.full === 'true'")
        browser.set_files("upload-files", files)
        assert _submit(browser, "upload").startswith("failed ")
        said = browser.evaluate(shown)
        words = "Refused: this key's limit of 1 upload a minute is reached; "
        words += r"try again in (\d+) s \(at .+\)\. "
        assert re.fullmatch(words, said), said
        assert 0 < int(re.match(words, said)[1]) <= 60, said
        detail = browser.evaluate(whole)
        assert detail.startswith("the service's message") and "HTTP 429 too_many_requests" in detail, detail
        assert "quota uploads_per_minute=1 reached" in detail, detail

        browser.open(f"{stack.url}/#key={stingy}")
        browser.wait_for("document.body?.dataset.state === 'ready'")
        browser.set_files("upload-files", files)
        assert _submit(browser, "upload").startswith("failed ")
        said = browser.evaluate(shown)
        assert said == (
            "Refused: the upload does not fit under this key's storage limit of 1000 B (0 B stored at the "
            "last refresh); delete datasets or models below to make room. "
        ), said
        assert "unilabel-remote" not in said and "unilabel-remote delete" in browser.evaluate(whole)
        assert "HTTP 413 payload_too_large [quota.stored_bytes]" in browser.evaluate(whole)
