"""models/version.py: the code version tells code states apart, in a checkout and in an installed copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models.version import PACKAGE_VERSION, code_version, source_hash

REPO = Path(__file__).resolve().parents[1]


def _version_of_copy(root: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", "from models.version import code_version; print(code_version())"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_installed_copy_reports_the_source_hash(tmp_path: Path) -> None:
    # what the Docker images hold: the package without git; the same code gives the same version anywhere
    copy = tmp_path / "site"
    shutil.copytree(REPO / "models", copy / "models", ignore=shutil.ignore_patterns("__pycache__"))
    version = _version_of_copy(copy)
    assert version == f"{PACKAGE_VERSION}+src.{source_hash(REPO / 'models')}"
    assert code_version().endswith(f".src.{source_hash(REPO / 'models')}")

    (copy / "models" / "stages" / "meta.py").write_text(
        (copy / "models/stages/meta.py").read_text() + "\n# x\n"
    )
    changed = _version_of_copy(copy)
    assert changed != version and re.fullmatch(rf"{re.escape(PACKAGE_VERSION)}\+src\.[0-9a-f]{{12}}", changed)


def test_source_hash_covers_paths_and_contents(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    (pkg / "notes.txt").write_text("not code")
    base = source_hash(pkg)
    (pkg / "notes.txt").write_text("other")
    (pkg / "sub" / "__pycache__").mkdir()
    (pkg / "sub" / "__pycache__" / "b.cpython-311.py").write_text("cache")
    assert source_hash(pkg) == base  # only .py files outside __pycache__
    (pkg / "sub" / "b.py").rename(pkg / "b.py")
    assert source_hash(pkg) != base  # a move is a change
    (pkg / "b.py").rename(pkg / "sub" / "b.py")
    assert source_hash(pkg) == base
    (pkg / "a.py").write_text("x = 2\n")
    assert source_hash(pkg) != base


def test_checkout_names_the_commit() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout (the copy case is tested above)")
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert code_version().startswith(f"{PACKAGE_VERSION}+g{head}")


def test_dirty_means_the_library_changed(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path / "checkout"
    shutil.copytree(REPO / "models", repo / "models", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "README.md").write_text("docs\n")

    def git(*args: str) -> str:
        ident = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
        return subprocess.run(
            ["git", "-C", str(repo), *ident, *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "c")
    head = git("rev-parse", "--short=12", "HEAD")
    clean = _version_of_copy(repo)
    assert clean == f"{PACKAGE_VERSION}+g{head}.src.{source_hash(REPO / 'models')}"
    (repo / "README.md").write_text("other docs\n")
    assert _version_of_copy(repo) == clean  # an edit outside the library
    (repo / "models" / "report.py").write_text((repo / "models" / "report.py").read_text() + "# x\n")
    dirty = _version_of_copy(repo)
    assert dirty.startswith(f"{PACKAGE_VERSION}+g{head}.dirty.src.") and dirty != clean.replace(
        ".src", ".dirty.src"
    )


@pytest.mark.parametrize(
    ("prog", "module"),
    [
        ("unilabel", "models.cli"),
        ("unilabel-remote", "remote.cli"),
        ("unilabel-admin", "service.admin"),
        ("unilabel-api", "service.serve"),
    ],
)
def test_every_command_prints_the_code_version(prog: str, module: str, capsys: pytest.CaptureFixture) -> None:
    main = __import__(module, fromlist=["main"]).main
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"{prog} {code_version()}\n"
