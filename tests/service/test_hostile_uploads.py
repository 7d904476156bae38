"""Uploads from hostile or careless clients that once got a 500, or an answer quoting the server's paths."""

from __future__ import annotations

import errno
import io
import zipfile
from pathlib import Path

import pytest

from models import archive


def _zip(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buffer.getvalue()


def _dataset(synth_dir: Path) -> list[tuple[str, bytes]]:
    return [(name, (synth_dir / name).read_bytes()) for name in ("utterances.csv", "features.npz")]


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        # a file 'a', then a folder 'a/': it failed with "[Errno 17] File exists: '<ARTIFACT_DIR>/...'"
        ([("a", b"1"), ("a/utterances.csv", b"")], "cannot be extracted: File exists"),
        # "[Errno 36] File name too long: '<ARTIFACT_DIR>/tmp/upload-.../extract-.../aaa...'"
        ([("a" * 300 + "/utterances.csv", b"")], "longer than 255 bytes"),
        ([("/".join(["d"] * 40) + "/x", b"")], "nested deeper than 32 folders"),
        # 2,000 folders deep: "maximum recursion depth exceeded while calling a Python object"; the name is
        # cut in the message, which showed only the name (a dataset's message is cut at 2,000 characters)
        ([("/".join(["d"] * 2000) + "/x", b"")], "name longer than 1024 characters"),
    ],
    ids=["file-then-folder", "long-name", "deep", "very-deep"],
)
def test_an_archive_that_cannot_be_extracted_is_named_without_the_servers_paths(
    client, settings, synth_dir: Path, members: list, problem: str
) -> None:
    blob = _zip(*members, *_dataset(synth_dir))
    r = client.post("/v1/datasets", files={"archive": ("d.zip", blob)})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_dataset"
    assert error["field"].startswith("archive")
    assert problem in error["message"]
    assert str(settings.artifact_dir) not in r.text
    assert "/tmp" not in r.text and "extract-" not in r.text and "Errno" not in r.text


def test_a_full_volume_while_extracting_is_the_volumes_problem_not_the_archives(
    tmp_path: Path, synth_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while writing a member is raised as it is (the service answers 507), not as a bad archive."""
    path = tmp_path / "d.zip"
    path.write_bytes(_zip(*_dataset(synth_dir)))
    (tmp_path / "out").mkdir()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "utterances.csv"))

    monkeypatch.setattr(archive, "open", full, raising=False)
    with pytest.raises(OSError) as caught:
        archive.extract_archive(path, tmp_path / "out")
    assert not isinstance(caught.value, archive.ArchiveError)
    assert caught.value.errno == errno.ENOSPC


def test_a_multipart_boundary_too_long_for_the_parser_is_a_400_not_a_500(client, synth_dir: Path) -> None:
    boundary = "B" * 5000  # RFC 2046 allows 70 characters, python-multipart 256; its constructor raised
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{role}"; filename="{name}"\r\n\r\n'.encode()
        + data
        + b"\r\n"
        for role, (name, data) in zip(("utterances", "features"), _dataset(synth_dir), strict=True)
    ) + f"--{boundary}--\r\n".encode()
    r = client.post(
        "/v1/datasets", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["field"] == "header.content-type"
    assert "boundary" in error["message"] and "256" in error["message"]


def test_a_zip_named_tar_gz_is_said_not_to_be_gzip(tmp_path: Path, synth_dir: Path) -> None:
    """gzip's BadGzipFile is an OSError: taken for the disk's, it was said by its class name alone
    ("cannot be read as an archive: BadGzipFile"), losing the bytes that tell what the file is."""
    path = tmp_path / "d.tar.gz"
    path.write_bytes(_zip(*_dataset(synth_dir)))
    (tmp_path / "out").mkdir()
    with pytest.raises(archive.ArchiveError) as caught:
        archive.extract_archive(path, tmp_path / "out")
    assert "cannot be read as an archive: Not a gzipped file (b'PK')" in str(caught.value)
