"""Prediction outputs of a vector-input MultimodalNet without nn.Module dispatch (serving speed).

For the few-utterance batches an online service sends, a forward pass through ``MultimodalNet`` costs
mostly Python: every ``Sequential``, ``Linear``, ``ReLU`` and ``Dropout`` goes through ``Module.__call__``
(hooks, tracing checks) before a microsecond of arithmetic. ``FlatForward`` reads the same weights once
into a list of steps per block (``addmm`` with the transposed weight, ``relu_``; dropout is the identity in
eval mode) and evaluates ``pred`` and the unimodal predictions exactly as ``MultimodalNet.forward`` composes
them (x_m = F^m(input_m); fused = F^M(concat x_m in modality order); pred = P^M(fused); pred_m = P^m(x_m)).
Measured by bench/bench_predict.py (docs/benchmarks.md, "predict_batch"); tests/test_flat_forward.py checks
it against ``MultimodalNet.forward`` for every supported shape of net.

Only nets whose encoders are all vector MLPs are flattened, and only blocks made of Linear, ReLU and
Dropout; anything else (LSTM, transformer, another layer type) makes ``FlatForward.of`` return None and the
caller uses the module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.nets import MultimodalNet, VectorEncoder

Step = tuple[Tensor, Tensor] | None  # (weight transposed [in, out], bias [out]) or None for ReLU


def _steps(block: nn.Sequential) -> list[Step] | None:
    steps: list[Step] = []
    for layer in block:
        if isinstance(layer, nn.Linear) and layer.bias is not None:
            steps.append((layer.weight.detach().t().contiguous(), layer.bias.detach().clone()))
        elif isinstance(layer, nn.ReLU):
            steps.append(None)
        elif not isinstance(layer, nn.Dropout):  # Dropout: the identity in eval mode
            return None
    return steps


def _run(steps: list[Step], x: Tensor) -> Tensor:
    own = False  # whether x is a tensor made here (ReLU in place) or the caller's input (never modified)
    for step in steps:
        if step is None:
            x = torch.relu_(x) if own else torch.relu(x)
        else:
            x = torch.addmm(step[1], x, step[0])
        own = True
    return x


@dataclass(frozen=True)
class FlatForward:
    """``pred`` and per-modality predictions of a (vector-input, eval-mode) MultimodalNet."""

    modalities: list[str]
    encoders: dict[str, list[Step]]  # F^m per modality
    fusion: list[Step]  # F^M
    head_m: list[Step]  # P^M
    heads: dict[str, list[Step]]  # P^m per modality

    @classmethod
    def of(cls, net: MultimodalNet) -> FlatForward | None:
        """A flat copy of ``net``'s prediction path, or None where it has a layer this does not flatten.
        The weights are copied: later changes to ``net`` are not seen (a loaded model never changes)."""
        blocks: dict[str, list[Step] | None] = {}
        for m in net.modalities:
            encoder = net.encoders[m]
            blocks[f"enc.{m}"] = _steps(encoder.net) if type(encoder) is VectorEncoder else None
            blocks[f"head.{m}"] = _steps(net.heads[m])
        blocks["fusion"] = _steps(net.fusion)
        blocks["head_m"] = _steps(net.head_m)
        if any(steps is None for steps in blocks.values()):
            return None
        return cls(
            list(net.modalities),
            {m: blocks[f"enc.{m}"] for m in net.modalities},
            blocks["fusion"],
            blocks["head_m"],
            {m: blocks[f"head.{m}"] for m in net.modalities},
        )

    def __call__(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """{"pred": [n], modality: [n] for each modality} from {modality: [n, d_in]} (the weights are
        detached copies, so no autograd graph is built for inputs that do not ask for one)."""
        reps = {m: _run(self.encoders[m], inputs[m]) for m in self.modalities}
        fused = _run(self.fusion, torch.cat([reps[m] for m in self.modalities], dim=-1))
        out = {"pred": _run(self.head_m, fused).squeeze(-1)}
        for m in self.modalities:
            out[m] = _run(self.heads[m], reps[m]).squeeze(-1)
        return out
