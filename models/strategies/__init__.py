"""Label strategies, found by name."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from models.config import Hyperparameters
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
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"strategy: unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return _REGISTRY[name]()


def unread_settings(strategies: Sequence[str], names: Iterable[str]) -> list[str]:
    """The hyperparameters among ``names`` that none of ``strategies`` reads (a setting for another strategy
    changes nothing in these runs). An unknown strategy is a ValueError; an unknown hyperparameter is left
    to ``resolve_hyperparameters``, which names it with a hint."""
    runs = [get_strategy(name) for name in strategies]
    known = set(Hyperparameters.model_fields)
    return [name for name in names if name in known and not any(s.reads(name) for s in runs)]


__all__ = ["STRATEGIES", "Strategy", "StrategyContext", "get_strategy", "unread_settings"]
