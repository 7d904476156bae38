"""What a client may download of a run's JSON files: no path of the server in them.

The library records where things were on the host that trained: config.json's ``dataset.path`` (the folder of
the uploaded dataset under ARTIFACT_DIR) and ``text_model`` (the encoder's directory), model.json's
``net_spec.text_model``. Served copies leave the dataset's path out and cut every other absolute path to its
last component (a text model's name); the files on the volume stay as the library wrote them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from worker.artifacts import read_json

SANITIZED = frozenset({"config.json", "model.json", "card.json"})
ABSOLUTE = re.compile(r"^(/|[A-Za-z]:[\\/]|\\\\)")


def scrub(value: Any) -> Any:
    """Every absolute path in a JSON value replaced by its last component."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str) and ABSOLUTE.match(value):
        return re.split(r"[\\/]", value.rstrip("\\/"))[-1] or None
    return value


def sanitized(name: str, path: Path) -> Any:
    data = read_json(path)
    if name == "config.json" and isinstance(data.get("dataset"), dict):
        data["dataset"]["path"] = None
    if name == "card.json":
        data.pop("owner", None)  # the key id is the service's business, not part of the model
    return scrub(data)
