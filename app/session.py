"""The reading session: what the reader has read and concluded in the open worklist (Qt-free).

napari's ``ViewerModel`` is the pattern: one plain-Python model of the session, whose setters
validate and emit; the worklist, the viewer and the panels observe it through Qt adapters (the
reading controller), and the study database stores what it emits. Nothing here imports Qt, so
the rules (what "read" means, when the order may change) are tested without a window.

Reading states: ``unread`` until the case was displayed for a moment or marked read by key;
``read``; ``reviewed`` once the reader gave a mark or a comment. Marks: agree or disagree with
the flag, confirmed normal, confirmed abnormal (one at a time), and a free-text comment.

The reader's place: ``started`` is False from opening a worklist until the reader moves
(any navigation that was not the app's own) or reads a case. Until then nothing can be lost by
re-sorting, so the worklist keeps following the scores; from then on the order only changes
when the reader asks (see :mod:`app.controllers.reading`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from cxrscreen.app.studydb import MARKS, READ_STATES, Mark, ReadState

T = TypeVar("T")


class Event(Generic[T]):
    """A minimal observer list: ``connect(callback)``; ``emit(value)`` calls each callback in order."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[T], Any]] = []

    def connect(self, callback: Callable[[T], Any]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[[T], Any]) -> None:
        self._callbacks.remove(callback)

    def emit(self, value: T) -> None:
        for callback in list(self._callbacks):
            callback(value)


class ReadingSession:
    """Reading state and marks of the files in the worklist.

    Args:
        reader: who reads (stored with every state and mark).

    Events (``connect(callback)``):
        states_changed(list[Path]): the reading state of these files changed (including
            loads from the database): the worklist repaints them.
        mark_changed(Path): a file's mark or comment changed.
        started_changed(bool): the reader started (True) or a new worklist was opened (False).
        state_set((Path, state)), mark_set((Path, mark, comment)): what the reader did (not
            loads): the study database stores these.
    """

    def __init__(self, reader: str) -> None:
        if not reader.strip():
            raise ValueError("reader name must not be empty")
        self.reader = reader.strip()
        self._state: dict[Path, ReadState] = {}
        self._mark: dict[Path, tuple[Mark | None, str]] = {}
        self._started = False
        self.states_changed: Event[list[Path]] = Event()
        self.mark_changed: Event[Path] = Event()
        self.started_changed: Event[bool] = Event()
        self.state_set: Event[tuple[Path, ReadState]] = Event()
        self.mark_set: Event[tuple[Path, Mark | None, str]] = Event()

    # ------------------------------------------------------------------ queries
    def state(self, path: Path) -> ReadState:
        return self._state.get(path, "unread")

    def is_read(self, path: Path) -> bool:
        """Read or reviewed."""
        return self._state.get(path, "unread") != "unread"

    def mark(self, path: Path) -> Mark | None:
        return self._mark.get(path, (None, ""))[0]

    def comment(self, path: Path) -> str:
        return self._mark.get(path, (None, ""))[1]

    def marked(self, mark: Mark) -> list[Path]:
        """Files whose current mark is ``mark``."""
        _check_mark(mark)
        return [p for p, (m, _c) in self._mark.items() if m == mark]

    @property
    def started(self) -> bool:
        """Whether the reader has moved or read since the worklist was opened."""
        return self._started

    # ------------------------------------------------------------------ changes
    def clear(self) -> None:
        """A new worklist: nothing known, not started."""
        self._state.clear()
        self._mark.clear()
        if self._started:
            self._started = False
            self.started_changed.emit(False)

    def load(self, items: Iterable[tuple[Path, ReadState, Mark | None, str]]) -> None:
        """What the database remembers (does not count as reading, is not stored again)."""
        changed = []
        for path, state, mark, comment in items:
            _check_state(state)
            if state != "unread":
                self._state[path] = state
                changed.append(path)
            if mark is not None or comment:
                _check_mark(mark)
                self._mark[path] = (mark, comment)
        if changed:
            self.states_changed.emit(changed)

    def start(self) -> None:
        """The reader moved or read: from now on the order changes only on request."""
        if not self._started:
            self._started = True
            self.started_changed.emit(True)

    def mark_read(self, path: Path) -> bool:
        """An unread case was displayed long enough (or the reader said so); returns whether it changed."""
        self.start()
        if self.is_read(path):
            return False
        self._set_state(path, "read")
        return True

    def set_state(self, path: Path, state: ReadState) -> None:
        """Set a case's state (e.g. back to unread)."""
        _check_state(state)
        self.start()
        if self.state(path) != state:
            self._set_state(path, state)

    def toggle_read(self, path: Path) -> None:
        """Unread -> read; read or reviewed -> unread."""
        self.set_state(path, "unread" if self.is_read(path) else "read")

    def set_mark(self, path: Path, mark: Mark | None) -> None:
        """Give (or with None, withdraw) the reader's mark; the case becomes reviewed."""
        _check_mark(mark)
        self._update_mark(path, mark, self.comment(path))

    def toggle_mark(self, path: Path, mark: Mark) -> None:
        """Give a mark, or withdraw it when it is the current one (one key per mark)."""
        self.set_mark(path, None if self.mark(path) == mark else mark)

    def set_comment(self, path: Path, comment: str) -> None:
        """The reader's free-text comment (an empty one withdraws it)."""
        self._update_mark(path, self.mark(path), comment.strip())

    def _update_mark(self, path: Path, mark: Mark | None, comment: str) -> None:
        self.start()
        if (mark, comment) == self._mark.get(path, (None, "")):
            return
        if mark is None and not comment:
            self._mark.pop(path, None)
        else:
            self._mark[path] = (mark, comment)
        self.mark_set.emit((path, mark, comment))
        self.mark_changed.emit(path)
        if mark is not None or comment:
            if self.state(path) != "reviewed":
                self._set_state(path, "reviewed")
        elif self.state(path) == "reviewed":
            self._set_state(path, "read")

    def _set_state(self, path: Path, state: ReadState) -> None:
        if state == "unread":
            self._state.pop(path, None)
        else:
            self._state[path] = state
        self.state_set.emit((path, state))
        self.states_changed.emit([path])


def _check_state(state: str) -> None:
    if state not in READ_STATES:
        raise ValueError(f"reading state must be one of {READ_STATES}, got {state!r}")


def _check_mark(mark: str | None) -> None:
    if mark is not None and mark not in MARKS:
        raise ValueError(f"mark must be one of {MARKS} or None, got {mark!r}")
