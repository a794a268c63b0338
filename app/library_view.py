"""The model library window: list, card, rename, delete, import, default, load.

:func:`entry_sections` turns a library entry's card into labelled rows (pure, tested):
the detector card of :mod:`app.detector_card`, plus how it was trained in the app (method,
preset, data folders and counts, device, time, engine version, the exact command) and its
validation (AUROC / AP with 95 % intervals, operating points). :class:`CardView` shows them
with the ROC figure; :class:`LibraryDialog` is the window.
"""
from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cxrscreen.app.detector_card import card_html, card_sections
from cxrscreen.app.library import LibraryEntry, LibraryError, ModelLibrary
from cxrscreen.app.training.options import LABELS
from cxrscreen.engine.detector import DetectorError, DetectorMetadata

logger = logging.getLogger(__name__)
Sections = list[tuple[str, list[tuple[str, str]]]]


def _ci(metric: Any) -> str:
    if not isinstance(metric, dict) or not isinstance(metric.get("value"), (int, float)):
        return "—"
    lo, hi = (metric.get("ci95") or [None, None])[:2]
    ci = f" [{lo:.3f}, {hi:.3f}]" if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else ""
    return f"{metric['value']:.3f}{ci}"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "—"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {sec:02d} s" if m else f"{sec} s")


def validation_headline(entry: LibraryEntry) -> str:
    """ "AUROC 0.965 [0.952, 0.977] · AP 0.980 [...] · 642 images" or "" when not validated."""
    v = entry.validation
    if not v or "auroc" not in v:
        return ""
    return (f"AUROC {_ci(v.get('auroc'))} · AP {_ci(v.get('ap'))} · {v.get('n', '?')} labelled images "
            f"({v.get('n_normal', '?')} normal, {v.get('n_abnormal', '?')} abnormal)")


def _setting_text(key: str, value: object) -> str:
    """A setting as a reader understands it: the engine's 0 threads means every core, device auto a GPU if any."""
    if key == "threads" and value in (0, "0"):
        return "all cores"
    if key == "device" and value == "auto":
        return "auto (GPU if available)"
    if key == "calibration_fraction" and isinstance(value, (int, float)):
        return f"{value:.0%}"
    return str(value)


def entry_sections(entry: LibraryEntry) -> Sections:
    """The card of a library entry as (section, [(label, value)]), in display order."""
    card = entry.card
    meta = DetectorMetadata.from_json(json.dumps({**card, "name": entry.name}))
    sections: Sections = []
    library = [("Name", entry.name + ("  ★ default" if entry.is_default else "")), ("Added", str(card.get("added", "?"))),
               ("Source", str(card.get("source", "?"))), ("Folder", str(entry.folder))]
    job = card.get("training_job")
    if isinstance(job, dict):
        counts = job.get("counts") or {}
        used = job.get("images_used") or {}
        rows = [("Method", str(job.get("method_title") or job.get("method"))),
                ("Preset", str(job.get("preset", "?"))),
                ("Settings", "; ".join(f"{LABELS.get(k, k)} {_setting_text(k, v)}"
                                       for k, v in sorted((job.get("settings") or {}).items())))]
        for role, folder in (job.get("folders") or {}).items():
            if folder:
                c = counts.get(role) or {}
                extra = f" — {c.get('images', '?'):,} images" if isinstance(c.get("images"), int) else ""
                if c.get("unreadable"):
                    extra += f", {c['unreadable']:,} unreadable (left out)"
                if isinstance(c.get("from_reader_marks"), int):
                    extra += f", {c['from_reader_marks']:,} from reader marks"
                rows.append((f"{role.capitalize()} folder", f"{folder}{extra}"))
        if used:
            rows.append(("Images used", f"{used.get('normal_train', '?')} known normals for training, "
                                        f"{used.get('normal_calibration', '?')} held out for calibration, "
                                        f"{used.get('unlabeled', '?')} unlabeled"))
        device = str(job.get("device", "?"))
        rows += [("Trained on", f"GPU ({device})" if device.startswith("cuda") else device.upper()),
                 ("Training time", _duration(job.get("train_seconds"))),
                 ("Started / finished", f"{job.get('started', '?')} / {job.get('finished', '?')}"),
                 ("Engine version", str(job.get("engine_version", "?"))), ("Command", str(job.get("command", "")))]
        sections.append(("Trained in the app", rows))
    v = entry.validation
    if v is not None:
        rows = [("Data", str(v.get("source", "?")))]
        if "error" in v:
            rows.append(("Result", f"not validated: {v['error']}"))
        else:
            rows += [("Images", f"{v.get('n')} ({v.get('n_normal')} normal, {v.get('n_abnormal')} abnormal)"),
                     ("AUROC (95 % CI)", _ci(v.get("auroc"))), ("AP (95 % CI)", _ci(v.get("ap")))]
            normals = (v.get("operating_points") or {}).get("normals") or {}
            if normals:
                rows.append(("At 95 % specificity on calibration normals",
                             f"sensitivity {_ci(normals.get('sensitivity'))}, specificity {_ci(normals.get('specificity'))}"))
            for spec, metric in sorted((v.get("sensitivity_at_specificity") or {}).items()):
                rows.append((f"Sensitivity at {float(spec) * 100:g} % specificity (these labels)", _ci(metric)))
        sections.append(("Validation (labelled images never trained on)", rows))
    sections.append(("Model library", library))
    for title, rows in card_sections(meta, entry.path, site_calibrations=entry.site_calibrations,
                                     active=entry.active_calibration):
        if title == "Training data" and isinstance(job, dict):
            continue  # the app's own section above says it readably
        if title == "Validation metrics" and v is not None:
            continue
        sections.append((title, rows))
    return sections


class CardView(QWidget):
    """A library entry's card, with its ROC / score-histogram figure when validated."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.headline = QLabel("")
        self.headline.setWordWrap(True)
        self.headline.setStyleSheet("font-weight: bold; font-size: 13px;")
        self.text = QTextBrowser()
        self.text.setOpenLinks(False)
        self.roc = QLabel()
        self.roc.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.roc.setMinimumHeight(260)
        self.roc.setToolTip("ROC curve and score histogram on the labelled validation images (cxrscreen eval)")
        self._pixmap: QPixmap | None = None
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.text)
        split.addWidget(self.roc)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        layout.addWidget(self.headline)
        layout.addWidget(split, 1)
        self.clear()

    def clear(self) -> None:
        self.headline.setText("")
        self.text.setHtml("<p>No model selected.</p>")
        self.roc.clear()
        self.roc.hide()
        self._pixmap = None

    def show_entry(self, entry: LibraryEntry) -> None:
        """Show an entry's card (and its ROC figure)."""
        head = validation_headline(entry)
        self.headline.setText(html.escape(entry.name) + (f"<br><span style='color:#1d5f9e'>{html.escape(head)}</span>"
                                                         if head else ""))
        try:
            self.text.setHtml(card_html(entry_sections(entry)))
        except (ValueError, KeyError, TypeError) as exc:  # a card written by another version
            self.text.setHtml(f"<p>This model's card cannot be shown: {html.escape(str(exc))}</p>")
        image = entry.roc_image
        self._pixmap = QPixmap(str(image)) if image is not None else None
        self.roc.setVisible(self._pixmap is not None and not self._pixmap.isNull())
        self._scale()

    def _scale(self) -> None:
        if self._pixmap is not None and not self._pixmap.isNull():
            self.roc.setPixmap(self._pixmap.scaled(max(200, self.roc.width()), max(150, self.roc.height()),
                                                   Qt.AspectRatioMode.KeepAspectRatio,
                                                   Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(event)
        self._scale()


class LibraryDialog(QDialog):
    """The model library: every detector, its card, and what can be done with it.

    Args:
        library: the library.
        active_model_id: the detector loaded in the window (it cannot be deleted).

    Signals:
        load_requested(Path): load this detector (and score the worklist with it).
        changed(): the library changed (renamed, deleted, imported, default).
        compare_requested(): open the two-detector comparison.
    """

    load_requested = Signal(object)
    changed = Signal()
    compare_requested = Signal()

    COLUMNS = ("", "Name", "Method", "Training images", "Validation AUROC", "Created")

    def __init__(self, library: ModelLibrary, active_model_id: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Model library — {library.root}")
        self.setObjectName("library_dialog")
        self.resize(1250, 780)
        self.library = library
        self.active_model_id = active_model_id
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemDoubleClicked.connect(lambda _i: self.load_selected())
        self.card = CardView()
        buttons = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for key, text, slot in (("load", "Load and score", self.load_selected), ("rename", "Rename…", self.rename_selected),
                                ("default", "Set as default", self.default_selected),
                                ("delete", "Delete…", self.delete_selected), ("import", "Import .onnx…", self.import_file),
                                ("compare", "Compare two detectors…", self.compare_requested.emit)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            b.setObjectName(f"library_{key}")
            self.buttons[key] = b
            buttons.addWidget(b)
        buttons.addStretch(1)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons.addWidget(close)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        self.empty_label = QLabel(f"The library is empty. Train a detector (Detector ▸ New detector…) or import an "
                                  f".onnx file. Folder: {library.root}")
        self.empty_label.setWordWrap(True)
        ll.addWidget(self.table)
        ll.addWidget(self.empty_label)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.card)
        split.addWidget(scroll)
        split.setSizes([720, 530])
        layout = QVBoxLayout(self)
        layout.addWidget(split, 1)
        layout.addLayout(buttons)
        self.entries: list[LibraryEntry] = []
        self.refresh()

    # ------------------------------------------------------------------ list
    def refresh(self, select: str | None = None) -> None:
        """Re-read the library (keeping or choosing the selection)."""
        current = select or (self.selected().model_id if self.selected() is not None else None)
        self.entries = self.library.entries()
        self.table.setRowCount(len(self.entries))
        for row, e in enumerate(self.entries):
            job = e.card.get("training_job") or {}
            counts = (job.get("images_used") or {}) if isinstance(job, dict) else {}
            trained = (f"{counts.get('normal_train', '?')} normal + {counts.get('unlabeled', '?')} unlabeled"
                       if counts else _training_counts(e.card))
            v = e.validation or {}
            auroc = _ci(v.get("auroc")) if "auroc" in v else ("failed" if "error" in v else "—")
            method = f"{e.card.get('method', '?')} / {e.card.get('backbone', '?')}"
            cells = ("★" if e.is_default else ("●" if e.model_id == self.active_model_id else ""), e.name, method,
                     trained, auroc, str(e.card.get("created", ""))[:16].replace("T", " "))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setToolTip(f"{e.name}\n{e.model_id}")
                if col == 0:
                    item.setToolTip("★ default detector" if e.is_default else
                                    ("● loaded now" if e.model_id == self.active_model_id else ""))
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(0, 28)
        self.empty_label.setVisible(not self.entries)
        row = next((i for i, e in enumerate(self.entries) if e.model_id == current), 0 if self.entries else -1)
        if row >= 0:
            self.table.selectRow(row)
        self._on_selection()

    def selected(self) -> LibraryEntry | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or not 0 <= rows[0].row() < len(self.entries):
            return None
        return self.entries[rows[0].row()]

    def select(self, model_id: str) -> bool:
        """Select a model by id."""
        row = next((i for i, e in enumerate(self.entries) if e.model_id == model_id), -1)
        if row >= 0:
            self.table.selectRow(row)
        return row >= 0

    def _on_selection(self) -> None:
        e = self.selected()
        for key in ("load", "rename", "default", "delete"):
            self.buttons[key].setEnabled(e is not None)
        self.buttons["compare"].setEnabled(len(self.entries) >= 2 or bool(self.entries))
        if e is None:
            self.card.clear()
        else:
            self.card.show_entry(e)
            self.buttons["delete"].setToolTip("The loaded detector cannot be deleted; load another first."
                                              if e.model_id == self.active_model_id else "Delete this model")

    # ------------------------------------------------------------------ actions
    def load_selected(self) -> None:
        e = self.selected()
        if e is not None:
            self.load_requested.emit(e.path)

    def rename_selected(self, name: str | None = None) -> bool:
        """Rename the selected model (asks when ``name`` is None)."""
        e = self.selected()
        if e is None:
            return False
        if name is None:
            name, ok = QInputDialog.getText(self, "Rename detector", "Name:", text=e.name)
            if not ok:
                return False
        try:
            self.library.rename(e.model_id, name)
        except (LibraryError, OSError) as exc:
            self._error("Cannot rename", str(exc))
            return False
        self.refresh(e.model_id)
        self.changed.emit()
        return True

    def default_selected(self) -> None:
        e = self.selected()
        if e is None:
            return
        try:
            self.library.set_default(e.model_id)
        except (LibraryError, OSError) as exc:
            self._error("Cannot set the default", str(exc))
            return
        self.refresh(e.model_id)
        self.changed.emit()

    def delete_selected(self, confirm: bool = True) -> bool:
        """Delete the selected model (after a Yes)."""
        e = self.selected()
        if e is None:
            return False
        if e.model_id == self.active_model_id:
            self._error("Detector in use", f"“{e.name}” is the loaded detector. Load another one first.")
            return False
        if confirm:
            answer = QMessageBox.question(self, "Delete detector?",
                                          f"Delete “{e.name}” ({e.model_id[:8]}) from the library?\n{e.folder}\n\n"
                                          "Scores it gave in this session stay in the worklist.",
                                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                          QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            self.library.delete(e.model_id)
        except (LibraryError, OSError) as exc:
            self._error("Cannot delete", str(exc))
            return False
        self.refresh()
        self.changed.emit()
        return True

    def import_file(self, path: Path | None = None) -> LibraryEntry | None:
        """Copy a detector file into the library (asks for it when ``path`` is None)."""
        if path is None:
            name, _ = QFileDialog.getOpenFileName(self, "Import detector", str(Path.home()),
                                                  "ONNX detectors (*.onnx);;All files (*)")
            if not name:
                return None
            path = Path(name)
        before = {e.model_id for e in self.entries}
        try:
            entry = self.library.add(path)
        except (DetectorError, LibraryError, OSError) as exc:
            self._error("Cannot import", f"{path}\n\n{getattr(exc, 'reason', exc)}")
            return None
        self.refresh(entry.model_id)
        if entry.model_id in before:
            self._error("Already in the library", f"This detector is already in the library as “{entry.name}”.",
                        QMessageBox.Icon.Information)
        else:
            self.changed.emit()
            if entry.renamed_note:
                self._error("Added under another name", entry.renamed_note, QMessageBox.Icon.Information)
        return entry

    def _error(self, title: str, text: str, icon: QMessageBox.Icon = QMessageBox.Icon.Warning) -> None:
        box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setObjectName("library_message")
        box.open()


def _training_counts(card: dict[str, Any]) -> str:
    t = card.get("training") or {}
    if isinstance(t, dict) and isinstance(t.get("normal_train"), int) and t.get("normal_train"):
        return f"{t['normal_train']} normal + {t.get('unlabeled', '?')} unlabeled"
    return "—"
