"""docs/library.md's script runs as it stands in an empty folder, and its claims about errors hold."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.config import HyperparameterError
from models.dataset import DatasetError
from models.dataset_loader import load_dataset
from models.pipeline import train

DOC = Path(__file__).parents[1] / "docs" / "library.md"


def _script() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/library.md: one script, run whole by this test"
    return blocks[0]


def test_the_documented_script_runs_in_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(_script())
    env = {**os.environ, "UNILABEL_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "mug-1111"
    for name in ("model.safetensors", "unimodal_labels.csv", "metrics.json", "report/report.html"):
        assert (run / name).is_file(), name
    assert (tmp_path / "runs" / "compare" / "copy" / "seed1111" / "model.json").is_file()
    assert "multitask epoch 4/4, run 100%" in done.stdout
    assert "| mug | 1 |" in done.stdout and "| copy | 1 |" in done.stdout  # the comparison's table
    assert "runs/mug-1111/report/report.html" in done.stdout


def test_the_documented_errors_say_what_the_doc_says(tmp_path: Path, small_synth: Path) -> None:
    text = DOC.read_text()
    ds = load_dataset(small_synth)
    with pytest.raises(HyperparameterError) as err:
        train(ds, tmp_path / "run", hyperparameters={"beta": -1})
    assert f"`{err.value}`" in text
    assert not (tmp_path / "run").exists()
    with pytest.raises(DatasetError) as bad:
        load_dataset(DOC)
    problem = bad.value.problems[0]
    assert (problem.file, problem.field, problem.rows) == (str(DOC), "", ())


def test_train_takes_a_path_and_progress_as_compare_does(tmp_path: Path, small_synth: Path) -> None:
    """train(path, ..., progress=False), as docs/library.md shows compare() called, was an AttributeError and
    a TypeError from inside stage 1; load_dataset(rho="3") a TypeError."""
    tiny = {"pretrain_epochs": 1, "meta_epochs": 1, "multitask_max_epochs": 1}
    result = train(small_synth, tmp_path / "run", strategy="copy", hyperparameters=tiny, progress=False)
    assert (result.out_dir / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="progress: a function taking a ProgressEvent, or None; got 1"):
        train(small_synth, tmp_path / "other", progress=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rho must be a positive number, got '3'"):
        load_dataset(small_synth, rho="3")  # type: ignore[arg-type]
    assert load_dataset(small_synth, rho=np.float32(3)).rho == 3.0  # numpy's numbers are numbers


def test_the_documented_signatures_name_real_parameters_and_defaults() -> None:
    """Each `call(args)` of the doc's list: its keyword arguments are the function's, with the default the doc
    gives (a renamed or dropped keyword makes the doc wrong, and this test fail)."""
    import inspect

    from models.compare import compare
    from models.trained_model import TrainedModel

    short = {
        "load_dataset": load_dataset,
        "train": train,
        "compare": compare,
        "TrainedModel.load": TrainedModel.load,
        "predict_dataset": TrainedModel.predict_dataset,
        "predict_batch": TrainedModel.predict_batch,
    }
    callbacks = {"before_publish"}  # a function the caller gives, not one of the library's
    prose = re.sub(r"```.*?```", "", DOC.read_text(), flags=re.S)
    checked, wrong = 0, []
    for name, args in re.findall(r"`([\w.]+)\(([^`()]*)\)", prose):
        if name in callbacks:
            continue
        if name in short:
            func = short[name]
        else:
            module, _, attribute = name.rpartition(".")
            func = getattr(__import__(module, fromlist=[attribute]), attribute)
        params = inspect.signature(func).parameters
        keyword = False
        for arg in (a.strip() for a in args.split(",")):
            if arg == "*":
                keyword = True
                continue
            if arg in ("", "..."):
                continue
            arg_name, has_default, default = arg.partition("=")
            if not (keyword or has_default):
                continue  # a positional argument: the doc may name it for what it is (`dataset` for `ds`)
            if arg_name not in params:
                wrong.append(f"{name}: no parameter {arg_name}")
            elif has_default and repr(params[arg_name].default) != default.replace('"', "'"):
                wrong.append(f"{name}: {arg_name} defaults to {params[arg_name].default!r}, not {default}")
            checked += 1
    assert not wrong, wrong
    assert checked >= 20, checked
