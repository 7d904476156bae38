"""scripts/stack.py in-process, without a stack: the supervisor's retry of a start that failed, and `status`
of a stack whose API does not answer."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from remote.localstack import REPO, free_port

spec = importlib.util.spec_from_file_location("stack_script", REPO / "scripts" / "stack.py")
stack_py = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stack_py)


def test_a_start_that_fails_is_tried_again(monkeypatch, capsys) -> None:
    """A worker that ended and then fails to start again is said, stopped, and started in the next round."""
    dead = SimpleNamespace(poll=lambda: -9, returncode=-9)
    stack = SimpleNamespace(root=Path("/r"), procs={"worker": dead}, stopped=[], starts=[])

    def start_worker() -> None:
        stack.starts.append(1)
        if len(stack.starts) == 1:
            raise RuntimeError("celery worker exited with 1")
        stack.procs["worker"] = SimpleNamespace(poll=lambda: None)

    stack.start_redis = stack.start_api = lambda: pytest.fail("only the worker ended")
    stack.start_worker = start_worker
    stack.stop_process = stack.stopped.append
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(stack_py.time, "sleep", sleep)
    with pytest.raises(KeyboardInterrupt):
        stack_py.supervise(stack)
    out, err = capsys.readouterr()
    assert out.count("worker ended (killed by SIGKILL); starting it again (its log: /r/logs/worker.log)") == 2
    assert err == "error: worker did not start again (celery worker exited with 1); trying again\n"
    every, backoff = stack_py.SUPERVISE_EVERY_S, stack_py.RESTART_BACKOFF_S
    assert stack.starts == [1, 1] and stack.stopped == ["worker"] and slept == [every, backoff, every, every]


def test_status_of_a_stack_whose_api_does_not_answer_is_4(tmp_path: Path, capsys) -> None:
    """A stack that runs (its pid is this script's) but whose API is away (being started again) is "not
    ready": exit status 4, with the reason."""
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "stack.py"])
    try:
        while b"stack.py" not in Path(f"/proc/{fake.pid}/cmdline").read_bytes():  # until it has started
            time.sleep(0.01)
        url = f"http://127.0.0.1:{free_port()}"
        (tmp_path / "stack.pid").write_text(f"{fake.pid}\n")
        (tmp_path / "stack.url").write_text(url + "\n")
        assert stack_py.status(tmp_path) == 4
        out = capsys.readouterr().out
        assert out.startswith(f"running at {url} (pid {fake.pid}, ")
        assert "; not ready: the API does not answer\n" in out
    finally:
        fake.kill()
        fake.wait()
