"""Networks of the MUG framework (paper Sec. 3.1-3.4).

The paper's Fig. 3 (exact layer shapes) is missing; the choices below are recorded in docs/method.md:
- F^m, vector input:   Dropout -> Linear(d_in, d_m) -> ReLU -> Linear(d_m, d_m) -> ReLU
- F^m, sequence input: 1-layer LSTM(d_in, d_m) over the packed sequence, last hidden state -> Dropout ->
                       Linear(d_m, d_m) -> ReLU (Self-MM's audio/vision network, Eq. 2)
- F^l, transformer:    first-token representation -> Linear(hidden, d_l) -> ReLU (Eq. 1)
- F^M: concat(x_l, x_a, x_v) -> Dropout -> Linear(sum d_m, d) -> ReLU (simple concatenation fusion, Eq. 4)
- P^M, P^m: Linear(in, h) -> ReLU -> Linear(h, 1) (Eq. 5, 8, 24)
- CPM_m: x_m' = ReLU(W_m x + b_m) (Eq. 7)
- MUCN_m: y_mc = rho * tanh(ybar + MLP([x, ybar / rho])) (Eq. 13, 19, 28)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from models.modalities import MODALITIES


@dataclass(frozen=True)
class ModalitySpec:
    kind: str  # "vector" | "sequence" | "transformer"
    in_dim: int  # feature dim (vector/sequence) or transformer hidden size
    out_dim: int  # d_m


@dataclass(frozen=True)
class NetSpec:
    modalities: dict[str, ModalitySpec]
    fusion_dim: int
    predictor_hidden: int
    dropout: float
    with_projection: bool = True
    text_model: str | None = None
    text_pooling: str = "cls"
    text_max_length: int = 64
    text_normalize: bool = False  # False: runs written before the setting existed

    def to_json(self) -> dict[str, Any]:
        """model.json's net_spec; read back, every field checked, by models.model_info."""
        return asdict(self)


def mlp_head(in_dim: int, hidden: int, out_dim: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class VectorEncoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim), nn.ReLU()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SequenceEncoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_dim, out_dim, batch_first=True)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(out_dim, out_dim), nn.ReLU())

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return self.out(h_n[-1])


class TransformerTextEncoder(nn.Module):
    """Eq. 1: a fine-tuned transformer's first-token representation, projected down to d_l."""

    def __init__(
        self, model_path: str | None, out_dim: int, pooling: str, max_length: int, normalize: bool
    ) -> None:
        super().__init__()
        from models.text_encoder import TextEncoder

        self.encoder = TextEncoder(model_path, pooling=pooling, max_length=max_length, normalize=normalize)
        self.down = nn.Sequential(nn.Linear(self.encoder.hidden_size, out_dim), nn.ReLU())

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.down(self.encoder(input_ids=input_ids, attention_mask=attention_mask))


class MultimodalNet(nn.Module):
    """F^m, F^M, P^M, P^m and (stage 1 only) the contrastive projection modules CPM_m."""

    def __init__(self, spec: NetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.modalities = [m for m in MODALITIES if m in spec.modalities]
        encoders: dict[str, nn.Module] = {}
        for m in self.modalities:
            s = spec.modalities[m]
            if s.kind == "vector":
                encoders[m] = VectorEncoder(s.in_dim, s.out_dim, spec.dropout)
            elif s.kind == "sequence":
                encoders[m] = SequenceEncoder(s.in_dim, s.out_dim, spec.dropout)
            elif s.kind == "transformer":
                encoders[m] = TransformerTextEncoder(
                    spec.text_model, s.out_dim, spec.text_pooling, spec.text_max_length, spec.text_normalize
                )
            else:  # pragma: no cover - specs are built by the pipeline
                raise ValueError(f"unknown modality kind {s.kind!r}")
        self.encoders = nn.ModuleDict(encoders)
        total = sum(spec.modalities[m].out_dim for m in self.modalities)
        self.fusion = nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(total, spec.fusion_dim), nn.ReLU())
        self.head_m = mlp_head(spec.fusion_dim, spec.predictor_hidden)
        self.heads = nn.ModuleDict(
            {m: mlp_head(spec.modalities[m].out_dim, spec.predictor_hidden) for m in self.modalities}
        )
        if spec.with_projection:
            self.projections = nn.ModuleDict(
                {
                    m: nn.Sequential(nn.Linear(spec.fusion_dim, spec.modalities[m].out_dim), nn.ReLU())
                    for m in self.modalities
                }
            )

    def encode(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """x_m for every modality (Eq. 3)."""
        reps = {}
        for m in self.modalities:
            kind = self.spec.modalities[m].kind
            if kind == "vector":
                reps[m] = self.encoders[m](inputs[m])
            elif kind == "sequence":
                reps[m] = self.encoders[m](inputs[m], inputs[f"{m}_lengths"])
            else:
                reps[m] = self.encoders[m](inputs[f"{m}_input_ids"], inputs[f"{m}_attention_mask"])
        return reps

    def forward(self, inputs: dict[str, Tensor]) -> dict[str, Any]:
        reps = self.encode(inputs)
        fused = self.fusion(torch.cat([reps[m] for m in self.modalities], dim=-1))
        # a unimodal head's hidden layer (Self-MM's memory banks hold it)
        hidden = {m: self.heads[m][1](self.heads[m][0](reps[m])) for m in self.modalities}
        out: dict[str, Any] = {
            "reps": reps,
            "fused": fused,
            "pred": self.head_m(fused).squeeze(-1),
            "uni_hidden": hidden,
            "uni_pred": {m: self.heads[m][2](hidden[m]).squeeze(-1) for m in self.modalities},
        }
        if self.spec.with_projection:
            proj = {m: self.projections[m](fused) for m in self.modalities}
            out["proj"] = proj
            out["proj_pred"] = {m: self.heads[m](proj[m]).squeeze(-1) for m in self.modalities}
        return out


class MUCN(nn.Module):
    """Meta uni-label correction network for one modality: (representation, noisy label) -> corrected label.

    y_mc = rho * tanh(ybar + y'_mc) (Eq. 28), y'_mc the output of the last fully connected layer; the MLP sees
    the representation and the label scaled to [-1, 1]. ``residual`` says in which space the input label
    enters the residual (choice, docs/method.md):
    - "atanh": ybar is taken as atanh(clip(ybar / rho)), the pre-activation of rho * tanh, so a zero
      correction returns the input label (identity at initialisation, residual learning of the label);
    - "literal": ybar as given; a zero correction returns rho * tanh(ybar) (1 -> 2.28 on MOSI's scale).
    """

    def __init__(self, rep_dim: int, hidden: int, rho: float, residual: str = "atanh") -> None:
        super().__init__()
        if residual not in MUCN_RESIDUALS:
            raise ValueError(f"residual must be one of {MUCN_RESIDUALS}, got {residual!r}")
        self.rho = float(rho)
        self.residual = residual
        self.mlp = nn.Sequential(
            nn.Linear(rep_dim + 1, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, rep: Tensor, noisy_label: Tensor) -> Tensor:
        return mucn_forward(dict(self.mlp.named_parameters()), rep, noisy_label, self.rho, self.residual)


MUCN_RESIDUALS = ("atanh", "literal")
_ATANH_CLIP = 0.999


def mucn_forward(
    params: dict[str, Tensor], rep: Tensor, noisy_label: Tensor, rho: float, residual: str
) -> Tensor:
    """MUCN as a pure function of its MLP parameters (keys "0.weight", ..., "4.bias"): Eq. 28. The module's
    forward is this function too; stage 2 calls it directly because torch.func.functional_call on the
    module costs 30-50 % more per call (430 vs 560-660 us on a 352 x 256 batch, 1 thread), ~40,000 a run."""
    h = torch.cat([rep, (noisy_label / rho).unsqueeze(-1)], dim=-1)
    h = torch.relu(nn.functional.linear(h, params["0.weight"], params["0.bias"]))
    h = torch.relu(nn.functional.linear(h, params["2.weight"], params["2.bias"]))
    correction = nn.functional.linear(h, params["4.weight"], params["4.bias"]).squeeze(-1)
    base = noisy_label
    if residual == "atanh":
        base = torch.atanh((noisy_label / rho).clamp(-_ATANH_CLIP, _ATANH_CLIP))
    return rho * torch.tanh(base + correction)


def l1(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean absolute error (Eq. 6, 9, 14, 20, 25, 26), optionally weighted per sample."""
    err = (pred - target).abs()
    return (err * weight).mean() if weight is not None else err.mean()


def contrastive_loss(projected: Tensor, unimodal: Tensor, tau: float) -> Tensor:
    """InfoNCE of Eq. 11 on L2-normalised vectors (Eq. 10).

    Anchors are the projected multimodal representations x_m'; positives/negatives are the unimodal
    representations x_m of the batch. Gradients into x_m are stopped (Sec. 3.2 / 4.9): only the projection
    (and what feeds it) moves.
    """
    a = nn.functional.normalize(projected, dim=-1)
    b = nn.functional.normalize(unimodal.detach(), dim=-1)
    logits = a @ b.t() / tau
    target = torch.arange(a.shape[0], device=a.device)
    return nn.functional.cross_entropy(logits, target)
