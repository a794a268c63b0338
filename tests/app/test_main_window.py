"""The main window end to end (offscreen): open, score, flag, view, export, drop, cancel, close."""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.main_window import MainWindow
from cxrscreen.app.settings import AppSettings
from cxrscreen.app.worklist.model import Column


# A deadline for a hang, not a speed test: scoring the 10-image study takes about 3 s on an idle
# 2-core machine and 14 s beside another test worker and a training (`make test` runs two workers).
SCORING_TIMEOUT_MS = 60_000


@pytest.fixture
def window(qtbot, settings_path: Path, tmp_path: Path):
    # not qtbot.addWidget: it deletes the window at teardown, before it has stopped its workers
    w = MainWindow(AppSettings(settings_path), ModelLibrary(tmp_path / "library"), batch_size=4, decode_workers=1)
    w.resize(1400, 900)
    w.show()
    yield w
    if w.isVisible():
        w.close()
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=10_000)
    w.workers.stop_all()
    assert w.workers.wait_all(10_000)
    w.deleteLater()


def _load_and_score(qtbot, window: MainWindow, folder: Path, detector: Path) -> None:
    window.load_detector(detector, provider="cpu")
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    window.open_paths([folder])
    qtbot.waitUntil(lambda: not window.indexing_active and window.model.rowCount() > 0, timeout=10_000)
    qtbot.waitUntil(lambda: not window.is_scoring, timeout=SCORING_TIMEOUT_MS)


def _n_images(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.suffix in (".png", ".dcm"))


def test_opens_scores_and_shows_the_most_suspicious_case(qtbot, window: MainWindow, study: Path,
                                                        tiny_detector: Path) -> None:
    _load_and_score(qtbot, window, study, tiny_detector)
    counts = window.model.counts()
    assert counts["files"] == counts["scored"] == _n_images(study)
    # sorted most suspicious first: by itself until the reader starts (a case on screen for
    # 1.5 s is read), from then on when the reader asks (S), so that no row moves under them
    proxy = window.worklist.proxy

    def scores() -> list[float]:
        return [float(proxy.index(r, Column.SCORE).data()) for r in range(proxy.rowCount())]

    # the order freezes when the first case has been on screen for 1.5 s, which can come before the
    # list's last automatic sort: then only S sorts it (checked after either has happened, not before)
    qtbot.waitUntil(lambda: window.model.order_frozen or scores() == sorted(scores(), reverse=True), timeout=5_000)
    if window.model.order_frozen:
        window.actions["resort"].trigger()
    qtbot.waitUntil(lambda: scores() == sorted(scores(), reverse=True), timeout=2_000)
    qtbot.waitUntil(lambda: window.viewer.case is not None, timeout=10_000)
    case = window.viewer.case
    assert case.analysis is not None and case.analysis.model_id == window.detector.meta.model_id
    assert window.viewer.badge_label.text().startswith("score ")
    # the overlay covers exactly the image
    img_rect = window.viewer.image_item.mapRectToParent(window.viewer.image_item.boundingRect())
    ov_rect = window.viewer.overlay_item.mapRectToParent(window.viewer.overlay_item.boundingRect())
    assert (ov_rect.x(), ov_rect.y(), ov_rect.width(), ov_rect.height()) == pytest.approx(
        (img_rect.x(), img_rect.y(), img_rect.width(), img_rect.height()))
    assert "CPU" in window.provider_label.text()


def test_operating_point_moves_flags_at_once(qtbot, window: MainWindow, study: Path, tiny_detector: Path) -> None:
    _load_and_score(qtbot, window, study, tiny_detector)
    scores = sorted(r.scores[window.detector.meta.model_id].score for r in window.model.records())
    window.operating.set_score_threshold((scores[2] + scores[3]) / 2)  # 3 below, the rest above
    assert window.model.counts()["flagged"] == len(scores) - 3  # no wait: flags are computed on read
    window.worklist.flagged_box.setChecked(True)
    assert window.worklist.proxy.rowCount() == len(scores) - 3
    assert window.actions["flagged_only"].isChecked()  # action and check box agree
    window.operating.set_score_threshold(scores[-1] + 1.0)
    assert window.worklist.proxy.rowCount() == 0
    # the control shows the raw threshold; choosing 99 % there switches back
    ctl = window.operating_control
    assert ctl.mode_combo.currentData() == "raw score threshold"
    ctl.mode_combo.setCurrentIndex(ctl.mode_combo.findData(0.99))
    assert window.operating.mode == "specificity" and window.operating.specificity == 0.99


def test_unreadable_files_stay_listed_with_their_reason(qtbot, window: MainWindow, mixed_folder: Path) -> None:
    window.open_paths([mixed_folder])
    qtbot.waitUntil(lambda: not window.indexing_active and window.model.rowCount() == 4, timeout=10_000)
    status = {window.model.record(r).path.name: window.model.index(r, Column.STATUS).data()
              for r in range(window.model.rowCount())}
    assert status["cut.dcm"].startswith("unreadable:") and status["empty.png"].startswith("unreadable:")
    # choosing an unreadable file shows why instead of an image
    bad_row = window.worklist.proxy.mapFromSource(window.model.index(
        window.model.row_of(mixed_folder / "cut.dcm"), Column.FILE)).row()
    window.worklist.select_row(bad_row)
    assert window.viewer.case is None and "Cannot read" in window.viewer.message_label.text()


def test_drop_adds_folders_and_files(qtbot, window: MainWindow, study: Path, mixed_folder: Path) -> None:
    files = sorted(p for p in study.iterdir() if p.suffix == ".png")[:2]
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(mixed_folder / "sub")), *(QUrl.fromLocalFile(str(f)) for f in files)])
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, drop)
    qtbot.waitUntil(lambda: window.model.rowCount() == 3 and not window.indexing_active, timeout=10_000)
    names = {r.path.name for r in window.model.records()}
    assert {f.name for f in files} <= names
    # a second drop adds to the worklist instead of replacing it
    window.open_paths([mixed_folder / "cut.dcm"], replace=False)
    qtbot.waitUntil(lambda: window.model.rowCount() == 4, timeout=10_000)
    text = QMimeData()
    text.setText("not files")
    ignored = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, text, Qt.MouseButton.LeftButton,
                              Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, ignored)
    assert not ignored.isAccepted()


def test_export_is_pseudonymised_and_never_overwrites_silently(qtbot, window: MainWindow, study: Path,
                                                               tiny_detector: Path, tmp_path: Path,
                                                               monkeypatch) -> None:
    _load_and_score(qtbot, window, study, tiny_detector)
    out = tmp_path / "export.csv"
    assert window.export_csv(out, scope="all", include_identifiers=False) == out
    text = out.read_text(encoding="utf-8-sig")
    metas = [r.meta for r in window.model.records() if r.meta is not None]
    identifiers = {v for m in metas for v in (m.patient_id, m.patient_name, m.study_uid, m.series_uid,
                                                m.accession_number) if v}
    assert identifiers, "the synthetic DICOMs should carry identifiers"
    assert not any(i in text for i in identifiers)
    rows = list(csv.DictReader(out.open(encoding="utf-8-sig")))
    assert len(rows) == _n_images(study)
    row = next(r for r in rows if r["path"].endswith(".dcm"))
    assert row["patient"].startswith("P-") and row["study"].startswith("S-") and row["series"].startswith("SE-")
    assert row["model_id"] == window.detector.meta.model_id and float(row["threshold"]) > 0
    assert row["flagged"] in ("0", "1") and float(row["percentile"]) >= 0 and row["exported_at"].endswith("+00:00")
    # the file exists: answering No keeps it untouched
    before = out.read_bytes()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    assert window.export_csv(out, scope="flagged", include_identifiers=True) is None
    assert out.read_bytes() == before
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert window.export_csv(out, scope="all", include_identifiers=True) == out
    assert any(i in out.read_text(encoding="utf-8-sig") for i in identifiers)
    assert not list(tmp_path.glob(".export.csv.*.part"))  # no temporary file left


def test_provider_fallback_is_reported(qtbot, window: MainWindow, tiny_detector: Path, monkeypatch) -> None:
    import onnxruntime as ort

    real_session = ort.InferenceSession

    def cpu_only_session(path, sess_options=None, providers=None, **kw):  # CUDA "fails to start"
        return real_session(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", cpu_only_session)
    monkeypatch.setattr("cxrscreen.engine.detector.nvidia_gpu_present", lambda: True)  # a GPU that CUDA could not use
    window.load_detector(tiny_detector, provider="auto")
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    assert window.detector.provider == "CPUExecutionProvider" and window.detector.provider_note
    assert "fallback" in window.provider_label.text()
    assert window.provider_label.toolTip() == window.detector.provider_note
    assert "fallback" in window.case_panel.provider_label.text()


def test_no_gpu_at_all_says_cpu_plainly(qtbot, window: MainWindow, tiny_detector: Path, monkeypatch) -> None:
    import onnxruntime as ort

    real_session = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", lambda path, sess_options=None, providers=None, **kw:
                        real_session(path, sess_options=sess_options, providers=["CPUExecutionProvider"]))
    monkeypatch.setattr("cxrscreen.engine.detector.nvidia_gpu_present", lambda: False)  # the CUDA build on a machine without a GPU
    window.load_detector(tiny_detector, provider="auto")
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    assert window.detector.provider_note is None
    assert window.provider_label.text() == "CPU" and "c06000" not in window.provider_label.styleSheet()


def test_cancel_from_the_window(qtbot, window: MainWindow, study: Path, tiny_detector: Path) -> None:
    _load_and_score(qtbot, window, study, tiny_detector)
    paths = [r.path for r in window.model.records()] * 300  # ~3,000 images of work
    window.scoring.enqueue(paths)
    assert window.is_scoring and window.cancel_button.isVisible()
    scoring = window.scoring.process
    qtbot.wait(100)
    t0 = time.monotonic()
    window.actions["cancel"].trigger()
    assert not window.is_scoring and not window.cancel_button.isVisible()  # the window stops waiting at once
    assert scoring.wait(1000), "the scoring thread did not stop within 1 s"
    assert time.monotonic() - t0 < 1.0


def test_closing_while_scoring_stops_workers_cleanly(qtbot, settings_path: Path, tmp_path: Path, study: Path,
                                                     tiny_detector: Path) -> None:
    w = MainWindow(AppSettings(settings_path), ModelLibrary(tmp_path / "library"), batch_size=4, decode_workers=1)
    w.show()
    _load_and_score(qtbot, w, study, tiny_detector)
    w.scoring.enqueue([r.path for r in w.model.records()] * 300)
    threads = w.workers.running()
    assert any(t is w.scoring.process for t in threads)
    w.close()
    qtbot.waitUntil(lambda: not w.isVisible(), timeout=10_000)
    assert all(t.isFinished() for t in threads) and not w.workers.running()
    # the preferences were saved on the way out
    s = AppSettings(settings_path)
    assert s.last_folder == study and s.last_model == tiny_detector
    w.deleteLater()


def test_keyboard_navigation_and_viewer_controls(qtbot, window: MainWindow, study: Path) -> None:
    window.open_paths([study])
    qtbot.waitUntil(lambda: not window.indexing_active and window.viewer.case is not None, timeout=10_000)
    first = window.worklist.current_path()
    window.actions["next_case"].trigger()
    assert window.worklist.current_path() != first
    window.actions["previous_case"].trigger()
    assert window.worklist.current_path() == first
    qtbot.keyClick(window.worklist.table, Qt.Key.Key_PageDown)
    assert window.worklist.current_path() != first
    qtbot.waitUntil(lambda: window.viewer.case is not None and window.viewer.case.path == window.worklist.current_path(),
                    timeout=10_000)
    st = window.viewer_state
    # state -> widget and widget -> state, both ways
    window.actions["invert"].trigger()
    assert st.invert and window.window_control.invert_box.isChecked()
    window.window_control.invert_box.setChecked(False)
    assert not st.invert and not window.actions["invert"].isChecked()
    st.set_heatmap_opacity(0.3)
    assert window.heatmap_control.opacity_slider.value() == 30
    window.heatmap_control.opacity_slider.setValue(80)
    assert st.heatmap_opacity == pytest.approx(0.8)
    assert st.heatmap_floor == 0.95  # colour starts at p95 of normal pixels by default
    ctl = window.heatmap_control.floor_combo
    ctl.setCurrentIndex(ctl.findData(0.99))
    assert st.heatmap_floor == 0.99
    st.set_heatmap_floor(0.9)
    assert ctl.currentData() == 0.9
    # auto window, then a right drag widens it
    window.actions["auto_window"].trigger()
    auto = st.window
    assert auto is not None and auto.label == "auto"
    assert window.window_control.center_box.value() == pytest.approx(auto.center)
    def rendered():  # the image item's own pixels (not the corner labels)
        window.viewer.graphics.viewport().repaint()
        return window.viewer.image_item.qimage.copy()

    before = rendered()
    window.viewer.viewbox.window_dragged.emit(100.0, 0.0, False)
    assert st.window.width > auto.width and st.window.label == "manual"
    assert rendered() != before  # the pixels follow the window
    window.actions["reset_window"].trigger()
    assert st.window is None and window.window_control.preset_combo.currentData() == "file"


def test_identifiers_are_hidden_until_asked(qtbot, window: MainWindow, study: Path) -> None:
    window.open_paths([study])
    qtbot.waitUntil(lambda: not window.indexing_active and window.model.rowCount() > 0, timeout=10_000)
    dcm = next(r for r in window.model.records() if r.meta is not None and r.meta.patient_id)
    assert window.worklist.select_path(dcm.path)
    tags = window.case_panel.tags
    values = [tags.item(r, 1).text() for r in range(tags.rowCount())]
    assert not any(dcm.meta.patient_id in v for v in values)
    window.actions["show_identifiers"].trigger()
    values = [tags.item(r, 1).text() for r in range(tags.rowCount())]
    assert any(dcm.meta.patient_id in v for v in values)
    row = window.model.row_of(dcm.path)
    assert dcm.meta.patient_id in window.model.index(row, Column.PATIENT).data()


def test_view_heatmap_follows_the_image_frame(qtbot, window: MainWindow, tmp_path: Path, tiny_detector: Path) -> None:
    # a wide image: the stretch overlay must span the whole width, not a square (a chest, so
    # that the out-of-scope gate lets it through: wider than 2:1 or noise would be refused)
    from PIL import Image

    from cxrscreen.engine.synth.chest import generate_chest
    folder = tmp_path / "wide"
    folder.mkdir()
    Image.fromarray((generate_chest(0, (120, 220)).pixels * 255).astype(np.uint8)).save(folder / "wide.png")
    window.load_detector(tiny_detector, provider="cpu")
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    window.open_paths([folder])
    qtbot.waitUntil(lambda: window.viewer.case is not None and window.viewer.case.analysis is not None, timeout=10_000)
    ov = window.viewer.overlay_item.mapRectToParent(window.viewer.overlay_item.boundingRect())
    assert (ov.width(), ov.height()) == pytest.approx((220, 120))
    window.viewer_state.set_contour_visible(True)
    window.operating.set_specificity(0.5)
    x, y = window.viewer.contour_item.getData()
    assert x is not None and len(x) > 0 and 0 <= x.min() and x.max() <= 220 and y.max() <= 120


def test_help_and_detector_card_open(qtbot, window: MainWindow, tiny_detector: Path) -> None:
    from cxrscreen.app.detector_card import DetectorCardDialog
    from cxrscreen.app.help import HelpDialog

    window.show_detector_card()  # no detector yet: a message, not a crash
    assert window.last_error and "Load a detector" in window.last_error
    window.load_detector(tiny_detector, provider="cpu")
    qtbot.waitUntil(lambda: window.detector is not None, timeout=10_000)
    window.show_detector_card()
    card = window.findChild(DetectorCardDialog)
    assert card is not None and "local contrast (test)" in card.text.toPlainText()
    assert "Threshold at 95 %" in card.text.toPlainText()
    window.show_help()
    help_dialog = window.findChild(HelpDialog)
    assert help_dialog is not None and "Toggle" not in help_dialog.windowTitle()


def test_demo_opens_a_synthetic_study_and_reuses_a_made_detector(qtbot, settings_path: Path, tmp_path: Path,
                                                                  tiny_detector: Path) -> None:
    import shutil

    demo = tmp_path / "demo"
    demo.mkdir()
    from cxrscreen.app.demo import DEMO_VERSION, demo_detector_file

    shutil.copy(tiny_detector, demo_detector_file(demo))  # as if trained in an earlier session
    (demo / "study").mkdir()  # a study of an earlier demo version: not reused
    (demo / "study" / "labels.csv").write_text("path,label,finding,mask\n" + "x.png,0,normal,\n" * 5)
    w = MainWindow(AppSettings(settings_path), ModelLibrary(tmp_path / "library"), demo_dir=demo,
                   demo_study=(3, 2, 96))
    w.show()
    try:
        w.open_demo()
        qtbot.waitUntil(lambda: w.model.rowCount() == 5 and not w.indexing_active, timeout=20_000)
        assert (demo / f"study-v{DEMO_VERSION}" / "labels.csv").is_file()
        # the detector is added to the library and loaded, then the study is scored
        qtbot.waitUntil(lambda: w.detector is not None and w.model.counts()["scored"] == 5, timeout=20_000)
        assert [e.model_id for e in w.library.entries()] == [w.detector.meta.model_id]
    finally:
        w.close()
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=10_000)
        w.deleteLater()


def test_view_menu_hides_and_shows_the_docks_and_help_has_about(qtbot, window: MainWindow) -> None:
    for dock in window.docks.values():
        toggle = dock.toggleViewAction()
        assert toggle.isEnabled() and toggle.isChecked()  # View ▸ Worklist / Case are not greyed out
        toggle.trigger()
        assert not dock.isVisible()
        toggle.trigger()
        assert dock.isVisible()
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    assert any(a.text() == "About cxrscreen…" for a in help_menu.actions())
