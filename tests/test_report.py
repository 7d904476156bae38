"""Exact-string tests for the result tables and the atomic writers (models/report.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.report import (
    FOOTNOTE,
    PAIRED_FOOTNOTE,
    format_cell,
    mean_std_table,
    paired_table,
    write_csv_atomic,
    write_json,
)


def test_mean_std_table_exact() -> None:
    results = {
        # acc2_non0 [0.80, 0.82, 0.84] -> x100 mean 82.00; deviations -2, 0, 2 -> sqrt(8 / 2) = 2.00
        # mae [0.70, 0.72, 0.74] -> 0.720 ± 0.020; corr [0.79, 0.80, 0.81] -> 0.800 ± 0.010
        "mug": [
            {"acc2_non0": 0.80, "mae": 0.70, "corr": 0.79},
            {"acc2_non0": 0.82, "mae": 0.72, "corr": 0.80},
            {"acc2_non0": 0.84, "mae": 0.74, "corr": 0.81},
        ],
        # one seed: mean only; 0.8346 -> 83.46
        "self_mm": [{"acc2_non0": 0.8346, "mae": 0.708, "corr": 0.7961}],
    }
    got = mean_std_table(results, ["acc2_non0", "mae", "corr"], title="MOSI test")
    expected = (
        "### MOSI test\n"
        "\n"
        "| strategy | n | Acc2 (non0) | MAE | Corr |\n"
        "|---|---:|---:|---:|---:|\n"
        "| mug | 3 | 82.00 ± 2.00 | 0.720 ± 0.020 | 0.800 ± 0.010 |\n"
        "| self_mm | 1 | 83.46 | 0.708 | 0.796 |\n"
        "\n"
        "mean ± sample std (ddof=1) over n seeds; a single seed shows the mean only. "
        "Acc/F1 x100 with 2 decimals; MAE, Corr and other metrics as is with 3 decimals.\n"
    )
    assert got == expected


def test_mean_std_table_no_title_two_seeds_and_unknown_metric() -> None:
    # f1 [0.5, 0.6] -> 55.00 ± 7.07 (|0.1| / sqrt(2) = 0.070711 -> x100 7.07)
    # loss (unknown key, not acc/f1) [1.0, 2.0] -> 1.500 ± 0.707; header shows the key as is
    results = {"a|b": [{"f1": 0.5, "loss": 1.0}, {"f1": 0.6, "loss": 2.0}]}
    got = mean_std_table(results, ["f1", "loss"])
    assert got == (
        "| strategy | n | F1 | loss |\n"
        "|---|---:|---:|---:|\n"
        "| a\\|b | 2 | 55.00 ± 7.07 | 1.500 ± 0.707 |\n"
        "\n" + FOOTNOTE + "\n"
    )


def test_missing_metric() -> None:
    # absent from every seed -> n/a; absent from some -> error
    assert "| s | 1 | n/a |" in mean_std_table({"s": [{"mae": 0.7}]}, ["acc7"])
    with pytest.raises(ValueError, match="present in 1 of 2 seeds"):
        mean_std_table({"s": [{"mae": 0.7}, {"acc7": 0.4}]}, ["mae"])


def test_table_errors() -> None:
    with pytest.raises(ValueError, match="results is empty"):
        mean_std_table({}, ["mae"])
    with pytest.raises(ValueError, match="metrics is empty"):
        mean_std_table({"s": [{"mae": 0.7}]}, [])
    with pytest.raises(ValueError, match="no seed results"):
        mean_std_table({"s": []}, ["mae"])


def test_format_cell() -> None:
    assert format_cell("acc7", [0.4667]) == "46.67"
    assert format_cell("mae", [0.7084]) == "0.708"
    assert format_cell("acc5", []) == "n/a"
    assert format_cell("corr", [0.5, 0.5]) == "0.500 ± 0.000"


def test_an_undefined_value_is_n_a_not_nan() -> None:
    """A seed's metric stored as NaN (or infinity) in results.json: before, the cells read "nan ± nan" and
    "+nan ± nan, se nan (1/2)"."""
    assert format_cell("corr", [0.5, float("nan")]) == "n/a"
    assert format_cell("acc7", [float("inf")]) == "n/a"
    results = {
        "mug": [{"mae": 0.7, "corr": 0.5}, {"mae": 0.72, "corr": 0.6}],
        "copy": [{"mae": 0.71, "corr": float("nan")}, {"mae": 0.7, "corr": 0.4}],
    }
    assert "| copy | 2 | 0.705 ± 0.007 | n/a |" in mean_std_table(results, ["mae", "corr"])
    paired = paired_table(results, ["mae", "corr"], "mug")
    assert "| mug - copy | 2 | +0.0050 ± 0.0212, se 0.0150 (1/2) | n/a |" in paired


def test_write_json_atomic(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.json"
    obj = {"a": np.float32(0.5), "b": np.int64(3), "c": np.arange(3), "d": Path("x/y"), "e": "±"}
    write_json(path, obj)
    expected = {"a": 0.5, "b": 3, "c": [0, 1, 2], "d": "x/y", "e": "±"}
    assert json.loads(path.read_text(encoding="utf-8")) == expected
    assert path.read_text(encoding="utf-8").endswith("}\n")
    write_json(path, [1, 2])  # overwrite
    assert json.loads(path.read_text(encoding="utf-8")) == [1, 2]
    assert sorted(os.listdir(path.parent)) == ["out.json"]  # no temp file left behind


def test_write_json_failure_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    write_json(path, {"ok": True})
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_write_csv_atomic(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_csv_atomic(path, pd.DataFrame({"strategy": ["mug", "self_mm"], "mae": [0.7, 0.71]}))
    assert path.read_text() == "strategy,mae\nmug,0.7\nself_mm,0.71\n"
    write_csv_atomic(path, pd.DataFrame({"x": [1]}, index=["r"]), index=True)
    assert path.read_text() == ",x\nr,1\n"
    assert sorted(os.listdir(tmp_path)) == ["t.csv"]
    with pytest.raises(TypeError, match="DataFrame"):
        write_csv_atomic(path, [1, 2])  # type: ignore[arg-type]


def test_paired_table_exact() -> None:
    results = {
        "mug": [
            {"acc7": 0.40, "mae": 0.70, "f1": 0.8},
            {"acc7": 0.38, "mae": 0.72, "f1": 0.8},
            {"acc7": 0.42, "mae": 0.68, "f1": 0.9},
        ],
        # mug - copy: acc7 +0.02, -0.02, +0.04 -> x100 mean +1.33,
        #   std sqrt(((2/3)^2 + (10/3)^2 + (8/3)^2) / 2) = sqrt(28/3) = 3.06; mug better (higher) in 2 of 3;
        # mae -0.01, +0.01, -0.03 -> mean -0.0100, std 0.0200; mug better (lower) in 2 of 3;
        # f1 equal up to float noise in seed 1, then +0.1 and 0 -> +3.33 ± 5.77, a tie is not better: 1 of 3;
        # se = std / sqrt(3): 1.76, 0.0115, 3.33.
        "copy": [
            {"acc7": 0.38, "mae": 0.71, "f1": 0.8 + 1e-15},
            {"acc7": 0.40, "mae": 0.71, "f1": 0.7},
            {"acc7": 0.38, "mae": 0.71, "f1": 0.9},
        ],
        "one": [{"acc7": 0.4, "mae": 0.7, "f1": 0.8}],
    }
    got = paired_table(
        {k: v for k, v in results.items() if k != "one"}, ["acc7", "mae", "f1"], "mug", title="t"
    )
    expected = (
        "### t\n"
        "\n"
        "| strategy | n | Acc7 | MAE | F1 |\n"
        "|---|---:|---:|---:|---:|\n"
        "| mug - copy | 3 | +1.33 ± 3.06, se 1.76 (2/3) | -0.0100 ± 0.0200, se 0.0115 (2/3) "
        "| +3.33 ± 5.77, se 3.33 (1/3) |\n"
        "\n" + PAIRED_FOOTNOTE.format(ref="mug") + "\n"
    )
    assert got == expected
    table = "\n".join(got.splitlines()[2:5])
    assert f"```\n{table}\n```" in (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    with pytest.raises(ValueError, match="'mug' has 3 seeds and 'one' 1; cannot pair them"):
        paired_table(results, ["mae"], "mug")
    with pytest.raises(ValueError, match="reference: 'nope' is not one of the strategies"):
        paired_table(results, ["mae"], "nope")
    with pytest.raises(ValueError, match="at least one other strategy"):
        paired_table({"mug": results["mug"]}, ["mae"], "mug")
    with pytest.raises(ValueError, match="metric 'corr' is missing from a run"):
        paired_table({"mug": results["mug"], "copy": results["copy"]}, ["corr"], "mug")
