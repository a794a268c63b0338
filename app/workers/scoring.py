"""Worklist scoring in a separate engine process, results streamed per batch.

:class:`ScoringProcess` runs ``[engine] score --paths-from FILE --model M --format jsonl --out -``
(:mod:`engine.score_cli`) through :class:`app.engine_process.EngineProcess`: decoding and
onnxruntime run outside the GUI process, so they never hold the GIL that the event loop
needs (bench/RESULTS.md, "Event loop while scoring"). Its start event says which execution
provider runs the detector (and any fallback); one result line per file follows.

Files can be added while the run goes on (indexing streams them in). The engine reads its list
before it starts, so files that arrive while a process runs are scored by the next one,
started as soon as that one ends; the run ends when everything given was scored and
:meth:`ScoringProcess.close_input` was called, or when it is stopped. A stop sends SIGTERM: the
engine ends after its current batch (batches are small: well under a second), and is killed
if it has not after :data:`STOP_GRACE_MS`. The window stops showing a cancelled run's progress
at once anyway.

The object also fits :class:`app.workers.base.WorkerSet` (``start``, ``request_stop``,
``isFinished``, ``wait``, ``finished``), so closing the window waits for the process to end.

Also here: :class:`DetectorLoadThread`, which creates the in-process onnxruntime session off
the GUI thread (a CUDA start can take seconds) for the image on screen and its heatmap.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from cxrscreen.app.engine_process import EngineProcess, ProcessOutcome
from cxrscreen.app.workers.base import StoppableThread
from cxrscreen.engine.acquisition import as_descriptor
from cxrscreen.engine.detector import Detector, DetectorError, ProviderChoice
from cxrscreen.engine.scoring import ScoreResult

logger = logging.getLogger(__name__)
STOP_GRACE_MS = 500  # a scoring process still running this long after SIGTERM is killed: it writes
# nothing, so killing loses nothing, and a niced engine on a busy machine may take seconds to
# reach its next batch boundary; a short grace frees the CPU sooner


class ScoringProcess(QObject):
    """Score files with a detector file in engine processes.

    Args:
        model_path: the detector (.onnx).
        model_id: its model id (results are stored under it).
        provider: "auto", "cuda" or "cpu".
        batch_size: images per onnxruntime call.
        decode_workers: decoding threads in the engine process.
        command: the engine command (default: this Python's ``-m cxrscreen.engine``).

    Signals:
        batch_scored(str, list[ScoreResult]): the model id and results as they arrive.
        progress(int, int): files done, files given so far.
        provider_known(str, str): the engine's execution provider and fallback note ("" if none).
        scoring_done(str, int, float): "done", "cancelled" or "failed"; files done; seconds.
        scoring_failed(str): what went wrong (then scoring_done("failed", ...)).
        finished(): the run has ended and no engine process is left.
    """

    batch_scored = Signal(str, object)
    progress = Signal(int, int)
    provider_known = Signal(str, str)
    scoring_done = Signal(str, int, float)
    scoring_failed = Signal(str)
    finished = Signal()

    def __init__(self, model_path: Path, model_id: str, provider: ProviderChoice = "auto", batch_size: int = 8,
                 decode_workers: int = 2, command: Sequence[str] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if decode_workers < 1:
            raise ValueError(f"decode_workers must be >= 1, got {decode_workers}")
        if provider not in ("auto", "cuda", "cpu"):
            raise ValueError(f"provider must be auto, cuda or cpu, got {provider!r}")
        self.model_path = Path(model_path)
        self.model_id = model_id
        self.provider: ProviderChoice = provider
        self._batch_size = batch_size
        self._workers = decode_workers
        self.engine = EngineProcess(command, parent=self)
        self.engine.events.connect(self._on_events)
        self.engine.finished.connect(self._on_process_finished)
        self._pending: list[Path] = []
        self._total = 0
        self._done = 0
        self._closed = False
        self._stop = False
        self._started = False
        self._ended = False
        self._t0 = 0.0
        self._tmp: Path | None = None  # the path lists given to the engine
        self._chunks = 0

    # ------------------------------------------------------------------ input
    def add_paths(self, paths: Iterable[Path]) -> int:
        """Queue more files; returns how many were added."""
        new = [Path(p) for p in paths]
        if self._stop or self._ended:
            return 0
        self._pending.extend(new)
        self._total += len(new)
        if self._started and not self.engine.is_running():
            self._launch()
        return len(new)

    def close_input(self) -> None:
        """No more files will come: end when the queue is empty."""
        self._closed = True
        if self._started and not self.engine.is_running() and not self._pending:
            self._finish("done")

    @property
    def total(self) -> int:
        """Files given so far."""
        return self._total

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop

    @property
    def processes_started(self) -> int:
        """Engine processes started so far (one per batch of files that arrived while another ran)."""
        return self._chunks

    # ------------------------------------------------------------------ worker protocol
    def start(self) -> None:
        """Start scoring what was given (returns at once)."""
        if self._started:
            return
        self._started = True
        self._t0 = time.monotonic()
        if self._pending:
            self._launch()
        elif self._closed:
            QTimer.singleShot(0, lambda: self._finish("done"))

    def request_stop(self) -> None:
        """Stop after the current batch (SIGTERM; killed after :data:`STOP_GRACE_MS`); returns at once."""
        if self._stop:
            return
        self._stop = True
        self._pending.clear()
        if self.engine.is_running():
            self.engine.terminate(STOP_GRACE_MS)
        elif not self._ended:
            QTimer.singleShot(0, lambda: self._finish("cancelled"))

    def isFinished(self) -> bool:  # noqa: N802 (the QThread name WorkerSet uses)
        """Whether the run has ended (``finished`` was emitted)."""
        return self._ended

    def wait(self, timeout_ms: int) -> bool:
        """Block until the current engine process has ended (at most ``timeout_ms``)."""
        self.engine.wait(timeout_ms)
        return not self.engine.is_running()

    # ------------------------------------------------------------------ engine process
    def _launch(self) -> None:
        chunk, self._pending = self._pending, []
        bad = [p for p in chunk if "\n" in str(p) or "\r" in str(p)]
        if bad:  # one path per line in the list file: such a name cannot be passed
            chunk = [p for p in chunk if p not in set(bad)]
            self._results([ScoreResult(p, None, None, error="file name contains a line break") for p in bad])
        if not chunk:
            if self._closed:
                self._finish("done")
            return
        self._chunks += 1
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="cxrscreen-score-"))
        listing = self._tmp / f"paths_{self._chunks}.txt"
        listing.write_text("".join(f"{p}\n" for p in chunk), encoding="utf-8")
        self.engine.start(["score", "--paths-from", str(listing), "--model", str(self.model_path),
                           "--format", "jsonl", "--out", "-", "--batch-size", str(self._batch_size),
                           "--workers", str(self._workers), "--provider", self.provider])

    @Slot(list)
    def _on_events(self, events: list[dict[str, Any]]) -> None:
        results: list[ScoreResult] = []
        for ev in events:
            kind = ev.get("event")
            if kind == "result":
                score, pct = ev.get("score"), ev.get("percentile")
                if ev.get("out_of_scope"):
                    results.append(ScoreResult(Path(ev["path"]), None, None, out_of_scope=str(ev["out_of_scope"])))
                elif score is None or pct is None:
                    results.append(ScoreResult(Path(ev["path"]), None, None, error=str(ev.get("error") or "not scored")))
                else:
                    results.append(ScoreResult(Path(ev["path"]), float(score), float(pct),
                                               acquisition=as_descriptor(ev.get("acquisition"))))
            elif kind == "start":
                if ev.get("model_id") and ev["model_id"] != self.model_id:
                    logger.warning("engine scored with model %s, expected %s", ev["model_id"], self.model_id)
                self.provider_known.emit(str(ev.get("provider") or ""), str(ev.get("provider_note") or ""))
        if results:
            self._results(results)

    def _results(self, results: list[ScoreResult]) -> None:
        self._done += len(results)
        self.batch_scored.emit(self.model_id, results)
        self.progress.emit(self._done, self._total)

    @Slot(object)
    def _on_process_finished(self, outcome: ProcessOutcome) -> None:
        if self._ended:
            return
        if outcome.status == "done" and not self._stop:
            if self._pending:
                self._launch()
            elif self._closed:
                self._finish("done")
            return  # else: idle until more files come or the input is closed
        if self._stop or outcome.status == "stopped":
            self._finish("cancelled")
            return
        tail = "\n".join(outcome.stderr_tail.strip().splitlines()[-8:])
        self.scoring_failed.emit(f"{outcome.message}" + (f"\n\nEngine log (last lines):\n{tail}" if tail else ""))
        self._finish("failed")

    def _finish(self, state: str) -> None:
        if self._ended:
            return
        self._ended = True
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self.scoring_done.emit(state, self._done, time.monotonic() - self._t0)
        self.finished.emit()


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
