"""``unilabel-remote predict MODEL_ID``: the utterances to predict (a JSON file, or a local dataset's split),
sent in as many requests as they need, printed as JSON or written as `unilabel predict`'s CSV."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api_schemas.datasets import DATASET_ID
from remote.batch_predict import (
    QuotaGaveUp,
    predict_all,
    predicted_words,
    quota_words,
    write_predictions_csv,
)
from remote.client import LabelClient, utterances_from_dataset

if TYPE_CHECKING:
    from models.dataset import Dataset


def read_utterances(path: str | Path) -> list[Any]:
    """The utterances of a predict --input file: a JSON list, or an object with an "utterances" list."""
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--input {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"--input {path}: not JSON ({err})") from None
    utterances = loaded.get("utterances") if isinstance(loaded, dict) else loaded
    if not isinstance(utterances, list):
        raise ValueError(f'--input {path}: expected a JSON list of utterances or {{"utterances": [...]}}')
    return utterances


def _local_dataset(path: str) -> Dataset:
    """The dataset at ``path`` for ``predict --dataset``, or a ValueError that says what the flag takes: an
    uploaded dataset's id, the name `upload` prints, is the likely mistake."""
    from models.dataset_loader import load_dataset  # numpy/pandas only

    if not Path(path).exists():
        uploaded = DATASET_ID.match(path)
        hint = "; it looks like an uploaded dataset's id: give the folder you uploaded" if uploaded else ""
        raise ValueError(f"--dataset {path}: no such folder or archive here (a local dataset){hint}")
    return load_dataset(path, for_training=False)


def _utterances(c: LabelClient, args: argparse.Namespace) -> tuple[list[Any], dict[str, str]]:
    """The utterances the arguments name, and the split of each (a dataset's; none for --input)."""
    if not args.dataset:
        if args.all:
            raise ValueError("--all: takes every utterance of --dataset's split; give --dataset")
        if not args.input:
            raise ValueError("predict needs --input FILE.json or --dataset PATH (a dataset folder)")
        return read_utterances(args.input), {}
    if args.n < 1:  # a slice [:-1] would have sent all but the last utterance
        raise ValueError(f"--n: must be at least 1, got {args.n}")
    from models.dataset import SPLITS  # numpy only

    if args.split not in (*SPLITS, "all"):
        raise ValueError(f"--split {args.split}: unknown split; one of {', '.join([*SPLITS, 'all'])}")
    dataset = _local_dataset(args.dataset)
    spec = c.model(args.model_id)["input_spec"]
    split = None if args.split == "all" else args.split
    utterances = utterances_from_dataset(dataset, split, None if args.all else args.n, spec)
    if not utterances:
        raise ValueError(f"--split {args.split}: {args.dataset} has no utterance in that split")
    return utterances, dict(zip(dataset.ids.tolist(), dataset.split.tolist(), strict=True))


def predict_command(c: LabelClient, args: argparse.Namespace, leaves: Callable[[str], None]) -> None:
    """Predict, saying on stderr how the requests pass and why they stall (the key's quota a minute)."""
    utterances, splits = _utterances(c, args)

    def said(done: int, total: int) -> None:  # a big set takes many requests: show them pass
        print(f"predicted {done} of {total}", file=sys.stderr)

    def waits(limit: int | None, seconds: float) -> None:  # a minute's quota used: why it stalls
        print(f"{quota_words(limit)} reached; waiting {seconds:g} s", file=sys.stderr)

    # However it ends early, none of the predictions made is written: a part of the set, written, would look
    # like all of it. The error's line, or the interrupt's, says how many were made and that none is kept.
    predictions: list[dict[str, Any]] = []
    where = f"to {args.output}" if args.output else "(no JSON printed)"

    def unkept(before: str) -> str:
        return f"{predicted_words(len(predictions), len(utterances), before)}; nothing was written {where}"

    try:
        predict_all(c, args.model_id, utterances, on_progress=said, on_wait=waits, out=predictions)
    except QuotaGaveUp as exc:  # its message says how many were predicted already
        raise QuotaGaveUp(f"{exc}; nothing was written {where}") from None
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: main's one line says what leaves() was told last
        if predictions:
            leaves(unkept("the interrupt"))
        raise
    except Exception as exc:  # main prints an error's notes after its own words, on its line
        if predictions:
            exc.add_note(unkept("the error"))
        raise
    if not args.output:
        print(json.dumps({"model_id": args.model_id, "predictions": predictions}, indent=2))
        return
    write_predictions_csv(args.output, predictions, splits)
    leaves(f"{args.output} was written")
    print(f"{len(predictions)} predictions written to {args.output}")
