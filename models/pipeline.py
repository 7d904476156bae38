"""Train a strategy end to end on a dataset and publish its run directory.

A run directory is the unit of output for the CLI and the service alike (models/run_dir.py lists its files);
models/trained_model.py loads one to predict.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from models.config import HyperparameterError, Hyperparameters, check_seed, resolve_hyperparameters
from models.dataset import Dataset
from models.dataset_loader import load_dataset
from models.inputs import build_inputs, check_modalities, large_features, modality_specs, resolve_text_source
from models.nets import MultimodalNet, NetSpec
from models.report import fsync_files, publish_dir, through_link, write_json
from models.run_dir import staging_dir, write_history, write_outputs
from models.run_notes import recorded_notes, run_notes
from models.stages.common import (
    Cancelled,
    ProgressEvent,
    Reporter,
    TrainingDiverged,
    resolve_device,
    resolve_meta_threads,
    seed_everything,
)
from models.stages.multitask import multitask_train
from models.strategies import STRATEGIES, StrategyContext, get_strategy
from models.text_encoder import TextEncoder, encode_batches
from models.trained_model import input_spec_of
from models.version import code_version

__all__ = [
    "STRATEGIES",
    "Cancelled",
    "HyperparameterError",
    "ProgressEvent",
    "RunResult",
    "resolve_hyperparameters",
    "train",
]


@dataclass
class RunResult:
    out_dir: Path
    metrics: dict[str, Any]
    config: dict[str, Any]
    input_spec: dict[str, dict[str, Any]] = field(default_factory=dict)  # as TrainedModel.input_spec

    @property
    def notes(self) -> list[str]:
        """What the figures say, as config.json keeps it (models.run_notes)."""
        return recorded_notes(self.config)


def _load_text_encoder(hp: Hyperparameters, text_source: str) -> TextEncoder | None:
    if text_source not in ("encoder", "finetune") or "text" not in hp.modalities:
        return None
    return TextEncoder(
        hp.text_model,
        pooling=hp.text_pooling,
        max_length=hp.text_max_length,
        normalize=hp.text_normalize,
    )


# What a stage trains with that can blow its loss up: its learning rates and loss weights, and for the stages
# on stage 1's saved representations (meta, mlc) stage 1's rates too, as an exploded stage 1 feeds them
DIVERGENCE_SETTINGS = {
    "pretrain": ("lr", "lr_text_encoder", "gamma", "eta", "tau"),
    "meta": ("meta_lr", "meta_test_lr", "lr", "lr_text_encoder"),
    "mlc": ("mlc_main_lr", "mlc_meta_lr", "lr", "lr_text_encoder"),
    "cmc": ("lr", "lr_text_encoder", "cmc_temperature", "cmc_contrastive_weight"),
    "mtcl": ("lr", "lr_text_encoder"),
    "multitask": ("lr", "lr_text_encoder", "beta", "selfmm_weight"),
}


def divergence_hint(
    stage: str, strategy: str, hp: Hyperparameters, dataset: Dataset, text_source: str
) -> str:
    """What to change after ``stage`` diverged: the settings it trains with (those the strategy reads; any
    changed from its default first, with the default) and the modalities whose features are far from
    standardised."""
    strat = get_strategy(strategy)
    names = [
        n
        for n in DIVERGENCE_SETTINGS.get(stage, ())
        if strat.reads(n) and (n != "lr_text_encoder" or text_source == "finetune")
    ]
    default = {n: Hyperparameters.model_fields[n].default for n in names}
    names.sort(key=lambda n: getattr(hp, n) == default[n])  # stable: the changed ones first
    parts = []
    if names:
        values = ", ".join(
            f"{n}={getattr(hp, n)}" + (f" (default {default[n]})" if getattr(hp, n) != default[n] else "")
            for n in names
        )
        parts.append(f"lower the settings that drive it ({values})")
    return " or ".join(parts + large_features(dataset, hp.modalities))


def net_spec(specs: dict, hp: Hyperparameters, with_projection: bool, text_model: str | None) -> NetSpec:
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


def train(
    dataset: Dataset | str | Path,
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
    before_publish: Callable[[RunResult], dict[str, Any]] | None = None,
    text_cache_dir: str | Path | None = None,
) -> RunResult:
    """Learn unimodal labels with ``strategy`` and train the multitask model; write the run directory.

    ``dataset``: a Dataset, or the path of one (loaded with models.dataset_loader.load_dataset).

    ``preset``: a column of the paper's Table 2 (models.config.PRESETS: mosi, mosei, sims) under the
    ``hyperparameters`` overrides; recorded in config.json.

    ``meta_threads``: modalities MUG meta-learns side by side in stage 2 (None: one per modality, at most one
    per available CPU core). It changes only the speed: the run is bit for bit the same for every value.

    ``before_publish``: called with the finished run just before it is published; returns JSON files (name ->
    object) to write into it, so they appear with the rest of the run (the service's card.json). Whatever it
    raises stops the publish, nothing written (the service's worker does when its job was taken from it).

    ``text_cache_dir``: where the frozen text encoder's embeddings are kept (default: $UNILABEL_CACHE_DIR,
    else ~/.cache/unilabel; the service keeps them with the dataset, so they go when it is deleted).

    Returns the run's RunResult; its ``notes`` (config.json's too) say when on valid the model does no better
    than a constant (models.run_notes). Raises HyperparameterError / InputError / ValueError for bad settings,
    Cancelled when ``should_stop`` returns True between epochs (nothing is written then).
    """
    started = time.perf_counter()
    if isinstance(dataset, (str, Path)):
        dataset = load_dataset(dataset)
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset: a Dataset or the path of one, got {type(dataset).__name__}")
    if not isinstance(out_dir, (str, Path)):
        raise ValueError(f"out_dir: the path of the run directory to write, got {out_dir!r}")
    progress = progress or None  # progress=False, as compare() takes it: no progress
    if progress is not None and not callable(progress):
        raise ValueError(f"progress: a function taking a ProgressEvent, or None; got {progress!r}")
    if should_stop is not None and not callable(should_stop):
        raise ValueError(f"should_stop: a function returning True to stop, or None; got {should_stop!r}")
    strat = get_strategy(strategy)
    seed = check_seed(seed)
    hp = resolve_hyperparameters(hyperparameters, rho=dataset.rho, preset=preset)
    dev = resolve_device(device)
    threads = resolve_meta_threads(meta_threads)
    train_rows_np, valid_rows_np = dataset.labeled("train"), dataset.labeled("valid")
    if train_rows_np.size == 0 or valid_rows_np.size == 0:
        raise ValueError("dataset: training needs labeled train and valid rows")
    check_modalities(hp.modalities, dataset.features)
    text_source = resolve_text_source(dataset, hp.text_source, hp.text_model, hp.modalities)
    strat.check(dataset, hp)
    out = through_link(Path(out_dir))  # the run goes where a link points, the link stays
    staging = staging_dir(out, overwrite, dataset.root)
    try:
        gen = seed_everything(seed)
        encoder = _load_text_encoder(hp, text_source)
        text_model = None if encoder is None else str(encoder.model_path)  # config.json: what was read
        # model.json: null for the packaged encoder, found wherever the run is loaded (its directory here is
        # inside this Python environment: a run copied to another machine, downloaded from the service or
        # read after the environment was made again would look for it in vain); a model of the user's by
        # its absolute path as given (links not followed), so that the run loads from any working directory
        spec_text_model = str(Path(hp.text_model).expanduser().absolute()) if hp.text_model else None
        dims = {"text": hp.text_dim, "audio": hp.audio_dim, "vision": hp.vision_dim}
        specs = modality_specs(
            dataset, text_source, dims, encoder.hidden_size if encoder else None, hp.modalities
        )
        # the frozen encoder's batches are a stage of their own (34 s on MOSI the first time)
        encoding = encode_batches(len(dataset)) if text_source == "encoder" and encoder is not None else 0
        plan = {"encode": encoding, **strat.plan(hp), "multitask": hp.multitask_max_epochs}
        events: list[ProgressEvent] = []  # every event, for history.csv; the caller's callback sees each too

        def record(event: ProgressEvent) -> None:
            # a copy: the caller's callback may keep or change the event it is given
            events.append(replace(event, losses=dict(event.losses), metrics=dict(event.metrics)))
            if progress is not None:
                progress(event)

        reporter = Reporter(plan, record, should_stop)
        reporter.check_stop()
        t0 = time.perf_counter()
        inputs = build_inputs(
            dataset,
            specs,
            text_source,
            encoder,
            lambda done, _total: reporter.epoch("encode", done, units=done - reporter.done["encode"]),
            None if text_cache_dir is None else Path(text_cache_dir),
        )
        timings = {"inputs_s": time.perf_counter() - t0}
        del encoder

        def build_net(with_projection: bool) -> MultimodalNet:
            return MultimodalNet(net_spec(specs, hp, with_projection, spec_text_model))

        ctx = StrategyContext(dataset, inputs, hp, gen, dev, reporter, build_net, meta_threads=threads)
        t0 = time.perf_counter()
        source = strat.label_source(ctx)
        timings["labels_s"] = time.perf_counter() - t0
        timings.update(ctx.timings)
        # Stage 3 starts from the same seed for every strategy: same initial weights and batch order, so
        # strategies differ only by their unimodal labels.
        gen3 = seed_everything(seed + 1)
        net = build_net(False).to(dev)
        t0 = time.perf_counter()
        result = multitask_train(
            net, inputs, ctx.y, ctx.train_rows, ctx.valid_rows, source, hp, gen3, dev, reporter
        )
        timings["multitask_s"] = time.perf_counter() - t0
        net.load_state_dict(result.state)
        spec = net.spec
        labels = source.final_labels()
        metrics, pred = write_outputs(staging, dataset, net, inputs, dev, labels, train_rows_np)
        weights = staging / "model.safetensors"
        save_file({k: v.contiguous() for k, v in net.cpu().state_dict().items()}, str(weights))
        weights.chmod(0o644)  # safetensors writes 0600; readable as the run's other files are
        timings["total_s"] = time.perf_counter() - started
        model_info = {
            "net_spec": spec.to_json(),
            "rho": float(dataset.rho),
            "text_source": text_source,
            "strategy": strategy,
            "unimodal_heads_trained": labels is not None,
            "code_version": code_version(),
        }
        write_json(staging / "model.json", model_info)
        config = {
            "strategy": strategy,
            "seed": seed,
            "preset": preset,
            "hyperparameters": hp.record(),
            "code_version": code_version(),
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
            "strategy_diagnostics": ctx.diagnostics,
            "notes": run_notes(dataset, metrics, pred),
            "timings": {k: round(v, 3) for k, v in timings.items()},
        }
        write_json(staging / "config.json", config)
        write_history(staging, events)
        run = RunResult(
            out_dir=out,
            metrics=metrics,
            config=config,
            input_spec=input_spec_of(spec, text_source),
        )
        fsync_files(staging)  # the slow part before the last word of before_publish, then a rename
        for name, obj in (before_publish(run) if before_publish else {}).items():
            write_json(staging / name, obj)
        if not publish_dir(staging, out, replace=overwrite):
            raise FileExistsError(f"out: {out} was written by another process meanwhile")
    except TrainingDiverged as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise err.with_hint(divergence_hint(err.stage, strategy, hp, dataset, text_source)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return run
