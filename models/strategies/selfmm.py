"""`selfmm`: Self-MM's unimodal label generation module (ULGM, Yu et al. AAAI 2021) inside stage 3.

Formulas: shared/reference/msa-reference.md Sec. 2. Memory banks hold, per training sample, the unimodal
representations x_m (Self-MM's F_s) and the fused representation (F_m), refreshed after every batch; from
epoch 2 on each batch's unimodal labels move toward yhat_s computed from distances to the positive/negative
centres. Unimodal losses are weighted by tanh(|y_s - y_m|) as in Self-MM. The labels reported are those of
the selected (best valid) epoch.
"""

from __future__ import annotations

import torch
from torch import Tensor

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

    def __init__(self, ctx: StrategyContext, fused_dim: int, rep_dims: dict[str, int]) -> None:
        self.train_rows = ctx.train_rows
        n_rows = len(ctx.y)
        self.position = torch.full((n_rows,), -1, dtype=torch.long)
        self.position[ctx.train_rows] = torch.arange(len(ctx.train_rows))
        n = len(ctx.train_rows)
        self.y_m = ctx.y[ctx.train_rows].clone()
        self.bound = ctx.rho
        self.labels = {m: self.y_m.clone() for m in rep_dims}
        self.bank = {m: torch.zeros(n, d) for m, d in rep_dims.items()}
        self.bank_fused = torch.zeros(n, fused_dim)
        self.snapshot = {m: v.clone() for m, v in self.labels.items()}

    def targets(self, rows: Tensor) -> dict[str, tuple[Tensor, Tensor | None]]:
        pos = self.position[rows]
        y_m = self.y_m[pos]
        return {m: (lab[pos], torch.tanh((lab[pos] - y_m).abs())) for m, lab in self.labels.items()}

    def after_batch(self, rows: Tensor, out: dict, epoch: int) -> None:
        pos = self.position[rows]
        f_m = out["fused"].detach().cpu()
        if epoch > 1:
            c_m = centres(self.bank_fused, self.y_m)
            for m in self.labels:
                f_s = out["reps"][m].detach().cpu()
                c_s = centres(self.bank[m], self.labels[m])
                self.labels[m][pos] = ulgm_update(
                    f_s, f_m, self.labels[m][pos], self.y_m[pos], c_s, c_m, epoch, self.bound
                )
        self.bank_fused[pos] = f_m
        for m in self.labels:
            self.bank[m][pos] = out["reps"][m].detach().cpu()

    def on_best(self) -> None:
        self.snapshot = {m: v.clone() for m, v in self.labels.items()}

    def final_labels(self) -> dict[str, Tensor] | None:
        return self.snapshot


class SelfMMStrategy(Strategy):
    name = "selfmm"
    description = "Self-MM: non-parametric unimodal labels from distances to class centres (Yu et al.)"

    def label_source(self, ctx: StrategyContext) -> SelfMMLabels:
        return SelfMMLabels(ctx, ctx.hp["fusion_dim"], {m: ctx.hp[f"{m}_dim"] for m in ctx.inputs.kinds})
