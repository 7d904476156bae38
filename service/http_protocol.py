"""The API's HTTP protocol: uvicorn's httptools protocol with deadlines on what the client sends.

Uvicorn bounds only the idle time between requests (its keep-alive timeout, which any byte of a next request
cancels); a client that opens a connection and sends a request's headers one byte at a time, or stops in the
middle of a body, holds the connection, and a body's request task, for as long as it likes. Enough such
clients use up the API's file descriptors and memory without a key or a byte of quota. The deadlines are
nginx's ``client_header_timeout`` and ``client_body_timeout``:

- a request's headers must be complete within HEADER_TIMEOUT_S of the connection's start or the previous
  response's end, however the bytes trickle in;
- its body must not pause for longer than BODY_IDLE_TIMEOUT_S between two pieces (a slow upload that keeps
  sending is not cut), except while the API itself is not reading (uvicorn's flow control paused it, or a
  ``100 Continue`` has not been sent yet).

A missed deadline closes the connection. A request whose body stopped then sees the client's disconnect, which
every route already handles (an upload's staging folder is removed; service/routes/datasets.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 30.0
BODY_IDLE_TIMEOUT_S = 60.0


class DeadlineHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol, closing a connection whose client misses a deadline (see the module's docstring)."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_idle_timeout_s = BODY_IDLE_TIMEOUT_S
    _deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, on_miss: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, on_miss)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _body_stalled(self) -> None:
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            self._arm(self.body_idle_timeout_s, self._body_stalled)  # the API, not the client, is waiting
        else:
            self._close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s, self._close)

    def _answering(self) -> bool:
        """Whether the request being read is still waiting for its answer (after an early answer, such as a
        413, the rest of its body is read and dropped under the next request's header deadline)."""
        return self.cycle is not None and not self.cycle.response_complete

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_idle_timeout_s, self._body_stalled)

    def on_body(self, body: bytes) -> None:
        if self._answering():
            self._arm(self.body_idle_timeout_s, self._body_stalled)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._answering():
            self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a next request already read: its headers are in
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._arm(self.header_timeout_s, self._close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
