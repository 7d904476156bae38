"""Run the whole stack as local processes: redis-server, one Celery worker, the API (service/serve.py).

Used by scripts/stack.py (the README's main command), the integration tests and bench/bench_service.py.
Every process gets its own session, logs to ``<dir>/logs/`` and is stopped by its own process group. The
stack makes its API keys with ``unilabel-admin`` (``api_key``, an ordinary key; ``admin_key`` for /metrics and
every key's resources).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from models.interrupts import exit_status, signals_ignored, signals_unwind

REPO = Path(__file__).resolve().parents[1]
REDIS_CONF = REPO / "docker" / "redis.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_table() -> dict[int, list[str]]:
    """For every live process (Linux /proc): the fields of /proc/<pid>/stat after the command name
    (index 1 = parent pid, 11 and 12 = user and system CPU ticks)."""
    table = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                table[int(d.name)] = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
    return table


def child_pids(pid: int, table: dict[int, list[str]] | None = None) -> set[int]:
    """Live processes whose parent is ``pid``."""
    table = process_table() if table is None else table
    return {child for child, fields in table.items() if int(fields[1]) == pid}


def _stop(proc: subprocess.Popen | None, signals: tuple[tuple[int, float], ...]) -> None:
    """Signal the process group we started, escalating through ``(signal, seconds to wait)``, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        for sig, wait in signals:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@dataclass
class LocalStack:
    """Processes of one local deployment; ``start()`` brings them up, ``stop()`` takes them down."""

    root: Path
    redis_port: int = 0
    api_port: int = 0
    device: str = "cpu"
    api_workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    api_key: str | None = None  # made by start() unless given (or auto_keys is off)
    admin_key: str | None = None
    auto_keys: bool = True

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.redis_port = self.redis_port or free_port()
        self.api_port = self.api_port or free_port()
        for d in ("logs", "redis", "artifacts"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "logs").chmod(0o700)  # a detached stack's log holds its API key (scripts/stack.py)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def artifact_dir(self) -> Path:
        return self.root / "artifacts"

    def env(self) -> dict[str, str]:
        env = {**os.environ, "REDIS_URL": self.redis_url, "ARTIFACT_DIR": str(self.artifact_dir)}
        env |= {"DEVICE": self.device, "PYTHONUNBUFFERED": "1", **self.extra_env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        return env

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env or self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def _wait(self, name: str, what: str, check: Callable[[], object], timeout: float) -> None:
        """Until ``check()`` is true; raises when process ``name`` exits first (with its log's tail) or after
        ``timeout`` seconds."""
        proc, log = self.procs[name], self.root / "logs" / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text()[-3000:] if log.exists() else ""
                raise RuntimeError(f"{what} exited with {proc.returncode}\n{tail}")
            with contextlib.suppress(Exception):  # not up yet
                if check():
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{what} not ready after {timeout:.0f} s")

    def create_key(self, name: str | None = None, admin: bool = False, *limits: str) -> str:
        """A new API key in this stack's Redis (``unilabel-admin keys create``); ``limits``: NAME=VALUE."""
        name = name or f"{'admin' if admin else 'local'}-{secrets.token_hex(3)}"
        cmd = [sys.executable, "-m", "service.admin", "--redis-url", self.redis_url, "keys", "create", name]
        cmd += ["--quiet", *(["--admin"] if admin else []), *(f"--limit={x}" for x in limits)]
        done = subprocess.run(cmd, cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"unilabel-admin keys create failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def headers(self, admin: bool = False) -> dict[str, str]:
        """The Authorization header of the stack's key (or its admin key)."""
        return {"Authorization": f"Bearer {self.admin_key if admin else self.api_key}"}

    # the three processes -------------------------------------------------------------------------
    def start_redis(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found: apt-get install -y redis-server")
        self._spawn(
            "redis",
            [
                exe,
                str(REDIS_CONF),
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
                "--dir",
                str(self.root / "redis"),
            ],
        )
        import redis

        self._wait("redis", "redis-server", redis.Redis(port=self.redis_port).ping, 15)

    def start_worker(self, wait: bool = True) -> None:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app:celery_app",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--hostname",
            f"unilabel-{self.api_port}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        self._spawn("worker", cmd)
        if wait:
            from worker.app import make_celery
            from worker.settings import Settings

            app = make_celery(Settings(redis_url=self.redis_url, artifact_dir=self.artifact_dir))
            try:
                self._wait("worker", "celery worker", lambda: app.control.ping(timeout=0.5), 90)
            finally:
                app.close()

    def start_api(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "service.serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.api_port),
            "--workers",
            str(self.api_workers),
        ]
        env = self.env()
        if self.api_workers > 1:  # the processes' metric files live and go with the stack, not in $TMPDIR
            env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(self.root / "metrics"))
        self._spawn("api", cmd, env)
        self._wait("api", "API", lambda: httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200, 90)

    def start(self, worker: bool = True) -> LocalStack:
        """redis-server, the stack's keys (unless ``auto_keys`` is off), a Celery worker unless ``worker`` is
        False, and the API."""
        self.start_redis()
        if self.auto_keys:
            self.make_keys()
        if worker:
            self.start_worker()
        self.start_api()
        return self

    def make_keys(self) -> None:
        """The stack's keys, unless given."""
        self.api_key = self.api_key or self.create_key()
        self.admin_key = self.admin_key or self.create_key(admin=True)

    def stop_process(self, name: str) -> None:
        """SIGTERM to the process group; for Celery that ends a training child too, so its job goes back to
        the queue (acks_late + reject_on_worker_lost) and runs again on the next start, counted as an attempt.
        Then SIGQUIT (cold shutdown) for a worker that lingers, and SIGKILL as the last resort."""
        signals = (
            ((signal.SIGTERM, 5.0), (signal.SIGQUIT, 15.0)) if name == "worker" else ((signal.SIGTERM, 20.0),)
        )
        _stop(self.procs.pop(name, None), signals)

    def stop(self) -> None:
        """API first (no new work), then the worker, then Redis (flushes its AOF)."""
        for name in ("api", "worker", "redis"):
            self.stop_process(name)


def run_interruptible(main: Callable[[], int]) -> int:
    """``main()`` with SIGTERM and SIGHUP unwinding like Ctrl-C (models.interrupts), so that running_stack's
    stop and a TemporaryDirectory's removal run. An interrupt ends with one line on stderr, not a traceback,
    and the exit status 128 + the signal's number."""
    with signals_unwind():
        try:
            return main()
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            print(f"interrupted ({signal.Signals(signum).name}); stopped and cleaned up", file=sys.stderr)
            return exit_status(exc)


@contextmanager
def running_stack(root: Path, *, worker: bool = True, **kwargs) -> Iterator[LocalStack]:
    """A LocalStack in ``root`` (keyword arguments as LocalStack's) running redis-server, a Celery worker
    unless ``worker`` is False, and the API; stopped on the way out, also when starting fails part-way. A
    program that should stop it on SIGTERM too runs under ``run_interruptible``."""
    stack = LocalStack(root, **kwargs)
    try:
        yield stack.start(worker=worker)
    finally:
        with signals_ignored():
            stack.stop()
