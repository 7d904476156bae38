#!/usr/bin/env python
"""Benchmark the label service on this machine: predict latency/throughput and time to first epoch.

    python bench/bench_service.py                 # full run, prints a markdown table
    python bench/bench_service.py --requests 200  # per client (default 150)

Brings up the local stack (redis-server, one Celery worker, the API under uvicorn), trains one small MUG
model on synthetic vector features through the API, then drives the API with 32 concurrent keep-alive
clients (a minimal asyncio HTTP/1.1 client, so the load generator costs little CPU of its own):
- single: one new utterance per request (cache misses);
- cache hit: the same requests again (answered from the API process's response memo);
- cache hit, new request bytes: the same utterances under new ids (answered from the row memo);
- batched: 64 new utterances per request;
- bare model: TrainedModel.predict_batch on the same batches in this process (1 torch thread), to give the
  ratio of served to bare throughput;
- time to first epoch: POST /v1/jobs to the job's started_at and first progress event, idle worker;
- micro-batching: mean utterances per model forward pass in the single-miss and batched phases, read from the
  API's /metrics (unilabel_predict_forward_utterances).

Every request carries the stack's API key; the stack runs without per-key quotas (QUOTA_*=0), whose counting
is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.version import code_version  # noqa: E402
from remote.client import LabelClient  # noqa: E402
from remote.localstack import child_pids, process_table, run_interruptible, running_stack  # noqa: E402

CLIENTS = 32
SCHEDULE = {"pretrain_epochs": 2, "meta_epochs": 2, "multitask_max_epochs": 5}
LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)
# the load is measured, not limited: no per-key quotas (their counting still runs)
NO_QUOTAS = {f"QUOTA_{name}": "0" for name in ("PREDICTIONS_PER_MINUTE", "UPLOADS_PER_MINUTE")}
KEY = {"value": ""}  # the API key every request carries (set once the stack is up)


def request_bytes(host: str, path: str, body: dict | None, method: str = "POST") -> bytes:
    data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY['value']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    return head + data


async def _client(host: str, port: int, requests: list[bytes], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for req in requests:
            start = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(int(LENGTH.search(head).group(1)))
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{head[:40]!r} {body[:300]!r}")
    finally:
        writer.close()


CLIENT_LOOP = {"name": "uvloop"}  # --client-loop


def run_loop(main: Coroutine[Any, Any, float]) -> float:
    """The load generator's event loop: uvloop when installed (less client CPU per request, which on this
    2-core machine is CPU the API does not get), else asyncio's own (--client-loop asyncio)."""
    if CLIENT_LOOP["name"] == "uvloop":
        try:
            import uvloop
        except ImportError:
            CLIENT_LOOP["name"] = "asyncio"
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process and its live descendants (Linux /proc; with --api-workers above
    1 the API serves from child processes), or NaN when there is none to read."""
    table = process_table()
    if pid not in table:
        return float("nan")
    tree, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        tree.append(p)
        frontier += child_pids(p, table)
    ticks = sum(int(table[p][11]) + int(table[p][12]) for p in tree)
    return ticks / os.sysconf("SC_CLK_TCK")


def measured(
    main: Coroutine[Any, Any, float], latencies: list[float], api_pid: int | None
) -> dict[str, float]:
    """Run one load; percentiles (ms), maximum, requests per second and CPU per request (us) of the load
    generator (this process) and of the API process."""
    client0, api0 = time.process_time(), process_cpu_seconds(api_pid)
    wall = run_loop(main)
    client_cpu, api_cpu = time.process_time() - client0, process_cpu_seconds(api_pid) - api0
    ms = np.asarray(latencies) * 1000
    return {
        "n": len(ms),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
        "rps": len(ms) / wall,
        "client_cpu_us": client_cpu / len(ms) * 1e6,
        "api_cpu_us": api_cpu / len(ms) * 1e6,
    }


def forward_passes(url: str, admin_key: str) -> tuple[float, float]:
    """(forward passes, utterances forwarded) so far, from the API's /metrics histogram (an admin's)."""
    import urllib.request

    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {admin_key}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    count = re.search(r"^unilabel_predict_forward_utterances_count (\S+)$", text, re.M)
    total = re.search(r"^unilabel_predict_forward_utterances_sum (\S+)$", text, re.M)
    return (float(count[1]), float(total[1])) if count and total else (0.0, 0.0)


def per_forward(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Mean utterances per forward pass between two forward_passes readings."""
    passes = after[0] - before[0]
    return (after[1] - before[1]) / passes if passes else float("nan")


def drive(url: str, per_client: list[list[bytes]], api_pid: int | None = None) -> dict[str, float]:
    """All clients at once; returns latency percentiles (ms) and requests per second."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_client(host, int(port), reqs, latencies) for reqs in per_client))
        return time.perf_counter() - start

    return measured(run(), latencies, api_pid)


def drive_paced(
    url: str, per_client: list[list[bytes]], rate: float, api_pid: int | None = None
) -> dict[str, float]:
    """Open loop: the clients together offer ``rate`` requests/s on a fixed schedule; a latency counts from
    the scheduled send time, so a late request also pays for the wait (no coordinated omission)."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    interval = len(per_client) / rate

    async def client(i: int, requests: list[bytes], t0: float) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for k, req in enumerate(requests):
                due = t0 + (i / len(per_client) + k) * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(LENGTH.search(head).group(1)))
                latencies.append(time.perf_counter() - due)
        finally:
            writer.close()

    async def run() -> float:
        t0 = time.perf_counter() + 0.2
        await asyncio.gather(*(client(i, reqs, t0) for i, reqs in enumerate(per_client)))
        return time.perf_counter() - t0

    return measured(run(), latencies, api_pid)


def utterance(rng: np.random.Generator, dims: dict[str, int]) -> dict:
    return {"features": {m: np.round(rng.normal(size=d), 5).tolist() for m, d in dims.items()}}


def time_to_first_epoch(
    client: LabelClient, redis_url: str, dataset_id: str, repeats: int
) -> dict[str, list[float]]:
    import redis

    store = redis.Redis.from_url(redis_url)
    out: dict[str, list[float]] = {"started": [], "first_progress": []}
    for seed in range(repeats):
        time.sleep(2.0)  # the worker is idle and its next process is forked
        t0 = time.time()
        job = client.submit(dataset_id, "mug", 10_000 + seed, SCHEDULE)
        final = client.wait(job["id"], timeout=600, poll=0.2)
        assert final["state"] == "succeeded", final
        rec = store.hgetall(f"unilabel:job:{job['id']}")
        out["started"].append(float(rec[b"started_at"]) - t0)
        out["first_progress"].append(float(rec[b"first_progress_at"]) - t0)
    return out


def trained_model(client: LabelClient, data: Path) -> tuple[dict, dict[str, int], dict]:
    """Upload ``data`` and train one small MUG model on it (SCHEDULE): the dataset's record, its feature
    dimensions and the succeeded job."""
    dataset = client.upload(data)
    dims = {m: v["dim"] for m, v in dataset["modalities"].items()}
    job = client.wait(client.submit(dataset["id"], "mug", 1111, SCHEDULE)["id"], timeout=900)
    assert job["state"] == "succeeded", job
    return dataset, dims, job


def bare_throughput(run_dir: Path, batches: list[list[dict]], repeat: int = 3) -> float:
    import torch

    from models.trained_model import TrainedModel

    torch.set_num_threads(1)
    model = TrainedModel.load(run_dir)
    arrays = [
        {m: [np.asarray(u["features"][m], dtype=np.float32) for u in batch] for m in batch[0]["features"]}
        for batch in batches
    ]
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for feats in arrays:
            model.predict_batch(feats)
        best = max(best, sum(len(b) for b in batches) / (time.perf_counter() - start))
    return best


def check_json_path(parser: argparse.ArgumentParser, path: Path | None) -> None:
    """Refuse a --json path that cannot be written, before the run rather than after it."""
    if path is None:
        return
    if path.is_dir():
        parser.error(f"--json: {path} is a directory")
    if not path.parent.is_dir():
        parser.error(f"--json: no such directory: {path.parent}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=150, help="single-utterance requests per client")
    parser.add_argument("--batches", type=int, default=15, help="batched requests per client")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--first-epoch-repeats", type=int, default=5)
    parser.add_argument("--paced-rate", type=float, default=1000.0, help="open-loop offered load, requests/s")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--client-loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--api-workers", type=int, default=1, help="API processes (API_WORKERS)")
    args = parser.parse_args(argv)
    check_json_path(parser, args.json)
    CLIENT_LOOP["name"] = args.client_loop

    from models.synth import make_synthetic

    load_at_start = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="unilabel-bench-") as tmp:
        data = make_synthetic(Path(tmp) / "data", seed=0)
        with running_stack(
            Path(tmp) / "stack",
            api_workers=args.api_workers,
            extra_env={"WORKER_TORCH_THREADS": "1", **NO_QUOTAS},
        ) as stack:
            KEY["value"] = stack.api_key or ""
            with LabelClient(stack.url, timeout=600, api_key=stack.api_key) as client:
                dataset, dims, job = trained_model(client, data)
                first = time_to_first_epoch(client, stack.redis_url, dataset["id"], args.first_epoch_repeats)
            model_id = job["model_id"]
            api_pid = stack.procs["api"].pid
            path = f"/v1/models/{model_id}/predict"
            host = stack.url.removeprefix("http://")
            rng = np.random.default_rng(0)

            warm = [
                [request_bytes(host, path, {"utterances": [utterance(rng, dims)]}) for _ in range(20)]
                for _ in range(CLIENTS)
            ]
            drive(stack.url, warm, api_pid)
            single_utts = [[utterance(rng, dims) for _ in range(args.requests)] for _ in range(CLIENTS)]
            singles = [[request_bytes(host, path, {"utterances": [u]}) for u in per] for per in single_utts]
            before = forward_passes(stack.url, stack.admin_key)
            single = drive(stack.url, singles, api_pid)
            single["utterances_per_forward"] = per_forward(before, forward_passes(stack.url, stack.admin_key))
            hit = drive(stack.url, singles, api_pid)
            # the same utterances under new ids: other request bytes, so the response memo misses and the row
            # memo (one entry per utterance's features) answers
            renamed = [
                [
                    request_bytes(host, path, {"utterances": [{**u, "id": f"again-{c}-{k}"}]})
                    for k, u in enumerate(per)
                ]
                for c, per in enumerate(single_utts)
            ]
            hit_row_memo = drive(stack.url, renamed, api_pid)
            fresh = [
                [
                    request_bytes(host, path, {"utterances": [utterance(rng, dims)]})
                    for _ in range(args.requests)
                ]
                for _ in range(CLIENTS)
            ]
            paced_miss = drive_paced(stack.url, fresh, args.paced_rate, api_pid)
            paced_hit = drive_paced(stack.url, fresh, args.paced_rate, api_pid)
            batch_utts = [
                [[utterance(rng, dims) for _ in range(args.batch_size)] for _ in range(args.batches)]
                for _ in range(CLIENTS)
            ]
            batch_reqs = [[request_bytes(host, path, {"utterances": b}) for b in per] for per in batch_utts]
            before = forward_passes(stack.url, stack.admin_key)
            batched = drive(stack.url, batch_reqs, api_pid)
            after = forward_passes(stack.url, stack.admin_key)
            batched["utterances_per_forward"] = per_forward(before, after)
            batched["ups"] = batched["rps"] * args.batch_size
            bare = bare_throughput(
                stack.artifact_dir / "runs" / model_id, [b for per in batch_utts for b in per]
            )

    figures = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "code": f"{code_version()} in {REPO}",  # the tree the stack runs from: this script's
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "clients": CLIENTS,
        "client_loop": CLIENT_LOOP["name"],
        "api_workers": args.api_workers,
        "dims": dims,
        "single": single,
        "cache_hit": hit,
        "cache_hit_row_memo": hit_row_memo,
        "paced_rate": args.paced_rate,
        "paced_single": paced_miss,
        "paced_cache_hit": paced_hit,
        "batched": {**batched, "batch_size": args.batch_size},
        "bare_model_ups": bare,
        "served_over_bare": batched["ups"] / bare,
        "time_to_start_s": first["started"],
        "time_to_first_progress_s": first["first_progress"],
    }
    print(f"\n## Label service benchmark ({figures['date']}, {figures['machine']})\n")
    print(f"code {figures['code']}\n")
    loop = CLIENT_LOOP["name"]
    print(
        f"{CLIENTS} concurrent keep-alive clients ({loop}), {args.api_workers} API process(es), one model, "
        f"vector features {dims}.\n"
    )
    print("| measure | p50 ms | p90 ms | p99 ms | max ms | throughput | CPU us/req API, client | target |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [
        ("single-utterance predict (cache miss)", single, f"{single['rps']:.0f} req/s", "p99 <= 20 ms"),
        ("single-utterance predict (cache hit)", hit, f"{hit['rps']:.0f} req/s", "p99 <= 5 ms"),
        (
            "single-utterance predict (cache hit, new request bytes: row memo)",
            hit_row_memo,
            f"{hit_row_memo['rps']:.0f} req/s",
            "-",
        ),
        (
            f"single, open loop at {args.paced_rate:.0f} req/s (miss)",
            paced_miss,
            f"{paced_miss['rps']:.0f} req/s",
            "-",
        ),
        (
            f"single, open loop at {args.paced_rate:.0f} req/s (hit)",
            paced_hit,
            f"{paced_hit['rps']:.0f} req/s",
            "-",
        ),
        (
            f"batched predict ({args.batch_size} per request)",
            batched,
            f"{batched['ups']:.0f} utt/s",
            ">= 2000 utt/s",
        ),
    ]
    for name, r, tp, target in rows:
        cells = " | ".join(f"{r[k]:.1f}" for k in ("p50", "p90", "p99", "max"))
        cpu = f"{r['api_cpu_us']:.0f}, {r['client_cpu_us']:.0f}"
        print(f"| {name} | {cells} | {tp} | {cpu} | {target} |")
    print(
        f"\nmicro-batching: {single['utterances_per_forward']:.1f} utterances per forward pass for single "
        f"misses, {batched['utterances_per_forward']:.1f} for batched requests "
        "(unilabel_predict_forward_utterances)"
    )
    print(
        f"bare model on the same batches (1 thread, in process): {bare:.0f} utt/s; "
        f"served / bare = {figures['served_over_bare']:.2f}"
    )
    starts, firsts = first["started"], first["first_progress"]
    if starts:
        print(
            f"POST /v1/jobs -> job started (idle worker): median {statistics.median(starts):.3f} s, "
            f"max {max(starts):.3f} s over {len(starts)} jobs (target < 1 s)"
        )
        print(
            f"POST /v1/jobs -> first epoch finished: median {statistics.median(firsts):.3f} s, "
            f"max {max(firsts):.3f} s"
        )
    print(
        f"load average (1, 5, 15 min) at start {tuple(round(x, 2) for x in load_at_start)}, "
        f"at end {tuple(round(x, 2) for x in figures['load_average_at_end'])}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_interruptible(main))
