"""Which text encoder a job may name: ``text_model`` is null (the packaged all-MiniLM-L6-v2) or the name of a
model directory under TEXT_MODEL_DIR, never a path. The API refuses anything else (422) and the worker
refuses it again before training, with one message whatever the value, so that no answer tells whether
some path exists on a server."""

from __future__ import annotations

import re
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def problem(value: object, model_dir: Path | None) -> str | None:
    """Why ``value`` may not be a job's text_model (None when it may)."""
    if value is None:
        return None
    if model_dir is None:
        return "must be null (the packaged all-MiniLM-L6-v2): this service offers no other text model"
    if not isinstance(value, str) or not NAME.match(value):  # NAME starts alphanumeric: never . or ..
        return (
            "must be null (the packaged all-MiniLM-L6-v2) or the name of a model installed in the "
            f"service's TEXT_MODEL_DIR{_offer(model_dir)}"
        )
    if model_dir.is_dir() and resolve(value, model_dir) is None:  # the API may not mount the models
        return f"no text model named {value!r} is installed{_offer(model_dir)}"
    return None


def resolve(value: str, model_dir: Path) -> str | None:
    """The directory of model ``value`` under ``model_dir``, or None when there is none by that name."""
    if not NAME.match(value):
        return None
    root = model_dir.resolve()
    path = (root / value).resolve()
    if path.parent != root or not (path / "config.json").is_file():
        return None
    return str(path)


def _offer(model_dir: Path) -> str:
    """`` (installed: a, b)``: the models under ``model_dir``, for a refusal's message."""
    try:
        entries = list(model_dir.iterdir())
    except OSError:
        return ""
    names = sorted(p.name for p in entries if NAME.match(p.name) and (p / "config.json").is_file())
    return f" (installed: {', '.join(names)})" if names else ""
