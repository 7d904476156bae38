"""features.npz forged or broken in ways that made load_dataset fail without naming the file and key (or
allocate what the file cannot hold): each is a DatasetError problem naming features.npz and the key."""

from __future__ import annotations

from pathlib import Path

from models.dataset import NPZ_FILE
from tests.test_data import N, base, find, problems_of, write


def test_an_array_with_no_rows_is_named(tmp_path: Path) -> None:
    """A 0-row array was 'cannot reshape array of size 0 into shape (0,newaxis)', naming nothing."""
    df, arrays = base()
    arrays["text"] = arrays["text"][:0]
    problem = find(problems_of(write(tmp_path, df, arrays), for_training=False), NPZ_FILE, "text")
    assert problem.message == f"has 0 rows, expected {N} (rows of utterances.csv)"
