"""Worklist model and proxy: Qt's model tester, sorting, filtering, flags, identifiers."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QModelIndex, Qt

from cxrscreen.app.records import CaseRecord
from cxrscreen.app.worklist.model import FLAG_ROLE, Column, WorklistModel
from cxrscreen.app.worklist.proxy import WorklistProxy
from cxrscreen.engine.io import RadiographMeta
from cxrscreen.engine.scoring import ScoreResult

KEY = b"k" * 32
MODEL = "m1"


def _meta(name: str, patient: str | None = None) -> RadiographMeta:
    return RadiographMeta(path=Path(name), format="dicom", rows=10, columns=10, patient_id=patient,
                          patient_name="DOE^JANE" if patient else None, study_date="20240131",
                          accession_number="ACC1" if patient else None, view_position="PA", modality="DX")


def _records(root: Path) -> list[CaseRecord]:
    return [
        CaseRecord(root / "a.dcm", _meta("a.dcm", "PID-1")),
        CaseRecord(root / "b.dcm", _meta("b.dcm", "PID-2")),
        CaseRecord(root / "c.png", _meta("c.png")),
        CaseRecord(root / "bad.dcm", None, "truncated DICOM file"),
        CaseRecord(root / "sub" / "d.dcm", _meta("d.dcm", "PID-3")),
    ]


@pytest.fixture
def worklist(tmp_path: Path) -> tuple[WorklistModel, WorklistProxy]:
    model = WorklistModel(KEY)
    model.clear([tmp_path])
    model.add_records(_records(tmp_path))
    model.set_active_model(MODEL, threshold=0.5)
    model.apply_results(MODEL, [ScoreResult(tmp_path / "a.dcm", 0.2, 10.0),
                                ScoreResult(tmp_path / "b.dcm", 0.9, 99.0),
                                ScoreResult(tmp_path / "sub" / "d.dcm", 0.6, 80.0),
                                ScoreResult(tmp_path / "c.png", None, None, error="cannot decode")])
    proxy = WorklistProxy()
    proxy.setSourceModel(model)
    proxy.sort_default()
    return model, proxy


def _column(proxy: WorklistProxy, col: Column) -> list[str]:
    return [proxy.index(r, col).data() for r in range(proxy.rowCount())]


def test_model_passes_qt_model_tester(qtmodeltester, worklist, tmp_path: Path) -> None:
    model, proxy = worklist
    qtmodeltester.check(model, force_py=False)
    qtmodeltester.check(proxy, force_py=False)
    # the tester watches later changes too: more rows, scores, threshold, identifiers
    model.add_records([CaseRecord(tmp_path / "e.dcm", _meta("e.dcm", "PID-9"))])
    model.apply_results(MODEL, [ScoreResult(tmp_path / "e.dcm", 0.7, 90.0)])
    model.set_threshold(0.1)
    model.set_show_identifiers(True)
    assert model.rowCount() == 6


def test_default_order_is_most_suspicious_first_missing_last(worklist) -> None:
    model, proxy = worklist
    # b (0.9), d (0.6), a (0.2), then unscored in file order: c (failed), bad (unreadable)
    assert _column(proxy, Column.FILE) == ["b.dcm", str(Path("sub/d.dcm")), "a.dcm", "c.png", "bad.dcm"]
    proxy.sort(Column.SCORE, Qt.SortOrder.AscendingOrder)  # missing stays last ascending too
    assert _column(proxy, Column.FILE)[:3] == ["a.dcm", str(Path("sub/d.dcm")), "b.dcm"]
    assert set(_column(proxy, Column.FILE)[3:]) == {"c.png", "bad.dcm"}


def test_sort_by_text_column(worklist) -> None:
    _, proxy = worklist
    proxy.sort(Column.FILE, Qt.SortOrder.AscendingOrder)
    assert _column(proxy, Column.FILE) == ["a.dcm", "b.dcm", "bad.dcm", "c.png", str(Path("sub/d.dcm"))]


def test_flags_follow_the_threshold_at_once(worklist) -> None:
    model, proxy = worklist
    flags = {proxy.index(r, Column.FILE).data(): proxy.index(r, Column.FLAG).data(FLAG_ROLE)
             for r in range(proxy.rowCount())}
    assert flags["b.dcm"] is True and flags["a.dcm"] is False and flags["c.png"] is None
    proxy.set_flagged_only(True)
    assert _column(proxy, Column.FILE) == ["b.dcm", str(Path("sub/d.dcm"))]
    model.set_threshold(0.75)  # moving the operating point re-filters without a reload
    assert _column(proxy, Column.FILE) == ["b.dcm"]
    assert model.counts()["flagged"] == 1


def test_text_filter_matches_every_word(worklist) -> None:
    _, proxy = worklist
    proxy.set_filter_text("unreadable")
    assert _column(proxy, Column.FILE) == ["bad.dcm"]
    proxy.set_filter_text("SUB  d")
    assert _column(proxy, Column.FILE) == [str(Path("sub/d.dcm"))]
    proxy.set_filter_text("")
    assert proxy.rowCount() == 5


def test_identifiers_hidden_by_default(worklist) -> None:
    model, proxy = worklist
    a = model.row_of(next(r.path for r in model.records() if r.path.name == "a.dcm"))  # rows are sorted
    patient = model.index(a, Column.PATIENT).data()
    study = model.index(a, Column.STUDY).data()
    assert "PID-1" not in patient and "DOE" not in patient and patient.startswith("P-")
    assert study.startswith("2024 ") and "ACC1" not in study and "01-31" not in study  # year only
    proxy.set_filter_text("pid-1")  # hidden identifiers cannot be found either
    assert proxy.rowCount() == 0
    model.set_show_identifiers(True)
    assert model.index(a, Column.PATIENT).data() == "DOE^JANE · PID-1"
    assert model.index(a, Column.STUDY).data() == "2024-01-31 · ACC1"
    assert proxy.rowCount() == 1


def test_unreadable_rows_say_why(worklist) -> None:
    model, _ = worklist
    row = model.row_of(next(r.path for r in model.records() if r.path.name == "bad.dcm"))
    assert model.index(row, Column.STATUS).data() == "unreadable: truncated DICOM file"
    assert "truncated" in model.index(row, Column.FILE).data(Qt.ItemDataRole.ToolTipRole)
    c_row = model.row_of(next(r.path for r in model.records() if r.path.name == "c.png"))
    assert model.index(c_row, Column.STATUS).data() == "failed: cannot decode"


def test_duplicates_are_not_added_and_other_models_are_kept(worklist, tmp_path: Path) -> None:
    model, _ = worklist
    assert model.add_records([CaseRecord(tmp_path / "a.dcm")]) == []
    model.apply_results("m2", [ScoreResult(tmp_path / "a.dcm", 5.0, 100.0)])
    row = model.row_of(tmp_path / "a.dcm")
    assert model.index(row, Column.SCORE).data() == "0.2"  # m1 still active
    model.set_active_model("m2", 1.0)  # another detector: the rows take its order
    row = model.row_of(tmp_path / "a.dcm")
    assert model.index(row, Column.SCORE).data() == "5"
    assert model.record(row).scores[MODEL].score == pytest.approx(0.2)


def test_invalid_indexes_and_children() -> None:
    model = WorklistModel(KEY)
    assert model.rowCount(model.index(0, 0)) == 0
    assert model.data(QModelIndex()) is None


def test_out_of_scope_rows_say_why_have_no_flag_and_sort_apart(qtbot) -> None:
    from cxrscreen.app.worklist.model import OUT_OF_SCOPE_MARK, Column, WorklistModel
    from cxrscreen.app.records import CaseRecord
    from cxrscreen.engine.scoring import ScoreResult

    model = WorklistModel(b"k" * 32)
    paths = [Path(f"/s/{n}.png") for n in ("a", "b", "c", "d")]
    model.add_records([CaseRecord(p) for p in paths])
    model.set_active_model("m", threshold=0.5)
    model.apply_results("m", [ScoreResult(paths[0], 0.9, 99.0), ScoreResult(paths[1], 0.1, 10.0),
                              ScoreResult(paths[2], None, None, out_of_scope="inverted polarity")])
    rec = model.record(model.row_of(paths[2]))
    assert model.status_text(rec) == "out of scope: inverted polarity"
    assert model.is_flagged(rec) is None  # neither flagged nor not flagged
    assert model.data(model.index(model.row_of(paths[2]), Column.FLAG)) == OUT_OF_SCOPE_MARK
    assert model.counts()["scored"] == 2 and model.counts()["flagged"] == 1 and model.counts()["out_of_scope"] == 1
    # descending: scored rows, then the out-of-scope one, then the unscored one
    model.sort(int(Column.SCORE), Qt.SortOrder.DescendingOrder)
    assert [model.record(r).path.name for r in range(4)] == ["a.png", "b.png", "c.png", "d.png"]
    # ascending: the out-of-scope row still between the scored and the unscored ones
    model.sort(int(Column.SCORE), Qt.SortOrder.AscendingOrder)
    assert [model.record(r).path.name for r in range(4)] == ["b.png", "a.png", "c.png", "d.png"]
