"""service/downloads.run_archive: a run's zip written while it is sent, a chunk at a time."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from service.downloads import CHUNK, run_archive


def test_archive_is_sent_in_chunks_and_holds_what_the_run_has(tmp_path: Path) -> None:
    weights = np.random.default_rng(0).bytes(5 * CHUNK + 123)  # random bytes: deflate could not shrink them
    (tmp_path / "model.safetensors").write_bytes(weights)
    (tmp_path / "predictions.csv").write_text("id,split,pred\n" + "u,train,0.5\n" * 100_000)
    config = {"dataset": {"path": "/srv/data/ds1"}, "text_model": "/opt/text-models/mine"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    names = ("config.json", "history.csv", "predictions.csv", "model.safetensors")  # no history.csv here
    parts = list(run_archive(tmp_path, names, "m1"))
    assert max(map(len, parts)) <= CHUNK + 4096, [len(p) for p in parts]  # never the whole file at once
    assert len(parts) >= 6
    with zipfile.ZipFile(io.BytesIO(b"".join(parts))) as zf:
        assert zf.namelist() == ["m1/config.json", "m1/predictions.csv", "m1/model.safetensors"]
        assert zf.read("m1/model.safetensors") == weights
        assert zf.read("m1/predictions.csv") == (tmp_path / "predictions.csv").read_bytes()
        assert zf.getinfo("m1/predictions.csv").compress_size < 100_000  # deflated
        served = json.loads(zf.read("m1/config.json"))  # no server path
        assert served == {"dataset": {"path": None}, "text_model": "mine"}
