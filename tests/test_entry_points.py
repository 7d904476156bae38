"""Ctrl-C while a console script still imports its command's module (a fraction of a second: numpy, pandas,
httpx, redis) ends as any interrupted command does, with one line and exit status 130, not a
KeyboardInterrupt traceback. Each script is started as pip's wrapper starts it, from [project.scripts]; a
sitecustomize on PYTHONPATH, the test's own, holds the import of the command's module until SIGINT comes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.terminal import REPO, start_at_a_terminal

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
COMMANDS = {
    "unilabel": "models.cli",
    "unilabel-remote": "remote.cli",
    "unilabel-admin": "service.admin",
    "unilabel-api": "service.serve",
}

SLOW_IMPORT = '''
import os
import sys
import time


class SlowImport:
    """Says "importing" when the module named by SLOW_IMPORT is about to be imported, then sleeps."""

    def find_spec(self, name, path=None, target=None):
        if name == os.environ.get("SLOW_IMPORT"):
            sys.stderr.write("importing\\n")
            sys.stderr.flush()
            time.sleep(60)
        return None


sys.meta_path.insert(0, SlowImport())
'''


@pytest.mark.parametrize("script", list(COMMANDS))
def test_ctrl_c_while_a_script_imports_its_command_says_one_line(tmp_path: Path, script: str) -> None:
    (tmp_path / "sitecustomize.py").write_text(SLOW_IMPORT)
    module, func = SCRIPTS[script].split(":")
    wrapper = f"import sys\nfrom {module} import {func}\nsys.exit({func}())"  # what pip's script runs
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SLOW_IMPORT": COMMANDS[script]}
    cmd = [sys.executable, "-c", wrapper, "--help"]
    proc = start_at_a_terminal(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr.readline() == "importing\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err == f"{script}: interrupted\n"
