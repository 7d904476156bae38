"""`none`: no unimodal tasks (the paper's "W/O unimodal tasks" ablation)."""

from __future__ import annotations

from models.strategies.base import NoLabels, Strategy, StrategyContext


class NoUnimodalStrategy(Strategy):
    name = "none"
    description = "no unimodal tasks: multimodal loss only"
    ignores = ("beta",)  # no unimodal losses to weight

    def label_source(self, ctx: StrategyContext) -> NoLabels:
        return NoLabels()
