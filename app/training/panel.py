"""The New-detector panel: drop folders, check them, choose a method, train, register.

A separate, non-modal window: the worklist stays fully usable while a detector trains (the
engine runs in its own process). Left: the method (from `[engine] methods --json` of the
engine the app runs, read off the GUI thread: a preset, whether it is the paper's protocol,
the name, advanced settings), the images (a drop zone per data role the method uses —
known-normal, unlabeled, confirmed-abnormal — marked required or optional, and optional
labelled validation data, each with what it holds) and the findings: the app's own checks of
the folders, then the engine's `train --check` of the data and settings (each problem names
the option to change); errors block training, warnings do not. Right: the training's progress
(bar with ETA, device, live loss plot, log), then the new model's card.

Closing the panel only hides it; the job goes on. Jobs that did not finish (stopped, or the
app closed meanwhile) are listed for Resume or Discard, also in a later session.
"""
from __future__ import annotations

import datetime
import html
import logging
import shutil
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSignalBlocker, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QCloseEvent, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QToolButton,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from cxrscreen.app.library import LibraryEntry, ModelLibrary
from cxrscreen.app.library_view import CardView
from cxrscreen.app.reader_sets import reader_marks_count
from cxrscreen.app.settings import AppSettings
from cxrscreen.app.training.drop_zone import DropZone
from cxrscreen.app.training.folders import (
    FolderSummary,
    Finding,
    LabelledValidation,
    check_training_data,
    find_duplicates,
    read_validation,
    summarise_folder,
)
from cxrscreen.app.training.job import CallThread, JobFailure, JobRecord, JobSpec, TrainingJob, find_jobs
from cxrscreen.app.training.engine_check import CheckResult, TrainCheck
from cxrscreen.app.training.options import ROLES, CheckProblem, MethodCatalog, MethodInfo, MethodsJsonError, Preset, read_catalog
from cxrscreen.app.training.options_form import OptionsForm
from cxrscreen.app.training.progress_view import TrainingProgressView
from cxrscreen.app.workers.base import StoppableThread, WorkerSet

logger = logging.getLogger(__name__)
CUSTOM = "custom"
ROLE_TITLES: dict[str, tuple[str, str]] = {
    "normal": ("Known-normal folder", "Radiographs read as normal (no finding). Drop a folder here, or Browse."),
    "unlabeled": ("Unlabeled folder", "The everyday mix, normal and abnormal, not read. Drop a folder here, or Browse."),
    "abnormal": ("Confirmed-abnormal folder", "Radiographs with findings confirmed by a radiologist. Drop a folder "
                                              "here, or Browse."),
}
_SEVERITY_STYLE = {"error": ("✖", QColor(176, 0, 32)), "warning": ("⚠", QColor(160, 90, 0)), "note": ("ℹ", QColor(90, 90, 90))}


def role_note(requirement: str, min_count: int) -> str:
    """A drop zone's note: "required, at least 20 images", "required, at least 1 image", "optional" or ""."""
    if requirement == "required":
        return f"required, at least {min_count:,} image{'s' if min_count != 1 else ''}" if min_count else "required"
    return "optional" if requirement == "optional" else ""


def _published_text(preset: Preset) -> str:
    """Whether a preset is the paper's protocol, as the engine says (rich text for the preset label)."""
    if preset.as_published:
        text = "<span style='color:#1d7a1d'>✓ As published: every trained setting is the paper's.</span>"
        if preset.deviations:  # protocol differences the engine states (e.g. the calibration hold-out)
            items = "".join(f"<li>{html.escape(d)}</li>" for d in preset.deviations)
            text += f"<br>The protocol differs in:<ul style='margin:0'>{items}</ul>"
        return text
    if preset.deviations:
        items = "".join(f"<li>{html.escape(d)}</li>" for d in preset.deviations)
        return f"<span style='color:#a05a00'>Not as published. Differs from the paper:</span><ul style='margin:0'>{items}</ul>"
    return "<span style='color:#a05a00'>Not as published (the engine lists no details).</span>"


def default_runs_root(library: ModelLibrary) -> Path:
    """Training runs live beside the library (the user's data folder)."""
    return library.root.parent / "runs"


class FolderScanThread(StoppableThread):
    """Summarise one folder (headers only).

    Signals:
        scanned(str, FolderSummary): the role and its summary.
        counted(str, int): files seen so far.
    """

    scanned = Signal(str, object)
    counted = Signal(str, int)

    def __init__(self, role: str, folder: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.role, self.folder = role, Path(folder)

    def work(self) -> None:
        s = summarise_folder(self.folder, should_stop=lambda: self.stopping,
                             progress=lambda n: self.counted.emit(self.role, n))
        if not self.stopping:
            self.scanned.emit(self.role, s)


class DuplicatesThread(StoppableThread):
    """Find identical files across the dropped folders (stops between files when asked).

    Signals:
        found(dict): the output of :func:`app.training.folders.find_duplicates`.
    """

    found = Signal(object)

    def __init__(self, summaries: dict[str, FolderSummary], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.summaries = summaries

    def work(self) -> None:
        result = find_duplicates(self.summaries, should_stop=lambda: self.stopping)
        if not self.stopping:
            self.found.emit(result)


class NewDetectorPanel(QWidget):
    """Train a site detector from folders, in the engine, and add it to the model library.

    Args:
        library: where detectors go.
        settings: the app's settings (engine command, provider, last method and preset).
        workers: the window's worker set (so closing the window stops scans and the job).
        runs_root: where training runs go (default: beside the library).

    Signals:
        model_registered(LibraryEntry): a new detector is in the library.
        use_model(LibraryEntry): the user asks to score the worklist with it.
        show_library(): the user asks for the model library.
        job_running(bool): a job started or ended.
    """

    model_registered = Signal(object)
    use_model = Signal(object)
    show_library = Signal()
    job_running = Signal(bool)

    def __init__(self, library: ModelLibrary, settings: AppSettings, workers: WorkerSet,
                 runs_root: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("New detector — cxrscreen")
        self.setObjectName("new_detector_panel")
        self.resize(1380, 900)
        self.library = library
        self.settings = settings
        self.workers = workers
        self.runs_root = runs_root or default_runs_root(library)
        self.summaries: dict[str, FolderSummary | None] = {r: None for r in ROLES}
        self.duplicates: dict | None = None
        self.validation: LabelledValidation | None = None
        self.validation_error: str | None = None
        self.findings: list[Finding] = []
        self.reader_sets: dict[str, Path] = {}  # the reader's confirmed cases, by role, until replaced
        self._pending_adaptation: tuple[JobSpec, Path, str, str] | None = None  # until the methods are read
        self.reader_counts: dict[str, int] = {}  # images from reader marks in each role's folder
        self.job: TrainingJob | None = None
        self.last_entry: LibraryEntry | None = None
        self.last_failure: JobFailure | None = None
        self._resume_spec: JobSpec | None = None
        self._scans: dict[str, FolderScanThread] = {}
        self._validation_thread: CallThread | None = None
        self._dup_thread: DuplicatesThread | None = None
        self._name_edited = False
        self._base_preset: str | None = None  # the preset the settings started from
        self._stamp: str | None = None  # the planned run folder's time stamp (set again after a job starts)
        self.info: MethodInfo | None = None
        self.catalog: MethodCatalog | None = None
        self.catalog_error: str | None = None
        self._catalog_thread: CallThread | None = None
        self.check = TrainCheck(settings.engine_command, parent=self)
        self.check.checking.connect(self._update)
        self.check.checked.connect(self._on_checked)
        self.check_result: CheckResult | None = None
        self._build()
        self.refresh_unfinished()
        self.reload_methods()

    # ================================================================== layout
    def _build(self) -> None:
        self.zones: dict[str, DropZone] = {r: DropZone(*ROLE_TITLES[r]) for r in ROLES}
        self.zones["validation"] = DropZone(
            "Labelled validation (optional)", "A folder with normal/ and abnormal/ subfolders, or a labels CSV "
            "(path,label). Never used for training: the model card then shows AUROC and AP.", accept_csv=True)
        for role, zone in self.zones.items():
            zone.setObjectName(f"zone_{role}")
            zone.path_chosen.connect(lambda p, r=role: self.set_folder(r, p))
            zone.cleared.connect(lambda r=role: self._zone_cleared(r))
        data = QGroupBox("2. Images")
        dl = QVBoxLayout(data)
        for zone in self.zones.values():
            dl.addWidget(zone)
        self.findings_list = QListWidget()
        self.findings_list.setObjectName("findings")
        self.findings_list.setWordWrap(True)
        self.findings_list.setMinimumHeight(80)
        self.findings_list.setMaximumHeight(150)

        method = QGroupBox("1. Method")
        ml = QVBoxLayout(method)
        form = QFormLayout()
        self.method_combo = QComboBox()
        self.method_combo.setObjectName("method_combo")
        self.method_combo.currentIndexChanged.connect(self._on_method)
        self.method_label = QLabel("")
        self.method_label.setWordWrap(True)
        self.method_label.setStyleSheet("color: #444444;")
        self.engine_label = QLabel("Reading the engine's methods…")
        self.engine_label.setObjectName("engine_label")
        self.engine_label.setWordWrap(True)
        self.engine_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retry_button = QPushButton("Ask the engine again")
        self.retry_button.clicked.connect(self.reload_methods)
        self.retry_button.hide()
        self.preset_combo = QComboBox()
        self.preset_combo.currentIndexChanged.connect(self._on_preset)
        self.preset_label = QLabel("")
        self.preset_label.setWordWrap(True)
        self.preset_label.setStyleSheet("color: #444444;")
        self.preset_label.setTextFormat(Qt.TextFormat.RichText)
        self.method_label.setTextFormat(Qt.TextFormat.RichText)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("the detector's name in the library")
        self.name_edit.textEdited.connect(self._on_name_edited)
        ml.addWidget(self.engine_label)
        ml.addWidget(self.retry_button, 0, Qt.AlignmentFlag.AlignLeft)
        ml.addLayout(form)
        form.addRow("Method", self.method_combo)
        form.addRow(self.method_label)
        form.addRow("Preset", self.preset_combo)
        form.addRow(self.preset_label)
        form.addRow("Name", self.name_edit)
        self.advanced = QToolButton()
        self.advanced.setText("Advanced settings")
        self.advanced.setCheckable(True)
        self.advanced.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced.setAutoRaise(True)
        self.options_form = OptionsForm()
        self.options_form.edited.connect(self._on_options_edited)
        self.options_form.runtime_edited.connect(self._update)
        self.advanced.toggled.connect(self._show_advanced)
        self.options_form.setVisible(False)
        advanced = QWidget()
        al = QVBoxLayout(advanced)
        al.setContentsMargins(0, 0, 0, 0)
        al.addWidget(self.advanced, 0, Qt.AlignmentFlag.AlignLeft)
        al.addWidget(self.options_form)

        self.unfinished = QGroupBox("Unfinished trainings")
        ul = QVBoxLayout(self.unfinished)
        self.unfinished_list = QListWidget()
        self.unfinished_list.setMaximumHeight(90)
        ul.addWidget(self.unfinished_list)
        ub = QHBoxLayout()
        self.resume_listed_button = QPushButton("Resume")
        self.resume_listed_button.clicked.connect(self._resume_selected)
        self.discard_button = QPushButton("Discard…")
        self.discard_button.clicked.connect(self._discard_selected)
        ub.addStretch(1)
        ub.addWidget(self.resume_listed_button)
        ub.addWidget(self.discard_button)
        ul.addLayout(ub)

        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train detector")
        self.train_button.setObjectName("train_button")
        self.train_button.setMinimumHeight(34)
        self.train_button.setStyleSheet("QPushButton { font-weight: bold; padding: 0 18px; }")
        self.train_button.setDefault(True)
        self.train_button.clicked.connect(self.start_training)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current epoch, with a checkpoint (Resume continues)")
        self.cancel_button.clicked.connect(self.cancel_training)
        self.stop_now_button = QPushButton("Stop now")
        self.stop_now_button.setToolTip("End the engine at once; Resume continues from the last checkpoint")
        self.stop_now_button.clicked.connect(self.stop_now)
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(self.resume_last)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        for b in (self.train_button, self.cancel_button, self.stop_now_button, self.resume_button):
            buttons.addWidget(b)
        buttons.addStretch(1)

        inner = QWidget()
        il = QVBoxLayout(inner)
        il.setContentsMargins(0, 0, 0, 0)
        il.addWidget(method)
        il.addWidget(data)
        il.addWidget(advanced)
        il.addWidget(self.unfinished)
        il.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        # the verdict and Train stay in view however long the settings are
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(scroll, 1)
        checks = QLabel("<b>Checks</b>")
        checks.setToolTip("The app's checks of the folders, then the engine's check of the data and settings "
                          "(train --check): errors block training, warnings do not.")
        ll.addWidget(checks)
        ll.addWidget(self.findings_list)
        ll.addLayout(buttons)
        ll.addWidget(self.status_label)

        self.progress_view = TrainingProgressView()
        self.progress_view.hide()
        self.idle_label = QLabel("<p style='font-size:14px'>Choose a method, drop the folders on the left, then "
                                 "<b>Train detector</b>.</p><p>Training runs in the engine, in a separate process: "
                                 "the worklist stays usable, and this window can be closed meanwhile. Here you will "
                                 "see the progress with the time left, the device, the loss curve and the log; then "
                                 "the new detector's card.</p><p>Nothing is added to the model library until the "
                                 "detector is trained, exported, checked and (with labelled data) validated.</p>")
        self.idle_label.setWordWrap(True)
        self.idle_label.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.idle_label.setStyleSheet("color: #444; padding: 12px;")
        train_box = QGroupBox("3. Training")
        tl = QVBoxLayout(train_box)
        tl.addWidget(self.idle_label)
        tl.addWidget(self.progress_view)
        self.result_box = QGroupBox("New detector")
        rl = QVBoxLayout(self.result_box)
        self.card_view = CardView()
        rl.addWidget(self.card_view, 1)
        rb = QHBoxLayout()
        self.use_button = QPushButton("Score the worklist with it")
        self.use_button.clicked.connect(lambda: self.last_entry is not None and self.use_model.emit(self.last_entry))
        self.library_button = QPushButton("Open model library")
        self.library_button.clicked.connect(self.show_library)
        rb.addStretch(1)
        rb.addWidget(self.library_button)
        rb.addWidget(self.use_button)
        rl.addLayout(rb)
        self.result_box.hide()
        self.right_split = right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(train_box)
        right.addWidget(self.result_box)
        right.setStretchFactor(0, 2)
        right.setStretchFactor(1, 3)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([620, 760])
        outer = QVBoxLayout(self)
        outer.addWidget(split)

    # ================================================================== the engine's methods
    def reload_methods(self) -> None:
        """Ask the engine the app runs (the engine command setting) for its methods, off the GUI thread.

        The answer is cached per engine command and engine version
        (:func:`app.training.options.read_catalog`); a failure is shown in the panel, with a
        button to ask again.
        """
        command = list(self.settings.engine_command)
        self.check.set_command(command)
        self.catalog_error = None
        self.engine_label.setText("Reading the engine's methods…")
        self.engine_label.setStyleSheet("color: #555555;")
        self.engine_label.show()
        self.retry_button.hide()
        thread = CallThread(lambda: read_catalog(command))
        self._catalog_thread = thread

        def done(catalog: MethodCatalog, t: CallThread = thread) -> None:
            if self._catalog_thread is t:
                self._catalog_thread = None
                self._set_catalog(catalog)

        def failed(message: str, t: CallThread = thread) -> None:
            if self._catalog_thread is t:
                self._catalog_thread = None
                self._set_catalog(None, message.split(": ", 1)[-1] if message.startswith(
                    MethodsJsonError.__name__) else message)

        thread.returned.connect(done)
        thread.raised.connect(failed)
        self.workers.start(thread)
        self._update()

    def _set_catalog(self, catalog: MethodCatalog | None, error: str | None = None) -> None:
        self.catalog = catalog
        self.catalog_error = error
        last = self.info.name if self.info is not None else self.settings.training_method
        with QSignalBlocker(self.method_combo):
            self.method_combo.clear()
            for info in catalog.methods if catalog is not None else ():
                self.method_combo.addItem(info.title, info.name)
                self.method_combo.setItemData(self.method_combo.count() - 1, info.paper, Qt.ItemDataRole.ToolTipRole)
            self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(last)))
        if catalog is None:
            self.engine_label.setText(f"<b>The engine's methods cannot be read.</b> {error}<br>Engine command: "
                                      f"{' '.join(self.settings.engine_command)} (Detector ▸ Engine command…)")
            self.engine_label.setStyleSheet("color: #b00020;")
            self.retry_button.show()
            self.info = None
            self._update()
            return
        self.engine_label.hide()
        self._on_method()
        preset = self.settings.training_preset
        if preset and self.preset_combo.findData(preset) >= 0 and self.info is not None and self.info.name == last:
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(preset))
        if self._pending_adaptation is not None:
            pending, self._pending_adaptation = self._pending_adaptation, None
            try:
                self.adapt_from(*pending)
            except ValueError as exc:
                self.status_label.setText(f"Cannot adapt: {exc}")

    # ================================================================== data
    def use_reader_sets(self, folders: dict[str, Path]) -> None:
        """Use the reader's confirmed cases (folders of links) for the roles they fill.

        ``folders`` maps "normal" and "abnormal" to the sets; each goes into its zone now, or,
        when the method does not use that role, as soon as a method that does is chosen (until
        the reader gives that zone another folder or clears it). The sets are checked as any
        folder.
        """
        bad = sorted(set(folders) - {"normal", "abnormal"})
        if bad:
            raise ValueError(f"reader sets fill the normal and abnormal roles, not {bad}")
        self.reader_sets = {r: Path(p) for r, p in folders.items()}
        self._apply_reader_sets()

    def adapt_from(self, spec: JobSpec, normal: Path, name: str, note: str) -> None:
        """Set up the retraining of ``spec``'s detector on another known-normal folder (an
        adaptation, :mod:`app.adaptation`): its method, preset and settings, ``normal`` for the
        known normals, its other folders as they were; the panel's checks apply as always.

        Waits for the engine's methods when they are still being read.

        Raises:
            ValueError: the engine has no such method any more.
        """
        if self.catalog is None and self.catalog_error is None:
            self._pending_adaptation = (spec, Path(normal), name, note)
            self.status_label.setText("Reading the engine's methods, then setting up the adaptation…")
            return
        if self.catalog is None or spec.method not in self.catalog.names:
            raise ValueError(f"this engine has no method {spec.method!r}: the detector cannot be retrained here")
        self.reader_sets = {}
        self.method_combo.setCurrentIndex(self.method_combo.findData(spec.method))
        info = self.info
        assert info is not None
        base = spec.base_preset if spec.base_preset is not None else spec.preset
        if base in [p.name for p in info.presets]:
            self.set_preset(base)
        known = {o.name for o in info.options}
        values = {**self.options_form.values(), **{k: v for k, v in spec.values.items() if k in known}}
        if values != self.options_form.values():
            self.options_form.set_values(values)
            self._on_options_edited()
        for role, folder in spec.folders().items():
            if role == "normal":
                self.set_folder("normal", Path(normal))
            elif info.role(role).used:
                self.set_folder(role, folder if folder is not None and Path(folder).is_dir() else None)
        if spec.validation is not None and Path(spec.validation).exists():
            self.set_folder("validation", Path(spec.validation))
        self.name_edit.setText(name)
        self._name_edited = True
        self.status_label.setText(note)
        self._update()

    def _apply_reader_sets(self) -> None:
        for role, folder in self.reader_sets.items():
            if (self.info is None or self.info.role(role).used) and self.zones[role].path != folder:
                self.set_folder(role, folder)
        waiting = "The reader's confirmed-abnormal cases wait for a method that uses them"
        if self.status_label.text().startswith(waiting):
            self.status_label.setText("")
        if "abnormal" in self.reader_sets and self.info is not None and not self.info.role("abnormal").used:
            self.status_label.setText(f"{waiting}; {self.info.title} does not.")

    def _zone_cleared(self, role: str) -> None:
        self.reader_sets.pop(role, None)
        self.set_folder(role, None)

    def set_folder(self, role: str, path: Path | None) -> None:
        """Use ``path`` for a role ("normal", "unlabeled", "abnormal", "validation"; None: remove it)."""
        zone = self.zones[role]
        if path is not None and self.reader_sets.get(role, Path(path)) != Path(path):
            del self.reader_sets[role]  # another folder replaces the reader's set
        if path is not None and role in ROLES and self.info is not None and not self.info.role(role).used:
            raise ValueError(f"{self.info.title} does not use a {ROLE_TITLES[role][0].lower()}")
        with QSignalBlocker(zone):
            if path is not None and zone.path != Path(path):
                zone.set_path(Path(path))
            elif path is None and zone.path is not None:
                zone.clear()
        if role == "validation":
            self._set_validation(path)
            return
        old = self._scans.pop(role, None)
        if old is not None:
            old.request_stop()
        self.summaries[role] = None
        self.reader_counts.pop(role, None)
        self.duplicates = None
        if path is not None:
            thread = FolderScanThread(role, Path(path))
            thread.scanned.connect(self._on_scanned)
            thread.counted.connect(lambda r, n: self.zones[r].set_summary(f"Reading headers… {n:,} files"))
            self._scans[role] = thread
            self.workers.start(thread)
        self._update()

    @Slot(str, object)
    def _on_scanned(self, role: str, summary: FolderSummary) -> None:
        scan = self._scans.get(role)
        if scan is None or scan is not self.sender():  # replaced or removed meanwhile (sender() may be None then)
            return
        del self._scans[role]
        self.summaries[role] = summary
        marked = reader_marks_count(summary.folder)
        if marked is not None:
            self.reader_counts[role] = marked
        self.zones[role].set_summary(summary.describe() + (f" — {marked:,} from reader marks" if marked else ""),
                                     ok=summary.count > 0)
        if not self._name_edited:
            self._suggest_name()
        self._check_duplicates()
        self._update()

    def _check_duplicates(self) -> None:
        given = {r: s for r, s in self.summaries.items() if s is not None}
        if self._scans or not given:
            return
        if self._dup_thread is not None:
            self._dup_thread.request_stop()
        thread = DuplicatesThread(given)
        self._dup_thread = thread

        def done(result: Any, t: DuplicatesThread = thread) -> None:
            if self._dup_thread is t:
                self._dup_thread = None
                self.duplicates = result
                self._update()

        thread.found.connect(done)
        self.workers.start(thread)

    def _set_validation(self, path: Path | None) -> None:
        self.validation = None
        self.validation_error = None
        self._validation_thread = None
        if path is None:
            self._update()
            return
        source = Path(path)
        thread = CallThread(lambda: read_validation(source))
        self._validation_thread = thread

        def done(result: LabelledValidation, t: CallThread = thread) -> None:
            if self._validation_thread is t:
                self._validation_thread = None
                self.validation = result
                self.zones["validation"].set_summary(result.describe())
                self._update()

        def failed(message: str, t: CallThread = thread) -> None:
            if self._validation_thread is t:
                self._validation_thread = None
                self.validation_error = message.split(": ", 1)[-1]
                self.zones["validation"].set_summary(self.validation_error, ok=False)
                self._update()

        thread.returned.connect(done)
        thread.raised.connect(failed)
        self.workers.start(thread)
        self._update()

    # ================================================================== method
    def _show_advanced(self, shown: bool) -> None:
        self.advanced.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.options_form.setVisible(shown)

    def _on_method(self) -> None:
        name = self.method_combo.currentData()
        if name is None or self.catalog is None:
            return
        self.info = info = self.catalog.method(name)
        self.method_label.setText(info.summary + (f" <i>{html.escape(info.paper)}</i>" if info.paper else ""))
        self.options_form.set_method(info)
        with QSignalBlocker(self.preset_combo):
            self.preset_combo.clear()
            for p in info.presets:
                self.preset_combo.addItem(p.title, p.name)
            self.preset_combo.addItem("Custom (advanced settings)", CUSTOM)
            self.preset_combo.setCurrentIndex(0)
        for role in info.roles:
            zone = self.zones[role.role]
            zone.setVisible(role.used)
            title, hint = ROLE_TITLES[role.role]
            if role.requirement == "optional" and role.help:  # what an optional folder is for is the method's
                hint += f" This method uses it for: {role.help}."
            zone.set_title(title, role_note(role.requirement, role.min_count), hint)
            zone.setToolTip(role.help)
            if not role.used and zone.path is not None:
                self.set_folder(role.role, None)
        self._apply_reader_sets()
        self._on_preset()

    def _on_preset(self) -> None:
        if self.info is None:
            return
        preset = self.preset_combo.currentData()
        if preset == CUSTOM:
            self.preset_label.setText(self._changes_text())
            self.advanced.setChecked(True)
            self._update()
            return
        self._base_preset = preset
        p = self.info.preset(preset)
        self.preset_label.setText(f"{html.escape(p.description)}<br>{_published_text(p)}")
        runtime = {o.name: v for o, v in ((self.info.option(k), v) for k, v in self.options_form.values().items())
                   if o.runtime}
        self.options_form.set_values(self.info.values_for(preset, runtime))
        self.settings.set_training_choice(self.info.name, preset)
        if not self._name_edited:
            self._suggest_name()
        self._update()

    def set_preset(self, name: str) -> None:
        """Choose a preset by name ("paper", "quick", ...)."""
        i = self.preset_combo.findData(name)
        if i < 0:
            raise ValueError(f"no preset {name!r}; available: "
                             f"{[self.preset_combo.itemData(k) for k in range(self.preset_combo.count())]}")
        self.preset_combo.setCurrentIndex(i)

    def set_option(self, name: str, value: Any) -> None:
        """Change one advanced setting (a trained setting makes the preset "Custom"; a run option does not)."""
        if self.info is None:
            raise RuntimeError("the engine's methods are not read yet")
        option = self.info.option(name)
        values = self.options_form.values()
        values[name] = value
        self.options_form.set_values(values)
        if option.runtime:
            self._update()
        else:
            self._on_options_edited()

    def _on_options_edited(self) -> None:
        if self.preset_combo.currentData() != CUSTOM:
            self._base_preset = self.preset_combo.currentData()
            with QSignalBlocker(self.preset_combo):
                self.preset_combo.setCurrentIndex(self.preset_combo.findData(CUSTOM))
        self.preset_label.setText(self._changes_text())
        self._update()

    def _changes_text(self) -> str:
        """ "Paper protocol, changed: Epochs 5 (was 250). Not as published." — what differs from the preset."""
        if self.info is None:
            return ""
        base = self._base_preset
        if base is None or base == CUSTOM:
            return "Your own settings."
        preset = self.info.values_for(base)
        now = self.options_form.values()
        changed = [f"{self.info.option(k).label} {v} (was {preset.get(k) if preset.get(k) is not None else 'default'})"
                   for k, v in now.items() if v != preset.get(k) and not self.info.option(k).runtime]
        p = self.info.preset(base)
        if not changed:
            return f"{p.title} (unchanged).<br>{_published_text(p)}"
        return f"{html.escape(p.title)}, changed: {html.escape('; '.join(changed))}.<br>" + (
            "Not as published: the trained settings differ from the paper's." if p.as_published else _published_text(p))

    def _on_name_edited(self, text: str) -> None:
        self._name_edited = bool(text.strip())
        self._update()

    def _suggest_name(self) -> None:
        if self.info is None:
            return
        values = self.options_form.values()
        what = self.info.title.split(" (", 1)[0]  # "MSACL + IGD", "MemMC-MAE": not the key "msacl_igd" upper-cased
        if values.get("backbone"):
            what += f" {str(values['backbone']).upper()}"
        preset = self.preset_combo.currentData()
        if preset and preset != CUSTOM:
            what += f", {preset}"
        folder = self.zones["normal"].path
        where = f" — {folder.name}" if folder is not None else ""
        self.name_edit.setText(f"{what}{where} — {datetime.date.today().isoformat()}")

    # ================================================================== checks and buttons
    def _update(self) -> None:
        info = self.info
        roles = [r for r in info.roles if r.used] if info is not None else []
        self.findings = check_training_data(
            {r.role: self.summaries[r.role] for r in roles}, self.duplicates, self.validation,
            required=[r.role for r in roles if r.requirement == "required" and r.role not in self._scans],
            min_counts={r.role: r.min_count for r in roles})
        if self.validation_error:
            self.findings.insert(0, Finding("error", f"Validation data: {self.validation_error}", "validation"))
        if info is None:
            self.findings.insert(0, Finding("error", "The engine's methods are not read yet." if self.catalog_error is None
                                            else f"The engine's methods cannot be read: {self.catalog_error}"))
        busy = [r for r in self._scans] + (["validation"] if self._validation_thread is not None else [])
        running = self.job is not None and self.job.running
        errors = [f.text for f in self.findings if f.severity == "error"]
        spec = None
        if not errors and not busy and not running and info is not None:
            spec = self._spec()
            try:
                self.check.request(spec.train_args(info))
            except ValueError as exc:
                errors.append(str(exc))
                self.findings.append(Finding("error", str(exc)))
                spec = None
        if spec is None:
            self.check.cancel()
            self.check_result = None
            self.options_form.mark_problems({})
        checking = spec is not None and self.check.busy
        result = self.check.result if spec is not None else None
        if result is not None:
            errors += [self._problem_text(p) for p in result.problems if p.severity == "error"]
        self._show_findings(busy, checking, errors, result)
        name = self.name_edit.text().strip()
        ready = not errors and not busy and not running and bool(name) and result is not None and result.ok
        self.train_button.setEnabled(ready)
        why = errors[0] if errors else ("Reading the folders…" if busy else "Give the detector a name." if not name
                                        else "The engine is checking the data and settings…" if checking else "")
        self.train_button.setToolTip(why or "Train in the engine (a separate process); the app stays usable.")
        self.cancel_button.setVisible(running)
        self.stop_now_button.setVisible(running and self.job is not None and self.job.stopping)
        self.resume_button.setVisible(not running and self._resume_spec is not None)
        for w in (*self.zones.values(), self.method_combo, self.preset_combo, self.name_edit, self.options_form):
            w.setEnabled(not running)
        self.method_combo.setEnabled(not running and self.catalog is not None)
        self.unfinished.setEnabled(not running)

    def _show_findings(self, busy: list[str], checking: bool, errors: list[str], result: CheckResult | None) -> None:
        """The findings list: what is being read, a verdict, the app's findings, then the engine's check."""
        self.findings_list.clear()
        grey = QBrush(QColor(90, 90, 90))
        waiting = [f"… reading the {role} folder" for role in busy]
        if self._dup_thread is not None:  # not blocking: identical files are a warning at most
            waiting.append("… looking for identical images in the folders")
        if checking:
            waiting.append("… the engine is checking the data and settings (train --check)")
        for text in waiting:
            item = QListWidgetItem(text)
            item.setForeground(grey)
            self.findings_list.addItem(item)
        if not busy and (errors or result is not None):
            notes = self.findings or (result is not None and any(p.severity != "note" for p in result.problems))
            head = QListWidgetItem("✖  Not ready to train:" if errors else "✓  Ready to train: nothing blocks it."
                                   + (" Please read the notes below." if notes else ""))
            head.setForeground(QBrush(QColor(176, 0, 32) if errors else QColor(29, 122, 29)))
            font = head.font()
            font.setBold(True)
            head.setFont(font)
            self.findings_list.addItem(head)
        for f in self.findings:
            icon, colour = _SEVERITY_STYLE[f.severity]
            item = QListWidgetItem(f"{icon}  {f.text}")
            item.setForeground(QBrush(colour))
            if f.details:
                item.setToolTip("\n".join(f.details))
            self.findings_list.addItem(item)
        for p in result.problems if result is not None else ():
            icon, colour = _SEVERITY_STYLE[p.severity]
            item = QListWidgetItem(f"{icon}  {self._problem_text(p)}")
            item.setForeground(QBrush(colour))
            item.setToolTip("Found by the engine's check (train --check)")
            self.findings_list.addItem(item)

    def _problem_text(self, problem: CheckProblem) -> str:
        """One problem of the engine's check, with the field or folder to change."""
        where = ""
        if problem.option in ROLE_TITLES:
            where = f" Change the {ROLE_TITLES[problem.option][0].lower()}."
        elif problem.option and self.info is not None:
            try:
                option = self.info.option(problem.option)
            except KeyError:
                where = f" (engine option {problem.option})"
            else:
                where = f" Change “{option.label}” under Advanced settings."
        return f"Engine check: {problem.message}.{where}".replace("..", ".")

    @Slot(object)
    def _on_checked(self, result: CheckResult) -> None:
        self.check_result = result
        problems: dict[str, str] = {}
        for p in result.problems:
            if p.severity != "note" and p.option and p.option in self.options_form.fields:
                problems[p.option] = problems.get(p.option, "") + p.message
        self.options_form.mark_problems(problems)
        self._update()

    def can_train(self) -> bool:
        """Whether Train is available now."""
        return self.train_button.isEnabled()

    # ================================================================== jobs
    def _spec(self) -> JobSpec:
        """The job the panel shows now.

        Its run folder is planned once, until a job starts, and does not follow the name, so
        typing a name does not make the engine check again.
        """
        if self.info is None:
            raise RuntimeError("no method: the engine's methods are not read")
        info = self.info
        name = " ".join(self.name_edit.text().split())
        if self._stamp is None:
            self._stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        counts: dict[str, Any] = {r: {"images": s.count, "unreadable": len(s.unreadable), "folder": str(s.folder)}
                                  for r, s in self.summaries.items() if s is not None and info.role(r).used}
        for role, n in self.reader_counts.items():
            if role in counts:
                counts[role]["from_reader_marks"] = n
        if self.validation is not None:
            counts["validation"] = {"images": len(self.validation.paths), "normal": self.validation.n_normal,
                                    "abnormal": self.validation.n_abnormal}
        folders = {r.role: self.zones[r.role].path if r.used else None for r in info.roles}
        preset = str(self.preset_combo.currentData())
        normal = folders["normal"]
        if normal is None:
            raise ValueError(f"{info.title} needs the known-normal folder")
        return JobSpec(name=name, method=info.name, preset=preset, values=self.options_form.values(),
                       normal=normal, unlabeled=folders["unlabeled"], abnormal=folders["abnormal"],
                       run_dir=self.runs_root / f"{self._stamp}-{info.name}",
                       validation=self.zones["validation"].path if self.validation is not None else None,
                       counts=counts, base_preset=preset if preset != CUSTOM else self._base_preset)

    def start_training(self) -> TrainingJob | None:
        """Train with what the panel shows, as the engine checked it (None when it cannot start)."""
        if not self.can_train() or self.info is None:
            return None
        spec = self._spec()
        try:
            args = spec.train_args(self.info)
        except ValueError as exc:
            self._report("Settings not valid", str(exc))
            return None
        if self.check.result is None or self.check.result.args != tuple(args):
            self._update()  # changed since the check: check again first
            return None
        return self._run(spec, self.validation, self.info)

    def _run(self, spec: JobSpec, validation: LabelledValidation | None, info: MethodInfo) -> TrainingJob | None:
        try:
            job = TrainingJob(spec, self.library, info, self.settings.engine_command, validation,
                              self.settings.provider, self)
        except ValueError as exc:  # the engine's method no longer takes these settings
            self._report("Settings not valid", f"{spec.name}: {exc}")
            return None
        self.check.cancel()
        self._stamp = None
        pv = self.progress_view
        pv.reset()
        pv.set_method(info)
        job.stage_changed.connect(pv.on_stage)
        job.phase_changed.connect(pv.on_phase)
        job.progress.connect(pv.on_progress)
        job.epoch_ended.connect(pv.on_epoch)
        job.device_known.connect(pv.on_device)
        job.log.connect(pv.on_log)
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(self._on_failed)
        job.stopped.connect(self._on_stopped)
        job.finished.connect(self._on_job_finished)
        self.job = job
        self.last_entry = None
        self.last_failure = None
        self._resume_spec = None
        self.result_box.hide()
        self.idle_label.hide()
        pv.show()
        pv.on_log("info", f"{spec.name}: {spec.method}, run folder {spec.run_dir}")
        self.status_label.setText("Training in a separate process: the worklist stays usable. "
                                  "You can close this window; the training goes on.")
        self.workers.start(job)
        self.job_running.emit(True)
        self._update()
        return job

    def cancel_training(self) -> None:
        """Stop after the current epoch (a checkpoint is written; Resume continues)."""
        if self.job is None or not self.job.running:
            return
        self.job.cancel()
        self.status_label.setText("Stopping after the current epoch (writing a checkpoint)… "
                                  "“Stop now” ends it at once (Resume continues from the last checkpoint).")
        self._update()

    def stop_now(self) -> None:
        """End the engine at once."""
        if self.job is not None and self.job.running:
            self.job.stop_now()

    def resume_last(self) -> TrainingJob | None:
        """Resume the job that stopped last in this session."""
        if self._resume_spec is None:
            return None
        spec = self._resume_spec
        return self._resume(spec)

    def _resume(self, spec: JobSpec) -> TrainingJob | None:
        """Run a job again (the engine resumes it). With validation data, the labels are read first,
        in a worker, and None is returned: the job starts when they are read."""
        if self.job is not None and self.job.running:
            return None
        try:
            if self.catalog is None:
                raise KeyError("the engine's methods are not read" + (f": {self.catalog_error}" if self.catalog_error
                                                                      else " yet"))
            info = self.catalog.method(spec.method)
        except KeyError as exc:
            self._report("Cannot resume", f"{spec.name}: {exc.args[0]}")
            return None
        if spec.validation is None:
            return self._run(spec, None, info)
        source = spec.validation
        thread = CallThread(lambda: read_validation(source))

        def done(validation: LabelledValidation) -> None:
            self._run(spec, validation, info)

        def failed(message: str) -> None:
            self._report("Validation data unavailable", f"{message}\n\nThe training resumes without validation.")
            spec.validation = None
            self._run(spec, None, info)

        thread.returned.connect(done)
        thread.raised.connect(failed)
        self.status_label.setText("Reading the validation labels…")
        self.workers.start(thread)
        return None

    @Slot(object)
    def _on_succeeded(self, entry: LibraryEntry) -> None:
        self.last_entry = entry
        self.progress_view.finish(f"Done: “{entry.name}” is in the model library.", ok=True)
        self.card_view.show_entry(entry)
        self.result_box.show()
        total = sum(self.right_split.sizes()) or 900
        self.right_split.setSizes([int(total * 0.38), int(total * 0.62)])
        self.status_label.setText("Done. “Score the worklist with it” loads it; earlier scores are kept per "
                                  "detector (Detector ▸ Compare two detectors).")
        self.model_registered.emit(entry)

    @Slot(object)
    def _on_failed(self, failure: JobFailure) -> None:
        self.last_failure = failure
        self.progress_view.finish(failure.title, ok=False)
        if failure.resumable and self.job is not None:
            self._resume_spec = self.job.spec
        self.status_label.setText(failure.title + ". " + failure.message.splitlines()[0])
        self._report(failure.title, failure.message, failure.log_tail)

    @Slot(str)
    def _on_stopped(self, text: str) -> None:
        if self.job is not None:
            self._resume_spec = self.job.spec
        self.progress_view.finish("Stopped", ok=False)
        self.status_label.setText(text)

    @Slot()
    def _on_job_finished(self) -> None:
        self.refresh_unfinished()
        self._update()
        self.job_running.emit(False)

    # ================================================================== unfinished jobs
    def refresh_unfinished(self) -> None:
        """List jobs under the runs folder that can be resumed."""
        self.unfinished_list.clear()
        current = self.job.spec.run_dir if self.job is not None and self.job.running else None
        records = [r for r in find_jobs(self.runs_root) if r.resumable and r.spec.run_dir != current]
        for r in records:
            when = r.updated.replace("T", " ")[:16]
            text = f"{r.spec.name} — {r.status}" + (f", {r.progress}" if r.progress else "") + f" — {when} UTC"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, r)
            item.setToolTip(f"{r.spec.run_dir}" + (f"\n{r.error}" if r.error else ""))
            self.unfinished_list.addItem(item)
        if records:
            self.unfinished_list.setCurrentRow(0)
        self.unfinished.setVisible(bool(records))

    def _selected_record(self) -> JobRecord | None:
        item = self.unfinished_list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _resume_selected(self) -> None:
        record = self._selected_record()
        if record is not None:
            self._resume(record.spec)

    def _discard_selected(self) -> None:
        record = self._selected_record()
        if record is None:
            return
        answer = QMessageBox.question(self, "Discard training?",
                                      f"Delete the unfinished training “{record.spec.name}” and its checkpoint?\n"
                                      f"{record.spec.run_dir}\n\nThe images are not touched.",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        if answer == QMessageBox.StandardButton.Yes:
            shutil.rmtree(record.spec.run_dir, ignore_errors=True)
            if self._resume_spec is not None and self._resume_spec.run_dir == record.spec.run_dir:
                self._resume_spec = None
            self.refresh_unfinished()
            self._update()

    # ================================================================== misc
    def _report(self, title: str, text: str, details: str = "") -> None:
        logger.warning("%s: %s", title, text)
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        if details.strip():
            box.setDetailedText("Engine log (last lines):\n" + details.strip()[-6000:])
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setObjectName("job_error_box")
        box.open()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        event.accept()  # only hides the panel: a running job goes on

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 (Qt name)
        self.check.cancel()  # no engine process left behind a hidden panel; showing it checks again
        super().hideEvent(event)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        self._update()

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return self.job is not None and self.job.running

    def describe_job(self) -> str:
        """The running job in one line (for the close question)."""
        if not self.busy:
            return ""
        assert self.job is not None
        return f"“{self.job.spec.name}” ({self.progress_view.stage_label.text() or 'starting'})"

