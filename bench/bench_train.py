"""Wall time and peak memory of a full three-stage MUG run (paper schedule) on CMU-MOSI.

Each configuration runs in a fresh subprocess (`unilabel train`), timed from process start to exit, with peak
resident memory from the kernel (ru_maxrss of the child), restricted to 2 CPU cores with taskset when present.

    python bench/bench_train.py [--threads 1,2] [--meta-threads 1,2,3] [--strategy mug] [--finetune-epochs 1]
                                [--text-source features,encoder] [--set NAME=VALUE ...]

Every (text source, threads, meta-threads) triple is one run; --repeat runs the grid again, interleaved.
With text_source=encoder (the frozen text encoder on the transcripts) each repeat runs twice on a fresh
embedding cache: first cold (the transcripts are encoded: "inputs" is the encoding time), then warm.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MOSI = REPO.parent / "shared" / "data" / "mosi"


def run(
    args: list[str],
    threads: int,
    meta_threads: int | None = None,
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> tuple[float, float, dict]:
    out = Path(tempfile.mkdtemp(prefix="unilabel-bench-")) / "run"
    env = {**os.environ, **({"UNILABEL_CACHE_DIR": str(cache_dir)} if cache_dir else {})}
    cmd = [
        sys.executable,
        "-m",
        "models.cli",
        "--threads",
        str(threads),
        "train",
        str(MOSI),
        "--out",
        str(out),
        "--quiet",
        "--device",
        device,
        *args,
    ]
    if meta_threads is not None:
        cmd += ["--meta-threads", str(meta_threads)]
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "0,1", *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, env=env)
    if done.returncode != 0:  # the CLI has said why on stderr
        sys.exit(f"bench_train: `{' '.join(cmd)}` exited with {done.returncode}")
    wall = time.perf_counter() - t0
    peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    config = json.loads((out / "config.json").read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    return wall, peak_mb, config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="torch intra-op threads (comma list)")
    ap.add_argument(
        "--meta-threads",
        default="",
        help="modalities side by side in stage 2 (comma list; default: the CLI's automatic choice)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="run the grid this many times, interleaved")
    ap.add_argument("--device", default="cpu", help="cpu (the recorded figures), cuda or auto on a GPU host")
    ap.add_argument("--strategy", default="mug")
    ap.add_argument(
        "--text-source",
        default="features",
        help="comma list of text sources to time: features (the dataset's text vectors), encoder (frozen "
        "encoder on the transcripts, cold then warm embedding cache)",
    )
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="passed to train")
    ap.add_argument(
        "--finetune-epochs",
        type=int,
        default=0,
        help="also time the text encoder fine-tuned on transcripts (Eq. 1) for this many epochs/stage",
    )
    args = ap.parse_args()
    print(f"CMU-MOSI {MOSI}, strategy {args.strategy}, paper schedule (Table 2), device {args.device}")
    metas: list[int | None] = [int(t) for t in args.meta_threads.split(",") if t.strip()] or [None]
    extra = [x for item in args.set for x in ("--set", item)]
    for _ in range(args.repeat):
        for source in [t.strip() for t in args.text_source.split(",") if t.strip()]:
            for threads in [int(t) for t in args.threads.split(",")]:
                for meta in metas:
                    cache = Path(tempfile.mkdtemp(prefix="unilabel-cache-")) if source == "encoder" else None
                    for cache_state in ("cold", "warm") if cache else ("",):
                        hp = ["--strategy", args.strategy, "--set", f"text_source={source}", *extra]
                        wall, peak, config = run(hp, threads, meta, args.device, cache)
                        t = config["timings"]
                        stages = (
                            f"pretrain {t['pretrain_s']:.1f} s, meta {t['meta_s']:.1f} s, "
                            if "meta_s" in t
                            else ""
                        )
                        cached = f" ({cache_state} cache)" if cache_state else ""
                        print(
                            f"{config['device']} text={source}{cached} "
                            f"threads={threads} meta-threads={meta or 'auto'}: wall {wall:.1f} s "
                            f"(process start to exit), peak RSS {peak:.0f} MB; in-process: inputs "
                            f"{t['inputs_s']:.1f} s, {stages}labels {t['labels_s']:.1f} s, "
                            f"multitask {t['multitask_s']:.1f} s, total {t['total_s']:.1f} s; "
                            f"valid MAE {config['stage3']['best_valid_loss']:.3f}",
                            flush=True,
                        )
                    if cache:
                        shutil.rmtree(cache, ignore_errors=True)
    if args.finetune_epochs:
        e = args.finetune_epochs
        hp = [
            "--set",
            "text_source=finetune",
            "--set",
            f"pretrain_epochs={e}",
            "--set",
            "meta_epochs=1",
            "--set",
            f"multitask_max_epochs={e}",
            "--set",
            f"early_stop={e}",
        ]
        threads = int(args.threads.split(",")[-1])
        wall, peak, config = run(["--strategy", args.strategy, *hp], threads, device=args.device)
        t = config["timings"]
        per_epoch = t["multitask_s"] / config["stage3"]["epochs_run"]
        print(
            f"fine-tuned all-MiniLM-L6-v2 on transcripts, threads={threads}: stage-3 time per epoch "
            f"{per_epoch:.1f} s (1447 train + 248 valid utterances), wall {wall:.1f} s for {e}+1+{e} epochs, "
            f"peak RSS {peak:.0f} MB"
        )


if __name__ == "__main__":
    main()
