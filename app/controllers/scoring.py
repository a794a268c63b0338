"""The scoring controller: runs the active detector over the worklist in engine processes.

Moved out of the main window (which only keeps delegates): which files to score, the
:class:`app.workers.scoring.ScoringProcess` that scores them, results streamed into the
worklist in small slices (each slice re-sorts its rows), the status bar's progress, cancel.
Files the study database already scored never reach it (:meth:`MainWindow._add_to_worklist`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Slot

from cxrscreen.app.workers.scoring import ScoringProcess
from cxrscreen.engine.detector import ProviderChoice
from cxrscreen.engine.scoring import ScoreResult

if TYPE_CHECKING:
    from cxrscreen.app.main_window import MainWindow

RESULTS_FLUSH_MS = 200  # scoring results reach the worklist at most this late
RESULTS_PER_TURN = 32  # results applied per event-loop turn (each re-sorts its rows)


class ScoringController(QObject):
    """Scoring for one window.

    Args:
        window: the main window (its detector, worklist model, status bar widgets, workers).
    """

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.process: ScoringProcess | None = None  # the current run
        self.provider_choice: ProviderChoice = window.settings.provider  # the loaded detector's
        self.auto_paused = False  # cancelled: files still arriving are not scored until asked (Ctrl+R)
        self.pending: dict[str, list[ScoreResult]] = {}
        self._started = 0.0
        self._results_timer = QTimer(self)
        self._results_timer.setSingleShot(True)
        self._results_timer.setInterval(RESULTS_FLUSH_MS)
        self._results_timer.timeout.connect(self.flush)
        self._progress_value = (0, 0)
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.setInterval(250)
        self._progress_timer.timeout.connect(self._show_progress)

    @property
    def active(self) -> bool:
        """Whether a scoring run is active (a cancelled one that is still winding down is not)."""
        return self.process is not None and not self.process.stopping

    def score_unscored(self, quiet: bool = False) -> int:
        """Score every readable file without a score from the active detector; returns how many."""
        w = self.window
        if w.detector is None:
            if not quiet:
                w.report_error("No detector", "Load a detector first (Ctrl+L).")
            return 0
        self.auto_paused = False
        mid = w.detector.meta.model_id
        todo = [r.path for r in w.model.records() if r.readable and mid not in r.scores and mid not in r.score_errors
                and mid not in r.out_of_scope]
        if not todo and not w.indexing_active:
            if not quiet:
                w.statusBar().showMessage("Every file is scored.", 5000)
            return 0
        self.enqueue(todo)
        return len(todo)

    def enqueue(self, paths: list[Path]) -> None:
        """Score these files with the active detector (in the current run, or a new one)."""
        w = self.window
        if w.detector is None or w.closing:
            return
        if self.process is None or self.process.model_id != w.detector.meta.model_id or self.process.stopping:
            run = ScoringProcess(w.detector.path, w.detector.meta.model_id, self.provider_choice, w.batch_size,
                                 w.decode_workers, w.settings.engine_command, self)
            run.provider_known.connect(w.show_provider)
            run.batch_scored.connect(self.on_batch_scored)
            run.progress.connect(self._on_progress)
            run.scoring_done.connect(self._on_done)
            run.scoring_failed.connect(self._on_failed)
            self.process = run
            self._started = time.monotonic()
            run.add_paths(paths)
            if not w.indexing_active:
                run.close_input()
            w.workers.start(run)
            w.progress.setRange(0, max(1, run.total))
            w.progress.setValue(0)
            for widget in (w.progress, w.progress_label, w.cancel_button):
                widget.show()
            w.actions["cancel"].setEnabled(True)
            self._progress_value = (0, run.total)
            self._show_progress()
        else:
            self.process.add_paths(paths)
            if not w.indexing_active:
                self.process.close_input()
        w.model.mark_queued(paths)

    def close_input(self) -> None:
        """No more files will come (indexing ended): the run ends when its queue is empty."""
        if self.process is not None:
            self.process.close_input()

    @Slot(str, object)
    def on_batch_scored(self, model_id: str, results: list[ScoreResult]) -> None:
        """Results from the engine (or a test): applied within :data:`RESULTS_FLUSH_MS`."""
        # results of a cancelled run are still correct scores: keep them. They are applied in
        # one model update every RESULTS_FLUSH_MS: each update re-sorts the changed rows, and
        # fewer, larger updates keep the event loop free (bench/bench_app_stall.py)
        self.pending.setdefault(model_id, []).extend(results)
        if not self._results_timer.isActive():
            self._results_timer.start(RESULTS_FLUSH_MS)

    def flush(self, everything: bool = False) -> None:
        """Apply pending results: :data:`RESULTS_PER_TURN` per event-loop turn, or all of them."""
        w = self.window
        budget = None if everything else RESULTS_PER_TURN
        for model_id in list(self.pending):
            queue = self.pending[model_id]
            take = queue if budget is None else queue[:budget]
            rest = [] if budget is None else queue[budget:]
            if rest:
                self.pending[model_id] = rest
            else:
                del self.pending[model_id]
            w.model.apply_results(model_id, take)
            w.calibration.scores_changed()
            current = w.current_path
            if current is not None and any(r.path == current for r in take):
                w.show_result(current)
            if budget is not None:
                budget -= len(take)
                if budget <= 0:
                    break
        if self.pending and not self._results_timer.isActive():
            self._results_timer.start(0)  # the rest on the next turns

    def cancel(self) -> None:
        """Stop scoring (the worker ends at its next batch; the window stops waiting at once)."""
        if self.process is None:
            return
        self.process.request_stop()
        self.auto_paused = True
        self._hide_progress()
        self.window.model.clear_queued()
        self.window.statusBar().showMessage("Scoring cancelled. Ctrl+R scores the remaining files.", 5000)

    def stop(self) -> None:
        """Stop quietly (a new worklist or detector); results already pending are dropped."""
        self.pending.clear()
        if self.process is not None:
            self.process.request_stop()
            self.process = None
            self._hide_progress()
            self.window.model.clear_queued()

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        if self.sender() is not None and self.sender() is not self.process:
            return
        # QProgressBar.setValue repaints synchronously (tens of ms): show progress on a timer
        self._progress_value = (done, total)
        if not self._progress_timer.isActive():
            self._progress_timer.start()

    def _show_progress(self) -> None:
        done, total = self._progress_value
        if self.process is None:
            return
        bar = self.window.progress
        # setValue repaints synchronously; with updates off it only schedules a normal repaint
        bar.setUpdatesEnabled(False)
        bar.setRange(0, max(1, total))
        bar.setValue(done)
        bar.setUpdatesEnabled(True)
        rate = done / max(1e-6, time.monotonic() - self._started)
        self.window.progress_label.setText(f"Scoring {done:,} / {total:,}" + (f"  ({rate:.0f}/s)" if done else ""))

    @Slot(str, int, float)
    def _on_done(self, state: str, done: int, seconds: float) -> None:
        self.flush(everything=True)
        if self.sender() is not self.process:
            return
        w = self.window
        self.process = None
        self._hide_progress()
        w.model.clear_queued()
        if state == "done" and w.auto_score_action.isChecked() and not self.auto_paused:
            # files that arrived as the run was ending (a scan still adding, a drop)
            QTimer.singleShot(0, lambda: self.score_unscored(quiet=True))
        if state == "done":
            w.statusBar().showMessage(f"Scored {done:,} files in {seconds:.1f} s ({done / max(seconds, 1e-6):.1f}/s)", 8000)
            w.calibration.update_drift(record=True)  # the whole worklist scored: check and record drift
        elif state == "cancelled":
            w.statusBar().showMessage(f"Scoring cancelled after {done:,} files.", 8000)
            w.calibration.update_drift(record=False)  # what was scored, not recorded: the worklist is incomplete

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.window.report_error("Scoring stopped",
                                 f"Scoring stopped because of an error:\n{message}\n\nScores so far are kept.")

    def _hide_progress(self) -> None:
        w = self.window
        for widget in (w.progress, w.progress_label, w.cancel_button):
            widget.hide()
        w.actions["cancel"].setEnabled(False)
