"""The calibration hold-out is made of whole patients (engine.datasets.split_calibration)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxrscreen.engine.datasets import from_folders, hold_out_unit, patient_of, split_calibration
from cxrscreen.engine.synth import write_study


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hold_out")
    study = dict(size=64, formats=("png",), variation=0.5, marker=False)
    write_study(root / "normal", 30, 0, seed=1, **study)
    write_study(root / "unlabeled", 4, 4, seed=2, **study)
    for f in ("normal", "unlabeled"):
        (root / f / "labels.csv").unlink()
    return {"normal": root / "normal", "unlabeled": root / "unlabeled"}


def _per_image_draw(paths: list[Path], fraction: float, seed: int = 0) -> list[Path]:
    """The hold-out of earlier releases: the first round(fraction * n) of a seeded permutation of the sorted files."""
    ordered = sorted(paths)
    n_cal = min(max(int(round(fraction * len(ordered))), 1), len(ordered) - 2)
    idx = set(np.random.default_rng(seed).permutation(len(ordered))[:n_cal].tolist())
    return [p for i, p in enumerate(ordered) if i in idx]


def test_kermany_file_names_give_the_patient():
    assert patient_of("NORMAL/IM-0545-0001.jpeg") == patient_of("IM-0545-0001-0002.jpeg") == "IM-0545"
    assert patient_of("NORMAL2-IM-0429-0001.jpeg") == "NORMAL2-IM-0429" != patient_of("IM-0429-0001.jpeg")
    assert patient_of("person12_bacteria_3.jpeg") == patient_of("person12_virus_40.jpeg") == "person12"
    assert patient_of("scan_0001.png") == "scan_0001.png"  # unknown naming: a patient of its own


def test_no_held_out_patient_has_an_image_in_training():
    # 40 patients with 1-3 images each, named by a DICOM PatientID the file names do not show
    rng = np.random.default_rng(3)
    paths, patients = [], {}
    for k in range(40):
        for j in range(int(rng.integers(1, 4))):
            p = Path(f"/data/img_{len(paths):03d}.dcm")
            paths.append(p)
            patients[p] = f"P{k}"
    train, cal = split_calibration(paths, 0.2, patients=patients)
    assert len(cal) == int(round(0.2 * len(paths)))  # the target count, filled with whole patients
    assert not {patients[p] for p in cal} & {patients[p] for p in train}
    assert sorted(train + cal) == sorted(paths)
    unit = hold_out_unit(train, cal, patients)
    assert unit == {"unit": "patient", "patients": len({patients[p] for p in cal}), "of": 40, "key": "DICOM PatientID"}
    # without the patient keys the same files are split image by image, and siblings are split up
    train_i, cal_i = split_calibration(paths, 0.2)
    assert cal_i == _per_image_draw(paths, 0.2)
    assert hold_out_unit(train_i, cal_i, patients)["unit"] == "image"


def test_one_image_per_patient_keeps_the_earlier_hold_out():
    """Runs trained before the hold-out knew patients (every image its own patient) keep their split."""
    paths = [Path(f"/d/{n}.png") for n in np.random.default_rng(0).permutation(200)]
    for fraction in (0.1, 0.2, 0.5):
        assert split_calibration(paths, fraction)[1] == _per_image_draw(paths, fraction)


def test_a_patient_too_large_to_hold_out_stays_in_training_and_one_patient_falls_back_to_images():
    big = [Path(f"/d/a{i}.dcm") for i in range(8)]
    small = [Path(f"/d/b{i}.dcm") for i in range(4)]
    patients = {**{p: "BIG" for p in big}, **{p: f"S{i}" for i, p in enumerate(small)}}
    train, cal = split_calibration(big + small, 0.2, patients=patients)
    assert set(cal) <= set(small) and len(cal) == 2 and set(big) <= set(train)
    # an anonymised folder: one PatientID for every image; the hold-out can only be per image, and says so
    same = {p: "ANON" for p in big + small}
    train, cal = split_calibration(big + small, 0.2, patients=same)
    assert len(cal) == 2
    assert hold_out_unit(train, cal, same) == {"unit": "image", "shared": 2}


def test_folders_hold_out_whole_patients_by_dicom_patient_id(tmp_path):
    from cxrscreen.engine.io.dicom_write import write_dicom

    normal, unlabeled = tmp_path / "normal", tmp_path / "unlabeled"
    normal.mkdir(), unlabeled.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):  # 10 patients, two studies each, file names in no patient order
        write_dicom(normal / f"{rng.permutation(1000)[i]:04d}_{i}.dcm", rng.integers(0, 255, (32, 32), dtype=np.uint8),
                    tags={"PatientID": f"PAT{i % 10}"})
    write_dicom(unlabeled / "u.dcm", rng.integers(0, 255, (32, 32), dtype=np.uint8))
    data = from_folders(normal, unlabeled, calibration_fraction=0.2)
    import pydicom

    def ids(paths):
        return {pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in paths}

    assert len(data.normal_calibration) == 4
    assert len(ids(data.normal_calibration)) == 2 and not ids(data.normal_calibration) & ids(data.normal_train)
    assert data.summary()["source"]["hold_out"] == {"unit": "patient", "patients": 2, "of": 10,
                                                    "key": "DICOM PatientID"}


def test_a_resumed_run_keeps_the_hold_out_it_started_with(folders, tmp_path, epoch_probe):
    """A run stopped before the hold-out was drawn by patient resumes with its recorded hold-out
    (it is not refused as 'another run', and its calibration normals stay those never trained on)."""
    from cxrscreen.engine.methods import method
    from cxrscreen.engine.train import RunFolderError, run_training

    data = from_folders(folders["normal"], folders["unlabeled"])
    # the same images with another hold-out, as an earlier release drew it
    every = sorted(data.normal_train + data.normal_calibration)
    other_cal = [p for p in every if p not in data.normal_calibration][: len(data.normal_calibration)]
    started = type(data)([p for p in every if p not in other_cal], other_cal, data.unlabeled, data.source)
    config = method("ddad").config("tiny", batch_size=8, checkpoint_every=0.0, device="cpu")
    run = tmp_path / "run"
    assert run_training("ddad", config, started, run, epoch_probe.progress(), epoch_probe.stop).status == "stopped"
    assert run_training("ddad", config, data, run, epoch_probe.progress()).status == "done"
    recorded = json.loads((run / "data.json").read_text())
    assert recorded["normal_calibration"] == [str(p.absolute()) for p in other_cal]
    assert any("keeping the calibration hold-out the run was started with" in m for m in epoch_probe.messages)
    # other images are still another run
    fewer = type(data)(data.normal_train[1:], data.normal_calibration, data.unlabeled, data.source)
    with pytest.raises(RunFolderError, match="holds another run"):
        run_training("ddad", config, fewer, run, epoch_probe.progress())


def test_the_detector_file_says_how_the_hold_out_was_made_and_not_where(tmp_path):
    from cxrscreen.engine.export import training_summary

    hold_out = {"unit": "patient", "patients": 6, "of": 60, "key": "DICOM PatientID"}
    run = {"data": {"normal_train": 54, "normal_calibration": 6, "source": {
        "kind": "folders", "normal_dir": "/archive/Doe_Jane/normal", "hold_out": hold_out}}}
    summary = training_summary(run, tmp_path)
    assert summary["source"] == {"kind": "folders", "hold_out": hold_out}


def test_a_file_name_pattern_names_a_patient_only_within_its_folder():
    """IM-0001-0001.dcm restarts in every exported folder, and 1.png may be in every folder: different images,
    different patients; without any patient known the card is told so."""
    exported = [Path(f"/site/{folder}/IM-0001-{i:04d}.png") for folder in ("a", "b", "c", "d", "e") for i in (1, 2)]
    train, cal = split_calibration(exported, 0.2)
    folders = lambda paths: {p.parent for p in paths}  # noqa: E731
    assert len(cal) == 2 and len(folders(cal)) == 1 and not folders(cal) & folders(train)  # one folder's pair, whole
    assert hold_out_unit(train, cal) == {"unit": "patient", "patients": 1, "of": 5, "key": "file-name pattern"}
    plain = [Path(f"/site/{folder}/{i}.png") for folder in ("a", "b") for i in range(10)]
    train, cal = split_calibration(plain, 0.1)
    assert cal == _per_image_draw(plain, 0.1)  # 1.png of a and of b are two patients, as before
    assert hold_out_unit(train, cal) == {"unit": "image", "shared": 0, "patients_known": False}
