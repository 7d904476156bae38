"""``unilabel-remote`` run in process against a fake service, an object of the test's own."""

from __future__ import annotations

import pytest

from remote import cli


def reach_fake_service(monkeypatch: pytest.MonkeyPatch, server: object) -> None:
    """``unilabel-remote``'s LabelClient, for this test, hands out ``server`` (which answers what the command
    calls, e.g. ``predict``) instead of connecting."""

    class Client:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> object:
            return server

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(cli, "LabelClient", Client)
