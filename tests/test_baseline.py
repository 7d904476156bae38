"""The linear floor (`unilabel baseline`): ridge on train, penalty chosen on valid, per input block."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from models.baseline import PENALTIES, linear_floor, ridge_floor_row, ridge_predict
from models.cli import main
from models.dataset_loader import load_dataset
from models.metrics import sentiment_metrics
from models.text_encoder import encode_batches
from tests.conftest import MOSI_DIR


def test_ridge_matches_sklearn_on_standardised_inputs() -> None:
    g = np.random.default_rng(0)
    x = g.normal(size=(80, 5)) * [1, 10, 0.1, 3, 1] + 4
    y = x @ [0.5, 0.02, 3.0, -0.2, 0.0] + g.normal(size=80) * 0.1
    fit = np.arange(60)
    ours = ridge_predict(x, y, fit, 2.5)
    z = (x - x[fit].mean(0)) / x[fit].std(0)
    reference = Ridge(alpha=2.5).fit(z[fit], y[fit]).predict(z)
    assert np.allclose(ours, reference, atol=1e-8)


def test_penalty_is_chosen_on_valid_mae(small_synth: Path) -> None:
    ds = load_dataset(small_synth)
    x = ds.features["text"].values.astype(np.float64)
    row = ridge_floor_row("text", x, ds)
    y = ds.label.astype(np.float64)
    train, valid = ds.labeled("train"), ds.labeled("valid")
    maes = [
        sentiment_metrics(ridge_predict(x, y, train, float(p))[valid], y[valid], ds.rho)["mae"]
        for p in PENALTIES
    ]
    assert row.penalty == pytest.approx(float(PENALTIES[int(np.argmin(maes))]))
    assert row.valid["mae"] == pytest.approx(min(maes))


def test_floor_rows_and_cli(small_synth: Path, tmp_path: Path, capsys) -> None:
    ds = load_dataset(small_synth)  # text features, no transcripts
    names = [r.inputs for r in linear_floor(ds)]
    assert names == [
        "text (features)",
        "audio",
        "vision",
        "text (features) + audio + vision",
        "text (features) + audio",
    ]
    assert main(["baseline", str(small_synth), "--out", str(tmp_path / "floor.json")]) == 0
    out = capsys.readouterr().out
    assert "| text (features) + audio + vision |" in out
    saved = json.loads((tmp_path / "floor.json").read_text())
    assert [r["inputs"] for r in saved["rows"]] == names and saved["dataset"] == ds.sha256


def test_baseline_shows_the_transcripts_encoding(
    small_synth: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encoder's batches are most of a first run's time: they show as the `encode` progress train shows
    (in a log, lines), not as a silent wait."""
    monkeypatch.setenv("UNILABEL_CACHE_DIR", str(tmp_path / "cache"))  # encoded here, not found in a cache
    data = tmp_path / "ds"
    shutil.copytree(small_synth, data)
    table = pd.read_csv(data / "utterances.csv", dtype={"id": str})
    table["transcript"] = [f"utterance number {i}" for i in range(len(table))]
    table.to_csv(data / "utterances.csv", index=False)
    assert main(["baseline", str(data)]) == 0
    captured = capsys.readouterr()
    total = encode_batches(len(table))
    assert f"encode {total}/{total}" in captured.err.splitlines(), captured.err
    assert "| text (encoder, mean pooling, L2-normalised) |" in captured.out


@pytest.mark.slow
@pytest.mark.skipif(not (MOSI_DIR / "features.npz").is_file(), reason="shared CMU-MOSI data not present")
def test_floor_reproduces_the_mosi_readme_table() -> None:
    """The floor table of the MOSI data README (ridge on train, penalty chosen on valid)."""
    ds = load_dataset(MOSI_DIR)
    rows = {r.inputs: r for r in linear_floor(ds)}
    expect = {  # inputs: (valid acc2, MAE, Corr) from the data's README
        "text (features)": (0.810, 0.878, 0.673),
        "audio": (0.496, 1.345, 0.125),
        "vision": (0.536, 1.309, 0.116),
        "text (features) + audio + vision": (0.831, 0.899, 0.672),
    }
    for name, (acc, mae, corr) in expect.items():
        v = rows[name].valid
        assert v["mae"] == pytest.approx(mae, abs=0.002) and v["corr"] == pytest.approx(corr, abs=0.012), name
        if name != "audio":  # the README's audio row is at chance; its sign split differs with the penalty
            assert v["acc2_has0"] == pytest.approx(acc, abs=0.002), name
    minilm = next(r for name, r in rows.items() if name.startswith("text (encoder"))
    assert minilm.valid["mae"] < 0.85 and minilm.valid["acc2_has0"] > 0.84  # README: 0.846 / 0.851
