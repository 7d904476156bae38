"""`selfmm`: Self-MM's unimodal label generation module (ULGM; Yu et al., AAAI 2021) inside stage 3, run as
its authors run it in thuiar/MMSA (src/MMSA/trains/multiTask/SELF_MM.py).

- Memory banks over the training samples: the fused representation (F_m, the fusion layer's output) and,
  per modality, the unimodal head's hidden layer (F_s = ReLU(W x_s + b), the first layer of P^s), refreshed
  from every batch's forward pass.
- All unimodal labels start as y_m. From epoch 2 on, after each batch's backward pass, the batch's labels
  move toward yhat_s computed from the distances of F_s and F_m to the positive (label > 0, MMSA's
  excludeZero) and negative (label < 0) centres of the banks:
      delta_s = (d_sn - d_sp) / (d_sp + eps),  delta_m likewise for F_m,
      yhat_s  = clamp(0.5 * delta_s / (delta_m + eps) * y_m + 0.5 * (y_m + delta_s - delta_m), -rho, rho),
      y_s    <- (n - 1) / (n + 1) * y_s + 2 / (n + 1) * yhat_s   (n = the 1-based epoch).
- Loss: L_M + ``selfmm_weight`` (1, as Self-MM sums its four tasks) * sum_s mean(tanh(|y_s - y_m|) *
  |yhat_s - y_s|).
- The optimiser steps once every ``selfmm_update_every`` (MMSA's update_epochs, 4) batches on the summed
  gradients; as in MMSA, the gradients of an unfinished group at the end of an epoch are dropped.
- Selection on the valid L1 loss of the multimodal head, early stop after 8 epochs (MMSA: KeyEval Loss,
  early_stop 8) - stage 3's rule for every strategy. The labels reported are those of the selected epoch.

Deviations (docs/strategies.md): stage 3's shared network and AdamW (MMSA: Self-MM's BERT/LSTM network,
Adam with per-part learning rates, post-dims 32/16/32 and fusion 128), and the run's batch size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from models.config import HyperparameterError, Hyperparameters
from models.strategies.base import Strategy, StrategyContext

EPS = 1e-8


def centres(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Mean feature of positive (> 0) and of negative (< 0) samples; zeros when a side is empty."""
    pos, neg = labels > 0, labels < 0
    zero = torch.zeros(features.shape[1])
    c_pos = features[pos].mean(0) if pos.any() else zero
    c_neg = features[neg].mean(0) if neg.any() else zero
    return c_pos, c_neg


def ulgm_update(
    f_s: Tensor,
    f_m: Tensor,
    y_s: Tensor,
    y_m: Tensor,
    c_s: tuple[Tensor, Tensor],
    c_m: tuple[Tensor, Tensor],
    epoch: int,
    bound: float,
) -> Tensor:
    """One Self-MM label update for a batch; returns the new y_s."""
    d_sp = torch.linalg.vector_norm(f_s - c_s[0], dim=-1)
    d_sn = torch.linalg.vector_norm(f_s - c_s[1], dim=-1)
    d_mp = torch.linalg.vector_norm(f_m - c_m[0], dim=-1)
    d_mn = torch.linalg.vector_norm(f_m - c_m[1], dim=-1)
    delta_s = (d_sn - d_sp) / (d_sp + EPS)
    delta_m = (d_mn - d_mp) / (d_mp + EPS)
    y_hat = 0.5 * (delta_s / (delta_m + EPS)) * y_m + 0.5 * (y_m + delta_s - delta_m)
    y_hat = y_hat.clamp(-bound, bound)
    n = float(epoch)
    return (n - 1) / (n + 1) * y_s + 2 / (n + 1) * y_hat


class SelfMMLabels:
    uses_unimodal_tasks = True

    def __init__(self, ctx: StrategyContext) -> None:
        self.unimodal_weight = ctx.hp.selfmm_weight
        self.accumulate = ctx.hp.selfmm_update_every
        self.position = ctx.train_position
        n = len(ctx.train_rows)
        self.y_m = ctx.y[ctx.train_rows].clone()
        self.bound = ctx.rho
        self.labels = {m: self.y_m.clone() for m in ctx.inputs.kinds}
        self.bank = {m: torch.zeros(n, ctx.hp.predictor_hidden) for m in self.labels}
        self.bank_fused = torch.zeros(n, ctx.hp.fusion_dim)
        self.snapshot = {m: v.clone() for m, v in self.labels.items()}

    def targets(self, rows: Tensor) -> dict[str, tuple[Tensor, Tensor | None]]:
        pos = self.position[rows]
        y_m = self.y_m[pos]
        return {m: (lab[pos], torch.tanh((lab[pos] - y_m).abs())) for m, lab in self.labels.items()}

    def after_batch(self, rows: Tensor, out: dict, epoch: int) -> None:
        pos = self.position[rows]
        f_m = out["fused"].detach().cpu()
        hidden = {m: out["uni_hidden"][m].detach().cpu() for m in self.labels}
        if epoch > 1:
            c_m = centres(self.bank_fused, self.y_m)
            for m in self.labels:
                c_s = centres(self.bank[m], self.labels[m])
                self.labels[m][pos] = ulgm_update(
                    hidden[m], f_m, self.labels[m][pos], self.y_m[pos], c_s, c_m, epoch, self.bound
                )
        self.bank_fused[pos] = f_m
        for m in self.labels:
            self.bank[m][pos] = hidden[m]

    def on_best(self) -> None:
        self.snapshot = {m: v.clone() for m, v in self.labels.items()}

    def final_labels(self) -> dict[str, Tensor] | None:
        return self.snapshot


class SelfMMStrategy(Strategy):
    name = "selfmm"
    description = "Self-MM: non-parametric unimodal labels from distances to class centres (Yu et al.)"
    sections = ("Shared", "Multitask", "Text", "SelfMM")
    ignores = ("beta",)  # its unimodal losses are weighted by selfmm_weight

    def label_source(self, ctx: StrategyContext) -> SelfMMLabels:
        return SelfMMLabels(ctx)

    def size_error(self, train_labeled: int, hp: Hyperparameters) -> HyperparameterError | None:
        """A train split of fewer batches than ``selfmm_update_every`` would never update the network (an
        unfinished group's gradients are dropped at the end of an epoch): the run would end untrained."""
        batches, every = math.ceil(train_labeled / hp.batch_size), hp.selfmm_update_every
        if batches >= every or batches == 0:  # no labeled rows at all: training refuses the dataset
            return None
        largest_batch = train_labeled // every
        smaller = f", or batch_size at most {largest_batch}" if largest_batch else ""
        return HyperparameterError(
            "selfmm_update_every",
            f"one optimiser step per {every} batches, but train's {train_labeled} labeled rows make "
            f"{batches} batch{'es' if batches > 1 else ''} of {hp.batch_size} an epoch, so the "
            "network would never be updated (an unfinished group's gradients are dropped at the end of an "
            f"epoch, as MMSA's loop does); set selfmm_update_every at most {batches}{smaller}",
        )
