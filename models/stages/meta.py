"""Stage 2 (Sec. 3.3): meta-learn one MUCN per modality on the saved stage-1 representations.

Per batch S of training samples (no encoder forward passes; only saved tensors):
1. unimodal denoising task (Eq. 13-15): y_mc = MUCN(x_m, y + eps), loss |t - y_mc| with t = y, or after half
   of the meta epochs t = y_mi = lambda * y_mc(previous epoch) + (1 - lambda) * y, lambda = lambda_init^(E+1)
   (Eq. 16-18); one gradient step theta' = theta - alpha * grad (Eq. 15).
2. multimodal denoising task (Eq. 19-21) on D = S u S', |S'| = b|S| further random training samples:
   ybar = yhat_m' + eps', L = mean |y - MUCN(x_m', ybar)|, before (theta) and after (theta') the step.
3. L_post < L_pre: keep theta' (Eq. 22). Otherwise discard theta' and meta-update
   theta <- theta - alpha' * d L_post(theta'(theta)) / d theta, differentiating through the inner step
   (Eq. 23, second order).

The paper used learn2learn's MAML wrapper for this; it does not build on Python 3.11 and drags in gym and
torchvision. Here MUCN is a pure function of a parameter dict (models.nets.mucn_forward, the functional
form torch.func.functional_call gives a module), so theta' = theta - alpha * g(theta) is an ordinary
differentiable expression and the meta-gradient is one more autograd call through it. tests/test_meta.py
checks the result against torch.func.grad of the composed function and against a first-order update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from models.nets import MUCN, l1, mucn_forward

Params = dict[str, Tensor]
Task = tuple[Tensor, Tensor, Tensor]  # (representations, noisy labels, targets)


@dataclass
class MetaResult:
    labels: Tensor  # learned unimodal labels of the training samples (clean read-out, see below)
    kept: int = 0  # batches where theta' was kept (Eq. 22)
    meta_updates: int = 0  # batches where the meta-update ran (Eq. 23)
    history: list[dict[str, float]] = field(default_factory=list)


def lambda_at(epoch: int, lambda_init: float) -> float:
    """Eq. 18: lambda = lambda_init^(E+1), E the 0-based meta epoch."""
    return lambda_init ** (epoch + 1)


def denoising_target(
    epoch: int, meta_epochs: int, y: Tensor, previous: Tensor | None, lambda_init: float
) -> Tensor:
    """Target of the unimodal denoising task: y before the halfway point (Eq. 14), y_mi after (Eq. 16-17)."""
    if epoch < meta_epochs // 2 or previous is None:
        return y
    lam = lambda_at(epoch, lambda_init)
    return lam * previous + (1.0 - lam) * y


class MetaLearner:
    """The bi-level optimisation of one MUCN, as pure functions of a parameter dict."""

    def __init__(
        self, rho: float, residual: str, alpha: float, alpha_meta: float, second_order: bool = True
    ) -> None:
        self.rho = rho
        self.residual = residual
        self.alpha = alpha
        self.alpha_meta = alpha_meta
        self.second_order = second_order

    @staticmethod
    def init_params(mucn: MUCN) -> Params:
        return {k: v.detach().clone() for k, v in mucn.mlp.named_parameters()}

    def correct(self, params: Params, rep: Tensor, noisy: Tensor) -> Tensor:
        """Eq. 13 / 19 / 28."""
        return mucn_forward(params, rep, noisy, self.rho, self.residual)

    def task_loss(self, params: Params, task: Task) -> Tensor:
        """Mean |target - MUCN(rep, noisy)|: Eq. 14/16 on S, Eq. 20 on D."""
        rep, noisy, target = task
        return l1(self.correct(params, rep, noisy), target)

    def inner_step(self, params: Params, uni: Task, create_graph: bool = False) -> tuple[Params, Tensor]:
        """Eq. 15: theta' = theta - alpha * mean gradient of the unimodal denoising loss over S."""
        leaves = {k: v if v.requires_grad else v.detach().requires_grad_(True) for k, v in params.items()}
        loss = self.task_loss(leaves, uni)
        grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=create_graph)
        adapted = {k: leaves[k] - self.alpha * g for k, g in zip(leaves, grads, strict=True)}
        return adapted, loss.detach()

    def post_loss(self, params: Params, uni: Task, multi: Task) -> Tensor:
        """L_post(theta'(theta)) as a differentiable function of the ORIGINAL theta (Eq. 23's objective)."""
        adapted, _ = self.inner_step(params, uni, create_graph=True)
        return self.task_loss(adapted, multi)

    def meta_gradient(self, params: Params, uni: Task, multi: Task) -> Params:
        """d L_post / d theta: second order through the inner step, or first order (FOMAML) as an ablation."""
        if self.second_order:
            leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
            grads = torch.autograd.grad(self.post_loss(leaves, uni, multi), list(leaves.values()))
            return dict(zip(leaves, grads, strict=True))
        adapted, _ = self.inner_step(params, uni)
        leaves = {k: v.detach().requires_grad_(True) for k, v in adapted.items()}
        grads = torch.autograd.grad(self.task_loss(leaves, multi), list(leaves.values()))
        return dict(zip(leaves, grads, strict=True))

    def step(self, params: Params, uni: Task, multi: Task | None) -> tuple[Params, dict[str, float]]:
        """One batch: inner step, then keep (Eq. 22) or meta-update (Eq. 23). Returns new params and stats."""
        adapted, loss_uni = self.inner_step(params, uni)
        adapted = {k: v.detach() for k, v in adapted.items()}
        stats = {"L_uni": float(loss_uni)}
        if multi is None:  # ablation "W/O multimodal denoising task": plain meta-training
            return adapted, stats
        with torch.no_grad():
            pre = float(self.task_loss(params, multi))
            post = float(self.task_loss(adapted, multi))
        stats.update({"L_pre": pre, "L_post": post})
        if post < pre:
            stats["kept"] = 1.0
            return adapted, stats
        meta = self.meta_gradient(params, uni, multi)
        stats["kept"] = 0.0
        return {k: (params[k] - self.alpha_meta * meta[k]).detach() for k in params}, stats


def sample_extra(n: int, batch: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """S': k random training positions outside S (all of them when fewer remain)."""
    mask = torch.ones(n, dtype=torch.bool)
    mask[batch] = False
    rest = torch.nonzero(mask).squeeze(1)
    return rest[torch.randperm(len(rest), generator=gen)[: min(k, len(rest))]]


@torch.no_grad()
def read_out(
    learner: MetaLearner,
    params: Params,
    unimodal: Tensor,
    y: Tensor,
    noise_std: float,
    hp: dict,
    gen: torch.Generator,
) -> Tensor:
    """The corrected labels y_mc of every training sample (choice, docs/method.md).

    "noisy_mean": the mean over ``readout_draws`` draws of MUCN(x_m, y + eps), i.e. Eq. 13 as written (the
    corrected label is defined for a corrupted input) with the noise averaged out; "clean": MUCN(x_m, y).
    """
    if hp["label_readout"] == "clean":
        return learner.correct(params, unimodal, y)
    draws = hp["readout_draws"]
    noisy = y.unsqueeze(0) + torch.randn(draws, len(y), generator=gen) * noise_std
    reps = unimodal.unsqueeze(0).expand(draws, *unimodal.shape)
    return learner.correct(params, reps, noisy).mean(0)


def meta_learn_labels(
    unimodal: Tensor,
    projected: Tensor,
    projected_pred: Tensor,
    y: Tensor,
    hp: dict,
    rho: float,
    gen: torch.Generator,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> MetaResult:
    """Learn unimodal labels for N training samples of one modality.

    ``unimodal`` x_m [N, d], ``projected`` x_m' [N, d], ``projected_pred`` yhat_m' [N],
    ``y`` multimodal labels [N].
    The labels are read out after every epoch (``read_out``; the "previous epoch" y_mc of Eq. 17) and the
    read-out after the last epoch is the result.
    """
    if hp["mucn_input_norm"] == "l2":
        unimodal = torch.nn.functional.normalize(unimodal, dim=-1)
        projected = torch.nn.functional.normalize(projected, dim=-1)
    n, dim = unimodal.shape
    noise_std = float(hp["label_noise_std"] if hp["label_noise_std"] is not None else rho / 3.0)
    learner = MetaLearner(rho, hp["mucn_residual"], hp["meta_lr"], hp["meta_test_lr"], hp["second_order"])
    with torch.random.fork_rng(devices=[]):  # MUCN's initial weights come from ``gen`` too
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        params = learner.init_params(MUCN(dim, hp["mucn_hidden"], rho, hp["mucn_residual"]))
    previous: Tensor | None = None
    result = MetaResult(labels=y.clone())
    epochs = hp["meta_epochs"]
    for epoch in range(epochs):
        target = denoising_target(epoch, epochs, y, previous, hp["lambda_init"])
        sums: dict[str, float] = {}
        count = 0
        for s in torch.randperm(n, generator=gen).split(hp["batch_size"]):
            eps = torch.randn(len(s), generator=gen) * noise_std
            uni = (unimodal[s], y[s] + eps, target[s])  # Eq. 13
            multi = None
            if hp["multimodal_denoising"]:
                d = torch.cat([s, sample_extra(n, s, hp["meta_extra_ratio"] * len(s), gen)])  # D = S u S'
                eps_d = torch.randn(len(d), generator=gen) * noise_std
                multi = (projected[d], projected_pred[d] + eps_d, y[d])  # Eq. 19, 21
            params, stats = learner.step(params, uni, multi)
            count += 1
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            if multi is not None:
                result.kept += int(stats["kept"])
                result.meta_updates += 1 - int(stats["kept"])
        previous = read_out(learner, params, unimodal, y, noise_std, hp, gen)
        summary = {k: round(v / max(count, 1), 5) for k, v in sums.items()}
        if "kept" in summary:
            summary["kept_share"] = summary.pop("kept")
        summary["lambda"] = round(lambda_at(epoch, hp["lambda_init"]), 5) if epoch >= epochs // 2 else 0.0
        result.history.append(summary)
        if on_epoch is not None:
            on_epoch(epoch + 1, summary)
    if previous is not None:
        result.labels = previous
    return result
