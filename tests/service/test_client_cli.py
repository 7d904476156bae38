"""The service client's command line without a service: bad or unreachable URLs are named, no traceback."""

from __future__ import annotations

import socket

import pytest

from remote.client import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("url", [f"http://127.0.0.1:{_closed_port()}", "127.0.0.1:8000", "notaurl"])
def test_unreachable_or_malformed_url_is_named(url: str, capsys) -> None:
    assert main(["--url", url, "datasets"]) == 2
    err = capsys.readouterr().err
    assert f"error: --url {url}: cannot reach the service (" in err and "UNILABEL_URL" in err
    assert "Traceback" not in err
