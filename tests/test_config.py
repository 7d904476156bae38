"""Hyperparameter presets (the paper's Table 2 columns) and modality subsets."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.config import PRESETS, HyperparameterError, resolve_hyperparameters
from models.strategies import STRATEGIES
from tests.conftest import TINY

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
        assert getattr(hp, key) == value, key
    assert (hp.meta_lr, hp.meta_test_lr, hp.gamma, hp.eta) == (5e-3, 1e-3, 0.01, 0.01)
    assert hp.label_noise_std == 1.0  # N(0, I) for every dataset, SIMS' [-1, 1] included


def test_preset_under_overrides_and_sims_noise_differs_from_the_default() -> None:
    hp = resolve_hyperparameters({"beta": 0.5}, rho=1.0, preset="mosei")
    assert hp.beta == 0.5 and hp.fusion_dim == 16
    assert resolve_hyperparameters(None, rho=1.0).label_noise_std == pytest.approx(1 / 3)  # no preset
    assert set(PRESETS) == {"mosi", "mosei", "sims"}


def test_unknown_preset_is_named() -> None:
    with pytest.raises(HyperparameterError, match=r"^preset: unknown preset 'imdb'; choose from mosi"):
        resolve_hyperparameters(None, preset="imdb")


@pytest.mark.parametrize(
    "given, expected",
    [
        ("text,audio", ["text", "audio"]),
        ("audio, text", ["text", "audio"]),  # canonical order
        ("text,audio,", ["text", "audio"]),  # a trailing comma
        (["vision"], ["vision"]),
        (("text", "audio", "vision"), ["text", "audio", "vision"]),
    ],
)
def test_modalities_accept_a_list_or_a_comma_separated_string(given, expected) -> None:
    assert resolve_hyperparameters({"modalities": given}).modalities == expected


@pytest.mark.parametrize(
    "given, message",
    [
        ("text,smell", "unknown modality 'smell'"),
        (["text", "text"], "named twice"),
        ([], "at least one"),
        ("", "at least one"),  # `--set modalities=`
        (" , ", "at least one"),
        ([""], "unknown modality ''"),
        (3, "must be a list"),
    ],
)
def test_bad_modalities_are_named(given, message: str) -> None:
    with pytest.raises(HyperparameterError, match=f"hyperparameters.modalities: .*{message}"):
        resolve_hyperparameters({"modalities": given})


def test_meta_optimizer_choices() -> None:
    assert resolve_hyperparameters(None).meta_optimizer == "adamw"
    assert resolve_hyperparameters({"meta_optimizer": "sgd"}).meta_optimizer == "sgd"
    with pytest.raises(HyperparameterError, match="meta_optimizer: must be one of adamw, adam, sgd"):
        resolve_hyperparameters({"meta_optimizer": "lbfgs"})


def test_a_choice_named_none_survives_the_cli_parser() -> None:
    from models.cli_args import parse_override

    name, value = parse_override("mucn_input_norm=none")
    assert resolve_hyperparameters({name: value}).mucn_input_norm == "none"


@pytest.mark.parametrize("seed", [-5, 2**32, 99999999999999999999, 1.5, True, "7"])
def test_seed_rule_names_the_field(seed) -> None:
    from models.config import check_seed

    with pytest.raises(ValueError, match=r"^seed: must be a whole number in \[0, 2\*\*32\)"):
        check_seed(seed)


def test_seed_rule_accepts_the_whole_range() -> None:
    from models.config import check_seed

    assert check_seed(0) == 0 and check_seed(2**32 - 1) == 2**32 - 1


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train", "DATA", "--out", "X", "--seed", "99999999999999999999"],
            "argument --seed: must be a whole",
        ),
        (
            ["train", "DATA", "--out", "X", "--seed", "-5"],
            "argument --seed: must be a whole number in [0, 2**32)",
        ),
        (["compare", "DATA", "--seeds", "1,-3"], "--seeds: must be a whole number in [0, 2**32), got -3"),
    ],
)
def test_cli_seed_rule(args: list[str], message: str, capsys) -> None:
    from models.cli import main

    with pytest.raises(SystemExit) if args[0] == "train" else _no_raise():
        assert main(args) == 2
    assert message in capsys.readouterr().err


def _no_raise():
    import contextlib

    return contextlib.nullcontext()


def test_api_job_body_applies_the_same_seed_rule() -> None:
    from pydantic import ValidationError

    from api_schemas.jobs import JobCreate

    assert JobCreate(dataset_id="d", seed=2**32 - 1).seed == 2**32 - 1  # was refused above 2**31 - 1
    for bad in (-5, 2**32):
        with pytest.raises(ValidationError, match="seed"):
            JobCreate(dataset_id="d", seed=bad)


def test_docs_list_every_hyperparameter_as_generated() -> None:
    """docs/hyperparameters.md is `unilabel hyperparameters --doc`: regenerate it when a field changes."""
    from pathlib import Path

    from models.hyperparameter_docs import hyperparameters_doc

    doc = Path(__file__).resolve().parents[1] / "docs" / "hyperparameters.md"
    assert doc.read_text() == hyperparameters_doc()


def test_hyperparameters_command(capsys) -> None:
    from models.cli import main

    assert main(["hyperparameters", "--strategy", "selfmm", "--preset", "sims"]) == 0
    out = capsys.readouterr().out
    assert "| `selfmm_weight` | 1.0 |" in out and "| `fusion_dim` | 128 |" in out  # SIMS' d = 128
    assert "meta_lr" not in out and "mlc_epochs" not in out  # what selfmm does not read


def test_every_field_says_what_it_is_and_where_it_comes_from() -> None:
    from models.hyperparameter_docs import describe_hyperparameters

    rows = describe_hyperparameters()
    assert all(r["meaning"] and r["source"] and r["range"] for r in rows), [
        r["name"] for r in rows if not r["range"]
    ]
    assert {r["name"]: r["source"] for r in rows}["meta_epochs"] == "Table 2"
    # every bounded number has an upper bound: no request may ask for 10**9 epochs or a 10**12-wide layer
    numeric = [r for r in rows if r["range"].startswith((">", "<"))]
    assert all("<" in r["range"] for r in numeric), [r["name"] for r in numeric if "<" not in r["range"]]


@pytest.mark.parametrize(
    "name, value", [("pretrain_epochs", 10**9), ("audio_dim", 10**12), ("batch_size", 10**6)]
)
def test_costly_requests_are_refused(name: str, value: int) -> None:
    with pytest.raises(HyperparameterError, match=f"hyperparameters.{name}: must be <= "):
        resolve_hyperparameters({name: value})


def test_a_misspelt_name_gets_a_suggestion() -> None:
    with pytest.raises(HyperparameterError, match=r"unknown hyperparameter \(did you mean beta"):
        resolve_hyperparameters({"betta": 0.1})
    with pytest.raises(HyperparameterError, match="unilabel hyperparameters"):
        resolve_hyperparameters({"zzz": 1})
    # a bare word named only the three related systems' epochs, not the stages' (difflib's closest spellings)
    with pytest.raises(HyperparameterError) as err:
        resolve_hyperparameters({"epochs": 5})
    assert err.value.message.startswith(
        "unknown hyperparameter (did you mean pretrain_epochs, meta_epochs, multitask_max_epochs, "
    )
    with pytest.raises(HyperparameterError, match=r"did you mean meta_epochs"):
        resolve_hyperparameters({"meta_epoch": 5})


@pytest.mark.parametrize("name, value", [("preset", "mosi"), ("strategy", "copy"), ("seed", 3)])
def test_a_runs_own_option_given_as_a_hyperparameter_says_where_it_goes(name: str, value: object) -> None:
    """`--set preset=mosi` (and a job body's hyperparameters, the page's settings) was an "unknown
    hyperparameter" with no word of --preset; the API named body.preset, the field the user had not sent."""
    with pytest.raises(HyperparameterError) as err:
        resolve_hyperparameters({name: value})
    assert str(err.value) == (
        f"hyperparameters.{name}: not a hyperparameter but an option of the run: give it as --{name}; "
        f'in a job\'s body "{name}", beside "hyperparameters"'
    )
    assert err.value.prefix == "hyperparameters."  # the API places it at body.hyperparameters.<name>
    with pytest.raises(HyperparameterError) as err:
        resolve_hyperparameters({}, preset="imdb")
    assert err.value.prefix == ""  # the preset argument itself: body.preset


def test_an_override_without_a_name_or_an_equals_sign_says_what_is_expected() -> None:
    from models.cli_args import parse_override

    cases = (("=3", "expected name=value (no name before the =)"), ("beta", "expected name=value"))
    for text, problem in cases:
        with pytest.raises(HyperparameterError) as caught:
            parse_override(text)
        assert str(caught.value) == f"hyperparameters.{text}: {problem}"


# settings a strategy reads only when another setting asks for them (the default leaves them unread)
READ_ON_CONDITION = {"readout_draws": "label_readout=noisy_mean"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_what_a_strategy_says_it_reads_is_what_its_run_reads(
    strategy: str, small_synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's reads of its Hyperparameters, recorded, against ``Strategy.reads``: the notes on unread
    settings and `unilabel hyperparameters --strategy` come from it (mlc was said to read Meta, selfmm and
    none beta: a --set of them changed nothing, unsaid)."""
    import models.pipeline
    from models.config import Hyperparameters, resolve_hyperparameters
    from models.dataset_loader import load_dataset
    from models.strategies import get_strategy

    seen: set[str] = set()
    fields = set(Hyperparameters.model_fields)
    read = Hyperparameters.__getattribute__

    def recording(self: Hyperparameters, name: str) -> object:
        if name in fields:
            seen.add(name)
        return read(self, name)

    def resolved(*args: object, **kwargs: object) -> Hyperparameters:
        hp = resolve_hyperparameters(*args, **kwargs)
        seen.clear()  # resolving fills label_noise_std for the record; the run's reads start here
        return hp

    monkeypatch.setattr(Hyperparameters, "__getattribute__", recording)
    monkeypatch.setattr(models.pipeline, "resolve_hyperparameters", resolved)
    hp = dict(TINY, pretrain_epochs=1, meta_epochs=1, multitask_max_epochs=1)
    hp.update(mlc_epochs=1, cmc_epochs=1, mtcl_epochs=1)
    dataset = load_dataset(small_synth)

    def reads_of_a_run(**settings: object) -> set[str]:
        seen.clear()
        out = tmp_path / f"{strategy}-{len(settings)}"
        models.pipeline.train(dataset, out, strategy=strategy, seed=1, hyperparameters={**hp, **settings})
        return set(seen)

    declared = {name for name in fields if get_strategy(strategy).reads(name)}
    reads = reads_of_a_run()
    assert reads - declared == set(), "read but not declared"
    assert declared - reads <= set(READ_ON_CONDITION), "declared but not read"
    for name, condition in READ_ON_CONDITION.items():
        if name in declared:
            setting, value = condition.split("=")
            assert name in reads_of_a_run(**{setting: value}), condition


def test_numpy_numbers_are_taken_as_pythons() -> None:
    """``for seed in np.arange(1111, 1116): train(..., seed=seed)`` failed: "seed: must be a whole number ...,
    got np.int64(1111)", and so did np.int64 settings ("must be an integer")."""
    import numpy as np

    from models.config import check_seed

    assert check_seed(np.int64(1111)) == 1111 and type(check_seed(np.uint32(7))) is int
    given = {"meta_epochs": np.int64(3), "beta": np.float32(0.5), "lr": np.float64(0.01)}
    hp = resolve_hyperparameters(given)
    assert (hp.meta_epochs, hp.beta, hp.lr) == (3, 0.5, 0.01) and type(hp.meta_epochs) is int
    for bad in (np.bool_(True), np.int64(-1)):
        with pytest.raises(ValueError, match="seed: must be a whole number"):
            check_seed(bad)
    with pytest.raises(HyperparameterError, match="must be an integer, got 2.5"):
        resolve_hyperparameters({"meta_epochs": np.float64(2.5)})


def test_defaults_are_the_papers_b_and_early_stop_and_the_documented_choices() -> None:
    """Sec. 3.3.3: |S'| = b|S| with b = 10; Sec. 4.4: early stop after 8 epochs; docs/method.md's choices
    where the paper is silent: lambda_init = 0.9, tau = 0.1."""
    hp = resolve_hyperparameters(None, rho=3.0)
    assert (hp.meta_extra_ratio, hp.early_stop) == (10, 8)
    assert (hp.lambda_init, hp.tau) == (0.9, 0.1)
