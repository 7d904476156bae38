"""`mtcl`: MTCL's correlation-aware training (Zhang et al., tiggers23/MTCL) picks each unimodal target.

MTCL needs human unimodal sub-labels (utterances.csv columns label_T, label_A, label_V); without them this
strategy's check raises ValueError naming the missing columns before anything is trained. Our synthetic
datasets (models.synth) carry them.

Reproduced (MTCL, tiggers23/MTCL), as a pre-stage on the raw features: MTCL's dual-branch
model - per modality a "fuse" encoder f (it feeds the fusion) and a "uni" encoder c, each with its own
regression head, plus the fusion network and multimodal head (our F^m, F^M, P^M, P^m shapes, models.nets).
Per batch and modality: D_js = JS divergence between softmax(f) and softmax(c) over the feature dimension
(divided by log 2); the int((1 - r) * B) samples with the lowest D_js are beneficial, the rest harmful
(r = ``mtcl_eliminate_rate``, 0.44). Loss, squared errors as in MTCL:
    MSE(P^M, y) + sum_m [ MSE(c-head, y_m) + mean D_js(beneficial)
                          + mean MSE(f-head, y_m)(beneficial) + mean MSE(f-head, y)(harmful) ]
(y_m the human sub-label, y the multimodal label: the task correction). The model with the lowest valid MAE
of P^M is kept (MTCL's selection), at most ``mtcl_epochs`` epochs, ``early_stop`` epochs of patience.

Adapted to our shared stage 3 (choice): MTCL applies the split to its own network while it trains; here the
selected pre-stage model splits the whole training set once, per modality, by D_js: the lowest
int((1 - r) * n) samples (n = training samples with a sub-label for m) are beneficial and keep the human label
y_m as their unimodal target; the others (and rows whose sub-label is blank) are harmful and get y (task
correction). Stage 3 weights the two subsets like MTCL's loss (mean over each subset, summed): every
beneficial sample has weight n_all / (2 n_beneficial), every harmful one n_all / (2 n_harmful) (average weight
1, so beta means the same as for other strategies; 1 everywhere when a subset is empty). The D_js alignment
term (training the fuse branch toward the uni branch on beneficial samples) is part of the pre-stage only:
stage 3 optimises L_M + beta * sum_m L_m for every strategy.

Note for evaluation: the labels written by this strategy ARE the human sub-labels on the beneficial share,
so their agreement with label_T/A/V (metrics.json) measures the split, not label learning.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.config import Hyperparameters
from models.dataset import SUB_LABEL_COLUMNS, Dataset
from models.stages.common import batches, make_optimizer, train_epoch
from models.stages.multitask import predict_rows
from models.strategies.base import FixedLabels, Strategy, StrategyContext

LOG2 = float(np.log(2.0))


def js_divergence(feat_1: Tensor, feat_2: Tensor) -> Tensor:
    """Per-sample Jensen-Shannon divergence of softmax(feat_1) and softmax(feat_2) over dim 1, in [0, 1]."""
    log_p, log_q = F.log_softmax(feat_1, dim=1), F.log_softmax(feat_2, dim=1)
    log_m = torch.logaddexp(log_p, log_q) - LOG2
    kl_p = (log_p.exp() * (log_p - log_m)).sum(1)
    kl_q = (log_q.exp() * (log_q - log_m)).sum(1)
    return 0.5 * (kl_p + kl_q) / LOG2


def split_by_divergence(js: Tensor, rate: float) -> tuple[Tensor, Tensor]:
    """(beneficial, harmful) indices: the int((1 - rate) * n) lowest divergences, and the rest."""
    order = torch.argsort(js, stable=True)
    k = int((1 - rate) * len(js))
    return order[:k], order[k:]


def subset_weights(n: int, beneficial: Tensor) -> Tensor:
    """Weights giving both subsets half the total (average 1); all ones when a subset is empty."""
    w = torch.ones(n)
    n_ben = len(beneficial)
    if 0 < n_ben < n:
        w[:] = n / (2 * (n - n_ben))
        w[beneficial] = n / (2 * n_ben)
    return w


def required_sub_labels(dataset: Dataset, modalities: list[str]) -> dict[str, Tensor]:
    """The human sub-labels of every modality (NaN where blank); ValueError naming what is missing."""
    subs = dataset.sub_labels
    missing = [SUB_LABEL_COLUMNS[m] for m in modalities if m not in subs]
    if missing:
        raise ValueError(
            f"strategy mtcl: needs human unimodal sub-labels; utterances.csv has no {', '.join(missing)} "
            f"column{'s' if len(missing) > 1 else ''} (MTCL trains each modality of the run, "
            f"{', '.join(modalities)}, on its own sub-label)"
        )
    out = {m: torch.from_numpy(np.asarray(subs[m], dtype=np.float32)) for m in modalities}
    train_rows = torch.from_numpy(dataset.labeled("train"))
    empty = [SUB_LABEL_COLUMNS[m] for m in modalities if not torch.isfinite(out[m][train_rows]).any()]
    if empty:
        raise ValueError(
            f"strategy mtcl: needs human unimodal sub-labels; {', '.join(empty)} "
            "is blank on every labeled train row"
        )
    return out


def branch_loss(
    f_rep: Tensor, c_rep: Tensor, f_pred: Tensor, c_pred: Tensor, y_u: Tensor, y_m: Tensor, rate: float
) -> Tensor:
    """MTCL's per-modality loss (Loss_Branch) for a batch; rows with a blank sub-label are harmful only."""
    has = torch.isfinite(y_u)
    idx = torch.nonzero(has).squeeze(1)
    zero = f_pred.sum() * 0.0
    loss = zero
    if len(idx):
        loss = loss + F.mse_loss(c_pred[idx], y_u[idx])
    js = js_divergence(f_rep[idx], c_rep[idx])
    ben_local, harm_local = split_by_divergence(js, rate)
    ben = idx[ben_local]
    harm = torch.cat([idx[harm_local], torch.nonzero(~has).squeeze(1)])
    if len(ben):
        loss = loss + js[ben_local].mean() + F.mse_loss(f_pred[ben], y_u[ben])
    if len(harm):
        loss = loss + F.mse_loss(f_pred[harm], y_m[harm])
    return loss


class MTCLStrategy(Strategy):
    name = "mtcl"
    description = "MTCL: human sub-labels on the beneficial share, multimodal label on the harmful one"
    sections = ("Shared", "Multitask", "Text", "MTCL")

    def check(self, dataset: Dataset, hp: Hyperparameters) -> None:
        super().check(dataset, hp)
        required_sub_labels(dataset, hp.modalities)

    def plan(self, hp: Hyperparameters) -> dict[str, int]:
        return {"mtcl": hp.mtcl_epochs}

    def label_source(self, ctx: StrategyContext) -> FixedLabels:
        hp = ctx.hp
        rate = hp.mtcl_eliminate_rate
        modalities = list(ctx.inputs.kinds)
        sub = required_sub_labels(ctx.dataset, modalities)
        fuse = ctx.build_net(False).to(ctx.device)  # f encoders, fusion, P^M and the fuse heads
        uni = ctx.build_net(False).to(ctx.device)  # only its encoders (c) and heads (uni heads) are used
        model = nn.ModuleDict({"fuse": fuse, "uni_encoders": uni.encoders, "uni_heads": uni.heads})
        opt = make_optimizer(model, hp.lr, hp.lr_text_encoder, hp.weight_decay)

        def forward(inputs: dict[str, Tensor]) -> tuple[dict, dict[str, Tensor]]:
            return fuse(inputs), uni.encode(inputs)

        def batch_loss(idx: Tensor, outs: tuple[dict, dict[str, Tensor]]) -> tuple[Tensor, dict[str, float]]:
            out, c_reps = outs
            y_m = ctx.y[idx].to(ctx.device)
            loss = F.mse_loss(out["pred"], y_m)
            parts = {"L_M": loss.item()}
            for m in modalities:
                loss_u = branch_loss(
                    out["reps"][m],
                    c_reps[m],
                    out["uni_pred"][m],
                    uni.heads[m](c_reps[m]).squeeze(-1),
                    sub[m][idx].to(ctx.device),
                    y_m,
                    rate,
                )
                loss = loss + loss_u
                parts[f"L_{m}"] = loss_u.item()
            return loss, parts

        epoch_args = (model, opt, ctx.inputs, ctx.train_rows, hp.batch_size, ctx.gen, ctx.device, batch_loss)
        best_mae, best_state, bad, epochs_run = float("inf"), None, 0, 0
        for _ in range(hp.mtcl_epochs):
            losses = train_epoch(*epoch_args, forward=forward)
            epochs_run += 1
            valid = predict_rows(fuse, ctx.inputs, ctx.valid_rows, ctx.device)["pred"]
            mae = float((valid - ctx.y[ctx.valid_rows]).abs().mean())
            if mae < best_mae:
                best_mae, bad = mae, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
            ctx.reporter.epoch("mtcl", epochs_run, losses, {"valid_mae": round(mae, 5)})
            if bad >= hp.early_stop:
                break
        ctx.reporter.finish_stage("mtcl")  # early stopping may end it before mtcl_epochs
        if best_state is not None:
            model.load_state_dict(best_state)

        js = self._divergences(fuse, uni, ctx)
        labels: dict[str, Tensor] = {}
        weights: dict[str, Tensor] = {}
        diagnostics: dict = {"best_valid_mae": round(best_mae, 5), "epochs_run": epochs_run}
        n = len(ctx.train_rows)
        for m in modalities:
            y_u = sub[m][ctx.train_rows]
            has = torch.nonzero(torch.isfinite(y_u)).squeeze(1)
            ben_local, _ = split_by_divergence(js[m][has], rate)
            ben = has[ben_local]
            target = ctx.y[ctx.train_rows].clone()  # harmful (and blank sub-label): task correction to y
            target[ben] = y_u[ben]
            labels[m] = ctx.on_all_rows(target)
            weights[m] = ctx.on_all_rows(subset_weights(n, ben), fill=1.0)
            diagnostics[m] = {
                "beneficial": len(ben),
                "harmful": n - len(ben),
                "blank_sub_labels": n - len(has),
                "mean_js_beneficial": round(float(js[m][ben].mean()), 5) if len(ben) else None,
                "mean_js_harmful": round(float(js[m][~torch.isin(torch.arange(n), ben)].mean()), 5)
                if len(ben) < n
                else None,
            }
        ctx.diagnostics["mtcl"] = diagnostics
        return FixedLabels(labels, ctx.train_rows, weights)

    @staticmethod
    @torch.no_grad()
    def _divergences(fuse: nn.Module, uni: nn.Module, ctx: StrategyContext) -> dict[str, Tensor]:
        """D_js of every training row per modality (eval mode), in train-row order."""
        fuse.eval()
        uni.eval()
        parts: dict[str, list[Tensor]] = {m: [] for m in ctx.inputs.kinds}
        for idx in batches(ctx.train_rows, 512, None):
            inputs = ctx.inputs.batch(idx, ctx.device)
            f_reps, c_reps = fuse.encode(inputs), uni.encode(inputs)
            for m in parts:
                parts[m].append(js_divergence(f_reps[m], c_reps[m]).cpu())
        return {m: torch.cat(v) for m, v in parts.items()}
