"""Decoding in the background: the case on screen first, its neighbours next, thumbnails last.

One thread per :class:`DecodeThread`; the window runs two (one for the viewer, one for
thumbnails) so a thumbnail being decoded never delays the image the user asked for. Requests
are cheap and non-blocking; only the latest viewer request is kept (the user moved on),
prefetches are few, and thumbnail requests are served newest first (the rows on screen now)
with old ones dropped.
"""
from __future__ import annotations

import logging
from collections import OrderedDict, deque
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from cxrscreen.app.case_loading import THUMBNAIL_SIDE, load_case, load_thumbnail
from cxrscreen.app.workers.base import StoppableThread
from cxrscreen.engine.detector import Detector
from cxrscreen.engine.io import RadiographReadError

logger = logging.getLogger(__name__)


class DecodeThread(StoppableThread):
    """Decode cases (with the detector's analysis) and thumbnails on request.

    Signals:
        case_loaded(LoadedCase, int): a decoded case and its request id.
        case_failed(Path, str, int): a file that cannot be read, the reason, the request id.
        thumbnail_ready(Path, numpy.ndarray): a uint8 thumbnail.
        thumbnail_failed(Path, str): a file whose thumbnail cannot be made, and why.
    """

    case_loaded = Signal(object, int)
    case_failed = Signal(object, str, int)
    thumbnail_ready = Signal(object, object)
    thumbnail_failed = Signal(object, str)

    def __init__(self, max_thumbnail_queue: int = 256, max_prefetch: int = 4,
                 thumbnail_side: int = THUMBNAIL_SIDE, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._view: tuple[Path, Detector | None, int] | None = None
        self._prefetch: deque[tuple[Path, Detector | None, int]] = deque(maxlen=max_prefetch)
        self._thumbs: OrderedDict[Path, None] = OrderedDict()
        self._max_thumbs = max_thumbnail_queue
        self._side = thumbnail_side

    # ------------------------------------------------------------------ requests (any thread)
    def request_case(self, path: Path, detector: Detector | None, request_id: int, prefetch: bool = False) -> None:
        """Decode a case; a viewer request replaces any earlier one not started yet."""
        with self._cond:
            if prefetch:
                if all(p != path for p, _, _ in self._prefetch):
                    self._prefetch.append((path, detector, request_id))
            else:
                self._view = (path, detector, request_id)
            self._cond.notify()

    def request_thumbnail(self, path: Path) -> None:
        """Make a thumbnail (newest requests first; the oldest are dropped past the limit)."""
        with self._cond:
            self._thumbs.pop(path, None)
            self._thumbs[path] = None
            while len(self._thumbs) > self._max_thumbs:
                self._thumbs.popitem(last=False)
            self._cond.notify()

    def clear(self) -> None:
        """Forget every pending request (a new folder was opened)."""
        with self._cond:
            self._view = None
            self._prefetch.clear()
            self._thumbs.clear()

    # ------------------------------------------------------------------ thread
    def _next(self) -> tuple[str, Path, Detector | None, int] | None:
        with self._cond:
            while not self.stopping and self._view is None and not self._prefetch and not self._thumbs:
                self._cond.wait(0.5)
            if self.stopping:
                return None
            if self._view is not None:
                path, det, rid = self._view
                self._view = None
                return "view", path, det, rid
            if self._prefetch:
                path, det, rid = self._prefetch.popleft()
                return "prefetch", path, det, rid
            path, _ = self._thumbs.popitem(last=True)
            return "thumb", path, None, 0

    def work(self) -> None:
        while not self.stopping:
            job = self._next()
            if job is None:
                break
            kind, path, detector, rid = job
            try:
                if kind == "thumb":
                    self.thumbnail_ready.emit(path, load_thumbnail(path, self._side))
                else:
                    self.case_loaded.emit(load_case(path, detector, thumbnail_side=self._side), rid)
            except RadiographReadError as exc:
                self._failed(kind, path, exc.reason, rid)
            except Exception as exc:  # a reader bug must not end the thread: report it
                logger.exception("decoding %s failed", path)
                self._failed(kind, path, f"{exc.__class__.__name__}: {exc}", rid)

    def _failed(self, kind: str, path: Path, reason: str, rid: int) -> None:
        if kind == "thumb":
            self.thumbnail_failed.emit(path, reason)
        else:
            self.case_failed.emit(path, reason, rid)
