"""The window's model features: New detector (training), the model library, comparing two
detectors, the default detector and the engine command — wired to the main window here, so
that the window itself stays wiring.

:class:`ModelTools` owns the New-detector panel, the library and comparison windows and the
Detector-menu entries for them; it tells the window when to load a detector and listens to
what the window loads (names come from the library, every detector seen this session can be
compared).
"""
from __future__ import annotations

import logging
import shlex
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QInputDialog, QMenu, QMessageBox, QToolBar

from cxrscreen.app.compare import CompareDialog, ModelRef
from cxrscreen.app.engine_process import default_engine_command
from cxrscreen.app.library import LibraryEntry
from cxrscreen.app.library_view import LibraryDialog
from cxrscreen.app.reader_sets import ReaderSets
from cxrscreen.engine.detector import Detector, DetectorError, DetectorMetadata, NormalCalibration

if TYPE_CHECKING:
    from cxrscreen.app.ensemble import EnsembleDialog, EnsembleJob
    from cxrscreen.app.main_window import MainWindow
    from cxrscreen.app.training.panel import NewDetectorPanel

logger = logging.getLogger(__name__)


class ModelTools(QObject):
    """New detector, model library, comparison, default detector, engine command.

    Args:
        window: the main window (its library, settings, workers, records and detector).
    """

    def __init__(self, window: "MainWindow") -> None:
        super().__init__(window)
        self.window = window
        self.panel: "NewDetectorPanel | None" = None
        self.library_dialog: LibraryDialog | None = None
        self.compare_dialog: CompareDialog | None = None
        self.seen: dict[str, DetectorMetadata] = {}  # every detector loaded this session
        self._score_after_load: str | None = None
        self.new_action = QAction("New detector…", window)
        self.new_action.setIconText("Train")
        self.new_action.setToolTip("Train a detector for this site from a known-normal and an unlabeled folder")
        self.new_action.triggered.connect(self.open_panel)
        self.library_action = QAction("Model library…", window)
        self.library_action.triggered.connect(self.open_library)
        self.add_action = QAction("Add current detector to library", window)
        self.add_action.triggered.connect(self.add_current_to_library)
        self.adapt_action = QAction("Adapt to this worklist's confirmed normals…", window)
        self.adapt_action.setToolTip("Retrain the current detector with the reader's confirmed normals of this worklist "
                                     "added to its known normals (a new batch, machine or site)")
        self.adapt_action.triggered.connect(self.adapt_to_worklist)
        self.ensemble_action = QAction("Combine detectors into an ensemble…", window)
        self.ensemble_action.setToolTip("One detector from several trained in this app on the same known normals: "
                                        "the mean of their standardised scores")
        self.ensemble_action.triggered.connect(self.combine_detectors)
        self.ensemble_job: "EnsembleJob | None" = None
        self.compare_action = QAction("Compare two detectors…", window)
        self.compare_action.triggered.connect(self.open_compare)
        self.engine_action = QAction("Engine command…", window)
        self.engine_action.triggered.connect(self.edit_engine_command)
        self.library_menu: QMenu | None = None
        window.reading.sets_for_training.connect(self.train_on_reader_sets)

    # ================================================================== menus
    def fill_menu(self, menu: QMenu) -> None:
        """Add the model entries to the Detector menu."""
        menu.addAction(self.new_action)
        menu.addAction(self.library_action)
        self.library_menu = menu.addMenu("Load from library")
        menu.addAction(self.add_action)
        menu.addAction(self.adapt_action)
        menu.addAction(self.ensemble_action)
        menu.addAction(self.compare_action)
        self.refresh_library_menu()

    def fill_settings(self, menu: QMenu) -> None:
        """Add the engine command to a menu."""
        menu.addAction(self.engine_action)

    def add_to_toolbar(self, toolbar: QToolBar) -> None:
        toolbar.addAction(self.new_action)

    def refresh_library_menu(self) -> None:
        """The library submenu lists the library's detectors (★ the default)."""
        if self.library_menu is None:
            return
        self.library_menu.clear()
        entries = self.window.library.entries()
        for e in entries:
            star = "★ " if e.is_default else ""
            act = self.library_menu.addAction(f"{star}{e.name}  ({e.model_id[:8]}, {e.card.get('method', '?')})")
            act.triggered.connect(lambda _c=False, path=e.path: self.window.load_detector(path))
        if not entries:
            act = self.library_menu.addAction(f"(empty: {self.window.library.root})")
            act.setEnabled(False)
        if self.library_dialog is not None:
            self.library_dialog.active_model_id = self._active_id()
            self.library_dialog.refresh()

    # ================================================================== the window's detector
    def detector_loaded(self, detector: Detector) -> None:
        """The window loaded a detector: remember it; score the worklist if that was asked."""
        self.seen[detector.meta.model_id] = detector.meta
        if self.library_dialog is not None:
            self.library_dialog.active_model_id = detector.meta.model_id
            self.library_dialog.refresh()
        if self._score_after_load == detector.meta.model_id:
            self._score_after_load = None
            if not self.window.auto_score_action.isChecked():
                self.window.score_unscored(quiet=True)

    def load_default_if_idle(self) -> None:
        """At start-up: load the library's default detector when no detector is loaded or loading."""
        w = self.window
        if w.detector is not None or w._loading_detector is not None or w._closing:
            return
        entry = w.library.default()
        if entry is not None:
            w.load_detector(entry.path)

    def use(self, entry: LibraryEntry) -> None:
        """Load a library detector and score the worklist with it (earlier scores are kept)."""
        self._score_after_load = entry.model_id
        self.window.load_detector(entry.path)
        self.window.raise_()
        self.window.activateWindow()

    def _active_id(self) -> str | None:
        return self.window.detector.meta.model_id if self.window.detector is not None else None

    def add_current_to_library(self) -> None:
        """Copy the loaded detector into the model library."""
        w = self.window
        if w.detector_path is None:
            w.report_error("No detector", "Load a detector first.")
            return
        try:
            entry = w.library.add(w.detector_path)
        except (DetectorError, OSError) as exc:
            w.report_error("Cannot add to the library", str(exc))
            return
        self.refresh_library_menu()
        w.statusBar().showMessage(entry.renamed_note or f"Added {entry.name} to the model library ({w.library.root})", 8000)

    # ================================================================== windows
    def open_panel(self) -> "NewDetectorPanel":
        """Show the New-detector panel (created on first use)."""
        if self.panel is None:
            from cxrscreen.app.training.panel import NewDetectorPanel

            w = self.window
            self.panel = NewDetectorPanel(w.library, w.settings, w.workers, parent=w)
            self.panel.model_registered.connect(self._on_registered)
            self.panel.use_model.connect(self.use)
            self.panel.show_library.connect(self.open_library)
            self.panel.job_running.connect(self._on_job_running)
        self.panel.show()
        self.panel.raise_()
        self.panel.activateWindow()
        return self.panel

    def train_on_reader_sets(self, sets: ReaderSets) -> "NewDetectorPanel":
        """Open the New-detector panel on the reader's confirmed cases (its checks apply)."""
        panel = self.open_panel()
        panel.use_reader_sets({role: path for role, path in sets.paths.items() if sets.counts[role]})
        return panel

    def adapt_to_worklist(self, confirm: bool = True) -> "NewDetectorPanel | None":
        """Set up the adaptation of the current detector to this worklist's batch (:mod:`app.adaptation`):
        its in-app training again, with the reader's confirmed normals of the worklist added to its
        known normals, in the New-detector panel (nothing trains until the reader presses Train).

        Args:
            confirm: ask first, with what adapting does and when it would hurt (tests: False).
        """
        from cxrscreen.app.adaptation import AdaptationError, explanation, training_job, write_adaptation_folder
        from cxrscreen.app.controllers.reading import READER_SETS_DIR
        from cxrscreen.app.training.panel import default_runs_root

        w = self.window
        model_id = self._active_id()
        entry = w.library.find(model_id) if model_id is not None else None
        if entry is None:
            w.report_error("Cannot adapt", "Load a detector from the model library first: adapting retrains the "
                                           "detector that is in use.")
            return None
        if self.panel is not None and self.panel.busy:
            w.report_error("Cannot adapt", "The New-detector window is training a detector: adapt when it has "
                                           "finished (or stop it there).")
            return None
        runs_root = self.panel.runs_root if self.panel is not None else default_runs_root(w.library)
        record = training_job(runs_root, entry.model_id)
        if record is None:
            w.report_error("Cannot adapt", f"{entry.name} was not trained in this app (or its training record is "
                                           "gone), so its folders are not known. To adapt it by hand: export the "
                                           "confirmed cases (Reading menu) and train a new detector with them added "
                                           "to its known-normal folder; keep its unlabeled folder as it was.")
            return None
        spec = record.spec
        confirmed = w.reading.session.marked("normal")
        known = spec.counts.get("normal", {}).get("images") if isinstance(spec.counts.get("normal"), dict) else None
        if confirm:
            answer = QMessageBox.question(
                w, "Adapt to this worklist", explanation(len(confirmed), known, entry.name) + "\n\nSet it up now?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Yes:
                return None
        out = w.settings.data_file(READER_SETS_DIR) / time.strftime(f"adapt-%Y%m%d-%H%M%S-{entry.model_id[:8]}")
        try:
            folder = write_adaptation_folder(spec.normal, confirmed, out, w.reading.session.reader)
        except (AdaptationError, OSError, ValueError) as exc:
            w.report_error("Cannot adapt", str(exc))
            return None
        panel = self.open_panel()
        try:
            panel.adapt_from(spec, folder, w.library.unique_name(f"{entry.name} · adapted"),
                             f"Adapting {entry.name}: its settings and folders, with {len(confirmed)} confirmed "
                             f"normals of this worklist added to its known normals ({folder}). Press Train to "
                             "retrain; the detector in use stays as it is.")
        except ValueError as exc:
            w.report_error("Cannot adapt", str(exc))
            return None
        return panel

    def combine_detectors(self, dialog: "EnsembleDialog | None" = None) -> "EnsembleJob | None":
        """Detector ▸ Combine detectors…: choose library detectors trained here, build their ensemble
        with the engine (``cxrscreen ensemble``, a child process) and add it to the library.

        Args:
            dialog: a dialog already filled in (tests); None asks the reader.
        """
        from cxrscreen.app.ensemble import EnsembleDialog, EnsembleJob, candidates

        w = self.window
        if self.ensemble_job is not None and self.ensemble_job.running:
            w.report_error("Cannot combine", "An ensemble is being built: wait until it is in the library.")
            return None
        options = candidates(w.library)
        if len(options) < 2:
            w.report_error("Cannot combine", f"Combining needs at least two detectors trained in this app whose run "
                                             f"folders still exist; the library has {len(options)}. Train another "
                                             "method on the same known-normal folder first (Detector ▸ New detector).")
            return None
        if dialog is None:
            dialog = EnsembleDialog(options, w)
            if dialog.exec() != EnsembleDialog.DialogCode.Accepted:
                return None
        chosen, name = dialog.chosen(), w.library.unique_name(dialog.name.text().strip())
        staging = w.settings.data_file("ensembles") / time.strftime("%Y%m%d-%H%M%S")
        job = EnsembleJob(w.library, chosen, name, staging, w.settings.engine_command, self)
        job.succeeded.connect(self._ensemble_registered)
        job.failed.connect(lambda message: w.report_error("The detectors cannot be combined", message))
        self.ensemble_job = job
        w.statusBar().showMessage(f"Building the ensemble “{name}” of {len(chosen)} detectors…")
        job.start()
        return job

    def _ensemble_registered(self, entry: LibraryEntry) -> None:
        self.refresh_library_menu()
        self.window.statusBar().showMessage(f"“{entry.name}” is in the model library (Detector ▸ Load from library)", 15000)

    def open_library(self) -> LibraryDialog:
        """Show the model library window."""
        if self.library_dialog is None:
            d = LibraryDialog(self.window.library, self._active_id(), self.window)
            d.load_requested.connect(lambda path: self.use(self._entry_for(path)) if self._entry_for(path)
                                     else self.window.load_detector(path))
            d.changed.connect(self.refresh_library_menu)
            d.compare_requested.connect(self.open_compare)
            self.library_dialog = d
        else:
            self.library_dialog.active_model_id = self._active_id()
            self.library_dialog.refresh()
        self.library_dialog.show()
        self.library_dialog.raise_()
        return self.library_dialog

    def _entry_for(self, path: Path) -> LibraryEntry | None:
        return next((e for e in self.window.library.entries() if e.path == Path(path)), None)

    def comparable_models(self) -> dict[str, ModelRef]:
        """Detectors with scores in the worklist, with names and calibrations where known."""
        ids: set[str] = set()
        for rec in self.window.model.records():
            ids.update(rec.scores)
        library = {e.model_id: e for e in self.window.library.entries()}
        out: dict[str, ModelRef] = {}
        for mid in sorted(ids):
            meta = self.seen.get(mid)
            entry = library.get(mid)
            if entry is not None:
                cal = NormalCalibration.from_dict(entry.card["calibration"]) if "calibration" in entry.card else None
                out[mid] = ModelRef(mid, entry.name, cal)
            elif meta is not None:
                out[mid] = ModelRef(mid, meta.name or mid[:8], meta.calibration)
            else:
                out[mid] = ModelRef(mid, mid[:8], None)
        return out

    def open_compare(self) -> CompareDialog | None:
        """Show the scatter of two detectors' scores over the worklist."""
        models = self.comparable_models()
        if len(models) < 2:
            self.window.report_error("Nothing to compare yet",
                                     "The worklist has scores from fewer than two detectors. Score it with one "
                                     "detector, load another (for example a new one from the library) and let it "
                                     "score: every detector's scores are kept.")
            return None
        if self.compare_dialog is not None:
            self.compare_dialog.close()
            self.compare_dialog.deleteLater()
        d = CompareDialog(self.window.model.records, models, self.window.operating, self._active_id(), self.window)
        d.case_chosen.connect(lambda path: self.window.worklist.select_path(path))
        d.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        d.destroyed.connect(lambda *_: setattr(self, "compare_dialog", None))
        self.compare_dialog = d
        d.show()
        return d

    def edit_engine_command(self, text: str | None = None) -> bool:
        """Change the command that runs the engine (empty: this Python's ``-m cxrscreen.engine``)."""
        w = self.window
        current = shlex.join(w.settings.engine_command)
        if text is None:
            text, ok = QInputDialog.getText(w, "Engine command",
                                            "Command that runs the cxrscreen engine (scoring and training run in it).\n"
                                            f"Empty: the default, {shlex.join(default_engine_command())}", text=current)
            if not ok:
                return False
        text = text.strip()
        if not text:
            w.settings.set_engine_command(None)
            w.statusBar().showMessage("Engine command reset to the default.", 6000)
            self._engine_changed()
            return True
        try:
            parts = shlex.split(text)
        except ValueError as exc:
            w.report_error("Engine command not valid", f"{text}\n\n{exc}")
            return False
        if not parts or (shutil.which(parts[0]) is None and not Path(parts[0]).is_file()):
            w.report_error("Engine command not valid", f"{parts[0] if parts else text!r} is not a program found here.")
            return False
        w.settings.set_engine_command(parts)
        w.statusBar().showMessage(f"Engine command: {shlex.join(parts)}", 8000)
        self._engine_changed()
        return True

    def _engine_changed(self) -> None:
        """Another engine may have other methods: the panel asks it (a running job keeps its engine)."""
        if self.panel is not None:
            self.panel.reload_methods()

    # ================================================================== training
    def _on_registered(self, entry: LibraryEntry) -> None:
        self.refresh_library_menu()
        self.window.statusBar().showMessage(f"New detector “{entry.name}” is in the model library.", 10000)

    def _on_job_running(self, running: bool) -> None:
        self.new_action.setText("New detector… (training)" if running else "New detector…")

    def confirm_close(self) -> bool:
        """Ask before closing the window while a detector trains (it stops, resumable later).

        When the window may close, the panel, library and comparison windows close with it (a
        window left open would keep the application running).
        """
        if self.panel is not None and self.panel.busy and not self._ask_stop_training():
            return False
        job = self.ensemble_job
        if job is not None and job.running:
            answer = QMessageBox.question(
                self.window, "Ensemble being built",
                "An ensemble detector is being built (about two minutes).\n\nQuit anyway? It stops and nothing is "
                "added to the model library; its members stay as they are, and Combine builds it again.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return False
            job.stop()
        for w in (self.panel, self.library_dialog, self.compare_dialog):
            if w is not None:
                w.hide()
        return True

    def _ask_stop_training(self) -> bool:
        assert self.panel is not None
        answer = QMessageBox.question(
            self.window, "Training in progress",
            f"A detector is training: {self.panel.describe_job()}.\n\nQuit anyway? The training stops (after "
            "the current epoch when possible, with a checkpoint); Detector ▸ New detector… offers to resume it "
            "next time. Nothing unfinished is added to the model library.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def start(self) -> None:
        """After the window is built: load the default detector if nothing else is loading."""
        QTimer.singleShot(0, self.load_default_if_idle)
