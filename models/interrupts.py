"""SIGTERM and SIGHUP unwinding like Ctrl-C. Python's default for them ends the process at once, skipping
every ``finally``: a training run's staging folder, a stack's processes, a temporary folder stay behind."""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

UNWINDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that the program unwinds as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_interrupted(signum: int, _frame: object) -> None:
    """A signal handler: ``Interrupted`` for the signal, unwinding the main thread as Ctrl-C does."""
    raise Interrupted(signum)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process ended by it (130 for Ctrl-C)."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


@contextmanager
def _handlers(signals: tuple[int, ...], handler: Any) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def signals_unwind() -> AbstractContextManager[None]:
    """Meanwhile SIGTERM and SIGHUP raise ``Interrupted`` (a KeyboardInterrupt) in the main thread; one the
    process was started ignoring stays ignored (``nohup unilabel train ...`` outlives its terminal)."""
    ignored = {sig for sig in UNWINDING_SIGNALS if signal.getsignal(sig) is signal.SIG_IGN}
    return _handlers(tuple(sig for sig in UNWINDING_SIGNALS if sig not in ignored), raise_interrupted)


def signals_ignored() -> AbstractContextManager[None]:
    """Ctrl-C, SIGTERM and SIGHUP ignored meanwhile, so that a second one cannot cut a shutdown short and
    leave processes behind."""
    return _handlers((signal.SIGINT, *UNWINDING_SIGNALS), signal.SIG_IGN)


def run_console_script(script: str, module: str) -> int:
    """A console script's start: imports ``module`` and runs its ``main()``. The import takes a noticeable
    fraction of a second (numpy, pandas, httpx, redis); done by pip's wrapper, before ``main``'s own handler
    existed, a Ctrl-C in it ended in a KeyboardInterrupt traceback. Here it ends as an interrupted command
    does: one line, exit status 130. Each package's entry_point module calls this, importing nothing heavy."""
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt as exc:
        print(f"{script}: interrupted", file=sys.stderr)
        return exit_status(exc)
    return main()
