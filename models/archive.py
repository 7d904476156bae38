"""Safe extraction of dataset archives (.zip, .tar.gz, .tgz, .tar).

Every member is checked before anything is written: absolute paths, '..' components, links, devices
and other special files are refused, and the total size is capped. Extraction writes plain files only
(no permissions, owners or timestamps are taken from the archive).

With ``max_ratio`` the content may not exceed that many times the archive's own size: checked on the sizes
the archive declares before anything is written, and again on the bytes actually decompressed (a gzip stream
is cut off once it yields more, so a compression bomb costs neither disk nor time).
"""

from __future__ import annotations

import errno
import gzip
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MAX_MEMBERS = 10_000
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
# A member's name within what any filesystem takes: longer ones failed while extracting, with an OSError that
# quoted the extraction folder's absolute path (the service's artifact volume) and, nested thousands deep, a
# RecursionError from pathlib.
MAX_NAME_CHARS, MAX_COMPONENT_BYTES, MAX_DEPTH = 1024, 255, 32
# Errors of the disk extraction writes to, not of the archive: raised as they are, so that a caller tells a
# full or read-only volume (the service: 507) from a bad upload.
VOLUME_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


class ArchiveError(ValueError):
    """An archive that cannot be extracted safely; `problems` holds (member, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{m or '<archive>'}: {msg}" for m, msg in problems))


@dataclass(frozen=True)
class _Member:
    name: str
    parts: tuple[str, ...]
    is_dir: bool
    size: int
    handle: object  # ZipInfo or TarInfo


def is_archive(path: str | Path) -> bool:
    """True when the file name ends in a supported archive suffix."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _split_name(name: str) -> tuple[tuple[str, ...], str | None]:
    """Path components of a member name, or an error message when the name is unsafe."""
    if not name or "\x00" in name:
        return (), "empty or invalid member name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return (), "absolute path"
    parts = tuple(p for p in re.split(r"[\\/]+", name) if p not in ("", "."))
    if ".." in parts:
        return (), "path contains '..'"
    if len(name) > MAX_NAME_CHARS:
        return (), f"name longer than {MAX_NAME_CHARS} characters"
    if len(parts) > MAX_DEPTH:
        return (), f"nested deeper than {MAX_DEPTH} folders"
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES for p in parts):
        return (), f"a folder or file name longer than {MAX_COMPONENT_BYTES} bytes"
    return parts, None


def _shown(name: str) -> str:
    """A member's name as a problem names it: a long one cut in the middle, so the problem itself shows."""
    return name if len(name) <= 120 else f"{name[:60]}...{name[-40:]}"


def _reason(exc: OSError) -> str:
    """An OSError in words without its file names: they are paths of the extraction folder, which is the
    caller's business (the service's artifact volume), never the archive's sender's."""
    return exc.strerror or type(exc).__name__


def _zip_members(zf: zipfile.ZipFile, problems: list[tuple[str, str]]) -> list[_Member]:
    out = []
    for info in zf.infolist():
        parts, err = _split_name(info.filename)
        kind = stat.S_IFMT((info.external_attr >> 16) & 0xFFFF)  # 0 when the creator stored no Unix type
        if err is None and kind == stat.S_IFLNK:
            err = "symbolic link"
        elif err is None and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            err = "not a regular file or directory"
        elif err is None and info.flag_bits & 0x1:
            err = "encrypted member"
        if err:
            problems.append((_shown(info.filename), err))
        elif parts:
            out.append(_Member(info.filename, parts, info.is_dir(), info.file_size, info))
    return out


def _tar_members(tf: tarfile.TarFile, problems: list[tuple[str, str]]) -> list[_Member]:
    out = []
    for info in tf.getmembers():
        parts, err = _split_name(info.name)
        if err is None and (info.issym() or info.islnk()):
            err = "link (symbolic or hard)"
        elif err is None and not (info.isreg() or info.isdir()):
            err = "not a regular file or directory (device, fifo, ...)"
        if err:
            problems.append((_shown(info.name), err))
        elif parts:
            out.append(_Member(info.name, parts, info.isdir(), info.size, info))
    return out


class _Bounded:
    """A decompressing file object that fails once its position passes ``limit`` bytes (tarfile reads and
    seeks forward through it; both decompress)."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw, self.limit = raw, limit

    def _check(self) -> None:
        if self.raw.tell() > self.limit:
            raise ArchiveError([("", f"content exceeds the limit of {self.limit} bytes")])

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size if size >= 0 else self.limit + 1)
        self._check()
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.raw.seek(offset, whence)
        self._check()
        return position

    def tell(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        self.raw.close()


@contextmanager
def _open(path: Path, problems: list[tuple[str, str]], limit: int) -> Iterator[tuple[list[_Member], object]]:
    name = path.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            yield _zip_members(zf, problems), zf
    elif name.endswith(".tar"):
        with tarfile.open(path, "r:") as tf:
            yield _tar_members(tf, problems), tf
    else:
        with gzip.open(path, "rb") as gz, tarfile.open(fileobj=_Bounded(gz, limit), mode="r:") as tf:  # type: ignore[arg-type]
            yield _tar_members(tf, problems), tf


def _reader(archive: object, member: _Member) -> IO[bytes]:
    if isinstance(archive, zipfile.ZipFile):
        return archive.open(member.handle)  # type: ignore[arg-type]
    f = archive.extractfile(member.handle)  # type: ignore[attr-defined]
    if f is None:
        raise ArchiveError([(member.name, "cannot be read")])
    return f


def extract_archive(
    path: str | Path,
    dest: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_ratio: float | None = None,
) -> None:
    """Extract `path` into the existing directory `dest` after checking every member.

    Raises ArchiveError listing every unsafe member (nothing is written then), or when the archive
    is unreadable or its content exceeds `max_bytes` / `max_members` / `max_ratio` times its size.
    """
    path, dest = Path(path), Path(dest).resolve()
    problems: list[tuple[str, str]] = []
    limit = max_bytes
    if max_ratio is not None:
        limit = min(limit, int(max_ratio * max(path.stat().st_size, 1)))
    try:
        with _open(path, problems, limit) as (members, archive):
            if len(members) > max_members:
                problems.append(("", f"{len(members)} members, more than the limit of {max_members}"))
            declared = sum(m.size for m in members if not m.is_dir)
            if declared > max_bytes:
                problems.append(("", f"content is {declared} bytes, more than the limit of {max_bytes}"))
            elif declared > limit:
                ratio = declared / max(path.stat().st_size, 1)
                message = f"content is {declared} bytes, {ratio:.0f} times the archive's size"
                problems.append(("", f"{message} (the limit is {max_ratio:g} times)"))
            if problems:
                raise ArchiveError(problems)
            written = 0
            for m in members:
                target = dest.joinpath(*m.parts)
                if dest not in target.resolve().parents and target.resolve() != dest:
                    raise ArchiveError([(m.name, "path escapes the extraction directory")])
                if m.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with _reader(archive, m) as src, open(target, "wb") as dst:
                        while chunk := src.read(_CHUNK):
                            written += len(chunk)
                            if written > limit:
                                raise ArchiveError([("", f"content exceeds the limit of {limit} bytes")])
                            dst.write(chunk)
                except OSError as e:  # a file where a folder goes ('a', then 'a/x'), and the like
                    if e.errno in VOLUME_ERRNOS or isinstance(e, gzip.BadGzipFile):  # the archive's, below
                        raise
                    raise ArchiveError([(_shown(m.name), f"cannot be extracted: {_reason(e)}")]) from None
    except ArchiveError:
        raise
    # before OSError, which BadGzipFile is: its words ("Not a gzipped file (b'PK')": a zip named .tar.gz) name
    # no path, and are all that tells what the file is
    except (
        gzip.BadGzipFile,
        zipfile.BadZipFile,
        tarfile.TarError,
        zlib.error,
        EOFError,
        RuntimeError,
        ValueError,
    ) as e:
        raise ArchiveError([("", f"cannot be read as an archive: {e}")]) from None
    except OSError as e:
        if e.errno in VOLUME_ERRNOS:
            raise
        raise ArchiveError([("", f"cannot be read as an archive: {_reason(e)}")]) from None
