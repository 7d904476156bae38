"""models/flat_forward.py gives MultimodalNet's own predictions, or declines the net."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.flat_forward import FlatForward
from models.nets import ModalitySpec, MultimodalNet, NetSpec


def _net(dims: dict[str, int], kind: str = "vector", with_projection: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    spec = NetSpec(
        modalities={
            m: ModalitySpec(kind=kind, in_dim=d, out_dim=8 + 4 * i) for i, (m, d) in enumerate(dims.items())
        },
        fusion_dim=12,
        predictor_hidden=6,
        dropout=0.3,
        with_projection=with_projection,
    )
    net = MultimodalNet(spec).eval()
    with torch.no_grad():  # biases away from their small init, so a missing bias or ReLU shows
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return net


@pytest.mark.parametrize(
    ("dims", "with_projection"),
    [
        ({"text": 7, "audio": 5, "vision": 3}, True),
        ({"text": 7, "audio": 5, "vision": 3}, False),
        ({"audio": 5, "vision": 3}, True),
        ({"text": 4}, False),
    ],
)
@pytest.mark.parametrize("rows", [1, 3, 40])
def test_matches_the_module(dims: dict[str, int], with_projection: bool, rows: int) -> None:
    net = _net(dims, with_projection=with_projection)
    flat = FlatForward.of(net)
    assert flat is not None
    inputs = {m: torch.randn(rows, d) * 3 for m, d in dims.items()}
    before = {m: x.clone() for m, x in inputs.items()}
    with torch.no_grad():
        want = net(inputs)
    got = flat(inputs)
    assert set(got) == {"pred", *dims}
    assert got["pred"].shape == (rows,)
    assert torch.allclose(got["pred"], want["pred"], atol=1e-5)
    for m in dims:
        assert torch.allclose(got[m], want["uni_pred"][m], atol=1e-5), m
    assert all(torch.equal(inputs[m], before[m]) for m in dims)  # the caller's tensors are not modified
    assert want["pred"].abs().max() > 0.1  # the comparison is not between two zero vectors


def test_declines_what_it_does_not_flatten() -> None:
    assert FlatForward.of(_net({"text": 4, "audio": 3}, kind="sequence")) is None
    tanh = _net({"text": 4, "audio": 3})
    tanh.fusion = nn.Sequential(nn.Linear(8 + 12, 12), nn.Tanh())
    assert FlatForward.of(tanh) is None
    no_bias = _net({"text": 4, "audio": 3})
    no_bias.heads["audio"][2] = nn.Linear(6, 1, bias=False)
    assert FlatForward.of(no_bias) is None


def test_a_block_that_starts_with_relu_leaves_the_input_alone() -> None:
    net = _net({"text": 4, "audio": 3})
    net.encoders["text"].net = nn.Sequential(nn.ReLU(), nn.Linear(4, 8), nn.ReLU())
    flat = FlatForward.of(net)
    assert flat is not None
    inputs = {"text": torch.randn(5, 4), "audio": torch.randn(5, 3)}
    before = inputs["text"].clone()
    with torch.no_grad():
        want = net(inputs)["pred"]
    assert torch.allclose(flat(inputs)["pred"], want, atol=1e-5)
    assert torch.equal(inputs["text"], before)
