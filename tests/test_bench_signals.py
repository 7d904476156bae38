"""The service benchmarks stopped by SIGTERM or Ctrl-C: the stack they started (redis-server, the Celery
worker and its pool, the API) is stopped and their temporary folder removed, with one line instead of a
traceback (remote.localstack.run_interruptible)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remote.localstack import REPO, child_pids, process_table
from tests.service.conftest import _need_redis

pytestmark = pytest.mark.slow
STACK = ("redis-server", "celery", "service.serve")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(pid: int) -> set[int]:
    table, found, frontier = process_table(), set(), [pid]
    while frontier:
        children = child_pids(frontier.pop(), table)
        found |= children
        frontier += children
    return found


def started_stack(proc: subprocess.Popen, timeout: float = 60) -> set[int]:
    """The benchmark's descendants once redis-server, the worker and the API all run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        pids = descendants(proc.pid)
        if all(any(name in cmdline(p) for p in pids) for name in STACK):
            return pids
        time.sleep(0.2)
    why = (
        f"not after {timeout:.0f} s"
        if proc.poll() is None
        else f"exit {proc.returncode}: {proc.stderr.read()}"
    )
    raise AssertionError(f"the stack did not come up ({why})")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_interrupted_load_benchmark_leaves_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    _need_redis()
    cmd = [sys.executable, "bench/bench_load.py", "--warmup", "0", "--rounds", "1", "--seconds", "1"]
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where its temporary folder goes
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = started_stack(proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert f"interrupted ({sig.name})" in err and "Traceback" not in err, err
    alive = {p: cmdline(p) for p in pids if Path(f"/proc/{p}").exists()}
    assert not alive, alive
    # its own folders (torch keeps a cache of its own there, torchinductor_<user>, as in any $TMPDIR)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("unilabel-")] == []
