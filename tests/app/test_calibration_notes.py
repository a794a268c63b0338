"""The operating-point panel and the detector card say when a threshold rests on too few normals."""
from __future__ import annotations

from cxrscreen.app.detector_card import card_sections
from cxrscreen.app.panels.operating_point import OperatingPointControl
from cxrscreen.app.state import OperatingPoint
from cxrscreen.engine.detector import NormalCalibration, read_metadata


def test_panel_warns_below_one_over_one_minus_specificity_normals(qtbot) -> None:
    control = OperatingPointControl(OperatingPoint(specificity=0.95))
    qtbot.addWidget(control)
    control.set_calibration(NormalCalibration((0.1, 0.2, 0.3), (0.0, 1.0), (0.0, 1.0)))
    text = control.summary.text()
    # too few normals: the threshold is the highest one (0.3), which is not flagged (score > threshold): not "below"
    assert "flag score > 0.3; 100.0 % of 3 calibration normals are at or below it" in text
    assert "95 % interval 29.2–100.0 %" in text
    assert "needs at least 20, this detector was calibrated on 3" in text
    control.set_calibration(NormalCalibration(tuple(float(i) for i in range(40)), (0.0, 1.0), (0.0, 1.0)))
    assert "⚠" not in control.summary.text()  # 40 normals support 95 %


def test_card_shows_intervals_notes_and_the_gate(tiny_detector) -> None:
    sections = dict(card_sections(read_metadata(tiny_detector)))
    cal = dict(sections["Calibration on known normals"])
    assert "95 % interval" in cal["Threshold at 95 %"] and "of the normals at or below it" in cal["Threshold at 95 %"]
    assert "needs at least 100, this detector was calibrated on 50" in cal["Threshold at 99 %"]  # 50 test normals
    assert "⚠" not in cal["Threshold at 95 %"]
    assert "no model" in cal["Out-of-scope gate"]  # a detector made before the gate
    assert cal["Acquisition check"].startswith("none: this detector stores no reference")  # ... and the check


def test_card_names_the_acquisition_reference(tiny_detector, tmp_path) -> None:
    import numpy as np

    from cxrscreen.engine.acquisition import AcquisitionReference
    from tests.engine.test_acquisition import _with_reference

    ref = AcquisitionReference.from_descriptors(np.random.default_rng(0).dirichlet(np.ones(4), 30))
    model = _with_reference(tiny_detector, ref, tmp_path / "ref.onnx")
    cal = dict(dict(card_sections(read_metadata(model)))["Calibration on known normals"])
    assert cal["Acquisition check"].startswith("each folder's images against 30 training normals")


def test_card_says_whether_the_unlabeled_images_were_acquired_like_the_known_normals(tiny_detector) -> None:
    import dataclasses

    import numpy as np

    from cxrscreen.engine.acquisition import AcquisitionReference, check_unlabeled

    rng = np.random.default_rng(1)
    known = rng.dirichlet([4, 4, 4, 4], 200)
    ref = AcquisitionReference.from_descriptors(known)
    meta = read_metadata(tiny_detector)

    def row(scope: dict) -> str | None:
        return dict(dict(card_sections(dataclasses.replace(meta, scope=scope)))["Calibration on known normals"]).get(
            "Unlabeled images")

    like = check_unlabeled(rng.dirichlet([4, 4, 4, 4], 150), ref)
    assert row({"acquisition": ref.to_dict(), "unlabeled_acquisition": like.to_dict()}).startswith(
        "acquired like the known normals (150 checked against 200; the largest difference, their ")
    other = check_unlabeled(rng.dirichlet([8, 4, 3, 3], 150), ref)  # more of the finest detail
    text = row({"acquisition": ref.to_dict(), "unlabeled_acquisition": other.to_dict()})
    assert text.startswith("⚠ The unlabeled images were acquired or processed unlike the known normals: their finest "
                           "detail is stronger than the known normals' in ")
    few = check_unlabeled(rng.dirichlet([4, 4, 4, 4], 5), ref)
    assert not few.tested and row({"unlabeled_acquisition": few.to_dict()}) is None  # nothing checked: no row
    assert row({"acquisition": ref.to_dict()}) is None  # made before the check, or no unlabeled images: no row
    assert row({"unlabeled_acquisition": {"n": "x"}}) is None  # unreadable: no row, no crash


def test_result_panel_says_a_percentile_among_too_few_normals_is_weak(qtbot) -> None:
    from cxrscreen.app.panels.case_info import CaseInfoPanel
    from cxrscreen.app.records import CaseScore
    from cxrscreen.app.state import PrivacyState

    panel = CaseInfoPanel(PrivacyState(), b"k" * 32)
    qtbot.addWidget(panel)
    panel.set_result(CaseScore(0.5, 100.0), True, 3)  # the "100.0 of 3 normals"
    assert panel.percentile_label.text() == "100.0 %: above all 3 normals — too few for a 95 % threshold"
    panel.set_result(CaseScore(0.5, 90.0), False, 60)
    assert panel.percentile_label.text() == "90.0 % of 60 normals score lower"  # not "90.0 of 60", a count


def test_the_exported_operating_point_says_when_it_rests_on_too_few_normals() -> None:
    point = OperatingPoint(specificity=0.95)
    few = NormalCalibration((0.1, 0.2, 0.3), (0.0, 1.0), (0.0, 1.0), name="ward 3")
    assert point.describe(few) == ("95 % specificity: flag score > 0.3 (⚠ 95 % specificity rests on too few normals: "
                                   "it needs at least 20, the site calibration “ward 3” has 3 (the threshold is their "
                                   "highest score))")
    enough = NormalCalibration(tuple(float(i) for i in range(40)), (0.0, 1.0), (0.0, 1.0))
    assert "⚠" not in point.describe(enough)
    point.set_score_threshold(0.25)
    assert point.describe(few) == "raw score threshold: flag score > 0.25"  # no specificity promised


def test_panel_and_card_say_when_the_training_normals_set_the_threshold(qtbot, tiny_detector) -> None:
    """Held-out normals that sit below the training normals: the threshold is the training normals'
    estimate, and both the panel and the card say so; training normals that score lower: silent."""
    import dataclasses

    held = tuple(float(i) / 59 for i in range(60))
    high = tuple(0.2 + 1.3 * i / 299 for i in range(300))
    low = tuple(-0.5 + 1.1 * i / 299 for i in range(300))
    control = OperatingPointControl(OperatingPoint(specificity=0.95))
    qtbot.addWidget(control)
    control.set_calibration(NormalCalibration(held, (0.0, 1.0), (0.0, 1.0), training_normal_scores=high))
    assert "100.0 % of 60 calibration normals are at or below it" in control.summary.text()
    assert "raised to the 95 % point of 300 training normals, which score higher than the held-out ones" in \
        control.summary.text()
    control.set_calibration(NormalCalibration(held, (0.0, 1.0), (0.0, 1.0), training_normal_scores=low))
    assert "training normals" not in control.summary.text()

    meta = read_metadata(tiny_detector)
    raised = dataclasses.replace(meta, calibration=NormalCalibration(held, (0.0, 1.0), (0.0, 1.0), training_normal_scores=high))
    cal = dict(dict(card_sections(raised))["Calibration on known normals"])
    assert cal["Training-normal floor"].startswith("300 training normals scored after training")
    assert "it sets the threshold at 90 %, 95 %, 99 %" in cal["Training-normal floor"]
    assert cal["Threshold at 95 %"].endswith("; the training normals' floor")
    # 60 held-out normals are too few for 99 %, but the 300 training normals that set it there are not
    assert cal["Threshold at 99 %"].endswith("; the training normals' floor") and "⚠" not in cal["Threshold at 99 %"]
    use = dict(dict(card_sections(raised))["Intended use and limitations"])
    assert use["Operating points"].endswith("support 90 %, 95 % specificity (a threshold at specificity s needs at least "
                                            "1 / (1 − s) normals); at 99 % the threshold rests on 300 training normals "
                                            "(the training-normal floor).")
    quiet = dataclasses.replace(meta, calibration=NormalCalibration(held, (0.0, 1.0), (0.0, 1.0), training_normal_scores=low))
    cal = dict(dict(card_sections(quiet))["Calibration on known normals"])
    assert "(no change)" in cal["Training-normal floor"] and "floor" not in cal["Threshold at 95 %"]
