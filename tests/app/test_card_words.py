"""The detector card's training settings in words and its intended-use section (app/card_words.py)."""
from __future__ import annotations

import dataclasses

from cxrscreen.app.card_words import intended_use_rows, training_rows, value_words
from cxrscreen.app.detector_card import card_sections
from cxrscreen.engine.detector import read_metadata


def test_training_settings_read_as_words_not_json() -> None:
    training = {"normal_train": 540, "normal_calibration": 60, "unlabeled": 500, "skipped": 2,
                "file_list_sha256": "ab" * 32, "run_dir": "/runs/x", "train_seconds": 725.0,
                "config": {"backbone": "ae-u", "members": 3, "epochs": 250, "batch_size": 64, "lr": 0.0001,
                           "betas": [0.5, 0.999], "preprocess": {"size": 64, "aspect": "stretch"}, "use_amp": False}}
    rows = dict(training_rows(training))
    assert rows["Images"] == ("540 known normals for training, 60 held out to calibrate (never trained on), "
                              "500 unlabeled images; 2 unreadable left out")
    assert rows["Training time"] == "12 min 5 s"
    assert rows["Epochs"] == "250" and rows["Networks per module (K)"] == "3" and rows["Learning rate"] == "0.0001"
    assert rows["Adam betas"] == "0.5, 0.999" and rows["Input size (px)"] == "64"
    assert rows["Use amp"] == "no"  # an unknown key still shows, in words
    assert "/runs/x" not in rows.values() and not any("{" in v for v in rows.values())
    assert value_words({"a_b": 1.23456}) == "A b 1.235"


def test_test_time_views_read_as_words() -> None:
    from cxrscreen.app.card_words import views_words
    from cxrscreen.engine.export import VIEW_SETS

    views = {"name": "framing", "views": [list(v) for v in VIEW_SETS["framing"]]}
    training = {"normal_train": 540, "config": {"test_time_views": "framing"}, "test_time_views": views}
    rows = dict(training_rows(training))
    assert rows["Test-time views"] == "framing" and "Scored as" not in rows  # the Method section says it
    assert not any("{" in v or "[" in v for v in rows.values())
    assert views_words(views).startswith("the mean score of the image as read and 6 re-framings of it (magnified 1.15×, "
                                         "magnified 0.92×, shifted 6 % right, shifted 6 % left, shifted 6 % down, "
                                         "shifted 6 % up)")
    assert views_words({"views": [[1, 0, 0]]}) == "each image as read"


def test_the_card_says_how_a_file_with_views_scores(tiny_detector) -> None:
    from cxrscreen.app.detector_card import card_sections
    from cxrscreen.engine.export import VIEW_SETS

    meta = read_metadata(tiny_detector)
    assert "Scored as" not in dict(dict(card_sections(meta))["Method"])
    viewed = dataclasses.replace(meta, training={**meta.training, "test_time_views": {
        "name": "framing", "views": [list(v) for v in VIEW_SETS["framing"]]}})
    method = dict(card_sections(viewed))["Method"]
    assert [label for label, _ in method][:4] == ["Method", "Backbone", "Score", "Scored as"]
    assert dict(method)["Scored as"].startswith("the mean score of the image as read and 6 re-framings")


def test_card_has_intended_use_and_limitations(tiny_detector) -> None:
    meta = read_metadata(tiny_detector)
    rows = dict(intended_use_rows(meta))
    assert "Not a medical device" in rows["Limitations"] and "frontal" in rows["Intended use"]
    assert rows["Operating points"].startswith("50 calibration normals support 90 %, 95 % specificity")
    demo = dict(intended_use_rows(dataclasses.replace(meta, name="Demo detector (synthetic images)")))
    assert "not for clinical images" in demo["Trained on"]
    assert dict(card_sections(meta))["Intended use and limitations"][0][0] == "Intended use"


def test_card_operating_points_are_those_of_the_calibration_in_use(tiny_detector) -> None:
    from cxrscreen.engine.site_calibration import site_calibration

    meta = read_metadata(tiny_detector)
    site = site_calibration(meta.calibration.normal_scores[:12], meta.calibration, "Ward 3", source="12 marked")
    card = dict(card_sections(meta, site_calibrations=[site], active=site))
    rows = dict(card["Intended use and limitations"])
    # the site's 12 confirmed normals set the thresholds now: 90 % only (95 % needs 20), not the own 50's 90 and 95 %
    assert rows["Operating points"].startswith("The 12 normals of the site calibration “Ward 3” (in use) support "
                                               "90 % specificity (")
    # the count once, not "12 (12 reader-confirmed normals (marked in the app))"
    assert dict(card["Site calibration “Ward 3” (in use)"])["Normals"] == "12 marked"
    named = site_calibration(meta.calibration.normal_scores[:12], meta.calibration, "Ward 4",
                             source="12 reader-confirmed normals (marked in the app)")
    rows = dict(dict(card_sections(meta, site_calibrations=[named]))["Site calibration “Ward 4”"])
    assert rows["Normals"] == "12 reader-confirmed normals (marked in the app)"
    own = dict(dict(card_sections(meta, site_calibrations=[site]))["Intended use and limitations"])
    assert own["Operating points"].startswith("50 calibration normals support 90 %, 95 % specificity")


def test_card_counts_confirmed_abnormal_training_images(tiny_detector) -> None:
    meta = read_metadata(tiny_detector)
    weak = dataclasses.replace(meta, training={"normal_train": 90, "normal_calibration": 10, "unlabeled": 0,
                                               "abnormal": 16})
    assert dict(intended_use_rows(weak))["Trained on"].startswith("106 images")  # 90 normals + 16 abnormal


def test_card_names_the_threshold_estimate(tiny_detector) -> None:
    meta = read_metadata(tiny_detector)
    rows = dict(dict(card_sections(meta))["Calibration on known normals"])
    assert rows["Threshold estimate"].startswith("Harrell–Davis")  # a detector made now
    old = dataclasses.replace(meta, calibration=dataclasses.replace(meta.calibration, threshold_method="higher"))
    assert "made before" in dict(dict(card_sections(old))["Calibration on known normals"])["Threshold estimate"]


def test_a_weakly_supervised_detector_says_how_many_anomalies_and_how_they_were_drawn() -> None:
    training = {"normal_train": 540, "normal_calibration": 60, "unlabeled": 0, "abnormal": 16,
                "anomalies": {"from": "split fewshot.abnormal", "k": 16, "of": 18, "seed": 2,
                              "draw": "across patients, nested"}}
    rows = dict(training_rows(training))
    assert rows["Images"] == ("540 known normals for training, 60 held out to calibrate (never trained on), "
                              "0 unlabeled images, 16 confirmed-abnormal images")
    assert rows["Confirmed anomalies"] == ("K = 16 of the split's 18 few-shot anomalies, drawn across patients, "
                                           "nested with seed 2")
    marked = dict(training_rows({**training, "abnormal": 5, "anomalies": {"from": "reader marks", "k": 5}}))
    assert marked["Confirmed anomalies"] == "K = 5 images a reader marked confirmed abnormal"
    folder = dict(training_rows({**training, "abnormal": 3, "anomalies": {"from": "folder", "k": 3}}))
    assert folder["Confirmed anomalies"] == "K = 3: every readable image of a confirmed-abnormal folder"
    # DDAD and AMAE record no abnormal images: no row, no count
    unsupervised = dict(training_rows({"normal_train": 540, "normal_calibration": 60, "unlabeled": 500, "abnormal": 0}))
    assert "Confirmed anomalies" not in unsupervised and "abnormal" not in unsupervised["Images"]
    assert "Abnormal" not in unsupervised


def test_an_ensemble_lists_its_members_in_words_not_json() -> None:
    training = {"normal_train": 540, "normal_calibration": 60, "unlabeled": 500, "abnormal": 0,
                "config": {"ensemble_of": ["amae MAE ViT (inter)", "ddad ae-u (inter)"],
                           "standardisation": "per member on 300 shared training normals"},
                "train_seconds": 4140.0,
                "member_runs": [
                    {"method": "amae", "backbone": "MAE ViT", "score_type": "inter", "score_loc": 0.01782,
                     "score_scale": 0.005821, "training": {"train_seconds": 1375.2, "run_sha256": "ab" * 32,
                                                          "config": {"epochs": 100}}},
                    {"method": "ddad", "backbone": "ae-u", "score_type": "inter", "score_loc": 0.294,
                     "score_scale": 0.03729, "training": {"train_seconds": 2764.8, "run_sha256": "cd" * 32}}]}
    rows = dict(training_rows(training))
    assert rows["Ensemble of"] == "amae MAE ViT (inter), ddad ae-u (inter)"
    assert rows["Member 1"] == "AMAE MAE ViT (inter); score (s − 0.01782) / 0.005821; trained 22 min; run abababababab"
    assert rows["Member 2"].startswith("DDAD ae-u (inter); score (s − 0.294) / 0.03729; trained 46 min")
    assert rows["Training time"] == "1 h 9 min" and "Member runs" not in rows and "{" not in "".join(rows.values())


def test_the_card_says_whether_the_calibration_normals_were_held_out_as_whole_patients() -> None:
    counts = {"normal_train": 540, "normal_calibration": 60, "unlabeled": 500}
    whole = dict(training_rows({**counts, "source": {"kind": "split", "hold_out": {
        "unit": "patient", "patients": 56, "of": 558, "key": "file-name pattern"}}}))
    assert whole["Calibration hold-out"] == ("whole patients: 56 of 558 (identified by file-name pattern); none has an "
                                             "image in training")
    images = dict(training_rows({**counts, "source": {"kind": "folders", "hold_out": {"unit": "image", "shared": 5}}}))
    assert images["Calibration hold-out"].startswith("single images; 5 share a patient")
    unknown = dict(training_rows({**counts, "source": {"kind": "folders", "hold_out": {
        "unit": "image", "shared": 0, "patients_known": False}}}))
    assert unknown["Calibration hold-out"].startswith("single images: the files name no patient")
    assert "Calibration hold-out" not in dict(training_rows({**counts, "source": {"kind": "split"}}))  # older detectors
