"""`mlc`: Meta Label Correction (Zheng, Awadallah, Dumais, AAAI 2021) learns the unimodal labels.

The MUG paper's Table 5 replaces its stage 2 by MLC; this strategy is that comparison. Stage 1 (pre-training
with the contrastive projection module, models.stages.pretrain) runs exactly as for `mug`; MLC then takes
the place of MUG's stage 2, per modality m, on the saved stage-1 tensors:

- noisy data: the unimodal representations x_m with the multimodal label y (y is a noisy unimodal label);
- clean data: the projected multimodal representations x_m' with y (the clean signal MUG uses too);
- label-correction network (LCN): MUCN's shape (models.nets.mucn_forward), y_c = LCN(x_m, y), bounded by rho;
- main network: the unimodal predictor P^m, initialised from the stage-1 network's head (which stage 1
  trained on x_m' -> y), a function of a parameter dict so its SGD step stays differentiable.

Per batch S (MLC's ``step_hmlc_K`` with K = 1, its default ``hmlc_K_mix`` variant):
1. a clean batch C of |S| random training samples is split in halves C1, C2;
2. y_c = LCN_alpha(x_m[S], y[S]); the main loss is the size-weighted mean of MSE(P_w(x_m[S]), y_c) and of
   MSE(P_w(x_m'[C1]), y[C1]) (the clean half that joins training);
3. virtual SGD step w'(alpha) = w - eta * dL/dw, kept in the autograd graph (create_graph=True);
4. the LCN is updated (Adam) with d MSE(P_{w'(alpha)}(x_m'[C2]), y[C2]) / d alpha: the second-order
   meta-gradient through the main network's step, the LCN's ONLY training signal (no direct supervision);
5. the main network takes the real step w <- w - eta * dL/dw (the gradient of step 2, as MLC does).
The labels are the read-out LCN(x_m, y) of every training sample after the last epoch.

Adapted, and why:
- losses are squared errors, not MLC's (soft) cross-entropy: our labels are continuous. L1 (the loss of
  stages 1 and 3) cannot drive MLC: its gradient sign(P_w(x) - y_c) has zero derivative in y_c, so the
  meta-gradient through the virtual step would vanish almost everywhere; MSE's gradient is linear in y_c,
  like soft cross-entropy's in the soft target.
- the main network is a unimodal head on frozen stage-1 representations, not a network trained from raw
  inputs; the LCN sees x_m (L2-normalised when ``mucn_input_norm`` = "l2"), MLC's LCN sees the main
  network's gradient-stopped features: here those are the same frozen x_m.
- the main network's optimiser is plain SGD (MLC: SGD with momentum and weight decay, mirrored in the virtual
  step); without momentum the virtual step and the real step are the same update.
- MLC's K-step look-ahead gradient accumulation (K > 1) is not reproduced (K = 1, MLC's default).
Stage 3 (the multitask network on the learned labels) is the same as for every strategy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn import functional as F

from models.config import Hyperparameters
from models.nets import MUCN, mucn_forward
from models.stages.common import mean_parts
from models.stages.parallel import GeneratorJob, built_with_seed, draw_seed, run_jobs
from models.stages.pretrain import collect_representations, pretrain
from models.strategies.base import FixedLabels, Strategy, StrategyContext

Params = dict[str, Tensor]


def head_forward(params: Params, x: Tensor) -> Tensor:
    """The unimodal predictor P^m (models.nets.mlp_head: Linear -> ReLU -> Linear) as a pure function."""
    h = torch.relu(F.linear(x, params["0.weight"], params["0.bias"]))
    return F.linear(h, params["2.weight"], params["2.bias"]).squeeze(-1)


@dataclass
class MLCBatch:
    """One MLC step's data: noisy (x_m, LCN input, y), clean half joining training, clean half for meta."""

    noisy_x: Tensor
    noisy_lcn_in: Tensor
    noisy_y: Tensor
    clean_x: Tensor
    clean_y: Tensor
    meta_x: Tensor
    meta_y: Tensor


class MLCLearner:
    """MLC's bi-level step for one modality, with main network and LCN as parameter dicts."""

    def __init__(self, rho: float, residual: str, main_lr: float) -> None:
        self.rho = rho
        self.residual = residual
        self.main_lr = main_lr

    def corrected(self, lcn: Params, rep: Tensor, noisy: Tensor) -> Tensor:
        """y_c = LCN(x_m, y) in [-rho, rho]."""
        return mucn_forward(lcn, rep, noisy, self.rho, self.residual)

    def main_loss(self, main: Params, lcn: Params, b: MLCBatch) -> Tensor:
        """Main network loss on the corrected labels (+ the clean half C1), weighted by batch sizes."""
        y_c = self.corrected(lcn, b.noisy_lcn_in, b.noisy_y)
        loss = F.mse_loss(head_forward(main, b.noisy_x), y_c)
        n_s, n_c = len(b.noisy_y), len(b.clean_y)
        if n_c:
            loss_c = F.mse_loss(head_forward(main, b.clean_x), b.clean_y)
            loss = (n_s * loss + n_c * loss_c) / (n_s + n_c)
        return loss

    def meta_loss(self, main: Params, b: MLCBatch) -> Tensor:
        """The main network's loss on clean data C2 (its only link to the LCN is through ``main``)."""
        return F.mse_loss(head_forward(main, b.meta_x), b.meta_y)

    def lookahead(self, main: Params, lcn: Params, b: MLCBatch, create_graph: bool) -> tuple[Params, Tensor]:
        """w' = w - eta * dL_main/dw; with ``create_graph`` w' is a differentiable function of the LCN."""
        w = {k: v.detach().requires_grad_(True) for k, v in main.items()}
        loss = self.main_loss(w, lcn, b)
        grads = torch.autograd.grad(loss, list(w.values()), create_graph=create_graph)
        return {k: w[k] - self.main_lr * g for k, g in zip(w, grads, strict=True)}, loss

    def hypergradient(
        self, main: Params, lcn: Params, b: MLCBatch
    ) -> tuple[Params, Params, dict[str, float]]:
        """d L_meta(w'(alpha)) / d alpha (second order through the virtual step), the main net's real next
        parameters, and the losses."""
        alpha = {k: v.detach().requires_grad_(True) for k, v in lcn.items()}
        adapted, loss = self.lookahead(main, alpha, b, create_graph=True)
        meta = self.meta_loss(adapted, b)
        grads = torch.autograd.grad(meta, list(alpha.values()))
        new_main = {k: v.detach() for k, v in adapted.items()}
        stats = {"L_main": loss.item(), "L_meta": meta.item()}
        return dict(zip(alpha, grads, strict=True)), new_main, stats


@dataclass
class MLCResult:
    labels: Tensor
    history: list[dict[str, float]] = field(default_factory=list)


class MLCDraws:
    """Every random number MLC draws for one modality, in order (see models.stages.parallel): the LCN's
    initial weights, each epoch's batch order S, and each batch's clean sample C."""

    def __init__(self, n: int, hp: Hyperparameters, gen: torch.Generator) -> None:
        self.n = n
        self.hp = hp
        self.gen = gen

    def init_seed(self) -> int:
        return draw_seed(self.gen)

    def epoch(self) -> Iterator[tuple[Tensor, Tensor]]:
        for s in torch.randperm(self.n, generator=self.gen).split(self.hp.batch_size):
            yield s, torch.randperm(self.n, generator=self.gen)[: len(s)]

    def skip(self) -> None:
        """Draw everything ``mlc_learn_labels`` draws, in the same order, and nothing else."""
        self.init_seed()
        for _ in range(self.hp.mlc_epochs):
            for _ in self.epoch():
                pass


def _skip_draws(n: int, hp: Hyperparameters, gen: torch.Generator) -> None:
    MLCDraws(n, hp, gen).skip()


def mlc_learn_labels(
    unimodal: Tensor,
    projected: Tensor,
    head: Params,
    y: Tensor,
    hp: Hyperparameters,
    rho: float,
    gen: torch.Generator,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> MLCResult:
    """MLC for N training samples of one modality: x_m [N, d], x_m' [N, d], the stage-1 head, y [N]."""
    lcn_in = unimodal
    if hp.mucn_input_norm == "l2":
        lcn_in = F.normalize(unimodal, dim=-1)
    n, dim = unimodal.shape
    draws = MLCDraws(n, hp, gen)
    learner = MLCLearner(rho, hp.mucn_residual, hp.mlc_main_lr)
    seed = draws.init_seed()  # the LCN's initial weights come from ``gen`` too
    lcn_module = built_with_seed(seed, lambda: MUCN(dim, hp.mucn_hidden, rho, hp.mucn_residual))
    lcn = dict(lcn_module.mlp.named_parameters())  # updated in place by the meta-optimiser
    meta_opt = torch.optim.Adam(lcn.values(), lr=hp.mlc_meta_lr)
    main = {k: v.detach().clone() for k, v in head.items()}
    result = MLCResult(labels=y.clone())
    for epoch in range(hp.mlc_epochs):
        batch_stats = []
        for s, c in draws.epoch():
            c1, c2 = c[: len(c) // 2], c[len(c) // 2 :]
            if len(c2) == 0:  # a one-sample batch: its clean sample is for the meta loss
                c1, c2 = c2, c1
            batch = MLCBatch(unimodal[s], lcn_in[s], y[s], projected[c1], y[c1], projected[c2], y[c2])
            grads, main, stats = learner.hypergradient(main, lcn, batch)
            meta_opt.zero_grad(set_to_none=True)
            for k, p in lcn.items():
                p.grad = grads[k]
            meta_opt.step()
            batch_stats.append(stats)
        summary = mean_parts(batch_stats)
        result.history.append(summary)
        if on_epoch is not None:
            on_epoch(epoch + 1, summary)
    with torch.no_grad():
        result.labels = learner.corrected({k: p.detach() for k, p in lcn.items()}, lcn_in, y)
    return result


class MLCStrategy(Strategy):
    name = "mlc"
    description = "MLC: stage 1, then meta label correction through a main-network step (Zheng et al.)"
    sections = ("Shared", "Pretrain", "Multitask", "Text", "MLC")
    also_reads = ("mucn_hidden", "mucn_input_norm", "mucn_residual")  # its LCN is MUCN's network

    def plan(self, hp: Hyperparameters) -> dict[str, int]:
        return {"pretrain": hp.pretrain_epochs, "mlc": hp.mlc_epochs * len(hp.modalities)}  # a corrector each

    def label_source(self, ctx: StrategyContext) -> FixedLabels:
        net = ctx.build_net(True).to(ctx.device)
        pretrain(net, ctx.inputs, ctx.y, ctx.train_rows, ctx.hp, ctx.gen, ctx.device, ctx.reporter)
        saved = collect_representations(net, ctx.inputs, ctx.train_rows, ctx.device)
        heads = {
            m: {k: v.detach().cpu().clone() for k, v in net.heads[m].named_parameters()}
            for m in net.modalities
        }
        del net
        y_train = ctx.y[ctx.train_rows]
        hp, rho = ctx.hp, ctx.rho
        jobs = {
            m: GeneratorJob(
                run=functools.partial(
                    mlc_learn_labels, saved.unimodal[m], saved.projected[m], heads[m], y_train, hp, rho
                ),
                skip=functools.partial(_skip_draws, len(y_train), hp),
            )
            for m in saved.unimodal
        }
        results = run_jobs(
            jobs,
            ctx.gen,
            ctx.meta_threads,
            lambda m, epoch, stats: ctx.reporter.modality_epoch("mlc", m, stats, epoch),
        )
        ctx.diagnostics["mlc"] = {
            m: {
                "mean_abs_change": round(float((r.labels - y_train).abs().mean()), 5),
                "final": r.history[-1] if r.history else {},
            }
            for m, r in results.items()
        }
        labels = {m: ctx.on_all_rows(r.labels) for m, r in results.items()}
        return FixedLabels(labels, ctx.train_rows)
