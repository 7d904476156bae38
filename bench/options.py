"""Option types the bench scripts share (no project import: bench_predict.py may run against an older
checkout on PYTHONPATH)."""

from __future__ import annotations

import argparse


def whole_numbers(text: str) -> list[int]:
    """An argparse type: a comma-separated list of whole numbers >= 1 (batch sizes, thread counts)."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers >= 1, comma-separated (e.g. 1,2)")
    return values
