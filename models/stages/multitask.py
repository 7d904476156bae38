"""Stage 3 (Sec. 3.4): train a fresh network on L_M + beta * sum_m L_m (Eq. 24-27).

The unimodal targets come from a LabelSource (the strategy): MUG's meta-learned labels, copies of the
multimodal label, Self-MM's online labels, or none. AdamW; the model with the lowest valid L_M (MAE of the
multimodal head) is kept; training stops after ``early_stop`` epochs without improvement (Sec. 4.4).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from models.config import Hyperparameters
from models.inputs import TensorInputs
from models.nets import MultimodalNet, l1
from models.stages.common import Reporter, batches, make_optimizer, train_epoch


class LabelSource(Protocol):
    """Where stage 3's unimodal targets come from. A source may also set ``unimodal_weight`` (the weight of
    the unimodal losses instead of beta), ``accumulate`` (batches per optimiser step) and ``initial_state``
    (weights the stage-3 network starts from, e.g. pre-trained encoders); see ``multitask_train``."""

    uses_unimodal_tasks: bool

    def targets(self, rows: Tensor) -> dict[str, tuple[Tensor, Tensor | None]]:
        """Per modality: (label, per-sample weight or None) for dataset rows ``rows``."""
        ...

    def after_batch(self, rows: Tensor, out: dict, epoch: int) -> None:
        """Hook after each optimiser step (Self-MM updates its labels here)."""
        ...

    def on_best(self) -> None:
        """Called when the valid loss improves (snapshot labels that move during training)."""
        ...

    def final_labels(self) -> dict[str, Tensor] | None:
        """The unimodal labels of the training rows (in train-row order), or None without unimodal tasks."""
        ...


@dataclass
class MultitaskResult:
    state: dict[str, Tensor]
    best_epoch: int
    best_valid_loss: float
    history: list[dict[str, float]] = field(default_factory=list)


def multitask_loss(
    out: dict, y: Tensor, targets: dict[str, tuple[Tensor, Tensor | None]], beta: float
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 27 for one batch."""
    loss_m = l1(out["pred"], y)
    parts = {"L_M": loss_m.item()}
    total = loss_m
    for m, (label, weight) in targets.items():
        loss_u = l1(out["uni_pred"][m], label, weight)
        total = total + beta * loss_u
        parts[f"L_{m}"] = loss_u.item()
    return total, parts


@torch.no_grad()
def predict_rows(
    net: MultimodalNet, inputs: TensorInputs, rows: Tensor, device: torch.device
) -> dict[str, Tensor]:
    """Multimodal and unimodal predictions (eval mode) for dataset rows ``rows``."""
    net.eval()
    preds: dict[str, list[Tensor]] = {"pred": [], **{m: [] for m in net.modalities}}
    for idx in batches(rows, 512, None):
        out = net(inputs.batch(idx, device))
        preds["pred"].append(out["pred"].cpu())
        for m in net.modalities:
            preds[m].append(out["uni_pred"][m].cpu())
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in preds.items()}


def multitask_train(
    net: MultimodalNet,
    inputs: TensorInputs,
    y: Tensor,
    train_rows: Tensor,
    valid_rows: Tensor,
    source: LabelSource,
    hp: Hyperparameters,
    gen: torch.Generator,
    device: torch.device,
    reporter: Reporter,
) -> MultitaskResult:
    initial = getattr(source, "initial_state", None)
    if initial:
        unexpected = net.load_state_dict(initial, strict=False).unexpected_keys
        if unexpected:  # pragma: no cover - a strategy bug, not user input
            raise ValueError(f"initial_state: the stage-3 network has no {unexpected[0]!r}")
    opt = make_optimizer(net, hp.lr, hp.lr_text_encoder, hp.weight_decay)
    weight = getattr(source, "unimodal_weight", None)
    beta = (hp.beta if weight is None else weight) if source.uses_unimodal_tasks else 0.0
    accumulate = getattr(source, "accumulate", 1)
    best = MultitaskResult(state={}, best_epoch=0, best_valid_loss=float("inf"))
    bad_epochs = 0

    def batch_loss(idx: Tensor, out: dict) -> tuple[Tensor, dict[str, float]]:
        targets = source.targets(idx) if source.uses_unimodal_tasks else {}
        targets = {m: (t.to(device), None if w is None else w.to(device)) for m, (t, w) in targets.items()}
        return multitask_loss(out, y[idx].to(device), targets, beta)

    for epoch in range(1, hp.multitask_max_epochs + 1):
        losses = train_epoch(
            net,
            opt,
            inputs,
            train_rows,
            hp.batch_size,
            gen,
            device,
            batch_loss,
            lambda idx, out, epoch=epoch: source.after_batch(idx, out, epoch),
            accumulate,
        )
        valid_loss = float(l1(predict_rows(net, inputs, valid_rows, device)["pred"], y[valid_rows]))
        losses["valid_L_M"] = round(valid_loss, 5)
        best.history.append({"epoch": epoch, **losses})
        if valid_loss < best.best_valid_loss:
            best.best_valid_loss, best.best_epoch = valid_loss, epoch
            best.state = copy.deepcopy({k: v.detach().cpu() for k, v in net.state_dict().items()})
            source.on_best()
            bad_epochs = 0
        else:
            bad_epochs += 1
        reporter.epoch("multitask", epoch, losses, {"valid_mae": round(valid_loss, 5)})
        if bad_epochs >= hp.early_stop:
            break
    reporter.finish_stage("multitask")
    return best
