"""utterances.csv's layout as a spreadsheet or a hand-written script gets it wrong: rows whose number of
values differs from the header's, and files that are not UTF-8. Each is one problem naming the rows or the
line, never a cascade of wrong findings about columns that pandas shifted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.dataset import CSV_FILE, NPZ_FILE, DatasetError, Problem
from models.dataset_loader import load_dataset

HEADER = "id,split,label,transcript"
SPLITS = ["train"] * 6 + ["valid"] * 3 + ["test"] * 3
ROWS = [f"u{i},{s},{(i % 5) - 2}.5,words {i}" for i, s in enumerate(SPLITS)]


def dataset(tmp_path: Path, csv_bytes: bytes) -> Path:
    (tmp_path / CSV_FILE).write_bytes(csv_bytes)
    ids = np.array([f"u{i}" for i in range(len(ROWS))])
    np.savez(tmp_path / NPZ_FILE, id=ids, text=np.ones((len(ROWS), 4), np.float32))
    return tmp_path


def csv_text(rows: list[str], header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    return info.value.problems


def test_a_first_row_with_one_value_too_many_is_named_not_shifted_into_an_index(tmp_path: Path) -> None:
    # pandas took such a file's first column for an index: ids read 'train', splits read labels, and six
    # problems about the wrong columns followed
    rows = [ROWS[0] + ",extra", *ROWS[1:]]
    problems = problems_of(dataset(tmp_path, csv_text(rows)))
    assert len(problems) == 1, [str(p) for p in problems]
    (problem,) = problems
    assert problem.file == CSV_FILE and problem.rows == (0,)
    assert "header's 4" in problem.message and "the first has 5" in problem.message
    assert "double quotes" in problem.message


def test_a_short_row_is_an_error_not_a_blank_label(tmp_path: Path) -> None:
    # "u3,train" lacks its label and transcript: read as blank, the row became an unlabeled one unsaid
    rows = list(ROWS)
    rows[3] = "u3,train"
    (problem,) = problems_of(dataset(tmp_path, csv_text(rows)))
    assert problem.rows == (3,) and "the first has 2" in problem.message


def test_rows_later_in_the_file_are_counted_from_0_as_every_other_problem(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[5] += ",x"
    rows[7] += ",x,y"
    (problem,) = problems_of(dataset(tmp_path, csv_text(rows)))
    assert problem.rows == (5, 7) and problem.message.startswith("2 row(s)")
    assert "rows 5, 7, counting from 0" in str(problem)


def test_quoted_commas_blank_lines_crlf_and_a_bom_still_load(tmp_path: Path) -> None:
    rows = [r.rsplit(",", 1)[0] + ',"good, really"' for r in ROWS]
    text = "\r\n".join([HEADER, "", *rows, "", ""]) + "\r\n"
    ds = load_dataset(dataset(tmp_path, b"\xef\xbb\xbf" + text.encode()))
    assert len(ds.ids) == len(ROWS) and ds.transcripts[0] == "good, really"


def test_a_code_page_csv_is_named_with_its_line_and_how_to_convert_it(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[2] = rows[2].replace("words", "café")
    (problem,) = problems_of(dataset(tmp_path, csv_text(rows).decode().encode("cp1252")))
    assert problem.file == CSV_FILE
    assert "not UTF-8" in problem.message and "byte 0xe9 on line 4" in problem.message
    assert "CSV UTF-8" in problem.message and "codec" not in problem.message


def test_a_utf16_csv_is_named(tmp_path: Path) -> None:
    (problem,) = problems_of(dataset(tmp_path, csv_text(ROWS).decode().encode("utf-16")))
    assert "UTF-16" in problem.message and "iconv -f utf-16" in problem.message


@pytest.mark.parametrize(
    ("bom", "newline"),
    [(b"\xef\xbb\xbf", "\n"), (b"", "\r"), (b"\xef\xbb\xbf", "\r")],
    ids=["bom", "cr-only", "bom-and-cr"],
)
def test_the_bad_byte_and_its_line_are_right_after_a_bom_and_with_cr_line_endings(
    tmp_path: Path, bom: bytes, newline: str
) -> None:
    # utf-8-sig counted the bad byte's offset from after the BOM (it named the byte three before it, and
    # could name the line before), and a '\r'-only file (a classic Mac export) was one line long
    rows = list(ROWS)
    rows[3] = rows[3].replace("u3", "éu3")
    text = (newline.join([HEADER, *rows]) + newline).encode("cp1252")
    (problem,) = problems_of(dataset(tmp_path, bom + text))
    assert "byte 0xe9 on line 5 of the file" in problem.message, problem.message


def test_a_transcript_longer_than_the_csv_modules_field_limit_still_loads(tmp_path: Path) -> None:
    # csv.reader refuses a field over 131,072 characters, which pandas reads: the layout check refused the
    # dataset ("field larger than field limit") that loaded before it; rows after the long one still count
    rows = list(ROWS)
    rows[1] = rows[1].replace("words", "word " * 40_000)
    ds = load_dataset(dataset(tmp_path, csv_text(rows)))
    assert len(ds.transcripts[1]) > 131_072
    rows[4] += ",x"  # before the long field: still named
    (problem,) = problems_of(dataset(tmp_path, csv_text([rows[4], *rows[1:4], *rows[5:], rows[0]])))
    assert problem.rows == (0,) and "the first has 5" in problem.message


def test_a_line_of_spaces_or_tabs_is_blank_as_pandas_reads_it(tmp_path: Path) -> None:
    # pandas skips such a line, as it skips an empty one; the layout check called it a row of one value,
    # refusing a dataset that loaded before it, and counted later rows one further than pandas does
    rows = [*ROWS[:3], "   ", *ROWS[3:6], "\t", *ROWS[6:], " "]
    assert len(load_dataset(dataset(tmp_path, csv_text(rows))).ids) == len(ROWS)
    rows[5] += ",x"  # ROWS[4], after one such line: row 4 to pandas and every other problem
    (problem,) = problems_of(dataset(tmp_path, csv_text(rows)))
    assert problem.rows == (4,)
