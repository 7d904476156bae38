"""constraints.txt pins the versions a fresh install gets (scripts/setup.sh, the Dockerfiles): every
dependency pyproject.toml names is pinned there, within pyproject's range, and the tests run on them."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = pinned
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for extra in project["optional-dependencies"].values() for r in extra]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_every_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name == "torch":  # installed first, as the CPU or the CUDA build: pinned in pyproject itself
            assert name not in pins, "constraints.txt must not pin torch (the GPU image takes the CUDA build)"
            continue
        assert name in pins, f"constraints.txt does not pin {req.name} (regenerate it: its header says how)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}"
        )


def test_the_tests_run_on_the_pinned_versions() -> None:
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name in pins:
            assert version(req.name) == pins[name], (
                f"{req.name} {version(req.name)} is installed, constraints.txt pins {pins[name]}: "
                "run bash scripts/setup.sh"
            )
