"""Hyperparameters: one typed, validated object, its defaults (the MUG paper's Table 2, MOSI column, where
they fit), the per-dataset presets, and the error that names a bad field.

Every value is overridable by name (`--set name=value`, the job body's "hyperparameters"); the names are flat,
the model is composed of one section per stage and per strategy. Each field carries its meaning, its source
(the paper's table or equation, the original repository, or "choice": docs/method.md says why) and its range,
which bound what one request may cost. ``resolve_hyperparameters`` returns the complete ``Hyperparameters``
recorded in a run's config.json.
"""

from __future__ import annotations

import difflib
import numbers
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.modalities import MODALITIES

# seeds are whole numbers in [0, 2**32): numpy's seed range, the same in the CLI and the API
SEED_LIMIT = 2**32
EPOCHS_MAX = 1000  # bounds what one job may cost (a run of the paper's schedule has at most 65 per stage)
WIDTH_MAX = 4096  # layer widths and batch sizes
TEXT_TOKENS_MAX = 512  # text_max_length: BERT-style encoders' position limit


class HyperparameterError(ValueError):
    """A hyperparameter override (or the preset) is unknown or out of range; names the field."""

    def __init__(self, field: str, message: str, prefix: str = "hyperparameters.") -> None:
        super().__init__(f"{prefix}{field}: {message}")
        self.field = field
        self.message = message
        # "hyperparameters." for a name among the overrides, "" for the preset argument: a caller that places
        # the error (the API's body.preset or body.hyperparameters.NAME) tells them apart by it, not by the
        # field's name, which an override may share (`--set preset=mosi`)
        self.prefix = prefix


def _f(default: Any, meaning: str, source: str = "choice", **bounds: Any) -> Any:
    return Field(default, description=meaning, json_schema_extra={"source": source}, **bounds)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SharedSettings(_Section):
    modalities: list[str] = _f(
        list(MODALITIES),
        "the modalities the networks see and get unimodal labels for (any subset of those the dataset has)",
    )
    batch_size: int = _f(32, "utterances per batch in every stage", "Table 2", ge=1, le=WIDTH_MAX)
    lr: float = _f(
        1e-3,
        "AdamW learning rate of the feature networks (Table 2's rate is a BERT fine-tuning rate, used for "
        "lr_text_encoder)",
        gt=0,
        le=1,
    )
    lr_text_encoder: float = _f(
        3e-5, "learning rate of a fine-tuned text encoder (Eq. 1)", "Table 2", gt=0, le=1
    )
    weight_decay: float = _f(
        0.01, "AdamW weight decay (also of the meta-update)", "AdamW's default", ge=0, le=1
    )
    dropout: float = _f(0.1, "dropout before the encoders and the fusion", ge=0, lt=1)
    fusion_dim: int = _f(32, "d, width of the fused representation", "Table 2", ge=1, le=WIDTH_MAX)
    audio_dim: int = _f(256, "d_a, width of the audio representation", "Table 2", ge=1, le=WIDTH_MAX)
    vision_dim: int = _f(64, "d_v, width of the vision representation", "Table 2", ge=1, le=WIDTH_MAX)
    text_dim: int = _f(64, "d_l, width of the text representation", "Table 2", ge=1, le=WIDTH_MAX)
    predictor_hidden: int = _f(
        32, "hidden width of the predictors P^M, P^m (Fig. 3 missing)", ge=1, le=WIDTH_MAX
    )

    @field_validator("modalities", mode="before")
    @classmethod
    def _modalities(cls, value: Any) -> list[str]:
        """A list of names or one comma-separated string (the CLI's `--set modalities=text,audio`), returned
        in the canonical order text, audio, vision."""
        # `--set modalities=` or a trailing comma leaves empty parts: "name at least one" says more
        # than "unknown ''"
        names = [n for n in value.split(",") if n.strip()] if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"must be a list of modality names, got {value!r}")
        names = [n.strip() for n in names]
        unknown = [n for n in names if n not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modality {unknown[0]!r}; choose from {', '.join(MODALITIES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"a modality is named twice in {value!r}")
        if not names:
            raise ValueError("name at least one modality")
        return [m for m in MODALITIES if m in names]


class PretrainSettings(_Section):
    """Stage 1: pre-training with the contrastive projection module (Sec. 3.2)."""

    pretrain_epochs: int = _f(15, "stage-1 epochs", "Table 2", ge=0, le=EPOCHS_MAX)
    gamma: float = _f(0.01, "contrastive loss weight (Eq. 12)", "Table 2", ge=0, le=1000)
    eta: float = _f(0.01, "projected predictive loss weight (Eq. 12)", "Table 2", ge=0, le=1000)
    tau: float = _f(0.1, "InfoNCE temperature (Eq. 11; not given by the paper)", gt=0, le=100)


class MetaSettings(_Section):
    """Stage 2: meta-learning of MUCN (Sec. 3.3)."""

    meta_epochs: int = _f(65, "stage-2 epochs", "Table 2", ge=0, le=EPOCHS_MAX)
    meta_lr: float = _f(5e-3, "alpha, the inner (meta-training) step of Eq. 15", "Table 2", gt=0, le=10)
    meta_test_lr: float = _f(1e-3, "alpha', the meta-update's learning rate (Eq. 23)", "Table 2", gt=0, le=10)
    meta_optimizer: Literal["adamw", "adam", "sgd"] = _f(
        "adamw", "the meta-update as an optimiser step (Sec. 4.4 trains with AdamW); sgd = Eq. 23 as written"
    )
    meta_extra_ratio: int = _f(10, "b in |S'| = b|S| (Sec. 3.3.3)", "Sec. 3.3.3", ge=1, le=100)
    lambda_init: float = _f(
        0.9, "lambda = lambda_init^(E+1) mixes MUCN's own labels into the target (Eq. 18)", ge=0, lt=1
    )
    label_noise_std: float | None = _f(
        None, "std of the label noise of both denoising tasks (Eq. 13, 21); null = rho / 3", ge=0, le=100
    )
    mucn_hidden: int = _f(64, "MUCN's hidden width (Fig. 3 missing)", ge=1, le=WIDTH_MAX)
    mucn_input_norm: Literal["l2", "none"] = _f(
        "l2", "MUCN sees L2-normalised x_m and x_m' (the space CPM aligns)"
    )
    mucn_residual: Literal["atanh", "literal"] = _f(
        "atanh",
        "how the input label enters Eq. 28: as atanh(ybar / rho) (identity at zero correction) or as is",
    )
    label_readout: Literal["clean", "noisy_mean"] = _f(
        "clean", "labels = MUCN(x_m, y); noisy_mean: the mean of MUCN(x_m, y + eps) over readout_draws draws"
    )
    readout_draws: int = _f(16, "noise draws averaged by the noisy_mean read-out", ge=1, le=1000)
    second_order: bool = _f(
        True, "Eq. 23 differentiates through the inner step; false = first order", "Eq. 23"
    )
    multimodal_denoising: bool = _f(
        True, "false = the paper's 'W/O multimodal denoising task' ablation", "Table 5"
    )

    @field_validator("mucn_input_norm", mode="before")
    @classmethod
    def _none_is_a_name(cls, value: Any) -> Any:
        return "none" if value is None else value  # the CLI reads `--set mucn_input_norm=none` as null


class MultitaskSettings(_Section):
    """Stage 3: the multitask model trained from scratch on the unimodal labels (Sec. 3.4)."""

    beta: float = _f(0.01, "weight of the unimodal losses (Eq. 27)", "Table 2", ge=0, le=1000)
    multitask_max_epochs: int = _f(
        60, "stage-3 epoch cap (early stopping usually ends sooner)", ge=1, le=EPOCHS_MAX
    )
    early_stop: int = _f(
        8, "epochs without valid-loss improvement before stage 3 stops", "Sec. 4.4", ge=1, le=EPOCHS_MAX
    )


class TextSettings(_Section):
    text_source: Literal["auto", "features", "encoder", "finetune"] = _f(
        "auto",
        "auto: the frozen encoder on the transcripts when every row has one, else the text features; "
        "finetune: Eq. 1",
    )
    text_model: str | None = _f(
        None,
        "a local transformers model directory, read when text comes from the transcripts; null = the "
        "packaged all-MiniLM-L6-v2",
    )
    text_pooling: Literal["cls", "mean"] = _f(
        "mean", "sentence vector: first token (Eq. 1) or mean of the tokens"
    )
    text_normalize: bool = _f(True, "unit-norm sentence vectors (as sentence-transformers gives them)")
    text_max_length: int = _f(64, "tokens kept per transcript", ge=2, le=TEXT_TOKENS_MAX)

    @field_validator("text_model")
    @classmethod
    def _model_dir(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must be a local model directory path or null, got ''")
        return value


class SelfMMSettings(_Section):
    selfmm_weight: float = _f(
        1.0, "weight of Self-MM's unimodal losses (it sums its four tasks)", "MMSA SELF_MM.py", ge=0, le=1000
    )
    selfmm_update_every: int = _f(
        4, "batches per optimiser step (summed gradients)", "MMSA update_epochs", ge=1, le=64
    )


class MLCSettings(_Section):
    mlc_epochs: int = _f(65, "MLC's bi-level epochs (MUG's stage-2 budget)", ge=1, le=EPOCHS_MAX)
    mlc_main_lr: float = _f(0.1, "SGD step of MLC's main network (MW-Net/MLC's CIFAR rate)", gt=0, le=10)
    mlc_meta_lr: float = _f(
        1e-3, "Adam learning rate of MLC's label-correction network (as alpha')", gt=0, le=10
    )


class CMCSettings(_Section):
    cmc_epochs: int = _f(30, "PLGM pre-training epochs (CMC: up to 100, patience 10)", ge=1, le=EPOCHS_MAX)
    cmc_momentum_text: float = _f(0.8, "m_0 of the text pseudo labels", "gw-zhong/CMC", ge=0, lt=1)
    cmc_momentum_audio: float = _f(0.99, "m_0 of the audio pseudo labels", "gw-zhong/CMC", ge=0, lt=1)
    cmc_momentum_vision: float = _f(0.99, "m_0 of the vision pseudo labels", "gw-zhong/CMC", ge=0, lt=1)
    cmc_momentum_gamma: float = _f(0.5, "m_e = 1 - (1 - m_0) / e^gamma", "gw-zhong/CMC", ge=0, le=100)
    cmc_temperature: float = _f(0.07, "supervised contrastive temperature", "gw-zhong/CMC", gt=0, le=100)
    cmc_contrastive_weight: float = _f(
        1.0, "weight of the contrastive loss; 0 = off", "gw-zhong/CMC", ge=0, le=1000
    )
    cmc_neutral_band: float = _f(0.0, "|y| <= band is the neutral class; 0 = CMC's y == 0", ge=0, le=100)


class MTCLSettings(_Section):
    mtcl_epochs: int = _f(
        30, "pre-stage epoch cap (selection on valid MAE)", "tiggers23/MTCL n_epochs", ge=1, le=EPOCHS_MAX
    )
    mtcl_eliminate_rate: float = _f(
        0.44,
        "r, the harmful share (its targets corrected to the multimodal label)",
        "tiggers23/MTCL",
        ge=0,
        le=1,
    )


class Hyperparameters(  # bases last to first: pydantic lists the last base's fields first
    MTCLSettings,
    CMCSettings,
    MLCSettings,
    SelfMMSettings,
    TextSettings,
    MultitaskSettings,
    MetaSettings,
    PretrainSettings,
    SharedSettings,
):
    """Every hyperparameter of every strategy, validated and immutable."""

    def noise_std(self, rho: float) -> float:
        """The denoising tasks' label noise: ``label_noise_std``, or rho / 3 when it is null."""
        return float(self.label_noise_std if self.label_noise_std is not None else rho / 3.0)

    def record(self) -> dict[str, Any]:
        """As config.json and the job record hold it (plain JSON values)."""
        return self.model_dump(mode="json")


# The paper's Table 2, one column per dataset, as named presets (``--preset``, the job body's "preset"). They
# set what Table 2 gives; everything else keeps its default. The noise of both denoising tasks is N(0, I) in
# the paper (Eq. 13, 21) for every dataset, SIMS included.
_TABLE2_COMMON = {"meta_lr": 5e-3, "meta_test_lr": 1e-3, "gamma": 0.01, "eta": 0.01, "label_noise_std": 1.0}
PRESETS: dict[str, dict[str, Any]] = {
    "mosi": {
        **_TABLE2_COMMON,
        "batch_size": 32,
        "lr_text_encoder": 3e-5,
        "pretrain_epochs": 15,
        "meta_epochs": 65,
        "fusion_dim": 32,
        "audio_dim": 256,
        "vision_dim": 64,
        "text_dim": 64,
        "beta": 0.01,
    },
    "mosei": {
        **_TABLE2_COMMON,
        "batch_size": 16,
        "lr_text_encoder": 1e-5,
        "pretrain_epochs": 10,
        "meta_epochs": 50,
        "fusion_dim": 16,
        "audio_dim": 128,
        "vision_dim": 64,
        "text_dim": 64,
        "beta": 1e-4,
    },
    "sims": {
        **_TABLE2_COMMON,
        "batch_size": 32,
        "lr_text_encoder": 2e-5,
        "pretrain_epochs": 20,
        "meta_epochs": 80,
        "fusion_dim": 128,
        "audio_dim": 256,
        "vision_dim": 256,
        "text_dim": 64,
        "beta": 0.01,
    },
}


def section_of(name: str) -> str:
    """The section of a hyperparameter ("Meta" for meta_epochs), as a strategy's ``sections`` name it."""
    for section in Hyperparameters.__bases__:
        if name in section.model_fields:
            return section.__name__.removesuffix("Settings")
    raise KeyError(name)


def check_seed(seed: Any) -> int:
    """A run's seed, or a ValueError naming ``seed`` (the rule the API's job body applies too)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed: must be a whole number in [0, 2**32), got {seed!r}")
    return int(seed)  # numpy's integers (a loop over np.arange) as Python's


def check_preset(preset: Any) -> str | None:
    """A preset name (or None); anything else is a HyperparameterError naming ``preset``."""
    if preset is None or preset in PRESETS:
        return preset
    raise HyperparameterError(
        "preset", f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}", prefix=""
    )


# a run's options beside its hyperparameters, each given on its own in every front end: `unilabel train` and
# `unilabel-remote submit` take --strategy, --seed, --preset, a job's body "strategy", "seed", "preset", the
# page a field each; given as a hyperparameter (`--set preset=mosi`), the error says where they go.
RUN_OPTIONS = ("strategy", "seed", "preset")


def unknown_name(name: str, most: int = 6) -> HyperparameterError:
    """The error for a name no hyperparameter has, with the names it may have meant: those holding all
    its words (``epochs`` -> pretrain_epochs, meta_epochs, ...), else the closest spellings (``betta``); a
    run's own option (RUN_OPTIONS) is said to be one."""
    if name in RUN_OPTIONS:
        where = f'--{name}; in a job\'s body "{name}", beside "hyperparameters"'
        return HyperparameterError(name, f"not a hyperparameter but an option of the run: give it as {where}")
    known, words = list(Hyperparameters.model_fields), set(name.lower().split("_"))
    close = [k for k in known if words <= set(k.split("_"))][:most]
    close = close or difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "`unilabel hyperparameters` lists them"
    return HyperparameterError(name, f"unknown hyperparameter ({hint})")


def resolve_hyperparameters(
    overrides: dict[str, Any] | None = None, *, rho: float | None = None, preset: str | None = None
) -> Hyperparameters:
    """Defaults, then the ``preset``'s values (PRESETS), then ``overrides``, validated. Unknown names and bad
    values raise HyperparameterError naming the field (with a suggestion for a misspelt name).

    With ``rho`` given, derived values (label_noise_std = rho / 3) are filled in.
    """
    if overrides is not None and not isinstance(overrides, dict):
        raise HyperparameterError("*", "must be an object mapping names to values")
    for name in overrides or {}:
        if name not in Hyperparameters.model_fields:
            raise unknown_name(str(name))
    given = {name: _python_number(value) for name, value in (overrides or {}).items()}
    values = {**(PRESETS[check_preset(preset)] if preset is not None else {}), **given}
    try:
        hp = Hyperparameters(**values)
    except ValidationError as err:
        raise _named(err) from None
    if rho is not None and hp.label_noise_std is None:
        hp = hp.model_copy(update={"label_noise_std": hp.noise_std(rho)})
    return hp


def _python_number(value: Any) -> Any:
    """numpy's numbers (np.int64(2) from a loop over np.arange) as Python's, which the strict fields take."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _named(err: ValidationError) -> HyperparameterError:
    """pydantic's first error as ours: the field, then what it must be and what it got."""
    first = err.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "*"
    kind, ctx, got = first["type"], first.get("ctx") or {}, first.get("input")
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        message = f"must be {bounds[kind]} {limit}, got {got!r}"
    elif kind in ("int_type", "int_from_float", "int_parsing"):
        message = f"must be an integer, got {got!r}"
    elif kind in ("float_type", "float_parsing"):
        message = f"must be a number, got {got!r}"
    elif kind == "finite_number":
        message = "must be finite"
    elif kind == "bool_type":
        message = f"must be true or false, got {got!r}"
    elif kind == "literal_error":
        choices = get_args(Hyperparameters.model_fields[name].annotation)
        message = f"must be one of {', '.join(choices)}, got {got!r}"
    elif kind == "string_type":
        message = f"must be a string or null, got {got!r}"
    elif kind == "value_error":
        message = str(ctx.get("error", first["msg"]))
    else:
        message = first["msg"]
    return HyperparameterError(name, message)
