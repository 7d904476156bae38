"""The client's errors, and what it says when ``--url`` does not lead to the label service.

A newcomer's likeliest ``--url`` mistakes are another server on that port (a web app, a notebook, another
tool), a port where something answers without HTTP, the API's ``/v1`` written into the base URL, and no
service at all. Each used to come out as that server's raw answer (its HTML error page, up to 500 characters
on many lines), a bare "Server disconnected without sending a response.", "no route GET /v1/v1/jobs" or a
JSON decoder's "Expecting value: line 1 column 1", none of which names ``--url``. The API answers every error,
an unknown route's included, as ``{"error": {...}}`` JSON, so an error answer without it came from something
else: a proxy in front of the service (502-504, where the URL may well be right) or another server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

URL_HINT = "set --url or UNILABEL_URL"
# the answers a proxy gives when the service behind it is away: the URL may be right, so no hint about it
GATEWAY_STATUSES = frozenset({502, 503, 504})
FOREIGN_TEXT_CHARS = 200  # of another server's error page: enough to recognise it, on one line


class ClientError(Exception):
    """An error answer: status, and the body's ``error`` object. ``from_service`` is False when the body was
    not the API's error JSON (a proxy's or another server's page, shown as its text); ``retry_after``: the
    seconds its Retry-After header asked to wait (a quota's 429, a 503), None without one."""

    def __init__(
        self,
        status: int,
        error: dict[str, Any],
        from_service: bool = True,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.from_service = from_service
        self.retry_after = retry_after
        field = f" [{error['field']}]" if error.get("field") else ""
        super().__init__(f"HTTP {status} {error.get('code', 'error')}{field}: {error.get('message', '')}")


def error_of(response: httpx.Response) -> ClientError:
    """The ClientError for an answer of status >= 400: the API's error object, else the answer's text on one
    line (an HTML page's many lines and indents made a screenful of noise)."""
    wait = retry_after(response.headers.get("retry-after"))
    try:
        error = response.json()["error"]
        if isinstance(error, dict):
            return ClientError(response.status_code, error, retry_after=wait)
    except (ValueError, KeyError, TypeError):
        pass
    text = " ".join(response.text.split())
    cut = text[:FOREIGN_TEXT_CHARS] + ("…" if len(text) > FOREIGN_TEXT_CHARS else "")
    error = {"code": "http_error", "message": cut}
    return ClientError(response.status_code, error, from_service=False, retry_after=wait)


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's seconds; None without one, or for its other form, an HTTP date, which the
    service never sends."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


def foreign_answer_hint(exc: ClientError, url: str) -> str | None:
    """For an error answer that is not the API's: that ``url`` may lead to another server (None for a
    gateway's error, which a proxy in front of a service that is away gives)."""
    if exc.from_service or exc.status in GATEWAY_STATUSES:
        return None
    return f"that answer is not the label service's (its errors are JSON): is --url {url} right? {URL_HINT}"


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as the service's base URL before anything is sent: the API's own ``/v1``
    in it (every request path starts with it, so it would be asked for twice: "no route GET /v1/v1/jobs")."""
    path = urlsplit(url).path.rstrip("/")
    if path == "/v1" or path.endswith("/v1"):
        base = url.rstrip("/").removesuffix("/v1")
        return f"--url {url}: give the service's base URL, without /v1 (e.g. {base}); {URL_HINT}"
    return None


def transport_message(exc: httpx.HTTPError, url: str) -> str:
    """The error line for a request that got no HTTP answer from ``url``, naming it and what to check."""
    if isinstance(exc, httpx.RemoteProtocolError):  # something listens there, but it does not speak HTTP
        what = "is that the label service's address?"
        return f"--url {url}: no HTTP answer from there ({exc}): {what} {URL_HINT}"
    running = " (is it running? the local stack: `python scripts/stack.py status` prints its URL)"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        running = ""  # the URL itself is wrong: nothing was tried
    return f"--url {url}: cannot reach the service ({exc}){running}; {URL_HINT}"


def not_json_message(url: str) -> str:
    """The error line for a success answer that is not JSON where the API answers JSON: another server."""
    return f"--url {url}: the answer is not JSON, so not the label service's: is --url right? {URL_HINT}"


def with_notes(line: str, exc: BaseException) -> str:
    """An error's line, followed by the notes added to ``exc`` on its way up (``predict``'s: how many of its
    utterances were predicted before the error, and that none was written), each after a "; "."""
    return "; ".join([line, *getattr(exc, "__notes__", [])])
