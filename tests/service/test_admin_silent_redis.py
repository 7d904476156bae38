"""`unilabel-admin` against a Redis that does not answer (a wrong --redis-url, a Redis that hangs): an error
naming Redis after REDIS_TIMEOUT_S, and, interrupted before that, one line that says what the command may have
left and 128 + the signal's number, not a traceback (service/admin.py)."""

from __future__ import annotations

import signal
import socket
import sys

import pytest

from service import admin
from tests.terminal import interrupted_while_unanswered


@pytest.mark.parametrize(
    ("command", "signum", "left"),
    [
        (["create", "alice"], signal.SIGINT, "the key may or may not have been created, and was not shown"),
        (["revoke", "alice"], signal.SIGTERM, "the key may or may not have been revoked"),
        (["list"], signal.SIGINT, "nothing was changed"),
    ],
)
def test_an_interrupt_while_redis_does_not_answer_says_what_it_left(
    command: list[str], signum: signal.Signals, left: str
) -> None:
    def admin(port: int) -> list[str]:
        url = f"redis://127.0.0.1:{port}/0"
        return [sys.executable, "-m", "service.admin", "--redis-url", url, "keys", *command]

    status, err, asked = interrupted_while_unanswered(admin, signum)
    assert asked, "no Redis command was sent"
    assert status == 128 + signum, err
    assert err.startswith(f"unilabel-admin keys {command[0]}: interrupted; {left}"), err
    assert err.count("\n") == 1, err


def test_a_redis_that_does_not_answer_is_an_error_not_a_wait(monkeypatch, capsys) -> None:
    """A --redis-url that leads to something that takes the connection and never answers (not Redis, or a
    Redis that hangs) waited for ever; now REDIS_TIMEOUT_S ends it with the error line that names Redis."""
    monkeypatch.setattr(admin, "REDIS_TIMEOUT_S", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        assert admin.main(["--redis-url", url, "keys", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Redis at {url}: Timeout"), err
