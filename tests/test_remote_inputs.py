"""Prediction inputs taken from a dataset follow the model's input spec (remote/client.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from remote.client import utterances_from_dataset


def test_utterances_follow_the_model_input_spec(small_synth: Path, tmp_path: Path) -> None:
    data = tmp_path / "ds"
    shutil.copytree(small_synth, data)
    table = pd.read_csv(data / "utterances.csv", dtype={"id": str})
    table["transcript"] = [f"utterance {i}" for i in range(len(table))]
    table.to_csv(data / "utterances.csv", index=False)

    everything = utterances_from_dataset(data, "test", 2)
    assert set(everything[0]["features"]) == {"text", "audio", "vision"} and "transcript" in everything[0]

    # a model that reads text from the transcript and was trained on text and audio only
    spec = {"text": {"transcript": True}, "audio": {"dim": 16, "sequence": False}}
    chosen = utterances_from_dataset(data, "test", 2, spec)
    assert [u["id"] for u in chosen] == [u["id"] for u in everything]
    assert set(chosen[0]["features"]) == {"audio"} and chosen[0]["transcript"] == everything[0]["transcript"]

    # a model on features only gets no transcript
    spec = {m: {"dim": d, "sequence": False} for m, d in (("text", 32), ("audio", 16), ("vision", 24))}
    assert all("transcript" not in u for u in utterances_from_dataset(data, "test", 2, spec))
