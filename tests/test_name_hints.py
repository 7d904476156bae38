"""A split value or a features.npz key spelled as another library or a quick script spells it: the problem
says what was most likely meant (a hint only: nothing is renamed or guessed for the user)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.dataset import CSV_FILE, NPZ_FILE, DatasetError, Problem
from models.dataset_loader import load_dataset

SPLITS = ["train"] * 6 + ["valid"] * 3 + ["test"] * 3
IDS = [f"u{i}" for i in range(len(SPLITS))]


def write(tmp_path: Path, splits: list[str], **arrays: np.ndarray) -> Path:
    rows = [f"{i},{s},{(n % 5) - 2}.5" for n, (i, s) in enumerate(zip(IDS, splits, strict=True))]
    (tmp_path / CSV_FILE).write_text("\n".join(["id,split,label", *rows]) + "\n")
    text = np.ones((len(IDS), 4), np.float32)
    np.savez(tmp_path / NPZ_FILE, **{"id": np.array(IDS), "text": text, **arrays})
    return tmp_path


def problem(path: Path, file: str, field: str) -> Problem:
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    hits = [p for p in info.value.problems if p.file == file and p.field == field]
    assert hits, [str(p) for p in info.value.problems]
    return hits[0]


@pytest.mark.parametrize(
    ("values", "hint"),
    [
        (["dev"], "(did you mean 'valid' for 'dev'?)"),  # MMSA's and many corpora's name
        (["validation"], "(did you mean 'valid' for 'validation'?)"),  # Hugging Face's
        (["Train", "tset"], "(did you mean 'train' for 'Train', 'test' for 'tset'?)"),
        ([""], "(a blank split: every row needs one)"),
    ],
)
def test_an_unknown_split_value_says_what_it_likely_meant(
    tmp_path: Path, values: list[str], hint: str
) -> None:
    splits = list(SPLITS)
    for row, value in zip((6, 10), values, strict=False):
        splits[row] = value
    found = problem(write(tmp_path, splits), CSV_FILE, "split")
    assert "expected one of train, valid, test" in found.message and found.message.endswith(hint)


def test_a_split_nothing_resembles_gets_no_guess(tmp_path: Path) -> None:
    splits = list(SPLITS)
    splits[6] = "holdout"
    found = problem(write(tmp_path, splits), CSV_FILE, "split")
    assert found.message == "1 unknown value(s) ['holdout']; expected one of train, valid, test"


def test_a_misspelled_lengths_key_is_named(tmp_path: Path) -> None:
    seq = np.ones((len(IDS), 5, 3), np.float32)
    path = write(tmp_path, SPLITS, audio=seq, audio_length=np.full(len(IDS), 5))
    found = problem(path, NPZ_FILE, "audio_lengths")
    assert found.message.endswith("('audio_length' is there: rename it 'audio_lengths')")


def test_a_misspelled_id_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, SPLITS)
    arrays = dict(np.load(path / NPZ_FILE))
    arrays["ids"] = arrays.pop("id")
    np.savez(path / NPZ_FILE, **arrays)
    assert problem(path, NPZ_FILE, "id").message == "required key missing ('ids' is there: rename it 'id')"


@pytest.mark.parametrize("name", [CSV_FILE, NPZ_FILE])
def test_one_of_a_datasets_files_given_for_the_dataset_names_its_folder(tmp_path: Path, name: str) -> None:
    (tmp_path / "mine").mkdir()
    path = write(tmp_path / "mine", SPLITS)
    with pytest.raises(DatasetError) as info:
        load_dataset(path / name)
    assert str(info.value) == (
        f"{path / name}: neither a dataset directory nor a .zip/.tar.gz/.tgz/.tar archive: it is one of a "
        f"dataset's two files; give the folder that holds them, {path}"
    )
