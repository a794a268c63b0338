"""The detector card: what a detector is, what it was trained on, how it is calibrated.

:func:`card_sections` turns :class:`DetectorMetadata` into labelled rows (pure, tested);
:class:`DetectorCardDialog` shows them.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from cxrscreen.app.card_words import THRESHOLD_WORDS, intended_use_rows, training_rows, views_words
from cxrscreen.engine.detector import DetectorMetadata, NormalCalibration
from cxrscreen.engine.acquisition import AcquisitionReference, unlabeled_verdict
from cxrscreen.engine.scope import ScopeGate


def card_sections(meta: DetectorMetadata, path: Path | None = None, provider: str | None = None,
                  provider_note: str | None = None, site_calibrations: Sequence[NormalCalibration] = (),
                  active: NormalCalibration | None = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """The card as (section, [(label, value)]) in display order.

    ``site_calibrations`` (from the model library) get a section each, with their counts and
    intervals; ``active`` (None: the detector's own) is named in the Detector section.
    """
    p = meta.preprocess
    identity = [("Name", meta.name or "(unnamed)"), ("Model id", meta.model_id), ("Created", meta.created or "?")]
    if path is not None:
        identity.append(("File", str(path)))
    if provider:
        identity.append(("Runs on", provider.replace("ExecutionProvider", "")
                         + (f" — fallback: {provider_note}" if provider_note else "")))
    method = [("Method", meta.method), ("Backbone", meta.backbone), ("Score", meta.score_type),
              ("Input", f"{p.size} × {p.size}, aspect {p.aspect}, intensity {p.intensity}, "
                        f"range {p.output_range[0]:g}…{p.output_range[1]:g}")]
    views = meta.training.get("test_time_views")
    if isinstance(views, dict):  # how the file scores an image: after "Score", where a reader looks for it
        method.insert(3, ("Scored as", views_words(views)))
    calibration = _calibration_rows(meta.calibration)
    calibration.append(("Out-of-scope gate", ScopeGate.from_metadata(meta.scope).description))
    calibration.append(("Acquisition check", acquisition_description(meta.scope)))
    mix = unlabeled_verdict(meta.scope)
    if mix:
        calibration.append(("Unlabeled images", mix))
    training = training_rows(meta.training)
    metrics = [(str(k), _value(v)) for k, v in meta.metrics.items()]
    software = [(str(k), str(v)) for k, v in sorted(meta.software.items())]
    identity.append(("Calibration in use", (active or meta.calibration).label))
    sections = [("Detector", identity), ("Intended use and limitations", intended_use_rows(meta, active)), ("Method", method),
                ("Calibration on known normals", calibration)]
    for site in site_calibrations:
        sections.append((f"Site calibration “{site.name}”" + (" (in use)" if active is not None and site.name == active.name
                                                               else ""), _calibration_rows(site)))
    sections.append(("Training", training or [("", "not recorded")]))
    sections.append(("Validation metrics", metrics or [("", "none in the file")]))
    if software:
        sections.append(("Software", software))
    return sections


def _calibration_rows(cal: NormalCalibration) -> list[tuple[str, str]]:
    """Count, score range and the thresholds at 90 / 95 / 99 % with Clopper–Pearson intervals."""
    s = np.asarray(cal.normal_scores)
    source = cal.source or ""  # usually already counted: "60 held-out known normals (never trained on)"
    rows = [("Normals", source if source.startswith(f"{cal.n_normals} ") else
             f"{cal.n_normals} ({source})" if source else str(cal.n_normals)),
            ("Normal scores", f"min {s.min():.5g}, median {np.median(s):.5g}, max {s.max():.5g}"),
            ("Threshold estimate", THRESHOLD_WORDS[cal.threshold_method])]
    if cal.training_normal_scores:
        raised = cal.floor_levels()
        rows.append(("Training-normal floor", f"{len(cal.training_normal_scores)} training normals scored after training: "
                     "no threshold is below their estimate" + (
                         f"; it sets the threshold at {', '.join(raised)} (the held-out normals score lower than the "
                         "training normals there: they under-sample the normals' upper tail)" if raised else
                         "; below the held-out estimate at 90, 95 and 99 % (no change)")))
    for spec in (0.90, 0.95, 0.99):
        t = cal.threshold_at_specificity(spec)
        achieved, lo, hi = cal.achieved_specificity(t)
        text = (f"{t:.5g} ({100 * achieved:.1f} % of the normals at or below it; 95 % interval "
                f"{100 * lo:.1f}–{100 * hi:.1f} %)")
        if cal.floor_raises(spec):
            text += "; the training normals' floor"
        note = cal.operating_point_note(spec)
        rows.append((f"Threshold at {100 * spec:g} %", text + (f" — ⚠ {note}" if note else "")))
    if cal.name:  # a site calibration: what its acquisition check compares with
        rows.append(("Acquisition check", f"each folder's images against these {cal.acquisition.n} normals"
                     if cal.acquisition is not None else
                     "none: made without the normals' detail descriptors (a detector that stores no reference)"))
    return rows


def card_html(sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """The card as an HTML table."""
    out = ["<style>td{padding:2px 10px 2px 0; vertical-align:top;} h3{margin:10px 0 2px 0;}</style>"]
    for title, rows in sections:
        out.append(f"<h3>{html.escape(title)}</h3><table>")
        for k, v in rows:
            out.append(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>")
        out.append("</table>")
    return "".join(out)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.5g}"
    if isinstance(v, (dict, list)):
        text = json.dumps(v, sort_keys=True, default=str)
        return text if len(text) <= 400 else text[:400] + "…"
    return str(v)


class DetectorCardDialog(QDialog):
    """Shows a detector's card."""

    def __init__(self, meta: DetectorMetadata, path: Path | None = None, provider: str | None = None,
                 provider_note: str | None = None, parent: QWidget | None = None,
                 site_calibrations: Sequence[NormalCalibration] = (), active: NormalCalibration | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Detector card: {meta.name or meta.model_id[:8]}")
        self.resize(620, 620)
        layout = QVBoxLayout(self)
        self.text = QTextBrowser()
        self.text.setHtml(card_html(card_sections(meta, path, provider, provider_note, site_calibrations, active)))
        layout.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


def acquisition_description(scope: dict | None) -> str:
    """The card's line on the acquisition check (:mod:`engine.acquisition`)."""
    ref = AcquisitionReference.stored_in(scope)
    if ref is None:
        return ("none: this detector stores no reference of its training normals' detail (made before the check, "
                "or the demo), so images acquired or processed otherwise are not caught")
    return (f"each folder's images against {ref.n} training normals (detail at four scales); under a site "
            f"calibration, against its confirmed normals")

