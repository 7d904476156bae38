"""Hyperparameters: defaults (MUG paper Table 2, MOSI column, where they fit), validation and recording.

Every value is overridable by name; ``resolve_hyperparameters`` returns the complete, validated dict that is
recorded in a run's config.json. Choices the paper leaves open are marked "choice" and explained in
docs/method.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MODALITIES = ("text", "audio", "vision")
TEXT_SOURCES = ("auto", "features", "encoder", "finetune")
TEXT_POOLINGS = ("cls", "mean")


class HyperparameterError(ValueError):
    """A hyperparameter override (or the preset) is unknown or out of range; names the field."""

    def __init__(self, field: str, message: str, prefix: str = "hyperparameters.") -> None:
        super().__init__(f"{prefix}{field}: {message}")
        self.field = field
        self.message = message

    @classmethod
    def for_preset(cls, value: Any) -> HyperparameterError:
        return cls("preset", f"unknown preset {value!r}; choose from {', '.join(PRESETS)}", prefix="")


@dataclass(frozen=True)
class Hyperparameters:
    # shared by the stages
    modalities: tuple[str, ...] = MODALITIES  # which modalities the networks see (and get unimodal labels)
    batch_size: int = 32  # Table 2
    lr: float = (
        1e-3  # choice: Table 2's 3e-5 is the BERT rate; feature networks use 1e-3 (as Self-MM's "other lr")
    )
    lr_text_encoder: float = 3e-5  # Table 2 learning rate, applied to the fine-tuned text encoder (Eq. 1)
    weight_decay: float = 0.01  # AdamW default
    dropout: float = 0.1  # choice
    fusion_dim: int = 32  # Table 2 d
    audio_dim: int = 256  # Table 2 d_a
    vision_dim: int = 64  # Table 2 d_v
    text_dim: int = 64  # Table 2 d_l
    predictor_hidden: int = 32  # choice (Fig. 3 missing)
    # stage 1: pre-training with the contrastive projection module
    pretrain_epochs: int = 15  # Table 2
    gamma: float = 0.01  # Table 2 contrastive weight
    eta: float = 0.01  # Table 2 projected predictive weight
    tau: float = 0.1  # choice: InfoNCE temperature (not given by the paper)
    # stage 2: meta-learning of MUCN
    meta_epochs: int = 65  # Table 2
    meta_lr: float = 5e-3  # Table 2 alpha (meta-training, Eq. 15)
    meta_test_lr: float = 1e-3  # Table 2 alpha' (meta-testing, Eq. 23)
    meta_optimizer: str = (
        "adamw"  # Eq. 23's update as an optimiser step (Sec. 4.4: AdamW); "sgd" = plain Eq. 23
    )
    meta_extra_ratio: int = 10  # b in |S'| = b|S| (Sec. 3.3.3)
    lambda_init: float = 0.9  # choice: lambda = lambda_init^(E+1) (Eq. 18); docs/method.md
    label_noise_std: float | None = (
        None  # choice: None = rho / 3 (the paper's N(0, I) on MOSI's [-3, 3] scale)
    )
    mucn_hidden: int = 64  # choice (Fig. 3 missing)
    mucn_input_norm: str = "l2"  # choice: MUCN sees L2-normalised x_m / x_m' (the space CPM aligns, Eq. 10)
    mucn_residual: str = (
        "atanh"  # choice: the input label enters Eq. 28 as atanh(ybar / rho); "literal" as is
    )
    label_readout: str = "clean"  # choice: labels = MUCN(x_m, y); "noisy_mean": mean of MUCN(x_m, y + eps)
    readout_draws: int = 16  # choice: noise draws averaged by the noisy_mean read-out
    second_order: bool = True  # Eq. 23 differentiates through the inner step; False = first-order ablation
    multimodal_denoising: bool = True  # False = the paper's "W/O multimodal denoising task" ablation
    # stage 3: multi-task training
    beta: float = 0.01  # Table 2 unimodal task weight (Eq. 27)
    multitask_max_epochs: int = 60  # choice: upper bound; early stopping usually ends sooner
    early_stop: int = 8  # Sec. 4.4
    # text
    text_source: str = "auto"  # auto = frozen encoder on transcripts when every row has one, else features
    text_model: str | None = None  # local transformers model dir; None = packaged all-MiniLM-L6-v2
    text_pooling: str = "mean"  # choice: Eq. 1 takes the first token; MiniLM was trained with mean pooling
    text_normalize: bool = True  # choice: unit-norm sentence vectors (as sentence-transformers gives them)
    text_max_length: int = 64
    # related strategies selfmm / mlc / cmc / mtcl (docs/strategies.md)
    selfmm_weight: float = 1.0  # Self-MM sums its four task losses (MMSA SELF_MM.py): unimodal weight 1
    selfmm_update_every: int = 4  # MMSA update_epochs: one optimiser step per 4 batches' summed gradients
    mlc_epochs: int = 65  # choice: MLC bi-level epochs; MUG's stage-2 budget (Table 2 meta epochs)
    mlc_main_lr: float = 0.1  # choice: SGD step eta of the MLC main network (MW-Net/MLC CIFAR SGD rate)
    mlc_meta_lr: float = 1e-3  # choice: Adam lr of MLC's label-correction network (as MUG's alpha')
    cmc_epochs: int = 30  # choice: PLGM pre-training epochs (CMC: up to 100, patience 10)
    cmc_momentum_text: float = 0.8  # CMC m_0 of the text pseudo labels
    cmc_momentum_audio: float = 0.99  # CMC m_0 of the audio pseudo labels
    cmc_momentum_vision: float = 0.99  # CMC m_0 of the vision pseudo labels
    cmc_momentum_gamma: float = 0.5  # CMC: m_e = 1 - (1 - m_0) / e^gamma
    cmc_temperature: float = 0.07  # CMC supervised contrastive temperature
    cmc_contrastive_weight: float = 1.0  # CMC adds the SupCon loss unweighted; 0 = off
    cmc_neutral_band: float = 0.0  # |y| <= band is class neu; 0 = CMC's y == 0
    mtcl_epochs: int = 30  # MTCL n_epochs (selection on valid MAE, patience early_stop)
    mtcl_eliminate_rate: float = 0.44  # MTCL r: the harmful share (task-corrected to the multimodal label)


_POSITIVE_INT = {
    "batch_size",
    "fusion_dim",
    "audio_dim",
    "vision_dim",
    "text_dim",
    "predictor_hidden",
    "mucn_hidden",
    "meta_extra_ratio",
    "multitask_max_epochs",
    "early_stop",
    "text_max_length",
    "mlc_epochs",
    "cmc_epochs",
    "mtcl_epochs",
    "readout_draws",
    "selfmm_update_every",
}
_NONNEG_INT = {"pretrain_epochs", "meta_epochs"}
_POSITIVE_FLOAT = {
    "lr",
    "lr_text_encoder",
    "meta_lr",
    "meta_test_lr",
    "tau",
    "mlc_main_lr",
    "mlc_meta_lr",
    "cmc_temperature",
}
_NONNEG_FLOAT = {
    "selfmm_weight",
    "weight_decay",
    "gamma",
    "eta",
    "beta",
    "cmc_momentum_gamma",
    "cmc_contrastive_weight",
    "cmc_neutral_band",
}
_FRACTIONS = {  # name -> (allowed interval, upper bound included)
    "cmc_momentum_text": ("[0, 1)", False),
    "cmc_momentum_audio": ("[0, 1)", False),
    "cmc_momentum_vision": ("[0, 1)", False),
    "mtcl_eliminate_rate": ("[0, 1]", True),
}
_CHOICES = {
    "text_source": TEXT_SOURCES,
    "text_pooling": TEXT_POOLINGS,
    "mucn_input_norm": ("l2", "none"),
    "mucn_residual": ("atanh", "literal"),
    "label_readout": ("noisy_mean", "clean"),
    "meta_optimizer": ("adamw", "adam", "sgd"),
}


def _check(name: str, value: Any) -> Any:
    if name in _POSITIVE_INT | _NONNEG_INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise HyperparameterError(name, f"must be an integer, got {value!r}")
        low = 1 if name in _POSITIVE_INT else 0
        if value < low:
            raise HyperparameterError(name, f"must be >= {low}, got {value}")
        return value
    floats = _POSITIVE_FLOAT | _NONNEG_FLOAT | set(_FRACTIONS)
    if name in floats | {"dropout", "lambda_init", "label_noise_std"}:
        if value is None and name == "label_noise_std":
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise HyperparameterError(name, f"must be a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise HyperparameterError(name, "must be finite")
        if name in _POSITIVE_FLOAT and value <= 0:
            raise HyperparameterError(name, f"must be > 0, got {value}")
        if name in _NONNEG_FLOAT | {"label_noise_std"} and value < 0:
            raise HyperparameterError(name, f"must be >= 0, got {value}")
        if name == "dropout" and not 0 <= value < 1:
            raise HyperparameterError(name, f"must be in [0, 1), got {value}")
        if name == "lambda_init" and not 0 <= value < 1:
            raise HyperparameterError(name, f"must be in [0, 1) (the paper: lambda < 1), got {value}")
        if name in _FRACTIONS:
            interval, closed = _FRACTIONS[name]
            if not (0 <= value <= 1 if closed else 0 <= value < 1):
                raise HyperparameterError(name, f"must be in {interval}, got {value}")
        return value
    if name in ("second_order", "multimodal_denoising", "text_normalize"):
        if not isinstance(value, bool):
            raise HyperparameterError(name, f"must be true or false, got {value!r}")
        return value
    if name in _CHOICES:
        if value is None and "none" in _CHOICES[name]:  # the CLI reads `--set mucn_input_norm=none` as null
            value = "none"
        if value not in _CHOICES[name]:
            raise HyperparameterError(name, f"must be one of {', '.join(_CHOICES[name])}, got {value!r}")
        return value
    if name == "modalities":
        return _check_modalities(value)
    if name == "text_model":
        if value is not None and (not isinstance(value, str) or not value):
            raise HyperparameterError(name, f"must be a local model directory path or null, got {value!r}")
        return value
    raise HyperparameterError(name, "unknown hyperparameter")  # pragma: no cover - guarded by caller


# The paper's Table 2, one column per dataset, as named presets (``--preset``, the job body's "preset"). They
# set what Table 2 gives; everything else keeps its default. The noise of both denoising tasks is N(0, I) in
# the paper (Eq. 13, 21) for every dataset, SIMS included.
PRESETS: dict[str, dict[str, Any]] = {
    "mosi": {
        "batch_size": 32,
        "lr_text_encoder": 3e-5,
        "pretrain_epochs": 15,
        "meta_epochs": 65,
        "meta_lr": 5e-3,
        "meta_test_lr": 1e-3,
        "gamma": 0.01,
        "eta": 0.01,
        "fusion_dim": 32,
        "audio_dim": 256,
        "vision_dim": 64,
        "text_dim": 64,
        "beta": 0.01,
        "label_noise_std": 1.0,
    },
    "mosei": {
        "batch_size": 16,
        "lr_text_encoder": 1e-5,
        "pretrain_epochs": 10,
        "meta_epochs": 50,
        "meta_lr": 5e-3,
        "meta_test_lr": 1e-3,
        "gamma": 0.01,
        "eta": 0.01,
        "fusion_dim": 16,
        "audio_dim": 128,
        "vision_dim": 64,
        "text_dim": 64,
        "beta": 1e-4,
        "label_noise_std": 1.0,
    },
    "sims": {
        "batch_size": 32,
        "lr_text_encoder": 2e-5,
        "pretrain_epochs": 20,
        "meta_epochs": 80,
        "meta_lr": 5e-3,
        "meta_test_lr": 1e-3,
        "gamma": 0.01,
        "eta": 0.01,
        "fusion_dim": 128,
        "audio_dim": 256,
        "vision_dim": 256,
        "text_dim": 64,
        "beta": 0.01,
        "label_noise_std": 1.0,
    },
}


SEED_LIMIT = (
    2**32
)  # seeds are whole numbers in [0, 2**32): numpy's seed range, the same in the CLI and the API


def check_seed(seed: Any) -> int:
    """A run's seed, or a ValueError naming ``seed`` (the rule the API's job body applies too)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed: must be a whole number in [0, 2**32), got {seed!r}")
    return seed


def check_preset(preset: Any) -> str | None:
    """A preset name (or None); anything else is a HyperparameterError naming ``preset``."""
    if preset is None or preset in PRESETS:
        return preset
    raise HyperparameterError.for_preset(preset)


def _check_modalities(value: Any) -> list[str]:
    """A list of modality names, or one comma-separated string (the CLI's ``--set modalities=text,audio``);
    returned in the canonical order text, audio, vision."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise HyperparameterError("modalities", f"must be a list of modality names, got {value!r}")
    names = [n.strip() for n in names]
    unknown = [n for n in names if n not in MODALITIES]
    if unknown:
        raise HyperparameterError(
            "modalities", f"unknown modality {unknown[0]!r}; choose from {', '.join(MODALITIES)}"
        )
    if len(set(names)) != len(names):
        raise HyperparameterError("modalities", f"a modality is named twice in {value!r}")
    if not names:
        raise HyperparameterError("modalities", "name at least one modality")
    return [m for m in MODALITIES if m in names]


def resolve_hyperparameters(
    overrides: dict[str, Any] | None = None, *, rho: float | None = None, preset: str | None = None
) -> dict[str, Any]:
    """Defaults, then the ``preset``'s values (PRESETS), then ``overrides``, validated. Unknown names and bad
    values raise HyperparameterError.

    With ``rho`` given, derived values (label_noise_std = rho / 3) are filled in.
    """
    known = {f.name for f in fields(Hyperparameters)}
    values = asdict(Hyperparameters())
    values["modalities"] = list(values["modalities"])  # as config.json gives it back
    values.update(PRESETS[check_preset(preset)] if preset is not None else {})
    if overrides is not None and not isinstance(overrides, dict):
        raise HyperparameterError("*", "must be an object mapping names to values")
    for name, value in (overrides or {}).items():
        if name not in known:
            close = sorted(k for k in known if k.split("_")[0] == str(name).split("_")[0])
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise HyperparameterError(str(name), f"unknown hyperparameter{hint}")
        values[name] = _check(name, value)
    if rho is not None and values["label_noise_std"] is None:
        values["label_noise_std"] = float(rho) / 3.0
    return values


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a CLI ``name=value`` override (numbers, true/false, null, or a string)."""
    if "=" not in text:
        raise HyperparameterError(text, "expected name=value")
    name, raw = text.split("=", 1)
    name = name.strip()
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return name, lowered == "true"
    if lowered in ("null", "none"):
        return name, None
    try:
        return name, int(raw)
    except ValueError:
        pass
    try:
        return name, float(raw)
    except ValueError:
        return name, raw
