"""Stage 1 (Sec. 3.2): pre-train the multimodal network with the contrastive projection module.

L = L_M + sum_m (eta * L_m' + gamma * L^c_m) (Eq. 12), then save x_m, x_m' and yhat_m' for every training
sample (the only inputs of stage 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from models.config import Hyperparameters
from models.inputs import TensorInputs
from models.nets import MultimodalNet, contrastive_loss, l1
from models.stages.common import Reporter, batches, make_optimizer, train_epoch


@dataclass
class SavedRepresentations:
    """Stage-1 outputs for the training rows, in their order."""

    unimodal: dict[str, Tensor]  # x_m  [N, d_m]
    projected: dict[str, Tensor]  # x_m' [N, d_m]
    projected_pred: dict[str, Tensor]  # yhat_m' [N]


def pretrain_loss(
    out: dict, y: Tensor, gamma: float, eta: float, tau: float
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 12 for one batch; returns the loss and its parts."""
    loss_m = l1(out["pred"], y)
    parts = {"L_M": loss_m.item()}
    total = loss_m
    for m, proj in out["proj"].items():
        l_proj = l1(out["proj_pred"][m], y)
        l_con = contrastive_loss(proj, out["reps"][m], tau)
        total = total + eta * l_proj + gamma * l_con
        parts[f"L_{m}'"] = l_proj.item()
        parts[f"Lc_{m}"] = l_con.item()
    return total, parts


def pretrain(
    net: MultimodalNet,
    inputs: TensorInputs,
    y: Tensor,
    train_rows: Tensor,
    hp: Hyperparameters,
    gen: torch.Generator,
    device: torch.device,
    reporter: Reporter,
) -> None:
    opt = make_optimizer(net, hp.lr, hp.lr_text_encoder, hp.weight_decay)

    def batch_loss(idx: Tensor, out: dict) -> tuple[Tensor, dict[str, float]]:
        return pretrain_loss(out, y[idx].to(device), hp.gamma, hp.eta, hp.tau)

    for epoch in range(1, hp.pretrain_epochs + 1):
        losses = train_epoch(net, opt, inputs, train_rows, hp.batch_size, gen, device, batch_loss)
        reporter.epoch("pretrain", epoch, losses)


@torch.no_grad()
def collect_representations(
    net: MultimodalNet, inputs: TensorInputs, rows: Tensor, device: torch.device, batch_size: int = 256
) -> SavedRepresentations:
    """x_m, x_m' and yhat_m' in eval mode for ``rows`` (Sec. 3.2, last step of stage 1)."""
    net.eval()
    fields = {"unimodal": "reps", "projected": "proj", "projected_pred": "proj_pred"}  # field: net output
    parts: dict[str, dict[str, list[Tensor]]] = {f: {m: [] for m in net.modalities} for f in fields}
    for idx in batches(rows, batch_size, None):
        out = net(inputs.batch(idx, device))
        for f, key in fields.items():
            for m in net.modalities:
                parts[f][m].append(out[key][m].cpu())
    return SavedRepresentations(**{f: {m: torch.cat(v) for m, v in d.items()} for f, d in parts.items()})
