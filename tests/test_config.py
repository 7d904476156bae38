"""Hyperparameter presets (the paper's Table 2 columns) and modality subsets."""

from __future__ import annotations

import pytest

from models.config import PRESETS, HyperparameterError, resolve_hyperparameters

# The MUG paper's Table 2, transcribed column by column.
TABLE2 = {
    "mosi": dict(batch_size=32, lr_text_encoder=3e-5, pretrain_epochs=15, meta_epochs=65, fusion_dim=32,
                 audio_dim=256, vision_dim=64, text_dim=64, beta=0.01),
    "mosei": dict(batch_size=16, lr_text_encoder=1e-5, pretrain_epochs=10, meta_epochs=50, fusion_dim=16,
                  audio_dim=128, vision_dim=64, text_dim=64, beta=1e-4),
    "sims": dict(batch_size=32, lr_text_encoder=2e-5, pretrain_epochs=20, meta_epochs=80, fusion_dim=128,
                 audio_dim=256, vision_dim=256, text_dim=64, beta=0.01),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TABLE2))
def test_presets_are_table2_columns_with_unit_noise(name: str) -> None:
    hp = resolve_hyperparameters(None, rho=1.0 if name == "sims" else 3.0, preset=name)
    for key, value in TABLE2[name].items():
        assert hp[key] == value, key
    assert (hp["meta_lr"], hp["meta_test_lr"], hp["gamma"], hp["eta"]) == (5e-3, 1e-3, 0.01, 0.01)
    assert hp["label_noise_std"] == 1.0  # N(0, I) for every dataset, SIMS' [-1, 1] included


def test_preset_under_overrides_and_sims_noise_differs_from_the_default() -> None:
    hp = resolve_hyperparameters({"beta": 0.5}, rho=1.0, preset="mosei")
    assert hp["beta"] == 0.5 and hp["fusion_dim"] == 16
    assert resolve_hyperparameters(None, rho=1.0)["label_noise_std"] == pytest.approx(1 / 3)  # no preset
    assert set(PRESETS) == {"mosi", "mosei", "sims"}


def test_unknown_preset_is_named() -> None:
    with pytest.raises(HyperparameterError, match=r"^preset: unknown preset 'imdb'; choose from mosi"):
        resolve_hyperparameters(None, preset="imdb")


@pytest.mark.parametrize(
    "given, expected",
    [
        ("text,audio", ["text", "audio"]),
        ("audio, text", ["text", "audio"]),  # canonical order
        (["vision"], ["vision"]),
        (("text", "audio", "vision"), ["text", "audio", "vision"]),
    ],
)
def test_modalities_accept_a_list_or_a_comma_separated_string(given, expected) -> None:
    assert resolve_hyperparameters({"modalities": given})["modalities"] == expected


@pytest.mark.parametrize(
    "given, message",
    [
        ("text,smell", "unknown modality 'smell'"),
        (["text", "text"], "named twice"),
        ([], "at least one"),
        (3, "must be a list"),
    ],
)
def test_bad_modalities_are_named(given, message: str) -> None:
    with pytest.raises(HyperparameterError, match=f"hyperparameters.modalities: .*{message}"):
        resolve_hyperparameters({"modalities": given})


def test_meta_optimizer_choices() -> None:
    assert resolve_hyperparameters(None)["meta_optimizer"] == "adamw"
    assert resolve_hyperparameters({"meta_optimizer": "sgd"})["meta_optimizer"] == "sgd"
    with pytest.raises(HyperparameterError, match="meta_optimizer: must be one of adamw, adam, sgd"):
        resolve_hyperparameters({"meta_optimizer": "lbfgs"})


def test_a_choice_named_none_survives_the_cli_parser() -> None:
    from models.config import parse_override

    name, value = parse_override("mucn_input_norm=none")
    assert resolve_hyperparameters({name: value})["mucn_input_norm"] == "none"
