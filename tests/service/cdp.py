"""Headless Chromium driven over the DevTools protocol on a pipe, for what ``--dump-dom`` cannot do: choose
files in an ``<input type=file>`` and submit a form, as a person would.

``--remote-debugging-pipe`` makes Chromium read protocol commands from its fd 3 and write answers and events
to its fd 4, each a JSON message ended by a NUL byte; a shell puts the two pipes there before it becomes
Chromium. No driver to match Chromium's version and no websocket package.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


class ProtocolError(RuntimeError):
    pass


class Browser:
    """One Chromium with one page; ``evaluate`` runs JavaScript in it, ``set_files`` fills a file input."""

    def __init__(self, exe: str, flags: tuple[str, ...], profile: Path) -> None:
        to_chromium, self._commands = os.pipe()
        self._answers, from_chromium = os.pipe()
        argv = [exe, *flags, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_chromium} 4>&{from_chromium}', *argv],
            pass_fds=(to_chromium, from_chromium),
            stdout=subprocess.DEVNULL,
            stderr=self._log,  # a file, not a pipe: nobody reads Chromium's chatter while it runs
        )
        os.close(to_chromium)
        os.close(from_chromium)
        self._next_id = 0
        self._buffer = b""
        self._session: str | None = None

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=10)
        except (ProtocolError, OSError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._commands, self._answers):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()

    def send(
        self, method: str, params: dict | None = None, session: bool = True, timeout: float = 30
    ) -> dict:
        """The result of one protocol command (in the page's session unless ``session`` is False)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self._session:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") != self._next_id:
                continue  # an event, or the answer to a command given up on
            if "error" in answer:
                raise ProtocolError(f"{method}: {answer['error']}")
            return answer["result"]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                self._log.seek(0)
                raise ProtocolError(f"Chromium closed the pipe: {self._log.read()[-2000:]!r}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": url}, session=False)["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)
        self._session = attached["sessionId"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise ProtocolError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        """The first truthy value of ``expression``, polled every 0.1 s."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still falsy after {timeout} s: {expression}")
            time.sleep(0.1)

    def set_files(self, element_id: str, paths: list[Path]) -> None:
        """Choose ``paths`` in the file input ``#element_id``, as the browser's file dialog would."""
        node = self.send(
            "Runtime.evaluate", {"expression": f"document.getElementById({json.dumps(element_id)})"}
        )["result"]
        self.send("DOM.setFileInputFiles", {"files": [str(p) for p in paths], "objectId": node["objectId"]})
