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
