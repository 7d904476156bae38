"""Stage 2 (Sec. 3.3): meta-learn one MUCN per modality on the saved stage-1 representations.

Per batch S of training samples (no encoder forward passes; only saved tensors):
1. unimodal denoising task (Eq. 13-15): y_mc = MUCN(x_m, y + eps), loss |t - y_mc| with t = y, or after half
   of the meta epochs t = y_mi = lambda * y_mc(previous epoch) + (1 - lambda) * y, lambda = lambda_init^(E+1)
   (Eq. 16-18); one gradient step theta' = theta - alpha * grad (Eq. 15).
2. multimodal denoising task (Eq. 19-21) on D = S u S', |S'| = b|S| further random training samples:
   ybar = yhat_m' + eps', L = mean |y - MUCN(x_m', ybar)|, before (theta) and after (theta') the step.
3. L_post < L_pre: keep theta' (Eq. 22). Otherwise discard theta' and meta-update theta with the gradient
   d L_post(theta'(theta)) / d theta, differentiating through the inner step (Eq. 23, second order). The
   meta-update is an optimiser step at learning rate alpha' (``meta_optimizer``, default AdamW): the paper
   trains with AdamW and learn2learn, whose outer update is a torch optimiser; Eq. 23's plain SGD reading
   (``meta_optimizer=sgd``, kept for the ablation) barely moves MUCN at alpha' = 1e-3 (docs/method.md).

The paper used learn2learn's MAML wrapper for this; it does not build on Python 3.11 and drags in gym and
torchvision. Here MUCN is a pure function of a parameter dict (models.nets.mucn_forward, the functional
form torch.func.functional_call gives a module), so theta' = theta - alpha * g(theta) is an ordinary
differentiable expression and the meta-gradient is one more autograd call through it. tests/test_meta.py
checks the result against torch.func.grad of the composed function and against a first-order update.

The modalities' MUCNs are independent; meta_learn_modalities runs them side by side in threads and gets, bit
for bit, the result of running them one after another (MetaDraws; docs/method.md, "Stage 2 on several cores").
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from models.config import Hyperparameters
from models.nets import MUCN, l1, mucn_forward
from models.stages.common import mean_parts
from models.stages.parallel import GeneratorJob, built_with_seed, draw_seed, run_jobs

Params = dict[str, Tensor]
Task = tuple[Tensor, Tensor, Tensor]  # (representations, noisy labels, targets)


@dataclass
class MetaResult:
    labels: Tensor  # learned unimodal labels of the training samples (clean read-out, see below)
    kept: int = 0  # batches where theta' was kept (Eq. 22)
    meta_updates: int = 0  # batches where the meta-update ran (Eq. 23)
    history: list[dict[str, float]] = field(default_factory=list)
    diagnostics: dict[str, float] = field(default_factory=dict)  # mucn_diagnostics


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


META_OPTIMIZERS = ("adamw", "adam", "sgd")


def make_meta_optimizer(name: str, params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser of Eq. 23's meta-update over MUCN's parameter tensors (updated in place)."""
    leaves = list(params.values())
    if name == "adamw":
        return torch.optim.AdamW(leaves, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(leaves, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(leaves, lr=lr)
    raise ValueError(f"meta_optimizer: must be one of {', '.join(META_OPTIMIZERS)}, got {name!r}")


class MetaLearner:
    """The bi-level optimisation of one MUCN: MUCN as a pure function of a parameter dict, so the inner step
    is a differentiable expression of the original parameters."""

    def __init__(self, rho: float, residual: str, alpha: float, second_order: bool = True) -> None:
        self.rho = rho
        self.residual = residual
        self.alpha = alpha  # the inner step; the meta-update's alpha' is the meta-optimiser's learning rate
        self.second_order = second_order

    @staticmethod
    def init_params(mucn: MUCN) -> Params:
        """MUCN's parameters as leaf tensors that the meta-optimiser updates in place."""
        return {k: v.detach().clone().requires_grad_(True) for k, v in mucn.mlp.named_parameters()}

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
            loss = self.post_loss(leaves, uni, multi)
        else:
            adapted, _ = self.inner_step(params, uni)
            leaves = {k: v.detach().requires_grad_(True) for k, v in adapted.items()}
            loss = self.task_loss(leaves, multi)
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))

    def step(
        self, params: Params, opt: torch.optim.Optimizer, uni: Task, multi: Task | None
    ) -> dict[str, float]:
        """One batch, updating ``params`` in place: the inner step, then keep theta' (Eq. 22) or discard it
        and take one ``opt`` step along the meta-gradient (Eq. 23). Returns the batch's losses."""
        adapted, loss_uni = self.inner_step(params, uni)
        stats = {"L_uni": float(loss_uni)}
        if multi is not None:  # (None: the ablation "W/O multimodal denoising task", plain meta-training)
            with torch.no_grad():
                pre = float(self.task_loss(params, multi))
                post = float(self.task_loss(adapted, multi))
            stats.update({"L_pre": pre, "L_post": post, "kept": float(post < pre)})
            if post >= pre:
                meta = self.meta_gradient(params, uni, multi)
                for k, p in params.items():
                    p.grad = meta[k]
                opt.step()
                return stats
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(adapted[k])
        return stats


def sample_extra(n: int, batch: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """S': k random training positions outside S (all of them when fewer remain)."""
    mask = torch.ones(n, dtype=torch.bool)
    mask[batch] = False
    rest = torch.nonzero(mask).squeeze(1)
    return rest[torch.randperm(len(rest), generator=gen)[: min(k, len(rest))]]


@dataclass
class BatchDraws:
    s: Tensor  # positions of the batch S
    eps: Tensor  # label noise of the unimodal task on S (Eq. 13)
    d: Tensor | None  # positions of D = S u S' (None without the multimodal task)
    eps_d: Tensor | None  # label noise of the multimodal task on D (Eq. 19)


class MetaDraws:
    """Every random number stage 2 draws for one modality, from one generator, in the order it draws them.

    None of them depends on the data, only on N, the hyperparameters and the generator. ``skip`` draws them
    all without computing anything, which tells where the next modality's draws start; that is what lets the
    modalities run side by side (``meta_learn_modalities``) and still give, bit for bit, the labels (and the
    final generator state) of running them one after another.
    """

    def __init__(self, n: int, hp: Hyperparameters, noise_std: float, gen: torch.Generator) -> None:
        self.n = n
        self.hp = hp
        self.noise_std = noise_std
        self.gen = gen

    def init_seed(self) -> int:
        return draw_seed(self.gen)

    def epoch(self) -> Iterator[BatchDraws]:
        hp, gen = self.hp, self.gen
        for s in torch.randperm(self.n, generator=gen).split(hp.batch_size):
            eps = torch.randn(len(s), generator=gen) * self.noise_std
            if not hp.multimodal_denoising:
                yield BatchDraws(s, eps, None, None)
                continue
            d = torch.cat([s, sample_extra(self.n, s, hp.meta_extra_ratio * len(s), gen)])  # D = S u S'
            yield BatchDraws(s, eps, d, torch.randn(len(d), generator=gen) * self.noise_std)

    def readout_noise(self) -> Tensor | None:
        """The noise of ``read_out``'s "noisy_mean" draws (none for the "clean" read-out)."""
        if self.hp.label_readout == "clean":
            return None
        return torch.randn(self.hp.readout_draws, self.n, generator=self.gen) * self.noise_std

    def skip(self) -> None:
        """Draw everything ``meta_learn_labels`` draws, in the same order, and nothing else."""
        self.init_seed()
        for _ in range(self.hp.meta_epochs):
            for _ in self.epoch():
                pass
            self.readout_noise()


@torch.no_grad()
def read_out(
    learner: MetaLearner, params: Params, unimodal: Tensor, y: Tensor, noise: Tensor | None
) -> Tensor:
    """The corrected labels y_mc of every training sample (choice, docs/method.md).

    "clean" read-out (``noise`` None): MUCN(x_m, y). "noisy_mean" (``noise`` [draws, N]): the mean over the
    draws of MUCN(x_m, y + eps), i.e. Eq. 13 as written (the corrected label is defined for a corrupted input)
    with the noise averaged out.
    """
    if noise is None:
        return learner.correct(params, unimodal, y)
    reps = unimodal.unsqueeze(0).expand(len(noise), *unimodal.shape)
    return learner.correct(params, reps, y.unsqueeze(0) + noise).mean(0)


def meta_learn_labels(
    unimodal: Tensor,
    projected: Tensor,
    projected_pred: Tensor,
    y: Tensor,
    hp: Hyperparameters,
    rho: float,
    gen: torch.Generator,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> MetaResult:
    """Learn unimodal labels for N training samples of one modality.

    ``unimodal`` x_m [N, d], ``projected`` x_m' [N, d], ``projected_pred`` yhat_m' [N],
    ``y`` multimodal labels [N].
    The labels are read out after every epoch (``read_out``; the "previous epoch" y_mc of Eq. 17) and the
    read-out after the last epoch is the result. ``MetaResult.diagnostics`` says whether MUCN learned
    (``mucn_diagnostics``); each epoch's history carries ``L_pre_all``, the multimodal denoising loss over all
    N samples.
    """
    if hp.mucn_input_norm == "l2":
        unimodal = torch.nn.functional.normalize(unimodal, dim=-1)
        projected = torch.nn.functional.normalize(projected, dim=-1)
    n, dim = unimodal.shape
    std = hp.noise_std(rho)
    draws = MetaDraws(n, hp, std, gen)
    learner = MetaLearner(rho, hp.mucn_residual, hp.meta_lr, hp.second_order)
    mucn = built_with_seed(draws.init_seed(), lambda: MUCN(dim, hp.mucn_hidden, rho, hp.mucn_residual))
    params = learner.init_params(mucn)
    opt = make_meta_optimizer(hp.meta_optimizer, params, hp.meta_test_lr, hp.weight_decay)
    probe = DenoisingProbe(projected, projected_pred, y, std)
    untrained = read_out(learner, params, unimodal, y, None)
    start_loss = probe.loss(learner, params)
    previous: Tensor | None = None
    result = MetaResult(labels=y.clone())
    epochs = hp.meta_epochs
    for epoch in range(epochs):
        target = denoising_target(epoch, epochs, y, previous, hp.lambda_init)
        batch_stats = []
        for b in draws.epoch():
            uni = (unimodal[b.s], y[b.s] + b.eps, target[b.s])  # Eq. 13
            multi = None
            if b.d is not None and b.eps_d is not None:
                multi = (projected[b.d], projected_pred[b.d] + b.eps_d, y[b.d])  # Eq. 19, 21
            stats = learner.step(params, opt, uni, multi)
            batch_stats.append(stats)
            if multi is not None:
                result.kept += int(stats["kept"])
                result.meta_updates += 1 - int(stats["kept"])
        previous = read_out(learner, params, unimodal, y, draws.readout_noise())
        summary = mean_parts(batch_stats)
        if "kept" in summary:
            summary["kept_share"] = summary.pop("kept")
        summary["L_pre_all"] = round(probe.loss(learner, params), 5)
        summary["lambda"] = round(lambda_at(epoch, hp.lambda_init), 5) if epoch >= epochs // 2 else 0.0
        result.history.append(summary)
        if on_epoch is not None:
            on_epoch(epoch + 1, summary)
    if previous is not None:
        result.labels = previous
    result.diagnostics = mucn_diagnostics(
        result.labels, untrained, y, start_loss, probe.loss(learner, params), probe.noisy_input_loss
    )
    return result


class DenoisingProbe:
    """The multimodal denoising task (Eq. 19-21) over ALL training samples with one fixed noise draw, to see
    whether MUCN learns: its loss L_pre_all before, during and after stage 2 on the same inputs.

    The noise comes from its own generator (seed 0), so probing draws nothing from stage 2's generator."""

    def __init__(self, projected: Tensor, projected_pred: Tensor, y: Tensor, std: float) -> None:
        noise = torch.randn(len(y), generator=torch.Generator().manual_seed(0)) * std
        self.task: Task = (projected, projected_pred + noise, y)
        self.noisy_input_loss = float(l1(projected_pred + noise, y))  # |ybar - y|: what MUCN starts from

    @torch.no_grad()
    def loss(self, learner: MetaLearner, params: Params) -> float:
        return float(learner.task_loss(params, self.task))


def mucn_diagnostics(
    labels: Tensor, untrained: Tensor, y: Tensor, start: float, end: float, noisy_input: float
) -> dict[str, float]:
    """Did MUCN learn? Its multimodal denoising loss over all training samples at the start and end of stage 2
    (against |ybar - y| of its noisy input), the mean |label - y|, and the correlation of the label shift
    (label - y) with the shift the untrained MUCN already gives: near 1 means the labels are the
    initialisation's, not learned."""
    shift, shift0 = labels - y, untrained - y
    return {
        "L_pre_all_start": round(start, 5),
        "L_pre_all_end": round(end, 5),
        "noisy_input_mae": round(noisy_input, 5),
        "label_shift_mae": round(float(shift.abs().mean()), 5),
        "shift_corr_untrained": round(_pearson(shift, shift0), 5),
    }


def _pearson(a: Tensor, b: Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float("nan")


@dataclass
class SavedModality:
    """What stage 1 saved for one modality's training samples: x_m, x_m' and yhat_m'."""

    unimodal: Tensor
    projected: Tensor
    projected_pred: Tensor


def _skip_draws(n: int, hp: Hyperparameters, std: float, gen: torch.Generator) -> None:
    MetaDraws(n, hp, std, gen).skip()


def meta_learn_modalities(
    saved: dict[str, SavedModality],
    y: Tensor,
    hp: Hyperparameters,
    rho: float,
    gen: torch.Generator,
    threads: int = 1,
    on_epoch: Callable[[str, int, dict[str, float]], None] | None = None,
) -> dict[str, MetaResult]:
    """``meta_learn_labels`` for every modality, in ``saved``'s order, up to ``threads`` of them side by side
    (models.stages.parallel.run_jobs): the same result, and the same final state of ``gen``, for every
    ``threads``. ``on_epoch(modality, epoch, stats)`` is called under a lock; an error in one modality (or a
    Cancelled from ``on_epoch``) stops the others at their next epoch and is raised."""
    std = hp.noise_std(rho)
    jobs = {
        m: GeneratorJob(
            run=functools.partial(meta_learn_labels, s.unimodal, s.projected, s.projected_pred, y, hp, rho),
            skip=functools.partial(_skip_draws, len(s.unimodal), hp, std),
        )
        for m, s in saved.items()
    }
    return run_jobs(jobs, gen, threads, on_epoch)
