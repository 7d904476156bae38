"""Train a strategy end to end on a dataset and write a run directory; load a run to predict.

A run directory is the unit of output for the CLI and the service alike:
config.json, unimodal_labels.csv, predictions.csv, metrics.json, model.safetensors, model.json.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from models.config import HyperparameterError, Hyperparameters, check_seed, resolve_hyperparameters
from models.data import Dataset
from models.flat_forward import FlatForward
from models.inputs import InputError, TensorInputs, build_inputs, modality_specs, resolve_text_source
from models.metrics import sentiment_metrics, unimodal_label_agreement
from models.modalities import LETTER
from models.nets import MultimodalNet, NetSpec
from models.report import publish_dir, write_csv_atomic, write_json
from models.stages.common import (
    Cancelled,
    ProgressEvent,
    Reporter,
    resolve_device,
    resolve_meta_threads,
    seed_everything,
)
from models.stages.multitask import multitask_train, predict_rows
from models.strategies import STRATEGIES, StrategyContext, get_strategy
from models.version import code_version

CODE_VERSION = code_version()
DIRECT_BATCH = 512  # predict_batch sends at most this many utterances through the net in one call
RUN_FILES = (
    "config.json",
    "unimodal_labels.csv",
    "predictions.csv",
    "metrics.json",
    "model.safetensors",
    "model.json",
)

__all__ = [
    "CODE_VERSION",
    "STRATEGIES",
    "Cancelled",
    "HyperparameterError",
    "ProgressEvent",
    "RunResult",
    "TrainedModel",
    "resolve_hyperparameters",
    "train",
]


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, Any]
    config: dict[str, Any]
    input_spec: dict[str, dict[str, Any]] = field(default_factory=dict)  # as TrainedModel.input_spec


def _load_text_encoder(hp: Hyperparameters, text_source: str):
    if text_source not in ("encoder", "finetune") or "text" not in hp.modalities:
        return None
    from models.text_encoder import TextEncoder

    return TextEncoder(
        hp.text_model,
        pooling=hp.text_pooling,
        max_length=hp.text_max_length,
        normalize=hp.text_normalize,
    )


def _net_spec(specs: dict, hp: Hyperparameters, with_projection: bool, text_model: str | None) -> NetSpec:
    return NetSpec(
        modalities=specs,
        fusion_dim=hp.fusion_dim,
        predictor_hidden=hp.predictor_hidden,
        dropout=hp.dropout,
        with_projection=with_projection,
        text_model=text_model,
        text_pooling=hp.text_pooling,
        text_max_length=hp.text_max_length,
        text_normalize=hp.text_normalize,
    )


def _split_metrics(pred: np.ndarray, label: np.ndarray, rho: float) -> dict[str, float]:
    try:
        return sentiment_metrics(pred, label, rho)
    except ValueError:  # a label range other than 3 or 1: the range-free metrics only
        from models.metrics import pearson

        return {"mae": round(float(np.mean(np.abs(pred - label))), 4), "corr": round(pearson(pred, label), 4)}


def _staging_dir(out: Path, overwrite: bool) -> Path:
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"out: {out} already holds files; choose another directory or overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def train(
    dataset: Dataset,
    out_dir: str | Path,
    *,
    strategy: str = "mug",
    seed: int = 1111,
    hyperparameters: dict[str, Any] | None = None,
    device: str = "auto",
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    overwrite: bool = False,
    meta_threads: int | None = None,
    preset: str | None = None,
    extra_files: Callable[[RunResult], dict[str, Any]] | None = None,
) -> RunResult:
    """Learn unimodal labels with ``strategy`` and train the multitask model; write the run directory.

    ``preset``: a column of the paper's Table 2 (models.config.PRESETS: mosi, mosei, sims) under the
    ``hyperparameters`` overrides; recorded in config.json.

    ``meta_threads``: modalities MUG meta-learns side by side in stage 2 (None: one per modality, at most one
    per available CPU core). It changes only the speed: the run is bit for bit the same for every value.

    ``extra_files``: given the result, JSON files (name -> object) written into the run directory before it is
    published (the service's card.json), so they appear with the rest of the run.

    Raises HyperparameterError / InputError / ValueError for bad settings, Cancelled when ``should_stop``
    returns True between epochs (nothing is written then).
    """
    started = time.perf_counter()
    strat = get_strategy(strategy)
    check_seed(seed)
    hp = resolve_hyperparameters(hyperparameters, rho=dataset.rho, preset=preset)
    dev = resolve_device(device)
    threads = resolve_meta_threads(meta_threads)
    train_rows_np, valid_rows_np = dataset.labeled("train"), dataset.labeled("valid")
    if train_rows_np.size == 0 or valid_rows_np.size == 0:
        raise ValueError("dataset: training needs labeled train and valid rows")
    text_source = resolve_text_source(dataset, hp.text_source)
    out = Path(out_dir)
    staging = _staging_dir(out, overwrite)
    try:
        gen = seed_everything(seed)
        encoder = _load_text_encoder(hp, text_source)
        text_model = None
        if encoder is not None:
            text_model = str(hp.text_model or encoder.model_path)
        dims = {"text": hp.text_dim, "audio": hp.audio_dim, "vision": hp.vision_dim}
        specs = modality_specs(
            dataset, text_source, dims, encoder.hidden_size if encoder else None, hp.modalities
        )
        t0 = time.perf_counter()
        inputs = build_inputs(dataset, specs, text_source, encoder)
        timings = {"inputs_s": time.perf_counter() - t0}
        del encoder
        y = torch.from_numpy(np.asarray(dataset.label, dtype=np.float32))
        train_rows, valid_rows = torch.from_numpy(train_rows_np), torch.from_numpy(valid_rows_np)
        reporter = Reporter({**strat.plan(hp), "multitask": hp.multitask_max_epochs}, progress, should_stop)
        reporter.check_stop()

        def build_net(with_projection: bool) -> MultimodalNet:
            return MultimodalNet(_net_spec(specs, hp, with_projection, text_model))

        extras: dict[str, Any] = {}
        ctx = StrategyContext(
            dataset,
            inputs,
            y,
            train_rows,
            valid_rows,
            hp,
            float(dataset.rho),
            gen,
            dev,
            reporter,
            build_net,
            extras,
            threads,
        )
        t0 = time.perf_counter()
        source = strat.label_source(ctx)
        timings["labels_s"] = time.perf_counter() - t0
        timings.update(extras.pop("timings", {}))  # a strategy's own stages (MUG: pretrain_s, meta_s)
        # Stage 3 starts from the same seed for every strategy: same initial weights and batch order, so
        # strategies differ only by their unimodal labels.
        gen3 = seed_everything(seed + 1)
        net = build_net(False).to(dev)
        t0 = time.perf_counter()
        result = multitask_train(net, inputs, y, train_rows, valid_rows, source, hp, gen3, dev, reporter)
        timings["multitask_s"] = time.perf_counter() - t0
        net.load_state_dict(result.state)
        spec = _net_spec(specs, hp, False, text_model)
        labels = source.final_labels()
        metrics = _write_outputs(staging, dataset, net, inputs, dev, labels, train_rows_np)
        save_file(
            {k: v.contiguous() for k, v in net.cpu().state_dict().items()}, str(staging / "model.safetensors")
        )
        timings["total_s"] = time.perf_counter() - started
        model_info = {
            "net_spec": spec.to_json(),
            "rho": float(dataset.rho),
            "text_source": text_source,
            "strategy": strategy,
            "unimodal_heads_trained": labels is not None,
            "code_version": CODE_VERSION,
        }
        write_json(staging / "model.json", model_info)
        config = {
            "strategy": strategy,
            "seed": seed,
            "preset": preset,
            "hyperparameters": hp.record(),
            "code_version": CODE_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "device": str(dev),
            "torch": torch.__version__,
            "dataset": {
                "sha256": dataset.sha256,
                "path": str(dataset.root) if dataset.root else None,
                "summary": dataset.summary(),
            },
            "text_source": text_source,
            "text_model": text_model,
            "stage3": {
                "best_epoch": result.best_epoch,
                "best_valid_loss": round(result.best_valid_loss, 5),
                "epochs_run": len(result.history),
            },
            "strategy_diagnostics": extras,
            "timings": {k: round(v, 3) for k, v in timings.items()},
        }
        write_json(staging / "config.json", config)
        run = RunResult(
            out_dir=out, metrics=metrics, config=config, input_spec=_input_spec(spec, text_source)
        )
        for name, obj in (extra_files(run) if extra_files else {}).items():
            write_json(staging / name, obj)
        if not publish_dir(staging, out, replace=overwrite):
            raise FileExistsError(f"out: {out} was written by another process meanwhile")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return run


def _write_outputs(
    staging: Path,
    ds: Dataset,
    net: MultimodalNet,
    inputs: TensorInputs,
    dev: torch.device,
    labels: dict[str, torch.Tensor] | None,
    train_rows: np.ndarray,
) -> dict[str, Any]:
    preds = predict_rows(net, inputs, torch.arange(len(ds)), dev)
    frame = pd.DataFrame({"id": ds.ids, "split": ds.split, "pred": preds["pred"].numpy()})
    for m, letter in LETTER.items():  # a modality the run left out (or never trained): blank
        frame[f"pred_{letter}"] = preds[m].numpy() if labels is not None and m in preds else np.nan
    write_csv_atomic(staging / "predictions.csv", frame)

    uni = pd.DataFrame({"id": ds.ids[train_rows], "label": ds.label[train_rows]})
    for m, letter in LETTER.items():
        uni[f"label_{letter}"] = labels[m].numpy() if labels is not None and m in labels else np.nan
    write_csv_atomic(staging / "unimodal_labels.csv", uni)

    metrics: dict[str, Any] = {}
    heads: dict[str, dict[str, Any]] = {}
    for split in ("train", "valid", "test"):
        rows = ds.labeled(split)
        if rows.size:
            metrics[split] = _split_metrics(frame["pred"].to_numpy()[rows], ds.label[rows], ds.rho)
            if labels is not None:  # how much of the multimodal label each modality's head predicts alone
                heads[split] = {
                    m: unimodal_label_agreement(preds[m].numpy()[rows], ds.label[rows])
                    for m in net.modalities
                }
    if heads:
        metrics["unimodal_heads_vs_label"] = heads
    if labels is not None and ds.sub_labels:
        agreement = {}
        for m, truth in ds.sub_labels.items():
            if m not in labels:
                continue
            t = truth[train_rows]
            ok = np.isfinite(t)
            if ok.sum() > 1:
                agreement[m] = unimodal_label_agreement(labels[m].numpy()[ok], t[ok])
                agreement[m]["copy_baseline_corr"] = unimodal_label_agreement(
                    ds.label[train_rows][ok], t[ok]
                )["corr"]
        if agreement:
            metrics["unimodal_labels_vs_sub_labels"] = agreement
    write_json(staging / "metrics.json", metrics)
    return metrics


class TrainedModel:
    """A trained run loaded for prediction (weights via safetensors: nothing is unpickled)."""

    def __init__(self, run_dir: Path, info: dict[str, Any], net: MultimodalNet, device: torch.device) -> None:
        self.run_dir = run_dir
        self.info = info
        self.net = net.eval()
        self.device = device
        self._flat = FlatForward.of(self.net)  # None unless every encoder is a vector MLP
        self.spec = NetSpec.from_json(info["net_spec"])
        self.text_source = info["text_source"]
        self._encoder = None
        config_path = run_dir / "config.json"
        self.config: dict[str, Any] = json.loads(config_path.read_text()) if config_path.exists() else {}

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> TrainedModel:
        run = Path(run_dir)
        for name in ("model.json", "model.safetensors"):
            if not (run / name).is_file():
                raise FileNotFoundError(f"run: {run} has no {name}; is it a finished unilabel run?")
        info = json.loads((run / "model.json").read_text())
        spec = NetSpec.from_json(info["net_spec"])
        dev = resolve_device(device)
        net = MultimodalNet(spec)
        net.load_state_dict(load_file(str(run / "model.safetensors")))
        return cls(run, info, net.to(dev), dev)

    @property
    def input_spec(self) -> dict[str, dict[str, Any]]:
        """What predict_batch expects per modality."""
        return _input_spec(self.spec, self.text_source)

    def _text_encoder(self):
        if self._encoder is None:
            from models.text_encoder import TextEncoder

            self._encoder = TextEncoder(
                self.spec.text_model,
                pooling=self.spec.text_pooling,
                max_length=self.spec.text_max_length,
                normalize=self.spec.text_normalize,
            )
        return self._encoder

    def _outputs(self, inputs: TensorInputs, padded_to_fit: bool = False) -> dict[str, np.ndarray]:
        if padded_to_fit and len(inputs) <= DIRECT_BATCH:
            preds = self._forward_whole(inputs)
        else:
            preds = predict_rows(self.net, inputs, torch.arange(len(inputs)), self.device, set_eval=False)
        out = {"pred": preds["pred"].numpy()}
        for m, letter in LETTER.items():
            values = preds[m].numpy() if m in preds else np.full(len(out["pred"]), np.nan, np.float32)
            out[f"pred_{letter}"] = values if self.info["unimodal_heads_trained"] else values * np.nan
        return out

    @torch.inference_mode()
    def _forward_whole(self, inputs: TensorInputs) -> dict[str, torch.Tensor]:
        """One forward pass over a batch built by predict_batch (already padded to its own longest
        sequence): no row indexing, slicing or concatenation, which cost as much as the pass itself for
        the few-utterance batches the service sends; vector-input nets skip nn.Module dispatch too
        (models/flat_forward.py)."""
        tensors = {k: v.to(self.device) for k, v in inputs.tensors.items()}
        if self._flat is not None:
            return {k: v.cpu() for k, v in self._flat(tensors).items()}
        out = self.net(tensors)
        return {"pred": out["pred"].cpu(), **{m: out["uni_pred"][m].cpu() for m in self.net.modalities}}

    def predict_dataset(self, ds: Dataset) -> pd.DataFrame:
        """Predictions (id, split, pred, pred_T, pred_A, pred_V) for every row of ``ds``."""
        if self.text_source == "features" and "text" in self.spec.modalities and "text" not in ds.features:
            raise InputError("features.npz: key 'text': the model was trained on text features; none given")
        encoder = self._text_encoder() if self.text_source in ("encoder", "finetune") else None
        inputs = build_inputs(ds, self.spec.modalities, self.text_source, encoder)
        return pd.DataFrame({"id": ds.ids, "split": ds.split, **self._outputs(inputs)})

    def predict_batch(
        self, features: dict[str, list[np.ndarray]], transcripts: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Predict for a batch given per-modality vectors [d] or sequences [T, d] (and/or transcripts)."""
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
                enc = self._text_encoder()
                if s.kind == "transformer":
                    tok = enc.tokenize(list(transcripts))
                    tensors["text_input_ids"], tensors["text_attention_mask"] = (
                        tok["input_ids"],
                        tok["attention_mask"],
                    )
                else:
                    tensors[m] = torch.from_numpy(enc.encode(list(transcripts)))
                continue
            if m not in features:
                raise ValueError(f"features.{m}: missing; this model needs {m} features")
            tensors.update(_stack_modality(m, features[m], s.in_dim, s.kind == "sequence"))
        return self._outputs(TensorInputs(tensors=tensors, kinds=kinds), padded_to_fit=True)


def _input_spec(spec: NetSpec, text_source: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m, s in spec.modalities.items():
        if m == "text" and text_source in ("encoder", "finetune"):
            out[m] = {"transcript": True}
        else:
            out[m] = {"dim": s.in_dim, "sequence": s.kind == "sequence"}
    return out


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
