"""Receive a dataset upload: multipart streamed straight to disk while hashing, with size and part limits.

Accepted parts (the role comes from the field name, else from the file name):

- ``utterances`` (``utterances.csv``) and ``features`` (``features.npz``), or
- ``archive``: one ``.zip``, ``.tar.gz`` or ``.tar`` holding both (recognised by its magic bytes).

Nothing is parsed here beyond the multipart framing; validation is the library's ``load_dataset``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError, MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from api_schemas.errors import ErrorDetail
from service.errors import ApiError

FILE_NAMES = {"utterances": "utterances.csv", "features": "features.npz"}
ARCHIVE_MAGIC = {b"PK\x03\x04": "zip", b"\x1f\x8b": "tar.gz"}
TAR_MAGIC_AT = 257  # an uncompressed tar has no magic at its start: "ustar" in its first header (POSIX)
EXPECTED = (
    "expected utterances (utterances.csv) and features (features.npz), or one archive (.zip, .tar.gz or .tar)"
)


@dataclass
class Upload:
    """The staged files: role -> path, and each file's sha256 and size."""

    files: dict[str, Path] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    archive_kind: str | None = None
    content_sha256: str | None = None  # sha256 of utterances.csv then features.npz, when sent in that order


def _role(name: str, filename: str | None) -> str | None:
    if name in ("utterances", "features", "archive"):
        return name
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].lower()
    for role, fname in FILE_NAMES.items():
        if base == fname:
            return role
    if base.endswith((".zip", ".tar.gz", ".tgz", ".tar")):
        return "archive"
    return None


class _PartWriter:
    """Callbacks for python-multipart's streaming parser: each file part goes to its own staged file."""

    def __init__(self, data_dir: Path, max_parts: int) -> None:
        self.data_dir = data_dir
        self.max_parts = max_parts
        self.upload = Upload()
        self.parts = 0
        self._headers: dict[str, str] = {}
        self._hfield = b""
        self._hvalue = b""
        self._role: str | None = None
        self._fh: BinaryIO | None = None
        self._hash: hashlib._Hash | None = None
        self._size = 0
        self._content = hashlib.sha256()  # the library's dataset sha256, computed on the fly when possible
        self._content_ok = True

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: setattr(self, "_hfield", self._hfield + d[s:e]),
            "on_header_value": lambda d, s, e: setattr(self, "_hvalue", self._hvalue + d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise ApiError(413, f"too many parts (at most {self.max_parts})", field="body")
        self._headers, self._role = {}, None

    def _header_end(self) -> None:
        self._headers[self._hfield.decode("latin-1").lower()] = self._hvalue.decode("latin-1")
        self._hfield, self._hvalue = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        role = _role(name, filename)
        if role is None:
            raise ApiError(422, f"unexpected part {name!r}: {EXPECTED}", field=name or "body")
        if role in self.upload.files:
            raise ApiError(422, f"{role} was sent twice", field=role)
        self._role = role
        expected = ("utterances", "features")[min(len(self.upload.files), 1)]
        self._content_ok = self._content_ok and role == expected
        path = self.data_dir / (FILE_NAMES.get(role) or "archive.part")
        self.upload.files[role] = path
        self._fh = open(path, "wb")  # noqa: SIM115 - closed in _part_end / close()
        self._hash = hashlib.sha256()
        self._size = 0

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._fh is not None and self._hash is not None:
            self._fh.write(chunk)
            self._hash.update(chunk)
            if self._content_ok:
                self._content.update(chunk)
            self._size += len(chunk)

    def _part_end(self) -> None:
        if self._fh is None or self._role is None or self._hash is None:
            return
        self._fh.close()
        self._fh = None
        self.upload.sha256[self._role] = self._hash.hexdigest()
        self.upload.sizes[self._role] = self._size

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _finish(upload: Upload) -> Upload:
    roles = set(upload.files)
    if roles == {"archive"}:
        path = upload.files["archive"]
        with open(path, "rb") as fh:
            head = fh.read(TAR_MAGIC_AT + 5)
        kind = next((k for magic, k in ARCHIVE_MAGIC.items() if head.startswith(magic)), None)
        kind = kind or ("tar" if head[TAR_MAGIC_AT:] == b"ustar" else None)
        if kind is None:
            raise ApiError(422, "archive is neither a zip nor a tar (gzipped or not)", field="archive")
        upload.archive_kind = kind
        upload.files["archive"] = path.rename(path.with_name(f"dataset.{kind}"))
        return upload
    if roles == {"utterances", "features"}:
        return upload
    missing = [r for r in ("utterances", "features") if r not in roles] if "archive" not in roles else []
    details = [ErrorDetail(field=r, problem="missing") for r in missing] or [
        ErrorDetail(field="archive", problem="send an archive alone, or the two files without one")
    ]
    raise ApiError(422, EXPECTED, field=details[0].field, details=details)


async def receive_upload(
    request: Request,
    data_dir: Path,
    max_bytes: int,
    max_parts: int,
    limit_name: str,
    limit_field: str,
) -> Upload:
    """Stream the request body into ``data_dir`` (which must exist); raises ApiError on any problem (and
    OSError when the volume cannot take it). ``limit_name`` names the limit that sets ``max_bytes`` and
    ``limit_field`` is the field of the 413 that answers a larger upload."""
    too_large = f"upload is larger than {limit_name}"
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(415, "send multipart/form-data with a boundary", field="header.content-type")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, too_large, field=limit_field)

    writer = _PartWriter(data_dir, max_parts)
    try:
        parser = MultipartParser(options[b"boundary"], writer.callbacks(), max_header_size=16 * 1024)
    except FormParserError as exc:  # a boundary over python-multipart's 256 bytes was a 500
        raise ApiError(400, f"bad multipart boundary: {exc}", field="header.content-type") from None
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise ApiError(413, too_large, field=limit_field)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise ApiError(400, f"malformed multipart body: {exc}", field="body") from None
    except ClientDisconnect:  # a client that hung up is no server error: a 400 line in the log
        raise ApiError(400, "the client went away before the upload ended", field="body") from None
    finally:
        writer.close()
    if writer._role is not None and writer._role not in writer.upload.sha256:
        raise ApiError(400, "multipart body ended inside a part", field="body")
    upload = _finish(writer.upload)
    if upload.archive_kind is None and writer._content_ok:
        upload.content_sha256 = writer._content.hexdigest()
    return upload
