#!/usr/bin/env python
"""Bring up the whole label service locally (redis-server, a Celery worker, the API on 127.0.0.1), run a
dataset upload, a MUG job and a prediction through it, print where to look next, and shut it down.

    python scripts/stack.py                      # demo on the real CMU-MOSI features (synthetic if absent)
    python scripts/stack.py --data synthetic     # demo on a freshly generated synthetic dataset
    python scripts/stack.py --quick              # a short schedule (3/3/10 epochs) instead of the paper's
    python scripts/stack.py --keep               # leave the stack up after the demo (Ctrl-C stops it)
    python scripts/stack.py up                   # only bring the stack up, until Ctrl-C

State (Redis AOF, artifacts, logs) lives in --dir (default .stack/), so a second run finds its dataset and
its finished job again instead of training twice.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.client import LabelClient, _parse_hp, run_all  # noqa: E402
from service.localstack import LocalStack, free_port  # noqa: E402

MOSI = REPO.parent / "shared" / "data" / "mosi"
# --quick: a short schedule (the default is the paper's, about a minute end to end on MOSI with 2 cores).
QUICK_SCHEDULE = {"pretrain_epochs": 3, "meta_epochs": 3, "multitask_max_epochs": 10}


def pick_data(choice: str, root: Path) -> Path:
    if choice in ("auto", "mosi"):
        if (MOSI / "utterances.csv").is_file():
            return MOSI
        if choice == "mosi":
            raise SystemExit(f"--data mosi: no dataset at {MOSI}")
        print(f"{MOSI} not found; using a synthetic dataset instead")
    if choice in ("auto", "synthetic"):
        from models.synth import make_synthetic

        out = root / "synthetic"
        if not (out / "features.npz").is_file():
            make_synthetic(out, seed=0)
        return out
    return Path(choice)


def port_or_free(port: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the stack like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("demo", "up"), default="demo")
    parser.add_argument(
        "--data", default="auto", help="auto (MOSI, else synthetic), mosi, synthetic or a PATH"
    )
    parser.add_argument("--strategy", default="mug")
    parser.add_argument("--seed", type=int, default=1111)
    parser.add_argument("--hp", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_SCHEDULE} instead of the paper's schedule (Table 2)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the stack running after the demo")
    parser.add_argument("--dir", type=Path, default=REPO / ".stack")
    parser.add_argument("--port", type=int, default=8000, help="API port (a free one if taken)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)

    stack = LocalStack(args.dir, api_port=port_or_free(args.port), device=args.device)
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"starting redis-server, a Celery worker and the API (logs in {stack.root / 'logs'}) ...", flush=True
    )
    try:
        stack.start()
        print(f"API up at {stack.url} (docs {stack.url}/docs), Redis at {stack.redis_url}", flush=True)
        if args.command == "demo":
            hp = {**(QUICK_SCHEDULE if args.quick else {}), **_parse_hp(args.hp)}
            print(f"schedule: {'quick' if args.quick else 'the paper (Table 2)'}; overrides {hp}", flush=True)
            data = pick_data(args.data, stack.root)
            print(f"data: {data}", flush=True)
            with LabelClient(stack.url, timeout=600) as client:
                result = run_all(client, data, stack.root, args.strategy, args.seed, hp)
            job, model_id = result["job"], result["job"]["model_id"]
            run_dir = stack.artifact_dir / "runs" / job["id"]
            print("\nwhere to look next:")
            print(f"  learned unimodal labels   {result['labels']}")
            print(
                f"  run directory             {run_dir}  (config.json, metrics.json, model.safetensors, ...)"
            )
            print(f"  model card                GET {stack.url}/v1/models/{model_id}")
            print(f"  job record                GET {stack.url}/v1/jobs/{job['id']}")
            print(f"  service logs              {stack.root / 'logs'}")
            valid = job.get("metrics") or {}
            shown = {k: v for k, v in valid.items() if k.startswith("valid.")}
            if shown:
                print(f"  valid metrics             {shown}")
            if not args.keep:
                print("  (add --keep to leave the API up and browse /docs)")
        if args.command == "up" or args.keep:
            print("stack is up; Ctrl-C stops it", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping ...")
    except Exception as exc:  # show the reason, not a traceback, and still stop everything
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        print("stack stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
