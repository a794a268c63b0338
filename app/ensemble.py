"""Detector ▸ Combine detectors…: library detectors trained in the app as one ensemble detector.

The engine's ``cxrscreen ensemble`` (:mod:`engine.ensemble`) averages the standardised scores
of finished training runs; the app offers it for the library detectors whose card records the
run folder of their in-app training (``training_job.run_dir``). The engine checks that the runs
can be one detector (one preprocessing, the same held-out calibration normals, none of them
trained on by any member) and says in one line when they cannot; the app shows that line.

:func:`candidates` lists what can be combined; :class:`EnsembleDialog` lets the reader choose
(no engine call until OK); :class:`EnsembleJob` runs the engine command in a child process and
registers the result in the library, off the GUI thread.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QVBoxLayout, QWidget)

from cxrscreen.app.engine_process import EngineProcess, ProcessOutcome
from cxrscreen.app.library import LibraryEntry, ModelLibrary
from cxrscreen.app.training.job import CallThread

EXPLANATION = (
    "An ensemble scores every image with each detector and averages their scores, each put on the scale of "
    "its own training normals; it is calibrated again on the held-out normals none of them trained on. "
    "Detectors of different methods fail on different images: AMAE (robust) with DDAD (robust field, 250 "
    "epochs), trained on the same folders, ranked dev_test at AUROC 0.977 against 0.966 and 0.970 for each "
    "alone; DDAD alone held differently framed images better (bench/RESULTS.md). Scoring takes as long as all "
    "its members together. Only detectors trained in this app on the same known-normal folder can be combined.")


@dataclass(frozen=True)
class Candidate:
    """A library detector whose in-app training run folder still exists."""

    entry: LibraryEntry
    run_dir: Path

    @property
    def label(self) -> str:
        job = self.entry.card.get("training_job") or {}
        normal = (job.get("folders") or {}).get("normal")
        method = job.get("method_title") or self.entry.card.get("method", "?")
        return f"{self.entry.name} — {method}" + (f" — known normals: {Path(normal).name}" if normal else "")


def candidates(library: ModelLibrary) -> list[Candidate]:
    """Library detectors that can be ensemble members: trained in the app, run folder still present (an
    ensemble itself has no run folder, imported detectors have none recorded)."""
    out = []
    for e in library.entries():
        job = e.card.get("training_job")
        run_dir = job.get("run_dir") if isinstance(job, dict) else None
        if isinstance(run_dir, str) and (Path(run_dir) / "run.json").is_file():
            out.append(Candidate(e, Path(run_dir)))
    return out


def default_name(chosen: Sequence[Candidate]) -> str:
    return "Ensemble: " + " + ".join(c.entry.name for c in chosen)


class EnsembleDialog(QDialog):
    """Choose two or more detectors and a name (OK only with at least two chosen and a name)."""

    def __init__(self, options: Sequence[Candidate], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Combine detectors into an ensemble")
        self.resize(640, 420)
        self.options = list(options)
        layout = QVBoxLayout(self)
        text = QLabel(EXPLANATION)
        text.setWordWrap(True)
        layout.addWidget(text)
        self.list = QListWidget()
        for c in self.options:
            item = QListWidgetItem(c.label)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.list.addItem(item)
        self.list.itemChanged.connect(self._changed)
        layout.addWidget(self.list)
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText("Ensemble: …")
        self.name.textEdited.connect(lambda _t: setattr(self, "_name_edited", True))
        self.name.textChanged.connect(lambda _t: self._update_ok())
        form.addRow("Name in the library", self.name)
        layout.addLayout(form)
        self.hint = QLabel()
        layout.addWidget(self.hint)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Combine")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._name_edited = False
        self._changed()

    def chosen(self) -> list[Candidate]:
        return [c for i, c in enumerate(self.options) if self.list.item(i).checkState() == Qt.CheckState.Checked]

    def set_checked(self, rows: Sequence[int]) -> None:
        for i in range(self.list.count()):
            self.list.item(i).setCheckState(Qt.CheckState.Checked if i in rows else Qt.CheckState.Unchecked)

    def _changed(self, *_args: object) -> None:
        chosen = self.chosen()
        if not self._name_edited:
            self.name.setText(default_name(chosen) if chosen else "")
        self._update_ok()

    def _update_ok(self) -> None:
        n = len(self.chosen())
        ok = n >= 2 and bool(self.name.text().strip())
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)
        self.hint.setText("" if ok else "Choose at least two detectors." if n < 2 else "Give the ensemble a name.")


class EnsembleJob(QObject):
    """``cxrscreen ensemble RUN... --out STAGED --name NAME`` in a child process, then into the library.

    Signals:
        succeeded(LibraryEntry): the ensemble is in the library.
        failed(str): why not, in one line (the engine's own error line when it refused the runs).
    """

    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(self, library: ModelLibrary, chosen: Sequence[Candidate], name: str, staging: Path,
                 command: Sequence[str] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.chosen = list(chosen)
        self.name = name.strip()
        self.staged = Path(staging) / "ensemble.onnx"
        self.engine = EngineProcess(command, parent=self)
        self.engine.finished.connect(self._on_finished)
        self._thread: CallThread | None = None
        self.args = ["ensemble", *[str(c.run_dir) for c in self.chosen], "--out", str(self.staged), "--name", self.name]

    def start(self) -> None:
        self.staged.parent.mkdir(parents=True, exist_ok=True)
        self.staged.unlink(missing_ok=True)  # a file left by an earlier, abandoned attempt
        self.engine.start(self.args)

    def stop(self, wait_ms: int = 10_000) -> None:
        """Stop the engine (SIGTERM: its temporary file is removed, nothing reaches the library) and wait for it."""
        if self.engine.is_running():
            self.engine.terminate()
            self.engine.wait(wait_ms)
        if self._thread is not None:
            self._thread.wait(wait_ms)

    @property
    def running(self) -> bool:
        return self.engine.is_running() or self._thread is not None

    @Slot(object)
    def _on_finished(self, outcome: ProcessOutcome) -> None:
        if outcome.stop_requested:  # stop(): the app is quitting, after its question; nothing to report
            return
        if outcome.status != "done" or not self.staged.is_file():
            lines = [ln for ln in outcome.stderr_tail.splitlines() if ln.strip()]
            error = next((ln for ln in reversed(lines) if "error" in ln), lines[-1] if lines else outcome.message)
            self.failed.emit(error.split("error: ", 1)[-1].strip())
            return
        extra = {"source": "ensemble built in the app",
                 "ensemble": {"members": [{"model_id": c.entry.model_id, "name": c.entry.name, "run_dir": str(c.run_dir)}
                                          for c in self.chosen],
                              "command": shlex.join(self.engine.command + self.args)}}
        library, staged, name = self.library, self.staged, self.name
        self._thread = CallThread(lambda: library.register(staged, extra, None, name), self)
        self._thread.returned.connect(self._registered)
        self._thread.raised.connect(lambda message: self._done_thread(lambda: self.failed.emit(message)))
        self._thread.start()

    def _registered(self, entry: LibraryEntry) -> None:
        try:
            self.staged.parent.rmdir()  # emptied by the move into the library
        except OSError:
            pass
        self._done_thread(lambda: self.succeeded.emit(entry))

    def _done_thread(self, emit) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.wait()
        emit()
