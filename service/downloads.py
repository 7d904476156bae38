"""What a client may download of a run's JSON files: no path of the server in them.

The library records where things were on the host that trained: config.json's ``dataset.path`` (the folder of
the uploaded dataset under ARTIFACT_DIR) and ``text_model`` (the encoder's directory), model.json's
``net_spec.text_model``. Served copies leave the dataset's path out and cut every other absolute path to its
last component (a text model's name); the files on the volume stay as the library wrote them.

A whole run comes as one zip (``run_archive``), written while it is sent: a chunk at a time in memory,
whatever the size of the weights (a fine-tuned text encoder's included)."""

from __future__ import annotations

import io
import json
import os
import re
import time
import zipfile
from collections.abc import Iterator
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
    return sanitize(name, read_json(path))


def sanitize(name: str, data: Any) -> Any:
    """The JSON file ``name`` of a run as a client gets it."""
    if name == "config.json" and isinstance(data.get("dataset"), dict):
        data["dataset"]["path"] = None
    if name == "card.json":
        data.pop("owner", None)  # the key id is the service's business, not part of the model
    return scrub(data)


CHUNK = 1 << 20


class _Sink(io.RawIOBase):
    """Where ZipFile writes: bytes kept until taken. Not seekable, so ZipFile writes each member's sizes after
    its data (a data descriptor) and never goes back."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def run_archive(run_dir: Path, names: tuple[str, ...], folder: str) -> Iterator[bytes]:
    """A zip of the run's files among ``names`` (those it has: a run of an older version has fewer) under
    ``folder/``, as it is written: the JSON files of SANITIZED as their single downloads are served, the
    others as they are on the volume (the weights stored: deflate leaves a MOSI model's at 92% of their size
    for some 50 ms of CPU a MB). One file is open at a time; a published run is never changed or removed
    while the service runs."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w") as zf:
        for name in names:
            if not (run_dir / name).is_file():
                continue
            with open(run_dir / name, "rb") as handle:
                stat = os.fstat(handle.fileno())
                info = zipfile.ZipInfo(f"{folder}/{name}", time.localtime(stat.st_mtime)[:6])
                info.external_attr = 0o644 << 16  # rw-r--r-- once unzipped
                stored = name.endswith(".safetensors")
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                if name in SANITIZED:
                    data = sanitize(name, json.load(handle))
                    zf.writestr(info, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
                    continue
                info.file_size = stat.st_size  # lets ZipFile choose ZIP64 up front for a large file
                with zf.open(info, "w") as member:
                    while chunk := handle.read(CHUNK):
                        member.write(chunk)
                        if sink.parts:
                            yield sink.take()
    yield sink.take()  # what deflate held back, and the central directory
