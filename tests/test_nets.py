"""Stage 1 and stage 3 building blocks (Eq. 7-12, 24-27) and hyperparameter validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.cli_args import parse_override
from models.config import HyperparameterError, resolve_hyperparameters
from models.nets import ModalitySpec, MultimodalNet, NetSpec, contrastive_loss
from models.stages.pretrain import pretrain_loss


def _net(with_projection: bool = True, sequence: bool = False) -> MultimodalNet:
    mods = {
        "text": ModalitySpec("vector", 6, 8),
        "audio": ModalitySpec("sequence" if sequence else "vector", 5, 8),
        "vision": ModalitySpec("vector", 4, 8),
    }
    return MultimodalNet(
        NetSpec(mods, fusion_dim=6, predictor_hidden=5, dropout=0.0, with_projection=with_projection)
    )


def _inputs(n: int = 10, sequence: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = {"text": torch.randn(n, 6, generator=g), "vision": torch.randn(n, 4, generator=g)}
    if sequence:
        x["audio"] = torch.randn(n, 7, 5, generator=g)
        x["audio_lengths"] = torch.randint(1, 8, (n,), generator=g)
    else:
        x["audio"] = torch.randn(n, 5, generator=g)
    return x


def test_contrastive_loss_stops_gradient_into_unimodal_side() -> None:
    proj = torch.randn(6, 4, requires_grad=True)
    uni = torch.randn(6, 4, requires_grad=True)
    contrastive_loss(proj, uni, tau=0.1).backward()
    assert uni.grad is None  # stop-gradient (Sec. 3.2, 4.9)
    assert proj.grad is not None and proj.grad.abs().sum() > 0


def test_contrastive_loss_is_infonce_on_l2_normalised_vectors() -> None:
    g = torch.Generator().manual_seed(1)
    proj, uni = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    a = proj / proj.norm(dim=1, keepdim=True)
    b = uni / uni.norm(dim=1, keepdim=True)
    sim = a @ b.t() / 0.5
    expected = -(sim.diag() - sim.logsumexp(dim=1)).mean()  # Eq. 11
    assert torch.allclose(contrastive_loss(proj, uni, 0.5), expected, atol=1e-6)
    assert torch.allclose(
        contrastive_loss(proj * 7, uni * 0.1, 0.5), expected, atol=1e-5
    )  # scale-free (Eq. 10)


def test_stage1_contrastive_gradient_reaches_encoders_only_through_the_projection() -> None:
    """x_m' = CPM(F^M(x_l, x_a, x_v)) carries gradient; the x_m side of Eq. 11 carries none."""
    torch.manual_seed(0)
    net = _net()
    x = _inputs()

    def encoder_grads(detach_outside: bool) -> list[torch.Tensor]:
        net.zero_grad()
        out = net(x)
        reps = {m: (r.detach() if detach_outside else r) for m, r in out["reps"].items()}
        sum(contrastive_loss(out["proj"][m], reps[m], 0.1) for m in net.modalities).backward()
        return [p.grad.clone() for m in net.modalities for p in net.encoders[m].parameters()]

    for a, b in zip(encoder_grads(False), encoder_grads(True), strict=True):
        assert torch.allclose(a, b)
    assert any(g.abs().sum() > 0 for g in encoder_grads(False))  # the projected side does train them


def test_pretrain_loss_is_eq12() -> None:
    net = _net()
    out = net(_inputs())
    y = torch.linspace(-3, 3, 10)
    total, parts = pretrain_loss(out, y, gamma=0.1, eta=0.2, tau=0.1)
    expected = parts["L_M"] + sum(0.2 * parts[f"L_{m}'"] + 0.1 * parts[f"Lc_{m}"] for m in net.modalities)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)


def test_projected_predictions_use_the_unimodal_predictor() -> None:
    net = _net()
    out = net(_inputs())
    for m in net.modalities:
        assert torch.allclose(out["proj_pred"][m], net.heads[m](out["proj"][m]).squeeze(-1))  # Eq. 8


def test_sequence_encoder_ignores_padding() -> None:
    torch.manual_seed(0)
    net = _net(sequence=True).eval()
    x = _inputs(sequence=True)
    x["audio_lengths"] = torch.full((10,), 3)
    a = net(x)["pred"]
    x["audio"][:, 3:] = 99.0  # padding beyond the lengths
    assert torch.allclose(a, net(x)["pred"])


def test_hyperparameter_errors_name_the_field() -> None:
    with pytest.raises(HyperparameterError, match="hyperparameters.batch_size: must be >= 1"):
        resolve_hyperparameters({"batch_size": 0})
    with pytest.raises(HyperparameterError, match="hyperparameters.meta_lr: must be > 0"):
        resolve_hyperparameters({"meta_lr": -1.0})
    with pytest.raises(HyperparameterError, match="hyperparameters.lambda_init"):
        resolve_hyperparameters({"lambda_init": 1.0})
    with pytest.raises(HyperparameterError, match="hyperparameters.metaa_lr: unknown"):
        resolve_hyperparameters({"metaa_lr": 1.0})
    with pytest.raises(HyperparameterError, match="hyperparameters.text_source: must be one of"):
        resolve_hyperparameters({"text_source": "bert"})
    with pytest.raises(HyperparameterError, match="must be an integer"):
        resolve_hyperparameters({"pretrain_epochs": 1.5})
    with pytest.raises(HyperparameterError, match="must be true or false"):
        resolve_hyperparameters({"second_order": "yes"})
    with pytest.raises(HyperparameterError, match="must be finite"):
        resolve_hyperparameters({"beta": float("nan")})


def test_hyperparameter_defaults_follow_table2_and_derive_noise() -> None:
    hp = resolve_hyperparameters(None, rho=1.0)
    assert (hp.batch_size, hp.pretrain_epochs, hp.meta_epochs) == (32, 15, 65)
    assert (hp.meta_lr, hp.meta_test_lr, hp.gamma, hp.eta, hp.beta) == (
        5e-3,
        1e-3,
        0.01,
        0.01,
        0.01,
    )
    assert (hp.fusion_dim, hp.audio_dim, hp.vision_dim, hp.text_dim) == (32, 256, 64, 64)
    assert hp.label_noise_std == pytest.approx(1 / 3)
    assert resolve_hyperparameters(None, rho=3.0).label_noise_std == pytest.approx(1.0)


def test_parse_override() -> None:
    assert parse_override("beta=0.1") == ("beta", 0.1)
    assert parse_override("meta_epochs=3") == ("meta_epochs", 3)
    assert parse_override("second_order=false") == ("second_order", False)
    assert parse_override("text_model=null") == ("text_model", None)
    assert parse_override("text_source=finetune") == ("text_source", "finetune")
    with pytest.raises(HyperparameterError):
        parse_override("beta")


def test_every_declared_hyperparameter_validates_its_default() -> None:
    from models.config import Hyperparameters

    defaults = Hyperparameters().record()
    assert resolve_hyperparameters(defaults) == resolve_hyperparameters(None)  # every name is overridable


def test_net_spec_reads_model_json_of_older_runs(tmp_path: Path) -> None:
    from models.model_info import read_model_info

    spec = _net().spec
    data = spec.to_json()
    assert "extra" not in data
    del data["text_normalize"]  # written before the setting existed: False, as those runs computed
    info = {"net_spec": {**data, "extra": {}}, "rho": 3.0, "text_source": "features", "strategy": "mug"}
    (tmp_path / "model.json").write_text(json.dumps({**info, "unimodal_heads_trained": True}))
    assert read_model_info(tmp_path / "model.json")[1] == spec  # "extra": written before it went away


def test_pretrain_loss_parts_are_eq9_on_projected_predictions_and_eq11_with_projected_anchors() -> None:
    """Each part of Eq. 12 computed here from the network's outputs: L_M = mean |yhat - y| (Eq. 6), L_m' =
    mean |P^m(x_m') - y| (Eq. 9), L^c_m the InfoNCE of Eq. 11 with anchors x_m' and candidates x_m."""
    torch.manual_seed(0)
    net = _net()
    out = net(_inputs())
    y = torch.linspace(-3, 3, 10)
    total, parts = pretrain_loss(out, y, gamma=0.1, eta=0.2, tau=0.5)
    out = {
        k: v.detach() if torch.is_tensor(v) else {m: t.detach() for m, t in v.items()} for k, v in out.items()
    }
    expected_total = (out["pred"] - y).abs().mean()
    assert parts["L_M"] == pytest.approx(float(expected_total), rel=1e-5)
    for m in net.modalities:
        l_proj = (out["proj_pred"][m] - y).abs().mean()
        a = out["proj"][m] / out["proj"][m].norm(dim=1, keepdim=True)
        b = out["reps"][m] / out["reps"][m].norm(dim=1, keepdim=True)
        sim = a @ b.t() / 0.5
        l_con = -(sim.diag() - sim.logsumexp(dim=1)).mean()  # row j: anchor x_m'^j against every x_m^g
        assert parts[f"L_{m}'"] == pytest.approx(float(l_proj), rel=1e-5), m
        assert parts[f"Lc_{m}"] == pytest.approx(float(l_con), rel=1e-5), m
        expected_total = expected_total + 0.2 * l_proj + 0.1 * l_con
    assert float(total.detach()) == pytest.approx(float(expected_total), rel=1e-5)


def test_collected_representations_are_the_eval_mode_outputs_of_the_given_rows() -> None:
    """End of stage 1: x_m, x_m' and yhat_m' = P^m(x_m') of the rows asked for, in their order, without
    dropout (eval mode), whatever mode the network was left in."""
    from models.inputs import TensorInputs
    from models.stages.pretrain import collect_representations

    torch.manual_seed(0)
    net = MultimodalNet(
        NetSpec(
            {m: ModalitySpec("vector", d, 8) for m, d in (("text", 6), ("audio", 5), ("vision", 4))},
            fusion_dim=6,
            predictor_hidden=5,
            dropout=0.5,
        )
    )
    x = _inputs(12)
    inputs = TensorInputs({m: x[m] for m in ("text", "audio", "vision")}, dict.fromkeys(x, "vector"))
    rows = torch.tensor([7, 2, 11, 0])
    net.train()
    saved = collect_representations(net, inputs, rows, torch.device("cpu"), batch_size=3)
    net.eval()
    with torch.no_grad():
        ref = net({m: v[rows] for m, v in x.items()})
    for m in net.modalities:
        assert torch.allclose(saved.unimodal[m], ref["reps"][m], atol=1e-6), m
        assert torch.allclose(saved.projected[m], ref["proj"][m], atol=1e-6), m
        assert torch.allclose(saved.projected_pred[m], net.heads[m](ref["proj"][m]).squeeze(-1), atol=1e-6), m


def test_stage_1_trains_pretrain_epochs_epochs() -> None:
    """Table 2's pre-training epochs: one reported epoch (1 .. pretrain_epochs) per pass over the rows."""
    from models.inputs import TensorInputs
    from models.stages.common import Reporter
    from models.stages.pretrain import pretrain

    torch.manual_seed(0)
    net = _net()
    x = _inputs(12)
    inputs = TensorInputs(x, dict.fromkeys(x, "vector"))
    events = []
    hp = resolve_hyperparameters({"pretrain_epochs": 3, "batch_size": 4})
    pretrain(
        net,
        inputs,
        torch.linspace(-1, 1, 12),
        torch.arange(12),
        hp,
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
        Reporter({"pretrain": 3}, events.append),
    )
    assert [e.epoch for e in events] == [1, 2, 3]
