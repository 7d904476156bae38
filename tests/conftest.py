"""Shared fixtures: small synthetic datasets and tiny hyperparameters so the suite stays fast on 2 CPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.pipeline import RunResult, train
from models.stages.common import ProgressEvent
from models.synth import make_synthetic

MOSI_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi"

TINY = {
    "pretrain_epochs": 3,
    "meta_epochs": 4,
    "multitask_max_epochs": 4,
    "audio_dim": 16,
    "vision_dim": 16,
    "text_dim": 16,
    "fusion_dim": 8,
    "mucn_hidden": 16,
    "meta_extra_ratio": 2,
}


@pytest.fixture(autouse=True, scope="session")
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synth") / "ds", n_train=160, n_valid=48, n_test=32, seed=3)


@pytest.fixture(scope="session")
def small_synth_seq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(
        tmp_path_factory.mktemp("synthseq") / "ds", n_train=96, n_valid=32, n_test=16, seed=4, sequence=True
    )


@pytest.fixture
def tiny_hp() -> dict:
    return dict(TINY)


def train_recording(ds, out: Path, strategy: str, hp: dict) -> tuple[RunResult, list[ProgressEvent]]:
    """Train with seed 1 on CPU, keeping every progress event."""
    events: list[ProgressEvent] = []
    result = train(
        ds, out, strategy=strategy, seed=1, hyperparameters=hp, device="cpu", progress=events.append
    )
    return result, events
