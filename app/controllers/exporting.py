"""Exporting the worklist's results to CSV: what to export, where, with or without identifiers.

Moved out of the main window (which only wires it to its action): the export dialog, the file
choice, the overwrite question, the rows (:mod:`app.export`) and the audit record.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QMessageBox

from cxrscreen.app.export import ExportContext, export_rows, select_records, write_export
from cxrscreen.app.export_dialog import ExportDialog

if TYPE_CHECKING:
    from cxrscreen.app.main_window import MainWindow


def export_csv(window: "MainWindow", path: Path | None = None, scope: str | None = None,
               include_identifiers: bool | None = None) -> Path | None:
    """Export results to CSV; asks for what is not given; never overwrites without asking.

    Returns:
        The written file, or None when nothing was written.
    """
    if window.detector is None:
        window.report_error("Nothing to export", "Load a detector and score the worklist first.")
        return None
    mid = window.detector.meta.model_id
    threshold = window.operating.threshold(window.detector.calibration)
    records = [window.model.record(window.worklist.proxy.mapToSource(window.worklist.proxy.index(r, 0)).row())
               for r in range(window.worklist.proxy.rowCount())]
    if window.worklist.proxy.flagged_only or window.worklist.proxy.filter_text:
        records = list(window.model.records())  # exports cover the whole worklist, not the filter
    selected = window.worklist.selected_records()
    if scope is None or include_identifiers is None:
        counts = {"flagged": len(select_records(records, "flagged", mid, threshold)), "all": len(records),
                  "selected": len(selected)}
        dialog = ExportDialog(counts, window)
        if dialog.exec() != ExportDialog.DialogCode.Accepted:
            return None
        scope, include_identifiers = dialog.scope, dialog.include_identifiers
    if path is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
        suggested = (window.settings.last_folder or Path.home()) / f"cxrscreen-{scope}-{stamp}.csv"
        name, _ = QFileDialog.getSaveFileName(window, "Export CSV", str(suggested), "CSV (*.csv)",
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if not name:
            return None
        path = Path(name)
    overwrite = False
    if path.exists():
        answer = QMessageBox.question(window, "Replace file?", f"{path} exists. Replace it?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            window.statusBar().showMessage("Export cancelled: the existing file was kept.", 5000)
            return None
        overwrite = True
    chosen = select_records(records, scope, mid, threshold, selected)  # type: ignore[arg-type]
    ctx = ExportContext(window.detector.meta, threshold, window.operating.describe(window.detector.calibration),
                        bool(include_identifiers), window.key, datetime.datetime.now(datetime.timezone.utc),
                        roots=tuple(window.roots), calibration=window.detector.calibration.label)
    try:
        n = write_export(path, export_rows(chosen, ctx), overwrite=overwrite)
    except (OSError, FileExistsError) as exc:
        window.report_error("Export failed", f"{path}\n\n{exc}")
        return None
    window.reading.audit_export(mid, str(scope), n, bool(include_identifiers))
    window.statusBar().showMessage(f"Exported {n} cases to {path}", 8000)
    return path
