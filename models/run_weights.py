"""model.safetensors checked against the network model.json describes, then read.

The file's header (names, dtypes, shapes) is read and compared with what the network expects before any
weight is read or the network is allocated: a file with a wrong, missing or extra tensor, another dtype or
a header that is not safetensors' is an error naming the file and the tensor. The network's expected shapes
come from a copy built on torch's "meta" device (no memory), so a forged model.json whose widths would
take tens of GB is refused for not matching its weights, which the file itself would have to hold.
Nothing is unpickled: a pickle renamed .safetensors is refused by its first bytes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

MAX_HEADER_BYTES = 16 * 1024**2  # a run's header is a few KiB (a fine-tuned BERT's: ~30 KiB)
# safetensors' dtype names for torch's (those a network's state holds)
DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


class WeightsError(ValueError):
    """model.safetensors does not hold the weights of the network model.json describes."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


def read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} from the safetensors header, reading the header only (its length
    bounded) and checking that every tensor's bytes lie within the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WeightsError(path, f"not a safetensors file ({size} bytes, shorter than its header)")
        (n,) = struct.unpack("<Q", head)
        # said only of a file that is not safetensors: a real header's length can begin with these bytes too
        if n > size - 8 and (head[:1] == b"\x80" or head.startswith(b"PK")):  # pickle, torch.save's zip
            raise WeightsError(path, "a pickled checkpoint, not safetensors; it is never unpickled")
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise WeightsError(
                path, f"not a safetensors file: its header declares {n} bytes (file {size}, at most "
                f"{MAX_HEADER_BYTES} read)"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WeightsError(path, f"not a safetensors file: its header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise WeightsError(path, "not a safetensors file: its header is not a JSON object")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    data_bytes = size - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        ok = isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
        shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if ok else (None, None)
        numbers = [*(shape if isinstance(shape, list) else [None])]
        numbers += offsets if isinstance(offsets, list) else []
        ints = all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in numbers)
        if not (ok and ints and isinstance(offsets, list) and len(offsets) == 2):
            raise WeightsError(path, f"tensor {name!r}: not a safetensors header entry ({entry!r:.200})")
        if offsets[1] > data_bytes:
            raise WeightsError(
                path, f"tensor {name!r}: ends at byte {offsets[1]} of the data, which holds {data_bytes} "
                "(truncated?)"
            )
        out[name] = (entry["dtype"], tuple(shape))
    return out


def check_header(path: Path, expected: dict[str, torch.Tensor]) -> None:
    """A WeightsError unless the file holds exactly the tensors of ``expected`` (a state dict, of meta
    tensors or real ones), each with its shape and dtype."""
    header = read_header(path)
    missing = [k for k in expected if k not in header]
    extra = [k for k in header if k not in expected]
    if missing or extra:
        parts = [f"missing {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}"] if missing else []
        if extra:
            parts.append(f"not in the network {', '.join(extra[:5])}{', ...' if len(extra) > 5 else ''}")
        raise WeightsError(path, f"not the weights of the network model.json describes: {'; '.join(parts)}")
    for name, want in expected.items():
        dtype, shape = header[name]
        if shape != tuple(want.shape):
            raise WeightsError(
                path, f"tensor {name!r}: shape {list(shape)}, the network model.json describes has "
                f"{list(want.shape)}"
            )
        if dtype != DTYPES.get(want.dtype):
            raise WeightsError(path, f"tensor {name!r}: dtype {dtype}, expected {DTYPES.get(want.dtype)}")


def load_weights(path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checked file's tensors (``check_header`` first), refused when a weight is NaN or infinite: the
    network would predict NaN for every row."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_header(path, expected)
    try:
        state = load_file(str(path))
    except SafetensorError as err:
        raise WeightsError(path, f"not a readable safetensors file ({err})") from None
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise WeightsError(path, f"tensor {name!r}: NaN or infinite values")
    return state
