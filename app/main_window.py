"""The main window: worklist (left), viewer (centre), result and controls (right), status bar.

It owns the state objects and the worker threads and wires them together; the pieces it shows
live in their own modules. Long work always runs in a worker (indexing, decoding, thumbnails,
scoring, loading a detector); the window only reacts to their signals. Closing the window
stops every worker and closes only once all of them have ended.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterable

from PySide6.QtCore import QSignalBlocker, Qt, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QGroupBox,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from cxrscreen.app.case_loading import LoadedCase
from cxrscreen.app.controllers.calibration import CalibrationController
from cxrscreen.app.controllers.indexing import IndexingController
from cxrscreen.app.controllers.reading import ReadingController
from cxrscreen.app.controllers.studies import StudiesController
from cxrscreen.app.controllers.scoring import ScoringController
from cxrscreen.app.demo import (DEMO_ABNORMAL, DEMO_NORMAL, DEMO_SIZE, DemoDetectorProcess, DemoStudyThread, demo_detector_file,
                      demo_root)
from cxrscreen.app.detector_card import DetectorCardDialog
from cxrscreen.app.controllers.exporting import export_csv
from cxrscreen.app.gc_schedule import CollectorSchedule
from cxrscreen.app.help import HelpDialog
from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.model_tools import ModelTools
from cxrscreen.app.panels.case_info import CaseInfoPanel
from cxrscreen.app.panels.heatmap import HeatmapControl
from cxrscreen.app.panels.operating_point import OperatingPointControl
from cxrscreen.app.panels.window import WindowControl
from cxrscreen.app.about import show_about
from cxrscreen.app.add_paths_dialog import choose_paths_to_add
from cxrscreen.app.records import CaseScore
from cxrscreen.app.status_bar import ElidingStatusBar, show_provider
from cxrscreen.app.settings import PROVIDERS, AppSettings
from cxrscreen.app.shortcuts import SHORTCUTS
from cxrscreen.app.state import OperatingPoint, PrivacyState, ViewerState
from cxrscreen.app.viewer.view import RadiographView
from cxrscreen.app.workers.base import WorkerSet
from cxrscreen.app.workers.decoding import DecodeThread
from cxrscreen.app.workers.scoring import DetectorLoadThread
from cxrscreen.app.worklist.model import Column, WorklistModel
from cxrscreen.app.worklist.panel import WorklistPanel
from cxrscreen.app.worklist.thumbnails import ThumbnailCache
from cxrscreen.engine.detector import Detector, DetectorError, ProviderChoice
from cxrscreen.engine.scoring import ScoreResult

logger = logging.getLogger(__name__)
CASE_CACHE = 6  # decoded cases kept (the current one and prefetched neighbours)
# Every call from Qt into Python (painting a cell, a slot) must take the GIL from the worker
# threads; with CPython's default 5 ms switch interval that wait dominates repaints while
# scoring. 0.5 ms keeps the event loop's stalls short at a small cost in worker throughput
# (bench/bench_app_stall.py).
GUI_SWITCH_INTERVAL_S = 0.0005
# closable, so that View ▸ Worklist / Case (their toggle actions) can hide and show them
_DOCK_FEATURES = (QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                  | QDockWidget.DockWidgetFeature.DockWidgetClosable)


class MainWindow(QMainWindow):
    """The cxrscreen workstation window.

    Args:
        settings: persistent preferences.
        library: the model library (default: the user's).
        batch_size: images per scoring batch.
        decode_workers: decoding threads used by scoring (default: one per core but one).
        demo_dir: where the demo study and detector go (default: the user's cache folder).
        demo_study: normal and abnormal cases and image side of the demo study.
    """

    def __init__(self, settings: AppSettings, library: ModelLibrary | None = None, batch_size: int = 8,
                 decode_workers: int | None = None, demo_dir: Path | None = None,
                 demo_study: tuple[int, int, int] = (DEMO_NORMAL, DEMO_ABNORMAL, DEMO_SIZE)) -> None:
        if sys.getswitchinterval() > GUI_SWITCH_INTERVAL_S:
            sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
        super().__init__()
        self.settings = settings
        self.library = library or ModelLibrary()
        self.demo_dir = demo_dir or demo_root()
        self.demo_study = demo_study
        cores = os.cpu_count() or 2
        self.batch_size = batch_size
        # leave a core to the GUI thread: decoding and inference share the others
        self.decode_workers = decode_workers if decode_workers is not None else max(1, min(4, cores - 1))
        self.inference_threads = max(1, cores - 1)
        self.key = settings.pseudonym_key()
        self.setWindowTitle("cxrscreen")
        self.setAcceptDrops(True)
        self.resize(1500, 920)
        # ---------------------------------------------------------------- state
        self.operating = OperatingPoint(settings.operating_mode, settings.operating_specificity,
                                        settings.operating_score, parent=self)
        self.viewer_state = ViewerState(self)
        self.viewer_state.set_heatmap_visible(settings.heatmap_visible)
        self.viewer_state.set_heatmap_opacity(settings.heatmap_opacity)
        self.viewer_state.set_colormap(settings.colormap)
        self.viewer_state.set_contour_visible(settings.contour_visible)
        self.viewer_state.set_heatmap_floor(settings.heatmap_floor)
        self.privacy = PrivacyState(self)
        self.detector: Detector | None = None
        self.detector_path: Path | None = None
        self.last_error: str | None = None  # the last error reported to the user (for tests)
        self.roots: list[Path] = []
        self._cases: OrderedDict[Path, LoadedCase] = OrderedDict()
        self._request_id = 0
        self._current: Path | None = None
        self.index_in_process = True  # header parsing in an engine process (False: in a thread of the app)
        self._loading_detector: DetectorLoadThread | None = None
        self._demo_process: DemoDetectorProcess | None = None
        self._closing = False
        self._close_ready = False
        self._first_image_time: float | None = None
        # ---------------------------------------------------------------- workers
        self.workers = WorkerSet(self)
        self.view_decoder = DecodeThread()
        self.thumb_decoder = DecodeThread(max_prefetch=1)
        self.thumbnails = ThumbnailCache(self.thumb_decoder.request_thumbnail, parent=self)
        self.view_decoder.case_loaded.connect(self._on_case_loaded)
        self.view_decoder.case_failed.connect(self._on_case_failed)
        self.thumb_decoder.thumbnail_ready.connect(self.thumbnails.on_ready)
        self.thumb_decoder.thumbnail_failed.connect(self.thumbnails.on_failed)
        self.workers.start(self.view_decoder)
        self.workers.start(self.thumb_decoder)
        # ---------------------------------------------------------------- widgets
        self.model = WorklistModel(self.key, self.thumbnails.get, self)
        self.thumbnails.changed.connect(self.model.thumbnail_changed)
        self.worklist = WorklistPanel(self.model)
        self.viewer = RadiographView(self.viewer_state)
        self.case_panel = CaseInfoPanel(self.privacy, self.key)
        self.operating_control = OperatingPointControl(self.operating)
        self.window_control = WindowControl(self.viewer_state)
        self.heatmap_control = HeatmapControl(self.viewer_state)
        self.welcome = self._build_welcome()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.viewer)
        self.setCentralWidget(self.stack)
        self._build_docks()
        self._build_status_bar()
        self.scoring = ScoringController(self)  # app/controllers/scoring.py
        self.indexing = IndexingController(self)  # app/controllers/indexing.py
        self.reading = ReadingController(self.model, self.worklist, self.viewer, settings, self.counts_label,
                                         self.statusBar().showMessage, self)  # reading state, study database
        # still listing or scoring, or new scores waiting for the next re-sort (REORDER_MS)
        self.reading.settling = lambda: self.is_scoring or self.indexing_active or self.model.reorder_pending
        self.studies = StudiesController(self)  # DICOM studies, lead images, earlier studies side by side
        self.actions: dict[str, QAction] = {}
        self._build_actions()
        self.model_tools = ModelTools(self)  # New detector, model library, comparison, engine command
        self.calibration = CalibrationController(self)  # drift banner, site calibrations (app/controllers/calibration.py)
        self._build_menus_and_toolbar()
        # ---------------------------------------------------------------- wiring
        self.worklist.current_changed.connect(self._on_current_changed)
        self.operating.changed.connect(self._on_operating_point)
        self.operating.changed.connect(self.calibration.scores_changed)  # the promise checked changed
        self.model.counts_changed.connect(self.calibration.scores_changed)  # scores from the database, too
        self.viewer_state.overlay_changed.connect(self._sync_checkable_actions)
        self.viewer_state.window_changed.connect(self._sync_checkable_actions)
        self.privacy.changed.connect(self.model.set_show_identifiers)
        self.privacy.changed.connect(self._sync_checkable_actions)
        self.worklist.flagged_box.toggled.connect(self._sync_checkable_actions)
        self.worklist.unread_box.toggled.connect(self._sync_checkable_actions)
        geometry, state = settings.window_geometry(), settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        self._layout_restored = state is not None and self.restoreState(state)
        self.reading.update_counts()
        self._sync_checkable_actions()
        self.model_tools.start()
        # the garbage collector's full passes only when nothing runs (app/gc_schedule.py)
        self.gc_schedule = CollectorSchedule(lambda: self.indexing_active or self.is_scoring, parent=self)
        self.gc_schedule.start()
        if self.reading.db_error:
            self.report_error("Study database not used", self.reading.db_error)

    # ================================================================== layout
    def _build_welcome(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        layout.addStretch(1)
        title = QLabel("<h2>cxrscreen</h2><p>Screens chest radiographs for anomalies with a detector trained "
                       "on normal images. A flag asks for a look; it is not a diagnosis.</p>")
        title.setWordWrap(True)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(title)
        for text, slot in (("Open folder…  (Ctrl+O)", self.choose_folder),
                           ("Open demo study  (Ctrl+Shift+D)", self.open_demo),
                           ("Load detector…  (Ctrl+L)", self.choose_detector)):
            b = QPushButton(text)
            b.setMinimumHeight(36)
            b.clicked.connect(slot)
            layout.addWidget(b, 0, Qt.AlignmentFlag.AlignHCenter)
        self.recent_list = QListWidget()
        self.recent_list.setMaximumWidth(600)
        self.recent_list.setMaximumHeight(160)
        self.recent_list.itemActivated.connect(lambda item: self.open_paths([Path(item.text())]))
        self.recent_label = QLabel("Recent folders (double-click to open):")
        layout.addWidget(self.recent_label, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.recent_list, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(2)
        self._refresh_recent()
        return w

    def _refresh_recent(self) -> None:
        self.recent_list.clear()
        recent = [p for p in self.settings.recent_folders if p.is_dir()]
        for p in recent:
            self.recent_list.addItem(str(p))
        self.recent_list.setVisible(bool(recent))
        self.recent_label.setVisible(bool(recent))

    def _build_docks(self) -> None:
        left = QDockWidget("Worklist", self)
        left.setObjectName("worklist_dock")
        left.setWidget(self.worklist)
        left.setFeatures(_DOCK_FEATURES)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, left)
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(6, 6, 6, 6)
        for title, widget, stretch in (("Result", self.case_panel.result_widget, 0),
                                       ("Operating point", self.operating_control, 0),
                                       ("Window / level", self.window_control, 0),
                                       ("Heatmap", self.heatmap_control, 0),
                                       ("Header", self.case_panel.tags_widget, 1)):
            box = QGroupBox(title)
            inner = QVBoxLayout(box)
            inner.setContentsMargins(6, 6, 6, 6)
            inner.addWidget(widget)
            layout.addWidget(box, stretch)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(panel)
        right = QDockWidget("Case", self)
        right.setObjectName("case_dock")
        right.setWidget(scroll)
        right.setFeatures(_DOCK_FEATURES)
        right.setMinimumWidth(330)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, right)
        self.docks = {"worklist": left, "case": right}

    def _build_status_bar(self) -> None:
        bar = ElidingStatusBar(self)
        self.setStatusBar(bar)
        self.counts_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.progress_label = QLabel()
        self.progress_label.hide()
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Cancel scoring (Esc)")
        self.cancel_button.clicked.connect(self.cancel_scoring)
        self.cancel_button.hide()
        self.provider_label = QLabel("no detector")
        self.provider_label.setToolTip("Where the detector runs (onnxruntime execution provider)")
        for w in (self.counts_label, self.progress_label, self.progress, self.cancel_button, self.provider_label):
            bar.addPermanentWidget(w)

    def _build_actions(self) -> None:
        slots: dict[str, Callable[[], object]] = {
            "open_folder": self.choose_folder, "add_files": self.choose_files, "open_demo": self.open_demo,
            "export_csv": self.export_csv, "quit": self.close,
            "focus_filter": self._focus_filter,
            "fit": self.viewer.fit, "one_to_one": self.viewer.one_to_one,
            "zoom_in": lambda: self.viewer.zoom(1.25), "zoom_out": lambda: self.viewer.zoom(0.8),
            "auto_window": self.window_control.auto, "full_window": self.window_control.full_range,
            "next_preset": self.window_control.next_preset, "reset_window": self.window_control.reset,
            "opacity_up": lambda: self._nudge_opacity(0.1), "opacity_down": lambda: self._nudge_opacity(-0.1),
            "load_detector": self.choose_detector, "score": self.score_unscored, "cancel": self.cancel_scoring,
            "detector_card": self.show_detector_card, "help": self.show_help,
            "specificity_90": lambda: self.operating.set_specificity(0.90),
            "specificity_95": lambda: self.operating.set_specificity(0.95),
            "specificity_99": lambda: self.operating.set_specificity(0.99),
            **self.reading.action_slots(), **self.studies.action_slots(),  # J/K/N act on studies in the Studies tab
        }
        toggles: dict[str, Callable[[bool], object]] = {
            "flagged_only": self.worklist.flagged_box.setChecked,
            "unread_only": self.reading.set_unread_only,
            "show_identifiers": self.privacy.set_show_identifiers,
            "invert": self.viewer_state.set_invert,
            "toggle_heatmap": self.viewer_state.set_heatmap_visible,
            "toggle_contour": self.viewer_state.set_contour_visible,
        }
        for spec in SHORTCUTS:
            action = QAction(spec.text, self)
            action.setObjectName(spec.action)
            action.setShortcuts([QKeySequence(k) for k in spec.keys])
            action.setToolTip(f"{spec.text.rstrip('…')} ({QKeySequence(spec.keys[0]).toString(QKeySequence.SequenceFormat.NativeText)})")
            if spec.action in toggles:
                action.setCheckable(True)
                action.toggled.connect(toggles[spec.action])
            else:
                action.triggered.connect(self._slot_without_result(slots[spec.action]))
            self.addAction(action)  # shortcuts work even when the menu bar is hidden
            self.actions[spec.action] = action
        self.actions["cancel"].setEnabled(False)
        self.auto_score_action = QAction("Score new files automatically", self)
        self.auto_score_action.setCheckable(True)
        self.auto_score_action.setChecked(self.settings.auto_score)
        self.auto_score_action.toggled.connect(self.settings.set_auto_score)

    @staticmethod
    def _slot_without_result(slot: Callable[[], object]) -> Callable[[], None]:
        """Wrap a callable so the connected slot returns None (PySide mis-counts returned bools)."""
        def run(*_args: object) -> None:
            slot()
        return run

    def _build_menus_and_toolbar(self) -> None:
        a = self.actions
        mb = self.menuBar()
        file_menu = mb.addMenu("&File")
        for name in ("open_folder", "add_files"):
            file_menu.addAction(a[name])
        self.recent_menu = file_menu.addMenu("Recent folders")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addAction(a["open_demo"])
        file_menu.addSeparator()
        file_menu.addAction(a["export_csv"])
        file_menu.addSeparator()
        file_menu.addAction(a["quit"])
        wl = mb.addMenu("&Worklist")
        for name in ("next_case", "previous_case", "next_flagged", "resort", "focus_filter", "flagged_only",
                     "unread_only", "show_identifiers", "compare_earlier"):
            wl.addAction(a[name])
        reading = mb.addMenu("&Reading")
        for name in ("toggle_read", "mark_agree", "mark_disagree", "mark_normal", "mark_abnormal", "comment"):
            reading.addAction(a[name])
        reading.addSeparator()
        reading.addActions(self.reading.menu_actions())
        view = mb.addMenu("&View")
        for name in ("fit", "one_to_one", "zoom_in", "zoom_out", None, "invert", "auto_window", "full_window",
                     "next_preset", "reset_window", None, "toggle_heatmap", "toggle_contour", "opacity_up",
                     "opacity_down"):
            if name is None:
                view.addSeparator()
            else:
                view.addAction(a[name])
        view.addSeparator()
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        det = mb.addMenu("&Detector")
        det.addAction(a["load_detector"])
        self.model_tools.fill_menu(det)
        det.addAction(a["detector_card"])
        self.calibration.fill_menu(det.addMenu("Calibration"))
        det.addSeparator()
        det.addAction(a["score"])
        det.addAction(a["cancel"])
        det.addAction(self.auto_score_action)
        det.addSeparator()
        for name in ("specificity_90", "specificity_95", "specificity_99"):
            det.addAction(a[name])
        provider_menu = det.addMenu("Run on")
        group = QActionGroup(self)
        self.provider_actions: dict[str, QAction] = {}
        for p, text in (("auto", "GPU (CUDA) when available, else CPU"), ("cuda", "GPU (CUDA) only"), ("cpu", "CPU only")):
            act = QAction(text, self, checkable=True)
            act.setChecked(self.settings.provider == p)
            act.triggered.connect(lambda _c=False, prov=p: self.set_provider(prov))  # type: ignore[arg-type]
            group.addAction(act)
            provider_menu.addAction(act)
            self.provider_actions[p] = act
        self.model_tools.fill_settings(det)
        help_menu = mb.addMenu("&Help")
        help_menu.addAction(a["help"])
        help_menu.addAction("About cxrscreen…", lambda: show_about(self))
        short = {"open_folder": "Open", "open_demo": "Demo", "load_detector": "Detector", "score": "Score",
                 "cancel": "Cancel", "toggle_heatmap": "Heatmap", "toggle_contour": "Contour", "invert": "Invert",
                 "fit": "Fit", "one_to_one": "1:1", "export_csv": "Export"}
        for name, text in short.items():
            a[name].setIconText(text)
        tb = self.addToolBar("Main")
        tb.setObjectName("main_toolbar")
        for name in ("open_folder", "open_demo", "load_detector", "score", "cancel", None, "toggle_heatmap",
                     "toggle_contour", "invert", "fit", "one_to_one", None, "export_csv"):
            if name is None:
                tb.addSeparator()
            else:
                tb.addAction(a[name])
        self.model_tools.add_to_toolbar(tb)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent_folders:
            act = self.recent_menu.addAction(str(p))
            act.setEnabled(p.is_dir())
            act.triggered.connect(lambda _c=False, path=p: self.open_paths([path]))

    # ================================================================== opening files
    def choose_folder(self) -> None:
        """Ask for a folder and open it (replacing the worklist)."""
        start = str(self.settings.last_folder or Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open folder of radiographs", start)
        if folder:
            self.open_paths([Path(folder)])

    def choose_files(self) -> None:
        """Ask for files and/or folders and add them to the worklist."""
        paths = choose_paths_to_add(self, self.settings.last_folder or Path.home())
        if paths:
            self.open_paths(paths, replace=False)

    def open_paths(self, paths: Iterable[Path], replace: bool = True) -> None:
        """Index folders and/or files into the worklist (header only, progressively).

        Args:
            paths: folders (recursive) and files.
            replace: start a new worklist (else add to the current one).
        """
        paths = [Path(p) for p in paths]
        if not paths or self._closing:
            return
        if replace or not self.model.rowCount():
            self.indexing.reset()
            self.scoring.stop()
            self.model.clear(paths)
            self.thumbnails.clear()
            self.view_decoder.clear()
            self.thumb_decoder.clear()
            self._cases.clear()
            self._current = None
            self.scoring.auto_paused = False
            self.reading.new_worklist()
            self.roots = list(paths)
            self.viewer.clear("Indexing…")
            self.case_panel.set_meta(None)
            self.case_panel.set_result(None, None, None)
        else:
            self.model.add_roots(paths)
            self.roots += paths
        folder = next((p for p in paths if p.is_dir()), paths[0].parent)
        self.settings.set_last_folder(folder)
        self._refresh_recent()
        self.setWindowTitle(f"cxrscreen — {folder}")
        self.stack.setCurrentWidget(self.viewer)
        self._first_image_time = None
        self.statusBar().showMessage(f"Opening {', '.join(p.name or str(p) for p in paths)}…")
        self.indexing.open(paths)

    @property
    def indexing_active(self) -> bool:
        """Whether files may still be added to the worklist (listing, scanning, or inserting found files)."""
        return self.indexing.active

    # ================================================================== the current case
    @Slot(object)
    def _on_current_changed(self, path: Path | None) -> None:
        self._current = path
        if path is None:
            self.viewer.clear("")
            self.case_panel.set_meta(None)
            self.case_panel.set_result(None, None, None)
            return
        row = self.model.row_of(path)
        if row is None:
            return
        rec = self.model.record(row)
        self.case_panel.set_meta(rec.meta, rec.error)
        self.show_result(path)
        if not rec.readable:
            self.viewer.clear(f"Cannot read {path.name}:\n{rec.error}")
            self.window_control.set_image(None)
            return
        cached = self._cases.get(path)
        if cached is not None and self._analysis_current(cached):
            self._cases.move_to_end(path)
            self._display(cached)
            return
        self.viewer.clear(f"Loading {path.name}…")
        self.window_control.set_image(None)
        self._request_id += 1
        self.view_decoder.request_case(path, self.detector, self._request_id)

    def _analysis_current(self, case: LoadedCase) -> bool:
        """Whether a decoded case carries the active detector's analysis (or needs none)."""
        if self.detector is None:
            return case.analysis is None
        if case.out_of_scope is not None:
            return case.out_of_scope[0] == self.detector.meta.model_id
        return case.analysis is not None and case.analysis.model_id == self.detector.meta.model_id

    @Slot(object, int)
    def _on_case_loaded(self, case: LoadedCase, request_id: int) -> None:
        self._cases[case.path] = case
        self._cases.move_to_end(case.path)
        while len(self._cases) > CASE_CACHE:
            self._cases.popitem(last=False)
        self.thumbnails.put(case.path, case.thumbnail)
        if case.analysis is not None and self.detector is not None and case.analysis.model_id == self.detector.meta.model_id:
            row = self.model.row_of(case.path)
            if row is not None and case.analysis.model_id not in self.model.record(row).scores:
                self.model.set_score(case.path, case.analysis.model_id,
                                     CaseScore(case.analysis.score, case.analysis.percentile,
                                               case.analysis.acquisition))
            self.reading.case_analysed(case.path, case.analysis.model_id, case.analysis.levels)
        if case.out_of_scope is not None:
            self.model.apply_results(case.out_of_scope[0], [ScoreResult(case.path, None, None, out_of_scope=case.out_of_scope[1])])
            self.statusBar().showMessage(f"{case.path.name}: out of scope: {case.out_of_scope[1]}", 8000)
        if case.analysis_error:
            self.statusBar().showMessage(f"{case.path.name}: heatmap unavailable ({case.analysis_error})", 8000)
        if case.path == self._current and self._analysis_current(case):
            self._display(case)
            self._prefetch()

    @Slot(object, str, int)
    def _on_case_failed(self, path: Path, reason: str, request_id: int) -> None:
        self.model.mark_unreadable(path, reason)
        if path == self._current:
            self.viewer.clear(f"Cannot read {path.name}:\n{reason}")
            row = self.model.row_of(path)
            self.case_panel.set_meta(self.model.record(row).meta if row is not None else None, reason)

    def _display(self, case: LoadedCase) -> None:
        self.window_control.set_image(case.image)
        self.viewer.show_case(case, self.reading.title(case.path))
        self.reading.case_shown(case.path)
        self.case_panel.set_meta(case.meta)
        self.show_result(case.path)
        self.viewer.set_contour_level(self._contour_level())
        if self._first_image_time is None:
            self._first_image_time = time.monotonic() - self.indexing.started_at

    def show_result(self, path: Path) -> None:
        """Fill the result panel and the viewer's badge from the record."""
        row = self.model.row_of(path)
        if row is None:
            return
        rec = self.model.record(row)
        score = self.model.active_score(rec)
        flagged = self.model.is_flagged(rec)
        n = self.detector.calibration.n_normals if self.detector is not None else None
        pending = "" if self.detector is not None else "no detector loaded"
        if self.detector is not None and score is None:
            pending = self.model.status_text(rec)
        self.case_panel.set_result(score, flagged, n, pending)
        if score is None:
            reason = self.model.out_of_scope_reason(rec)
            self.viewer.set_badge(f"out of scope: {reason.split(' (')[0]}" if reason else "", None)
        else:
            flag = "FLAGGED" if flagged else "not flagged"
            self.viewer.set_badge(f"score {score.score:.4g} · pctl {score.percentile:.1f} · {flag}", flagged)

    def _prefetch(self) -> None:
        for path in self.worklist.neighbours(1):
            if path not in self._cases:
                self._request_id += 1
                self.view_decoder.request_case(path, self.detector, self._request_id, prefetch=True)

    def _focus_filter(self) -> None:
        self.docks["worklist"].show()
        self.docks["worklist"].raise_()  # in front of the Studies tab
        self.worklist.filter_edit.setFocus()
        self.worklist.filter_edit.selectAll()

    # ================================================================== detector
    def choose_detector(self) -> None:
        """Ask for a detector file and load it."""
        start = str(self.detector_path.parent if self.detector_path else self.library.root)
        path, _ = QFileDialog.getOpenFileName(self, "Load detector", start, "ONNX detectors (*.onnx);;All files (*)")
        if path:
            self.load_detector(Path(path))

    def load_detector(self, path: Path, provider: ProviderChoice | None = None) -> None:
        """Load a detector in a worker; scoring starts when it is ready (if automatic)."""
        if self._closing:
            return
        prov = provider or self.settings.provider
        thread = DetectorLoadThread(path, prov, threads=self.inference_threads)
        thread.detector_loaded.connect(self._on_detector_loaded)
        thread.detector_failed.connect(self._on_detector_failed)
        self._loading_detector = thread
        self.workers.start(thread)
        self.statusBar().showMessage(f"Loading detector {path.name}…")

    @Slot(object)
    def _on_detector_loaded(self, detector: Detector) -> None:
        if self.sender() is not self._loading_detector:
            return  # a later load superseded this one
        self.scoring.provider_choice = self._loading_detector.provider
        self._loading_detector = None
        detector.meta = self.library.named(detector.meta)  # the library's name for it, if renamed there
        self.calibration.apply_library(detector)  # the site calibration chosen for it, if any
        self.scoring.stop()
        self.detector = detector
        self.detector_path = detector.path
        self.settings.set_last_model(detector.path)
        meta = detector.meta
        self.model.set_active_model(meta.model_id, self.operating.threshold(detector.calibration), detector.calibration)
        self.operating_control.set_calibration(detector.calibration)
        self.calibration.update_drift(record=False)
        self.case_panel.set_detector(meta, detector.provider, detector.provider_note)
        short = self.show_provider(detector.provider, detector.provider_note)
        self.statusBar().showMessage(f"Detector {meta.name or meta.model_id[:8]} loaded"
                                     + (f" — {detector.provider_note}" if detector.provider_note else f", running on {short}"),
                                     15000 if detector.provider_note else 8000)
        self.setWindowTitle(f"cxrscreen — {self.roots[0] if self.roots else ''} — {meta.name or meta.model_id[:8]}")
        if self._current is not None:
            self._on_current_changed(self._current)  # re-show with this detector's heatmap
        self.model_tools.detector_loaded(detector)
        if self.auto_score_action.isChecked():
            self.score_unscored(quiet=True)

    def show_provider(self, provider: str, note: str) -> str:
        """Where the detector runs, at the right of the status bar (orange with the reason on fallback)."""
        return show_provider(self.provider_label, provider, note)

    @Slot(str, str)
    def _on_detector_failed(self, path: str, reason: str) -> None:
        if self.sender() is not self._loading_detector:
            return
        self._loading_detector = None
        self.report_error("Cannot load detector", f"{path}\n\n{reason}")

    def set_provider(self, provider: ProviderChoice) -> None:
        """Choose where detectors run; reloads the current detector."""
        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
        self.settings.set_provider(provider)
        with QSignalBlocker(self.provider_actions[provider]):
            self.provider_actions[provider].setChecked(True)
        if self.detector_path is not None:
            self.load_detector(self.detector_path, provider)

    def show_detector_card(self) -> None:
        """Show the active detector's card."""
        if self.detector is None:
            self.report_error("No detector", "Load a detector first (Ctrl+L).")
            return
        d = DetectorCardDialog(self.detector.meta, self.detector.path, self.detector.provider,
                               self.detector.provider_note, self, self.calibration.site_calibrations(),
                               self.detector.calibration if self.detector.calibration.name else None)
        d.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        d.open()

    # ================================================================== scoring (app/controllers/scoring.py)
    def score_unscored(self, quiet: bool = False) -> int:
        """Score every readable file without a score from the active detector; returns how many."""
        return self.scoring.score_unscored(quiet)

    def cancel_scoring(self) -> None:
        """Stop scoring (the worker ends at its next batch; the window stops waiting at once)."""
        self.scoring.cancel()

    @property
    def is_scoring(self) -> bool:
        """Whether a scoring run is active (a cancelled one that is still winding down is not)."""
        return self.scoring.active

    @property
    def closing(self) -> bool:
        """Whether the window is closing (no new work starts)."""
        return self._closing

    @property
    def current_path(self) -> Path | None:
        """The current case's file."""
        return self._current

    # ================================================================== operating point
    def _on_operating_point(self) -> None:
        op = self.operating
        self.settings.set_operating_point(op.mode, op.specificity, op.score_threshold)
        if self.detector is not None:
            self.model.set_threshold(op.threshold(self.detector.calibration))
        if self._current is not None:
            self.show_result(self._current)
        self.viewer.set_contour_level(self._contour_level())

    def _contour_level(self) -> float | None:
        """The heatmap level of the contour: the operating point's specificity among normals."""
        if self.detector is None:
            return None
        if self.operating.mode == "specificity":
            return self.operating.specificity
        return self.operating.achieved_specificity(self.detector.calibration)

    # ================================================================== export
    def export_csv(self, path: Path | None = None, scope: str | None = None,
                   include_identifiers: bool | None = None) -> Path | None:
        """Export results to CSV (:func:`app.controllers.exporting.export_csv`); None when nothing was written."""
        return export_csv(self, path, scope, include_identifiers)

    # ================================================================== demo
    def open_demo(self) -> None:
        """Write (once) and open the synthetic demo study; make a demo detector if none exists."""
        thread = DemoStudyThread(self.demo_dir, *self.demo_study)
        thread.study_ready.connect(self._on_demo_ready)
        thread.study_failed.connect(self._on_demo_failed)  # a slot: runs in the GUI thread
        self.workers.start(thread)
        self.statusBar().showMessage("Preparing the demo study…")

    @Slot(object)
    def _on_demo_ready(self, folder: Path) -> None:
        self.open_paths([folder])
        if self.detector is not None or self._loading_detector is not None:
            return
        entries = self.library.entries()
        if entries:
            self.load_detector((self.library.default() or entries[0]).path)
            return
        made = demo_detector_file(self.demo_dir)
        if made.is_file():  # trained in an earlier session
            self._on_demo_detector(made)
            return
        if self._demo_process is None:
            proc = DemoDetectorProcess(made, self)
            proc.progress.connect(self.statusBar().showMessage)
            proc.ready.connect(self._on_demo_detector)
            proc.unavailable.connect(self._on_demo_detector_unavailable)
            self._demo_process = proc
            proc.start()
            self.statusBar().showMessage("Preparing the demo detector (about two minutes; the study is open meanwhile)…")

    @Slot(str)
    def _on_demo_failed(self, message: str) -> None:
        self.report_error("Demo unavailable", message)

    @Slot(object)
    def _on_demo_detector(self, path: Path) -> None:
        self._demo_process = None
        try:
            entry = self.library.add(path)
        except (DetectorError, OSError) as exc:
            self.report_error("Demo detector unusable", str(exc))
            return
        self.model_tools.refresh_library_menu()
        self.load_detector(entry.path)

    @Slot(str)
    def _on_demo_detector_unavailable(self, reason: str) -> None:
        self._demo_process = None
        self.statusBar().showMessage(f"Demo study opened without scores: {reason}. Load a detector (Ctrl+L).", 15000)

    # ================================================================== misc UI
    def show_help(self) -> None:
        """Show the shortcut list."""
        d = HelpDialog(self)
        d.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        d.open()

    def _nudge_opacity(self, delta: float) -> None:
        st = self.viewer_state
        st.set_heatmap_opacity(round(min(1.0, max(0.0, st.heatmap_opacity + delta)), 2))

    def _sync_checkable_actions(self) -> None:
        st = self.viewer_state
        pairs = (("invert", st.invert), ("toggle_heatmap", st.heatmap_visible), ("toggle_contour", st.contour_visible),
                 ("show_identifiers", self.privacy.show_identifiers),
                 ("flagged_only", self.worklist.flagged_box.isChecked()),
                 ("unread_only", self.worklist.unread_box.isChecked()))
        for name, value in pairs:
            act = self.actions.get(name)
            if act is not None and act.isChecked() != value:
                with QSignalBlocker(act):
                    act.setChecked(value)

    def report_error(self, title: str, text: str) -> None:
        """Tell the user (non-blocking message box) and log."""
        self.last_error = f"{title}: {text}"
        logger.warning("%s: %s", title, text)
        self.statusBar().showMessage(f"{title}: {text.splitlines()[0]}", 10000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        if not self._layout_restored:  # first run: the image gets most of the width
            self._layout_restored = True
            self.default_layout()

    def default_layout(self) -> None:
        """Worklist about a third of the width, case panel 340 px, the viewer the rest."""
        width = max(self.width(), 900)
        self.resizeDocks([self.docks["worklist"], self.docks["case"]], [int(width * 0.36), 340],
                         Qt.Orientation.Horizontal)

    # ================================================================== drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt name)
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_paths(paths, replace=False)

    # ================================================================== closing
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self._close_ready:
            self.gc_schedule.stop()
            event.accept()
            return
        if not self._closing and not self.model_tools.confirm_close():
            event.ignore()  # a detector is training and the user chose to keep it
            return
        if not self._closing:
            self._closing = True
            self.settings.set_window_layout(self.saveGeometry(), self.saveState())
            st = self.viewer_state
            self.settings.set_heatmap_style(st.heatmap_visible, st.heatmap_opacity, st.colormap, st.contour_visible,
                                            st.heatmap_floor)
            self.settings.sync()
            if self._demo_process is not None:
                self._demo_process.stop()
            self.indexing.indexers.clear()
            self.scoring.process = None
            self.workers.stop_all()
            self.reading.close()
            self.workers.all_finished.connect(self._finish_close)
        if not len(self.workers):
            self._close_ready = True
            self.gc_schedule.stop()
            event.accept()
            return
        # wait for the workers without blocking the event loop; close when the last one ends
        event.ignore()
        self.setEnabled(False)
        self.statusBar().showMessage("Stopping background work…")

    @Slot()
    def _finish_close(self) -> None:
        if self._closing and not self._close_ready:
            self._close_ready = True
            self.close()
