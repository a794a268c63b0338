"""Studies, not only files: DICOMs grouped by patient / study / series, the lead image, laterals,
earlier studies and the side-by-side comparison (synchronised window/level, zoom and pan)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from cxrscreen.app.library import ModelLibrary
from cxrscreen.app.main_window import MainWindow
from cxrscreen.app.records import CaseRecord, CaseScore
from cxrscreen.app.settings import AppSettings
from cxrscreen.app.studies import (
    LATERAL_TEXT,
    StudyLead,
    StudyProgress,
    earlier_studies,
    group_studies,
    next_study,
    next_unread_flagged_study,
    order_studies,
    study_lead,
    study_progress,
    study_reading,
)
from cxrscreen.app.studydb import DB_FILE, StudyDatabase
from cxrscreen.app.viewer.display import Window
from cxrscreen.engine.io import RadiographMeta


def _meta(path: str, study: str | None, series: str = "s1", view: str = "PA", patient: str = "P1",
          date: str = "20240101", fmt: str = "dicom") -> RadiographMeta:
    return RadiographMeta(path=Path(path), format=fmt, rows=8, columns=8, view_position=view, patient_id=patient,
                          study_uid=study, series_uid=series, study_date=date)  # type: ignore[arg-type]


def test_grouping_lead_image_and_earlier_studies() -> None:
    recs = [CaseRecord(Path(p), m) for p, m in (
        ("a1.dcm", _meta("a1.dcm", "A", "s2", "LL")),         # a lateral, second series
        ("a2.dcm", _meta("a2.dcm", "A", "s1", "PA")),
        ("a3.dcm", _meta("a3.dcm", "A", "s1", "AP")),
        ("b1.dcm", _meta("b1.dcm", "B", date="20200101")),   # the same patient, earlier
        ("c1.dcm", _meta("c1.dcm", "C", patient="P2", date="20190101")),  # another patient
        ("d1.dcm", _meta("d1.dcm", None)),                   # no study UID: stays a file
        ("e.png", _meta("e.png", "A", fmt="png")),           # not DICOM: stays a file
    )] + [CaseRecord(Path("f.dcm"), None, "unreadable")]
    studies, files = group_studies(recs)
    assert [s.uid for s in studies] == ["A", "B", "C"]
    assert files == [Path("d1.dcm"), Path("e.png"), Path("f.dcm")]
    a = studies[0]
    # series by series in the order first seen; files keep worklist order within a series
    assert [i.path.name for i in a.images] == ["a1.dcm", "a2.dcm", "a3.dcm"]
    assert list(a.series) == ["s2", "s1"] and [i.lateral for i in a.images] == [True, False, False]
    scores = {Path("a1.dcm"): 9.0, Path("a2.dcm"): 1.0, Path("a3.dcm"): 2.0}  # the lateral scores highest
    lead = study_lead(a, scores.get, lambda p: p == Path("a3.dcm"))
    assert (lead.path, lead.score, lead.flagged, lead.scored) == (Path("a3.dcm"), 2.0, True, 2)  # never the lateral
    unscored = study_lead(a, lambda p: None, lambda p: False)
    assert (unscored.path, unscored.score, unscored.scored) == (Path("a2.dcm"), None, 0)  # first frontal
    assert [s.uid for s in earlier_studies(studies, a)] == ["B"]  # same patient, earlier; not C
    assert earlier_studies(studies, studies[1]) == []  # nothing before B


def test_order_keeps_a_patients_studies_together() -> None:
    recs = [CaseRecord(Path(p), _meta(p, study, patient=patient, date=date)) for p, study, patient, date in (
        ("a.dcm", "A", "P1", "20200101"), ("b.dcm", "B", "P1", "20240101"), ("c.dcm", "C", "P2", "20230101"),
        ("d.dcm", "D", "", "20230101"), ("e.dcm", "E", "P1", ""))]
    studies, _files = group_studies(recs)
    leads = {"A": StudyLead(Path("a.dcm"), 0.9, True, 1),   # P1's old study is its most suspicious
             "B": StudyLead(Path("b.dcm"), 0.1, False, 1),
             "C": StudyLead(Path("c.dcm"), 0.5, True, 1),
             "D": StudyLead(Path("d.dcm"), 0.7, False, 1),  # no patient: a group of its own
             "E": StudyLead(Path("e.dcm"), None, False, 0)}
    # P1 first (by A), newest first, undated last; then P2 (flagged); then the study of no patient
    assert order_studies(studies, leads) == ["B", "A", "E", "C", "D"]


def test_study_reading_progress_and_navigation() -> None:
    recs = [CaseRecord(Path(p), _meta(p, study, view=view)) for p, study, view in (
        ("a1.dcm", "A", "PA"), ("a2.dcm", "A", "LL"), ("b1.dcm", "B", "PA"), ("c1.dcm", "C", "PA"))]
    studies, _files = group_studies(recs)
    a, b, c = studies
    read = {Path("a1.dcm"), Path("b1.dcm")}
    # the lateral counts: a study is read when every image is
    assert [study_reading(s, read.__contains__) for s in studies] == ["partly read", "read", "unread"]
    reading = {"A": "partly read", "B": "read", "C": "unread"}
    flagged = {"A": True, "B": True, "C": False}
    progress = study_progress("ABC", reading, flagged)
    assert progress == StudyProgress(studies=3, read=1, partly=1, flagged_unread=1)  # B is flagged but read
    assert progress.text() == "1 of 3 studies read, 1 partly, 1 flagged unread"
    assert StudyProgress(1, 0, 0, 0).text(flags=False) == "0 of 1 study read"
    order = ["A", "B", "C"]
    assert [next_study(order, None, 1), next_study(order, None, -1)] == ["A", "C"]  # J starts at the top, K at the end
    assert [next_study(order, "A", 1), next_study(order, "B", -1)] == ["B", "A"]
    assert next_study(order, "C", 1) is None and next_study(order, "A", -1) is None  # no wrapping at either end
    assert next_study([], None, 1) is None
    with pytest.raises(ValueError, match="step must be -1 or 1, got 2"):
        next_study(order, "A", 2)
    # N wraps and skips read and not flagged studies; the current one is tried last
    assert next_unread_flagged_study(order, "B", reading, flagged) == "A"
    assert next_unread_flagged_study(order, "A", reading, flagged) == "A"
    assert next_unread_flagged_study(order, "A", {**reading, "A": "read"}, flagged) is None


# ====================================================================== the window, with real DICOMs
PATIENTS = {"P-ALPHA": "ALPHA^ANNA", "P-BRAVO": "BRAVO^BEN", "P-CHARLIE": "CHARLIE^CID", "P-DELTA": "DELTA^DORA"}


@pytest.fixture(scope="module")
def dicom_studies(tmp_path_factory) -> dict[str, list[Path]]:
    """Four patients: ALPHA with a 2021 study (PA + lateral) and a 2024 study (two series: PA,
    AP), BRAVO with one study (PA + lateral), CHARLIE with one PA, DELTA with a lateral only;
    plus two PNGs."""
    from cxrscreen.engine.io.dicom_write import write_dicom
    from cxrscreen.engine.synth import write_study
    from cxrscreen.engine.synth.chest import generate_chest

    root = tmp_path_factory.mktemp("studies")
    plan = [  # (patient, study, date, series, view, lesion)
        ("P-ALPHA", "1", "20210305", "1", "PA", None), ("P-ALPHA", "1", "20210305", "2", "LL", None),
        ("P-ALPHA", "2", "20240611", "1", "PA", "nodule"), ("P-ALPHA", "2", "20240611", "2", "AP", None),
        ("P-BRAVO", "3", "20230102", "1", "PA", None), ("P-BRAVO", "3", "20230102", "2", "LAT", None),
        ("P-CHARLIE", "4", "20220909", "1", "PA", None), ("P-DELTA", "5", "20220910", "1", "LL", None),
    ]
    made: dict[str, list[Path]] = {}
    for i, (patient, study, date, series, view, lesion) in enumerate(plan):
        chest = generate_chest(100 + i, 96, lesion=lesion).pixels
        path = root / f"img{i}.dcm"
        uid = "1.2.826.0.1.3680043.77"
        write_dicom(path, np.round(np.clip(chest, 0, 1) * 4095).astype(np.uint16), bits_stored=12,
                    tags={"PatientID": patient, "PatientName": PATIENTS[patient], "StudyDate": date,
                          "StudyInstanceUID": f"{uid}.{study}", "SeriesInstanceUID": f"{uid}.{study}.{series}",
                          "SOPInstanceUID": f"{uid}.{study}.{series}.{i}", "ViewPosition": view,
                          "AccessionNumber": f"ACC{study}"})
        made.setdefault(f"{uid}.{study}", []).append(path)
    write_study(root / "png", 2, 0, size=96, formats=("png",), seed=8)
    made["png"] = sorted((root / "png").glob("*.png"))
    return made


@pytest.fixture
def window(qtbot, settings_path: Path, tmp_path: Path):
    w = MainWindow(AppSettings(settings_path), ModelLibrary(tmp_path / "library"), batch_size=4, decode_workers=1)
    w.index_in_process = False
    w.resize(1400, 900)
    w.show()
    yield w
    if w.studies.compare_window is not None:
        w.studies.compare_window.close()
    if w.isVisible():
        w.close()
        qtbot.waitUntil(lambda: not w.isVisible(), timeout=10_000)
    w.workers.stop_all()
    assert w.workers.wait_all(10_000)
    w.deleteLater()


def test_studies_list_lead_images_laterals_and_comparison(qtbot, window: MainWindow, tiny_detector: Path,
                                                          dicom_studies: dict[str, list[Path]]) -> None:
    w = window
    w.load_detector(tiny_detector, provider="cpu")
    qtbot.waitUntil(lambda: w.detector is not None, timeout=10_000)
    w.open_paths([dicom_studies["png"][0].parent.parent])
    qtbot.waitUntil(lambda: not w.indexing_active and not w.is_scoring and len(w.model.records()) == 10
                    and w.model.counts()["scored"] + w.model.counts()["out_of_scope"] == 10, timeout=60_000)
    mid = w.detector.meta.model_id
    w.studies.dock.raise_()
    qtbot.waitUntil(lambda: w.studies.list_shown, timeout=5_000)
    w.studies.refresh()
    panel = w.studies.panel
    rows = {r.uid: r for r in panel.rows}
    assert len(rows) == 5 and w.studies.files == dicom_studies["png"]
    assert "2 files not in a study" in panel.summary_label.text()
    delta = rows.pop("1.2.826.0.1.3680043.77.5")  # a lateral alone: the study is not scored
    assert (delta.score, delta.flag, delta.flagged) == ("not scored", "", False)
    assert delta.children[0].note == LATERAL_TEXT
    # each study's lead is its highest-scoring frontal image; laterals are shown, not scored
    for uid, row in rows.items():
        recs = [w.model.record(w.model.row_of(p)) for p in dicom_studies[uid]]
        frontal = [r for r in recs if r.meta.view_position not in ("LL", "LAT")]
        best = max(frontal, key=lambda r: r.scores[mid].score)
        assert row.lead == best.path and row.score == f"{best.scores[mid].score:.4g}"
        assert len(row.children) == len(recs)
        assert [c.path for c in row.children] == sorted(dicom_studies[uid])  # by name, not by score
        for child, rec in zip(row.children, sorted(recs, key=lambda r: r.path)):
            if rec.meta.view_position in ("LL", "LAT"):
                assert child.note == LATERAL_TEXT and child.score == "" and mid in rec.out_of_scope
                assert mid not in rec.scores
            else:
                assert child.score == f"{rec.scores[mid].score:.4g}" and child.note == ""
            assert child.text.startswith("▸ ") == (child.path == row.lead)
    alpha_new = "1.2.826.0.1.3680043.77.2"
    assert rows[alpha_new].images == "2 images · 1 earlier" and rows[alpha_new].earlier == 1
    assert rows[alpha_new].series == 2
    assert all(rows[u].earlier == 0 for u in rows if u != alpha_new)
    # identifiers hidden (the default): pseudonyms in the rows, no name or id
    texts = " ".join(r.title for r in rows.values())
    assert not any(s in texts for s in (*PATIENTS, *PATIENTS.values(), "ACC2"))
    # order: flagged first, then by lead score, as the worklist's (after S: the first case shown
    # for 1.5 s was read, so the reader has started and rows no longer move by themselves)
    w.reading.resort()
    # patient by patient: ALPHA's two studies together, newest first, placed by the more suspicious
    alpha_old = "1.2.826.0.1.3680043.77.1"
    uids = [r.uid for r in panel.rows]
    assert uids.index(alpha_old) == uids.index(alpha_new) + 1
    leads = [(r.flagged, float(r.score)) for r in panel.rows if r.uid in rows and r.uid != alpha_old]
    assert panel.rows[-1] == delta  # no score: last
    assert leads == sorted(leads, key=lambda t: (not t[0], -t[1]))

    # a study opens on its lead image; an image row opens that image
    assert w.studies.open_study(alpha_new)
    qtbot.waitUntil(lambda: w.viewer.case is not None and w.viewer.case.path == rows[alpha_new].lead, timeout=10_000)
    assert w.worklist.current_path() == rows[alpha_new].lead and w.reading.session.started
    assert w.studies.current_study().uid == alpha_new
    other = next(c.path for c in rows[alpha_new].children if c.path != rows[alpha_new].lead)
    assert panel.choose(alpha_new, other)
    qtbot.waitUntil(lambda: w.viewer.case is not None and w.viewer.case.path == other, timeout=10_000)
    assert panel.compare_button.isEnabled()
    # moving in the worklist moves the Studies list's row with it (nothing is opened twice)
    bravo = "1.2.826.0.1.3680043.77.3"
    assert w.worklist.select_path(rows[bravo].lead)
    assert panel.current_uid() == bravo and panel.tree.currentItem().text(0).endswith(rows[bravo].lead.name)
    assert not panel.compare_button.isEnabled()  # no earlier study of this patient
    assert w.worklist.select_path(rows[alpha_new].lead) and panel.compare_button.isEnabled()

    # the earlier study beside the current one; window/level, zoom and pan follow one another
    panel.compare_button.click()
    cw = w.studies.compare_window
    assert cw is not None and cw.isVisible() and cw.study_combo.count() == 1
    qtbot.waitUntil(lambda: all(v.case is not None for v in cw.views.values()), timeout=20_000)
    assert cw.views["current"].case.path == rows[alpha_new].lead
    earlier = dicom_studies["1.2.826.0.1.3680043.77.1"]
    assert cw.views["earlier"].case.path == earlier[0]  # the prior's frontal (its lateral is not the lead)
    assert cw.image_combos["earlier"].count() == 2 and LATERAL_TEXT in cw.image_combos["earlier"].itemText(1)
    assert "Earlier" in cw.titles["earlier"].text() and "2021" in cw.titles["earlier"].text()
    assert "20210305" not in cw.titles["earlier"].text() and "2021-03-05" not in cw.titles["earlier"].text()
    cw.state.set_window(Window(1500.0, 800.0))
    assert cw.views["earlier"].effective_window() == cw.views["current"].effective_window() == Window(1500.0, 800.0)
    cw.views["current"].zoom(2.0)
    qtbot.waitUntil(lambda: np.allclose(cw.views["earlier"].viewbox.viewRange(),
                                        cw.views["current"].viewbox.viewRange()), timeout=5_000)
    before = cw.views["current"].viewbox.viewRange()
    cw.sync_box.setChecked(False)  # unlinked: one view zooms alone
    cw.views["earlier"].zoom(2.0)
    assert np.allclose(cw.views["current"].viewbox.viewRange(), before)
    cw.image_combos["earlier"].setCurrentIndex(1)  # the prior's lateral can be shown
    qtbot.waitUntil(lambda: cw.views["earlier"].case is not None and cw.views["earlier"].case.path == earlier[1],
                    timeout=20_000)

    # Ctrl+F brings the Worklist tab back in front of the Studies tab, its filter box focused
    w.activateWindow()
    w.actions["focus_filter"].trigger()
    qtbot.waitUntil(lambda: not w.worklist.visibleRegion().isEmpty() and not w.studies.list_shown, timeout=5_000)

    # nothing identifying reached the audit trail
    assert w.reading.store is not None and w.reading.store.flush()
    db = StudyDatabase(w.settings.data_file(DB_FILE))
    audit = repr(db.audit_rows())
    db.close()
    assert not any(s in audit for s in (*PATIENTS, *PATIENTS.values(), "ACC", "3680043", "img"))


def test_study_rows_do_not_move_once_the_reader_started(qtbot, window: MainWindow,
                                                        dicom_studies: dict[str, list[Path]]) -> None:
    w = window
    w.open_paths([dicom_studies["png"][0].parent.parent])
    qtbot.waitUntil(lambda: not w.indexing_active and len(w.model.records()) == 10, timeout=60_000)
    w.studies.refresh()
    assert not w.studies.list_shown and w.studies.panel.rows == []  # behind the Worklist tab: not computed
    w.studies.dock.raise_()  # shown: computed
    qtbot.waitUntil(lambda: len(w.studies.panel.rows) == 5, timeout=5_000)
    order = [r.uid for r in w.studies.panel.rows]
    lateral_only = "1.2.826.0.1.3680043.77.5"
    # no detector: no score, no flag; a study of laterals alone is never scored
    assert {r.uid: r.score for r in w.studies.panel.rows if r.score} == {lateral_only: "not scored"}
    target = [u for u in order if u != lateral_only][-1]
    w.studies.open_study(target)  # the reader starts on the last study
    # scores arrive that would put that study first: it stays where the reader is
    from cxrscreen.engine.scoring import ScoreResult
    results = [ScoreResult(p, 100.0 - i, 99.0) for i, p in enumerate(dicom_studies[target])]
    w.model.set_active_model("m", 50.0)
    w.model.apply_results("m", results)
    w.studies.refresh()
    assert [r.uid for r in w.studies.panel.rows] == order
    row = next(r for r in w.studies.panel.rows if r.uid == target)
    assert row.flagged and row.score == "100"
    w.reading.resort()  # S places it
    placed = [target, *(u for u in order if u != target)]
    assert [r.uid for r in w.studies.panel.rows] == placed
    # a file of a new study arrives while the reader works: grouped again, the new study at the end
    late = Path("/nowhere/late.dcm")
    w.model.add_records([CaseRecord(late, _meta(str(late), "1.2.826.0.1.3680043.77.9", patient="P-ECHO"))])
    qtbot.waitUntil(lambda: len(w.studies.panel.rows) == 6, timeout=5_000)
    assert [r.uid for r in w.studies.panel.rows] == [*placed, "1.2.826.0.1.3680043.77.9"]


def test_study_reading_state_keys_and_earlier_studies(qtbot, window: MainWindow,
                                                      dicom_studies: dict[str, list[Path]]) -> None:
    from cxrscreen.engine.scoring import ScoreResult

    w = window
    w.open_paths([dicom_studies["png"][0].parent.parent])
    qtbot.waitUntil(lambda: not w.indexing_active and len(w.model.records()) == 10, timeout=60_000)
    uid = "1.2.826.0.1.3680043.77"
    alpha_old, alpha_new, bravo, charlie, delta = (f"{uid}.{i}" for i in range(1, 6))
    # scores by hand, threshold 50: the new ALPHA and BRAVO studies are flagged (laterals get none)
    scores = {alpha_new: 90.0, bravo: 80.0, alpha_old: 20.0, charlie: 10.0}
    results = [ScoreResult(p, scores[s] - i, 99.0) for s in scores for i, p in enumerate(dicom_studies[s])
               if w.model.record(w.model.row_of(p)).meta.view_position not in ("LL", "LAT")]
    w.model.set_active_model("m", 50.0)
    w.model.apply_results("m", results)
    w.studies.dock.raise_()
    qtbot.waitUntil(lambda: len(w.studies.panel.rows) == 5, timeout=5_000)
    w.reading.resort()
    panel = w.studies.panel
    assert [r.uid for r in panel.rows] == [alpha_new, alpha_old, bravo, charlie, delta]  # ALPHA's studies together
    assert {r.read for r in panel.rows} == {"●"} and {r.reading for r in panel.rows} == {"unread"}
    assert "0 of 5 studies read, 2 flagged unread" in panel.summary_label.text()
    assert panel.tree.headerItem().text(2) == "Read" and panel.tree.topLevelItem(0).font(0).bold()

    # the list's current row is the study of the worklist's current case from the start; J / K
    # move between studies from the current one and open each on its lead image; K at the top stays
    lead = {r.uid: r.lead for r in panel.rows}
    assert panel.current_uid() == next(u for u, ps in dicom_studies.items() if w.worklist.current_path() in ps)
    assert w.studies.open_study(alpha_new) and panel.current_uid() == alpha_new
    for key, expected in (("next_case", alpha_old), ("next_case", bravo), ("previous_case", alpha_old),
                          ("previous_case", alpha_new), ("previous_case", alpha_new)):
        w.actions[key].trigger()
        assert panel.current_uid() == expected and w.worklist.current_path() == lead[expected]
        qtbot.waitUntil(lambda e=expected: w.viewer.case is not None and w.viewer.case.path == lead[e], timeout=10_000)

    # reading state: from the session's per-file states; the lateral counts
    session = w.reading.session
    new_images = dicom_studies[alpha_new]  # PA and AP, both frontal
    session.set_state(lead[alpha_new], "read")
    w.studies.refresh()
    row = panel.rows[0]
    assert (row.reading, row.read) == ("partly read", "1 of 2")
    session.set_state(next(p for p in new_images if p != lead[alpha_new]), "read")
    w.studies.refresh()
    assert (panel.rows[0].reading, panel.rows[0].read) == ("read", "read")
    assert not panel.tree.topLevelItem(0).font(0).bold()
    assert "1 of 5 studies read, 1 flagged unread" in panel.summary_label.text()
    w.reading.update_counts()
    assert "of 10 read" in w.counts_label.text() and "1 of 5 studies read" in w.counts_label.text()
    root = dicom_studies[alpha_new][0].parent  # per opened folder: the studies whose images are in it
    assert w.studies.progress_text(root) == w.studies.progress_text() == "1 of 5 studies read, 1 flagged unread"
    assert w.studies.progress_text(Path("/elsewhere")) == ""

    # N: the next flagged study not read (BRAVO, past the unflagged 2021 study), then none is left
    w.actions["next_flagged"].trigger()
    assert panel.current_uid() == bravo and w.worklist.current_path() == lead[bravo]
    session.set_state(lead[bravo], "read")  # its lateral not looked at: partly read, still N's
    bravo_lateral = next(p for p in dicom_studies[bravo] if p != lead[bravo])
    assert w.studies.next_unread_flagged() and w.worklist.current_path() == bravo_lateral
    assert panel.current_uid() == bravo and panel.rows[2].read == "1 of 2"
    session.set_state(bravo_lateral, "read")
    assert not w.studies.next_unread_flagged() and panel.current_uid() == bravo
    assert "No flagged study left unread" in w.statusBar().currentMessage()

    # the earlier study sits under the current one; choosing it opens its lead image in place
    row = panel.rows[0]
    assert [p.uid for p in row.priors] == [alpha_old] and row.priors[0].text.startswith("◂ earlier study · 2021")
    item = panel.tree.topLevelItem(0)
    assert item.childCount() == len(row.children) + 1 and item.child(item.childCount() - 1).text(0) == row.priors[0].text
    assert all(not r.priors for r in panel.rows[1:])  # nothing earlier than the 2021 study
    assert panel.rows[1].uid == alpha_old and panel.rows[1].read == "●"  # and in its own row, to be read too
    assert panel.choose_prior(alpha_new, alpha_old)
    qtbot.waitUntil(lambda: w.viewer.case is not None and w.viewer.case.path == lead[alpha_old], timeout=10_000)
    assert panel.current_uid() == alpha_new and panel.current_prior() == alpha_old  # the list did not jump away
    # P: that earlier study beside the current one
    w.actions["compare_earlier"].trigger()
    cw = w.studies.compare_window
    assert cw is not None and cw.isVisible() and cw.study_combo.currentData() == alpha_old
    qtbot.waitUntil(lambda: cw.views["current"].case is not None, timeout=20_000)
    assert cw.views["current"].case.path == lead[alpha_new]
    cw.close()
    # Enter on the earlier study's row compares it, too
    panel.tree.setFocus()
    qtbot.keyClick(panel.tree, Qt.Key.Key_Return)
    assert cw.isVisible() and cw.study_combo.currentData() == alpha_old
    cw.close()

    # with the Worklist tab in front, J moves one case, not one study
    w.docks["worklist"].raise_()
    qtbot.waitUntil(lambda: not w.studies.list_shown, timeout=5_000)
    row_before = w.worklist.table.currentIndex().row()
    w.actions["next_case"].trigger()
    assert w.worklist.table.currentIndex().row() == row_before + 1
