"""Per-modality jobs that draw from one random generator, run side by side with the result of running them one
after another.

MUG's stage 2 (and MLC in its place) learns one small network per modality; the modalities are independent
except that they draw their random numbers, one after another, from one generator. None of those numbers
depends on the data, so a job's ``skip(gen)`` can draw exactly what its ``run`` would draw without computing
anything, which tells where the next job's numbers start. ``run_jobs`` starts each job on a copy of the
generator as it stands, skips that job's draws in the calling thread while the job already runs, and so on:
every job sees the numbers it would have seen in the sequential run, and ``gen`` ends where the sequential run
leaves it.

Their batches are far too small for torch's intra-op threads (docs/benchmarks.md), so the jobs run on one
intra-op thread each and more cores are used by running jobs side by side; torch releases the GIL inside its
operators. The caller's intra-op setting is restored afterwards.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

R = TypeVar("R")
EpochCallback = Callable[[int, dict[str, float]], None]

T = TypeVar("T")
# Initial weights come from a job's generator through torch's global generator (nn.Linear's own
# initialisation); jobs side by side take turns with it.
_GLOBAL_RNG = threading.Lock()


def draw_seed(gen: torch.Generator) -> int:
    """One seed drawn from ``gen``: a job's first draw, the seed of its initial weights (built_with_seed)."""
    return int(torch.randint(0, 2**62, (1,), generator=gen))


def built_with_seed(seed: int, build: Callable[[], T]) -> T:
    """``build()`` (e.g. a module with torch's own initialisation) with the global generator seeded by
    ``seed``, leaving that generator as it was; safe while jobs run side by side."""
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@dataclass
class GeneratorJob(Generic[R]):
    """``run(gen, on_epoch)`` does the work, drawing only from ``gen`` and calling ``on_epoch(epoch, stats)``
    after each epoch; ``skip(gen)`` draws exactly what ``run`` draws, in the same order, computing nothing."""

    run: Callable[[torch.Generator, EpochCallback | None], R]
    skip: Callable[[torch.Generator], None]


class _Aborted(Exception):
    """Another job failed (or was cancelled); this one stops at its next epoch."""


def run_jobs(
    jobs: dict[str, GeneratorJob[R]],
    gen: torch.Generator,
    threads: int = 1,
    on_epoch: Callable[[str, int, dict[str, float]], None] | None = None,
) -> dict[str, R]:
    """Every job, in ``jobs``' order, up to ``threads`` of them side by side; the same results, and the same
    final state of ``gen``, for every ``threads``.

    ``on_epoch(name, epoch, stats)`` is called under a lock; when it raises (e.g. Cancelled), every job stops
    at its next epoch and that error is raised; so does an exception in the calling thread (Ctrl-C, Celery's
    soft time limit). When a job fails, the jobs after it stop at their next epoch and the ones before it run
    on: the error raised is the first job's in ``jobs``' order, the one the sequential run raises.
    """
    intra_op = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if threads <= 1 or len(jobs) <= 1:
            return {
                name: job.run(gen, None if on_epoch is None else functools.partial(on_epoch, name))
                for name, job in jobs.items()
            }
        return _side_by_side(jobs, gen, threads, on_epoch)
    finally:
        torch.set_num_threads(intra_op)


def _side_by_side(
    jobs: dict[str, GeneratorJob[R]],
    gen: torch.Generator,
    threads: int,
    on_epoch: Callable[[str, int, dict[str, float]], None] | None,
) -> dict[str, R]:
    lock = threading.Lock()
    order = {name: k for k, name in enumerate(jobs)}
    first_failed = [len(jobs)]  # the first failed job's place in the order; -1: every job stops

    def stop_after(place: int) -> None:
        with lock:
            first_failed[0] = min(first_failed[0], place)

    def report(name: str, epoch: int, stats: dict[str, float]) -> None:
        if order[name] > first_failed[0]:
            raise _Aborted
        if on_epoch is not None:
            with lock:
                try:
                    on_epoch(name, epoch, stats)
                except BaseException:
                    first_failed[0] = -1
                    raise

    def run(name: str, own: torch.Generator) -> R:
        try:
            return jobs[name].run(own, functools.partial(report, name))
        except BaseException:
            stop_after(order[name])
            raise

    futures = {}
    with ThreadPoolExecutor(max_workers=min(threads, len(jobs)), thread_name_prefix="mucn") as pool:
        try:
            for name, job in jobs.items():
                own = torch.Generator()
                own.set_state(gen.get_state())
                futures[name] = pool.submit(run, name, own)
                job.skip(gen)  # while the job runs: where the next one starts
            wait(futures.values())
        except BaseException:  # e.g. KeyboardInterrupt, Celery's soft time limit: stop the threads soon
            stop_after(-1)
            raise
    errors = [f.exception() for f in futures.values() if f.exception() is not None]
    first = next((e for e in errors if not isinstance(e, _Aborted)), None)
    if first is not None:
        raise first
    return {name: f.result() for name, f in futures.items()}
