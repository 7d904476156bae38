"""utterances.csv read and checked: ids, splits, labels, sub-labels and transcripts as columns, every
problem found reported (docs/dataset-format.md)."""

from __future__ import annotations

import codecs
import csv
import difflib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.dataset import CSV_FILE, SPLITS, SUB_LABEL_COLUMNS, Problem, file_not_found, problem_rows


@dataclass
class UtteranceTable:
    """utterances.csv's columns as read; a column that is missing is None (ids, split, label) or absent."""

    n: int
    ids: np.ndarray | None
    split: np.ndarray | None
    label: np.ndarray | None
    transcripts: list[str] | None
    sub_labels: dict[str, np.ndarray]


def _parse_floats(values: Sequence[str], column: str, problems: list[Problem]) -> np.ndarray:
    """Parse a text column into float64; blank cells become NaN, anything else bad is a Problem."""
    out = np.full(len(values), np.nan)
    bad: list[int] = []
    nonfinite: list[int] = []
    for i, v in enumerate(values):
        s = v.strip()
        if not s:
            continue
        try:
            x = float(s)
        except ValueError:
            bad.append(i)
            continue
        if math.isfinite(x):
            out[i] = x
        else:
            nonfinite.append(i)
    if bad:
        problems.append(
            Problem(
                CSV_FILE,
                column,
                f"{len(bad)} non-numeric value(s), e.g. {values[bad[0]][:40]!r}",
                problem_rows(bad),
            )
        )
    if nonfinite:
        problems.append(
            Problem(
                CSV_FILE,
                column,
                f"{len(nonfinite)} non-finite value(s) ('nan', 'inf'); leave the cell blank if unlabeled",
                problem_rows(nonfinite),
            )
        )
    return out


# what other datasets and libraries call the validation split (MMSA and Hugging Face: dev, validation)
_SPLIT_ALIASES = {"dev": "valid", "development": "valid", "val": "valid", "validation": "valid"}


def _split_hint(values: list[str]) -> str:
    """What unknown split values most likely meant, as a hint to append (never applied: a split decides
    which rows train the model, so no guess is made for the user): another library's name for a split,
    another case, a typo, a blank cell."""
    meant = []
    for value in values:
        low = value.lower()
        close = difflib.get_close_matches(low, SPLITS, n=1, cutoff=0.6)
        guess = _SPLIT_ALIASES.get(low) or (close[0] if close else None)
        if guess:
            meant.append(f"{guess!r} for {value!r}")
    hints = [f"did you mean {', '.join(meant)}?"] if meant else []
    if "" in values:
        hints.append("a blank split: every row needs one")
    return f" ({'; '.join(hints)})" if hints else ""


def _save_as_utf8(encoding: str) -> str:
    return f"save it as UTF-8 (Excel: 'CSV UTF-8'; or iconv -f {encoding} -t utf-8 IN > OUT)"


def not_utf8(path: Path) -> str:
    """Where a file that is not UTF-8 first breaks, in words an editor shows (the decoder's own message gives
    a byte offset): a spreadsheet's "CSV" is often in the machine's code page (cp1252, the usual culprit,
    named as an example). Read whole, on this error's path only."""
    data = path.read_bytes()
    # decoded past the BOM with the plain codec: utf-8-sig's error offsets count from after the BOM
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        start = bom + e.start
        # lines as an editor counts them: '\n', '\r\n', or '\r' alone (a classic Mac export)
        breaks = data.count(b"\n", 0, start) + data.count(b"\r", 0, start) - data.count(b"\r\n", 0, start)
        line = breaks + 1
        where = f"byte 0x{data[start]:02x} on line {line} of the file"
        return f"is not UTF-8 text ({where}): {_save_as_utf8('cp1252')}"
    return "is not UTF-8 text"


def _layout_is_sound(path: Path, problems: list[Problem]) -> bool:
    """Whether the file can be read column by column: UTF-8, each column named once, and every row with as
    many values as the header. pandas would take a first row with one value more for an index column and
    shift every column by one (so ids, splits and labels all come out wrong), and fill a short row's missing
    values with blanks (a forgotten label read as unlabeled); both are said here instead, by row. The file is
    read as a stream: it is read whole by pandas next."""
    bad: list[int] = []
    first = 0
    header: list[str] = []
    twice: dict[str, int] = {}
    try:
        with open(path, "rb") as fh:
            if fh.read(2) in (b"\xff\xfe", b"\xfe\xff"):
                problems.append(Problem(CSV_FILE, "", f"is UTF-16 text: {_save_as_utf8('utf-16')}"))
                return False
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = csv.reader(fh)
            header = [c.strip() for c in next(rows, [])]
            twice = {name: count for name, count in Counter(header).items() if count > 1}
            for name, count in twice.items():
                msg = f"column appears {count} times; column names must be unique"
                problems.append(Problem(CSV_FILE, name, msg))
            if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
                return not twice  # another separator: read_utterances says so once, not once per row
            # rows count from 0 after the header, blank lines skipped, as pandas and every other problem count
            # (pandas takes a line of spaces and tabs for a blank one)
            for i, row in enumerate(row for row in rows if row and (len(row) > 1 or row[0].strip(" \t"))):
                if len(row) != len(header):
                    first = first if bad else len(row)
                    bad.append(i)
    except UnicodeDecodeError:
        problems.append(Problem(CSV_FILE, "", not_utf8(path)))
        return False
    except OSError as e:
        problems.append(Problem(CSV_FILE, "", f"cannot be read: {e.strerror or e}"))
        return False
    except csv.Error:
        # the csv module's own limit, a field over csv.field_size_limit() (128 KiB: a long transcript), which
        # pandas has not: the rows past it go unchecked; pandas reads the file (or says what is wrong)
        pass
    if bad:
        msg = (
            f"{len(bad)} row(s) hold a number of values other than the header's {len(header)} "
            f"(the first has {first}); every row needs one value per column (blank is a value: "
            "'u1,train,,text'), and a value holding a comma must be in double quotes"
        )
        problems.append(Problem(CSV_FILE, "", msg, problem_rows(bad)))
    return not twice and not bad


def read_utterances(
    path: Path, problems: list[Problem], *, for_training: bool = True
) -> UtteranceTable | None:
    """utterances.csv's columns, each problem appended to ``problems``; None when the file cannot be read.

    ``for_training=False`` (a set to predict on) needs only ``id``: without a ``split`` column every row is
    ``test`` (held out from the model), without ``label`` every row is unlabeled."""
    if not path.is_file():
        problems.append(file_not_found(path))
        return None
    if not _layout_is_sound(path, problems):
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as e:
        problems.append(Problem(CSV_FILE, "", f"cannot be read as CSV: {e}"))
        return None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.fillna("")
    if len(df.columns) == 1 and (sep := next((d for d in ";\t|" if d in df.columns[0]), None)):
        msg = f"the header is one column {df.columns[0]!r}: values must be separated by commas, not {sep!r}"
        problems.append(Problem(CSV_FILE, "", msg))
        return None
    for col in ("id", "split", "label") if for_training else ("id",):
        if col not in df.columns:  # the header as read shows a misnamed column ("sentiment")
            shown = ", ".join(repr(c) for c in df.columns[:12]) + (", ..." if len(df.columns) > 12 else "")
            problems.append(Problem(CSV_FILE, col, f"required column missing (the header has {shown})"))
    known = ("id", "split", "label", "transcript", *SUB_LABEL_COLUMNS.values())
    for name in df.columns:  # another column is ignored, so a known one in another case would vanish unsaid
        meant = next((k for k in known if k.lower() == name.lower() and k != name), None)
        if meant is not None and meant not in df.columns:
            problems.append(Problem(CSV_FILE, name, f"names are case-sensitive: rename it {meant!r}"))
    n = len(df)
    if n == 0:
        problems.append(Problem(CSV_FILE, "", "no data rows"))
    col = {c: [str(v) for v in df[c].tolist()] for c in df.columns}

    ids = None
    if "id" in col:
        ids = np.asarray(col["id"], dtype=str)
        blank = [i for i, v in enumerate(col["id"]) if not v.strip()]
        if blank:
            problems.append(Problem(CSV_FILE, "id", f"{len(blank)} empty id(s)", problem_rows(blank)))
        s = pd.Series(col["id"])
        dup = s.duplicated(keep=False).to_numpy() & (s.str.strip() != "").to_numpy()
        if dup.any():
            first = s[dup].iloc[0]
            problems.append(
                Problem(
                    CSV_FILE,
                    "id",
                    f"{s[dup].nunique()} id(s) appear more than once, e.g. {first!r}",
                    problem_rows(np.flatnonzero(dup)),
                )
            )
    split = None
    if "split" in col:
        split = np.asarray([v.strip() for v in col["split"]], dtype=object)
        bad = np.flatnonzero(~np.isin(split, SPLITS))
        if bad.size:
            seen = sorted({str(split[i]) for i in bad})[:5]
            msg = f"{bad.size} unknown value(s) {seen}; expected one of {', '.join(SPLITS)}"
            problems.append(Problem(CSV_FILE, "split", msg + _split_hint(seen), problem_rows(bad)))
        split = split.astype(str)
    elif not for_training:
        split = np.full(n, "test")
    label = _parse_floats(col["label"], "label", problems) if "label" in col else None
    if label is None and not for_training:
        label = np.full(n, np.nan)
    transcripts = col.get("transcript")
    subs = {m: _parse_floats(col[c], c, problems) for m, c in SUB_LABEL_COLUMNS.items() if c in col}
    return UtteranceTable(n, ids, split, label, transcripts, subs)
