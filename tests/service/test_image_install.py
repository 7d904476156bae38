"""The images' install step without a Docker engine: the build context that .dockerignore lets through, built
into a wheel and installed apart from the checkout, holds every module and imports on its own."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from models.version import PACKAGE_VERSION, source_hash

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "service", "worker", "api_schemas", "remote")

# Imports every module from the installed copy only: the editable install of the checkout is taken off the
# import system first (its finder would otherwise fill in whatever the wheel lacks).
PROBE = """
import importlib, json, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(getattr(f, "__module__", "")).lower()]
sys.path[:] = [p for p in sys.path if "__editable__" not in p]
sys.path.insert(0, sys.argv[1])
names = json.loads(sys.argv[2])
files = {}
for name in names:
    files[name] = importlib.import_module(name).__file__
from models.version import code_version
print(json.dumps({"files": files, "version": code_version()}))
"""


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.timeout(300)
def test_wheel_from_the_build_context_is_complete(tmp_path: Path) -> None:
    from docker.utils.build import exclude_paths

    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    context = tmp_path / "context"
    for rel in exclude_paths(str(REPO), patterns):  # what `docker build .` would send
        src = REPO / rel
        if src.is_file():
            (context / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, context / rel)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(context)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("unilabel-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True
    )

    names = _modules()
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(site), json.dumps(names)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    outside = {n: f for n, f in found["files"].items() if not f.startswith(str(site))}
    assert not outside, f"imported from outside the installed copy: {outside}"
    assert set(found["files"]) == set(names)
    # no git in an image: the version names the source, the same hash as this checkout's
    assert found["version"] == f"{PACKAGE_VERSION}+src.{source_hash(REPO / 'models')}"
    # the page at / is files, not modules: they must be in the wheel too (package data)
    static = sorted(p.name for p in (REPO / "service" / "static").iterdir())
    assert static and all((site / "service" / "static" / name).is_file() for name in static), static
