"""Label strategies, found by name."""

from __future__ import annotations

from models.strategies.base import Strategy, StrategyContext
from models.strategies.cmc import CMCStrategy
from models.strategies.copy import CopyStrategy
from models.strategies.mlc import MLCStrategy
from models.strategies.mtcl import MTCLStrategy
from models.strategies.mug import MugStrategy
from models.strategies.none import NoUnimodalStrategy
from models.strategies.selfmm import SelfMMStrategy

_REGISTRY: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        MugStrategy,
        SelfMMStrategy,
        CopyStrategy,
        NoUnimodalStrategy,
        MLCStrategy,  # related systems (docs/strategies.md)
        CMCStrategy,
        MTCLStrategy,
    )
}
STRATEGIES: tuple[str, ...] = tuple(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``; ValueError naming the choices otherwise."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(
            f"strategy: unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}"
        ) from None


__all__ = ["STRATEGIES", "Strategy", "StrategyContext", "get_strategy"]
