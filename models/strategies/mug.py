"""`mug`: stage 1 (pre-training with CPM) and stage 2 (MUCN meta-learning) give the unimodal labels."""

from __future__ import annotations

import torch

from models.stages.meta import meta_learn_labels
from models.stages.pretrain import collect_representations, pretrain
from models.strategies.base import FixedLabels, Strategy, StrategyContext


class MugStrategy(Strategy):
    name = "mug"
    description = "MUG: contrastive pre-training + meta-learned unimodal labels (Mai et al.)"

    def plan(self, hp: dict) -> dict[str, int]:
        return {"pretrain": hp["pretrain_epochs"], "meta": hp["meta_epochs"] * 3}

    def label_source(self, ctx: StrategyContext) -> FixedLabels:
        net = ctx.build_net(True).to(ctx.device)
        pretrain(net, ctx.inputs, ctx.y, ctx.train_rows, ctx.hp, ctx.gen, ctx.device, ctx.reporter)
        saved = collect_representations(net, ctx.inputs, ctx.train_rows, ctx.device)
        del net
        y_train = ctx.y[ctx.train_rows]
        labels = {}
        diagnostics = {}
        for m in saved.unimodal:

            def on_epoch(epoch: int, stats: dict, m: str = m) -> None:
                ctx.reporter.epoch("meta", epoch, {f"{k}[{m}]": v for k, v in stats.items()})

            result = meta_learn_labels(
                saved.unimodal[m],
                saved.projected[m],
                saved.projected_pred[m],
                y_train,
                ctx.hp,
                ctx.rho,
                ctx.gen,
                on_epoch,
            )
            full = torch.full_like(ctx.y, float("nan"))
            full[ctx.train_rows] = result.labels
            labels[m] = full
            diagnostics[m] = {
                "kept": result.kept,
                "meta_updates": result.meta_updates,
                "final": result.history[-1] if result.history else {},
            }
        ctx.extras["meta"] = diagnostics
        return FixedLabels(labels, ctx.train_rows)
