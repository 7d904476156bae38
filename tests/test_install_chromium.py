"""scripts/install-chromium.sh, run by scripts/test.sh: installs Debian's chromium through apt-get (waiting
for another apt process's lock) only when it is missing; the demo's set-up never installs a browser. apt-get
and chromium are stand-ins here, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "install-chromium.sh"


def _run(tmp_path: Path, with_chromium: bool) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The script with a PATH of stand-ins: apt-get records its arguments, chromium (if asked) exists."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "apt-calls"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    if with_chromium:
        (bin_dir / "chromium").write_text("#!/bin/sh\n")
    (bin_dir / "id").symlink_to(shutil.which("id"))  # the script asks whether it runs as root
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": str(bin_dir)}
    done = subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_installs_chromium_when_missing_waiting_for_the_dpkg_lock(tmp_path: Path) -> None:
    if os.geteuid() != 0:  # the script would run apt-get through sudo, which the stand-in PATH lacks
        pytest.skip("runs as root, as CI does")
    done, calls = _run(tmp_path, with_chromium=False)
    assert done.returncode == 0, done.stderr
    assert calls == [
        "-o DPkg::Lock::Timeout=120 update -qq",
        "-o DPkg::Lock::Timeout=120 install -y -qq chromium",
    ], calls


def test_leaves_an_installed_chromium_alone(tmp_path: Path) -> None:
    done, calls = _run(tmp_path, with_chromium=True)
    assert done.returncode == 0 and calls == [], (done.stderr, calls)


def test_the_test_command_installs_it_and_the_demo_does_not() -> None:
    test_sh = (REPO / "scripts" / "test.sh").read_text()
    assert "bash scripts/install-chromium.sh" in test_sh
    assert test_sh.index("install-chromium.sh") < test_sh.index("pytest")
    for name in ("setup.sh", "demo.sh"):
        assert "chromium" not in (REPO / "scripts" / name).read_text(), name
