"""Stage 3 (Sec. 3.4, 4.4): Eq. 27's loss, early stopping after ``early_stop`` epochs without a better valid
L_M, and the model of the best epoch kept."""

from __future__ import annotations

import pytest
import torch

from models.config import resolve_hyperparameters
from models.inputs import TensorInputs
from models.nets import ModalitySpec, MultimodalNet, NetSpec
from models.stages import multitask
from models.stages.common import Reporter
from models.strategies.base import FixedLabels


def test_multitask_loss_is_eq_27() -> None:
    """L = L_M + beta * sum_m L_m, each an L1 (Eq. 25-27); a per-sample weight scales a sample's error."""
    y = torch.tensor([1.0, -1.0])
    out = {
        "pred": torch.tensor([0.5, -2.0]),
        "uni_pred": {"text": torch.tensor([1.0, 1.0]), "audio": torch.tensor([0.0, 0.0])},
    }
    targets = {
        "text": (torch.tensor([1.0, 0.0]), None),  # L_T = (0 + 1) / 2
        "audio": (torch.tensor([2.0, 2.0]), torch.tensor([1.0, 0.0])),  # L_A = (2 * 1 + 2 * 0) / 2
    }
    total, parts = multitask.multitask_loss(out, y, targets, beta=0.5)
    assert parts == {"L_M": 0.75, "L_text": 0.5, "L_audio": 1.0}
    assert total.item() == pytest.approx(0.75 + 0.5 * (0.5 + 1.0))
    alone, parts = multitask.multitask_loss(out, y, {}, beta=0.5)  # no unimodal tasks: L_M alone
    assert alone.item() == 0.75 and parts == {"L_M": 0.75}


def test_stage_3_stops_after_early_stop_epochs_without_improvement_and_keeps_the_best(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Valid L_M scripted 1.0, 0.8, 0.9, 0.8, 0.85, ... with early_stop = 3: epoch 2 is the best (a tie is
    no improvement), epochs 3-5 are not better, so training ends after epoch 5 with epoch 2's weights."""
    n = 12
    g = torch.Generator().manual_seed(0)
    inputs = TensorInputs({"text": torch.randn(n, 4, generator=g)}, {"text": "vector"})
    spec = NetSpec({"text": ModalitySpec("vector", 4, 6)}, fusion_dim=4, predictor_hidden=3, dropout=0.0)
    net = MultimodalNet(spec)
    y = torch.linspace(-1, 1, n)
    train_rows, valid_rows = torch.arange(8), torch.arange(8, n)
    scripted = iter([1.0, 0.8, 0.9, 0.8, 0.85, 0.7, 0.6])
    weights_at_epoch: list[dict[str, torch.Tensor]] = []

    def predict_rows(net: MultimodalNet, inputs: TensorInputs, rows: torch.Tensor, device: torch.device):
        weights_at_epoch.append({k: v.clone() for k, v in net.state_dict().items()})
        return {"pred": y[rows] + next(scripted)}  # a valid L_M (MAE) of exactly the scripted value

    monkeypatch.setattr(multitask, "predict_rows", predict_rows)
    hp = resolve_hyperparameters({"early_stop": 3, "multitask_max_epochs": 50, "batch_size": 4})
    source = FixedLabels({"text": y.clone()}, train_rows)
    cpu, reporter = torch.device("cpu"), Reporter({"multitask": 50})
    result = multitask.multitask_train(net, inputs, y, train_rows, valid_rows, source, hp, g, cpu, reporter)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert [h["valid_L_M"] for h in result.history] == [1.0, 0.8, 0.9, 0.8, 0.85]
    assert result.best_epoch == 2 and result.best_valid_loss == pytest.approx(0.8)
    best = weights_at_epoch[1]
    assert result.state.keys() == best.keys()
    assert all(torch.equal(result.state[k], best[k]) for k in best)
    assert not all(torch.equal(net.state_dict()[k], best[k]) for k in best)  # it trained on after epoch 2


def test_the_written_run_is_the_model_of_the_best_epoch(small_synth, tmp_path, tiny_hp) -> None:
    """Sec. 4.4: the model kept is the one of the lowest valid L_M, not the last one trained: the valid MAE of
    the written run's predictions is the best epoch's valid loss."""
    from models.dataset_loader import load_dataset
    from models.pipeline import train

    hp = {**tiny_hp, "early_stop": 1, "multitask_max_epochs": 20}
    run = train(
        load_dataset(small_synth), tmp_path / "run", strategy="copy", seed=1, hyperparameters=hp, device="cpu"
    )
    stage3 = run.config["stage3"]
    assert stage3["epochs_run"] == stage3["best_epoch"] + 1  # it trained one epoch past the best
    assert run.metrics["valid"]["mae"] == pytest.approx(stage3["best_valid_loss"], abs=2e-4)


def test_early_stopping_counts_only_consecutive_epochs_without_improvement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Valid L_M 1.0, 1.1, 0.9, 1.0, 1.0, 0.5 with early_stop = 2: epoch 3's improvement resets the count,
    so training ends after epoch 5 (two epochs in a row without improvement), not after epoch 4."""
    n = 12
    g = torch.Generator().manual_seed(0)
    inputs = TensorInputs({"text": torch.randn(n, 4, generator=g)}, {"text": "vector"})
    spec = NetSpec({"text": ModalitySpec("vector", 4, 6)}, fusion_dim=4, predictor_hidden=3, dropout=0.0)
    y = torch.linspace(-1, 1, n)
    scripted = iter([1.0, 1.1, 0.9, 1.0, 1.0, 0.5, 0.4])
    monkeypatch.setattr(
        multitask, "predict_rows", lambda net, inputs, rows, device: {"pred": y[rows] + next(scripted)}
    )
    hp = resolve_hyperparameters({"early_stop": 2, "multitask_max_epochs": 50, "batch_size": 4})
    source = FixedLabels({"text": y.clone()}, torch.arange(8))
    cpu, reporter = torch.device("cpu"), Reporter({"multitask": 50})
    result = multitask.multitask_train(
        MultimodalNet(spec), inputs, y, torch.arange(8), torch.arange(8, n), source, hp, g, cpu, reporter
    )
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert result.best_epoch == 3


def test_stage_3_starts_from_weights_seeded_with_seed_plus_one(small_synth, tmp_path, tiny_hp) -> None:
    """docs/method.md: stage 3 is seeded with seed + 1 for every strategy. With a negligible learning rate the
    written weights are the initial ones, those of a fresh network built right after seeding with seed + 1."""
    from safetensors.torch import load_file

    from models.dataset_loader import load_dataset
    from models.model_info import read_model_info
    from models.pipeline import train
    from models.stages.common import seed_everything

    hp = {**tiny_hp, "lr": 1e-12, "multitask_max_epochs": 1}
    run = train(load_dataset(small_synth), tmp_path / "run", strategy="none", seed=5, hyperparameters=hp,
                device="cpu")  # fmt: skip
    spec = read_model_info(run.out_dir / "model.json")[1]
    seed_everything(6)
    fresh = MultimodalNet(spec).state_dict()
    written = load_file(str(run.out_dir / "model.safetensors"))
    assert written.keys() == fresh.keys()
    for k, v in fresh.items():
        assert torch.allclose(written[k], v, atol=1e-8), k
