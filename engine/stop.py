"""Clean stops for long jobs: the first Ctrl-C (SIGINT) or SIGTERM asks the job to stop at the
next safe point (an epoch end, after a checkpoint); a second Ctrl-C aborts at once.

The app's Cancel sends SIGTERM to the engine process, so a cancelled training leaves a
resumable checkpoint.
"""
from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Callable


class StopRequest:
    """A flag set by signals (or by code); ``requested`` is polled at safe points."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: dict[int, object] = {}
        self.on_first_request: Callable[[], None] | None = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        first = not self._event.is_set()
        self._event.set()
        if first and self.on_first_request is not None:
            self.on_first_request()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: abort now
        self.request()

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()


def stderr_notice(text: str) -> Callable[[], None]:
    """A callback printing ``text`` on stderr (used as ``on_first_request``)."""
    return lambda: print(text, file=sys.stderr, flush=True)
