"""Dataset format: validation problems, round trips, archives, rho inference, real MOSI."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.dataset import CSV_FILE, NPZ_FILE, Dataset, DatasetError, ModalityFeatures, Problem
from models.dataset_loader import dataset_sha256, load_dataset
from models.dataset_writer import write_dataset

MOSI = Path(__file__).resolve().parents[2] / "shared/data/mosi"
N = 12
SPLIT = ["train"] * 6 + ["valid"] * 3 + ["test"] * 3


def base(seq: bool = False) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """A small valid dataset as a string table and an array dict (tests corrupt a copy)."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "id": [f"u{i}" for i in range(N)],
            "split": SPLIT,
            "label": [f"{x:.2f}" for x in rng.uniform(-3, 3, N)],
            "transcript": [f"words {i}" for i in range(N)],
            "label_T": [f"{x:.2f}" for x in rng.uniform(-3, 3, N)],
            "extra": ["kept"] * N,
        }
    )
    arrays: dict[str, np.ndarray] = {"id": np.array(df["id"].tolist())}
    if seq:
        arrays["audio"] = rng.normal(size=(N, 7, 3)).astype(np.float32)
        arrays["audio_lengths"] = rng.integers(1, 8, N)
    else:
        arrays["audio"] = rng.normal(size=(N, 3)).astype(np.float32)
    arrays["text"] = rng.normal(size=(N, 5))
    arrays["vision"] = rng.normal(size=(N, 4)).astype(np.float32)
    return df, arrays


def write(path: Path, df: pd.DataFrame | None, arrays: dict[str, np.ndarray] | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if df is not None:
        df.to_csv(path / CSV_FILE, index=False)
    if arrays is not None:
        np.savez(path / NPZ_FILE, **arrays)
    return path


def problems_of(path: Path, **kw) -> list[Problem]:
    with pytest.raises(DatasetError) as info:
        load_dataset(path, **kw)
    err = info.value
    assert str(err).splitlines() == [str(p) for p in err.problems]
    return err.problems


def find(problems: list[Problem], file: str, field: str, rows: tuple[int, ...] | None = None) -> Problem:
    hits = [p for p in problems if p.file == file and p.field == field]
    assert hits, f"no problem for {file}:{field} in {[str(p) for p in problems]}"
    if rows is not None:
        assert any(p.rows == rows for p in hits), [str(p) for p in hits]
        hit = next(p for p in hits if p.rows == rows)
        assert all(str(r) in str(hit) for r in rows[:10])
        assert file in str(hit) and f"'{field}'" in str(hit)
        return hit
    return hits[0]


# ---------------------------------------------------------------------------------------------- valid


def test_valid_dataset_loads(tmp_path: Path) -> None:
    df, arrays = base()
    ds = load_dataset(write(tmp_path, df, arrays))
    assert len(ds) == N and ds.ids.dtype.kind == "U" and ds.rho == 3.0
    assert set(ds.features) == {"text", "audio", "vision"}
    assert all(f.values.dtype == np.float32 and f.lengths is None for f in ds.features.values())
    assert ds.features["text"].dim == 5 and not ds.features["text"].is_sequence
    assert ds.label.dtype == np.float32 and list(ds.sub_labels) == ["text"]
    assert ds.transcripts == [f"words {i}" for i in range(N)]
    assert ds.indices("valid").tolist() == [6, 7, 8] and ds.labeled("test").size == 3
    assert ds.root == tmp_path.resolve()
    assert ds.sha256 == dataset_sha256(tmp_path)
    summary = json.loads(json.dumps(ds.summary()))
    assert summary["splits"]["train"] == {"n": 6, "labeled": 6}
    assert summary["modalities"]["audio"] == {"shape": [N, 3], "sequence": False}
    assert (
        summary["has_transcripts"]
        and summary["transcript_on_every_row"]
        and summary["sub_labels"] == ["text"]
    )
    with pytest.raises(ValueError):
        ds.indices("dev")
    df.loc[2, "transcript"] = " "  # text features are there, so a blank transcript is allowed
    gappy = load_dataset(write(tmp_path / "gappy", df, arrays)).summary()
    assert gappy["has_transcripts"] and not gappy["transcript_on_every_row"]


def test_sequences_and_int_features(tmp_path: Path) -> None:
    df, arrays = base(seq=True)
    arrays["vision"] = np.arange(N * 4).reshape(N, 4)
    ds = load_dataset(write(tmp_path, df, arrays))
    audio = ds.features["audio"]
    assert audio.is_sequence and audio.lengths.dtype == np.int64 and audio.values.shape == (N, 7, 3)
    assert ds.features["vision"].values.dtype == np.float32
    sub = ds.take(np.array([1, 3]))
    assert sub.features["audio"].values.shape == (2, 7, 3) and sub.ids.tolist() == ["u1", "u3"]
    assert sub.features["audio"].lengths.tolist() == audio.lengths[[1, 3]].tolist()
    assert sub.transcripts == ["words 1", "words 3"] and sub.sha256 != ds.sha256 and sub.root is None


def test_id_like_na_stays_string(tmp_path: Path) -> None:
    df, arrays = base()
    df.loc[0, "id"] = "NA"
    df.loc[1, "id"] = "nan"
    arrays["id"] = np.array(df["id"].tolist())
    ds = load_dataset(write(tmp_path, df, arrays))
    assert ds.ids[:2].tolist() == ["NA", "nan"]


def test_integer_and_byte_string_ids_are_read_as_text(tmp_path: Path) -> None:
    df, arrays = base()
    df["id"] = [str(i) for i in range(N)]
    arrays["id"] = np.arange(N)  # numpy.savez of a table whose ids are numbers
    assert load_dataset(write(tmp_path / "int", df, arrays)).ids.tolist() == df["id"].tolist()
    df, arrays = base()
    df["id"] = [f"vidéo_{i}" for i in range(N)]
    arrays["id"] = np.array([i.encode() for i in df["id"]])  # UTF-8 bytes, as Python 2 era tools wrote them
    assert load_dataset(write(tmp_path / "bytes", df, arrays)).ids.tolist() == df["id"].tolist()


@pytest.mark.parametrize(
    "ids, message",
    [
        (np.array([b"\xffu%d" % i for i in range(N)]), "byte strings are not valid UTF-8"),
        (np.array([f"u{i}" for i in range(N)]).reshape(N, 1), "must be 1-D [N], got shape [12, 1]"),
        (np.arange(N, dtype=np.float64), "must hold strings, got dtype float64"),
    ],
)
def test_unusable_npz_ids_are_named(tmp_path: Path, ids: np.ndarray, message: str) -> None:
    df, arrays = base()
    arrays["id"] = ids
    assert find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "id").message == message


def test_text_from_transcripts_only(tmp_path: Path) -> None:
    df, arrays = base()
    del arrays["text"]
    ds = load_dataset(write(tmp_path, df, arrays))
    assert "text" not in ds.features and ds.transcripts is not None
    assert ds.summary()["has_transcripts"]


def test_audio_and_vision_arrays_are_optional(tmp_path: Path) -> None:
    """A dataset without audio or vision (a podcast, a text-only corpus) loads; a run names what it uses."""
    df, arrays = base()
    del arrays["vision"]
    ds = load_dataset(write(tmp_path / "ta", df, arrays))
    assert set(ds.features) == {"text", "audio"} and list(ds.summary()["modalities"]) == ["text", "audio"]
    only_id = {"id": arrays["id"]}  # text from the transcripts, nothing else
    ds = load_dataset(write(tmp_path / "t", df, only_id))
    assert ds.features == {} and ds.every_row_has_transcript()
    probs = problems_of(write(tmp_path / "none", df.drop(columns=["transcript"]), only_id))
    assert "every row needs a transcript" in find(probs, CSV_FILE, "transcript").message


# ---------------------------------------------------------------------------------------------- problems


def test_missing_files(tmp_path: Path) -> None:
    probs = problems_of(write(tmp_path, None, None))
    assert find(probs, CSV_FILE, "").message == "file not found (the folder is empty)"
    assert find(probs, NPZ_FILE, "").message == "file not found (the folder is empty)"
    # what the folder holds instead: a name in another case, or its entries (an archive's nested folder)
    df, arrays = base()
    write(tmp_path / "cased", df, arrays)
    (tmp_path / "cased" / CSV_FILE).rename(tmp_path / "cased" / "Utterances.CSV")
    p = find(problems_of(tmp_path / "cased"), CSV_FILE, "")
    assert p.message == "file not found (Utterances.CSV is there: the name must be utterances.csv)"
    (tmp_path / "nested" / "a").mkdir(parents=True)
    probs = problems_of(tmp_path / "nested")
    assert find(probs, NPZ_FILE, "").message == "file not found (the folder holds a/)"


def test_missing_path_and_unknown_file(tmp_path: Path) -> None:
    probs = problems_of(tmp_path / "nope")
    assert "no such file" in probs[0].message
    (tmp_path / "data.rar").write_bytes(b"x")
    assert "archive" in problems_of(tmp_path / "data.rar")[0].message


@pytest.mark.parametrize("column", ["id", "split", "label"])
def test_missing_required_column(tmp_path: Path, column: str) -> None:
    df, arrays = base()
    probs = problems_of(write(tmp_path, df.drop(columns=[column]), arrays))
    assert "missing" in find(probs, CSV_FILE, column).message


def test_a_set_to_predict_on_needs_only_ids(tmp_path: Path) -> None:
    """New utterances have no split and no label: prediction reads them as unlabeled test rows."""
    df, arrays = base()
    ds = load_dataset(write(tmp_path, df[["id", "transcript"]], arrays), for_training=False)
    assert ds.split.tolist() == ["test"] * N and np.isnan(ds.label).all() and ds.rho == 3.0
    assert ds.transcripts == df["transcript"].tolist()
    probs = problems_of(tmp_path)  # training still needs both
    assert {p.field for p in probs if "required column missing" in p.message} == {"split", "label"}


def test_a_misnamed_column_is_shown_beside_the_header(tmp_path: Path) -> None:
    df, arrays = base()
    probs = problems_of(write(tmp_path, df.rename(columns={"label": "sentiment"}), arrays))
    message = find(probs, CSV_FILE, "label").message
    assert message.startswith("required column missing (the header has 'id', 'split', 'sentiment',")


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_csv_separated_by_another_character_is_named_once(tmp_path: Path, sep: str) -> None:
    df, arrays = base()
    write(tmp_path, None, arrays)
    df.to_csv(tmp_path / CSV_FILE, index=False, sep=sep)
    probs = problems_of(tmp_path)
    assert [p.field for p in probs if p.file == CSV_FILE] == [""]
    assert f"values must be separated by commas, not {sep!r}" in find(probs, CSV_FILE, "").message


def test_missing_and_duplicate_ids(tmp_path: Path) -> None:
    df, arrays = base()
    df.loc[2, "id"] = ""
    df.loc[9, "id"] = "u4"
    arrays["id"] = np.array(df["id"].tolist())
    probs = problems_of(write(tmp_path, df, arrays))
    assert "empty" in find(probs, CSV_FILE, "id", (2,)).message
    assert "'u4'" in find(probs, CSV_FILE, "id", (4, 9)).message


def test_ids_differ_between_files(tmp_path: Path) -> None:
    df, arrays = base()
    arrays["id"] = arrays["id"].copy()
    arrays["id"][[3, 7]] = ["x3", "x7"]
    p = find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "id", (3, 7))
    assert p.message.startswith("2 id(s) differ")
    assert "(row 3: 'x3' here, 'u3' in utterances.csv)" in p.message  # what differs shows
    arrays["id"][[3, 7]] = [" u3", "u7"]  # a stray space
    p = find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "id", (3,))
    assert "(row 3: ' u3' here, 'u3' in utterances.csv)" in p.message
    arrays["id"][3] = "u4"  # a repeated id
    p = find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "id", (3,))
    assert "(features.npz repeats an id)" in p.message


def test_ids_in_other_order(tmp_path: Path) -> None:
    df, arrays = base()
    arrays["id"] = arrays["id"][[1, 0] + list(range(2, N))]
    assert "different order" in find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "id", (0, 1)).message


def test_id_count_differs_and_missing_npz_id(tmp_path: Path) -> None:
    df, arrays = base()
    arrays["id"] = arrays["id"][:-1]
    assert "11 ids" in find(problems_of(write(tmp_path / "a", df, arrays)), NPZ_FILE, "id").message
    del arrays["id"]
    assert "missing" in find(problems_of(write(tmp_path / "b", df, arrays)), NPZ_FILE, "id").message


def test_unknown_split(tmp_path: Path) -> None:
    df, arrays = base()
    df.loc[[1, 5], "split"] = "dev"
    assert "'dev'" in find(problems_of(write(tmp_path, df, arrays)), CSV_FILE, "split", (1, 5)).message


def test_non_numeric_label(tmp_path: Path) -> None:
    df, arrays = base()
    df.loc[4, "label"] = "positive"
    assert "non-numeric" in find(problems_of(write(tmp_path, df, arrays)), CSV_FILE, "label", (4,)).message


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity", "NaN"])
def test_non_finite_label_strings(tmp_path: Path, text: str) -> None:
    df, arrays = base()
    df.loc[[2, 3], "label"] = text
    assert "non-finite" in find(problems_of(write(tmp_path, df, arrays)), CSV_FILE, "label", (2, 3)).message


def test_a_split_labeled_zero_throughout_is_refused_for_training(tmp_path: Path) -> None:
    # labels in [-3, 3]: a run scores every labeled split, and Acc2/F1 "non0" leave the zeros out. The run
    # trained to the end and then failed on "non0 metrics are undefined: every label is exactly 0"
    df, arrays = base()
    valid = df["split"] == "valid"
    df.loc[valid, "label"] = "0"
    df.loc[valid & (df.index % 2 == 0), "label"] = ""  # blanks are unlabeled, not zeros
    path = write(tmp_path, df, arrays)
    problem = find(problems_of(path), CSV_FILE, "label")
    assert "every labeled valid row is exactly 0" in problem.message and "acc2_non0" in problem.message
    assert "leave them blank where they are not known" in problem.message  # placeholders: blank, not 0
    assert load_dataset(path, for_training=False).rho == 3.0  # a set to predict on is not scored
    df.loc[valid, "label"] = "0.5"
    assert load_dataset(write(tmp_path, df, arrays)).rho == 3.0
    zero = df.assign(label="0", label_T="0")  # every label 0: rho is inferred as 1, without "non0"
    assert load_dataset(write(tmp_path, zero, arrays)).rho == 1.0
    assert "every labeled train row is exactly 0" in str(problems_of(write(tmp_path, zero, arrays), rho=3))


def test_blank_labels_are_unlabeled(tmp_path: Path) -> None:
    df, arrays = base()
    df.loc[[0, 10], "label"] = ""
    df.loc[1, "label_T"] = " "
    ds = load_dataset(write(tmp_path, df, arrays))
    assert np.isnan(ds.label[[0, 10]]).all() and np.isnan(ds.sub_labels["text"][1])
    assert ds.labeled("train").tolist() == [1, 2, 3, 4, 5]


def test_bad_sub_label(tmp_path: Path) -> None:
    df, arrays = base()
    df.loc[6, "label_T"] = "x"
    find(problems_of(write(tmp_path, df, arrays)), CSV_FILE, "label_T", (6,))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features(tmp_path: Path, bad: float) -> None:
    df, arrays = base()
    arrays["vision"][[0, 11], 1] = bad
    assert "NaN or inf" in find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "vision", (0, 11)).message


def test_float64_overflow_is_caught(tmp_path: Path) -> None:
    df, arrays = base()
    arrays["text"][5, 0] = 1e300
    find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "text", (5,))


def test_object_array_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    df, arrays = base()
    arrays["audio"] = np.array([_Evil(str(marker))] * N, dtype=object)
    probs = problems_of(write(tmp_path / "d", df, arrays))
    assert "pickled" in find(probs, NPZ_FILE, "audio").message
    assert not marker.exists()


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # executed only if someone unpickles
        return (Path.touch, (Path(self.path),))


def test_pickle_instead_of_npz(tmp_path: Path) -> None:
    df, _ = base()
    import pickle

    write(tmp_path, df, None)
    (tmp_path / NPZ_FILE).write_bytes(pickle.dumps(_Evil(str(tmp_path / "pwned"))))
    message = find(problems_of(tmp_path), NPZ_FILE, "").message
    assert message == "not an .npz archive (numpy.savez writes one) but a pickle, which is never loaded"
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("content", "what"), [(b"", "an empty file"), (b"hello, world", "a file that starts b'hello, w'")]
)
def test_a_file_that_is_no_npz_is_said_to_be_what_it_is(tmp_path: Path, content: bytes, what: str) -> None:
    """numpy takes any file that is neither zip nor .npy for a pickle and suggests loading it unsafely."""
    df, _ = base()
    write(tmp_path, df, None)
    (tmp_path / NPZ_FILE).write_bytes(content)
    message = find(problems_of(tmp_path), NPZ_FILE, "").message
    assert message == f"not an .npz archive (numpy.savez writes one) but {what}"


def test_single_npy_instead_of_npz(tmp_path: Path) -> None:
    df, arrays = base()
    write(tmp_path, df, None)
    with open(tmp_path / NPZ_FILE, "wb") as f:
        np.save(f, arrays["audio"])
    assert "single .npy" in find(problems_of(tmp_path), NPZ_FILE, "").message


def test_string_features(tmp_path: Path) -> None:
    df, arrays = base()
    arrays["text"] = np.array([["a"] * 5] * N)
    assert "numeric" in find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "text").message


@pytest.mark.parametrize("shape", [(N,), (N, 2, 3, 4)])
def test_wrong_rank(tmp_path: Path, shape: tuple[int, ...]) -> None:
    df, arrays = base()
    arrays["vision"] = np.zeros(shape, dtype=np.float32)
    assert "rank" in find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "vision").message


def test_inconsistent_n(tmp_path: Path) -> None:
    df, arrays = base()
    arrays["audio"] = arrays["audio"][:10]
    assert "10 rows" in find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "audio").message


def test_lengths_missing(tmp_path: Path) -> None:
    df, arrays = base(seq=True)
    del arrays["audio_lengths"]
    assert "missing" in find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "audio_lengths").message


def test_lengths_wrong_shape(tmp_path: Path) -> None:
    df, arrays = base(seq=True)
    arrays["audio_lengths"] = arrays["audio_lengths"][:5]
    assert "shape" in find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "audio_lengths").message


def test_lengths_non_integer(tmp_path: Path) -> None:
    df, arrays = base(seq=True)
    lengths = arrays["audio_lengths"].astype(np.float64)
    lengths[[2, 8]] = 2.5
    arrays["audio_lengths"] = lengths
    p = find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "audio_lengths", (2, 8))
    assert "non-integer" in p.message


def test_integral_float_lengths_accepted(tmp_path: Path) -> None:
    df, arrays = base(seq=True)
    arrays["audio_lengths"] = arrays["audio_lengths"].astype(np.float32)
    assert load_dataset(write(tmp_path, df, arrays)).features["audio"].lengths.dtype == np.int64


def test_lengths_out_of_range(tmp_path: Path) -> None:
    df, arrays = base(seq=True)
    arrays["audio_lengths"][1] = 0
    arrays["audio_lengths"][4] = 8
    p = find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "audio_lengths", (1, 4))
    assert "outside 1..7" in p.message


def test_lengths_that_are_not_numbers(tmp_path: Path) -> None:
    df, arrays = base(seq=True)
    arrays["audio_lengths"] = arrays["audio_lengths"].astype(str)
    p = find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "audio_lengths")
    assert p.message.startswith("must be integers, got dtype <U")


def test_an_empty_feature_axis(tmp_path: Path) -> None:
    df, arrays = base()
    arrays["vision"] = np.zeros((N, 0), dtype=np.float32)
    p = find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "vision")
    assert p.message == "has an empty axis (shape [12, 0])"


def test_arrays_over_the_byte_limit_are_refused_from_their_headers(tmp_path: Path) -> None:
    df, arrays = base()
    path = write(tmp_path, df, arrays)
    total = sum(a.nbytes for a in arrays.values())
    p = find(problems_of(path, max_array_bytes=total - 1), NPZ_FILE, "")
    assert p.message == f"arrays hold {total} bytes, more than the limit of {total - 1}"
    assert len(load_dataset(path, max_array_bytes=total)) == N


def test_a_csv_with_a_header_and_no_rows(tmp_path: Path) -> None:
    df, arrays = base()
    assert find(problems_of(write(tmp_path, df.iloc[:0], arrays)), CSV_FILE, "").message == "no data rows"


def test_label_outside_given_rho(tmp_path: Path) -> None:
    df, arrays = base()
    df["label"] = "0.5"
    df["label_T"] = "0.5"
    df.loc[3, "label"] = "-1.5"
    df.loc[7, "label_T"] = "2"
    probs = problems_of(write(tmp_path, df, arrays), rho=1)
    assert "outside [-1, 1]" in find(probs, CSV_FILE, "label", (3,)).message
    find(probs, CSV_FILE, "label_T", (7,))
    assert str(find(probs, CSV_FILE, "label")) == (
        "utterances.csv: column 'label': 1 value(s) outside [-1, 1] (row 3, counting from 0)"
    )


def test_rho_inference(tmp_path: Path) -> None:
    df, arrays = base()
    df["label"] = [f"{x:.2f}" for x in np.linspace(-1, 1, N)]
    df["label_T"] = "0"
    assert load_dataset(write(tmp_path / "a", df, arrays)).rho == 1.0
    assert load_dataset(tmp_path / "a", rho=3).rho == 3.0
    df.loc[0, "label"] = "-2.9"
    assert load_dataset(write(tmp_path / "b", df, arrays)).rho == 3.0
    # the range is the labels': a sub-label beyond it is an error naming its rows, not a wider range
    df.loc[0, "label"] = "0.9"
    df.loc[4, "label_T"] = "1.4"
    p = find(problems_of(write(tmp_path / "sub", df, arrays)), CSV_FILE, "label_T", (4,))
    assert "outside [-1, 1], the range of the labels (rho" in p.message
    assert load_dataset(tmp_path / "sub", rho=3).rho == 3.0
    df.loc[4, "label_T"] = "0"
    df.loc[[0, 5], "label"] = "4.5"
    p = find(problems_of(write(tmp_path / "c", df, arrays)), CSV_FILE, "label", (0, 5))
    assert "pass rho explicitly" in p.message
    assert load_dataset(tmp_path / "c", rho=5).rho == 5.0
    with pytest.raises(ValueError):
        load_dataset(tmp_path / "c", rho=0)


def test_rho_default_without_labels(tmp_path: Path) -> None:
    df, arrays = base()
    df["label"] = ""
    df = df.drop(columns=["label_T"])
    assert load_dataset(write(tmp_path, df, arrays), for_training=False).rho == 3.0


def test_for_training_flag(tmp_path: Path) -> None:
    df, arrays = base()
    df["label"] = ""
    probs = problems_of(write(tmp_path, df, arrays))
    assert {p.message for p in probs if p.field == "label"} == {
        "the train split has no labels: training needs some",
        "the valid split has no labels: training needs some",
    }
    ds = load_dataset(tmp_path, for_training=False)
    assert np.isnan(ds.label).all()


def test_empty_train_and_no_valid_split(tmp_path: Path) -> None:
    df, arrays = base()
    df["split"] = "test"
    probs = problems_of(write(tmp_path, df, arrays))
    messages = [p.message for p in probs if p.file == CSV_FILE and p.field == "split"]
    assert any("no 'train' rows" in m for m in messages) and any("no 'valid' rows" in m for m in messages)
    assert any("move some train rows there" in m for m in messages)  # what to do, not only what is wrong
    assert len(load_dataset(tmp_path, for_training=False)) == N


def test_transcripts_required_without_text(tmp_path: Path) -> None:
    df, arrays = base()
    del arrays["text"]
    probs = problems_of(write(tmp_path / "a", df.drop(columns=["transcript"]), arrays))
    assert "column missing" in find(probs, CSV_FILE, "transcript").message
    df.loc[[0, 8], "transcript"] = ""
    find(problems_of(write(tmp_path / "b", df, arrays)), CSV_FILE, "transcript", (0, 8))


def test_unreadable_csv(tmp_path: Path) -> None:
    _, arrays = base()
    write(tmp_path, None, arrays)
    (tmp_path / CSV_FILE).write_bytes(b"")
    assert "cannot be read" in find(problems_of(tmp_path), CSV_FILE, "").message
    (tmp_path / CSV_FILE).write_bytes(b"id,split,label\nu0,train,1\n")
    assert "12 ids" in find(problems_of(tmp_path), NPZ_FILE, "id").message


def test_all_problems_collected(tmp_path: Path) -> None:
    df, arrays = base(seq=True)
    df.loc[0, "split"] = "dev"
    df.loc[1, "label"] = "?"
    arrays["vision"][2, 0] = np.nan
    arrays["audio_lengths"][3] = 99
    probs = problems_of(write(tmp_path, df, arrays))
    assert len(probs) == 4
    find(probs, CSV_FILE, "split", (0,))
    find(probs, CSV_FILE, "label", (1,))
    find(probs, NPZ_FILE, "vision", (2,))
    find(probs, NPZ_FILE, "audio_lengths", (3,))


def test_problem_str() -> None:
    assert str(Problem("a.zip", "", "bad")) == "a.zip: bad"
    p = Problem(NPZ_FILE, "text", "oops", tuple(range(12)))
    rows = "rows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ..., counting from 0"
    assert str(p) == f"features.npz: key 'text': oops ({rows})"
    assert str(Problem("d.zip", "../x", "path contains '..'")) == "d.zip: member '../x': path contains '..'"


# ---------------------------------------------------------------------------------------------- round trip


def save_dataset(ds: Dataset, out_dir: Path) -> Path:
    """Write a Dataset as utterances.csv + features.npz; round-trips with load_dataset."""
    return write_dataset(
        out_dir,
        ids=ds.ids,
        split=ds.split,
        label=ds.label,
        features=ds.features,
        transcripts=ds.transcripts,
        sub_labels=ds.sub_labels,
    )


def test_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ds = Dataset(
        ids=np.array(["a,1", "NA", 'q"x', "d", "e", "f"]),
        split=np.array(["train", "train", "valid", "valid", "test", "test"]),
        label=np.array([0.1, -2.999, 1 / 3, np.nan, np.nan, 3.0], dtype=np.float32),
        features={
            "text": ModalityFeatures(rng.normal(size=(6, 4, 2)).astype(np.float32), np.arange(6) % 4 + 1),
            "audio": ModalityFeatures(rng.normal(size=(6, 3)).astype(np.float32), None),
            "vision": ModalityFeatures(rng.normal(size=(6, 5)).astype(np.float32), None),
        },
        transcripts=["hello, world", "line\nbreak", "", " spaced ", "NA", "x"],
        sub_labels={"vision": np.array([np.nan, 1, 2, 3, -3, 0], dtype=np.float32)},
        rho=3.0,
        sha256="",
    )
    out = save_dataset(ds, tmp_path / "out")
    back = load_dataset(out)
    assert back.ids.tolist() == ds.ids.tolist() and back.split.tolist() == ds.split.tolist()
    np.testing.assert_array_equal(back.label, ds.label)
    np.testing.assert_array_equal(back.sub_labels["vision"], ds.sub_labels["vision"])
    assert back.transcripts == ds.transcripts
    for m, f in ds.features.items():
        np.testing.assert_array_equal(back.features[m].values, f.values)
        assert (back.features[m].lengths is None) == (f.lengths is None)
    np.testing.assert_array_equal(back.features["text"].lengths, ds.features["text"].lengths)
    again = save_dataset(back, tmp_path / "again")
    assert load_dataset(again).sha256 == back.sha256  # writing is byte-deterministic


# ---------------------------------------------------------------------------------------------- archives


def _files(tmp_path: Path) -> Path:
    df, arrays = base()
    return write(tmp_path / "src", df, arrays)


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz", ".tgz"])
@pytest.mark.parametrize("folder", ["", "mydata/"])
def test_archive_layouts(tmp_path: Path, suffix: str, folder: str) -> None:
    src = _files(tmp_path)
    arc = tmp_path / f"data{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(arc, "w") as zf:
            if folder:
                zf.writestr(folder, "")
            for name in (CSV_FILE, NPZ_FILE):
                zf.write(src / name, folder + name)
    else:
        with tarfile.open(arc, "w:gz") as tf:
            for name in (CSV_FILE, NPZ_FILE):
                tf.add(src / name, folder + name)
    ds = load_dataset(arc)
    assert len(ds) == N and ds.root is None
    assert ds.sha256 == load_dataset(src).sha256 == dataset_sha256(arc)


def test_plain_tar_archive(tmp_path: Path) -> None:
    src = _files(tmp_path)
    with tarfile.open(tmp_path / "data.tar", "w") as tf:  # uncompressed
        for name in (CSV_FILE, NPZ_FILE):
            tf.add(src / name, "mydata/" + name)
    assert load_dataset(tmp_path / "data.tar").sha256 == load_dataset(src).sha256


def test_archive_member_count_cap(tmp_path: Path) -> None:
    from models.archive import ArchiveError, extract_archive

    src = _files(tmp_path)
    arc = tmp_path / "many.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        for name in (CSV_FILE, NPZ_FILE, "a.txt", "b.txt"):
            zf.write(src / CSV_FILE, name)
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError) as info:
        extract_archive(arc, tmp_path / "out", max_bytes=10**9, max_members=3)
    assert ("", "4 members, more than the limit of 3") in info.value.problems
    assert not any((tmp_path / "out").iterdir())  # refused before anything is written
    extract_archive(arc, tmp_path / "out", max_bytes=10**9, max_members=4)


def test_archive_with_two_folders(tmp_path: Path) -> None:
    src = _files(tmp_path)
    arc = tmp_path / "two.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.write(src / CSV_FILE, "a/" + CSV_FILE)
        zf.write(src / NPZ_FILE, "b/" + NPZ_FILE)
    assert "one single top-level folder" in find(problems_of(arc), "two.zip", "").message


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt", "C:/evil.txt"])
def test_zip_path_attacks(tmp_path: Path, name: str) -> None:
    src = _files(tmp_path)
    (tmp_path / "x").mkdir()
    arc = tmp_path / "x" / "bad.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.write(src / CSV_FILE, CSV_FILE)
        zf.write(src / NPZ_FILE, NPZ_FILE)
        zf.writestr(name, "pwned")
    find(problems_of(arc), "bad.zip", name)
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))


def _tar_with(arc: Path, src: Path, extra: tarfile.TarInfo, data: bytes | None = None) -> None:
    with tarfile.open(arc, "w:gz") as tf:
        for name in (CSV_FILE, NPZ_FILE):
            tf.add(src / name, name)
        tf.addfile(extra, io.BytesIO(data) if data is not None else None)


def test_tar_traversal(tmp_path: Path) -> None:
    src = _files(tmp_path)
    info = tarfile.TarInfo("../evil.txt")
    info.size = 5
    _tar_with(tmp_path / "bad.tar.gz", src, info, b"pwned")
    assert "'..'" in find(problems_of(tmp_path / "bad.tar.gz"), "bad.tar.gz", "../evil.txt").message
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_tar_links_and_devices(tmp_path: Path, kind: bytes) -> None:
    src = _files(tmp_path)
    info = tarfile.TarInfo("link")
    info.type = kind
    info.linkname = "/etc/passwd"
    _tar_with(tmp_path / "bad.tgz", src, info)
    find(problems_of(tmp_path / "bad.tgz"), "bad.tgz", "link")


def test_zip_symlink(tmp_path: Path) -> None:
    src = _files(tmp_path)
    arc = tmp_path / "bad.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.write(src / CSV_FILE, CSV_FILE)
        zf.write(src / NPZ_FILE, NPZ_FILE)
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777) << 16
        zf.writestr(info, "/etc/passwd")
    assert "symbolic link" in find(problems_of(arc), "bad.zip", "link").message


def test_archive_size_cap(tmp_path: Path) -> None:
    src = _files(tmp_path)
    arc = tmp_path / "big.zip"
    with zipfile.ZipFile(arc, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(src / CSV_FILE, CSV_FILE)
        zf.write(src / NPZ_FILE, NPZ_FILE)
        zf.writestr("zeros.bin", b"\0" * 200_000)
    assert "limit" in find(problems_of(arc, max_archive_bytes=100_000), "big.zip", "").message
    assert len(load_dataset(arc)) == N


def test_corrupt_archive(tmp_path: Path) -> None:
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b garbage")
    assert "cannot be read" in problems_of(tmp_path / "junk.zip")[0].message
    assert "cannot be read" in problems_of(tmp_path / "junk.tar.gz")[0].message


# ---------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not MOSI.is_dir(), reason="shared MOSI data not present")
def test_real_mosi_loads() -> None:
    ds = load_dataset(MOSI)
    s = ds.summary()
    assert s["n"] == 2199 and s["rho"] == 3.0 and s["has_transcripts"]
    assert {k: v["n"] for k, v in s["splits"].items()} == {"train": 1447, "valid": 248, "test": 504}
    assert (
        s["splits"]["test"]["labeled"] == 0
        and s["splits"]["train"]["labeled"] == 1447
        and s["splits"]["valid"]["labeled"] == 248
    )
    assert {m: f.dim for m, f in ds.features.items()} == {"text": 100, "audio": 73, "vision": 100}
    assert not any(f.is_sequence for f in ds.features.values())


def test_a_known_column_in_another_case_is_named(tmp_path: Path) -> None:
    """Other columns are ignored, so `label_t` (for label_T) vanished unsaid: no text sub-label in the run."""
    df, arrays = base()
    df = df.rename(columns={"label_T": "label_t", "transcript": "Transcript"})
    probs = problems_of(write(tmp_path, df, arrays))
    assert find(probs, CSV_FILE, "label_t").message == "names are case-sensitive: rename it 'label_T'"
    assert find(probs, CSV_FILE, "Transcript").message == "names are case-sensitive: rename it 'transcript'"
    df, arrays = base()
    arrays["Audio"] = arrays.pop("audio")
    probs = problems_of(write(tmp_path / "npz", df, arrays))
    assert find(probs, NPZ_FILE, "Audio").message == "names are case-sensitive: rename it 'audio'"
