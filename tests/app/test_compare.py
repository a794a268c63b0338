"""Comparing two detectors: pairing, agreement counts, rank correlation, thresholds, the scatter."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrscreen.app.compare import CompareDialog, ModelRef, compare_scores, ranks, spearman, thresholds
from cxrscreen.app.records import CaseRecord, CaseScore
from cxrscreen.app.state import OperatingPoint
from cxrscreen.engine.detector import NormalCalibration


def _cal(scores: list[float]) -> NormalCalibration:
    # thresholds on an order statistic, so that the counts below are by hand
    return NormalCalibration(tuple(sorted(scores)), (0.0, 1.0), (0.0, 1.0), threshold_method="higher")


X = ModelRef("x" * 32, "old", _cal([float(i) for i in range(21)]))  # 21 normals 0..20
Y = ModelRef("y" * 32, "new", _cal([i / 10 for i in range(21)]))  # 21 normals 0.0..2.0


def _records() -> list[CaseRecord]:
    def rec(name: str, sx: float | None, sy: float | None, error: str | None = None) -> CaseRecord:
        scores = {}
        if sx is not None:
            scores[X.model_id] = CaseScore(sx, 50.0)
        if sy is not None:
            scores[Y.model_id] = CaseScore(sy, 60.0)
        return CaseRecord(Path(f"/w/{name}"), error=error, scores=scores)

    return [rec("a", 25.0, 2.5),  # both flag
            rec("b", 25.0, 0.5),  # only X
            rec("c", 5.0, 2.5),  # only Y
            rec("d", 5.0, 0.5),  # neither
            rec("e", 30.0, None),  # scored by X only: left out
            rec("f", 30.0, 3.0, error="truncated")]  # unreadable: left out


def test_pairs_counts_and_correlation() -> None:
    op = OperatingPoint("specificity", 0.95)
    tx, ty = thresholds(op, X, Y, active_id=Y.model_id)
    assert (tx, ty) == (19.0, pytest.approx(1.9))  # each at 95 % specificity on its own normals: 1 of 21 above
    c = compare_scores(_records(), X, Y, tx, ty)
    assert [p.name for p in c.paths] == ["a", "b", "c", "d"]
    assert c.counts() == {"both": 1, "only_x": 1, "only_y": 1, "neither": 1}
    assert list(c.groups()) == ["both", "only_x", "only_y", "neither"]
    assert c.spearman == pytest.approx(0.0)  # X and Y rank these four independently
    p = compare_scores(_records(), X, Y, tx, ty, axis="percentile")
    assert list(p.x) == [50.0] * 4 and p.threshold_x == pytest.approx(X.calibration.percentile(19.0))
    with pytest.raises(ValueError):
        compare_scores(_records(), X, Y, tx, ty, axis="log")  # type: ignore[arg-type]


def test_a_raw_threshold_transfers_as_its_specificity() -> None:
    op = OperatingPoint("score", 0.95, score_threshold=16.5)  # 17 of 21 X normals below: 81 % specificity
    tx, ty = thresholds(op, X, Y, active_id=X.model_id)
    assert tx == 16.5 and ty == pytest.approx(Y.calibration.threshold_at_specificity(17 / 21)) == pytest.approx(1.7)
    assert thresholds(op, X, ModelRef("z", "unknown", None), X.model_id)[1] is None


def test_ranks_and_spearman_hand_computed() -> None:
    assert list(ranks(np.array([10.0, 30.0, 20.0, 20.0]))) == [1.0, 4.0, 2.5, 2.5]  # ties share their mean rank
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0])))  # too few
    assert np.isnan(spearman(np.array([1.0, 2.0, 3.0]), np.array([5.0, 5.0, 5.0])))  # constant


def test_dialog_draws_thresholds_follows_the_operating_point_and_picks_cases(qtbot) -> None:
    op = OperatingPoint("specificity", 0.95)
    d = CompareDialog(_records, {X.model_id: X, Y.model_id: Y}, op, active_id=Y.model_id)
    qtbot.addWidget(d)
    assert d.x_combo.currentData() == Y.model_id and d.y_combo.currentData() == X.model_id  # the loaded one first
    d.set_pair(X.model_id, Y.model_id)
    assert len(d.scatter.data) == 4 and d.line_x.value() == 19.0 and d.line_y.value() == pytest.approx(1.9)
    assert "flagged by both (1)" in [label.text for _, label in d.legend.items]
    op.set_specificity(0.5)  # thresholds move with the window's operating point
    assert d.line_x.value() == X.calibration.threshold_at_specificity(0.5)
    chosen = []
    d.case_chosen.connect(chosen.append)
    point = d.scatter.points()[2]
    d._on_click(d.scatter, [point])
    assert chosen == [Path("/w/c")]
