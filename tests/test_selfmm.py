"""`selfmm` as MMSA's Self-MM trainer runs it: ULGM formulas, banks of the heads' hidden features, loss weight
1 and one optimiser step per 4 batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import models.stages.multitask as multitask
from models.dataset_loader import load_dataset
from models.nets import MultimodalNet
from models.pipeline import train
from models.stages.common import train_epoch
from models.strategies.selfmm import centres, ulgm_update


def test_centres_exclude_zero_labels() -> None:
    f = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 5.0], [0.0, -1.0]])
    y = torch.tensor([1.0, 2.0, 0.0, -1.0])
    pos, neg = centres(f, y)
    assert torch.equal(pos, torch.tensor([2.0, 0.0])) and torch.equal(neg, torch.tensor([0.0, -1.0]))


def test_ulgm_update_hand_computed() -> None:
    f_s, f_m = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    c_s = (torch.tensor([3.0, 4.0]), torch.tensor([0.0, 2.0]))  # d_sp = 5, d_sn = 2
    c_m = (torch.tensor([1.0, 1.0]), torch.tensor([1.0, 3.0]))  # d_mp = 1, d_mn = 3
    delta_s, delta_m = (2 - 5) / 5, (3 - 1) / 1
    y_m, y_s = torch.tensor([1.5]), torch.tensor([1.0])
    y_hat = 0.5 * delta_s / delta_m * 1.5 + 0.5 * (1.5 + delta_s - delta_m)
    new = ulgm_update(f_s, f_m, y_s, y_m, c_s, c_m, epoch=3, bound=3.0)
    assert float(new) == pytest.approx(2 / 4 * 1.0 + 2 / 4 * y_hat, abs=1e-5)


class _CountingAdam(torch.optim.Adam):
    steps = 0

    def step(self, closure=None):  # noqa: ANN001
        type(self).steps += 1
        return super().step(closure)


def test_train_epoch_steps_once_per_accumulated_group_and_drops_the_rest(small_synth: Path) -> None:
    from models.inputs import build_inputs, modality_specs
    from models.nets import NetSpec

    ds = load_dataset(small_synth)
    specs = modality_specs(ds, "features", {"text": 8, "audio": 8, "vision": 8}, None)
    inputs = build_inputs(ds, specs, "features")
    net = MultimodalNet(NetSpec(specs, fusion_dim=6, predictor_hidden=5, dropout=0.0))
    rows = torch.from_numpy(ds.labeled("train"))  # 160 rows: 10 batches of 16
    y = torch.from_numpy(ds.label)
    for accumulate, steps in ((1, 10), (4, 2), (3, 3)):
        opt = _CountingAdam(net.parameters())
        _CountingAdam.steps = 0
        train_epoch(
            net, opt, inputs, rows, 16, torch.Generator().manual_seed(0), torch.device("cpu"),
            lambda idx, out: ((out["pred"] - y[idx]).abs().mean(), {}), accumulate=accumulate,
        )  # fmt: skip
        assert _CountingAdam.steps == steps


def test_selfmm_banks_hold_head_hidden_features_and_loss_weight_is_one(
    small_synth: Path, tmp_path: Path, tiny_hp, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict = {}
    original_loss = multitask.multitask_loss

    def recording_loss(out, y, targets, beta):  # noqa: ANN001
        seen["beta"] = beta
        return original_loss(out, y, targets, beta)

    monkeypatch.setattr(multitask, "multitask_loss", recording_loss)
    from models.strategies import selfmm

    original_after = selfmm.SelfMMLabels.after_batch

    def checking_after(self, rows, out, epoch):  # noqa: ANN001
        original_after(self, rows, out, epoch)
        pos = self.position[rows]
        for m in self.labels:
            assert self.bank[m].shape[1] == 32  # predictor_hidden: the head's hidden layer, not x_m
            assert torch.equal(self.bank[m][pos], out["uni_hidden"][m].detach().cpu())
        seen["checked"] = seen.get("checked", 0) + 1

    monkeypatch.setattr(selfmm.SelfMMLabels, "after_batch", checking_after)
    ds = load_dataset(small_synth)
    train(ds, tmp_path / "run", strategy="selfmm", seed=1, hyperparameters=tiny_hp, device="cpu")
    assert seen["beta"] == 1.0 and seen["checked"] > 0  # Self-MM sums its four losses, whatever beta is
    train(
        ds, tmp_path / "w", strategy="selfmm", hyperparameters={**tiny_hp, "selfmm_weight": 0.3}, device="cpu"
    )
    assert seen["beta"] == 0.3


def test_unimodal_head_hidden_layer_feeds_its_prediction() -> None:
    from tests.test_nets import _inputs, _net

    net = _net()
    out = net(_inputs())
    for m in net.modalities:
        assert torch.allclose(out["uni_pred"][m], net.heads[m](out["reps"][m]).squeeze(-1))
        assert torch.allclose(out["uni_hidden"][m], torch.relu(net.heads[m][0](out["reps"][m])))


def test_a_train_split_too_small_to_reach_one_step_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 train rows at batch 32 are 2 batches an epoch; one step per 4 batches, the rest of an epoch dropped
    (as MMSA's loop does): the run ended untrained (0 optimiser steps, valid corr 0.20 against copy's 0.85),
    unsaid."""
    from models.config import HyperparameterError
    from models.synth import make_synthetic

    data = make_synthetic(tmp_path / "ds", n_train=60, n_valid=20, n_test=20, seed=2)
    steps = []
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: steps.append(1))
    with pytest.raises(HyperparameterError) as refused:
        train(data, tmp_path / "run", strategy="selfmm", hyperparameters={"multitask_max_epochs": 1})
    assert refused.value.field == "selfmm_update_every" and not (tmp_path / "run").exists()
    assert str(refused.value) == (
        "hyperparameters.selfmm_update_every: one optimiser step per 4 batches, but train's 60 labeled rows "
        "make 2 batches of 32 an epoch, so the network would never be updated (an unfinished group's "
        "gradients are dropped at the end of an epoch, as MMSA's loop does); set selfmm_update_every at most "
        "2, or batch_size at most 15"
    )
    # either way out trains: 4 batches of 15 make one step an epoch, and so do 2 of 32 a step per 2
    hp = {"multitask_max_epochs": 1, "batch_size": 15}
    train(data, tmp_path / "a", strategy="selfmm", hyperparameters=hp)
    assert len(steps) == 1
    hp = {"multitask_max_epochs": 1, "selfmm_update_every": 2}
    train(data, tmp_path / "b", strategy="selfmm", hyperparameters=hp)
    assert len(steps) == 2


def test_ulgm_pseudo_label_is_clamped_to_the_label_range_before_the_moving_average() -> None:
    """yhat_s = clamp(..., -H, H) (Self-MM's ULGM): a feature next to the positive centre gives delta_s = 29
    and an unclamped yhat_s of 29; clamped to H, then y_s <- (n-1)/(n+1) y_s + 2/(n+1) yhat_s."""
    f_s, f_m = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    c_s = (torch.tensor([0.1, 0.0]), torch.tensor([3.0, 0.0]))  # d_sp = 0.1, d_sn = 3: delta_s = 29
    c_m = (torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]))  # d_mp = 1, d_mn = 2: delta_m = 1
    y_m, y_s = torch.tensor([1.0]), torch.tensor([1.0])
    for bound in (3.0, 1.0):
        new = ulgm_update(f_s, f_m, y_s, y_m, c_s, c_m, epoch=2, bound=bound)
        assert float(new) == pytest.approx(1 / 3 * 1.0 + 2 / 3 * bound, abs=1e-5)
    # the negative side: y_m = -1 gives yhat_s = 0.5 * 29 * -1 + 0.5 * (-1 + 29 - 1) = -1, inside the range;
    # y_m = -3 gives 0.5 * 29 * -3 + 0.5 * (-3 + 28) = -31, clamped to -3
    new = ulgm_update(f_s, f_m, y_s, torch.tensor([-3.0]), c_s, c_m, epoch=2, bound=3.0)
    assert float(new) == pytest.approx(1 / 3 * 1.0 + 2 / 3 * -3.0, abs=1e-5)


def test_selfmm_labels_move_from_each_modalitys_own_label_centres_from_epoch_2_and_weight_by_tanh() -> None:
    """ULGM inside stage 3, written out: epoch 1 only fills the banks; later, the batch's y_s moves toward
    yhat_s computed from the distances of F_s to the centres of the bank of s split by s's CURRENT labels,
    and of F_m to the centres of the fused bank split by y_m; the loss weight is tanh(|y_s - y_m|)."""
    from types import SimpleNamespace

    from models.config import resolve_hyperparameters
    from models.strategies.selfmm import SelfMMLabels

    y = torch.tensor([2.0, -1.0, 1.0, -2.0])
    ctx = SimpleNamespace(
        hp=resolve_hyperparameters({"predictor_hidden": 2, "fusion_dim": 2}),
        y=y,
        train_rows=torch.arange(4),
        train_position=torch.arange(4),
        rho=3.0,
        inputs=SimpleNamespace(kinds={"text": "vector"}),
    )
    labels = SelfMMLabels(ctx)
    bank_s = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    bank_m = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    labels.after_batch(torch.arange(4), {"fused": bank_m, "uni_hidden": {"text": bank_s}}, epoch=1)
    assert torch.equal(labels.labels["text"], y)  # epoch 1: no update
    y_s = torch.tensor([1.5, 0.5, -0.5, -2.0])  # text labels that have drifted: rows 1 and 2 changed sign
    labels.labels["text"] = y_s.clone()
    f_s, f_m = torch.tensor([[0.5, 0.5], [0.0, -1.0]]), torch.tensor([[2.0, 1.0], [-1.0, 0.0]])
    labels.after_batch(torch.tensor([0, 1]), {"fused": f_m, "uni_hidden": {"text": f_s}}, epoch=3)

    c_sp, c_sn = bank_s[[0, 1]].mean(0), bank_s[[2, 3]].mean(0)  # by y_s: rows 0, 1 > 0; rows 2, 3 < 0
    c_mp, c_mn = bank_m[[0, 2]].mean(0), bank_m[[1, 3]].mean(0)  # by y_m
    d_sp, d_sn = (f_s - c_sp).norm(dim=1), (f_s - c_sn).norm(dim=1)
    d_mp, d_mn = (f_m - c_mp).norm(dim=1), (f_m - c_mn).norm(dim=1)
    delta_s, delta_m = (d_sn - d_sp) / d_sp, (d_mn - d_mp) / d_mp
    y_m = y[:2]
    y_hat = (0.5 * delta_s / delta_m * y_m + 0.5 * (y_m + delta_s - delta_m)).clamp(-3, 3)
    expected = torch.cat([2 / 4 * y_s[:2] + 2 / 4 * y_hat, y_s[2:]])
    assert torch.allclose(labels.labels["text"], expected, atol=1e-5)
    target, weight = labels.targets(torch.arange(4))["text"]
    assert torch.equal(target, labels.labels["text"])
    assert torch.allclose(weight, torch.tanh((expected - y).abs()), atol=1e-6)
