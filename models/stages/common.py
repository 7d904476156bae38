"""Pieces the three stages share: seeding, batching, optimisers, progress reporting."""

from __future__ import annotations

import math
import numbers
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from models.inputs import TensorInputs


class Cancelled(Exception):
    """Training was stopped on request (checked between epochs)."""


class TrainingDiverged(ValueError):
    """A stage's loss or metric came out NaN or infinite: the run stops there, even in a stage that keeps its
    best epoch's weights (a run that overflows once is not to be trusted later); models.pipeline.train adds
    the settings to lower: ``hint``."""

    def __init__(self, stage: str, epoch: int, name: str, value: float, hint: str = "") -> None:
        self.stage, self.epoch, self.name, self.value, self.hint = stage, epoch, name, value, hint
        super().__init__(
            f"training diverged: {stage} epoch {epoch}: {name} is {value} (not finite); the run was stopped, "
            f"nothing written{f'; {hint}' if hint else ''}"
        )

    def with_hint(self, hint: str) -> TrainingDiverged:
        return TrainingDiverged(self.stage, self.epoch, self.name, self.value, hint)


def _check_finite(stage: str, epoch: int, stats: dict[str, float]) -> None:
    for name, value in stats.items():
        if isinstance(value, numbers.Real) and not math.isfinite(value):
            raise TrainingDiverged(stage, epoch, name, value)


@dataclass
class ProgressEvent:
    stage: str  # "encode" | "pretrain" | "meta" | "mlc" | "cmc" | "mtcl" | "multitask"
    epoch: int  # 1-based, within the stage
    epochs: int  # planned epochs of the stage
    fraction: float  # overall progress of the run, 0..1
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


class Reporter:
    """Turns per-epoch callbacks into ProgressEvents with an overall fraction; honours cancellation."""

    def __init__(
        self,
        plan: dict[str, int],
        callback: Callable[[ProgressEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.plan = {k: v for k, v in plan.items() if v > 0}
        self.total = max(sum(self.plan.values()), 1)
        self.done: dict[str, int] = {k: 0 for k in self.plan}
        self.callback = callback
        self.should_stop = should_stop

    def check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled("cancelled on request")

    def epoch(
        self,
        stage: str,
        epoch: int,
        losses: dict[str, float] | None = None,
        metrics: dict[str, float] | None = None,
        units: int = 1,
    ) -> None:
        _check_finite(stage, epoch, {**(losses or {}), **(metrics or {})})
        if stage in self.done:
            self.done[stage] = min(self.done[stage] + units, self.plan[stage])
        fraction = sum(self.done.values()) / self.total
        if self.callback is not None:
            self.callback(
                ProgressEvent(
                    stage, epoch, self.plan.get(stage, epoch), round(fraction, 4), losses or {}, metrics or {}
                )
            )
        self.check_stop()

    def modality_epoch(self, stage: str, modality: str, stats: dict[str, float], epoch: int) -> None:
        """One modality's epoch of a stage that trains a network per modality (MUG's MUCNs, MLC's correctors),
        one after another or side by side: the stage's epoch count runs on over all of them
        (1 .. modalities x epochs), and the stats are named per modality (``L_pre_all[text]``). ``epoch``:
        the modality's own epoch, which a TrainingDiverged names."""
        named = {f"{k}[{modality}]": v for k, v in stats.items()}
        _check_finite(stage, epoch, named)
        self.epoch(stage, self.done.get(stage, 0) + 1, named)

    def finish_stage(self, stage: str) -> None:
        """Mark a stage complete (early stopping ends a stage before its planned epochs)."""
        if stage in self.done:
            self.done[stage] = self.plan[stage]


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, e.g. under taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def resolve_meta_threads(meta_threads: int | None, modalities: int = 3) -> int:
    """Threads for MUG's stage 2: ``None`` = one per modality, at most one per available CPU core."""
    if meta_threads is None:
        return max(1, min(modalities, available_cpus()))
    if isinstance(meta_threads, bool) or not isinstance(meta_threads, int) or meta_threads < 1:
        raise ValueError(f"meta_threads: must be a whole number >= 1, got {meta_threads!r}")
    return meta_threads


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def batches(idx: Tensor, batch_size: int, gen: torch.Generator | None) -> Iterator[Tensor]:
    """Row indices in batches; shuffled with ``gen`` when given, in order otherwise."""
    order = idx[torch.randperm(len(idx), generator=gen)] if gen is not None else idx
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def train_epoch(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    inputs: TensorInputs,
    rows: Tensor,
    batch_size: int,
    gen: torch.Generator,
    device: torch.device,
    batch_loss: Callable[[Tensor, dict], tuple[Tensor, dict[str, float]]],
    after_step: Callable[[Tensor, dict], None] | None = None,
    accumulate: int = 1,
    forward: Callable[[dict[str, Tensor]], Any] | None = None,
) -> dict[str, float]:
    """One shuffled epoch over ``rows``: ``out = forward(batch inputs)`` (default: ``net``),
    ``batch_loss(idx, out) -> (loss, parts)``, backward, ``after_step(idx, out)``, and an optimiser step on
    the summed gradients of every ``accumulate`` batches (the gradients of an unfinished group at the end of
    the epoch are dropped, as MMSA's Self-MM trainer does). Returns each part's mean over the batches
    (5 decimals)."""
    net.train()
    forward = forward or net
    batch_parts: list[dict[str, float]] = []
    for idx in batches(rows, batch_size, gen):
        if len(batch_parts) % accumulate == 0:
            opt.zero_grad(set_to_none=True)
        out = forward(inputs.batch(idx, device))
        loss, parts = batch_loss(idx, out)
        loss.backward()
        batch_parts.append(parts)
        if len(batch_parts) % accumulate == 0:
            opt.step()
        if after_step is not None:
            after_step(idx, out)
    return mean_parts(batch_parts)


def mean_parts(batch_parts: list[dict[str, float]]) -> dict[str, float]:
    """Each part summed over the batches in order, over the number of batches (5 decimals)."""
    sums: dict[str, float] = {}
    for parts in batch_parts:
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
    return {k: round(v / max(len(batch_parts), 1), 5) for k, v in sums.items()}


def make_optimizer(
    net: nn.Module, lr: float, lr_text_encoder: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW (Sec. 4.4); a fine-tuned text transformer (Eq. 1) gets its own, smaller learning rate."""
    from models.text_encoder import TextEncoder

    encoder_ids = {id(p) for m in net.modules() if isinstance(m, TextEncoder) for p in m.parameters()}
    encoder_params = [p for p in net.parameters() if p.requires_grad and id(p) in encoder_ids]
    other = [p for p in net.parameters() if p.requires_grad and id(p) not in encoder_ids]
    groups = [{"params": other, "lr": lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": lr_text_encoder})
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def resolve_device(device: str) -> torch.device:
    if not isinstance(device, str):
        raise ValueError(f"device: must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' asked for, but no CUDA GPU is available")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device: must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)
