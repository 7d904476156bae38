"""Several API processes (API_WORKERS > 1, service/serve.py): one port, one /metrics view summed over the
processes (Prometheus multiprocess mode), and counts that survive a process killed and replaced."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from remote.localstack import LocalStack, child_pids, running_stack
from tests.service.conftest import _need_redis

pytestmark = pytest.mark.slow
HEALTHZ = re.compile(
    r'^unilabel_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$', re.M
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    _need_redis()
    root = tmp_path_factory.mktemp("mp")
    prom = root / "prom"
    prom.mkdir()
    (prom / "counter_999999.db").write_bytes(b"stale")  # left by an earlier server: must not be read
    env = {"PROMETHEUS_MULTIPROC_DIR": str(prom)}
    with running_stack(root / "stack", worker=False, api_workers=2, extra_env=env) as s:
        yield s


def writer_pids(stack: LocalStack) -> set[int]:
    """Processes that have written metrics: prometheus-client names its files <kind>_<pid>.db."""
    prom = Path(stack.extra_env["PROMETHEUS_MULTIPROC_DIR"])
    return {int(p.stem.rsplit("_", 1)[1]) for p in prom.glob("*.db")}


def healthz_count(stack: LocalStack) -> float:
    # a new connection: any process may answer
    text = httpx.get(f"{stack.url}/metrics", timeout=10, headers=stack.headers(admin=True)).text
    assert text.count("# TYPE unilabel_jobs gauge") == 1
    assert 'unilabel_jobs{state="queued"} 0.0' in text
    assert 'unilabel_queue_depth{queue="train"} 0.0' in text
    assert "pid=" not in text  # counters and histograms are summed over processes, not listed per process
    match = HEALTHZ.search(text)
    return float(match[1]) if match else 0.0


def test_processes_share_the_port_and_one_metrics_view(stack: LocalStack) -> None:
    assert 999999 not in writer_pids(stack)  # the stale file was removed at start
    start = healthz_count(stack)  # LocalStack polled /healthz until the API answered
    sent = 0
    while len(writer_pids(stack)) < 2 and sent < 1000:
        assert httpx.get(f"{stack.url}/healthz", timeout=10).status_code == 200  # one connection each
        sent += 1
    pids = writer_pids(stack)
    assert len(pids) == 2, f"after {sent} connections only {pids} answered"
    assert pids <= child_pids(stack.procs["api"].pid)
    for _ in range(6):
        assert healthz_count(stack) == start + sent


def test_counts_survive_a_killed_process(stack: LocalStack) -> None:
    before = healthz_count(stack)
    assert before > 0
    supervisor = stack.procs["api"].pid
    processes = child_pids(supervisor)
    victim = sorted(writer_pids(stack) & processes)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim in (live := child_pids(supervisor)) or len(live) < len(processes):
        assert time.monotonic() < deadline, "uvicorn did not replace the killed process"
        time.sleep(0.1)
    assert victim not in child_pids(supervisor)
    sent = 0
    for _ in range(20):
        assert httpx.get(f"{stack.url}/healthz", timeout=10).status_code == 200
        sent += 1
    # the killed process's counts are still in its files and still summed
    assert healthz_count(stack) == before + sent
