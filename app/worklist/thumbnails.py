"""Thumbnails for the worklist: made on demand (only for rows being painted), cached, bounded.

The model asks :meth:`ThumbnailCache.get` while painting; a miss starts a request to a decode
thread and returns None (the cell stays empty until the thumbnail arrives and the cell is
repainted). Pixmaps are made here, in the GUI thread, from the worker's uint8 arrays.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage, QPixmap


def pixmap_from_gray(arr: np.ndarray) -> QPixmap:
    """A QPixmap from an (h, w) uint8 array (copied)."""
    a = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = a.shape
    image = QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return QPixmap.fromImage(image)


class ThumbnailCache(QObject):
    """Thumbnails by path, least recently used dropped past ``capacity``.

    Args:
        request: starts making a thumbnail in a worker (non-blocking).
        capacity: thumbnails kept.

    Signals:
        changed(Path): a thumbnail arrived (or failed: no retry until :meth:`clear`).
    """

    changed = Signal(object)

    def __init__(self, request: Callable[[Path], None], capacity: int = 5000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._request = request
        self._capacity = capacity
        self._cache: OrderedDict[Path, QPixmap] = OrderedDict()
        self._requested: set[Path] = set()

    def get(self, path: Path) -> QPixmap | None:
        """The thumbnail, or None (and a request starts, once)."""
        pix = self._cache.get(path)
        if pix is not None:
            self._cache.move_to_end(path)
            return pix
        if path not in self._requested:
            self._requested.add(path)
            self._request(path)
        return None

    def put(self, path: Path, gray: np.ndarray) -> None:
        """Store a thumbnail made elsewhere (e.g. from the image the viewer decoded)."""
        self._cache[path] = pixmap_from_gray(gray)
        self._cache.move_to_end(path)
        self._requested.discard(path)
        while len(self._cache) > self._capacity:
            old, _ = self._cache.popitem(last=False)
            self._requested.discard(old)
        self.changed.emit(path)

    @Slot(object, object)
    def on_ready(self, path: Path, gray: np.ndarray) -> None:
        """A worker made a thumbnail."""
        self.put(path, gray)

    @Slot(object, str)
    def on_failed(self, path: Path, reason: str) -> None:
        """A worker could not make a thumbnail: do not ask again (the row says why)."""
        self._requested.add(path)

    def clear(self) -> None:
        """Forget everything (a new folder)."""
        self._cache.clear()
        self._requested.clear()

    def __len__(self) -> int:
        return len(self._cache)
