"""What the `unilabel` command line's values mean: each is read and checked here, and a bad one is an error
naming its flag (or environment variable) before any work starts."""

from __future__ import annotations

import argparse
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

from models.config import SEED_LIMIT, HyperparameterError


class _PrintVersion(argparse.Action):
    """--version: the code version every run records (models.version), worked out only when asked for, as it
    hashes the library's source and asks git."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from models.version import code_version

        print(f"{parser.prog} {code_version()}")
        parser.exit()


def add_version_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version", action=_PrintVersion, help="print the code version that runs record, and exit"
    )


def hyperparameter_overrides(pairs: list[str] | None, json_file: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if json_file:
        try:
            loaded = json.loads(Path(json_file).read_text())
        except OSError as err:
            raise ValueError(f"--hyperparameters: cannot read {json_file}: {err.strerror or err}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"--hyperparameters: {json_file} is not JSON: {err}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"--hyperparameters: {json_file} must hold a JSON object of name: value")
        values.update(loaded)
    for pair in pairs or []:
        name, value = parse_override(pair)
        values[name] = value
    return values


def label_range(text: str) -> float:
    """The --rho argument: a finite number > 0 (argparse names the flag in its error)."""
    try:
        rho = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(rho) and rho > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return rho


def run_directory(text: str) -> str:
    """A RUN argument: a zip of a run (the service's model download) is named as one, not as a run without
    model.json; anything else is checked where it is read."""
    path = Path(text)
    if path.is_file() and zipfile.is_zipfile(path):
        raise argparse.ArgumentTypeError(
            f"{text} is a zip file; unzip it and give the run directory it holds (`unzip {path.name}`)"
        )
    return text


def thread_count(value: int | None, flag: str, env: str) -> int | None:
    """A thread count from the command line, else from the environment variable ``env``, else None.
    Anything but a whole number >= 1 is a ValueError naming the flag or the variable."""
    if value is not None:
        if value < 1:
            raise ValueError(f"{flag}: must be a whole number >= 1, got {value}")
        return value
    raw = os.environ.get(env, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{env}: must be a whole number >= 1, got {raw!r}")
    return int(raw)


def seed_value(text: str) -> int:
    """argparse type of --seed (and each of --seeds): 0 <= seed < 2**32, the rule of the API's job body."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= seed < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a whole number in [0, 2**32), got {seed}")
    return seed


def file_to_write(value: str | None) -> Path | None:
    """--out as a file path, refused before any work when it names a folder or cannot be written (a part of
    the path is a file; the nearest folder that exists is read-only). A pipe or a device (``/dev/stdout``)
    is written into, and a link through to its file (models.report.write_output_bytes), so those are
    checked instead of the folder."""
    from models.report import through_link  # pandas with it: not at the CLI's start

    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        raise ValueError(f"--out {value}: is a folder; give the path of a file to write")
    if path.exists() and not path.is_file():
        if not os.access(path, os.W_OK):
            raise ValueError(f"--out {value}: cannot be written (not yours)")
        return path
    folder = through_link(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"--out {value}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out {value}: {folder} cannot be written (read-only, or not yours)")
    return path


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a CLI ``name=value`` override (numbers, true/false, null, or a string)."""
    if "=" not in text:
        raise HyperparameterError(text, "expected name=value")
    name, raw = text.split("=", 1)
    name = name.strip()
    if not name:
        raise HyperparameterError(text, "expected name=value (no name before the =)")
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return name, lowered == "true"
    if lowered in ("null", "none"):
        return name, None
    try:
        return name, int(raw)
    except ValueError:
        pass
    try:
        return name, float(raw)
    except ValueError:
        return name, raw
