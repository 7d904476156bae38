"""scripts/stack.py up --detach / status / down for real: the stack starts in the background from a temporary
--dir on a free port, answers, is found by status from another process, and down stops all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from remote.localstack import REPO, free_port
from tests.service.conftest import _need_redis

pytestmark = pytest.mark.slow
SCRIPT = REPO / "scripts" / "stack.py"


def stack_py(root: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), *args, "--dir", str(root)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def cmdlines() -> list[str]:
    """Each process's command line and its working directory (redis-server rewrites its command line to
    its address: only its working directory, the stack's <dir>/redis, names the stack)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                line = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out.append(f"{line} (in {os.readlink(d / 'cwd')})")
            except OSError:
                continue
    return out


def _is_worker(proc: Path, port: int) -> bool:
    try:
        return f"unilabel-{port}@" in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_up_detached_status_down(tmp_path: Path) -> None:
    _need_redis()
    root, port = tmp_path / "stack", free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        up = stack_py(root, "up", "--detach", "--port", str(port), "--device", "cpu")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"API up at {url}" in up.stdout
        key = (root / "api-key").read_text().strip()
        assert f"page: {url}/#key={key}  (" in up.stdout  # the page's address, the key in its fragment
        # the log holds the key too: the owner's alone, as the key's own file is
        assert key in (root / "logs" / "stack.log").read_text()
        modes = [(root / p).stat().st_mode & 0o777 for p in ("api-key", "logs/stack.log", "logs")]
        assert modes == [0o600, 0o600, 0o700], [oct(m) for m in modes]
        pid = int((root / "stack.pid").read_text())
        assert (root / "stack.url").read_text().strip() == url
        assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}  # up returned: it answers
        # the hints it prints reach this stack (its --dir, its URL), not the default one
        assert f"`python scripts/stack.py down --dir {root}` stops it" in up.stdout, up.stdout
        env = f"export UNILABEL_API_KEY=$(cat {root / 'api-key'}) UNILABEL_URL={url}"
        assert env in up.stdout, up.stdout

        status = stack_py(root, "status")
        assert status.returncode == 0 and f"running at {url} (pid {pid}" in status.stdout, status.stdout
        assert env in status.stdout, status.stdout  # where the key is, and how to point the client at it
        # the operator's command for this stack's Redis (on a port of its own), as status prints it, works
        redis_url = (root / "redis.url").read_text().strip()
        hint = f"Redis at {redis_url}: `unilabel-admin --redis-url {redis_url} keys create NAME` makes"
        assert hint in status.stdout and hint in up.stdout, status.stdout
        admin = [sys.executable, "-m", "service.admin", "--redis-url", redis_url, "keys", "create", "bob"]
        admin.append("--quiet")
        made = subprocess.run(admin, cwd=REPO, capture_output=True, text=True, timeout=60)
        bob = made.stdout.strip() if made.returncode == 0 else made.stderr
        answer = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {bob}"}, timeout=5)
        assert answer.status_code == 200 and answer.json()["total"] == 0, answer.text
        # a worker killed outright (its whole process group) is started again, and status says meanwhile
        # that the stack is not ready (it said "running", status 0, while jobs waited for good)
        workers = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _is_worker(d, port)]
        os.killpg(min(workers), signal.SIGKILL)  # the main process leads the group the stack gave it
        deadline = time.monotonic() + 120
        restarted = "worker ended (killed by SIGKILL); starting it again"
        while restarted not in (root / "logs" / "stack.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        said = []  # the worker takes seconds to start (it imports torch): status says so meanwhile
        while (status := stack_py(root, "status")).returncode != 0:
            assert status.returncode == 4 and "; not ready: " in status.stdout, status.stdout
            said.append(status.stdout)
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.5)
        assert said and "not ready: no Celery worker answered" in said[0], said
        again = stack_py(root, "up", "--detach", "--port", str(free_port()))
        assert again.returncode == 1 and f"already runs from {root} at {url} (pid {pid})" in again.stderr
        assert f"`python scripts/stack.py down --dir {root}` stops it" in again.stderr

        down = stack_py(root, "down")
        assert down.returncode == 0 and "stack stopped" in down.stdout, down.stdout + down.stderr
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        assert not any((root / name).exists() for name in ("stack.pid", "stack.url", "redis.url"))
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=2)
        left = [c for c in cmdlines() if str(root) in c or f"--port {port} " in c or f"unilabel-{port}@" in c]
        assert left == []  # redis-server, the worker and the API stopped with it
        assert "stack stopped" in (root / "logs" / "stack.log").read_text()

        status = stack_py(root, "status")
        assert status.returncode == 3 and status.stdout.startswith("not running")
        assert stack_py(root, "down").returncode == 0  # nothing to stop is not an error
    finally:
        pid_file = root / "stack.pid"
        if pid_file.exists():  # a failed assertion above must not leave a stack behind
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_detach_only_with_up(tmp_path: Path) -> None:
    r = stack_py(tmp_path, "status", "--detach")
    assert r.returncode == 2 and "--detach goes with up" in r.stderr
    cases = ((["status", "--quick", "--set", "beta=1"], "--set, --quick"), (["up", "--keep"], "--keep"))
    for args, unread in cases:
        r = stack_py(tmp_path, *args)  # an option the action does not read was dropped unsaid
        assert r.returncode == 2 and f"error: {unread}: not read by {args[0]}" in r.stderr, r.stderr


def test_demo_saves_the_jobs_report_and_prints_its_path_last(tmp_path: Path) -> None:
    """The README's demo (scripts/demo.sh runs this script) on a synthetic dataset with a tiny schedule: the
    job's label report is fetched over REST, saved beside its labels and its path printed at the end."""
    _need_redis()
    from tests.service.conftest import TINY

    root = tmp_path / "stack"
    hp = [f"--hp={k}={v}" for k, v in TINY.items()]
    demo = stack_py(root, "--data", "synthetic", "--port", str(free_port()), "--device", "cpu", *hp)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    lines = demo.stdout.splitlines()
    key = (root / "api-key").read_text().strip()
    assert any(line.startswith("page: http://127.0.0.1:") and f"/#key={key}  (" in line for line in lines)
    where = lines.index("where to look next:")
    reported = [line for line in lines[where:] if line.startswith("  label report ")]
    assert len(reported) == 1 and lines[lines.index(reported[0]) + 1 :] == ["stack stopped"], lines[where:]
    path = Path(reported[0].split()[2])
    assert path.parent.parent == root / "labels" and path.name == "report.html"
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.count('<img src="data:image/png;base64,') >= 4
    assert (path.parent / "labels.csv").is_file()


def test_a_closed_terminal_stops_a_foreground_stack(tmp_path: Path) -> None:
    """SIGHUP (the terminal of `stack.py up` closed) ended the script at once: redis-server, the worker and
    the API ran on in sessions of their own, its pid file stayed and `down` said "not running"."""
    _need_redis()
    root, port = tmp_path / "stack", free_port()
    cmd = [sys.executable, str(SCRIPT), "up", "--dir", str(root), "--port", str(port), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("stack is up"):
                break
        else:
            pytest.fail(f"the stack did not come up (exit {proc.wait()})")
        proc.send_signal(signal.SIGHUP)
        rest = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and rest.rstrip().endswith("stack stopped"), rest
    assert not (root / "stack.pid").exists()
    assert not [c for c in cmdlines() if str(root) in c]  # redis-server, the worker, the API: all gone


def test_a_stack_that_fails_to_start_is_stopped_and_named(tmp_path: Path) -> None:
    """A start that fails halfway (redis-server up, then a bad setting stops the worker) exits 1 naming the
    setting, stops redis-server and removes the pid, URL and Redis files; `up --detach` says the same, with
    the log's tail."""
    _need_redis()
    env = {**os.environ, "QUOTA_QUEUED_JOBS": "many"}
    for detach, root in (([], tmp_path / "fg"), (["--detach"], tmp_path / "bg")):
        cmd = [sys.executable, str(SCRIPT), "up", *detach, "--dir", str(root), "--port", str(free_port())]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
        said = r.stderr if not detach else r.stderr.split("\n", 1)[1]  # detach: the log's tail follows
        assert r.returncode == 1, r.stdout + r.stderr
        assert "error: 1 validation error for Settings\nquota_queued_jobs" in said, r.stderr
        if detach:
            assert r.stderr.startswith("error: the stack exited with 1:\n"), r.stderr
        assert "stack stopped" in (r.stdout if not detach else said)
        assert not any((root / name).exists() for name in ("stack.pid", "stack.url", "redis.url"))
        assert not [c for c in cmdlines() if str(root) in c]  # redis-server stopped with it
