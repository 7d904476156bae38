"""Commands started as at a terminal, for the tests that interrupt them with a real signal."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def start_at_a_terminal(cmd: list[str], **popen: Any) -> subprocess.Popen:
    """``cmd`` in the repository (unless ``cwd`` is given), with SIGINT at its default. A shell's background
    job starts with SIGINT ignored and Python keeps an inherited SIG_IGN (no KeyboardInterrupt); Ctrl-C at a
    terminal finds it at its default, so the child starts from that."""
    popen.setdefault("cwd", REPO)
    return subprocess.Popen(cmd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


def interrupted_while_unanswered(cmd: Callable[[int], list[str]], signum: int) -> tuple[int, str, bytes]:
    """``cmd(port)`` run against a server on a loopback ``port`` that takes the connection and its request but
    never answers; ``signum`` sent once the request came. The command's exit status, its stderr and the
    request's first bytes."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        proc = start_at_a_terminal(
            cmd(server.getsockname()[1]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(60)
                asked = conn.recv(65536)  # the request is sent: the command awaits its answer
                proc.send_signal(signum)
                _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    return proc.returncode, err, asked
