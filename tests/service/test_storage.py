"""Artifacts are written atomically and addressed by validated ids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models import report
from models.report import publish_dir, write_json
from worker.artifacts import ArtifactStore, json_safe, read_json


def exchange_supported() -> bool:
    from models import exchange

    return exchange._renameat2 is not None


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "x.json"
    write_json(target, json_safe({"v": 1, "nan": float("nan")}))
    write_json(target, json_safe({"v": 2}))
    assert read_json(target) == {"v": 2}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]  # no temp files left


def test_failed_write_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.json"
    write_json(target, "old")

    def boom(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", boom)
    with pytest.raises(OSError):
        write_json(target, "new")
    assert read_json(target) == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_json_safe_values(tmp_path: Path) -> None:
    import numpy as np

    write_json(tmp_path / "m.json", json_safe({"a": np.float32(1.5), "b": [np.inf], "c": np.arange(2)}))
    assert read_json(tmp_path / "m.json") == {"a": 1.5, "b": [None], "c": [0, 1]}


def test_publish_is_one_rename_and_never_overwrites(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    first = store.staging_dir("x-")
    (first / "f").write_text("1")
    assert publish_dir(first, store.runs / ("a" * 32))
    second = store.staging_dir("x-")
    (second / "f").write_text("2")
    assert not publish_dir(second, store.runs / ("a" * 32))
    assert (store.runs / ("a" * 32) / "f").read_text() == "1"
    store.discard(second)
    assert not second.exists()


def _run(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "f").write_text(text)
    return path


@pytest.mark.skipif(not exchange_supported(), reason="no renameat2 here (not Linux, or an old C library)")
def test_replacing_swaps_in_one_step_so_no_instant_lacks_the_folder(tmp_path: Path) -> None:
    """The old run was renamed aside and the new one in: a process killed between the two left the folder the
    user named missing (the old run hidden as .out.old-PID, the new one as .out.partial-PID)."""
    from models.exchange import exchange

    a, b = _run(tmp_path / "a", "a"), _run(tmp_path / "b", "b")
    assert exchange(a, b)  # this machine's file system (tmpfs, ext4, xfs, btrfs) can
    assert ((a / "f").read_text(), (b / "f").read_text()) == ("b", "a")
    with pytest.raises(FileNotFoundError):
        exchange(a, tmp_path / "missing")
    out = _run(tmp_path / "out", "old")
    assert publish_dir(_run(tmp_path / ".out.partial-1", "new"), out, replace=True)
    assert (out / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out"]  # the old run removed


def test_where_no_exchange_an_interrupted_replace_puts_the_old_run_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "exchange", lambda a, b: False)  # a file system that cannot
    out = _run(tmp_path / "out", "old")
    assert publish_dir(_run(tmp_path / ".out.partial-1", "new"), out, replace=True)
    assert (out / "f").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    calls = []
    real_replace = os.replace

    def interrupted_second(src: Path, dst: Path) -> None:  # Ctrl-C lands as the new run moves in
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted_second)
    with pytest.raises(KeyboardInterrupt):
        publish_dir(_run(tmp_path / ".out.partial-2", "newer"), out, replace=True)
    assert (out / "f").read_text() == "new"  # the run that was there, not nothing
    assert (tmp_path / ".out.partial-2" / "f").read_text() == "newer"  # the caller discards it


@pytest.mark.parametrize("bad", ["../etc", "a" * 63, "A" * 64, "../" + "a" * 61, ""])
def test_ids_are_validated_before_touching_paths(tmp_path: Path, bad: str) -> None:
    store = ArtifactStore(tmp_path)
    assert store.dataset_dir("0" * 16, bad) is None  # datasets belong to a key (its 16-hex-digit id)
    assert store.dataset_dir(bad, "0" * 64) is None
    assert store.run_dir(bad) is None
    assert store.model_card(bad) is None


def test_sweep_removes_only_old_staging(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    old, new = store.staging_dir("old-"), store.staging_dir("new-")
    os.utime(old, (0, 0))
    assert store.sweep_staging(idle_s=3600, run_is_live=lambda job_id, pid: True) == 1
    assert not old.exists() and new.exists()


def _aged(path: Path) -> Path:
    for p in (*path.rglob("*"), path):
        os.utime(p, (0, 0))
    return path


def _folder(path: Path, *files: str) -> Path:
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_text("x")
    return path


def test_sweep_removes_what_a_delete_cut_short_left_and_nothing_published(tmp_path: Path) -> None:
    """A discard that cannot rename removes in place; cut short, it can leave a run without its card.json or a
    dataset without its summary.json, which nothing names any more. Published ones, fresh ones (a removal in
    progress) and entries that are not ids stay."""
    store = ArtifactStore(tmp_path)
    owner = store.datasets / ("0" * 16)
    run_left = _aged(_folder(store.runs / ("a" * 32), "predictions.csv", "model.safetensors"))
    dataset_left = _aged(_folder(owner / ("d" * 64), "data"))
    kept = [
        _aged(_folder(store.runs / ("b" * 32), "card.json", "model.safetensors")),
        _aged(_folder(owner / ("e" * 64), "summary.json")),
        _folder(store.runs / ("c" * 32), "predictions.csv"),  # being removed right now
        _folder(owner / ("f" * 64)),
        _aged(_folder(store.runs / "not-a-run", "x")),
        _aged(_folder(owner / "not-a-dataset", "x")),
        _aged(_folder(store.datasets / "not-an-owner" / ("d" * 64), "x")),
    ]
    assert store.sweep_staging(idle_s=3600, run_is_live=lambda job_id, pid: True) == 2
    assert not run_left.exists() and not dataset_left.exists()
    assert all(path.exists() for path in kept)
