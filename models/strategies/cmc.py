"""`cmc`: CMC's Pseudo Label Generation Module (PLGM; Zhong et al., gw-zhong/CMC) gives the unimodal labels.

Reproduced (gw-zhong/CMC, src/train_pseudo_pretrain.py): CMC's self-supervised unimodal pre-training in its
classification framing. Classes neg / neu / pos from the multimodal label (y < -band, |y| <= band,
y > band; band = ``cmc_neutral_band``, 0 = CMC's y < 0 / y == 0 / y > 0). Per modality a unimodal model
(a fresh F^m encoder as in models.nets, plus a Linear -> ReLU -> Linear(3) head) is trained from the raw
features; a soft pseudo label per (training utterance, modality) starts as one_hot(class of y). In epoch e
(1-based), for every batch, with p = softmax(logits) (detached), yhat = argmax(pseudo), r = the one-hot
nearest to p:
    alpha  = (||p - onehot(yhat)|| - ||p - r||) / (||p - onehot(yhat)|| + ||p - r||)
    temp   = (1 - alpha) * onehot(yhat) + alpha * r
    pseudo <- m_e * pseudo + (1 - m_e) * temp,      m_e = 1 - (1 - m_0) / e^gamma
(m_0 = ``cmc_momentum_{text,audio,vision}``, 0.8 / 0.99 / 0.99; gamma = ``cmc_momentum_gamma`` = 0.5).
Loss: sum_m cross-entropy(logits_m, yhat_m) + ``cmc_contrastive_weight`` * CMC's supervised contrastive loss
(``supcon_loss``, temperature ``cmc_temperature`` = 0.07) over the L2-normalised representations of all three
modalities together (each first mapped by a linear layer to ``fusion_dim``: CMC's encoders share one width),
with CMC's binary polarity labels (class >= neu for rho != 1, class == pos for SIMS-style rho = 1), as in
CMC's train_pseudo_pretrain.py. ``cmc_epochs`` epochs, the model's optimiser (AdamW, ``lr``).

Mapping to our regression stage 3 (choice): the unimodal label is the expected sentiment of the final soft
pseudo label, sum_c pseudo_c * centre_c, with centre_c the mean multimodal training label of class c (a class
without samples: -rho/2, 0, +rho/2). A pseudo label that never moves gives the class centre of y, so the
within-class magnitude of y is lost (the classification framing); moving mass between classes moves the
label continuously.

Stage 3 starts from the pre-trained unimodal encoders F^m, as CMC's fine-tuning loads its pre-trained unimodal
models (src/utils.py, transfer_models); the fusion and the regression heads start fresh (CMC's 3-class output
layers do not fit a regression head).

Not reproduced: CMC's fine-tuning network (the Parameter-free Fusion Module, PFM, and the Multimodal
Consensus Router, MCR) - stage 3 here is our shared multitask network; the EMA copies of the unimodal models
and CMC's selection of the pseudo labels on the EMA models' valid loss (we keep the labels after the last
epoch); CMC's transformer unimodal encoders (ours: the same F^m encoders as every strategy).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.config import Hyperparameters
from models.nets import mlp_head
from models.stages.common import make_optimizer, train_epoch
from models.strategies.base import FixedLabels, Strategy, StrategyContext

N_CLASSES = 3  # neg, neu, pos


def momentum_at(m0: float, epoch: int, gamma: float) -> float:
    """m_e = 1 - (1 - m_0) / e^gamma for the 1-based epoch e."""
    return 1.0 - (1.0 - m0) / float(epoch) ** gamma


def sentiment_class(y: Tensor, band: float = 0.0) -> Tensor:
    """0 = neg (y < -band), 1 = neu (|y| <= band), 2 = pos (y > band)."""
    return torch.where(y < -band, 0, torch.where(y > band, 2, 1)).long()


def plgm_target(probs: Tensor, pseudo: Tensor) -> Tensor:
    """CMC's unified pseudo label ``temp`` for a batch: probs p [B, 3], current soft pseudo labels [B, 3]."""
    base = F.one_hot(pseudo.argmax(-1), N_CLASSES).to(probs.dtype)
    nearest = F.one_hot(probs.argmax(-1), N_CLASSES).to(probs.dtype)  # argmin_c ||p - e_c|| = argmax_c p_c
    g_base = torch.linalg.vector_norm(probs - base, dim=-1)
    g_near = torch.linalg.vector_norm(probs - nearest, dim=-1)
    alpha = (g_base - g_near) / (g_base + g_near).clamp_min(1e-12)  # 0 when p is exactly one-hot yhat
    return (1 - alpha).unsqueeze(-1) * base + alpha.unsqueeze(-1) * nearest


def plgm_update(pseudo: Tensor, probs: Tensor, momentum: float) -> Tensor:
    """pseudo <- m_e * pseudo + (1 - m_e) * temp."""
    return momentum * pseudo + (1 - momentum) * plgm_target(probs, pseudo)


def supcon_loss(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """CMC's supervised contrastive loss (gw-zhong/CMC, src/models.py SupConLoss) on L2-normalised features
    [N, d] with labels [N]: per anchor with at least one positive,
        -log( sum_{p positive} exp(s_ap / t) / sum_{k != a} exp(s_ak / t) ),
    averaged over those anchors (the log of the positives' summed share, not Khosla et al.'s mean of the
    positives' log shares). Computed with logsumexp for stability."""
    z = F.normalize(features, dim=-1)
    sim = z @ z.t() / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_mask
    has = positives.any(1)
    if not has.any():
        return features.sum() * 0.0
    all_others = torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1)
    positive = torch.logsumexp(sim.masked_fill(~positives, float("-inf")), dim=1)
    return (all_others - positive)[has].mean()


def class_centres(y: Tensor, classes: Tensor, rho: float) -> Tensor:
    """Mean label of each class; -rho/2, 0, +rho/2 for a class without samples."""
    fallback = (-rho / 2, 0.0, rho / 2)
    return torch.tensor(
        [float(y[classes == c].mean()) if (classes == c).any() else fallback[c] for c in range(N_CLASSES)]
    )


class CMCStrategy(Strategy):
    name = "cmc"
    description = "CMC's PLGM: momentum soft pseudo labels from unimodal classifiers (Zhong et al.)"
    sections = ("Shared", "Multitask", "Text", "CMC")

    def plan(self, hp: Hyperparameters) -> dict[str, int]:
        return {"cmc": hp.cmc_epochs}

    def label_source(self, ctx: StrategyContext) -> FixedLabels:
        hp = ctx.hp
        net = ctx.build_net(False).to(ctx.device)  # only its encoders F^m are used
        modalities = list(net.modalities)
        dims = {m: net.spec.modalities[m].out_dim for m in modalities}
        cls_heads = nn.ModuleDict(
            {m: mlp_head(dims[m], hp.predictor_hidden, N_CLASSES) for m in modalities}
        ).to(ctx.device)
        # SupCon compares modalities in one space: CMC's encoders share embed_dim, ours differ (d_l, d_a,
        # d_v), so each representation is mapped to fusion_dim first.
        embed = nn.ModuleDict({m: nn.Linear(dims[m], hp.fusion_dim) for m in modalities}).to(ctx.device)
        model = nn.ModuleDict({"encoders": net.encoders, "heads": cls_heads, "embed": embed})
        opt = make_optimizer(model, hp.lr, hp.lr_text_encoder, hp.weight_decay)

        y_train = ctx.y[ctx.train_rows]
        init_class = sentiment_class(y_train, hp.cmc_neutral_band)
        pseudo = {m: F.one_hot(init_class, N_CLASSES).float() for m in modalities}
        m0 = {m: getattr(hp, f"cmc_momentum_{m}") for m in modalities}

        def batch_loss(idx: Tensor, reps: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
            pos = ctx.train_position[idx]
            loss = torch.zeros((), device=ctx.device)
            parts: dict[str, float] = {}
            feats, polar = [], []
            for m in modalities:
                logits = cls_heads[m](reps[m])
                hard = pseudo[m][pos].argmax(-1)
                probs = torch.softmax(logits.detach(), -1).cpu()
                pseudo[m][pos] = plgm_update(pseudo[m][pos], probs, momentum[m])
                loss_m = F.cross_entropy(logits, hard.to(ctx.device))
                loss = loss + loss_m
                parts[f"CE_{m}"] = loss_m.item()
                feats.append(embed[m](reps[m]))
                polar.append((hard == 2) if ctx.rho == 1.0 else (hard >= 1))
            if hp.cmc_contrastive_weight > 0:
                loss_c = supcon_loss(torch.cat(feats), torch.cat(polar).to(ctx.device), hp.cmc_temperature)
                loss = loss + hp.cmc_contrastive_weight * loss_c
                parts["SupCon"] = loss_c.item()
            return loss, parts

        epoch_args = (model, opt, ctx.inputs, ctx.train_rows, hp.batch_size, ctx.gen, ctx.device, batch_loss)
        for epoch in range(1, hp.cmc_epochs + 1):
            momentum = {m: momentum_at(m0[m], epoch, hp.cmc_momentum_gamma) for m in modalities}
            final = train_epoch(*epoch_args, forward=net.encode)
            ctx.reporter.epoch("cmc", epoch, final)
        centres = class_centres(y_train, init_class, ctx.rho)
        changed = {m: (pseudo[m].argmax(-1) != init_class).float().mean() for m in modalities}
        ctx.diagnostics["cmc"] = {
            "centres": [round(float(c), 5) for c in centres],
            "final": final,
            **{m: {"class_changed_share": round(float(changed[m]), 5)} for m in modalities},
        }
        labels = {m: ctx.on_all_rows(pseudo[m] @ centres) for m in modalities}
        # CMC fine-tunes from its pre-trained unimodal encoders (src/utils.py transfer_models)
        encoders = {f"encoders.{k}": v.detach().cpu().clone() for k, v in net.encoders.state_dict().items()}
        return FixedLabels(labels, ctx.train_rows, initial_state=encoders)
