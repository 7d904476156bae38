"""model.json read and checked before anything is built from it.

A run directory may come from someone else (a download from the service, a colleague's folder), so every
field is checked for its type and range here: a missing key, a string where a number belongs or a width
of 10^9 must be an error naming the file and the field, not a KeyError, a TypeError from torch, or an
allocation of tens of GB while the network is built.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

from models.config import TEXT_TOKENS_MAX, WIDTH_MAX
from models.modalities import MODALITIES
from models.nets import ModalitySpec, NetSpec
from models.text_encoder import POOLINGS

MAX_MODEL_JSON_BYTES = 1024**2  # a real model.json is under 1 KiB; a bigger one is not read into memory
TEXT_SOURCES = ("features", "encoder", "finetune")  # what train() records (config's "auto" is resolved)
KINDS = ("vector", "sequence", "transformer")


class ModelInfoError(ValueError):
    """model.json is not what train() writes; the message names the file, the field and the problem."""

    def __init__(self, path: Path, field: str, problem: str) -> None:
        super().__init__(f"{path}: {field}: {problem}" if field else f"{path}: {problem}")
        self.path = path
        self.field = field


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class _Reader:
    """Reads fields of one JSON object, raising ModelInfoError with the field's dotted name."""

    def __init__(self, path: Path, data: Any, prefix: str = "") -> None:
        self.path, self.prefix = path, prefix
        if not isinstance(data, dict):
            self.fail("", f"must be a JSON object, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def fail(self, key: str, problem: str) -> None:
        raise ModelInfoError(self.path, f"{self.prefix}{key}".rstrip("."), problem)

    def get(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                self.fail(key, "missing")
            return default
        return self.data[key]

    def width(self, key: str, upper: int | None = WIDTH_MAX, default: Any = ...) -> int:
        """A layer width: a whole number >= 1 (and <= ``upper``: the trainer's own bound, so no run it
        wrote exceeds it, while a forged one would have the network allocate width x width floats)."""
        value = self.get(key, default)
        if not _integer(value) or value < 1 or (upper is not None and value > upper):
            bound = f"in [1, {upper}]" if upper is not None else ">= 1"
            self.fail(key, f"must be a whole number {bound}, got {value!r}")
        return int(value)

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(key, default)
        if value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def flag(self, key: str, default: Any = ...) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {value!r}")
        return value


def _modality(path: Path, m: str, data: Any) -> ModalitySpec:
    r = _Reader(path, data, f"net_spec.modalities.{m}.")
    unknown = sorted(set(r.data) - {"kind", "in_dim", "out_dim"})
    if unknown:
        r.fail(unknown[0], "unknown key")
    kind = r.choice("kind", KINDS)
    # in_dim is the features' width (any size; the weights file, checked against it, bounds what it costs)
    return ModalitySpec(kind=kind, in_dim=r.width("in_dim", upper=None), out_dim=r.width("out_dim"))


def _net_spec(path: Path, data: Any, text_source: str) -> NetSpec:
    r = _Reader(path, data, "net_spec.")
    known = {f for f in NetSpec.__dataclass_fields__} | {"extra"}  # "extra": older files carry it, unused
    unknown = sorted(set(r.data) - known)
    if unknown:
        r.fail(unknown[0], "unknown key")
    mods = r.get("modalities")
    if not isinstance(mods, dict) or not mods:
        r.fail("modalities", f"must be a non-empty object of modality -> spec, got {mods!r}")
    for m in mods:
        if m not in MODALITIES:
            r.fail(f"modalities.{m}", f"unknown modality; one of {', '.join(MODALITIES)}")
    specs = {m: _modality(path, m, s) for m, s in mods.items()}
    for m, s in specs.items():  # the text network follows text_source, as train() built it
        want = "transformer" if m == "text" and text_source == "finetune" else None
        if s.kind == "transformer" and want is None:
            r.fail(f"modalities.{m}.kind", "'transformer' is the text network of text_source finetune only")
        if want is not None and s.kind != want:
            r.fail(f"modalities.{m}.kind", f"text_source finetune needs 'transformer', not {s.kind!r}")
    dropout = r.get("dropout")
    if not _number(dropout) or not 0 <= dropout < 1:
        r.fail("dropout", f"must be a number in [0, 1), got {dropout!r}")
    text_model = r.get("text_model", None)
    if text_model is not None and (not isinstance(text_model, str) or not text_model.strip()):
        r.fail("text_model", f"must be a local directory path or null, got {text_model!r}")
    max_length = r.width("text_max_length", upper=TEXT_TOKENS_MAX, default=64)
    if max_length < 2:
        r.fail("text_max_length", f"must be >= 2 (room for the special tokens), got {max_length}")
    return NetSpec(
        modalities=specs,
        fusion_dim=r.width("fusion_dim"),
        predictor_hidden=r.width("predictor_hidden"),
        dropout=float(dropout),
        with_projection=r.flag("with_projection", default=True),
        text_model=text_model,
        text_pooling=r.choice("text_pooling", POOLINGS, default="cls"),
        text_max_length=max_length,
        text_normalize=r.flag("text_normalize", default=False),
    )


def _reader(path: Path) -> _Reader:
    size = path.stat().st_size
    if size > MAX_MODEL_JSON_BYTES:
        raise ModelInfoError(path, "", f"{size} bytes; a model.json is a few hundred (not read)")
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelInfoError(path, "", f"not valid JSON ({err})") from None
    return _Reader(path, data)


def _rho(r: _Reader) -> float:
    rho = r.get("rho")
    if not _number(rho) or not math.isfinite(rho) or rho <= 0:
        r.fail("rho", f"the label range must be a positive number, got {rho!r}")
    return float(rho)


def read_label_range(path: Path) -> float:
    """model.json's rho alone, checked (what scoring a run's predictions needs of it)."""
    return _rho(_reader(path))


def read_model_info(path: Path) -> tuple[dict[str, Any], NetSpec]:
    """model.json's content and the NetSpec it describes, every field checked; ModelInfoError otherwise.
    The returned dict's ``net_spec`` is the file's (callers may change ``text_model`` there)."""
    r = _reader(path)
    data = r.data
    text_source = r.choice("text_source", TEXT_SOURCES)
    rho = _rho(r)
    strategy = r.get("strategy")
    if not isinstance(strategy, str):  # only shown: a newer version's strategy name is not refused
        r.fail("strategy", f"must be a string, got {strategy!r}")
    r.flag("unimodal_heads_trained")
    spec = _net_spec(path, r.get("net_spec"), text_source)
    if text_source in ("encoder", "finetune") and "text" not in spec.modalities:
        r.fail("text_source", f"{text_source!r} reads text, but net_spec.modalities has no text")
    return {**data, "rho": rho}, spec
