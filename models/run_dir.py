"""What a finished run directory holds, written into its staging folder before the one publish
(models.report.publish_dir): predictions.csv, unimodal_labels.csv, metrics.json, history.csv (config.json,
model.json and model.safetensors are written by models.pipeline.train)."""

from __future__ import annotations

import errno
import glob
import numbers
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.dataset import Dataset
from models.inputs import TensorInputs, large_features
from models.metrics import metrics_in_range, unimodal_label_agreement
from models.modalities import LETTER, MODALITIES
from models.nets import MultimodalNet
from models.processes import left_by_dead_process
from models.report import write_csv_atomic, write_json
from models.stages.common import ProgressEvent
from models.stages.multitask import predict_rows

RUN_FILES = (
    "config.json",
    "unimodal_labels.csv",
    "predictions.csv",
    "metrics.json",
    "history.csv",
    "model.safetensors",
    "model.json",
)
HISTORY_COLUMNS = ("stage", "epoch", "modality", "name", "value")
_PER_MODALITY = re.compile(r"^(?P<name>.+)\[(?P<modality>[a-z]+)\]$")  # "L_pre_all[text]"


def clip_unimodal(pred: torch.Tensor, rho: float) -> torch.Tensor:
    """A unimodal head's predictions clipped to [-rho, rho]: they are labels (an audio head that extrapolates
    to -5.6 on MOSI's [-3, 3] says nothing a -3 would not). The multimodal prediction stays as the model gives
    it, since the metrics are MMSA's, computed on the unclipped prediction (docs/metrics.md)."""
    return pred.clamp(-rho, rho)


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a run that train() published (what --overwrite may replace)."""
    return (path / "config.json").is_file() and (path / "model.json").is_file()


def staging_dir(out: Path, overwrite: bool, dataset_root: Path | None = None) -> Path:
    """A fresh folder beside ``out`` to write the run into (removing those that runs into ``out`` whose
    process is gone left there); FileExistsError if ``out`` holds files and
    ``overwrite`` is false. ``overwrite`` replaces a run directory only, never one that holds the dataset
    (``dataset_root``): publishing removes what ``out`` held, so any other folder would be lost."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out: cannot write a run directory at {out}: it is a file")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"out: {out} already holds files; choose another directory or overwrite (--overwrite)"
            )
        if not is_run_dir(out):
            raise FileExistsError(
                f"out: {out} holds files but no run (config.json and model.json); --overwrite replaces only "
                "a run directory, whose files it removes: choose another directory"
            )
        here = out.resolve()
        if dataset_root is not None and here in (root := dataset_root.resolve(), *root.parents):
            raise FileExistsError(f"out: {out} holds the dataset being trained on ({dataset_root})")
    if os.path.ismount(out):  # before training: a run is published by renaming over out, which this refuses
        raise OSError(
            errno.EBUSY, f"out: {out} is a mount point, which a run cannot replace; give a folder in it"
        )
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for left in out.parent.glob(f".{glob.escape(out.name)}.partial-*"):  # runs into out killed (kill -9)
            if left == staging or left_by_dead_process(left):
                shutil.rmtree(left, ignore_errors=True)
        staging.mkdir()
    except OSError as err:  # named as the user gave it, not as the hidden staging folder beside it
        # with exist_ok, mkdir's "File exists" means a part of the path is a file
        reason = "a part of that path is a file" if isinstance(err, FileExistsError) else err.strerror
        # errno kept: the worker tells a full or read-only artifact volume by it
        raise OSError(err.errno, f"out: cannot write a run directory at {out}: {reason or err}") from None
    return staging


def write_outputs(
    staging: Path,
    ds: Dataset,
    net: MultimodalNet,
    inputs: TensorInputs,
    dev: torch.device,
    labels: dict[str, torch.Tensor] | None,
    train_rows: np.ndarray,
) -> tuple[dict[str, Any], np.ndarray]:
    """predictions.csv (every row), unimodal_labels.csv (the training rows) and metrics.json; returns the
    metrics and the multimodal prediction of every row. A modality the run left out, or every unimodal
    column when no unimodal task was trained, is blank."""
    preds = predict_rows(net, inputs, torch.arange(len(ds)), dev)
    for m in net.modalities:  # a unimodal prediction is a label: kept in the label range (see clip_unimodal)
        preds[m] = clip_unimodal(preds[m], ds.rho)
    frame = pd.DataFrame({"id": ds.ids, "split": ds.split, "pred": preds["pred"].numpy()})
    heads = [m for m in LETTER if labels is not None and m in preds]  # the others' columns are blank
    for m, letter in LETTER.items():
        frame[f"pred_{letter}"] = preds[m].numpy() if m in heads else np.nan
    computed = ["pred", *(f"pred_{LETTER[m]}" for m in heads)]
    check_finite_outputs(ds, frame, np.arange(len(ds)), computed, "the trained model's predictions")

    uni = pd.DataFrame({"id": ds.ids[train_rows], "label": ds.label[train_rows]})
    for m, letter in LETTER.items():
        uni[f"label_{letter}"] = labels[m].numpy() if labels is not None and m in labels else np.nan
    learned = [f"label_{letter}" for m, letter in LETTER.items() if labels is not None and m in labels]
    check_finite_outputs(ds, uni, train_rows, learned, "the learned unimodal labels")
    write_csv_atomic(staging / "predictions.csv", frame)
    write_csv_atomic(staging / "unimodal_labels.csv", uni)

    metrics: dict[str, Any] = {}
    heads: dict[str, dict[str, Any]] = {}
    for split in ("train", "valid", "test"):
        rows = ds.labeled(split)
        if rows.size:
            metrics[split] = metrics_in_range(frame["pred"].to_numpy()[rows], ds.label[rows], ds.rho)
            if labels is not None:  # how much of the multimodal label each modality's head predicts alone
                heads[split] = {
                    m: unimodal_label_agreement(preds[m].numpy()[rows], ds.label[rows])
                    for m in net.modalities
                }
    if heads:
        metrics["unimodal_heads_vs_label"] = heads
    agreement = _agreement_with_sub_labels(ds, labels, train_rows) if labels is not None else {}
    if agreement:
        metrics["unimodal_labels_vs_sub_labels"] = agreement
    write_json(staging / "metrics.json", metrics)
    return metrics, frame["pred"].to_numpy()


def check_finite_outputs(
    ds: Dataset, frame: pd.DataFrame, rows: np.ndarray, columns: list[str], what: str
) -> None:
    """A ValueError naming the columns, rows and splits where ``frame`` (dataset rows ``rows``) holds NaN or
    inf, and the modalities whose features are far from standardised there: a run is never published with
    them (metrics, evaluate and predict would read them as numbers)."""
    finite = np.isfinite(frame[columns].to_numpy(dtype=np.float64))
    bad = ~finite.all(axis=1)
    if not bad.any():
        return
    at = rows[bad]
    names, counts = np.unique(ds.split[at], return_counts=True)
    splits = ", ".join(f"{s} {n}" for s, n in zip(names, counts, strict=True))
    cols = ", ".join(c for c, ok in zip(columns, finite.all(axis=0), strict=True) if not ok)
    ids = ", ".join(map(str, ds.ids[at[:5]])) + (", ..." if len(at) > 5 else "")
    message = f"{what} are NaN or inf on {len(at)} rows ({splits}; ids {ids}; columns {cols})"
    if advice := large_features(ds, ds.features, at):
        message += f": their features overflow the network; {' and '.join(advice)}"
    raise ValueError(message + "; nothing written")


def _agreement_with_sub_labels(
    ds: Dataset, labels: dict[str, torch.Tensor], train_rows: np.ndarray
) -> dict[str, dict[str, float]]:
    """The learned labels against the dataset's reference sub-labels (planted or human), beside what copies
    of the multimodal label would score."""
    agreement = {}
    for m, truth in ds.sub_labels.items():
        if m not in labels:
            continue
        t = truth[train_rows]
        ok = np.isfinite(t)
        if ok.sum() > 1:
            agreement[m] = unimodal_label_agreement(labels[m].numpy()[ok], t[ok])
            agreement[m]["copy_baseline_corr"] = unimodal_label_agreement(ds.label[train_rows][ok], t[ok])[
                "corr"
            ]
    return agreement


def write_history(staging: Path, events: Iterable[ProgressEvent]) -> None:
    """history.csv: every loss and metric of every progress event, one row each (stage, epoch, modality, name,
    value). A name like "L_pre_all[text]" is split into name L_pre_all and modality text; other rows have no
    modality. The epoch of a per-modality row counts that modality's events in its stage, because MUG's meta
    events carry a running count over the modalities, which interleave when they run side by side; rows are
    ordered by stage, modality (text, audio, vision) and epoch so the file does not depend on that
    interleaving."""
    # (stage order, stage, epoch, modality, name, value)
    rows: list[tuple[int, str, int, str, str, float]] = []
    stage_order: dict[str, int] = {}
    seen: dict[tuple[str, str], int] = {}  # (stage, modality) -> events so far
    for event in events:
        order = stage_order.setdefault(event.stage, len(stage_order))
        entries = []  # (name, modality, value), the key split once
        for key, value in {**event.losses, **event.metrics}.items():
            match = _PER_MODALITY.match(key)
            entries.append((match["name"], match["modality"], value) if match else (key, "", value))
        for m in {m for _, m, _ in entries}:
            seen[(event.stage, m)] = seen.get((event.stage, m), 0) + 1
        for name, m, value in entries:
            if not isinstance(value, numbers.Real):  # a stray non-number is left out, not the run
                continue
            epoch = seen[(event.stage, m)] if m else event.epoch
            rows.append((order, event.stage, epoch, m, name, float(value)))
    rank = {m: i for i, m in enumerate(("", *MODALITIES))}
    rows.sort(key=lambda r: (r[0], rank.get(r[3], len(rank)), r[3], r[2]))  # stable: names keep their order
    frame = pd.DataFrame([(r[1], r[2], r[3], r[4], r[5]) for r in rows], columns=list(HISTORY_COLUMNS))
    write_csv_atomic(staging / "history.csv", frame)
