"""`unilabel evaluate --predictions FILE`: labels of new utterances scored against what `unilabel predict`
wrote for them (RUN/predictions.csv only covers the dataset the run was trained on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.cli import main
from models.evaluate import evaluate_run


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run directory as evaluate reads it: its own predictions and model.json's rho (no training needed)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.csv").write_text("id,split,pred\na,train,0.4\nb,valid,-0.2\n")
    (run / "model.json").write_text(json.dumps({"rho": 3.0}))
    return run


def new_data(tmp_path: Path) -> tuple[Path, Path]:
    """What `unilabel predict RUN NEW --out preds.csv` writes for new utterances, and their labels."""
    preds = tmp_path / "preds.csv"
    preds.write_text("id,split,pred,pred_T,pred_A,pred_V\nn1,test,1.0,,,\nn2,test,-1.0,,,\nn3,test,2.0,,,\n")
    labels = tmp_path / "new-labels.csv"
    labels.write_text("id,label\nn1,1.5\nn2,-0.5\nn3,2.5\n")
    return preds, labels


def test_predictions_of_new_data_are_scored(tmp_path: Path, run: Path, capsys: pytest.CaptureFixture) -> None:
    preds, labels = new_data(tmp_path)
    argv = ["evaluate", str(run), "--labels", str(labels), "--predictions", str(preds)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    scored = json.loads(out)
    assert scored["n"] == 3 and scored["splits"] == {"test": 3} and err == ""
    assert scored["mae"] == pytest.approx(0.5) and scored["corr"] == pytest.approx(1.0, abs=0.01)
    assert evaluate_run(run, labels, predictions=preds) == scored  # the library call, as docs/library.md


def test_without_predictions_the_missing_ids_point_to_the_option(
    tmp_path: Path, run: Path, capsys: pytest.CaptureFixture
) -> None:
    _, labels = new_data(tmp_path)
    assert main(["evaluate", str(run), "--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert "3 id(s) have no prediction in the run (n1, n2, n3)" in err
    assert "to score `unilabel predict`'s output, give that file with --predictions" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,split,label\nn1,test,1\n", "preds.csv: column 'pred' is missing (need id,pred"),
        (
            "id,split,pred\nn1,test,1\nn1,test,2\n",
            "preds.csv: column 'id': duplicate ids (rows 1, counting from 0 after the header)",
        ),
        ("id,split,pred\nn1,test,1\n", "new-labels.csv: 2 id(s) have no prediction in preds.csv (n2, n3)\n"),
    ],
)
def test_a_bad_predictions_file_is_named(
    tmp_path: Path, run: Path, capsys: pytest.CaptureFixture, content: str, message: str
) -> None:
    preds, labels = new_data(tmp_path)
    preds.write_text(content)
    assert main(["evaluate", str(run), "--labels", str(labels), "--predictions", str(preds)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("unilabel evaluate: error:\n") and message in err


def test_a_predictions_file_that_is_not_there_is_named(
    tmp_path: Path, run: Path, capsys: pytest.CaptureFixture
) -> None:
    _, labels = new_data(tmp_path)
    missing = tmp_path / "nope.csv"
    assert main(["evaluate", str(run), "--labels", str(labels), "--predictions", str(missing)]) == 2
    assert f"predictions: {missing}: no such file" in capsys.readouterr().err


def test_labels_and_predictions_may_come_through_pipes(
    tmp_path: Path, run: Path, capsys: pytest.CaptureFixture
) -> None:
    """`--labels <(cut -d, -f1,3 data.csv)` (a pipe, /dev/fd/63) and /dev/stdin were refused as "no such
    file": only regular files were read. A folder is named as one."""
    import os
    import threading

    preds, labels = new_data(tmp_path)
    pipes = {name: tmp_path / f"{name}.pipe" for name in ("labels", "predictions")}

    def feed(pipe: Path, content: str) -> None:
        with open(pipe, "w") as fh:  # blocks until evaluate opens the pipe to read it
            fh.write(content)

    feeders = []
    for name, source in (("labels", labels), ("predictions", preds)):
        os.mkfifo(pipes[name])
        feeders.append(threading.Thread(target=feed, args=(pipes[name], source.read_text()), daemon=True))
        feeders[-1].start()
    piped = ["--labels", str(pipes["labels"]), "--predictions", str(pipes["predictions"])]
    assert main(["evaluate", str(run), *piped]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 3
    for feeder in feeders:
        feeder.join(timeout=10)
    assert main(["evaluate", str(run), "--labels", str(tmp_path)]) == 2
    assert f"labels: {tmp_path}: is a folder; give a CSV file" in capsys.readouterr().err
