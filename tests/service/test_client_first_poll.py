"""`unilabel-remote wait` interrupted before its first poll was answered: nothing was seen of the job (the
service may be unreachable, the id may be wrong), so its line does not say that the job goes on in the
service, but that it was not seen yet and which command tells (remote/interruption.py)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

from remote.localstack import REPO
from tests.service.test_client_interrupts import _main_with, _polls

NOT_SEEN = (
    "unilabel-remote wait: interrupted; job j1 was not cancelled by this command; it was not seen yet, as "
    "the service had not answered about it: `unilabel-remote status j1` tells, `unilabel-remote wait j1` "
    "follows it again\n"
)


def test_wait_interrupted_in_its_first_poll_says_the_job_was_not_seen_yet(monkeypatch, capsys) -> None:
    assert _main_with(monkeypatch, _polls([]), ["wait", "j1"]) == 130
    assert capsys.readouterr().err == NOT_SEEN


def test_a_real_ctrl_c_while_the_first_poll_waits_for_its_answer() -> None:
    """A server that takes the poll's connection and request but never answers: SIGINT once it has them."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "remote.cli", "--url", url, "--key", "k", "wait", "j1"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            # as Ctrl-C at a terminal finds it (a background job would start with SIGINT ignored)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(60)
                assert conn.recv(65536).startswith(
                    b"GET /v1/jobs/j1 "
                )  # the poll is sent: it awaits the answer
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 130, err
    assert err == NOT_SEEN
