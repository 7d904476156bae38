"""features.npz forged or broken in ways that made load_dataset fail without naming the file and key (or
allocate what the file cannot hold): each is a DatasetError problem naming features.npz and the key."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.dataset import NPZ_FILE
from models.dataset_loader import load_dataset
from tests.test_data import N, base, find, problems_of, write


def test_an_array_with_no_rows_is_named(tmp_path: Path) -> None:
    """A 0-row array was 'cannot reshape array of size 0 into shape (0,newaxis)', naming nothing."""
    df, arrays = base()
    arrays["text"] = arrays["text"][:0]
    problem = find(problems_of(write(tmp_path, df, arrays), for_training=False), NPZ_FILE, "text")
    assert problem.message == f"has 0 rows, expected {N} (rows of utterances.csv)"


def _forged(
    path: Path, arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...], compress: int
) -> None:
    """features.npz whose ``key`` member has a .npy header declaring ``shape`` over 64 bytes of data."""
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for k, v in arrays.items():
            buf = io.BytesIO()
            if k == key:
                header = {"descr": "<f4", "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(buf, header)
                buf.write(b"\0" * 64)
            else:
                np.save(buf, v)
            zf.writestr(f"{k}.npy", buf.getvalue())


@pytest.mark.parametrize("compress", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_shape_the_member_cannot_hold_is_refused_unallocated(tmp_path: Path, compress: int) -> None:
    """numpy allocates what a .npy header declares before reading: [N, 10^9] float32 (48 GB) was a
    MemoryError traceback from `unilabel predict` (or that memory, where it could be had); no cap is set
    on the CLI, so the header is checked against what its archive member can physically hold."""
    df, arrays = base()
    write(tmp_path, df, None)
    _forged(tmp_path / NPZ_FILE, arrays, "audio", (N, 10**9), compress)
    problem = find(problems_of(tmp_path, for_training=False), NPZ_FILE, "audio")
    assert problem.message.startswith(f"shape [{N}, 1000000000] declares {N * 4 * 10**9} bytes")
    assert "the archive member holds at most" in problem.message


def test_a_compressed_npz_that_holds_its_arrays_still_loads(tmp_path: Path) -> None:
    df, arrays = base()
    write(tmp_path, df, None)
    np.savez_compressed(tmp_path / NPZ_FILE, **arrays)
    assert load_dataset(tmp_path).features["audio"].values.shape == arrays["audio"].shape


def test_arrays_larger_than_the_machines_memory_are_refused_from_their_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no cap given (the CLI, the library), arrays that cannot fit in memory were read all the same
    (numpy allocating them: a MemoryError traceback or the out-of-memory killer). Their headers say their
    size before anything is allocated, so a dataset problem says it instead."""
    import models.features_npz as features_npz

    assert features_npz.memory_limit() > 2**28  # this OS says how much it has
    df, arrays = base()
    path = write(tmp_path, df, arrays)
    total = sum(a.nbytes for a in arrays.values())
    monkeypatch.setattr(features_npz, "memory_limit", lambda: total - 1)
    problem = find(problems_of(path), NPZ_FILE, "")
    said = f"arrays hold {total} bytes, more than the memory here ({total - 1} bytes, the machine's or its"
    assert problem.message.startswith(said)
    monkeypatch.setattr(features_npz, "memory_limit", lambda: total)
    assert len(load_dataset(path)) == N


def test_a_containers_memory_limit_bounds_the_arrays_as_the_machines_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a container (the compose deployment) the machine's memory is the host's; the kernel kills the
    process at the container's cgroup limit long before. The limit is read as the container sees it: cgroup
    v2's memory.max, else v1's memory.limit_in_bytes; "max" (v2) means none."""
    import models.features_npz as features_npz

    host = features_npz.memory_limit()
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    monkeypatch.setattr(features_npz, "CGROUP_MEMORY_LIMITS", (v2, v1))
    assert features_npz.memory_limit() == host  # neither file: the machine's memory
    v1.write_text("1048576\n")
    assert features_npz.memory_limit() == 1048576
    v2.write_text("2097152\n")
    assert features_npz.memory_limit() == 2097152  # v2 first, as a v2 host has no v1 file
    v2.write_text("max\n")
    assert features_npz.memory_limit() == 1048576
    v1.write_text(f"{2**63 - 4096}\n")  # v1's "no limit"
    assert features_npz.memory_limit() == host
    df, arrays = base()
    total = sum(a.nbytes for a in arrays.values())
    v2.write_text(f"{total - 1}\n")
    problem = find(problems_of(write(tmp_path, df, arrays)), NPZ_FILE, "")
    said = f"arrays hold {total} bytes, more than the memory here ({total - 1} bytes"
    assert problem.message.startswith(said)
