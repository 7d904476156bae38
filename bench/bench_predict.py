"""Time TrainedModel.predict_batch on a small MUG model with vector features, in process, one torch thread.

Prints microseconds per call and utterances per second for batch sizes the service sends (one request's
utterances, or a micro-batch of concurrent requests), and the forward pass alone. Results: docs/benchmarks.md.

    python bench/bench_predict.py                 # about 30 s
    PYTHONPATH=/path/to/older/checkout python bench/bench_predict.py   # the same figures for older code
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from options import whole_numbers  # noqa: E402

SCHEDULE = {"pretrain_epochs": 2, "meta_epochs": 2, "multitask_max_epochs": 5}  # as bench_service.py


def per_call_us(fn: Callable[[], object], seconds: float) -> float:
    """Median over 5 rounds of the mean time per call, each round about seconds / 5 long."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    calls = max(1, int(seconds / 5 / once))
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return float(np.median(rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=whole_numbers, default="1,2,4,16,64,512", help="batch sizes, comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent per measurement")
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error(f"--seconds: must be above 0, not {args.seconds}")
    sizes = args.sizes
    torch.set_num_threads(1)

    from models.dataset_loader import load_dataset
    from models.pipeline import train
    from models.synth import make_synthetic
    from models.trained_model import TrainedModel

    with tempfile.TemporaryDirectory(prefix="unilabel-bench-") as tmp:
        ds = load_dataset(make_synthetic(Path(tmp) / "data", seed=0))
        run = train(ds, Path(tmp) / "run", hyperparameters=SCHEDULE, device="cpu").out_dir
        model = TrainedModel.load(run, "cpu")
        rng = np.random.default_rng(0)
        dims = {m: s["dim"] for m, s in model.input_spec.items()}
        print(
            f"\n## predict_batch ({datetime.now().isoformat(timespec='seconds')}, {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__})\n"
        )
        print(f"vector features {dims}, one torch thread\n")
        print("| utterances | predict_batch us/call | utt/s | forward alone us |")
        print("|---|---|---|---|")
        for n in sizes:
            feats = {m: [rng.normal(size=d).astype(np.float32) for _ in range(n)] for m, d in dims.items()}
            call = per_call_us(lambda f=feats: model.predict_batch(f), args.seconds)
            tensors = {m: torch.from_numpy(np.stack(v)) for m, v in feats.items()}

            def module(t: dict = tensors) -> object:
                with torch.inference_mode():
                    return model.net(t)

            module_us = per_call_us(module, args.seconds)
            print(f"| {n} | {call:.0f} | {n / call * 1e6:,.0f} | {module_us:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
