"""Stage 2 at the level of the paper's equations (Eq. 13-23, 28)."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad

from models.config import resolve_hyperparameters
from models.nets import MUCN, l1, mucn_forward
from models.stages.meta import (
    MetaLearner,
    denoising_target,
    lambda_at,
    make_meta_optimizer,
    meta_learn_labels,
    sample_extra,
)


def _tasks(seed: int = 0, d: int = 8):
    g = torch.Generator().manual_seed(seed)
    uni = (torch.randn(16, d, generator=g), torch.randn(16, generator=g) * 2, torch.randn(16, generator=g))
    multi = (torch.randn(48, d, generator=g), torch.randn(48, generator=g) * 2, torch.randn(48, generator=g))
    return uni, multi


@pytest.mark.parametrize("residual", ["atanh", "literal"])
def test_mucn_output_is_bounded_by_rho(residual: str) -> None:
    torch.manual_seed(0)
    for rho in (3.0, 1.0):
        mucn = MUCN(8, 16, rho, residual)
        with torch.no_grad():
            mucn.mlp[4].bias.fill_(50.0)  # a huge correction must still land inside [-rho, rho]
        out = mucn(torch.randn(64, 8) * 10, torch.linspace(-10, 10, 64))
        assert out.abs().max() <= rho + 1e-6
        assert out.min() > -rho - 1e-6


def test_mucn_eq28_residual_forms() -> None:
    mucn = MUCN(4, 8, 3.0, "literal")
    with torch.no_grad():
        for p in mucn.mlp[4].parameters():
            p.zero_()  # y'_mc = 0
    y = torch.tensor([-2.0, -0.5, 0.0, 1.0, 2.5])
    rep = torch.randn(5, 4)
    assert torch.allclose(mucn(rep, y), 3.0 * torch.tanh(y))  # Eq. 28 taken literally
    params = dict(mucn.mlp.named_parameters())
    assert torch.allclose(
        mucn_forward(params, rep, y, 3.0, "atanh"), y, atol=1e-5
    )  # identity at zero correction


def test_lambda_decays_as_lambda_init_power_epoch_plus_one() -> None:
    assert lambda_at(0, 0.9) == pytest.approx(0.9)
    assert lambda_at(4, 0.9) == pytest.approx(0.9**5)
    values = [lambda_at(e, 0.99) for e in range(65)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_denoising_target_switches_at_halfway() -> None:
    y = torch.tensor([1.0, -1.0])
    prev = torch.tensor([3.0, 0.0])
    assert torch.equal(denoising_target(4, 10, y, prev, 0.9), y)  # first half: Eq. 14
    lam = 0.9**6
    expected = lam * prev + (1 - lam) * y  # Eq. 17 with lambda of Eq. 18 at E = 5
    assert torch.allclose(denoising_target(5, 10, y, prev, 0.9), expected)


def test_second_order_meta_gradient_matches_torch_func_and_differs_from_first_order() -> None:
    torch.manual_seed(0)
    mucn = MUCN(8, 16, 3.0, "atanh")
    params = MetaLearner.init_params(mucn)
    uni, multi = _tasks()
    alpha = 0.5  # large enough that the second-order term is visible
    second = MetaLearner(3.0, "atanh", alpha, second_order=True).meta_gradient(params, uni, multi)
    first = MetaLearner(3.0, "atanh", alpha, second_order=False).meta_gradient(params, uni, multi)

    # reference: torch.func.grad of L_post(theta - alpha * grad L_uni(theta)) on the module itself
    def f(p, x, yb):
        return functional_call(
            mucn.mlp, {k: v for k, v in p.items()}, (torch.cat([x, (yb / 3).unsqueeze(-1)], -1),)
        )

    def uni_loss(p):
        corr = f(p, uni[0], uni[1]).squeeze(-1)
        return l1(3 * torch.tanh(torch.atanh((uni[1] / 3).clamp(-0.999, 0.999)) + corr), uni[2])

    def post(p):
        g = grad(uni_loss)(p)
        adapted = {k: p[k] - alpha * g[k] for k in p}
        corr = f(adapted, multi[0], multi[1]).squeeze(-1)
        return l1(3 * torch.tanh(torch.atanh((multi[1] / 3).clamp(-0.999, 0.999)) + corr), multi[2])

    reference = grad(post)(params)
    for k in params:
        assert torch.allclose(second[k], reference[k], atol=1e-5), k
    diff = sum(float((second[k] - first[k]).abs().sum()) for k in params)
    assert diff > 1e-4  # the second-order term is really there


def _copy(params):
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def test_keep_branch_takes_adapted_parameters() -> None:
    """Eq. 22: when L_post < L_pre, theta becomes theta' (the inner step) exactly; no optimiser step."""
    torch.manual_seed(1)
    learner = MetaLearner(3.0, "atanh", 0.05)
    params = MetaLearner.init_params(MUCN(8, 16, 3.0))
    opt = make_meta_optimizer("adamw", params, 1e-3, 0.01)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 8, generator=g)
    y = torch.randn(32, generator=g)
    uni = (x[:16], y[:16], (y[:16] + 1).clamp(-2.9, 2.9))
    multi = (x, y, (y + 1).clamp(-2.9, 2.9))  # the same shift on D: the inner step helps, so it is kept
    adapted, _ = learner.inner_step(_copy(params), uni)
    stats = learner.step(params, opt, uni, multi)
    assert stats["kept"] == 1.0 and stats["L_post"] < stats["L_pre"]
    for k in params:
        assert torch.equal(params[k].detach(), adapted[k].detach())
    assert not opt.state  # no optimiser step was taken


def _meta_update_case():
    torch.manual_seed(2)
    learner = MetaLearner(3.0, "atanh", 0.5)
    params = MetaLearner.init_params(MUCN(8, 16, 3.0))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(16, 8, generator=g)
    y = torch.randn(16, generator=g)
    return learner, params, (x, y, y), (x, y, -y)  # the opposite target on D: the inner step hurts


def test_meta_update_branch_with_sgd_is_eq23_as_written() -> None:
    """Eq. 23 with plain SGD: theta <- theta - alpha' * dL_post(theta'(theta)) / dtheta."""
    learner, params, uni, multi = _meta_update_case()
    before = _copy(params)
    opt = make_meta_optimizer("sgd", params, 1e-2, 0.01)
    stats = learner.step(params, opt, uni, multi)
    assert stats["kept"] == 0.0 and stats["L_post"] >= stats["L_pre"]
    meta = learner.meta_gradient(before, uni, multi)
    for k in params:
        assert torch.allclose(params[k], before[k] - 1e-2 * meta[k])


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_meta_update_branch_is_an_optimiser_step_along_the_meta_gradient(name: str) -> None:
    """The meta-update is the named torch optimiser's step with the second-order meta-gradient (the one that
    equals torch.func's, test above) as the gradient, at lr alpha' and the run's weight decay."""
    learner, params, uni, multi = _meta_update_case()
    before = _copy(params)
    opt = make_meta_optimizer(name, params, 1e-2, 0.01)
    learner.step(params, opt, uni, multi)
    reference = _copy(before)
    ref_opt = {
        "adamw": torch.optim.AdamW(reference.values(), lr=1e-2, weight_decay=0.01),
        "adam": torch.optim.Adam(reference.values(), lr=1e-2),
    }[name]
    meta = learner.meta_gradient(before, uni, multi)
    for k, p in reference.items():
        p.grad = meta[k]
    ref_opt.step()
    for k in params:
        assert torch.allclose(params[k], reference[k]), k
        # Adam's first step moves every weight by about lr, whatever the gradient's scale
        assert not torch.allclose(params[k], before[k] - 1e-2 * meta[k]), k


def test_unknown_meta_optimizer_is_named() -> None:
    with pytest.raises(ValueError, match="meta_optimizer"):
        make_meta_optimizer("rmsprop", {}, 1e-3, 0.0)


def test_extra_samples_exclude_the_batch_and_have_size_b_times_s() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.tensor([0, 5, 9])
    extra = sample_extra(100, s, 30, g)
    assert len(extra) == 30 and len(set(extra.tolist())) == 30
    assert not set(extra.tolist()) & set(s.tolist())
    assert len(sample_extra(10, s, 30, g)) == 7  # fewer remain: all of them


def test_meta_learning_is_deterministic_and_counts_branches() -> None:
    hp = resolve_hyperparameters({"meta_epochs": 4, "mucn_hidden": 16}, rho=3.0)
    g = torch.Generator().manual_seed(0)
    x, xp = torch.randn(80, 8, generator=g), torch.randn(80, 8, generator=g)
    yp, y = torch.randn(80, generator=g), torch.randn(80, generator=g).clamp(-3, 3)
    a = meta_learn_labels(x, xp, yp, y, hp, 3.0, torch.Generator().manual_seed(7))
    b = meta_learn_labels(x, xp, yp, y, hp, 3.0, torch.Generator().manual_seed(7))
    assert torch.equal(a.labels, b.labels)
    assert a.kept + a.meta_updates == 4 * 3  # 80 samples / batch 32 -> 3 batches per epoch
    assert a.labels.abs().max() <= 3.0
    assert len(a.history) == 4 and a.history[-1]["lambda"] > 0  # second half uses Eq. 16-18


def _planted(n: int = 192, d: int = 8, seed: int = 0):
    """x_m carries a label of its own (t) that differs from y; x_m' (projected) carries y."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.randn(n, generator=g) * 1.2).clamp(-3, 3)
    t = (0.6 * y + 0.8 * torch.randn(n, generator=g)).clamp(-3, 3)
    x = torch.cat([t.unsqueeze(1), torch.randn(n, d - 1, generator=g) * 0.3], 1)
    xp = torch.cat([y.unsqueeze(1), torch.randn(n, d - 1, generator=g) * 0.3], 1)
    yp = y + 0.3 * torch.randn(n, generator=g)
    return x, xp, yp, y


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_diagnostics_say_whether_mucn_learned(optimizer: str) -> None:
    """The multimodal denoising loss over all samples, at the start and end of stage 2, against the noisy
    input's own error; an optimiser meta-update (the paper's AdamW) learns, plain SGD at alpha' hardly."""
    hp = resolve_hyperparameters(
        {"meta_epochs": 40, "mucn_input_norm": "none", "meta_optimizer": optimizer}, rho=3.0
    )
    x, xp, yp, y = _planted()
    result = meta_learn_labels(x, xp, yp, y, hp, 3.0, torch.Generator().manual_seed(0))
    d = result.diagnostics
    assert set(d) == {
        "L_pre_all_start",
        "L_pre_all_end",
        "noisy_input_mae",
        "label_shift_mae",
        "shift_corr_untrained",
    }
    assert d["L_pre_all_start"] == pytest.approx(d["noisy_input_mae"], abs=0.1)  # atanh residual: identity
    assert [h["L_pre_all"] for h in result.history][-1] == d["L_pre_all_end"]
    assert d["label_shift_mae"] == pytest.approx(float((result.labels - y).abs().mean()), abs=1e-5)
    if optimizer == "adamw":
        assert d["L_pre_all_end"] < 0.6 * d["noisy_input_mae"]  # learned to denoise
        assert d["shift_corr_untrained"] < 0.5  # the labels are not the initialisation's
    else:
        assert d["L_pre_all_end"] > 0.85 * d["L_pre_all_start"]  # Eq. 23 as plain SGD at 1e-3: stuck


def test_meta_learning_reads_no_extra_random_numbers_for_its_diagnostics() -> None:
    """The probe's noise has its own generator: stage 2's generator ends where MetaDraws.skip leaves it."""
    from models.stages.meta import MetaDraws

    hp = resolve_hyperparameters({"meta_epochs": 3, "mucn_hidden": 8}, rho=3.0)
    x, xp, yp, y = _planted(n=70)
    gen = torch.Generator().manual_seed(5)
    meta_learn_labels(x, xp, yp, y, hp, 3.0, gen)
    skipped = torch.Generator().manual_seed(5)
    MetaDraws(70, hp, hp.noise_std(3.0), skipped).skip()
    assert torch.equal(gen.get_state(), skipped.get_state())


def test_second_half_of_an_odd_number_of_meta_epochs_starts_at_e_equal_to_half_rounded_down() -> None:
    """65 meta epochs (MOSI): E = 32 is the first epoch of Eq. 16-17, lambda = 0.9^33 (docs/method.md)."""
    y, prev = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5])
    assert torch.equal(denoising_target(31, 65, y, prev, 0.9), y)
    lam = 0.9**33
    assert torch.allclose(denoising_target(32, 65, y, prev, 0.9), lam * prev + (1 - lam) * y)


def test_each_batch_draws_d_as_s_then_b_times_s_other_samples_with_noise_of_the_set_std() -> None:
    """D = S u S' with |S'| = b|S| samples outside S (Sec. 3.3.3); eps (Eq. 13) and eps' (Eq. 21) have the
    noise std asked for."""
    from models.stages.meta import MetaDraws

    hp = resolve_hyperparameters({"batch_size": 20, "meta_extra_ratio": 3}, rho=3.0)
    batches = list(MetaDraws(400, hp, 0.5, torch.Generator().manual_seed(0)).epoch())
    assert sorted(torch.cat([b.s for b in batches]).tolist()) == list(range(400))  # every sample once
    for b in batches:
        assert torch.equal(b.d[: len(b.s)], b.s) and len(b.d) == 4 * len(b.s)
        extra = b.d[len(b.s) :].tolist()
        assert len(set(extra)) == len(extra) and not set(extra) & set(b.s.tolist())
        assert len(b.eps) == len(b.s) and len(b.eps_d) == len(b.d)
    eps = torch.cat([b.eps for b in batches])
    eps_d = torch.cat([b.eps_d for b in batches])
    assert float(eps.std()) == pytest.approx(0.5, abs=0.06)  # 400 draws
    assert float(eps_d.std()) == pytest.approx(0.5, abs=0.03)  # 1600 draws


def _eq28(mucn: MUCN, p, rep, noisy, rho: float = 3.0):
    corr = functional_call(mucn.mlp, p, (torch.cat([rep, (noisy / rho).unsqueeze(-1)], -1),)).squeeze(-1)
    return rho * torch.tanh(torch.atanh((noisy / rho).clamp(-0.999, 0.999)) + corr)


def test_two_meta_epochs_follow_eq13_to_23_written_out() -> None:
    """meta_learn_labels against the equations written out here with torch.func, on the same random draws:
    per batch, the inner step on S with alpha (meta_lr) on x_m and y + eps (Eq. 13-15), the multimodal task
    on D with x_m', yhat_m' + eps' and target y (Eq. 19-21), then Eq. 22 or Eq. 23 as plain SGD at alpha'
    (meta_test_lr). Epoch E = 1 is the second half: target lambda_init^2 * (epoch 0's labels) + (1 - ...) * y
    (Eq. 16-18). Labels: MUCN(x_m, y) on L2-normalised x_m."""
    from models.stages.meta import MetaDraws
    from models.stages.parallel import built_with_seed

    n, d, alpha, alpha2, lam_init = 40, 6, 0.3, 0.05, 0.95  # lambda = 0.9025 at E = 1
    over = {"meta_epochs": 2, "batch_size": 16, "mucn_hidden": 8, "meta_extra_ratio": 1}
    over.update(label_noise_std=0.5)
    over.update(meta_optimizer="sgd", meta_lr=alpha, meta_test_lr=alpha2, lambda_init=lam_init)
    hp = resolve_hyperparameters(over, rho=3.0)
    g = torch.Generator().manual_seed(0)
    x, xp = torch.randn(n, d, generator=g) * 2, torch.randn(n, d, generator=g)
    yp, y = torch.randn(n, generator=g), (torch.randn(n, generator=g) * 1.5).clamp(-2.9, 2.9)
    result = meta_learn_labels(x, xp, yp, y, hp, 3.0, torch.Generator().manual_seed(9))

    draws = MetaDraws(n, hp, 0.5, torch.Generator().manual_seed(9))  # the same draws (tested above)
    mucn = built_with_seed(draws.init_seed(), lambda: MUCN(d, 8, 3.0))
    theta = {k: v.detach().clone() for k, v in mucn.mlp.named_parameters()}
    xn, xpn = x / x.norm(dim=1, keepdim=True), xp / xp.norm(dim=1, keepdim=True)

    def loss(p, task):
        rep, noisy, target = task
        return (_eq28(mucn, p, rep, noisy) - target).abs().mean()

    labels, kept = None, 0
    for epoch in range(2):
        target = y if epoch == 0 else lam_init**2 * labels + (1 - lam_init**2) * y
        for b in draws.epoch():
            uni = (xn[b.s], y[b.s] + b.eps, target[b.s])
            multi = (xpn[b.d], yp[b.d] + b.eps_d, y[b.d])

            def adapted(p, uni=uni):
                g_uni = grad(loss)(p, uni)
                return {k: p[k] - alpha * g_uni[k] for k in p}

            if loss(adapted(theta), multi) < loss(theta, multi):
                theta, kept = adapted(theta), kept + 1
            else:
                g_post = grad(lambda p, multi=multi: loss(adapted(p), multi))(theta)
                theta = {k: theta[k] - alpha2 * g_post[k] for k in theta}
        labels = _eq28(mucn, theta, xn, y).detach()
    assert result.kept == kept and result.meta_updates == 6 - kept
    assert torch.allclose(result.labels, labels, atol=1e-5)
