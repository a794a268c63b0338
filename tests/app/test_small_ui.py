"""Issue 14's smaller UI pieces: add-folders dialog, eliding status bar, About, worklist file names."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QFileSystemModel, QLabel, QListView

from cxrscreen.app.about import about_text
from cxrscreen.app.add_paths_dialog import AddPathsDialog
from cxrscreen.app.status_bar import ElidingStatusBar


def test_add_dialog_adds_selected_folders_or_the_one_shown(qtbot, tmp_path: Path) -> None:
    for name in ("study A", "study B"):
        (tmp_path / name).mkdir()
    (tmp_path / "IM-0001.png").write_bytes(b"x")
    dialog = AddPathsDialog(None, tmp_path)
    qtbot.addWidget(dialog)
    dialog.accept_folders()  # nothing selected: the folder shown
    assert dialog.chosen == [tmp_path] and dialog.result() == AddPathsDialog.DialogCode.Accepted

    dialog = AddPathsDialog(None, tmp_path)
    qtbot.addWidget(dialog)
    view = dialog.findChild(QListView, "listView")
    model = view.model()
    assert isinstance(model, QFileSystemModel)
    qtbot.waitUntil(lambda: model.index(str(tmp_path / "study B")).isValid() and
                    model.rowCount(model.index(str(tmp_path))) == 3, timeout=5000)
    for name in ("study A", "study B"):
        view.selectionModel().select(model.index(str(tmp_path / name)),
                                     QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)
    assert dialog.selected_folders() == [tmp_path / "study A", tmp_path / "study B"]
    dialog.accept_folders()
    assert dialog.chosen == [tmp_path / "study A", tmp_path / "study B"]


def test_long_status_messages_stop_before_the_permanent_widgets(qtbot) -> None:
    bar = ElidingStatusBar()
    qtbot.addWidget(bar)
    counts = QLabel("10,000 files · 9,990 scored · 512 flagged · 3 out of scope")
    bar.addPermanentWidget(counts)
    bar.resize(700, 24)
    bar.show()
    qtbot.waitExposed(bar)
    text = "IM-0001.jpeg: out of scope: " + "unlike the chest radiographs this detector was calibrated on " * 3
    bar.showMessage(text)
    shown = bar.currentMessage()
    assert shown != text and shown.endswith("…") and bar.fontMetrics().horizontalAdvance(shown) <= bar.free_width()
    assert bar.full_message() == text and bar.toolTip() == text
    bar.showMessage("Scored 12 files")  # a short one is shown as it is, without a tooltip
    assert bar.currentMessage() == "Scored 12 files" and bar.toolTip() == ""


def test_about_names_the_version_and_what_it_is_not() -> None:
    from importlib import metadata

    text = about_text()
    assert f"cxrscreen {metadata.version('cxrscreen')}" in text and "Not a medical device" in text


def test_worklist_file_column_keeps_the_end_of_the_path(qtbot) -> None:
    from cxrscreen.app.records import CaseRecord
    from cxrscreen.app.worklist.model import Column, WorklistModel
    from cxrscreen.app.worklist.panel import WorklistPanel

    model = WorklistModel(b"k" * 32)
    root = Path("/archive")
    model.clear([root])
    model.add_records([CaseRecord(root / "Radiology department archive 2024" / "Emergency chest studies" / "IM-0001.jpeg")])
    panel = WorklistPanel(model)
    qtbot.addWidget(panel)
    panel.resize(460, 400)
    panel.show()
    qtbot.waitExposed(panel)
    delegate = panel.table.itemDelegateForColumn(Column.FILE)
    from PySide6.QtWidgets import QStyleOptionViewItem
    option = QStyleOptionViewItem()
    delegate.initStyleOption(option, panel.proxy.index(0, Column.FILE))
    assert option.textElideMode == Qt.TextElideMode.ElideLeft  # "…/IM-0001.jpeg"
    # without identifiers in any file, Patient and Study take no room; View and Status fit
    assert panel.table.isColumnHidden(Column.PATIENT) and panel.table.isColumnHidden(Column.STUDY)
    hh = panel.table.horizontalHeader()
    right = max(hh.sectionViewportPosition(c) + hh.sectionSize(c) for c in (Column.VIEW, Column.STATUS))
    assert right <= panel.table.viewport().width()


def test_counts_text_says_out_of_scope_apart() -> None:
    from cxrscreen.app.status_bar import counts_text

    c = {"files": 16, "readable": 16, "scored": 12, "flagged": 2, "unreadable": 0, "out_of_scope": 4}
    assert counts_text(c, has_detector=True) == "16 files · 12 scored · 2 flagged · 4 out of scope"
    assert counts_text({**c, "out_of_scope": 0}, has_detector=False) == "16 files"
    assert counts_text({**c, "files": 0}, has_detector=True) == "no files"


def test_viewer_title_and_badge_never_overlap(qtbot) -> None:
    from cxrscreen.app.state import ViewerState
    from cxrscreen.app.viewer.view import RadiographView

    view = RadiographView(ViewerState())
    qtbot.addWidget(view)
    view.show()
    view.set_title("Radiology department archive 2024/Emergency chest studies/IM-0001.jpeg  (1 of 16)")
    view.badge_label.setText("score 0.1108 · pctl 100.0 · flagged")  # as set_badge writes it for a case on screen
    view.badge_label.show()
    for width in (900, 320, 200):
        view.graphics.resize(width, 400)
        view._layout_labels()
        title, badge = view.title_label.geometry(), view.badge_label.geometry()
        assert not title.intersects(badge), (width, title, badge)
    assert badge.top() > title.bottom()  # at 200 px: the badge below the title
