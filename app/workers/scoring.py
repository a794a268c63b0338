"""Scoring in the background with :func:`engine.scoring.iter_scores`, results streamed per batch.

Files can be added while the run goes on (indexing streams them in); the run ends when it has
scored everything it was given and :meth:`ScoringThread.close_input` was called, or when it is
stopped. A stop is seen between batches; batches are kept small so that this is well under a
second, and the window stops showing a cancelled run's progress at once anyway.

Also here: :class:`DetectorLoadThread`, which creates the onnxruntime session off the GUI
thread (a CUDA start can take seconds) and reports the provider actually used.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable

from PySide6.QtCore import QObject, Signal

from app.workers.base import StoppableThread
from engine.detector import Detector, DetectorError, ProviderChoice
from engine.scoring import iter_scores

logger = logging.getLogger(__name__)


class ScoringThread(StoppableThread):
    """Score files with a loaded detector.

    Args:
        detector: the detector (its session is shared with the viewer; onnxruntime sessions
            accept concurrent runs).
        batch_size: images per onnxruntime call.
        decode_workers: decoding threads inside :func:`iter_scores`.

    Signals:
        batch_scored(str, list[ScoreResult]): the detector's model id and a batch's results.
        progress(int, int): files done, files given so far.
        scoring_done(str, int, float): "done", "cancelled" or "failed"; files done; seconds.
        scoring_failed(str): what went wrong (then scoring_done("failed", ...)).
    """

    batch_scored = Signal(str, object)
    progress = Signal(int, int)
    scoring_done = Signal(str, int, float)
    scoring_failed = Signal(str)

    def __init__(self, detector: Detector, batch_size: int = 8, decode_workers: int = 2,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.detector = detector
        self.model_id = detector.meta.model_id
        self._batch_size = batch_size
        self._workers = decode_workers
        self._pending: list[Path] = []
        self._total = 0
        self._closed = False

    def add_paths(self, paths: Iterable[Path]) -> int:
        """Queue more files (from any thread); returns how many were added."""
        new = [Path(p) for p in paths]
        with self._cond:
            self._pending.extend(new)
            self._total += len(new)
            self._cond.notify_all()
        return len(new)

    def close_input(self) -> None:
        """No more files will come: end when the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def total(self) -> int:
        """Files given so far."""
        return self._total

    def _take(self) -> list[Path] | None:
        with self._cond:
            while not self._pending and not self._closed and not self.stopping:
                self._cond.wait(0.25)
            if self.stopping or (not self._pending and self._closed):
                return None
            chunk, self._pending = self._pending, []
            return chunk

    def work(self) -> None:
        t0 = time.monotonic()
        done = 0
        state = "done"
        try:
            while not self.stopping:
                chunk = self._take()
                if chunk is None:
                    break
                for batch in iter_scores(chunk, self.detector, batch_size=self._batch_size,
                                         workers=self._workers, keep_heatmaps=False,
                                         should_stop=lambda: self.stopping):
                    if self.stopping:
                        break
                    done += len(batch)
                    self.batch_scored.emit(self.model_id, batch)
                    self.progress.emit(done, self._total)
        except Exception as exc:  # onnxruntime or a reader bug: report, keep the results so far
            logger.exception("scoring failed")
            self.scoring_failed.emit(f"{exc.__class__.__name__}: {exc}")
            state = "failed"
        if state != "failed" and self.stopping:
            state = "cancelled"
        self.scoring_done.emit(state, done, time.monotonic() - t0)


class DetectorLoadThread(StoppableThread):
    """Create a :class:`Detector` (the onnxruntime session) off the GUI thread.

    Args:
        path: the .onnx file.
        provider: "auto", "cuda" or "cpu".
        threads: onnxruntime intra-op threads (0: its default, one per core).

    Signals:
        detector_loaded(Detector): ready; ``.provider`` and ``.provider_note`` say where it runs.
        detector_failed(str, str): the file and why it cannot be used.
    """

    detector_loaded = Signal(object)
    detector_failed = Signal(str, str)

    def __init__(self, path: Path, provider: ProviderChoice = "auto", threads: int = 0,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.provider: ProviderChoice = provider
        self.threads = threads

    def work(self) -> None:
        try:
            # created in this (niced) thread: onnxruntime's pool threads inherit the priority
            detector = Detector(self.path, provider=self.provider, threads=self.threads)
        except DetectorError as exc:
            self.detector_failed.emit(str(self.path), exc.reason)
            return
        except Exception as exc:  # onnxruntime raises its own types
            logger.exception("loading detector %s failed", self.path)
            self.detector_failed.emit(str(self.path), f"{exc.__class__.__name__}: {exc}")
            return
        if not self.stopping:
            self.detector_loaded.emit(detector)
