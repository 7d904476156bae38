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

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S = 30.0
BODY_IDLE_TIMEOUT_S = 60.0


class DeadlineHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol, closing a connection whose client misses a deadline (see the module's docstring).

    One timer per connection, rarely moved: a request only notes the time (what it waits for, since when) and
    the timer, when it fires, compares, and sets itself again for what is left. Arming and cancelling a timer
    for each request, as the obvious version does, cost 2.6 us each time on uvloop (measured), several per
    request, where an answer from the memo costs 50-100 us of the API's CPU (docs/benchmarks-service.md)."""

    header_timeout_s = HEADER_TIMEOUT_S
    body_idle_timeout_s = BODY_IDLE_TIMEOUT_S
    _timer: asyncio.TimerHandle | None = None
    _waiting: str | None = None  # "headers" or "body" while the client owes bytes, None while answering
    _since = 0.0  # the start of the headers' wait, or the last piece of the body
    _fires = 0.0  # when the timer fires (loop time)

    def _wait_for(self, what: str) -> None:
        now = self.loop.time()
        self._waiting, self._since = what, now
        due = now + (self.header_timeout_s if what == "headers" else self.body_idle_timeout_s)
        if self._timer is None or self._fires > due:  # set for a body's deadline: too late for headers
            self._arm(due)

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._fires = self.loop.call_at(due, self._check), due

    def _check(self) -> None:
        self._timer = None
        now = self.loop.time()
        if self._waiting == "headers":
            due = self._since + self.header_timeout_s
        elif self._waiting == "body":
            cycle = self.cycle
            if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
                self._since = now  # the API, not the client, is waiting
            due = self._since + self.body_idle_timeout_s
        else:
            return  # a request is being answered: its end sets the timer again
        if now < due:
            self._arm(due)
        elif not self.transport.is_closing():
            self.transport.close()

    def _answering(self) -> bool:
        """Whether the request being read still waits for its answer (after an early answer, such as a 413,
        the rest of its body is read and dropped within the next request's header deadline)."""
        return self.cycle is not None and not self.cycle.response_complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for("headers")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._wait_for("body")

    def on_body(self, body: bytes) -> None:
        if self._answering():
            self._since = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._answering():
            self._waiting = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a next request already read: its headers are in
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._wait_for("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)
