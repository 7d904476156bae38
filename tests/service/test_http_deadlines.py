"""The API's HTTP protocol (service/http_protocol.py) closes a connection whose client trickles a request's
headers past their deadline or stops in the middle of a body, and leaves alone a slow body that keeps coming,
a keep-alive connection between requests, and a body the API itself is slow to read. A real uvicorn server
with the protocol (its deadlines cut to fractions of a second) answers raw sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from remote.localstack import free_port
from service import serve
from service.http_protocol import DeadlineHttpProtocol

HEADERS_S = 0.6
BODY_IDLE_S = 0.6


class QuickDeadlines(DeadlineHttpProtocol):
    header_timeout_s = HEADERS_S
    body_idle_timeout_s = BODY_IDLE_S


class EchoApp:
    """Answers with the length of the body it read, after waiting ``?wait=S`` seconds before reading it;
    records what each request saw (its body length, or "disconnect")."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        query = scope["query_string"].decode()
        if query.startswith("wait="):
            await asyncio.sleep(float(query[5:]))
        if query == "early":  # answers before reading the body, as a 413 on a declared length does
            self.seen.append("early")
            await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.seen.append("disconnect")
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append(len(body))
        answer = str(len(body)).encode()
        headers = [(b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def server() -> Iterator[tuple[int, EchoApp]]:
    app = EchoApp()
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=QuickDeadlines, log_level="warning", lifespan="off"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield port, app
    srv.should_exit = True
    thread.join(10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (reading and dropping any answer)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def answer(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return body


def test_a_connection_that_sends_nothing_is_closed(server) -> None:
    port, _ = server
    sock = connect(port)
    started = time.monotonic()
    assert closed_within(sock, 5)
    assert HEADERS_S - 0.1 <= time.monotonic() - started < HEADERS_S + 2


def test_headers_trickled_past_their_deadline_are_cut_however_steady(server) -> None:
    """A byte every 0.1 s resets no timer: the headers as a whole have HEADERS_S."""
    port, app = server
    sock = connect(port)
    started = time.monotonic()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    with pytest.raises(OSError):
        for _ in range(100):  # 10 s a header byte at a time, unless the server hangs up first
            sock.sendall(b"X")
            time.sleep(0.1)
    assert time.monotonic() - started < HEADERS_S + 2
    assert app.seen == []


def test_a_body_that_stops_is_cut_and_the_app_sees_a_disconnect(server) -> None:
    port, app = server
    sock = connect(port)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"a" * 10)
    assert closed_within(sock, 5)
    deadline = time.monotonic() + 5
    while not app.seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.seen == ["disconnect"]


def test_a_slow_body_that_keeps_coming_is_read_whole(server) -> None:
    """Three times the body deadline in all, a piece every half of it."""
    port, app = server
    sock = connect(port)
    pieces = 6
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % pieces)
    for _ in range(pieces):
        time.sleep(BODY_IDLE_S / 2)
        sock.sendall(b"b")
    assert answer(sock) == b"%d" % pieces
    assert app.seen == [pieces]


def test_the_rest_of_a_body_answered_early_is_under_the_next_requests_deadline(server) -> None:
    """After an early answer the client may go on sending the body; no request waits for it any more, so the
    rest of it, trickled, or sent at once and followed by a trickled next request, is held to the next
    request's header deadline."""
    port, app = server
    for at_once, trickled in ((b"", b"d" * 100), (b"d" * 1000, b"GET / HTTP/1.1\r\n" + b"X" * 100)):
        sock = connect(port)
        sock.sendall(b"POST /?early HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
        started = time.monotonic()
        sock.sendall(at_once)
        with pytest.raises(OSError):
            for byte in trickled:  # 10 s a byte at a time, unless the server hangs up first
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        assert time.monotonic() - started < HEADERS_S + 2
    assert app.seen == ["early", "early"]


def test_keep_alive_requests_each_get_their_own_header_deadline(server) -> None:
    """Two requests on one connection, the second sent after more than HEADERS_S since the connection
    opened; a third trickled past its deadline is cut."""
    port, _ = server
    sock = connect(port)
    sock.sendall(b"GET /?wait=0.4 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer(sock) == b"0"
    time.sleep(0.3)  # the connection is 0.7 s old: over HEADERS_S, within uvicorn's keep-alive timeout
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer(sock) == b"0"
    sock.sendall(b"GET / HTTP/1.1\r\n")
    assert closed_within(sock, 5)


def test_a_body_the_app_is_slow_to_read_is_not_the_clients_stall(server) -> None:
    """The app waits three body deadlines before reading: a large body fills uvicorn's buffer (reading is
    paused) and a client that asked for 100 Continue waits for it; neither is cut."""
    port, app = server
    big = 4 * 1024 * 1024
    sock = connect(port)
    head = b"POST /?wait=%.1f HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    sock.sendall(head % (3 * BODY_IDLE_S, big))
    sock.sendall(b"c" * big)
    assert answer(sock) == b"%d" % big

    sock = connect(port)
    head = b"POST /?wait=%.1f HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    sock.sendall(head % (3 * BODY_IDLE_S))
    sock.settimeout(5)
    assert sock.recv(4096).startswith(b"HTTP/1.1 100")
    sock.sendall(b"hello")
    assert answer(sock) == b"5"
    assert app.seen == [big, 5]


def test_the_api_is_served_with_the_deadlines(monkeypatch) -> None:
    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs, app=app))
    assert serve.main(["--port", "8123"]) == 0
    assert seen["app"] == serve.APP and seen["http"] is DeadlineHttpProtocol



class LongerBodyDeadline(DeadlineHttpProtocol):
    header_timeout_s = HEADERS_S
    body_idle_timeout_s = 5.0


def test_the_header_deadline_holds_after_a_pipelined_request_set_the_timer() -> None:
    """A request pipelined behind a slow one finds no timer (it fired while the slow one was answered) and
    sets it for a body's deadline; the next request's headers are still due HEADERS_S after its answer, not
    when that longer timer fires."""
    port = free_port()
    config = uvicorn.Config(
        EchoApp(), host="127.0.0.1", port=port, http=LongerBodyDeadline, log_level="warning", lifespan="off"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    try:
        sock = connect(port)
        sock.sendall(b"GET /?wait=%.1f HTTP/1.1\r\nHost: x\r\n\r\n" % (HEADERS_S * 2))
        time.sleep(HEADERS_S * 1.5)  # the timer fired while the first request is answered
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined: it comes during that answer
        data = b""
        while data.count(b"\r\n\r\n0") < 2:  # both answered (each says "0")
            data += sock.recv(4096)
        answered = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")  # and no more of a third request
        assert closed_within(sock, 10)
        assert time.monotonic() - answered < HEADERS_S + 1.5, "cut only when the body's timer fired"
    finally:
        srv.should_exit = True
        thread.join(10)
