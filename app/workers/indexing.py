"""Indexing: header-only scan of folders and files, streamed to the GUI in small batches.

The first record is sent as soon as it is read (so the first image can be shown at once),
then batches at most every ``interval_s`` seconds, so a folder of 10,000 files fills the
worklist progressively without flooding the event loop.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QObject, Signal

from cxrscreen.app.records import CaseRecord
from cxrscreen.app.workers.base import StoppableThread
from cxrscreen.engine.io import scan_folder

logger = logging.getLogger(__name__)


class IndexingThread(StoppableThread):
    """Scan folders and files (recursively) and emit case records.

    Args:
        roots: folders and/or files.
        interval_s: the longest time records wait before being sent.
        max_batch: the most records per batch.

    Signals:
        records_found(list[CaseRecord]): a batch, in scan order.
        indexing_done(int, bool): number of files found, whether it was stopped early.
        indexing_failed(str): an unexpected error ended the scan (files found so far stay).
    """

    records_found = Signal(object)
    indexing_done = Signal(int, bool)
    indexing_failed = Signal(str)

    def __init__(self, roots: Sequence[str | os.PathLike[str]], interval_s: float = 0.25, max_batch: int = 2000,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        if not roots:
            raise ValueError("nothing to index: give at least one folder or file")
        self.roots = [Path(r) for r in roots]
        self._interval = float(interval_s)
        self._max_batch = int(max_batch)

    def work(self) -> None:
        count = 0
        batch: list[CaseRecord] = []
        last = time.monotonic()
        sent_first = False
        try:
            for item in scan_folder(self.roots):
                if self.stopping:
                    break
                reason = item.error.reason if item.error is not None else None
                batch.append(CaseRecord(item.path, item.meta, reason))
                count += 1
                now = time.monotonic()
                if not sent_first or now - last >= self._interval or len(batch) >= self._max_batch:
                    self.records_found.emit(batch)
                    batch, last, sent_first = [], now, True
            if batch and not self.stopping:
                self.records_found.emit(batch)
        except Exception as exc:  # a scan bug must not kill the app: report it
            logger.exception("indexing %s failed", self.roots)
            if batch:
                self.records_found.emit(batch)
            self.indexing_failed.emit(f"{exc.__class__.__name__}: {exc}")
        self.indexing_done.emit(count, self.stopping)
