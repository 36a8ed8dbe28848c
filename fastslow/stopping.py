"""Stopping a run cleanly on SIGTERM (what a cluster scheduler sends before it kills a job) or SIGINT (Ctrl-C).

`stop_on_signals()` holds handlers for the duration of a command. A signal raises `Stopped` in the main thread, at
the Python line it lands on, so every `finally` and context manager on the way out runs: the run directory's lock
is released, a fresh run's files are removed, a worker process can be ended. Inside `deferred()` (a checkpoint or
an atomic file write) the signal is held until the block ends and raised right after it, so no write is ever cut
in half. Once stopping, further signals are ignored: the way out is not itself interrupted (SIGKILL still works).

Outside `stop_on_signals()` (fastslow used as a library) nothing changes: `deferred()` does nothing and signals keep
their usual behaviour. A worker process forked inside it inherits the handlers; it should restore the defaults
(`signal.signal(signum, signal.SIG_DFL)`) or ignore the signals and let the parent end it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """A command stopped by a signal. A BaseException, like KeyboardInterrupt, so that `except Exception` (retries,
    a failed reflection that the run survives) does not swallow it. `advice` says how to go on, for the one line the
    CLI prints."""

    def __init__(self, signum: int):
        self.signum, self.advice = signum, ""
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        """128 + the signal's number (130 for SIGINT, 143 for SIGTERM): what a shell reports for a process the signal
        ended, so scripts and schedulers that test for it see what happened."""
        return 128 + self.signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}" + (f"; {self.advice}" if self.advice else "")


class _State:
    installed = False
    deferring = 0  # depth of nested deferred() blocks
    pending: int | None = None  # a signal that arrived while deferring
    stopping = False  # Stopped was raised: later signals are ignored


def _handle(signum: int, frame) -> None:
    if _State.stopping:
        return
    if _State.deferring:
        _State.pending = _State.pending or signum
        return
    _State.stopping = True
    raise Stopped(signum)


def stopping() -> bool:
    """Whether a stop is under way: work in other threads (a reflection request, a retry's backoff) ends early."""
    return _State.stopping


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise `Stopped` (at a safe point) while the block runs; the previous handlers after."""
    if threading.current_thread() is not threading.main_thread() or _State.installed:
        yield  # handlers can only be set in the main thread; nested: the outer block holds them
        return
    previous = {signum: signal.signal(signum, _handle) for signum in SIGNALS}
    _State.installed, _State.deferring, _State.pending, _State.stopping = True, 0, None, False
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _State.installed, _State.pending, _State.stopping = False, None, False


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a stopping signal until the block has finished; then raise `Stopped` (if the block ended normally: a
    block that failed ends the command with its own error)."""
    _State.deferring += 1
    try:
        yield
    finally:
        _State.deferring -= 1
    if not _State.deferring and _State.pending is not None and not _State.stopping:
        signum, _State.pending, _State.stopping = _State.pending, None, True
        raise Stopped(signum)
