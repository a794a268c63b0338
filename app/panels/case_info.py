"""The case panel: the detector's result for the case on screen, and its header tags.

Patient identifiers (name, id, accession, UIDs, and the full study date) are hidden by
default and shown as keyed pseudonyms; a check box bound to :class:`PrivacyState` shows them.
"""
from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxrscreen.app.pseudonym import DISPLAY_DIGITS, pseudonymise
from cxrscreen.app.records import CaseScore, format_date
from cxrscreen.app.state import PrivacyState
from cxrscreen.engine.detector import DetectorMetadata, NormalCalibration
from cxrscreen.engine.io import RadiographMeta

_HIDDEN_STYLE = "color: #888;"


FEW_NORMALS_SPECIFICITY = 0.95
FEW_NORMALS = NormalCalibration.normals_needed(FEW_NORMALS_SPECIFICITY)  # 20


class CaseInfoPanel(QWidget):
    """Score, percentile, flag, detector; and the file's tags.

    Args:
        privacy: whether identifiers are shown.
        key: the pseudonym key.
    """

    def __init__(self, privacy: PrivacyState, key: bytes, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.privacy = privacy
        self._key = key
        self._meta: RadiographMeta | None = None
        self._error: str | None = None
        self.score_label = QLabel("—")
        self.percentile_label = QLabel("—")
        self.flag_label = QLabel("—")
        self.detector_label = QLabel("none loaded")
        self.model_id_label = QLabel("")
        self.provider_label = QLabel("")
        for lab in (self.score_label, self.percentile_label, self.flag_label, self.detector_label,
                    self.model_id_label, self.provider_label):
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            lab.setWordWrap(True)
        self.percentile_label.setToolTip("Percent of the detector's held-out known-normal images that score lower")
        self.result_widget = QWidget()
        form = QFormLayout(self.result_widget)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Score", self.score_label)
        form.addRow("Pctl vs normals", self.percentile_label)
        form.addRow("Flag", self.flag_label)
        form.addRow("Detector", self.detector_label)
        form.addRow("Model id", self.model_id_label)
        form.addRow("Runs on", self.provider_label)
        self.show_ids_box = QCheckBox("Show patient identifiers (Ctrl+Shift+I)")
        self.tags = QTableWidget(0, 2)
        self.tags.setHorizontalHeaderLabels(["Tag", "Value"])
        self.tags.verticalHeader().hide()
        self.tags.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.tags.horizontalHeader().setStretchLastSection(True)
        self.tags.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tags.setWordWrap(True)
        self.tags.setAlternatingRowColors(True)
        self.tags_widget = QWidget()
        tags_layout = QVBoxLayout(self.tags_widget)
        tags_layout.setContentsMargins(0, 0, 0, 0)
        tags_layout.addWidget(self.show_ids_box)
        tags_layout.addWidget(self.tags, 1)
        layout = QVBoxLayout(self)  # the window may move the two parts into their own boxes
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.result_widget)
        layout.addWidget(self.tags_widget, 1)
        self.show_ids_box.toggled.connect(privacy.set_show_identifiers)
        privacy.changed.connect(self._on_privacy)

    # ------------------------------------------------------------------ result
    def set_detector(self, meta: DetectorMetadata | None, provider: str, provider_note: str | None) -> None:
        """The active detector."""
        if meta is None:
            self.detector_label.setText("none loaded")
            self.model_id_label.setText("")
            self.provider_label.setText("")
            return
        self.detector_label.setText(meta.name or f"{meta.method} {meta.backbone}")
        self.model_id_label.setText(meta.model_id[:12])
        self.model_id_label.setToolTip(meta.model_id)
        short = provider.replace("ExecutionProvider", "")
        self.provider_label.setText(short + (f" (fallback: {provider_note})" if provider_note else ""))

    def set_result(self, score: CaseScore | None, flagged: bool | None, n_normals: int | None,
                   pending: str = "") -> None:
        """The active detector's result for the case (``pending`` says why there is none yet)."""
        if score is None:
            self.score_label.setText(pending or "—")
            self.percentile_label.setText("—")
            self.flag_label.setText("—")
            self.flag_label.setStyleSheet("")
            return
        self.score_label.setText(f"{score.score:.6g}")
        few = n_normals is not None and 0 < n_normals < FEW_NORMALS  # a percentile among 3 normals is weak evidence
        p = score.percentile
        if n_normals:  # "85.0 of 60 normals" read as a count: say what the percent is of
            text = f"{p:.1f} %: above all {n_normals} normals" if p >= 100 else \
                f"{p:.1f} % of {n_normals} normals score lower"
        else:
            text = f"{p:.1f}" + (" (above all)" if p >= 100 else "")
        self.percentile_label.setText(text + (f" — too few for a {100 * FEW_NORMALS_SPECIFICITY:g} % threshold"
                                              if few else ""))
        if flagged:
            self.flag_label.setText("FLAGGED: above the operating point")
            self.flag_label.setStyleSheet("color: white; background: #b82020; padding: 2px; font-weight: bold;")
        else:
            self.flag_label.setText("not flagged")
            self.flag_label.setStyleSheet("")

    # ------------------------------------------------------------------ tags
    def set_meta(self, meta: RadiographMeta | None, error: str | None = None) -> None:
        """The file's header (None: nothing shown); ``error`` says why it cannot be read."""
        self._meta, self._error = meta, error
        rows: list[tuple[str, str, bool]] = []  # tag, value, hidden identifier
        if error:
            rows.append(("Cannot read", error, False))
        if meta is not None:
            show = self.privacy.show_identifiers
            rows += [
                ("File", str(meta.path), False),
                ("Format", meta.format.upper() + (f" ({meta.transfer_syntax})" if meta.transfer_syntax else ""), False),
                ("Size", f"{meta.columns} × {meta.rows} px", False),
                ("Bits stored", str(meta.bits_stored or ""), False),
                ("Photometric", meta.photometric or "", False),
                ("Modality", meta.modality or "", False),
                ("View", meta.view_position or "", False),
                ("Body part", meta.body_part or "", False),
            ]
            rows += self._identifier_rows(meta, show)
            if meta.pixel_spacing_mm:
                r, c = meta.pixel_spacing_mm
                rows.append(("Pixel spacing", f"{r:g} × {c:g} mm ({meta.spacing_source})", False))
            if meta.presentation_intent:
                rows.append(("Presentation", meta.presentation_intent, False))
            if meta.number_of_frames > 1:
                rows.append(("Frames", str(meta.number_of_frames), False))
            for i, p in enumerate(meta.window_presets):
                rows.append((f"Window {i + 1}", f"{p.center:g} / {p.width:g} {p.name} {p.function}".strip(), False))
            for note in meta.notes:
                rows.append(("Reader note", note, False))
        rows = [r for r in rows if r[1]]
        self.tags.setRowCount(len(rows))
        for i, (tag, value, hidden) in enumerate(rows):
            t = QTableWidgetItem(tag)
            v = QTableWidgetItem(value)
            v.setToolTip(value)
            if hidden:
                v.setForeground(Qt.GlobalColor.gray)
            self.tags.setItem(i, 0, t)
            self.tags.setItem(i, 1, v)
        self.tags.resizeRowsToContents()

    def _identifier_rows(self, meta: RadiographMeta, show: bool) -> list[tuple[str, str, bool]]:
        k = self._key

        def hide(value: str | None, kind: str) -> tuple[str, bool]:
            if not value:
                return "", False
            if show:
                return value, False
            return f"hidden ({pseudonymise(value, k, kind, DISPLAY_DIGITS)})", True  # type: ignore[arg-type]

        out = []
        for tag, value, kind in (("Patient name", meta.patient_name, "patient"),
                                 ("Patient id", meta.patient_id, "patient"),
                                 ("Accession", meta.accession_number, "accession"),
                                 ("Study UID", meta.study_uid, "study"),
                                 ("Series UID", meta.series_uid, "series"),
                                 ("SOP UID", meta.sop_uid, "instance")):
            if tag == "Patient name" and not show:
                text, hidden = ("hidden", True) if value else ("", False)
            else:
                text, hidden = hide(value, kind)
            out.append((tag, text, hidden))
        if meta.study_date:
            out.append(("Study date", format_date(meta.study_date, full=show), not show))
        return out

    def _on_privacy(self, show: bool) -> None:
        with QSignalBlocker(self.show_ids_box):
            self.show_ids_box.setChecked(show)
        self.set_meta(self._meta, self._error)
