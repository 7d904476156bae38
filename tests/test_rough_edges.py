"""Rough edges a new user meets on the library side: import-mmsa on a wrong file, the dataset path as given,
"1 seed" in the result tables, a dataset folder written over, and evaluate on a folder that is no run."""

from __future__ import annotations

import argparse
import errno
import pickle
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from models.cli import main
from models.compare import render_tables
from models.dataset import DatasetError
from models.dataset_loader import load_dataset
from models.mmsa_import import import_mmsa_pkl
from models.report import paired_table, write_json
from models.run_dir import staging_dir


@pytest.mark.parametrize(
    "content",
    [
        b"id,split,label\nv1,train,0.5\n",  # a CSV: pickle reads opcodes out of it
        b"I am not a pickle\n",  # "invalid literal for int() with base 10"
        b"\x80\x04\x95garbage",  # truncated pickle
        b"",
    ],
)
def test_import_mmsa_unreadable_file_names_it(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "utterances.csv"
    bad.write_bytes(content)
    with pytest.raises(DatasetError) as err:
        import_mmsa_pkl(bad, tmp_path / "out")
    assert str(bad) in str(err.value) and "MMSA" in str(err.value) and ".pkl" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_import_mmsa_missing_or_wrong_file_on_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("I am not a pickle\n")
    assert main(["import-mmsa", str(text), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unilabel import-mmsa: error:") and f"{text}:" in err and "MMSA" in err
    assert "Traceback" not in err and "invalid literal" not in err.splitlines()[0]

    missing = tmp_path / "nope.pkl"
    assert main(["import-mmsa", str(missing), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: no such file" in err and "MMSA" in err


def test_import_mmsa_pickle_of_something_else(tmp_path: Path) -> None:
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DatasetError, match="expected a dict with 'train', 'valid' and 'test'"):
        import_mmsa_pkl(path, tmp_path / "out")


def test_dataset_path_is_shown_as_given(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "sub" / "nope"
    with pytest.raises(DatasetError) as err:
        load_dataset(missing)
    assert str(err.value) == f"{missing}: no such file or directory"
    with pytest.raises(DatasetError, match=r"^\./no-such-dir/data\.zip: no such file or directory$"):
        load_dataset("./no-such-dir/data.zip")
    (tmp_path / "data.rar").write_bytes(b"x")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'data.rar'}: neither a dataset directory"):
        load_dataset(tmp_path / "data.rar")

    assert main(["train", str(missing), "--out", str(tmp_path / "run")]) == 2
    assert f"{missing}: no such file or directory" in capsys.readouterr().err


def test_one_seed_is_singular() -> None:
    summary = {"split": "valid", "seeds": [1], "rho": 3.0, "results": {"copy": [{"mae": 0.7, "corr": 0.5}]}}
    assert "### valid split, 1 seed\n" in render_tables(summary)
    summary |= {"seeds": [1, 2], "results": {"copy": [{"mae": 0.7}, {"mae": 0.8}]}}
    assert "### valid split, 2 seeds\n" in render_tables(summary)
    with pytest.raises(ValueError, match="'copy' has 1 seed and 'none' 2; cannot pair"):
        paired_table({"copy": [{"mae": 0.7}], "none": [{"mae": 0.7}, {"mae": 0.8}]}, ["mae"], "copy")


def test_synth_and_import_never_replace_a_dataset_by_accident(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "data"
    assert main(["synth", str(out), "--n-train", "20", "--n-valid", "5", "--n-test", "0"]) == 0
    first = (out / "utterances.csv").read_bytes()
    capsys.readouterr()
    assert main(["synth", str(out), "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{out}: already holds a dataset (utterances.csv, features.npz)" in err and "--overwrite" in err
    assert (out / "utterances.csv").read_bytes() == first
    # import-mmsa refuses before it reads the pickle (this file is not one)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a pickle\n")
    assert main(["import-mmsa", str(notes), str(out)]) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert main(["synth", str(out), "--seed", "1", "--overwrite"]) == 0
    assert (out / "utterances.csv").read_bytes() != first


def test_an_invalid_dataset_is_named_above_its_problems(
    small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The problems name files within the dataset; the message names the dataset, as the user gave it."""
    data = tmp_path / "ds"
    shutil.copytree(small_synth, data)
    (data / "features.npz").unlink()
    assert main(["baseline", str(data)]) == 2
    err = capsys.readouterr().err
    not_found = "features.npz: file not found (the folder holds utterances.csv)"
    assert err == f"unilabel baseline: error:\ndataset {data} is not valid:\n{not_found}\n"


def test_synth_into_a_file_is_named_as_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    assert main(["synth", str(afile)]) == 2
    said = capsys.readouterr().err
    folder = "a dataset is a folder (utterances.csv, features.npz)"
    assert said == f"unilabel synth: error:\n{afile}: is a file; {folder}\n"
    assert afile.read_text() == "x"


def test_evaluate_names_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\na,0.5\n")
    assert main(["evaluate", str(tmp_path), "--labels", str(labels)]) == 2
    assert f"run: {tmp_path} is not a finished run directory (no predictions.csv;" in capsys.readouterr().err
    (tmp_path / "predictions.csv").write_text("id,split,pred\na,test,0.4\n")
    assert main(["evaluate", str(tmp_path), "--labels", str(tmp_path / "nope.csv")]) == 2
    assert f"labels: {tmp_path / 'nope.csv'}: no such file" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--labels", str(labels)]) == 2  # rho: no silent default
    assert "has no model.json to read rho from; give rho (--rho)" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path), "--labels", str(labels), "--rho", "3"]) == 0
    capsys.readouterr()
    labels.write_text("id,label\na,7\n")  # a label the run could not predict: an error, not a figure
    assert main(["evaluate", str(tmp_path), "--labels", str(labels), "--rho", "3"]) == 2
    said = capsys.readouterr().err
    assert "column 'label': outside the run's label range [-3, 3] (rows 0, counting from 0)" in said


AFTER = ", counting from 0 after the header"
BLANK = " (a blank cell is no label: leave its row out)"
# ids missing from RUN/predictions.csv are most often new utterances: the message points to --predictions
NEW_DATA = (
    "; its predictions.csv holds the dataset it was trained on: to score `unilabel predict`'s output, "
    "give that file with --predictions"
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "cannot read as CSV: No columns to parse from file"),
        (
            "id,label\na,0.5\nb,0.1,x,y\n",
            "cannot read as CSV: Error tokenizing data. C error: Expected 2 fields in line 3, saw 4\n",
        ),
        ("name,label\na,0.5\n", "column 'id' is missing (need id,label)"),
        ("id,score\na,0.5\n", "column 'label' is missing (need id,label)"),
        (
            "id,label\na,0.5\nb,x\nc,\n",
            f"column 'label': not a finite number (rows 1, 2{AFTER}){BLANK}",
        ),
        ("id,label\na,inf\nb,0.1\nc,nan\n", f"column 'label': not a finite number (rows 0, 2{AFTER})"),
        (
            "id,label\n" + "".join(f"u{i},bad\n" for i in range(12)),
            f"column 'label': not a finite number (rows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9{AFTER})",  # first ten
        ),
        ("id,label\na,0.5\nb,0.1\na,0.2\nb,0.3\n", f"column 'id': duplicate ids (rows 2, 3{AFTER})"),
        (
            "id,label\ncaf\u00e9,0.5\n".encode("cp1252").decode("latin-1"),
            "is not UTF-8 text (byte 0xe9 on line 2 of the file): save it as UTF-8 (Excel: 'CSV UTF-8'; or "
            "iconv -f cp1252 -t utf-8 IN > OUT)",
        ),
        ("id,label\na,0.5\nz,0.1\ny,0.2\n", f"2 id(s) have no prediction in the run (z, y){NEW_DATA}"),
        ("id,label\na,0.5\nd,0.1\n", "1 id(s) have a blank prediction in the run (d)"),  # in the file
    ],
)
def test_evaluate_names_the_labels_files_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: str, message: str
) -> None:
    """Each bad labels file: exit 2, one message naming the file and the column or the rows, no traceback."""
    (tmp_path / "predictions.csv").write_text("id,split,pred\na,test,0.4\nb,test,0.1\nc,valid,-1\nd,test,\n")
    labels = tmp_path / "mine.csv"
    labels.write_bytes(content.encode("latin-1"))  # one byte a character: a code page's file too
    assert main(["evaluate", str(tmp_path), "--labels", str(labels), "--rho", "3"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"unilabel evaluate: error:\nmine.csv: {message}\n")


def test_out_naming_a_folder_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    # the run and the dataset need not exist: --out is checked first
    for argv in (["predict", "RUN", "DATA"], ["baseline", "DATA"]):
        assert main([*argv, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert f"--out {tmp_path}: is a folder; give the path of a file to write" in err


def test_an_out_that_cannot_be_written_is_named_as_given(
    tmp_path: Path, small_synth: Path, capsys: pytest.CaptureFixture
) -> None:
    """A run was refused with ``[Errno 20] Not a directory: '.../.run.partial-123'``: the hidden staging
    folder, not the --out the user gave."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["train", str(small_synth), "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert f"out: cannot write a run directory at {blocker / 'run'}: a part of that path is a file" in err
    assert "partial" not in err and "Errno" not in err
    with pytest.raises(FileExistsError) as raised:  # errno kept (the worker reads a volume's state from it)
        staging_dir(blocker / "run", overwrite=False)
    assert raised.value.errno == errno.EEXIST
    assert main(["synth", str(blocker / "ds")]) == 2
    assert capsys.readouterr().err.endswith(f"error:\n{blocker / 'ds'}: Not a directory\n")
    assert list(tmp_path.iterdir()) == [blocker]


def test_synth_seed_is_checked_as_trains(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--seed -1`` got numpy's 'expected non-negative integer', naming no option."""
    with pytest.raises(SystemExit) as exited:
        main(["synth", str(tmp_path / "ds"), "--seed", "-1"])
    assert exited.value.code == 2
    assert "argument --seed: must be a whole number in [0, 2**32), got -1" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_atomic_writes_onto_a_folder_name_it(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match=f"{tmp_path}: is a folder"):
        write_json(tmp_path, {"a": 1})
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


@pytest.mark.parametrize("command", ["predict", "evaluate", "report"])
def test_a_zipped_run_is_named_as_one(command: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The service's model download is a zip of the run (GET /v1/models/{id}/archive): given as the run, it is
    named as a zip to unzip, not as a run that has no model.json."""
    zipped = tmp_path / "abc.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("abc/model.json", "{}")
    rest = {"predict": ["data"], "evaluate": ["--labels", "labels.csv"], "report": []}[command]
    with pytest.raises(SystemExit) as exit_:
        main([command, str(zipped), *rest])
    assert exit_.value.code == 2
    said = capsys.readouterr().err
    assert f"argument run: {zipped} is a zip file; unzip it and give the run directory it holds" in said
    assert "(`unzip abc.zip`)" in said


def test_predict_takes_new_utterances_with_ids_alone(
    small_synth: Path, tmp_path: Path, tiny_hp, capsys: pytest.CaptureFixture
) -> None:
    """`unilabel predict` on new data asked for split and label columns it has no use for."""
    import shutil

    import pandas as pd

    from models.pipeline import train

    run = train(load_dataset(small_synth), tmp_path / "run", strategy="copy", hyperparameters=tiny_hp).out_dir
    new = tmp_path / "new"
    new.mkdir()
    pd.read_csv(small_synth / "utterances.csv", dtype=str)[["id"]].to_csv(new / "utterances.csv", index=False)
    shutil.copy(small_synth / "features.npz", new / "features.npz")
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "preds.csv")]) == 0
    preds = pd.read_csv(tmp_path / "preds.csv", dtype={"id": str})
    saved = pd.read_csv(run / "predictions.csv", dtype={"id": str})
    assert set(preds["split"]) == {"test"} and preds["id"].tolist() == saved["id"].tolist()
    assert preds["pred"].tolist() == pytest.approx(saved["pred"].tolist(), abs=1e-5)


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "three"])
def test_rho_flag_names_itself(value: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "anywhere", "--out", "anything", "--rho", value])
    assert exit_.value.code == 2
    assert "argument --rho: must be a" in capsys.readouterr().err


def test_hyperparameters_file_errors_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "no-dataset"
    cases = {
        tmp_path / "missing.json": "cannot read",
        tmp_path / "bad.json": "is not JSON",
        tmp_path / "list.json": "must hold a JSON object",
        tmp_path / "binary.json": "is not JSON",
    }
    (tmp_path / "bad.json").write_text("{beta: 1}")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    for path, message in cases.items():
        assert main(["train", str(data), "--out", str(tmp_path / "run"), "--hyperparameters", str(path)]) == 2
        err = capsys.readouterr().err
        assert "--hyperparameters: " in err and str(path) in err and message in err, err
        assert "Errno" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    "requested, text_features, transcripts, modalities, field, words",
    [
        ("auto", True, False, ("text", "audio"), "text_model", "not every row has a transcript"),
        ("features", True, True, ("text", "audio"), "text_model", "set text_source to 'encoder'"),
        ("auto", False, True, ("audio",), "text_model", "modalities has no 'text'"),
        ("encoder", True, False, ("text",), "text_source", "needs a transcript on every row"),
        ("features", False, True, ("text",), "text_source", "no 'text' array"),
    ],
)
def test_text_settings_no_run_would_read_are_refused(
    requested: str, text_features: bool, transcripts: bool, modalities: tuple, field: str, words: str
) -> None:
    """A text model the run would not load was silently dropped (the run trained on the text features)."""
    from models.inputs import InputError, choose_text_source

    model = "/models/my-encoder" if field == "text_model" else None
    with pytest.raises(InputError) as err:
        choose_text_source(
            requested,
            text_features=text_features,
            transcripts=transcripts,
            text_model=model,
            modalities=modalities,
        )
    assert str(err.value).startswith(f"hyperparameters.{field}: ") and words in str(err.value)


@pytest.mark.parametrize(
    "requested, text_features, transcripts, source",
    [("auto", True, True, "encoder"), ("auto", False, True, "encoder"), ("finetune", True, True, "finetune")],
)
def test_a_text_model_the_run_reads_is_taken(
    requested: str, text_features: bool, transcripts: bool, source: str
) -> None:
    from models.inputs import choose_text_source

    chosen = choose_text_source(
        requested, text_features=text_features, transcripts=transcripts, text_model="/models/my-encoder"
    )
    assert chosen == source


def test_train_and_baseline_refuse_a_text_model_without_transcripts(
    small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """small_synth has text features and no transcripts: `--set text_model=...` was ignored by both."""
    model = ["--set", f"text_model={tmp_path / 'encoder'}"]
    assert main(["train", str(small_synth), "--out", str(tmp_path / "run"), *model]) == 2
    err = capsys.readouterr().err
    assert "hyperparameters.text_model: set, but no text encoder runs" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    assert main(["baseline", str(small_synth), *model]) == 2
    err = capsys.readouterr().err
    assert "hyperparameters.text_model: set, but the dataset has no transcripts" in err


def test_unread_settings_are_those_no_strategy_run_reads() -> None:
    from models.strategies import unread_settings

    names = ["meta_epochs", "pretrain_epochs", "beta", "selfmm_weight", "bogus"]
    assert unread_settings(["copy"], names) == ["meta_epochs", "pretrain_epochs", "selfmm_weight"]
    assert unread_settings(["mug"], names) == ["selfmm_weight"]  # "bogus" is resolve_hyperparameters' to name
    assert unread_settings(["mug", "selfmm"], names) == []
    # exceptions to the sections: MLC's corrector is MUCN's network; selfmm and none weight no beta
    meta = ["meta_epochs", "meta_lr", "mucn_hidden", "mucn_residual"]
    assert unread_settings(["mlc"], meta) == ["meta_epochs", "meta_lr"]
    assert unread_settings(["selfmm"], ["beta"]) == unread_settings(["none"], ["beta"]) == ["beta"]
    assert unread_settings(["none", "copy"], ["beta"]) == []
    with pytest.raises(ValueError, match="unknown strategy 'mugg'"):
        unread_settings(["mugg"], names)


def test_a_setting_for_another_strategy_is_noted_not_dropped_unsaid(
    small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--strategy copy --set meta_epochs=30` trained exactly as without it, and said nothing."""
    quick = ["--set", "multitask_max_epochs=1", "--quiet"]
    argv = ["train", str(small_synth), "--strategy", "copy", "--set", "meta_epochs=3", *quick]
    assert main([*argv, "--out", str(tmp_path / "copy")]) == 0
    err = capsys.readouterr().err
    assert "note: meta_epochs is not read by copy and changes nothing here" in err
    assert "--strategy copy` lists what a strategy reads" in err
    argv = ["compare", str(small_synth), "--strategies", "copy,none", "--seeds", "1", *quick]
    assert main([*argv, "--set", "selfmm_weight=2", "--out", str(tmp_path / "cmp")]) == 0
    assert "note: selfmm_weight is not read by copy or none" in capsys.readouterr().err
    argv = ["train", str(small_synth), "--strategy", "copy", *quick, "--set", "beta=1"]
    assert main([*argv, "--out", str(tmp_path / "read")]) == 0
    assert "note:" not in capsys.readouterr().err


def _silent_arguments(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    """Every argument and command below ``parser`` without a help text."""
    silent = []
    for action in parser._actions:
        if not action.help:
            silent.append(f"{prefix} {action.dest}")
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions}
            silent += [f"{prefix} {name}" for name in action.choices if name not in helped]
            for name, sub in action.choices.items():
                silent += _silent_arguments(sub, f"{prefix} {name}")
    return silent


def test_every_argument_of_every_command_says_what_it_is() -> None:
    """`unilabel predict -h` listed `run` and `data` with no word on what they take; so did a dozen
    arguments of `unilabel-remote` and `unilabel-admin`."""
    from models.cli import build_parser
    from remote.cli import build_parser as remote_parser
    from service.admin import build_parser as admin_parser

    assert _silent_arguments(build_parser(), "unilabel") == []
    assert _silent_arguments(remote_parser(), "unilabel-remote") == []
    assert _silent_arguments(admin_parser(), "unilabel-admin") == []


@pytest.mark.parametrize("command", ["predict", "evaluate", "report"])
def test_a_run_that_is_not_there_is_named_alike(command: str, tmp_path: Path, capsys) -> None:
    """Every command that reads a run says the same of a folder that does not exist, or of a file."""
    rest = {"predict": ["data"], "evaluate": ["--labels", "labels.csv"], "report": []}[command]
    afile = tmp_path / "notes.txt"
    afile.write_text("x")
    for run, what in ((tmp_path / "norun", "does not exist; give"), (afile, "is a file, not")):
        assert main([command, str(run), *rest]) == 2
        said = capsys.readouterr().err
        assert said == f"unilabel {command}: error:\nrun: {run} {what} the --out folder of `unilabel train`\n"


def test_predict_picks_its_device_as_train_does() -> None:
    from models.cli import build_parser

    for command in (["train", "DATA", "--out", "RUN"], ["predict", "RUN", "DATA"]):
        assert build_parser().parse_args(command).device == "auto", command


def test_compare_checks_its_split_before_any_run_trains(small_synth: Path, tmp_path: Path, capsys) -> None:
    """A typo, or MOSI's test split whose labels are withheld, was named only after the first run trained."""
    data = tmp_path / "ds"
    shutil.copytree(small_synth, data)
    table = pd.read_csv(data / "utterances.csv", dtype={"id": str})
    table.loc[table["split"] == "test", "label"] = None
    table.to_csv(data / "utterances.csv", index=False)
    out = tmp_path / "cmp"
    base = ["compare", str(data), "--strategies", "copy", "--seeds", "1", "--out", str(out), "--quiet"]
    for split, problem in (
        ("tset", "split: unknown split 'tset'; one of train, valid, test"),
        ("test", "split: 'test' has no labels in this dataset; choose a split that has"),
    ):
        assert main([*base, "--split", split]) == 2
        assert capsys.readouterr().err == f"unilabel compare: error:\n{problem}\n"
        assert not out.exists()


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`unilabel hyperparameters --doc | head -1` said "error: Broken pipe" with status 2."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "models.cli", "hyperparameters", "--doc"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the command writes (it takes ~0.5 s to start)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and err == b""  # 128 + SIGPIPE, as a Unix tool killed by it


def test_hyperparameters_doc_with_a_filter_is_refused(capsys: pytest.CaptureFixture) -> None:
    for flag in (["--strategy", "mug"], ["--preset", "sims"]):
        assert main(["hyperparameters", "--doc", *flag]) == 2
        assert "--doc prints every hyperparameter; --strategy and --preset filter" in capsys.readouterr().err


def test_threads_given_twice_must_agree(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`unilabel --threads 2 train ... --threads 1` took the second unsaid; once on either side is taken."""
    train = ["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_:
        main(["--threads", "2", *train, "--threads", "1"])
    assert exit_.value.code == 2
    assert "--threads is 2 before the command and 1 after it: give it once" in capsys.readouterr().err
    before = torch.get_num_threads()
    try:
        for argv, expected in ((["--threads", "2", *train], 2), ([*train, "--threads", "3"], 3)):
            assert main(argv) == 2  # no dataset there, after the threads are set
            assert torch.get_num_threads() == expected
        assert main(["--threads", "2", *train, "--threads", "2"]) == 2
    finally:
        torch.set_num_threads(before)


def test_train_says_when_auto_passes_over_the_transcripts(
    small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Transcripts on all rows but one, beside a 'text' array: text_source auto reads the array, which the
    run said nowhere (config.json alone recorded "features")."""
    data = tmp_path / "partly-spoken"
    shutil.copytree(small_synth, data)
    table = pd.read_csv(data / "utterances.csv", dtype={"id": str})
    table["transcript"] = ["said something"] * (len(table) - 1) + [""]
    table.to_csv(data / "utterances.csv", index=False)
    short = ["--strategy", "copy", "--quiet", "--set", "multitask_max_epochs=1"]
    assert main(["train", str(data), "--out", str(tmp_path / "run"), *short]) == 0
    said = capsys.readouterr().err
    assert "note: text read from features.npz's 'text' array, not the transcripts" in said, said
    asked = ["--set", "text_source=features"]
    assert main(["train", str(data), "--out", str(tmp_path / "asked"), *short, *asked]) == 0
    assert "note: text read" not in capsys.readouterr().err


def test_train_first_says_what_it_read(
    small_synth_seq: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """unilabel train said nothing of the dataset it read: a slip in the files (few labeled rows, a range
    taken as SIMS', a modality missing) showed only in the figures a minute later."""
    short = ["--strategy", "copy", "--set", "multitask_max_epochs=1"]
    assert main(["train", str(small_synth_seq), "--out", str(tmp_path / "run"), *short]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"data {small_synth_seq}: ") and "labels in [-3, 3]" in first, first
    assert "text [T <= 20, 32]" in first and first.endswith("; no transcripts"), first
    assert main(["train", str(small_synth_seq), "--out", str(tmp_path / "quiet"), "--quiet", *short]) == 0
    assert "data " not in capsys.readouterr().err


def test_train_and_compare_say_before_training_that_valid_is_small_or_the_preset_is_for_the_other_range(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Six labeled valid rows chose the best epoch and gave every valid figure, and ``--preset sims`` (the
    paper's setting for labels in [-1, 1]) trained on [-3, 3] labels, with nothing said of either."""
    from models.compare import compare
    from models.synth import make_synthetic

    data = make_synthetic(tmp_path / "few", n_train=40, n_valid=6, n_test=4, seed=1)
    short = ["--strategy", "copy", "--set", "multitask_max_epochs=1"]
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--preset", "sims", *short]) == 0
    said = capsys.readouterr().err.splitlines()
    small = [i for i, line in enumerate(said) if line.startswith("note: valid has 6 labeled rows: ")]
    preset = said.index(
        "note: preset sims is the MUG paper's setting for labels in [-1, 1]; this dataset's are in [-3, 3]"
    )
    trained = [i for i, line in enumerate(said) if line.startswith("multitask ")]
    assert small and trained and small[0] < preset < trained[0], said  # before the training, not after
    assert "an accuracy's standard error can be 0.20" in said[small[0]]

    notes: list[str] = []
    short_hp = {"multitask_max_epochs": 1}
    compare(data, ["copy"], [1], tmp_path / "cmp", hyperparameters=short_hp, say=notes.append)
    assert [n for n in notes if n.startswith("note: ")] == [said[small[0]]]


def test_no_notes_for_a_valid_split_large_enough_and_a_preset_for_its_range(small_synth: Path) -> None:
    from models.config import PRESETS
    from models.dataset_loader import load_dataset
    from models.inputs import PRESET_RHO, dataset_notes

    assert set(PRESET_RHO) == set(PRESETS)  # a preset added must say which range it is for
    summary = load_dataset(small_synth).summary()  # 48 labeled valid rows, labels in [-3, 3]
    assert [dataset_notes(summary, p) for p in (None, "mosi", "mosei")] == [[], [], []]
    assert dataset_notes({**summary, "rho": 1.0}, "sims") == []


def test_evaluate_scores_a_run_of_another_label_range_as_the_run_did(tmp_path: Path) -> None:
    """A run on labels in [-2, 2] reported MAE and Corr, but evaluate_run on it raised "rho must be 3
    (MOSI/MOSEI) or 1 (SIMS)"; a rho of 0 was taken as a range ([-0, 0])."""
    import json

    from models.dataset_loader import load_dataset
    from models.evaluate import evaluate_run
    from models.pipeline import train
    from models.synth import make_synthetic

    ds = load_dataset(make_synthetic(tmp_path / "ds", n_train=64, n_valid=32, n_test=8, rho=2.0), rho=2)
    run = train(ds, tmp_path / "run", strategy="copy", hyperparameters={"multitask_max_epochs": 1}).out_dir
    valid = ds.labeled("valid")
    pd.DataFrame({"id": ds.ids[valid], "label": ds.label[valid]}).to_csv(tmp_path / "l.csv", index=False)
    scored = evaluate_run(run, tmp_path / "l.csv")
    saved = json.loads((run / "metrics.json").read_text())["valid"]
    assert set(saved) == {"mae", "corr"} and {k: scored[k] for k in saved} == pytest.approx(saved, abs=1e-4)
    for bad in (0, -1.0, float("nan"), True, "3"):
        with pytest.raises(ValueError, match="rho must be a positive number"):
            evaluate_run(run, tmp_path / "l.csv", rho=bad)


def test_the_librarys_bad_arguments_are_named(small_synth: Path, tmp_path: Path) -> None:
    """docs/library.md promises a ValueError naming the argument; these raised AttributeError or TypeError
    from deep inside (or, for compare's seeds, only after the first run had trained)."""
    import numpy as np

    from models.compare import compare
    from models.dataset_loader import load_dataset
    from models.pipeline import train
    from models.trained_model import TrainedModel

    ds = load_dataset(small_synth)
    out = tmp_path / "run"
    calls = {
        "dataset: a Dataset or the path of one, got int": lambda: train(5, out),
        "out_dir: the path of the run directory to write, got None": lambda: train(ds, None),
        "device: must be auto, cpu or cuda, got None": lambda: train(ds, out, device=None),
        "strategy: unknown strategy ['copy']": lambda: train(ds, out, strategy=["copy"]),
        "should_stop: a function returning True to stop": lambda: train(ds, out, should_stop=True),
        "seeds: a list, got 1111": lambda: compare(ds, ["copy"], 1111, out),
        "strategies: a list, got 'copy'": lambda: compare(ds, "copy", [1111], out),
        "seed: must be a whole number in [0, 2**32), got -1": lambda: compare(ds, ["copy"], [1111, -1], out),
        "rho: a Dataset has its label range": lambda: compare(ds, ["copy"], [1111], out, rho=3),
        "progress: True or False": lambda: compare(ds, ["copy"], [1111], out, progress=print),
    }
    for message, call in calls.items():
        with pytest.raises(ValueError) as raised:
            call()
        assert str(raised.value).startswith(message), (message, raised.value)
    assert not out.exists()  # nothing trained before the refusal

    seeds = np.arange(1111, 1112)  # numpy's numbers, as a loop over np.arange gives them
    table = compare(ds, ["copy"], seeds, out, hyperparameters={"multitask_max_epochs": 1}, progress=False)
    assert "copy" in table and (out / "copy" / "seed1111" / "model.json").is_file()
    model = TrainedModel.load(out / "copy" / "seed1111")
    assert len(model.predict_dataset(small_synth)) == len(ds)  # a path, as train() takes one
    for features, message in (
        (np.zeros((2, 32)), "features: a dict of modality -> vectors or sequences, got ndarray"),
        ({"txt": [np.zeros(32)]}, "features: 'txt' is no modality; one of text, audio, vision"),
        ({"text": 5}, "features['text']: a list or array of vectors, got int"),
    ):
        with pytest.raises(ValueError) as raised:
            model.predict_batch(features)
        assert str(raised.value) == message


def test_sigterm_unwinds_train_as_ctrl_c_does(small_synth: Path, tmp_path: Path) -> None:
    """SIGTERM (or a closed terminal's SIGHUP) ended `unilabel train` at once, silently (status 143), its
    staging folder left beside --out for good; now it unwinds as Ctrl-C does: the run it replaces stays as it
    was, nothing is left behind, and one line says so."""
    import os
    import signal
    import subprocess
    import sys

    run = tmp_path / "run"
    short = ["--strategy", "copy", "--quiet", "--set", "multitask_max_epochs=1"]
    assert main(["train", str(small_synth), "--out", str(run), *short]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    cmd = [sys.executable, "-m", "models.cli", "train", str(small_synth), "--out", str(run), "--overwrite"]
    cmd += ["--strategy", "mug", "--set", "pretrain_epochs=1000"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:  # a line at every tenth of a stage: training is under way
        if line.startswith("pretrain"):
            break
    proc.send_signal(signal.SIGTERM)
    said = proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert said.strip().splitlines()[-1] == "unilabel train: interrupted; nothing was written", said
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no .run.partial-PID left


def test_an_out_folder_a_run_cannot_replace_is_named_so(
    small_synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """--out on an empty mount point (or an empty folder the user may not rename, in a sticky /tmp) trained
    the whole run, then said "was written by another process meanwhile"."""
    import os

    from models.report import publish_dir

    out = tmp_path / "mnt"
    out.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == out or real(p))
    short = ["--strategy", "copy", "--quiet", "--set", "multitask_max_epochs=1"]
    assert main(["train", str(small_synth), "--out", str(out), *short]) == 2
    said = capsys.readouterr().err
    assert f"out: {out} is a mount point, which a run cannot replace; give a folder in it" in said, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnt"]  # refused before any training
    monkeypatch.setattr(os.path, "ismount", real)

    def refused(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    staging = tmp_path / ".mnt.partial-1"
    staging.mkdir()
    monkeypatch.setattr(os, "rename", refused)
    with pytest.raises(OSError, match="mnt: cannot be replaced by the finished folder: Operation not perm"):
        publish_dir(staging, out)


def test_predict_checks_where_it_writes_before_predicting(
    small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`predict --out afile/p.csv` said "afile: File exists", and a read-only folder was named by the hidden
    temp file beside the output (".p.csv.h401n53j.tmp: Read-only file system"), after the predictions."""
    from models.report import write_csv_atomic

    run = tmp_path / "run"
    short = ["--strategy", "copy", "--quiet", "--set", "multitask_max_epochs=1"]
    assert main(["train", str(small_synth), "--out", str(run), *short]) == 0
    afile = tmp_path / "afile"
    afile.write_text("x")
    capsys.readouterr()
    assert main(["predict", str(run), str(small_synth), "--out", str(afile / "p.csv")]) == 2
    assert f"--out {afile / 'p.csv'}: {afile} is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(OSError, match=r"p.csv: cannot be written: a part of that path is a file"):
        write_csv_atomic(afile / "sub" / "p.csv", pd.DataFrame({"a": [1]}))


def test_predict_and_baseline_out_write_into_a_pipe_and_through_a_link(
    small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`predict --out` and `baseline --out` renamed a temp file onto the path: as root that replaced
    /dev/null itself with a regular file (elsewhere: "/dev cannot be written"), a named pipe with a file,
    and a link with a file, leaving what it named unwritten. They write into a pipe or a device, and
    through a link to its file, as `unilabel-remote -o` does."""
    import os
    import stat

    run = tmp_path / "run"
    short = ["--strategy", "copy", "--quiet", "--set", "multitask_max_epochs=1"]
    assert main(["train", str(small_synth), "--out", str(run), *short]) == 0
    capsys.readouterr()
    pipe, real, link = tmp_path / "pipe", tmp_path / "real.csv", tmp_path / "link.csv"
    os.mkfifo(pipe)
    link.symlink_to(real.name)  # dangling until written through
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # so that the command's open of it does not block
    try:
        for out in (pipe, link):
            assert main(["predict", str(run), str(small_synth), "--out", str(out)]) == 0
            assert capsys.readouterr().out == f"240 predictions written to {out}\n"
        written = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(pipe).st_mode) and link.is_symlink()
    assert written.decode() == real.read_text() and len(pd.read_csv(real)) == 240
    floor = tmp_path / "floor.json"
    link.unlink()
    link.symlink_to(floor.name)
    assert main(["baseline", str(small_synth), "--set", "text_source=features", "--out", str(link)]) == 0
    assert link.is_symlink() and '"rows"' in floor.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["floor.json", "link.csv", "pipe", "real.csv", "run"]


def test_train_out_through_a_link_writes_the_folder_it_names(
    small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`train --out link --overwrite`, the link naming a run, swapped the link itself for the new run and left
    the old link behind as a hidden `.link.partial-PID`, the linked run untouched; `--out afile` said only
    "afile: Not a directory". A run goes where the link points and the link stays; a file is named as one."""
    short = ["--strategy", "copy", "--quiet", "--set", "multitask_max_epochs=1"]
    real, link, dangling = tmp_path / "real", tmp_path / "link", tmp_path / "dangling"
    assert main(["train", str(small_synth), "--out", str(real), *short, "--seed", "1"]) == 0
    before = (real / "model.safetensors").read_bytes()
    link.symlink_to(real.name)
    dangling.symlink_to("later")
    assert main(["train", str(small_synth), "--out", str(link), *short, "--seed", "2", "--overwrite"]) == 0
    assert main(["train", str(small_synth), "--out", str(dangling), *short]) == 0
    assert link.is_symlink() and (real / "model.safetensors").read_bytes() != before
    assert dangling.is_symlink() and (tmp_path / "later" / "model.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "later", "link", "real"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    capsys.readouterr()
    for extra in ([], ["--overwrite"]):
        assert main(["train", str(small_synth), "--out", str(afile), *short, *extra]) == 2
        assert f"out: cannot write a run directory at {afile}: it is a file" in capsys.readouterr().err


def test_a_run_removes_what_killed_runs_into_its_folder_left(small_synth: Path, tmp_path: Path) -> None:
    """`kill -9` of `unilabel train --out run` left .run.partial-PID beside it for good (the whole run when it
    came while the files were written); the next run into the same folder removes those whose process is
    gone, and leaves a live one's alone."""
    import os
    import subprocess
    import sys

    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])  # its pid is free once it ended
    dead_pid.wait()
    dead = tmp_path / f".run.partial-{dead_pid.pid}"
    live = tmp_path / f".run.partial-{os.getppid()}"
    other = tmp_path / f".other.partial-{dead_pid.pid}"
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * 100)
    short = ["--strategy", "copy", "--quiet", "--set", "multitask_max_epochs=1"]
    assert main(["train", str(small_synth), "--out", str(tmp_path / "run"), *short]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "run"])


def test_a_runs_files_share_one_mode(small_synth: Path, tmp_path: Path) -> None:
    """model.safetensors was 0600 while the run's other files were 0644: a run copied or served for others
    to read lacked its weights."""
    short = ["--strategy", "copy", "--quiet", "--set", "multitask_max_epochs=1"]
    assert main(["train", str(small_synth), "--out", str(tmp_path / "run"), *short]) == 0
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert set(modes.values()) == {"0o644"}, modes


def test_a_run_started_ignoring_sighup_outlives_its_terminal(small_synth: Path, tmp_path: Path) -> None:
    """Under `nohup` (SIGHUP ignored from the start) the closed terminal's SIGHUP must not stop the run, as
    SIGHUP unwinding like Ctrl-C would otherwise make it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "models.cli", "train", str(small_synth), "--out", str(tmp_path / "run")]
    cmd += ["--strategy", "mug", "--set", "pretrain_epochs=1000"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    nohup = lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)  # noqa: E731 - what nohup does
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=nohup)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("pretrain"):
            break
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert proc.poll() is None  # still training
    proc.send_signal(signal.SIGTERM)
    proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM


def test_train_takes_a_numpy_seed(small_synth: Path, tmp_path: Path) -> None:
    """check_seed took np.int64(1111), but train() handed the numpy number on to random.seed (a TypeError)."""
    import json

    import numpy as np

    from models.pipeline import train

    run = train(
        small_synth,
        tmp_path / "run",
        strategy="copy",
        seed=np.int64(5),
        progress=None,
        hyperparameters={"multitask_max_epochs": 1},
    ).out_dir
    assert json.loads((run / "config.json").read_text())["seed"] == 5


def test_a_run_no_better_than_the_training_mean_on_valid_is_said(
    small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """lr=1 trains to finite figures (L1 losses keep the gradients bounded) that look like any other run's;
    the CLI says when valid MAE is no better than predicting a constant, and only then."""
    short = ["--set", "pretrain_epochs=2", "--set", "meta_epochs=2", "--set", "multitask_max_epochs=3"]
    said = "on valid the model does no better than a constant"
    diverging = [*short, "--set", "lr=1", "--quiet"]
    assert main(["train", str(small_synth), *diverging, "--out", str(tmp_path / "a")]) == 0
    assert said in capsys.readouterr().err
    assert main(["train", str(small_synth), *short, "--quiet", "--out", str(tmp_path / "b")]) == 0
    assert said not in capsys.readouterr().err


def test_the_train_mean_note_is_not_given_on_a_valid_split_too_small_to_say(
    small_synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """One valid row whose label is the training mean: predicting that mean scores about 0, so every run,
    one that learned included, was told it learned nothing; the few-rows note says what holds instead."""
    import numpy as np

    from models.dataset_writer import write_dataset

    ds = load_dataset(small_synth)
    valid = np.flatnonzero(ds.split == "valid")
    near = valid[np.argmin(np.abs(ds.label[valid] - ds.label[ds.split == "train"].mean()))]
    rows = np.flatnonzero((ds.split != "valid") | (np.arange(len(ds)) == near))
    data = write_dataset(
        tmp_path / "ds",
        ids=list(ds.ids[rows]),
        split=list(ds.split[rows]),
        label=ds.label[rows],
        features={m: f.values[rows] for m, f in ds.features.items()},
    )
    args = ["train", str(data), "--strategy", "none", "--quiet", "--out", str(tmp_path / "run")]
    assert main([*args, "--set", "multitask_max_epochs=3"]) == 0
    err = capsys.readouterr().err
    assert "valid has 1 labeled rows" in err
    assert "on valid the model does no better than a constant" not in err
