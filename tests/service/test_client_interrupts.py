"""`unilabel-remote` stopped by Ctrl-C, SIGTERM or SIGHUP: one line that says what the interrupt left (a job
goes on in the service, with the commands that follow it again and cancel it; what was written), exit status
128 + the signal's number, no traceback. The job a `wait` or `run` followed is still queued afterwards: the
API runs here without a worker, so a submitted job stays queued."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import remote.cli
from models.interrupts import Interrupted
from remote.client import LabelClient
from remote.localstack import LocalStack
from tests.service.conftest import TINY, _need_redis
from tests.terminal import start_at_a_terminal

MODEL = "m" * 32


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """redis-server and the API, no worker: the lightest service with a real URL where a job stays queued."""
    _need_redis()
    stack = LocalStack(tmp_path_factory.mktemp("stack"))
    try:
        stack.start_redis()
        stack.make_keys()
        stack.start_api()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def dataset_id(api_stack: LocalStack, synth_dir: Path) -> str:
    with LabelClient(api_stack.url, api_key=api_stack.api_key) as api:
        return api.upload(synth_dir)["id"]


def _state(stack: LocalStack, job_id: str) -> str:
    with LabelClient(stack.url, api_key=stack.api_key) as api:
        return api.job(job_id)["state"]


def _spawn(
    stack: LocalStack, args: list[str], stderr: int, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "remote.cli", "--url", stack.url, "--key", stack.api_key, *args]
    return start_at_a_terminal(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=stdout, stderr=stderr)


def _interrupt_when(proc: subprocess.Popen, shown: Callable[[], str], text: str, sig: int) -> None:
    """Send ``sig`` once ``shown()`` holds ``text`` (the command is following its job)."""
    deadline = time.monotonic() + 60
    while text not in shown():
        assert proc.poll() is None and time.monotonic() < deadline, shown()
        time.sleep(0.05)
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    finally:
        proc.kill()


def _follow_up(job_id: str) -> str:
    return (
        f"job {job_id} is not cancelled and goes on in the service: `unilabel-remote wait {job_id}` "
        f"follows it again, `unilabel-remote cancel {job_id}` stops it\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_interrupted_wait_names_the_job_that_goes_on(
    api_stack: LocalStack, dataset_id: str, tmp_path: Path, sig: signal.Signals
) -> None:
    with LabelClient(api_stack.url, api_key=api_stack.api_key) as api:
        job_id = api.submit(dataset_id, "mug", 1, TINY)["id"]
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        proc = _spawn(api_stack, ["wait", job_id], stderr)
        _interrupt_when(proc, err.read_text, "queued 0%\n", sig)  # its progress, a line a change in a log
    said = err.read_text()
    assert proc.returncode == 128 + sig, said
    assert "Traceback" not in said
    assert said.endswith(f"unilabel-remote wait: interrupted; {_follow_up(job_id)}"), said
    assert _state(api_stack, job_id) == "queued"


@pytest.mark.slow
def test_interrupted_run_names_its_job_and_writes_nothing(
    api_stack: LocalStack, synth_dir: Path, tmp_path: Path
) -> None:
    out, err = tmp_path / "out", tmp_path / "stderr.txt"
    with err.open("wb") as stderr, (tmp_path / "stdout.txt").open("wb") as stdout:
        proc = _spawn(api_stack, ["run", str(synth_dir), "--out", str(out), "--seed", "7"], stderr, stdout)
        _interrupt_when(proc, err.read_text, "queued 0%\n", signal.SIGINT)
    said = err.read_text()
    job_id = re.search(
        r"^job ([0-9a-f]+) \(mug, seed 7\): queued$", (tmp_path / "stdout.txt").read_text(), re.M
    )
    assert job_id, (tmp_path / "stdout.txt").read_text()
    assert proc.returncode == 130 and "Traceback" not in said, said
    assert said.endswith(f"unilabel-remote run: interrupted; {_follow_up(job_id[1])}"), said
    assert _state(api_stack, job_id[1]) == "queued"
    assert not out.exists()


@pytest.mark.slow
def test_an_interrupt_on_a_terminal_ends_the_bar_line_first(api_stack: LocalStack, dataset_id: str) -> None:
    """On a terminal `wait` draws a tqdm bar: the interrupt's line starts a line of its own after it."""
    with LabelClient(api_stack.url, api_key=api_stack.api_key) as api:
        job_id = api.submit(dataset_id, "mug", 2, TINY)["id"]
    screen, terminal = pty.openpty()
    termios.tcsetwinsize(terminal, (24, 100))  # a new pty is 0 columns wide: tqdm would draw nothing
    shown = bytearray()

    def read() -> str:
        while select.select([screen], [], [], 0)[0]:
            try:
                shown.extend(os.read(screen, 65536))
            except OSError:  # the terminal's other end closed
                break
        return shown.decode(errors="replace")

    try:
        proc = _spawn(api_stack, ["wait", job_id], terminal)
        os.close(terminal)
        terminal = -1
        _interrupt_when(proc, read, "queued", signal.SIGINT)
        read()
    finally:
        os.close(screen)
        if terminal >= 0:
            os.close(terminal)
    text = shown.decode(errors="replace")
    assert proc.returncode == 130 and "Traceback" not in text, text
    bar, line = text.rsplit("unilabel-remote wait: interrupted", 1)
    assert "\r" in bar and bar.endswith("\n"), text  # a tqdm bar, and its line ended before the message
    assert line.startswith(f"; job {job_id} is not cancelled"), text


# In-process: a client whose transport answers as the service would until the interrupt comes mid-command.


def _model_answers(request: httpx.Request) -> httpx.Response:
    files = ("model.json", "config.json", "model.safetensors")
    if request.url.path == f"/v1/models/{MODEL}":
        links = {"self": f"/v1/models/{MODEL}", **{n: f"/v1/models/{MODEL}/files/{n}" for n in files}}
        return httpx.Response(200, json={"id": MODEL, "links": links})
    if request.url.path.endswith("/model.json"):
        return httpx.Response(200, content=b"{}")
    raise KeyboardInterrupt  # the second file, or any other request: Ctrl-C while it is under way


def _main_with(monkeypatch, answer: Callable[[httpx.Request], httpx.Response], args: list[str]) -> int:
    class Client(LabelClient):
        def __init__(self, url: str, timeout: float = 60.0, api_key: str | None = None) -> None:
            super().__init__(url, timeout, api_key)
            self.http.close()
            self.http = httpx.Client(
                base_url=url, headers=self.http.headers, transport=httpx.MockTransport(answer)
            )

    monkeypatch.setattr(remote.cli, "LabelClient", Client)
    try:
        return remote.cli.main(["--url", "http://service.test", "--key", "k", *args])
    except KeyboardInterrupt as exc:  # what a user sees as a traceback
        pytest.fail(f"the interrupt escaped main: {exc!r}")


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), Interrupted(signal.SIGTERM)], ids=repr)
def test_interrupted_download_leaves_nothing(
    monkeypatch, tmp_path: Path, capsys, interrupt: KeyboardInterrupt
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        try:
            return _model_answers(request)
        except KeyboardInterrupt:
            raise interrupt from None

    out = tmp_path / "run"
    status = _main_with(monkeypatch, answer, ["download", MODEL, "-o", str(out)])
    assert status == (143 if isinstance(interrupt, Interrupted) else 130)
    assert capsys.readouterr().err == f"unilabel-remote download: interrupted; nothing was written to {out}\n"
    assert list(tmp_path.iterdir()) == []  # neither -o nor the hidden folder the files went into


def _polls(states: list[str], job: dict | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """A service whose answers to polls of job j1 are ``states`` in turn ("away": no connection), then Ctrl-C;
    ``job``: the record of its upload and submit, for ``run``."""
    answers = iter(states)
    upload = {"id": "d1", "n": 3, "splits": {"train": 3}, "modalities": {"audio": {"shape": [5]}}}

    def answer(request: httpx.Request) -> httpx.Response:
        if job is not None and request.url.path in ("/v1/datasets", "/v1/jobs"):
            return httpx.Response(200, json=upload if request.url.path == "/v1/datasets" else job)
        state = next(answers, None)
        if state is None:
            raise KeyboardInterrupt
        if state == "away":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"id": "j1", "state": state, "progress": 0.5})

    return answer


SEEN_AT = r"\d\d:\d\d:\d\d"  # the clock time of the last poll that reached the service
UNSEEN = (
    "; job j1 was not cancelled by this command; it was last seen {state} at {at} and the service has not "
    "been reachable since, so it may have finished: `unilabel-remote status j1` tells, "
    "`unilabel-remote wait j1` follows it again\n"
)


@pytest.mark.parametrize(
    "polls, leaves",
    [
        (["running", "away"], re.escape(UNSEEN).replace(r"\{state\}", "running").replace(r"\{at\}", SEEN_AT)),
        (
            ["away"],
            re.escape(
                "; job j1 was not cancelled by this command; the service could not be reached to see its "
                "state: `unilabel-remote status j1` tells, `unilabel-remote wait j1` follows it again\n"
            ),
        ),
        (["running", "away", "running"], re.escape("; " + _follow_up("j1"))),
    ],
    ids=["seen-then-away", "never-seen", "back-again"],
)
def test_an_interrupted_wait_that_lost_the_service_says_what_it_last_saw(
    monkeypatch, capsys, polls: list[str], leaves: str
) -> None:
    """`wait` rides out a service it cannot reach; the job may finish meanwhile, so an interrupt then does not
    say that it goes on, but what the last poll that reached the service saw, and when."""
    monkeypatch.setattr("remote.client.time.sleep", lambda _seconds: None)
    assert _main_with(monkeypatch, _polls(polls), ["wait", "j1"]) == 130
    err = capsys.readouterr().err.splitlines(keepends=True)[-1]
    assert re.fullmatch("unilabel-remote wait: interrupted" + leaves, err), err


def test_an_interrupted_run_that_lost_the_service_says_when_it_saw_its_job(
    monkeypatch, synth_dir: Path, tmp_path: Path, capsys
) -> None:
    """`run` saw its job queued when it submitted it: that, and when, if no poll reached the service since."""
    monkeypatch.setattr("remote.client.time.sleep", lambda _seconds: None)
    job = {"id": "j1", "state": "queued", "strategy": "mug", "seed": 1}
    answer = _polls(["away", "away"], job)
    assert _main_with(monkeypatch, answer, ["run", str(synth_dir), "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err.splitlines(keepends=True)[-1]
    leaves = re.escape(UNSEEN).replace(r"\{state\}", "queued").replace(r"\{at\}", SEEN_AT)
    assert re.fullmatch("unilabel-remote run: interrupted" + leaves, err), err


@pytest.mark.parametrize("cut", ["interrupt", "error answer"])
def test_a_download_cut_short_removes_the_folders_it_made_and_only_those(
    monkeypatch, tmp_path: Path, capsys, cut: str
) -> None:
    """`-o kept/a/b/run` makes a/ and b/ for the run directory: cut short (Ctrl-C, or an error answer), it
    removes them again, and never kept/, which was there before: nothing was written, as it says."""

    def answer(request: httpx.Request) -> httpx.Response:
        try:
            return _model_answers(request)
        except KeyboardInterrupt:
            if cut == "error answer":
                return httpx.Response(500, json={"error": {"code": "internal", "message": "boom"}})
            raise

    (tmp_path / "kept").mkdir()
    out = tmp_path / "kept" / "a" / "b" / "run"
    status = _main_with(monkeypatch, answer, ["download", MODEL, "-o", str(out)])
    err = capsys.readouterr().err
    if cut == "interrupt":
        assert status == 130
        assert err == f"unilabel-remote download: interrupted; nothing was written to {out}\n"
    else:
        assert status == 2 and err == "error: HTTP 500 internal: boom\n"
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]
    assert list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize("command", ["labels", "report", "predict"])
def test_interrupted_download_to_a_file_leaves_it_as_it_was(
    monkeypatch, tmp_path: Path, capsys, command: str
) -> None:
    (tmp_path / "batch.json").write_text('[{"id": "u1", "features": {"audio": [0.5]}}]')
    out = tmp_path / "out.txt"
    out.write_text("before")
    args = [command, MODEL, "-o", str(out)]
    args += ["--input", str(tmp_path / "batch.json")] if command == "predict" else []
    assert _main_with(monkeypatch, _model_answers, args) == 130
    assert (
        capsys.readouterr().err == f"unilabel-remote {command}: interrupted; nothing was written to {out}\n"
    )
    assert out.read_text() == "before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.json", "out.txt"]


@pytest.mark.parametrize(
    "args, leaves",
    [
        (
            ["cancel", "j1"],
            "; the cancel may or may not have reached the service: `unilabel-remote status j1` tells",
        ),
        (["submit", "d1"], "; the job may or may not have been submitted: `unilabel-remote jobs` lists jobs"),
        (
            ["delete", "d1"],
            "; the delete may or may not have reached the service: `unilabel-remote datasets` tells",
        ),
        (["status", "j1"], ""),
        (["jobs"], ""),
    ],
)
def test_an_interrupted_request_says_what_it_may_have_done(
    monkeypatch, capsys, args: list[str], leaves: str
) -> None:
    assert _main_with(monkeypatch, _model_answers, args) == 130
    assert capsys.readouterr().err == f"unilabel-remote {args[0]}: interrupted{leaves}\n"


def test_interrupted_upload_says_what_the_service_keeps(monkeypatch, synth_dir: Path, capsys) -> None:
    assert _main_with(monkeypatch, _model_answers, ["upload", str(synth_dir)]) == 130
    err = capsys.readouterr().err
    assert err.startswith(
        "unilabel-remote upload: interrupted; the service keeps nothing of an upload it did not receive "
        "whole, but one it did may be stored (`unilabel-remote datasets` lists them"
    ), err


@pytest.mark.parametrize("cut", ["/v1/datasets", "/v1/jobs/j1/report"], ids=["upload", "report"])
def test_interrupted_run_says_what_it_left_before_and_after_its_job(
    monkeypatch, synth_dir: Path, tmp_path: Path, capsys, cut: str
) -> None:
    """`run` cut short in its upload submitted no job; cut short after its job finished, it names the files
    written so far (each written whole) and the job's end."""
    job = {"id": "j1", "state": "succeeded", "strategy": "mug", "seed": 1, "model_id": "j1"}
    answers = {
        "/v1/datasets": {"id": "d1", "n": 3, "splits": {"train": 3}, "modalities": {"audio": {"shape": [5]}}},
        "/v1/jobs": job,
        "/v1/jobs/j1": job,
        "/v1/jobs/j1/labels": "id,label\nu1,0.5\n",
    }

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == cut or path not in answers:
            raise KeyboardInterrupt
        body = answers[path]
        return httpx.Response(200, json=body) if isinstance(body, dict) else httpx.Response(200, text=body)

    out = tmp_path / "out"
    assert _main_with(monkeypatch, answer, ["run", str(synth_dir), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    if cut == "/v1/datasets":
        assert err.startswith("unilabel-remote run: interrupted; no job was submitted; the service keeps")
        assert not out.exists()
    else:
        labels = out / "j1" / "labels.csv"
        said = f"\nunilabel-remote run: interrupted; job j1 succeeded; written so far: {labels}\n"
        assert err.endswith(said), err
        assert [p.name for p in (out / "j1").iterdir()] == ["labels.csv"]


@pytest.mark.parametrize("target", ["empty folder", "nothing yet"])
def test_a_download_through_a_link_fills_the_folder_it_names(
    monkeypatch, tmp_path: Path, capsys, target: str
) -> None:
    """`download -o link`, the link naming an empty folder, renamed the finished run onto the link: "Not a
    directory", or, naming nothing yet, the link replaced by the run. The run goes where the link points and
    the link stays, as `unilabel train --out link` does."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith(f"/v1/models/{MODEL}/files/"):
            return httpx.Response(200, content=b"{}")
        return _model_answers(request)

    if target == "empty folder":
        (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    assert _main_with(monkeypatch, answer, ["download", MODEL, "-o", str(tmp_path / "link")]) == 0
    assert (tmp_path / "link").is_symlink()
    files = ["config.json", "model.json", "model.safetensors"]
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_download_that_cannot_write_names_the_folder_as_given(monkeypatch, tmp_path: Path, capsys) -> None:
    """`-o afile/run` said `[Errno 20] Not a directory: '.../afile/.run.partial-PID'`, naming the hidden
    staging folder instead of -o."""

    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "run"
    assert _main_with(monkeypatch, _model_answers, ["download", MODEL, "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"error: -o {out}: cannot be written: a part of that path is a file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
