"""The related systems as strategies: mlc (meta label correction), cmc (PLGM pseudo labels), mtcl (CAT)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import grad

from models import pipeline
from models.compare import compare
from models.config import HyperparameterError, resolve_hyperparameters
from models.dataset_loader import load_dataset
from models.nets import MUCN, mucn_forward
from models.pipeline import train
from models.run_dir import RUN_FILES
from models.strategies import STRATEGIES
from models.strategies.cmc import (
    class_centres,
    momentum_at,
    plgm_target,
    plgm_update,
    sentiment_class,
    supcon_loss,
)
from models.strategies.mlc import MLCBatch, MLCLearner, head_forward
from models.strategies.mtcl import js_divergence, split_by_divergence, subset_weights
from tests.conftest import train_recording

RELATED = ("mlc", "cmc", "mtcl")
FAST = {"mlc_epochs": 2, "cmc_epochs": 2, "mtcl_epochs": 2}


def test_registry_keeps_the_original_four_first() -> None:
    assert STRATEGIES[:4] == ("mug", "selfmm", "copy", "none")
    assert set(RELATED) <= set(STRATEGIES)


@pytest.mark.parametrize("strategy", RELATED)
def test_related_strategy_writes_a_complete_run(
    strategy: str, small_synth: Path, tmp_path: Path, tiny_hp
) -> None:
    ds = load_dataset(small_synth)
    result, events = train_recording(ds, tmp_path / "run", strategy, {**tiny_hp, **FAST})
    run = result.out_dir
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)
    config = json.loads((run / "config.json").read_text())
    assert config["strategy"] == strategy and config["hyperparameters"]["mlc_epochs"] == 2
    diagnostics = config["strategy_diagnostics"][strategy]
    labels = pd.read_csv(run / "unimodal_labels.csv", dtype={"id": str})
    assert len(labels) == len(ds.indices("train"))
    uni = labels[["label_T", "label_A", "label_V"]]
    assert uni.notna().all().all() and uni.abs().max().max() <= ds.rho + 1e-6
    assert "unimodal_labels_vs_sub_labels" in result.metrics
    assert events and events[-1].fraction == pytest.approx(1.0)
    train_rows = ds.labeled("train")
    y = ds.label[train_rows]
    if strategy == "mlc":
        assert set(diagnostics) == {"text", "audio", "vision"}
        assert not np.allclose(labels["label_V"], y, atol=1e-4)  # the LCN moved the labels
    if strategy == "cmc":
        # 2 epochs at m_0 = 0.8 / 0.99 barely move the soft labels: each label stays near its class centre
        centres = np.array(diagnostics["centres"])
        start = centres[sentiment_class(torch.from_numpy(y)).numpy()]
        assert np.abs(labels["label_A"] - start).max() < 0.05 * ds.rho
        assert np.abs(labels["label_T"] - start).max() < 0.5 * ds.rho
    if strategy == "mtcl":
        n_ben = int((1 - 0.44) * len(train_rows))
        for m, col in (("text", "label_T"), ("audio", "label_A"), ("vision", "label_V")):
            assert diagnostics[m]["beneficial"] == n_ben
            assert diagnostics[m]["harmful"] == len(train_rows) - n_ben
            human = ds.sub_labels[m][train_rows]
            is_human = np.isclose(labels[col], human, atol=1e-6) & ~np.isclose(human, y, atol=1e-6)
            is_multi = np.isclose(labels[col], y, atol=1e-6)
            assert (is_human | is_multi).all()
            assert is_human.sum() == pytest.approx(n_ben, abs=2)  # rows where human == y are ambiguous


# ------------------------------------------------------------------------------------------------- mlc


def _mlc_case(seed: int = 0, d: int = 6, hidden: int = 8):
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    main = {
        "0.weight": torch.randn(hidden, d, generator=g, dtype=dt) * 0.5,
        "0.bias": torch.randn(hidden, generator=g, dtype=dt) * 0.1,
        "2.weight": torch.randn(1, hidden, generator=g, dtype=dt) * 0.5,
        "2.bias": torch.zeros(1, dtype=dt),
    }
    torch.manual_seed(seed)
    lcn = {k: v.detach().to(dt) for k, v in MUCN(d, 8, 3.0, "atanh").mlp.named_parameters()}
    r = lambda *s: torch.randn(*s, generator=g, dtype=dt)  # noqa: E731
    batch = MLCBatch(r(12, d), r(12, d), r(12).clamp(-2.5, 2.5), r(6, d), r(6), r(6, d), r(6))
    return main, lcn, batch


def test_mlc_lcn_gradient_is_second_order_through_the_main_step() -> None:
    main, lcn, batch = _mlc_case()
    learner = MLCLearner(3.0, "atanh", main_lr=0.5)
    ours, new_main, _ = learner.hypergradient(main, lcn, batch)

    # reference: torch.func.grad of L_meta(w - eta * grad_w L_main(w, alpha)) with respect to alpha
    def main_loss(w, alpha):
        y_c = mucn_forward(alpha, batch.noisy_lcn_in, batch.noisy_y, 3.0, "atanh")
        loss_s = ((head_forward(w, batch.noisy_x) - y_c) ** 2).mean()
        loss_c = ((head_forward(w, batch.clean_x) - batch.clean_y) ** 2).mean()
        return (12 * loss_s + 6 * loss_c) / 18

    def meta_objective(alpha):
        g_w = grad(main_loss)(main, alpha)
        adapted = {k: main[k] - 0.5 * g_w[k] for k in main}
        return ((head_forward(adapted, batch.meta_x) - batch.meta_y) ** 2).mean()

    reference = grad(meta_objective)(lcn)
    for k in lcn:
        assert torch.allclose(ours[k], reference[k], atol=1e-10, rtol=1e-7), k
    assert sum(float(v.abs().sum()) for v in ours.values()) > 1e-6

    # the main network's real step is the same SGD step, on the pre-update LCN
    g_w = grad(main_loss)(main, lcn)
    for k in main:
        assert torch.allclose(new_main[k], main[k] - 0.5 * g_w[k], atol=1e-12)

    # first order (no graph through the step): the LCN gets no gradient at all - MLC's only signal is
    # the second-order path
    alpha = {k: v.clone().requires_grad_(True) for k, v in lcn.items()}
    adapted, _ = learner.lookahead(main, alpha, batch, create_graph=False)
    meta = learner.meta_loss(adapted, batch)
    assert all(g is None for g in torch.autograd.grad(meta, list(alpha.values()), allow_unused=True))


def test_mlc_hypergradient_matches_finite_differences() -> None:
    main, lcn, batch = _mlc_case(seed=1)
    learner = MLCLearner(3.0, "atanh", main_lr=0.3)
    ours, _, _ = learner.hypergradient(main, lcn, batch)
    direction = {k: torch.randn_like(v) for k, v in lcn.items()}

    def objective(t: float) -> float:
        shifted = {k: lcn[k] + t * direction[k] for k in lcn}
        adapted, _ = learner.lookahead(main, shifted, batch, create_graph=False)
        return float(learner.meta_loss(adapted, batch).detach())

    eps = 1e-6
    numeric = (objective(eps) - objective(-eps)) / (2 * eps)
    analytic = sum(float((ours[k] * direction[k]).sum()) for k in lcn)
    assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-9)


# ------------------------------------------------------------------------------------------------- cmc


def test_cmc_momentum_schedule() -> None:
    assert momentum_at(0.8, 1, 0.5) == pytest.approx(0.8)
    assert momentum_at(0.8, 4, 0.5) == pytest.approx(0.9)  # 1 - 0.2 / sqrt(4)
    assert momentum_at(0.99, 9, 0.5) == pytest.approx(1 - 0.01 / 3)
    assert momentum_at(0.8, 5, 0.0) == pytest.approx(0.8)  # gamma = 0: constant


def test_cmc_pseudo_label_update_hand_computed() -> None:
    # p disagrees with the current pseudo class: yhat = neg (0), nearest one-hot to p = pos (2)
    p = torch.tensor([[0.2, 0.3, 0.5]])
    pseudo = torch.tensor([[0.6, 0.3, 0.1]])
    alpha = (math.sqrt(0.98) - math.sqrt(0.38)) / (math.sqrt(0.98) + math.sqrt(0.38))  # ||p-e0||, ||p-e2||
    assert alpha == pytest.approx(0.232514, abs=1e-6)
    assert torch.allclose(plgm_target(p, pseudo), torch.tensor([[1 - alpha, 0.0, alpha]]), atol=1e-6)
    new = plgm_update(pseudo, p, momentum_at(0.8, 4, 0.5))  # m_e = 0.9
    expected = torch.tensor([[0.9 * 0.6 + 0.1 * (1 - alpha), 0.9 * 0.3, 0.9 * 0.1 + 0.1 * alpha]])
    assert torch.allclose(new, expected, atol=1e-6)
    assert torch.allclose(new, torch.tensor([[0.6167486, 0.27, 0.1132514]]), atol=1e-6)
    # p agrees with the pseudo class: alpha = 0, temp = onehot(yhat)
    agree = plgm_update(torch.tensor([[0.5, 0.2, 0.3]]), torch.tensor([[0.7, 0.2, 0.1]]), 0.9)
    assert torch.allclose(agree, torch.tensor([[0.55, 0.18, 0.27]]), atol=1e-6)
    # an exactly one-hot p equal to the pseudo class stays finite
    assert torch.isfinite(plgm_target(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))).all()


def test_cmc_classes_centres_and_supcon() -> None:
    y = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.5, 0.05])
    assert sentiment_class(y).tolist() == [0, 0, 1, 2, 2, 2]
    assert sentiment_class(y, band=0.1).tolist() == [0, 0, 1, 2, 2, 1]
    centres = class_centres(y, sentiment_class(y), 3.0)
    assert torch.allclose(centres, torch.tensor([-1.5, 0.0, 2.05 / 3]))
    assert torch.allclose(class_centres(y[:2], sentiment_class(y[:2]), 3.0), torch.tensor([-1.5, 0.0, 1.5]))
    # expected sentiment of a soft label (the stage-3 target)
    assert float(torch.tensor([0.25, 0.5, 0.25]) @ torch.tensor([-1.0, 0.0, 2.0])) == pytest.approx(0.25)
    # supervised contrastive loss: lower when same-label features coincide
    labels = torch.tensor([0, 0, 1, 1])
    tight = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.01], [0.01, 1.0]])
    assert supcon_loss(tight, labels, 0.1) < supcon_loss(mixed, labels, 0.1)


def _cmc_reference_supcon(features: torch.Tensor, labels: torch.Tensor, t: float) -> torch.Tensor:
    """CMC's SupConLoss (gw-zhong/CMC src/models.py) written out with exp and sums, on normalised features."""
    z = torch.nn.functional.normalize(features, dim=-1)
    exp_sim = torch.exp(z @ z.t() / t)
    positive = (labels[:, None] == labels[None, :]).float()
    positive.fill_diagonal_(0)
    numerator = (exp_sim * positive).sum(1)
    denominator = exp_sim.sum(1) - exp_sim.diag()
    valid = positive.sum(1) > 0
    return -torch.log(numerator[valid] / denominator[valid]).mean()


def test_cmc_supcon_is_cmcs_own_form() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(24, 8, generator=g)
    labels = torch.randint(0, 2, (24,), generator=g)
    for t in (0.07, 0.5):
        reference = float(_cmc_reference_supcon(feats.double(), labels, t))  # float64: exp(1/0.07) is large
        assert float(supcon_loss(feats, labels, t)) == pytest.approx(reference, rel=1e-4)
    # an anchor without positives is left out; no positives at all is 0, not NaN
    assert supcon_loss(feats[:3], torch.tensor([0, 1, 2]), 0.1) == 0.0
    lone = torch.tensor([0, 0, 1])
    reference = float(_cmc_reference_supcon(feats[:3].double(), lone, 0.1))
    assert float(supcon_loss(feats[:3], lone, 0.1)) == pytest.approx(reference, rel=1e-4)


def test_cmc_fine_tunes_from_its_pretrained_encoders(
    small_synth: Path, tmp_path: Path, tiny_hp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stage 3 starts from the PLGM-trained encoders F^m (CMC's transfer_models), other layers fresh."""
    import models.stages.multitask as multitask
    from models.strategies import cmc

    captured: dict = {}
    original_source = cmc.CMCStrategy.label_source

    def keep_source(self, ctx):  # noqa: ANN001
        captured["source"] = original_source(self, ctx)
        return captured["source"]

    original_opt = multitask.make_optimizer

    def at_start(net, *args):  # noqa: ANN001
        captured["start"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return original_opt(net, *args)

    monkeypatch.setattr(cmc.CMCStrategy, "label_source", keep_source)
    monkeypatch.setattr(multitask, "make_optimizer", at_start)
    train(load_dataset(small_synth), tmp_path / "run", strategy="cmc", seed=1,
          hyperparameters={**tiny_hp, **FAST}, device="cpu")  # fmt: skip
    initial = captured["source"].initial_state
    assert initial and all(k.startswith("encoders.") for k in initial)
    start = captured["start"]
    assert {k for k in start if k.startswith("encoders.")} == set(initial)
    for k, v in initial.items():
        assert torch.equal(start[k], v), k


# ------------------------------------------------------------------------------------------------ mtcl


def test_mtcl_split_follows_the_rate() -> None:
    js = torch.rand(100, generator=torch.Generator().manual_seed(0))
    ben, harm = split_by_divergence(js, 0.44)
    assert len(ben) == 56 and len(harm) == 44  # int((1 - r) * n) beneficial, as MTCL
    assert js[ben].max() <= js[harm].min()
    assert sorted(torch.cat([ben, harm]).tolist()) == list(range(100))
    assert len(split_by_divergence(js, 0.0)[0]) == 100 and len(split_by_divergence(js, 1.0)[0]) == 0
    w = subset_weights(100, ben)
    assert float(w.mean()) == pytest.approx(1.0)
    assert float(w[ben].sum()) == pytest.approx(float(w[harm].sum()))  # each subset: half the loss
    assert torch.equal(subset_weights(100, torch.arange(100)), torch.ones(100))


def test_mtcl_js_divergence() -> None:
    a, b = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    p, q = torch.softmax(a, 1), torch.softmax(b, 1)
    mid = (p + q) / 2
    kl = lambda x, z: (x * (x / z).log()).sum(1)  # noqa: E731
    expected = (0.5 * kl(p, mid) + 0.5 * kl(q, mid)) / math.log(2)
    assert torch.allclose(js_divergence(a, b), expected)
    assert torch.allclose(js_divergence(a, a), torch.zeros(5, dtype=torch.float64), atol=1e-12)
    assert (js_divergence(a * 50, -b * 50) <= 1 + 1e-9).all()


def test_mtcl_needs_sub_labels_and_names_them(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    ds = load_dataset(small_synth)
    none = dataclasses.replace(ds, sub_labels={})
    with pytest.raises(ValueError, match=r"strategy mtcl: .*label_T, label_A, label_V"):
        train(none, tmp_path / "a", strategy="mtcl", hyperparameters=tiny_hp, device="cpu")
    partial = dataclasses.replace(ds, sub_labels={"text": ds.sub_labels["text"]})
    with pytest.raises(ValueError, match=r"no label_A, label_V columns"):
        train(partial, tmp_path / "b", strategy="mtcl", hyperparameters=tiny_hp, device="cpu")
    two = dict(tiny_hp, modalities="text,audio")  # the run's modalities are named, not all three
    named = r"no label_T, label_A columns \(MTCL trains each modality of the run, text, audio, on"
    with pytest.raises(ValueError, match=named):
        train(none, tmp_path / "c", strategy="mtcl", hyperparameters=two, device="cpu")
    blank = {**ds.sub_labels, "audio": np.full(len(ds), np.nan, dtype=np.float32)}
    with pytest.raises(ValueError, match=r"^strategy mtcl: .*; label_A is blank on every labeled train row$"):
        train(
            dataclasses.replace(ds, sub_labels=blank),
            tmp_path / "d", strategy="mtcl", hyperparameters=tiny_hp
        )
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_mtcl_pre_stage_stops_early_on_its_valid_mae(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    hp = {**tiny_hp, "mtcl_epochs": 40, "early_stop": 1}
    result, events = train_recording(load_dataset(small_synth), tmp_path / "run", "mtcl", hp)
    ran = [e for e in events if e.stage == "mtcl"]
    assert 1 <= len(ran) < 40 and ran[-1].epochs == 40  # stopped at the first epoch that did not improve
    maes = [e.metrics["valid_mae"] for e in ran]
    assert maes[-1] >= min(maes[:-1]) and maes[:-1] == sorted(maes[:-1], reverse=True)
    diagnostics = result.config["strategy_diagnostics"]["mtcl"]
    assert diagnostics["epochs_run"] == len(ran) and diagnostics["best_valid_mae"] == min(maes)
    # the split into beneficial and harmful samples is the best epoch's: as a run that ended there
    best = {**hp, "mtcl_epochs": len(ran) - 1}
    ended, _ = train_recording(load_dataset(small_synth), tmp_path / "best", "mtcl", best)
    labels = [(r.out_dir / "unimodal_labels.csv").read_text() for r in (result, ended)]
    assert labels[0] == labels[1]


def test_cmc_contrastive_weight_zero_turns_the_supcon_loss_off(
    small_synth: Path, tmp_path: Path, tiny_hp
) -> None:
    ds = load_dataset(small_synth)
    _, on = train_recording(ds, tmp_path / "on", "cmc", {**tiny_hp, **FAST})
    _, off = train_recording(ds, tmp_path / "off", "cmc", {**tiny_hp, **FAST, "cmc_contrastive_weight": 0.0})
    assert all("SupCon" in e.losses for e in on if e.stage == "cmc")
    assert [sorted(e.losses) for e in off if e.stage == "cmc"] == [["CE_audio", "CE_text", "CE_vision"]] * 2


def test_mtcl_without_sub_labels_fails_before_any_input_is_built(
    small_synth: Path, tmp_path: Path, tiny_hp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check comes before the transcripts are encoded (40 s on MOSI) or any stage runs."""
    ds = dataclasses.replace(load_dataset(small_synth), sub_labels={})

    def build_inputs(*args, **kwargs):
        raise AssertionError("inputs built before the strategy's check")

    monkeypatch.setattr(pipeline, "build_inputs", build_inputs)
    events = []
    with pytest.raises(ValueError, match=r"strategy mtcl: "):
        train(ds, tmp_path / "a", strategy="mtcl", hyperparameters=tiny_hp, progress=events.append)
    assert events == []


def test_compare_refuses_mtcl_on_a_dataset_without_sub_labels_before_training(
    small_synth: Path, tmp_path: Path, tiny_hp
) -> None:
    data = tmp_path / "no-sub-labels"
    shutil.copytree(small_synth, data)
    csv = pd.read_csv(data / "utterances.csv")
    csv.drop(columns=["label_T", "label_A", "label_V"]).to_csv(data / "utterances.csv", index=False)
    with pytest.raises(ValueError, match=r"strategy mtcl: .*label_T, label_A, label_V"):
        compare(data, ["copy", "mtcl"], [1], tmp_path / "cmp", hyperparameters=tiny_hp, progress=False)
    assert not (tmp_path / "cmp" / "copy").exists()


def test_related_hyperparameters_are_validated() -> None:
    hp = resolve_hyperparameters({})
    assert hp.mtcl_eliminate_rate == 0.44 and hp.cmc_momentum_text == 0.8 and hp.mlc_epochs == 65
    for bad, field in (
        ({"mtcl_eliminate_rate": 1.2}, "mtcl_eliminate_rate"),
        ({"cmc_momentum_vision": 1.0}, "cmc_momentum_vision"),
        ({"cmc_epochs": 0}, "cmc_epochs"),
        ({"mlc_main_lr": 0}, "mlc_main_lr"),
        ({"cmc_neutral_band": -0.1}, "cmc_neutral_band"),
        ({"cmc_temperature": "x"}, "cmc_temperature"),
    ):
        with pytest.raises(HyperparameterError, match=f"hyperparameters.{field}"):
            resolve_hyperparameters(bad)


def test_cmc_stage3_label_is_the_expected_sentiment_of_the_soft_pseudo_label(
    small_synth: Path, tmp_path: Path, tiny_hp
) -> None:
    """The unimodal label is sum_c pseudo_c * centre_c: where the text classifier disagreed with the pseudo
    class, the soft label lies between the class centres, not on one of them (argmax would)."""
    ds = load_dataset(small_synth)
    result, _ = train_recording(ds, tmp_path / "run", "cmc", {**tiny_hp, **FAST})
    centres = np.array(result.config["strategy_diagnostics"]["cmc"]["centres"])
    labels = pd.read_csv(result.out_dir / "unimodal_labels.csv", dtype={"id": str})["label_T"].to_numpy()
    off_centre = np.abs(labels[:, None] - centres[None, :]).min(1) > 1e-3
    assert off_centre.any()
    assert labels.min() >= centres.min() - 1e-6 and labels.max() <= centres.max() + 1e-6  # convex mixtures


def test_mtcl_stage3_weights_give_each_subset_half_the_unimodal_loss(
    small_synth: Path, tmp_path: Path, tiny_hp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stage 3 weights a beneficial sample n / (2 n_ben) and a harmful one n / (2 n_harm) (mean over each
    subset, summed, as MTCL's loss)."""
    from models.stages import multitask

    seen: list[torch.Tensor] = []
    original = multitask.multitask_loss

    def recording_loss(out, y, targets, beta):  # noqa: ANN001
        seen.extend(w.cpu() for _, w in targets.values())
        return original(out, y, targets, beta)

    monkeypatch.setattr(multitask, "multitask_loss", recording_loss)
    ds = load_dataset(small_synth)
    train(ds, tmp_path / "run", strategy="mtcl", seed=1, hyperparameters={**tiny_hp, **FAST}, device="cpu")
    n = len(ds.labeled("train"))
    n_ben = int((1 - 0.44) * n)
    expected = {round(n / (2 * n_ben), 5), round(n / (2 * (n - n_ben)), 5)}
    assert {round(float(v), 5) for w in seen for v in w} == expected


def test_mlc_labels_are_the_lcn_read_out_on_the_unimodal_representations() -> None:
    """MLC's labels are LCN(x_m, y) (x_m L2-normalised), not LCN(x_m', y): with a negligible meta learning
    rate the LCN keeps its initial weights, drawn first from the generator."""
    from models.stages.parallel import built_with_seed, draw_seed
    from models.strategies.mlc import mlc_learn_labels

    g = torch.Generator().manual_seed(0)
    x, xp = torch.randn(24, 6, generator=g) * 3, torch.randn(24, 6, generator=g)
    y = (torch.randn(24, generator=g) * 1.5).clamp(-2.9, 2.9)
    head = {"0.weight": torch.randn(5, 6), "0.bias": torch.zeros(5), "2.weight": torch.randn(1, 5),
            "2.bias": torch.zeros(1)}  # fmt: skip
    hp = resolve_hyperparameters({"mlc_epochs": 1, "mlc_meta_lr": 1e-9, "mucn_hidden": 8, "batch_size": 8})
    result = mlc_learn_labels(x, xp, head, y, hp, 3.0, torch.Generator().manual_seed(4))
    lcn = built_with_seed(draw_seed(torch.Generator().manual_seed(4)), lambda: MUCN(6, 8, 3.0, "atanh"))
    with torch.no_grad():
        expected = lcn(x / x.norm(dim=1, keepdim=True), y)
    assert torch.allclose(result.labels, expected, atol=1e-4)


def test_cmc_supcon_polarity_is_neutral_or_positive_on_a_minus_3_to_3_range(
    small_synth: Path, tmp_path: Path, tiny_hp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CMC's binary polarity for SupCon when rho != 1: class >= neu (y >= -band in the first epoch, where
    every pseudo class is still y's), the same for all three modalities."""
    from models.strategies import cmc

    seen: list[torch.Tensor] = []
    original = cmc.supcon_loss

    def recording_supcon(features, labels, temperature):  # noqa: ANN001
        seen.append(labels.cpu())
        return original(features, labels, temperature)

    monkeypatch.setattr(cmc, "supcon_loss", recording_supcon)
    ds = load_dataset(small_synth)
    hp = {**tiny_hp, **FAST, "cmc_epochs": 1, "cmc_neutral_band": 0.5}
    train(ds, tmp_path / "run", strategy="cmc", seed=1, hyperparameters=hp, device="cpu")
    y = ds.label[ds.labeled("train")]
    assert ds.rho == 3.0 and ((y > -0.5) & (y <= 0.5)).any()  # a neutral class to tell the rules apart
    assert int(sum(int(p.sum()) for p in seen)) == 3 * int((y >= -0.5).sum())
