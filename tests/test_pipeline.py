"""End to end through models.pipeline and the CLI on small synthetic data (tiny schedules)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from models.cli import main
from models.config import HyperparameterError, resolve_hyperparameters
from models.dataset_loader import load_dataset
from models.inputs import InputError
from models.pipeline import Cancelled, train
from models.run_dir import RUN_FILES
from models.strategies import STRATEGIES, get_strategy
from models.trained_model import TrainedModel
from tests.conftest import train_recording

STAGES_BEFORE_STAGE_3 = {
    "mug": ["pretrain", "meta"],
    "mlc": ["pretrain", "mlc"],
    "cmc": ["cmc"],
    "mtcl": ["mtcl"],
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_writes_a_complete_run(
    strategy: str, small_synth: Path, tmp_path: Path, tiny_hp
) -> None:
    ds = load_dataset(small_synth)
    result, events = train_recording(ds, tmp_path / "run", strategy, tiny_hp)
    run = result.out_dir
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)
    config = json.loads((run / "config.json").read_text())
    assert config["strategy"] == strategy and config["seed"] == 1
    assert config["hyperparameters"]["meta_epochs"] == 4 and config["dataset"]["sha256"] == ds.sha256
    assert config["code_version"]
    preds = pd.read_csv(run / "predictions.csv", dtype={"id": str})
    assert list(preds.columns) == ["id", "split", "pred", "pred_T", "pred_A", "pred_V"]
    assert len(preds) == len(ds) and preds["pred"].notna().all()  # every row, unlabeled ones included
    labels = pd.read_csv(run / "unimodal_labels.csv", dtype={"id": str})
    assert list(labels.columns) == ["id", "label", "label_T", "label_A", "label_V"]
    assert len(labels) == len(ds.indices("train"))
    if strategy == "none":
        assert labels["label_T"].isna().all() and preds["pred_T"].isna().all()
    else:
        assert labels[["label_T", "label_A", "label_V"]].abs().max().max() <= ds.rho + 1e-6
    if strategy == "copy":
        assert np.allclose(labels["label_T"], labels["label"], atol=1e-6)
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"train", "valid", "test"} <= set(metrics) and "acc7" in metrics["valid"]
    assert events and events[-1].fraction == pytest.approx(1.0)
    stages = {e.stage for e in events}
    plan = get_strategy(strategy).plan(resolve_hyperparameters(config["hyperparameters"]))
    assert stages == set(plan) | {"multitask"}
    # every stage that trains is reported, in order, and the fraction never goes back (the related systems'
    # label stages were silent: a job sat at 0% through them)
    in_order = list(dict.fromkeys(e.stage for e in events))
    assert in_order == [*STAGES_BEFORE_STAGE_3.get(strategy, []), "multitask"]
    assert all(a.fraction <= b.fraction for a, b in zip(events, events[1:], strict=False))


def test_meta_progress_counts_the_modalities_the_run_has(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    """With two modalities, stage 2 said "meta 68/195" (three MUCNs planned, two trained) and its share of
    the overall fraction jumped at its end."""
    ds = load_dataset(small_synth)
    _, events = train_recording(ds, tmp_path / "run", "mug", {**tiny_hp, "modalities": ["text", "audio"]})
    meta = [e for e in events if e.stage == "meta"]
    assert [e.epoch for e in meta] == list(range(1, 2 * tiny_hp["meta_epochs"] + 1))
    assert {e.epochs for e in meta} == {2 * tiny_hp["meta_epochs"]}
    pre, multitask = tiny_hp["pretrain_epochs"], tiny_hp["multitask_max_epochs"]
    done = pre + 2 * tiny_hp["meta_epochs"]
    assert meta[-1].fraction == pytest.approx(done / (done + multitask), abs=1e-4)  # stages 1-2 of the plan


def test_same_seed_same_run(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    ds = load_dataset(small_synth)
    a = train(ds, tmp_path / "a", seed=5, hyperparameters=tiny_hp, device="cpu")
    b = train(ds, tmp_path / "b", seed=5, hyperparameters=tiny_hp, device="cpu")
    c = train(ds, tmp_path / "c", seed=6, hyperparameters=tiny_hp, device="cpu")
    read = lambda r, f: (r.out_dir / f).read_text()  # noqa: E731
    assert read(a, "unimodal_labels.csv") == read(b, "unimodal_labels.csv")
    assert read(a, "predictions.csv") == read(b, "predictions.csv")
    assert a.metrics == b.metrics
    assert read(a, "unimodal_labels.csv") != read(c, "unimodal_labels.csv")


def test_sequence_features_train_and_predict(small_synth_seq: Path, tmp_path: Path, tiny_hp) -> None:
    ds = load_dataset(small_synth_seq)
    assert ds.features["audio"].is_sequence
    result = train(ds, tmp_path / "run", seed=1, hyperparameters=tiny_hp, device="cpu")
    model = TrainedModel.load(result.out_dir)
    saved = pd.read_csv(result.out_dir / "predictions.csv", dtype={"id": str})
    again = model.predict_dataset(ds)
    assert np.allclose(again["pred"], saved["pred"], atol=1e-5)
    # predict_batch on raw per-utterance arrays (sequences trimmed to their lengths) gives the same numbers
    feats = {}
    for m, f in ds.features.items():
        feats[m] = [f.values[i, : f.lengths[i]] if f.is_sequence else f.values[i] for i in range(4)]
    out = model.predict_batch(feats)
    assert np.allclose(out["pred"], saved["pred"][:4], atol=1e-5)
    audio = [a.copy() for a in feats["audio"]]
    audio[1][-1, 0] = np.inf  # the last step of item 1; shorter items are zero-padded around it
    with pytest.raises(ValueError, match=r"features.audio\[1\]: NaN or infinite"):
        model.predict_batch({**feats, "audio": audio})


@pytest.mark.parametrize("fixture", ["small_synth", "small_synth_seq"])
def test_predict_batch_one_pass_matches_sliced_and_dataset(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path, tiny_hp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a batch up to MAX_BATCH goes through the net as it is, larger ones in slices; both must give what
    # predict_dataset gives (sequences padded differently)
    from models import trained_model

    ds = load_dataset(request.getfixturevalue(fixture))
    model = TrainedModel.load(
        train(ds, tmp_path / "run", seed=2, hyperparameters=tiny_hp, device="cpu").out_dir
    )
    feats = {
        m: [f.values[i, : f.lengths[i]] if f.is_sequence else f.values[i] for i in range(len(ds))]
        for m, f in ds.features.items()
    }
    whole = model.predict_dataset(ds)
    passes = []
    forward = model.net.forward
    monkeypatch.setattr(model.net, "forward", lambda x: passes.append(1) or forward(x))
    assert len(ds) <= trained_model.MAX_BATCH
    direct = model.predict_batch(feats)
    assert passes == [1]  # one pass
    monkeypatch.setattr(trained_model, "MAX_BATCH", 7)
    sliced = model.predict_batch(feats)
    assert len(passes) == 1 + -(-len(ds) // 7)
    for name in ("pred", "pred_T", "pred_A", "pred_V"):
        assert direct[name].shape == (len(ds),)
        assert np.allclose(direct[name], whole[name], atol=1e-5), name
        assert np.allclose(sliced[name], whole[name], atol=1e-5), name


def test_predict_batch_names_bad_fields(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    ds = load_dataset(small_synth)
    model = TrainedModel.load(train(ds, tmp_path / "run", hyperparameters=tiny_hp, device="cpu").out_dir)
    good = {m: [f.values[0]] for m, f in ds.features.items()}
    assert set(model.predict_batch(good)) == {"pred", "pred_T", "pred_A", "pred_V"}
    with pytest.raises(ValueError, match=r"features.audio\[0\]: expected a vector of"):
        model.predict_batch({**good, "audio": [np.zeros(3)]})
    with pytest.raises(ValueError, match="features.vision: missing"):
        model.predict_batch({k: v for k, v in good.items() if k != "vision"})
    # what the model would pass over: it used to predict without a word, as if it had read them
    with pytest.raises(ValueError, match=r"^transcripts: this model reads none \(it reads features for t"):
        model.predict_batch(good, transcripts=["a good day"])
    pair = train(ds, tmp_path / "pair", hyperparameters={**tiny_hp, "modalities": "text,audio"}, device="cpu")
    said = "this model does not read vision features (it reads features for text, audio only)"
    with pytest.raises(ValueError) as err:
        TrainedModel.load(pair.out_dir).predict_batch(good)
    assert str(err.value) == f"features.vision: {said}"
    three = {m: [f.values[0], f.values[1], f.values[2]] for m, f in ds.features.items()}
    for bad_value in (np.nan, np.inf):
        text = [*three["text"][:2], np.full(ds.features["text"].dim, 1.0)]
        text[2][5] = bad_value
        with pytest.raises(ValueError, match=r"features.text\[2\]: NaN or infinite"):
            model.predict_batch({**three, "text": text})


def test_cancel_between_epochs_writes_nothing(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    ds = load_dataset(small_synth)
    calls = []
    with pytest.raises(Cancelled):
        train(
            ds,
            tmp_path / "run",
            hyperparameters=tiny_hp,
            device="cpu",
            progress=calls.append,
            should_stop=lambda: len(calls) >= 2,
        )
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.glob(".run.partial-*"))


def test_existing_run_is_not_overwritten_silently(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    ds = load_dataset(small_synth)
    train(ds, tmp_path / "run", strategy="copy", hyperparameters=tiny_hp, device="cpu")
    with pytest.raises(FileExistsError, match="already holds files"):
        train(ds, tmp_path / "run", strategy="copy", hyperparameters=tiny_hp, device="cpu")
    train(ds, tmp_path / "run", strategy="none", hyperparameters=tiny_hp, device="cpu", overwrite=True)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["strategy"] == "none"


def test_overwrite_replaces_a_run_and_nothing_else(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    """--overwrite removes what --out held: a folder of one's own, or the dataset itself, is refused whole."""
    data = tmp_path / "ds"
    shutil.copytree(small_synth, data)
    ds = load_dataset(data)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    for out in (data, notes, tmp_path):
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(FileExistsError, match="--overwrite replaces only a run directory"):
            train(ds, out, strategy="copy", hyperparameters=tiny_hp, device="cpu", overwrite=True)
        assert sorted(p.name for p in out.iterdir()) == before
    # a run directory the dataset was put in is not replaced either
    run = tmp_path / "run"
    train(ds, run, strategy="copy", hyperparameters=tiny_hp, device="cpu")
    shutil.copytree(data, run / "ds")
    inside = load_dataset(run / "ds")
    with pytest.raises(FileExistsError, match="holds the dataset being trained on"):
        train(inside, run, strategy="copy", hyperparameters=tiny_hp, device="cpu", overwrite=True)
    assert (run / "ds" / "features.npz").is_file()


def test_bad_settings_fail_before_training(small_synth: Path, tmp_path: Path) -> None:
    ds = load_dataset(small_synth)
    with pytest.raises(HyperparameterError, match="hyperparameters.beta"):
        train(ds, tmp_path / "run", hyperparameters={"beta": -1})
    with pytest.raises(ValueError, match="strategy: unknown strategy 'mugg'"):
        train(ds, tmp_path / "run", strategy="mugg")
    with pytest.raises(ValueError, match="text_source: 'finetune' needs a transcript on every row"):
        train(ds, tmp_path / "run", hyperparameters={"text_source": "finetune"})
    empty_dir = r"^hyperparameters.text_model: must be a local model directory path or null, got ''$"
    with pytest.raises(HyperparameterError, match=empty_dir):
        train(ds, tmp_path / "run", hyperparameters={"text_model": ""})
    with pytest.raises(HyperparameterError, match=r"^hyperparameters.\*: must be an object mapping names to"):
        train(ds, tmp_path / "run", hyperparameters=[("beta", 0.1)])
    with pytest.raises(ValueError, match="^device: must be auto, cpu or cuda, got 'gpu'$"):
        train(ds, tmp_path / "run", device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^device: 'cuda' asked for, but no CUDA GPU is available$"):
            train(ds, tmp_path / "run", device="cuda")
    # a dataset loaded without the training checks (for_training=False), or cut down, with no valid rows
    with pytest.raises(ValueError, match="^dataset: training needs labeled train and valid rows$"):
        train(ds.take(ds.indices("train")), tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


def test_weights_load_without_pickle(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    from safetensors.torch import load_file

    ds = load_dataset(small_synth)
    run = train(ds, tmp_path / "run", strategy="copy", hyperparameters=tiny_hp, device="cpu").out_dir
    state = load_file(str(run / "model.safetensors"))
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_cli_train_evaluate_predict_compare(small_synth: Path, tmp_path: Path, capsys) -> None:
    sets = [
        "--set",
        "pretrain_epochs=2",
        "--set",
        "meta_epochs=2",
        "--set",
        "multitask_max_epochs=3",
        "--set",
        "audio_dim=16",
        "--quiet",
    ]
    run = tmp_path / "run"
    assert (
        main(["train", str(small_synth), "--strategy", "mug", "--seed", "2", "--out", str(run), *sets]) == 0
    )
    ds = load_dataset(small_synth)
    test_rows = ds.labeled("test")
    labels = pd.DataFrame({"id": ds.ids[test_rows], "label": ds.label[test_rows]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--labels", str(tmp_path / "labels.csv")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["n"] == len(test_rows) and scored["splits"] == {"test": len(test_rows)}
    assert "by_split" not in scored
    saved = json.loads((run / "metrics.json").read_text())
    assert scored["mae"] == pytest.approx(saved["test"]["mae"], abs=1e-4)
    # labels over valid and test: scored per split too, and said so, not only as one mixed figure
    both = np.concatenate([ds.labeled("valid"), test_rows])
    pd.DataFrame({"id": ds.ids[both], "label": ds.label[both]}).to_csv(tmp_path / "two.csv", index=False)
    assert main(["evaluate", str(run), "--labels", str(tmp_path / "two.csv")]) == 0
    captured = capsys.readouterr()
    scored = json.loads(captured.out)
    assert scored["splits"] == {"valid": len(ds.labeled("valid")), "test": len(test_rows)}
    for split in ("valid", "test"):
        assert scored["by_split"][split]["mae"] == pytest.approx(saved[split]["mae"], abs=1e-4)
    assert "the top figures mix them, by_split scores each" in captured.err
    assert main(["predict", str(run), str(small_synth), "--out", str(tmp_path / "p.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(ds)
    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                str(small_synth),
                "--strategies",
                "copy,none",
                "--seeds",
                "1,2",
                "--out",
                str(out),
                *sets,
            ]
        )
        == 0
    )
    table = (out / "table.md").read_text()
    assert "| copy |" in table and "| none |" in table and "± " in table
    assert "### Paired by seed: copy against the others" in table and "| copy - none | 2 |" in table
    assert len(list(out.glob("*/seed*/config.json"))) == 4
    # the saved comparison's tables again, paired against another strategy; the per-seed numbers are the runs'
    capsys.readouterr()
    assert main(["table", str(out), "--reference", "none"]) == 0
    printed = capsys.readouterr().out
    assert "| none - copy | 2 |" in printed and printed.split("### Paired")[0] == table.split("### Paired")[0]
    saved = json.loads((out / "results.json").read_text())
    seed2 = json.loads((out / "copy" / "seed2" / "metrics.json").read_text())["valid"]
    assert saved["results"]["copy"][1] == seed2 and saved["rho"] == ds.rho
    assert main(["table", str(tmp_path / "nowhere")]) == 2
    assert "no such file (run `unilabel compare DATA --out" in capsys.readouterr().err
    for flag, value, problem in [
        ("--seeds", "1,x", "--seeds: 'x' is not a whole number"),
        ("--seeds", "1,2,1", "seeds: 1 given more than once"),
        ("--seeds", ",", "seeds: give at least one"),
        ("--strategies", "copy,none,copy", "strategies: copy given more than once"),
    ]:
        assert main(["compare", str(small_synth), flag, value, "--out", str(tmp_path / "cmp2")]) == 2
        assert problem in capsys.readouterr().err
    assert not (tmp_path / "cmp2").exists()
    assert main(["table", str(out), "--reference", "mugg"]) == 2
    assert "reference: 'mugg' is not one of the strategies ['copy', 'none']" in capsys.readouterr().err


def test_cli_reports_bad_input_without_traceback(tmp_path: Path, capsys) -> None:
    (tmp_path / "bad").mkdir()
    assert main(["train", str(tmp_path / "bad"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "utterances.csv" in err and "Traceback" not in err
    assert main(["train", str(tmp_path / "bad"), "--out", str(tmp_path / "run"), "--set", "nope=1"]) == 2


def test_a_modality_subset_trains_predicts_and_leaves_the_others_blank(
    small_synth: Path, tmp_path: Path, tiny_hp
) -> None:
    ds = load_dataset(small_synth)
    hp = {**tiny_hp, "modalities": "text,audio"}
    result = train(ds, tmp_path / "run", seed=1, hyperparameters=hp, device="cpu", preset=None)
    run = result.out_dir
    config = json.loads((run / "config.json").read_text())
    assert config["hyperparameters"]["modalities"] == ["text", "audio"]
    assert set(config["strategy_diagnostics"]["meta"]) == {"text", "audio"}
    labels = pd.read_csv(run / "unimodal_labels.csv", dtype={"id": str})
    assert list(labels.columns) == ["id", "label", "label_T", "label_A", "label_V"]
    assert labels["label_V"].isna().all() and labels["label_T"].notna().all()
    preds = pd.read_csv(run / "predictions.csv", dtype={"id": str})
    assert preds["pred_V"].isna().all() and preds["pred_A"].notna().all()
    heads = result.metrics["unimodal_heads_vs_label"]["valid"]
    assert set(heads) == {"text", "audio"} and {"corr", "mae"} <= set(heads["text"])
    model = TrainedModel.load(run)
    assert set(model.input_spec) == {"text", "audio"}
    row = {m: [ds.features[m].values[0]] for m in ("text", "audio")}
    out = model.predict_batch(row)
    assert np.isnan(out["pred_V"]).all() and np.isfinite(out["pred"]).all()
    assert abs(float(out["pred"][0]) - float(preds["pred"][0])) < 1e-4


def _without_vision(src: Path, dest: Path) -> Path:
    dest.mkdir()
    shutil.copy(src / "utterances.csv", dest / "utterances.csv")
    with np.load(src / "features.npz") as z:
        np.savez(dest / "features.npz", **{k: z[k] for k in z.files if not k.startswith("vision")})
    return dest


def test_a_dataset_without_vision_trains_on_what_it_has(
    small_synth: Path, tmp_path: Path, tiny_hp, capsys: pytest.CaptureFixture
) -> None:
    """A run asking for a modality the dataset lacks is refused before any work, naming the setting and the
    modalities to set; with them, it trains; a model that reads vision refuses data without it."""
    ds = load_dataset(_without_vision(small_synth, tmp_path / "ta"))
    with pytest.raises(InputError) as err:
        train(ds, tmp_path / "refused", seed=1, hyperparameters=tiny_hp, device="cpu")
    assert err.value.field == "hyperparameters.modalities"
    assert "features.npz has no 'vision' array" in str(err.value)
    assert str(err.value).endswith("this dataset gives text, audio: set modalities to text,audio")
    assert not (tmp_path / "refused").exists()
    with pytest.raises(InputError, match=r"\(modalities: vision\).*set modalities to text,audio$"):
        train(ds, tmp_path / "r2", seed=1, hyperparameters={**tiny_hp, "modalities": "vision"}, device="cpu")

    hp = {**tiny_hp, "modalities": "text,audio"}
    run = train(ds, tmp_path / "run", seed=1, hyperparameters=hp, device="cpu").out_dir
    preds = pd.read_csv(run / "predictions.csv", dtype={"id": str})
    assert preds["pred_V"].isna().all() and preds["pred_A"].notna().all() and len(preds) == len(ds)
    again = TrainedModel.load(run).predict_dataset(ds)
    assert again["pred"].tolist() == pytest.approx(preds["pred"].tolist(), abs=1e-5)

    full = train(load_dataset(small_synth), tmp_path / "full", seed=1, hyperparameters=tiny_hp, device="cpu")
    with pytest.raises(InputError, match="key 'vision': the model reads vision features; none given"):
        TrainedModel.load(full.out_dir).predict_dataset(ds)

    args = ["train", str(tmp_path / "ta"), "--out", str(tmp_path / "cli"), "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "hyperparameters.modalities: vision asked for" in err and "Traceback" not in err
    assert main(["predict", str(full.out_dir), str(tmp_path / "ta"), "--out", str(tmp_path / "p.csv")]) == 2
    assert f"data {tmp_path / 'ta'}: features.npz: key 'vision'" in capsys.readouterr().err  # which dataset


def test_preset_is_applied_under_the_overrides_and_recorded(
    small_synth: Path, tmp_path: Path, tiny_hp
) -> None:
    ds = load_dataset(small_synth)
    result = train(ds, tmp_path / "run", seed=1, hyperparameters=tiny_hp, device="cpu", preset="mosei")
    assert result.config["preset"] == "mosei"
    hp = result.config["hyperparameters"]
    assert hp["batch_size"] == 16 and hp["beta"] == 1e-4  # Table 2, MOSEI column
    assert hp["fusion_dim"] == tiny_hp["fusion_dim"]  # the overrides win
    with pytest.raises(HyperparameterError, match="preset"):
        train(ds, tmp_path / "bad", hyperparameters=tiny_hp, device="cpu", preset="imdb")
    assert not (tmp_path / "bad").exists()


def test_cli_train_prints_what_each_modality_carries(small_synth: Path, tmp_path: Path, capsys) -> None:
    args = ["train", str(small_synth), "--out", str(tmp_path / "run"), "--quiet", "--preset", "mosi"]
    for k, v in {"pretrain_epochs": 2, "meta_epochs": 2, "multitask_max_epochs": 2}.items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "head on valid corr" in out and "MUCN denoising" in out and "preset mosi" in out
    assert out.count("MUCN denoising") == 3
    # the splits' metrics a row each (they were metrics.json whole, about 100 lines), then a line per modality
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    lines = out.splitlines()
    assert lines[0].split() == ["split", *metrics["valid"]]
    assert lines[2].split() == ["valid", *(f"{v:.4f}" for v in metrics["valid"].values())]
    assert len(lines) == 1 + 3 + 1 + 3 + 1
    subs = metrics["unimodal_labels_vs_sub_labels"]["audio"]  # the synthetic set's planted labels
    assert f"labels vs label_A corr {subs['corr']:.3f} (copies {subs['copy_baseline_corr']:.3f})" in out
    both = "per modality (its head vs the multimodal label; its labels vs the sub-labels"
    assert f"{both}; MUG's MUCN):" in out
    # a strategy without MUCN: the header names what the lines hold (it named MUG's MUCN for every strategy)
    args[args.index(str(tmp_path / "run"))] = str(tmp_path / "copy")
    assert main([*args, "--strategy", "copy"]) == 0
    out = capsys.readouterr().out
    assert f"{both}):" in out and "MUCN" not in out
    # strategy none trains no unimodal head: one line that says so, not a name per modality with nothing after
    args[args.index(str(tmp_path / "copy"))] = str(tmp_path / "none")
    assert main([*args, "--strategy", "none"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-2] == "per modality: nothing (strategy none trains no unimodal head)", out


def test_compare_says_what_it_reused_and_refuses_to_replace_other_runs(
    small_synth: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "cmp"
    base = ["compare", str(small_synth), "--strategies", "copy", "--seeds", "1", "--out", str(out), "--quiet"]
    sets = [
        x for k, v in {"multitask_max_epochs": 2, "pretrain_epochs": 1}.items() for x in ("--set", f"{k}={v}")
    ]
    assert main([*base, *sets]) == 0
    capsys.readouterr()
    assert main([*base, *sets]) == 0  # the same again: reused, and said so
    assert f"reused {out / 'copy' / 'seed1'}" in capsys.readouterr().err
    before = (out / "copy" / "seed1" / "config.json").read_text()
    assert main([*base, *sets, "--set", "beta=0.5"]) == 2  # other settings: refused, nothing replaced
    err = capsys.readouterr().err
    assert "holds a run trained with another setting (beta)" in err and "--overwrite" in err
    assert (out / "copy" / "seed1" / "config.json").read_text() == before
    assert main([*base, *sets, "--set", "beta=0.5", "--overwrite"]) == 0
    assert "replacing" in capsys.readouterr().err
    narrower = [x if x != "1" else "2" for x in base]  # seed 2 only, into the same folder
    assert main([*narrower, *sets, "--set", "beta=0.5"]) == 0
    said = capsys.readouterr().err
    assert f"note: {out} also holds copy seed1; the summary covers this comparison's runs only" in said
    assert json.loads((out / "copy" / "seed1" / "config.json").read_text())["hyperparameters"]["beta"] == 0.5


def test_unimodal_predictions_stay_in_the_label_range(small_synth: Path, tmp_path: Path, tiny_hp) -> None:
    """A unimodal prediction is a label: an input far outside training makes a head extrapolate beyond rho,
    and the written predictions (and predict_batch's) are clipped to [-rho, rho]; not the multimodal one."""
    ds = load_dataset(small_synth)
    result = train(ds, tmp_path / "run", seed=1, hyperparameters=tiny_hp, device="cpu")
    model = TrainedModel.load(result.out_dir)
    far = {m: [f.values[0] * 200.0] for m, f in ds.features.items()}
    out = model.predict_batch(far)
    with torch.no_grad():
        raw = model.net({m: torch.from_numpy(v[0][None]) for m, v in far.items()})
    unclipped = {m: float(raw["uni_pred"][m]) for m in model.net.modalities}
    assert max(abs(v) for v in unclipped.values()) > ds.rho  # the heads do leave the range here
    for m, letter in (("text", "T"), ("audio", "A"), ("vision", "V")):
        assert abs(float(out[f"pred_{letter}"][0])) <= ds.rho
        assert float(out[f"pred_{letter}"][0]) == pytest.approx(
            max(-ds.rho, min(ds.rho, unclipped[m])), abs=1e-5
        )
    preds = pd.read_csv(result.out_dir / "predictions.csv")
    assert preds[["pred_T", "pred_A", "pred_V"]].abs().max().max() <= ds.rho
