"""`copy`: every unimodal label is the multimodal label (the paper's y_mc <- y ablation)."""

from __future__ import annotations

from models.strategies.base import FixedLabels, Strategy, StrategyContext


class CopyStrategy(Strategy):
    name = "copy"
    description = "unimodal label = multimodal label"

    def label_source(self, ctx: StrategyContext) -> FixedLabels:
        return FixedLabels({m: ctx.y.clone() for m in ctx.inputs.kinds}, ctx.train_rows)
