"""`unilabel-remote wait` interrupted before its first poll was answered: nothing was seen of the job (the
service may be unreachable, the id may be wrong), so its line does not say that the job goes on in the
service, but that it was not seen yet and which command tells (remote/interruption.py)."""

from __future__ import annotations

import signal
import sys

from tests.service.test_client_interrupts import _main_with, _polls
from tests.terminal import interrupted_while_unanswered

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

    def wait(port: int) -> list[str]:
        url = f"http://127.0.0.1:{port}"
        return [sys.executable, "-m", "remote.cli", "--url", url, "--key", "k", "wait", "j1"]

    status, err, asked = interrupted_while_unanswered(wait, signal.SIGINT)
    assert asked.startswith(b"GET /v1/jobs/j1 ")  # the poll was sent: it awaited the answer
    assert status == 130, err
    assert err == NOT_SEEN
