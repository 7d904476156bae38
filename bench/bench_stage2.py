"""Stage 2 speed: our functional MetaLearner against a naive loop that copies MUCN's parameters per batch.

Both run the same algorithm (Eq. 13-23, second order) on the same saved representations: the real stage-1
outputs of CMU-MOSI (pre-trained here with the default schedule) or random ones with --random. Also times one
inner step and one meta-gradient with autograd vs torch.func.grad, and ours with the modalities side by side
(models.stages.meta.meta_learn_modalities, the pipeline's default).

    python bench/bench_stage2.py [--threads 1] [--epochs 5] [--random] [--meta-threads N]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch.func import functional_call, grad, grad_and_value

from models.config import resolve_hyperparameters
from models.nets import MUCN, l1
from models.stages.common import resolve_meta_threads
from models.stages.meta import (
    MetaLearner,
    SavedModality,
    meta_learn_labels,
    meta_learn_modalities,
    sample_extra,
)

MOSI = Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi"


def saved_representations(random: bool, threads: int) -> tuple[dict, torch.Tensor]:
    if random:
        g = torch.Generator().manual_seed(0)
        n = 1166
        dims = {"text": 64, "audio": 256, "vision": 64}
        reps = {
            m: (
                torch.relu(torch.randn(n, d, generator=g)),
                torch.relu(torch.randn(n, d, generator=g)),
                torch.randn(n, generator=g),
            )
            for m, d in dims.items()
        }
        return reps, torch.randn(n, generator=g).clamp(-3, 3)
    from models.dataset_loader import load_dataset
    from models.inputs import build_inputs, modality_specs
    from models.nets import MultimodalNet
    from models.pipeline import net_spec
    from models.stages.common import Reporter, seed_everything
    from models.stages.pretrain import collect_representations, pretrain

    ds = load_dataset(MOSI)
    hp = resolve_hyperparameters(None, rho=ds.rho)
    specs = modality_specs(ds, "features", {"text": 64, "audio": 256, "vision": 64}, None)
    inputs = build_inputs(ds, specs, "features")
    gen = seed_everything(1111)
    net = MultimodalNet(net_spec(specs, hp, True, None))
    y = torch.from_numpy(ds.label.astype("float32"))
    rows = torch.from_numpy(ds.labeled("train"))
    pretrain(net, inputs, y, rows, hp, gen, torch.device("cpu"), Reporter({"pretrain": hp.pretrain_epochs}))
    s = collect_representations(net, inputs, rows, torch.device("cpu"))
    return {m: (s.unimodal[m], s.projected[m], s.projected_pred[m]) for m in s.unimodal}, y[rows]


def naive_meta(unimodal, projected, projected_pred, y, hp, rho, gen) -> None:
    """The same algorithm written the naive way: deep-copy MUCN for theta' on every batch (learn2learn's
    clone()), a fresh SGD optimiser per copy, module calls, functional_call only for the second-order step,
    the meta-update with the same optimiser (AdamW at alpha')."""
    unimodal = torch.nn.functional.normalize(unimodal, dim=-1)
    projected = torch.nn.functional.normalize(projected, dim=-1)
    n, dim = unimodal.shape
    std = rho / 3
    mucn = MUCN(dim, hp.mucn_hidden, rho)
    meta_opt = torch.optim.AdamW(mucn.parameters(), lr=hp.meta_test_lr, weight_decay=hp.weight_decay)
    for _epoch in range(hp.meta_epochs):
        for s in torch.randperm(n, generator=gen).split(hp.batch_size):
            eps = torch.randn(len(s), generator=gen) * std
            fast = copy.deepcopy(mucn)
            opt = torch.optim.SGD(fast.parameters(), lr=hp.meta_lr)
            loss = l1(fast(unimodal[s], y[s] + eps), y[s])
            opt.zero_grad()
            loss.backward()
            opt.step()
            d = torch.cat([s, sample_extra(n, s, hp.meta_extra_ratio * len(s), gen)])
            noisy = projected_pred[d] + torch.randn(len(d), generator=gen) * std
            with torch.no_grad():
                pre = l1(mucn(projected[d], noisy), y[d])
                post = l1(fast(projected[d], noisy), y[d])
            if post < pre:
                mucn.load_state_dict(fast.state_dict())
                continue
            params = dict(mucn.named_parameters())
            inner = l1(functional_call(mucn, params, (unimodal[s], y[s] + eps)), y[s])
            grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
            adapted = {k: p - hp.meta_lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
            post_loss = l1(functional_call(mucn, adapted, (projected[d], noisy)), y[d])
            meta_opt.zero_grad()
            post_loss.backward()
            meta_opt.step()
        with torch.no_grad():
            mucn(unimodal, y)


def micro(reps_dim: int = 256, repeats: int = 300) -> dict[str, float]:
    torch.manual_seed(0)
    mucn = MUCN(reps_dim, 64, 3.0)
    learner = MetaLearner(3.0, "atanh", 5e-3)
    p = MetaLearner.init_params(mucn)
    uni = (torch.randn(32, reps_dim), torch.randn(32), torch.randn(32))
    multi = (torch.randn(352, reps_dim), torch.randn(352), torch.randn(352))

    def fn_uni(q):
        return learner.task_loss(q, uni)

    def fn_post(q):
        g = grad(fn_uni)(q)
        return learner.task_loss({k: q[k] - 5e-3 * g[k] for k in q}, multi)

    def timeit(f) -> float:
        f()
        t0 = time.perf_counter()
        for _ in range(repeats):
            f()
        return (time.perf_counter() - t0) / repeats * 1e3

    return {
        "inner step, autograd (ms)": timeit(lambda: learner.inner_step(p, uni)),
        "inner step, torch.func.grad_and_value (ms)": timeit(lambda: grad_and_value(fn_uni)(p)),
        "meta-gradient, autograd (ms)": timeit(lambda: learner.meta_gradient(p, uni, multi)),
        "meta-gradient, torch.func.grad (ms)": timeit(lambda: grad(fn_post)(p)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for stage 1, the two timed loops and the per-call timings (default 1: "
        "the library runs stage 2 on one)",
    )
    ap.add_argument("--epochs", type=int, default=5, help="meta epochs timed per modality (65 in the paper)")
    ap.add_argument("--random", action="store_true", help="random representations instead of MOSI's")
    ap.add_argument(
        "--meta-threads", type=int, default=None, help="modalities side by side (default: the pipeline's)"
    )
    args = ap.parse_args()
    if args.threads < 1 or args.epochs < 1:
        ap.error("--threads and --epochs must be at least 1")
    meta_threads = resolve_meta_threads(args.meta_threads)
    torch.set_num_threads(args.threads)
    reps, y = saved_representations(args.random, args.threads)
    hp = resolve_hyperparameters({"meta_epochs": args.epochs}, rho=3.0)
    ours = naive = 0.0
    for uni, proj, proj_pred in reps.values():
        t0 = time.perf_counter()
        meta_learn_labels(uni, proj, proj_pred, y, hp, 3.0, torch.Generator().manual_seed(1))
        ours += time.perf_counter() - t0
        t0 = time.perf_counter()
        naive_meta(uni, proj, proj_pred, y, hp, 3.0, torch.Generator().manual_seed(1))
        naive += time.perf_counter() - t0
    saved = {m: SavedModality(*r) for m, r in reps.items()}
    t0 = time.perf_counter()
    meta_learn_modalities(saved, y, hp, 3.0, torch.Generator().manual_seed(1), meta_threads)
    side_by_side = time.perf_counter() - t0
    per = 65 / args.epochs
    print(
        f"threads={args.threads} data={'random' if args.random else 'MOSI stage-1 outputs'} "
        f"meta_epochs timed={args.epochs} (x{per:.0f} = the paper's 65)"
    )
    print(f"stage 2, ours : {ours:.2f} s  -> {ours * per:.1f} s for 65 epochs x 3 modalities")
    print(f"stage 2, naive: {naive:.2f} s  -> {naive * per:.1f} s for 65 epochs x 3 modalities")
    print(f"speed-up (naive / ours): {naive / ours:.2f}x")
    print(
        f"stage 2, ours, {meta_threads} modalities side by side: {side_by_side:.2f} s  -> "
        f"{side_by_side * per:.1f} s for 65 epochs x 3 modalities "
        f"({naive / side_by_side:.2f}x the naive loop)"
    )
    for k, v in micro().items():
        print(f"{k}: {v:.3f}")


if __name__ == "__main__":
    main()
