"""`mug`: stage 1 (pre-training with CPM) and stage 2 (MUCN meta-learning) give the unimodal labels."""

from __future__ import annotations

import time

from models.config import Hyperparameters
from models.stages.meta import SavedModality, meta_learn_modalities
from models.stages.pretrain import SavedRepresentations, collect_representations, pretrain
from models.strategies.base import FixedLabels, Strategy, StrategyContext


class MugStrategy(Strategy):
    name = "mug"
    description = "MUG: contrastive pre-training + meta-learned unimodal labels (Mai et al.)"
    sections = ("Shared", "Pretrain", "Meta", "Multitask", "Text")

    def plan(self, hp: Hyperparameters) -> dict[str, int]:
        return {"pretrain": hp.pretrain_epochs, "meta": hp.meta_epochs * len(hp.modalities)}  # a MUCN each

    def representations(self, ctx: StrategyContext) -> SavedRepresentations:
        """Stage 1: pre-train with the projection modules; x_m, x_m' and yhat_m' of the training rows."""
        net = ctx.build_net(True).to(ctx.device)
        pretrain(net, ctx.inputs, ctx.y, ctx.train_rows, ctx.hp, ctx.gen, ctx.device, ctx.reporter)
        return collect_representations(net, ctx.inputs, ctx.train_rows, ctx.device)

    def label_source(self, ctx: StrategyContext) -> FixedLabels:
        t0 = time.perf_counter()
        saved = self.representations(ctx)
        t1 = time.perf_counter()
        modalities = {
            m: SavedModality(saved.unimodal[m], saved.projected[m], saved.projected_pred[m])
            for m in saved.unimodal
        }
        results = meta_learn_modalities(
            modalities,
            ctx.y[ctx.train_rows],
            ctx.hp,
            ctx.rho,
            ctx.gen,
            ctx.meta_threads,
            lambda m, epoch, stats: ctx.reporter.modality_epoch("meta", m, stats, epoch),
        )
        ctx.timings.update(pretrain_s=t1 - t0, meta_s=time.perf_counter() - t1)
        labels = {m: ctx.on_all_rows(result.labels) for m, result in results.items()}
        ctx.diagnostics["meta"] = {
            m: {
                "kept": r.kept,
                "meta_updates": r.meta_updates,
                "final": r.history[-1] if r.history else {},
                **r.diagnostics,
            }
            for m, r in results.items()
        }
        return FixedLabels(labels, ctx.train_rows)
