"""Wall time and peak memory of a full three-stage MUG run (paper schedule) on CMU-MOSI.

Each configuration runs in a fresh subprocess (`unilabel train`), timed from process start to exit, with peak
resident memory from the kernel (ru_maxrss of that child alone, from os.wait4), restricted to 2 CPU cores with
taskset when present.

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
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from remote.localstack import run_interruptible

sys.path.insert(0, str(Path(__file__).resolve().parent))
from options import whole_numbers  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MOSI = REPO.parent / "shared" / "data" / "mosi"


def wait_measured(proc: subprocess.Popen) -> tuple[int, float]:
    """(exit code, peak RSS in MB) of ``proc``, from os.wait4: the usage of this child alone. (getrusage's
    RUSAGE_CHILDREN is the largest child ever waited for, so a light run after a heavy one would report the
    heavy one's peak.) The kernel counts this process's peak at the fork as the child's floor, which is why
    this script stays small. An interrupt meanwhile terminates the child rather than orphaning it."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return proc.returncode, usage.ru_maxrss / 1024


def run(
    args: list[str],
    threads: int,
    meta_threads: int | None = None,
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> tuple[float, float, dict]:
    with tempfile.TemporaryDirectory(prefix="unilabel-bench-") as tmp:
        return _run(Path(tmp) / "run", args, threads, meta_threads, device, cache_dir)


def _run(
    out: Path, args: list[str], threads: int, meta_threads: int | None, device: str, cache_dir: Path | None
) -> tuple[float, float, dict]:
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
    t0 = time.perf_counter()
    code, peak_mb = wait_measured(subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, env=env))
    wall = time.perf_counter() - t0
    if code != 0:  # the CLI has said why on stderr
        sys.exit(f"bench_train: `{' '.join(cmd)}` exited with {code}")
    return wall, peak_mb, json.loads((out / "config.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--threads", type=whole_numbers, default=[1, 2], help="torch intra-op threads (comma list)"
    )
    ap.add_argument(
        "--meta-threads",
        type=whole_numbers,
        default=None,
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
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="passed to every train run (in the --finetune-epochs run, its own schedule and text_source win)",
    )
    ap.add_argument(
        "--finetune-epochs",
        type=int,
        default=0,
        help="also time the text encoder fine-tuned on transcripts (Eq. 1) for this many epochs/stage, with "
        "the last --threads and --meta-threads value (its text source is the fine-tuned encoder: "
        "--text-source does not apply)",
    )
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.finetune_epochs < 0:
        ap.error("--repeat must be at least 1 and --finetune-epochs at least 0")
    sources = [t.strip() for t in args.text_source.split(",") if t.strip()]
    if not sources or set(sources) - {"features", "encoder"}:
        ap.error(f"--text-source: {args.text_source!r}: expected a comma list of features, encoder")
    print(f"CMU-MOSI {MOSI}, strategy {args.strategy}, paper schedule (Table 2), device {args.device}")
    metas: list[int | None] = list(args.meta_threads or [None])
    extra = [x for item in args.set for x in ("--set", item)]
    for _ in range(args.repeat):
        for source in sources:
            for threads in args.threads:
                for meta in metas:
                    with cached(source == "encoder") as cache:
                        timed(args, extra, source, threads, meta, cache)
    if args.finetune_epochs:
        finetune(args, extra, metas[-1])
    return 0


@contextmanager
def cached(wanted: bool) -> Iterator[Path | None]:
    """A fresh embedding cache folder, removed on the way out (also on an error or an interrupt)."""
    if not wanted:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="unilabel-cache-") as tmp:
        yield Path(tmp)


def timed(
    args: argparse.Namespace,
    extra: list[str],
    source: str,
    threads: int,
    meta: int | None,
    cache: Path | None,
) -> None:
    """One grid point: one run, or with a cache folder a cold and a warm run."""
    for cache_state in ("cold", "warm") if cache else ("",):
        hp = ["--strategy", args.strategy, "--set", f"text_source={source}", *extra]
        wall, peak, config = run(hp, threads, meta, args.device, cache)
        t = config["timings"]
        stages = f"pretrain {t['pretrain_s']:.1f} s, meta {t['meta_s']:.1f} s, " if "meta_s" in t else ""
        state = f" ({cache_state} cache)" if cache_state else ""
        print(
            f"{config['device']} text={source}{state} "
            f"threads={threads} meta-threads={meta or 'auto'}: wall {wall:.1f} s "
            f"(process start to exit), peak RSS {peak:.0f} MB; in-process: inputs "
            f"{t['inputs_s']:.1f} s, {stages}labels {t['labels_s']:.1f} s, "
            f"multitask {t['multitask_s']:.1f} s, total {t['total_s']:.1f} s; "
            f"valid MAE {config['stage3']['best_valid_loss']:.3f}",
            flush=True,
        )


def finetune(args: argparse.Namespace, extra: list[str], meta: int | None) -> None:
    """The text encoder fine-tuned on the transcripts, --finetune-epochs epochs per stage (one meta epoch)."""
    e = args.finetune_epochs
    schedule = {
        "text_source": "finetune",
        "pretrain_epochs": e,
        "meta_epochs": 1,
        "multitask_max_epochs": e,
        "early_stop": e,
    }
    hp = [
        "--strategy",
        args.strategy,
        *extra,
        *(x for k, v in schedule.items() for x in ("--set", f"{k}={v}")),
    ]
    threads = args.threads[-1]
    wall, peak, config = run(hp, threads, meta, device=args.device)
    t = config["timings"]
    per_epoch = t["multitask_s"] / config["stage3"]["epochs_run"]
    splits = config["dataset"]["summary"]["splits"]
    n_train, n_valid = splits["train"]["labeled"], splits["valid"]["labeled"]
    print(
        f"fine-tuned all-MiniLM-L6-v2 on transcripts, threads={threads} meta-threads={meta or 'auto'}: "
        f"stage-3 time per epoch {per_epoch:.1f} s ({n_train} train + {n_valid} valid utterances), "
        f"wall {wall:.1f} s for {e}+1+{e} epochs, peak RSS {peak:.0f} MB"
    )


if __name__ == "__main__":
    sys.exit(run_interruptible(main))
