"""features.npz read and checked: the ids and each modality's features (vectors, or padded sequences with
their lengths), never unpickling; every array's header is checked before its data is read (against what
its archive member can hold, and with ArrayLimits against caps).
"""

from __future__ import annotations

import difflib
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.dataset import NPZ_FILE, ModalityFeatures, Problem, file_not_found, problem_rows
from models.modalities import MODALITIES

_NPY_MAGIC = b"\x93NUMPY"
_DTYPE_KINDS = "biufUS"  # numbers and strings; objects (pickles), void, dates never
_RATIO_FLOOR = 1 << 20  # arrays below 1 MiB may compress as well as they like
_DEFLATE_MAX_RATIO = 1032  # the most deflate expands (zlib's technical notes), so what a member can hold
_PICKLED = "object array: pickled data is never loaded; store numbers or strings"


@dataclass(frozen=True)
class ArrayLimits:
    """Caps on what features.npz may make the reader allocate: its arrays' bytes in total, and each
    array's bytes over its compressed size in the archive (``None``: no cap)."""

    max_bytes: int | None = None
    max_ratio: float | None = None


def _npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype] | str:
    """(shape, dtype) from a .npy member's header, without reading its data; or what is wrong."""
    if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
        return "not a .npy array"
    f.seek(0)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        return f".npy format {version} is not supported"
    if dtype.hasobject:
        return _PICKLED
    if dtype.kind not in _DTYPE_KINDS:
        return f"unsupported array: dtype {dtype}, shape {list(shape)}"
    if len(shape) > 3:  # said as check_modality says it, which read such arrays before headers were checked
        return f"must be [N, d] or [N, T, d], got rank {len(shape)} (shape {list(shape)})"
    return shape, dtype


def _more_than_held(info: zipfile.ZipInfo, nbytes: int) -> str | None:
    """Why a member cannot hold the ``nbytes`` its .npy header declares, or None: numpy allocates what the
    header says before reading, so a forged shape of [N, 10^9] was a MemoryError traceback (or the memory
    itself). A stored member holds at most its size; deflate expands at most 1032 times (zlib's bound)."""
    most = {zipfile.ZIP_STORED: 1, zipfile.ZIP_DEFLATED: _DEFLATE_MAX_RATIO}.get(info.compress_type)
    held = min(info.file_size, most * info.compress_size) if most is not None else info.file_size
    return None if nbytes <= held else f"the archive member holds at most {held} (truncated or forged)"


def _declared(path: Path, limits: ArrayLimits, problems: list[Problem]) -> set[str] | None:
    """Each member's .npy header (shape and dtype) checked before any array is read: the keys whose arrays
    may be loaded, or None when nothing may be (the arrays together exceed the byte cap)."""
    keys, total = set(), 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                key = info.filename.removesuffix(".npy")
                with zf.open(info) as f:
                    header = _npy_header(f)
                if isinstance(header, str):
                    problems.append(Problem(NPZ_FILE, key, header))
                    continue
                shape, dtype = header
                nbytes = math.prod(shape) * dtype.itemsize
                if lie := _more_than_held(info, nbytes):
                    msg = f"shape {list(shape)} declares {nbytes} bytes; {lie}"
                    problems.append(Problem(NPZ_FILE, key, msg))
                    continue
                total += nbytes
                ratio = nbytes / max(info.compress_size, 1)
                if limits.max_ratio is not None and nbytes > _RATIO_FLOOR and ratio > limits.max_ratio:
                    msg = f"shape {list(shape)} declares {nbytes} bytes, {ratio:.0f} times its compressed"
                    msg += f" size (the limit is {limits.max_ratio:g} times)"
                    problems.append(Problem(NPZ_FILE, key, msg))
                    continue
                keys.add(key)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        problems.append(Problem(NPZ_FILE, "", f"not a readable .npz archive: {e}"))
        return None
    if limits.max_bytes is not None and total > limits.max_bytes:
        msg = f"arrays hold {total} bytes, more than the limit of {limits.max_bytes}"
        problems.append(Problem(NPZ_FILE, "", msg))
        return None
    if (memory := memory_limit()) is not None and total > memory:
        msg = f"arrays hold {total} bytes, more than the memory here ({memory} bytes, the machine's or its "
        msg += "container's limit): they cannot be loaded; use more memory, or fewer utterances, frames or "
        msg += "dimensions"
        problems.append(Problem(NPZ_FILE, "", msg))
        return None
    return keys


# A container's memory limit, read where a container sees its own cgroup (v2, else v1); v2's "max" and v1's
# figure near 2**63 mean no limit, and outside a container these name the root cgroup, which has none.
CGROUP_MEMORY_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


def memory_limit() -> int | None:
    """The memory this process may use, in bytes: the machine's, or its container's limit when lower (None
    where the OS says neither). Arrays larger than it cannot be loaded: numpy would try, ending in a
    MemoryError traceback or the out-of-memory killer."""
    try:
        limits = [os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        limits = []
    for path in CGROUP_MEMORY_LIMITS:
        try:
            limits.append(int(path.read_text().strip()))
        except (OSError, ValueError):  # no such cgroup file, or "max"
            continue
        break
    return min(limits, default=None)


def _not_npz(path: Path) -> str | None:
    """What the file is when its first bytes show it is neither an .npz (a zip) nor an .npy: numpy takes any
    such file for a pickle and says to load it unsafely, which would mislead."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith((b"PK", b"\x93NUMPY")):
        return None
    if not head:
        what = "an empty file"
    elif head[:1] == b"\x80":  # the pickle protocol's opcode
        what = "a pickle, which is never loaded"
    else:
        what = f"a file that starts {head!r}"
    return f"not an .npz archive (numpy.savez writes one) but {what}"


def read_features_npz(
    path: Path, problems: list[Problem], limits: ArrayLimits | None = None
) -> dict[str, np.ndarray] | None:
    """features.npz's arrays by key, each problem appended to ``problems``; None when none can be read. Keys
    whose header ``limits`` refuses are left out (and reported)."""
    if not path.is_file():
        problems.append(file_not_found(path))
        return None
    allowed = None
    if zipfile.is_zipfile(path):  # headers checked always: also without caps, none may declare more than held
        allowed = _declared(path, limits or ArrayLimits(), problems)
        if allowed is None:
            return None
    if problem := _not_npz(path):
        problems.append(Problem(NPZ_FILE, "", problem))
        return None
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        msg = f"not a readable .npz archive (pickled data is never loaded): {e}"
        problems.append(Problem(NPZ_FILE, "", msg))
        return None
    if not isinstance(z, np.lib.npyio.NpzFile):
        problems.append(Problem(NPZ_FILE, "", "holds a single .npy array; expected an .npz of named arrays"))
        return None
    arrays: dict[str, np.ndarray] = {}
    with z:
        for key in z.files:
            if allowed is not None and key not in allowed:
                continue  # refused by its header, already reported
            try:
                a = z[key]
            except ValueError as e:
                msg = _PICKLED if "pickle" in str(e) else f"cannot be read: {e}"
                problems.append(Problem(NPZ_FILE, key, msg))
                continue
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                problems.append(Problem(NPZ_FILE, key, f"cannot be read: {e}"))
                continue
            if not isinstance(a, np.ndarray):
                problems.append(Problem(NPZ_FILE, key, "not a .npy array"))
                continue
            arrays[key] = a
    known = ("id", *MODALITIES, *(f"{m}_lengths" for m in MODALITIES))
    for key in arrays:  # another key is ignored, so a known one in another case would vanish unsaid
        meant = next((k for k in known if k.lower() == key.lower() and k != key), None)
        if meant is not None and meant not in arrays:
            problems.append(Problem(NPZ_FILE, key, f"names are case-sensitive: rename it {meant!r}"))
    return arrays


def _near_miss(key: str, arrays: dict[str, np.ndarray]) -> str:
    """For a required key that is missing, a key of the file that is most likely it under another spelling
    ('audio_length', 'ids'), said as a hint: keys the format does not know are ignored, so the file's own
    name for the array would otherwise go unmentioned."""
    known = {"id", *MODALITIES, *(f"{m}_lengths" for m in MODALITIES)}
    close = difflib.get_close_matches(key, [k for k in arrays if k not in known], n=1, cutoff=0.75)
    return f" ({close[0]!r} is there: rename it {key!r})" if close else ""


def ids_from_npz(arrays: dict[str, np.ndarray], problems: list[Problem]) -> np.ndarray | None:
    """The 'id' array as strings, or None (with the problem reported)."""
    if "id" not in arrays:
        problems.append(Problem(NPZ_FILE, "id", "required key missing" + _near_miss("id", arrays)))
        return None
    a = arrays["id"]
    if a.ndim != 1:
        problems.append(Problem(NPZ_FILE, "id", f"must be 1-D [N], got shape {list(a.shape)}"))
        return None
    if a.dtype.kind == "U":
        return a
    if a.dtype.kind in "iu":
        return a.astype(str)
    if a.dtype.kind == "S":
        try:
            return np.char.decode(a, "utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(NPZ_FILE, "id", "byte strings are not valid UTF-8"))
            return None
    problems.append(Problem(NPZ_FILE, "id", f"must hold strings, got dtype {a.dtype}"))
    return None


def _check_lengths(
    m: str, arrays: dict[str, np.ndarray], shape: tuple[int, ...], problems: list[Problem]
) -> np.ndarray | None:
    key, (n, t) = f"{m}_lengths", shape[:2]
    if key not in arrays:
        msg = f"required key missing: '{m}' is a padded sequence [N, T, d]" + _near_miss(key, arrays)
        problems.append(Problem(NPZ_FILE, key, msg))
        return None
    a = arrays[key]
    if a.shape != (n,):
        problems.append(Problem(NPZ_FILE, key, f"must have shape [{n}], got {list(a.shape)}"))
        return None
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            nonint = ~np.isfinite(a) | (a != np.round(a))
        if nonint.any():
            problems.append(
                Problem(
                    NPZ_FILE,
                    key,
                    f"{int(nonint.sum())} non-integer value(s)",
                    problem_rows(np.flatnonzero(nonint)),
                )
            )
            return None
    elif a.dtype.kind not in "iu":
        problems.append(Problem(NPZ_FILE, key, f"must be integers, got dtype {a.dtype}"))
        return None
    lengths = a.astype(np.int64)
    bad = (lengths < 1) | (lengths > t)
    if bad.any():
        problems.append(
            Problem(
                NPZ_FILE,
                key,
                f"{int(bad.sum())} value(s) outside 1..{t} (T = padded length of '{m}')",
                problem_rows(np.flatnonzero(bad)),
            )
        )
        return None
    return lengths


def check_modality(
    m: str, arrays: dict[str, np.ndarray], n: int | None, problems: list[Problem]
) -> ModalityFeatures | None:
    """Modality ``m``'s features as float32 (with lengths when a sequence), or None when any check fails;
    ``n`` is the expected row count (None: unknown)."""
    a = arrays[m]
    if a.dtype.kind not in "fiu":
        problems.append(Problem(NPZ_FILE, m, f"must be numeric (float or int), got dtype {a.dtype}"))
        return None
    if a.ndim not in (2, 3):
        problems.append(
            Problem(NPZ_FILE, m, f"must be [N, d] or [N, T, d], got rank {a.ndim} (shape {list(a.shape)})")
        )
        return None
    ok = True
    if n is not None and a.shape[0] != n:
        problems.append(Problem(NPZ_FILE, m, f"has {a.shape[0]} rows, expected {n} (rows of utterances.csv)"))
        ok = False
    if 0 in a.shape[1:]:
        problems.append(Problem(NPZ_FILE, m, f"has an empty axis (shape {list(a.shape)})"))
        return None
    with np.errstate(over="ignore"):
        values = np.asarray(a, dtype=np.float32)
    # the row width spelt out: reshape(0, -1) of an array with no rows is a ValueError naming no file
    bad = ~np.isfinite(values.reshape(values.shape[0], math.prod(values.shape[1:]))).all(axis=1)
    if bad.any():
        problems.append(
            Problem(
                NPZ_FILE,
                m,
                f"{int(bad.sum())} row(s) hold NaN or inf (or values beyond float32 range)",
                problem_rows(np.flatnonzero(bad)),
            )
        )
        ok = False
    lengths = _check_lengths(m, arrays, a.shape, problems) if a.ndim == 3 else None
    if a.ndim == 3 and lengths is None:
        ok = False
    return ModalityFeatures(values, lengths) if ok else None
