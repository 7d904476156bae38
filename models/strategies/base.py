"""What every label strategy shares: its context, its interface, and fixed-label sources."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.config import HyperparameterError, Hyperparameters, section_of
from models.dataset import Dataset
from models.inputs import TensorInputs
from models.nets import MultimodalNet
from models.stages.common import Reporter
from models.stages.multitask import LabelSource


@dataclass
class StrategyContext:
    """What a strategy works with: the dataset and its tensors, the settings, the randomness, where to report
    progress, and how to build the network; it leaves its diagnostics and stage timings here."""

    dataset: Dataset
    inputs: TensorInputs
    hp: Hyperparameters
    gen: torch.Generator
    device: torch.device
    reporter: Reporter
    build_net: Callable[[bool], MultimodalNet]  # argument: with the projection modules (stage 1) or not
    meta_threads: int = 1  # modalities meta-learned side by side in MUG's stage 2 (same result for any value)
    diagnostics: dict[str, Any] = field(default_factory=dict)  # config.json's strategy_diagnostics
    timings: dict[str, float] = field(default_factory=dict)  # its own stages' (MUG: pretrain_s, meta_s)

    @cached_property
    def y(self) -> Tensor:
        """Multimodal labels of every row (NaN where unlabeled)."""
        return torch.from_numpy(np.asarray(self.dataset.label, dtype=np.float32))

    @cached_property
    def train_rows(self) -> Tensor:
        return torch.from_numpy(self.dataset.labeled("train"))

    @cached_property
    def valid_rows(self) -> Tensor:
        return torch.from_numpy(self.dataset.labeled("valid"))

    @cached_property
    def train_position(self) -> Tensor:
        """Each dataset row's position among the training rows (-1 elsewhere)."""
        position = torch.full((len(self.y),), -1, dtype=torch.long)
        position[self.train_rows] = torch.arange(len(self.train_rows))
        return position

    @property
    def rho(self) -> float:
        return float(self.dataset.rho)

    def on_all_rows(self, train_values: Tensor, fill: float = float("nan")) -> Tensor:
        """Values given for the training rows, as a tensor over every dataset row (``fill`` elsewhere)."""
        full = torch.full_like(self.y, fill)
        full[self.train_rows] = train_values
        return full


class Strategy(ABC):
    name: str
    description: str
    # the Hyperparameters sections it reads (models/config.py; `unilabel hyperparameters --strategy NAME`),
    # the settings of other sections it reads too, and those of its sections it does not read
    sections: tuple[str, ...] = ("Shared", "Multitask", "Text")
    also_reads: tuple[str, ...] = ()
    ignores: tuple[str, ...] = ()

    @classmethod
    def reads(cls, name: str) -> bool:
        """Whether a run of this strategy reads hyperparameter ``name`` (a --set of it can change the run).
        tests/test_config.py checks this against what a run reads."""
        return name in cls.also_reads or (section_of(name) in cls.sections and name not in cls.ignores)

    @classmethod
    def reads_summary(cls) -> str:
        """What it reads, in words: "Shared, Multitask (not beta), ...; of Meta: mucn_hidden"."""
        parts = []
        for section in cls.sections:
            skipped = [name for name in cls.ignores if section_of(name) == section]
            parts.append(f"{section} (not {', '.join(skipped)})" if skipped else section)
        borrowed: dict[str, list[str]] = {}
        for name in cls.also_reads:
            borrowed.setdefault(section_of(name), []).append(name)
        borrowed_words = [f"of {section}: {', '.join(names)}" for section, names in borrowed.items()]
        return "; ".join([", ".join(parts), *borrowed_words])

    def plan(self, hp: Hyperparameters) -> dict[str, int]:
        """Epochs per stage before stage 3 (for progress reporting)."""
        return {}

    def check(self, dataset: Dataset, hp: Hyperparameters) -> None:
        """Raise ValueError when ``dataset`` cannot serve this strategy with settings ``hp``; train() asks
        before it encodes or trains anything, so a run that cannot succeed fails at once."""
        if error := self.size_error(int(dataset.labeled("train").size), hp):
            raise error

    def size_error(self, train_labeled: int, hp: Hyperparameters) -> HyperparameterError | None:
        """Why ``train_labeled`` labeled train rows cannot train this strategy with ``hp``, naming the
        setting to change, or None (the API asks it of a dataset's summary before it queues a job)."""
        return None  # most strategies train on any number of rows

    @abstractmethod
    def label_source(self, ctx: StrategyContext) -> LabelSource:
        """Run whatever the strategy needs before stage 3 and return stage 3's label source."""


class FixedLabels:
    """Unimodal labels fixed before stage 3 (MUG, copy, ...), optionally with fixed per-sample weights
    (MTCL) and weights the stage-3 network starts from (CMC's pre-trained encoders). ``labels[m]`` and
    ``weights[m]`` are indexed by dataset row."""

    uses_unimodal_tasks = True

    def __init__(
        self,
        labels: dict[str, Tensor],
        train_rows: Tensor,
        weights: dict[str, Tensor] | None = None,
        initial_state: dict[str, Tensor] | None = None,
    ) -> None:
        self.labels = labels
        self.train_rows = train_rows
        self.weights = weights
        self.initial_state = initial_state

    def targets(self, rows: Tensor) -> dict[str, tuple[Tensor, Tensor | None]]:
        w = self.weights
        return {m: (lab[rows], None if w is None else w[m][rows]) for m, lab in self.labels.items()}

    def after_batch(self, rows: Tensor, out: dict, epoch: int) -> None:
        return None

    def on_best(self) -> None:
        return None

    def final_labels(self) -> dict[str, Tensor] | None:
        return {m: lab[self.train_rows] for m, lab in self.labels.items()}


class NoLabels:
    """No unimodal tasks: stage 3 optimises L_M only."""

    uses_unimodal_tasks = False

    def targets(self, rows: Tensor) -> dict[str, tuple[Tensor, Tensor | None]]:
        return {}

    def after_batch(self, rows: Tensor, out: dict, epoch: int) -> None:
        return None

    def on_best(self) -> None:
        return None

    def final_labels(self) -> dict[str, Tensor] | None:
        return None
