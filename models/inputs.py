"""Dataset -> tensors the networks take, and per-batch slicing.

Text comes from the dataset's text features, or from transcripts through a transformers encoder: frozen
("encoder": embeddings computed once, then treated as vector features) or fine-tuned ("finetune": token ids
go through the encoder inside the network, Eq. 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from models.dataset import Dataset
from models.modalities import MODALITIES
from models.nets import ModalitySpec


class InputError(ValueError):
    """The dataset cannot feed the requested model; names the field ("hyperparameters.text_model")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class TensorInputs:
    """Every utterance's inputs as tensors; ``batch`` slices rows and trims sequence padding."""

    tensors: dict[str, Tensor]
    kinds: dict[str, str]

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def batch(self, idx: Tensor, device: torch.device | str = "cpu") -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for m, kind in self.kinds.items():
            if kind == "vector":
                out[m] = self.tensors[m][idx]
            elif kind == "sequence":
                lengths = self.tensors[f"{m}_lengths"][idx]
                t_max = int(lengths.max()) if len(lengths) else 1
                out[m] = self.tensors[m][idx, :t_max]
                out[f"{m}_lengths"] = lengths
            else:
                mask = self.tensors[f"{m}_attention_mask"][idx]
                t_max = max(int(mask.sum(1).max()), 1) if len(mask) else 1
                out[f"{m}_input_ids"] = self.tensors[f"{m}_input_ids"][idx, :t_max]
                out[f"{m}_attention_mask"] = mask[:, :t_max]
        return {k: v.to(device) for k, v in out.items()}


def check_modalities(requested: Sequence[str], arrays: Iterable[str]) -> None:
    """Raise InputError (hyperparameters.modalities) when a run asks for a modality the dataset cannot give.

    ``arrays``: the keys of features.npz. Audio and vision come only from their arrays; text from its array
    or the transcripts (load_dataset refuses a dataset with neither), so text is always given.
    """
    given = ["text", *(m for m in MODALITIES[1:] if m in arrays)]
    missing = [m for m in requested if m not in given]
    if not missing:
        return
    keep = [m for m in requested if m in given] or given
    keys = " or ".join(repr(m) for m in missing)
    raise InputError(
        "hyperparameters.modalities",
        f"{', '.join(missing)} asked for (modalities: {','.join(requested)}), but features.npz has no {keys} "
        f"array; this dataset gives {', '.join(given)}: set modalities to {','.join(keep)}",
    )


def choose_text_source(
    requested: str,
    *,
    text_features: bool,
    transcripts: bool,
    text_model: str | None = None,
    modalities: Sequence[str] = MODALITIES,
) -> str:
    """The text source a run uses: auto -> "encoder" (the frozen text encoder on the transcripts) when
    every row has a transcript, else "features". Transcripts come first: text features of unknown
    provenance may have been fitted on the very rows a model trains on (CMU-MOSI's text CNN was,
    docs/results.md), a frozen encoder was not.

    ``text_features``: the dataset has a 'text' array; ``transcripts``: every row has a non-empty
    transcript. A ``text_model`` that no encoder would read is an error, not a setting silently dropped.
    """
    if requested == "auto":
        source = "encoder" if transcripts or not text_features else "features"
    elif requested == "features" and not text_features:
        raise InputError(
            "hyperparameters.text_source", "'features' asked for, but features.npz has no 'text' array"
        )
    elif requested in ("encoder", "finetune") and not transcripts:
        raise InputError(
            "hyperparameters.text_source",
            f"{requested!r} needs a transcript on every row (utterances.csv column 'transcript')",
        )
    else:
        source = requested
    if text_model is not None and "text" not in modalities:
        raise InputError(
            "hyperparameters.text_model",
            "set, but modalities has no 'text', so no text encoder runs; add text to modalities or leave "
            "text_model unset",
        )
    if text_model is not None and source == "features":
        why = (
            "text_source 'features' reads the 'text' array of features.npz; set text_source to "
            "'encoder' or 'finetune'"
            if requested == "features"
            else "not every row has a transcript (utterances.csv column 'transcript'), so text_source "
            "'auto' reads the 'text' array of features.npz; give every row a transcript"
        )
        raise InputError(
            "hyperparameters.text_model", f"set, but no text encoder runs: {why}, or leave text_model unset"
        )
    return source


def text_source_note(
    requested: str, resolved: str, *, has_transcripts: bool, modalities: Sequence[str] = MODALITIES
) -> str | None:
    """What a user should hear when ``auto`` passed over the transcripts they gave: some rows lack one, so
    the run reads the 'text' array instead, which is easy to miss (the run otherwise looks the same)."""
    if "text" not in modalities or requested != "auto" or resolved != "features" or not has_transcripts:
        return None
    return (
        "text read from features.npz's 'text' array, not the transcripts: text_source auto reads them only "
        "when every row has one, and some are blank; fill them in, or set text_source=features to say so"
    )


# The label range each preset's column of the MUG paper's Table 2 was tuned for (MOSI and MOSEI: [-3, 3];
# SIMS: [-1, 1]); a preset's sizes and step sizes on the other range are an untried pairing.
PRESET_RHO = {"mosi": 3.0, "mosei": 3.0, "sims": 1.0}
# Below this many labeled valid rows (the usual small-sample line) the figures a run reports on valid, and
# its best epoch, chosen on valid, are mostly noise: an accuracy's standard error can reach 0.5 / sqrt(n),
# 0.09 here.
FEW_VALID_ROWS = 30


LARGE_FEATURE = 1e4  # |x| beyond this is far from standardised: worth naming when a run overflows


def large_features(ds: Dataset, modalities: Iterable[str], rows: np.ndarray | None = None) -> list[str]:
    """For each of ``modalities`` whose features (on ``rows``, else all) reach beyond LARGE_FEATURE, advice
    naming it and its largest |x|: what to say beside a run that turned NaN or inf."""
    tops = {
        m: float(np.abs(ds.features[m].values if rows is None else ds.features[m].values[rows]).max())
        for m in modalities
        if m in ds.features
    }
    return [
        f"standardise the '{m}' features (features.npz '{m}' reaches |x| = {top:.3g}; docs/dataset-format.md)"
        for m, top in tops.items()
        if top > LARGE_FEATURE
    ]


def dataset_notes(summary: dict[str, Any], preset: str | None = None) -> list[str]:
    """What a user should hear before a run trains on a dataset (``Dataset.summary()``): a valid split
    too small to compare runs on, a preset made for the other label range. Neither is refused: both may be
    meant."""
    notes = []
    valid = summary["splits"]["valid"]["labeled"]
    if 0 < valid < FEW_VALID_ROWS:  # none at all: training refuses the dataset, saying so
        notes.append(
            f"valid has {valid} labeled rows: the best epoch is chosen on them and every valid figure rests "
            f"on them (an accuracy's standard error can be {0.5 / valid**0.5:.2f}); give valid at least "
            f"{FEW_VALID_ROWS} to compare runs"
        )
    rho = summary["rho"]
    if preset is not None and PRESET_RHO[preset] != rho:
        made_for = PRESET_RHO[preset]
        notes.append(
            f"preset {preset} is the MUG paper's setting for labels in [-{made_for:g}, {made_for:g}]; this "
            f"dataset's are in [-{rho:g}, {rho:g}]"
        )
    return notes


def resolve_text_source(
    ds: Dataset, requested: str, text_model: str | None = None, modalities: Sequence[str] = MODALITIES
) -> str:
    """``choose_text_source`` for ``ds``."""
    return choose_text_source(
        requested,
        text_features="text" in ds.features,
        transcripts=ds.every_row_has_transcript(),
        text_model=text_model,
        modalities=modalities,
    )


def modality_specs(
    ds: Dataset,
    text_source: str,
    dims: dict[str, int],
    text_hidden: int | None,
    modalities: Sequence[str] = MODALITIES,
) -> dict:
    """ModalitySpec per modality in ``modalities`` (``dims``: d_m per modality)."""
    specs = {}
    for m in (m for m in MODALITIES if m in modalities):
        if m == "text" and text_source in ("encoder", "finetune"):
            kind = "transformer" if text_source == "finetune" else "vector"
            assert text_hidden is not None
            specs[m] = ModalitySpec(kind=kind, in_dim=int(text_hidden), out_dim=dims[m])
            continue
        feats = ds.features[m]
        specs[m] = ModalitySpec(
            kind="sequence" if feats.is_sequence else "vector", in_dim=feats.dim, out_dim=dims[m]
        )
    return specs


def build_inputs(
    ds: Dataset,
    specs: dict[str, ModalitySpec],
    text_source: str,
    text_encoder: object | None = None,
    on_encode: Callable[[int, int], None] | None = None,
    text_cache_dir: Path | None = None,
) -> TensorInputs:
    """Tensors for every row of ``ds``. ``text_encoder`` (a models.text_encoder.TextEncoder) is needed for
    the transcript-based text sources; ``on_encode(done, total)`` follows the frozen encoder's batches;
    ``text_cache_dir``: where the frozen encoder's embeddings are kept (default: its default_cache_dir)."""
    tensors: dict[str, Tensor] = {}
    kinds: dict[str, str] = {}
    for m, spec in specs.items():
        kinds[m] = spec.kind
        if m == "text" and text_source == "encoder":
            emb, _ = text_encoder.encode_cached(  # type: ignore[union-attr]
                list(ds.transcripts), cache_dir=text_cache_dir, on_batch=on_encode
            )
            tensors[m] = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32))
        elif m == "text" and text_source == "finetune":
            tok = text_encoder.tokenize(list(ds.transcripts))  # type: ignore[union-attr]
            tensors[f"{m}_input_ids"] = tok["input_ids"]
            tensors[f"{m}_attention_mask"] = tok["attention_mask"]
        else:
            feats = ds.features[m]
            if feats.dim != spec.in_dim:
                raise InputError(
                    "features.npz", f"key '{m}': feature dim {feats.dim}, the model expects {spec.in_dim}"
                )
            if feats.is_sequence != (spec.kind == "sequence"):
                want = "padded sequences [N, T, d]" if spec.kind == "sequence" else "vectors [N, d]"
                raise InputError("features.npz", f"key '{m}': the model expects {want}")
            tensors[m] = torch.from_numpy(np.ascontiguousarray(feats.values, dtype=np.float32))
            if feats.is_sequence:
                tensors[f"{m}_lengths"] = torch.from_numpy(np.asarray(feats.lengths, dtype=np.int64))
    return TensorInputs(tensors=tensors, kinds=kinds)
