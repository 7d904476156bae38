#!/usr/bin/env python
"""Load test of the label service: 32 clients for 3 rounds of 60 s, on loopback, after a warm-up round;
prints, per round, the requests, errors, latency percentiles, the API's memory (RSS at the round's end and its
peak during the round) and Redis's memory, so that a leak shows as growth from round to round. The warm-up
(60 s of the same load) fills the API's bounded memos (PREDICT_MEMO_BYTES, PREDICT_ROW_MEMO_BYTES), after
which the API's memory should stay flat.

    python bench/bench_load.py                           # 32 clients, 60 s warm-up + 3 x 60 s (about 6 min)
    python bench/bench_load.py --rounds 3 --seconds 60 --warmup 60 --clients 32 --json FILE

Brings up the local stack (redis-server, one Celery worker, the API; remote/localstack.py) with its default
settings (per-key quotas on: the load stays within them), trains one small model through the API, then every
client sends, over one keep-alive connection, as fast as answers come, a mix: predictions of new utterances
(60 %), the same request again (15 %), batches of 16 new utterances (5 %), a job record, the model list and
the dataset list (5 % each), and a request without a key (5 %, answered 401: expected, not an error). An
error is any other answer than the one expected, or a failed connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_service as bs  # noqa: E402

from remote.client import LabelClient  # noqa: E402
from remote.localstack import LocalStack, run_interruptible, running_stack  # noqa: E402

MIX = (("miss", 60), ("hit", 15), ("batch", 5), ("job", 5), ("models", 5), ("datasets", 5), ("anonymous", 5))
EXPECTED = {"anonymous": 401}  # everything else: 200


def _kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:  # not ours to reset (another user): the peak then covers the whole run
        pass


def redis_memory(url: str) -> int:
    import redis

    return int(redis.Redis.from_url(url).info("memory")["used_memory"])


class Plan:
    """The requests of one round, made before it starts (their cost is not the load generator's)."""

    def __init__(
        self, host: str, model: str, job: str, dims: dict[str, int], per_client: int, seed: int
    ) -> None:
        rng = np.random.default_rng(seed)
        pick = random.Random(seed)
        kinds = [k for k, w in MIX for _ in range(w)]
        predict = f"/v1/models/{model}/predict"
        fixed = {
            "job": bs.request_bytes(host, f"/v1/jobs/{job}", None, "GET"),
            "models": bs.request_bytes(host, "/v1/models?limit=10", None, "GET"),
            "datasets": bs.request_bytes(host, "/v1/datasets?limit=10", None, "GET"),
            "anonymous": f"GET /v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode(),
        }
        self.clients: list[list[tuple[str, bytes]]] = []
        for _ in range(bs.CLIENTS if per_client else 0):
            seen: list[bytes] = []
            mine = []
            for _ in range(per_client):
                kind = pick.choice(kinds)
                if kind == "hit" and seen:
                    mine.append((kind, pick.choice(seen)))
                    continue
                if kind in ("miss", "hit"):
                    kind = "miss"
                    req = bs.request_bytes(host, predict, {"utterances": [bs.utterance(rng, dims)]})
                    seen.append(req)
                elif kind == "batch":
                    batch = [bs.utterance(rng, dims) for _ in range(16)]
                    req = bs.request_bytes(host, predict, {"utterances": batch})
                else:
                    req = fixed[kind]
                mine.append((kind, req))
            self.clients.append(mine)


async def _client(host: str, port: int, plan: list[tuple[str, bytes]], deadline: float, out: dict) -> None:
    reader = writer = None
    for kind, req in plan:
        if time.perf_counter() > deadline:
            break
        out["sent"] += 1
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(bs.LENGTH.search(head).group(1)))
            status = int(head.split(b" ", 2)[1])
        except (OSError, asyncio.IncompleteReadError, AttributeError, ValueError) as exc:
            key = f"transport {type(exc).__name__}"
            out["errors"][key] = out["errors"].get(key, 0) + 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        out["latencies"].append(time.perf_counter() - start)
        if status != EXPECTED.get(kind, 200):
            key = f"{kind} {status}"
            out["errors"][key] = out["errors"].get(key, 0) + 1
    if writer is not None:
        writer.close()


def run_round(stack: LocalStack, plan: Plan, seconds: float) -> dict:
    host, port = stack.url.removeprefix("http://").split(":")
    api_pid = stack.procs["api"].pid
    out: dict = {"latencies": [], "errors": {}, "sent": 0}
    reset_peak(api_pid)

    async def main() -> float:
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(_client(host, int(port), c, deadline, out) for c in plan.clients))
        return time.perf_counter() - start

    wall = bs.run_loop(main())
    ms = np.asarray(out["latencies"]) * 1000
    requests = len(ms) + sum(v for k, v in out["errors"].items() if k.startswith("transport"))
    if out["sent"] >= sum(len(c) for c in plan.clients):
        print("warning: the clients ran out of prepared requests before the round's end (--per-client)")
    return {
        "seconds": round(wall, 1),
        "requests": requests,
        "rps": round(requests / wall),
        "errors": out["errors"],
        "error_count": sum(out["errors"].values()),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
        "api_rss_mb": round(_kb(api_pid, "VmRSS") / 1024, 1),
        "api_peak_rss_mb": round(_kb(api_pid, "VmHWM") / 1024, 1),
        "redis_mb": round(redis_memory(stack.redis_url) / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of a round")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of load before the rounds")
    parser.add_argument("--per-client", type=int, default=6000, help="requests prepared per client and round")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    bs.check_json_path(parser, args.json)
    bs.CLIENTS = args.clients
    from models.synth import make_synthetic

    load_at_start = os.getloadavg()
    rounds = []
    warm = None
    with tempfile.TemporaryDirectory(prefix="unilabel-load-") as tmp:
        data = make_synthetic(Path(tmp) / "data", seed=0)
        with running_stack(Path(tmp) / "stack", extra_env={"WORKER_TORCH_THREADS": "1"}) as stack:
            bs.KEY["value"] = stack.api_key or ""
            with LabelClient(stack.url, timeout=600, api_key=stack.api_key) as client:
                _, dims, job = bs.trained_model(client, data)
            host = stack.url.removeprefix("http://")
            rss = _kb(stack.procs["api"].pid, "VmRSS") / 1024
            print(f"API at {stack.url}; {args.clients} clients, {args.rounds} x {args.seconds:.0f} s")
            print(f"before the load: API RSS {rss:.1f} MB", flush=True)
            if args.warmup:
                plan = Plan(host, job["model_id"], job["id"], dims, args.per_client, seed=1000)
                warm = run_round(stack, plan, args.warmup)
                print(f"warm-up: {json.dumps(warm)}", flush=True)
            for k in range(args.rounds):
                plan = Plan(host, job["model_id"], job["id"], dims, args.per_client, seed=k)
                figures = run_round(stack, plan, args.seconds)
                rounds.append(figures)
                print(f"round {k + 1}: {json.dumps(figures)}", flush=True)

    when = datetime.now().isoformat(timespec="seconds")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\n## Load test ({when}, {machine})\n")
    columns = ("round", "requests", "req/s", "errors", "p50 ms", "p99 ms", "max ms", "API RSS MB (end, peak)")
    print(f"| {' | '.join(columns)} | Redis MB |")
    print("|---" * (len(columns) + 1) + "|")
    named = ([("warm-up", warm)] if warm else []) + [(str(k), r) for k, r in enumerate(rounds, 1)]
    for k, r in named:
        latency = f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']}"
        print(
            f"| {k} | {r['requests']:,} | {r['rps']:,} | {r['error_count']} | {latency} | "
            f"{r['api_rss_mb']}, {r['api_peak_rss_mb']} | {r['redis_mb']} |"
        )
    start, end = (tuple(round(x, 2) for x in load) for load in (load_at_start, os.getloadavg()))
    print(f"\nload average (1, 5, 15 min) at start {start}, at end {end}")
    if args.json:
        figures = {"clients": args.clients, "warmup": warm, "rounds": rounds}
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(r["error_count"] == 0 for r in rounds) else 1


if __name__ == "__main__":
    raise SystemExit(run_interruptible(main))
