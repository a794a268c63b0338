"""`cxrscreen ensemble`: finished runs of different methods as one detector file (engine/ensemble.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrscreen.engine.cli import main as cli
from cxrscreen.engine.datasets import load_images
from cxrscreen.engine.detector import Detector, harrell_davis_threshold
from cxrscreen.engine.ensemble import EnsembleError, build_ensemble, read_member, shared_training_normals
from cxrscreen.engine.train import DATA_FILE, RUN_FILE, training_floor_index

MEMBERS = ("msacl", "amae")  # tests/conftest.py's ensemble_runs


@pytest.fixture(scope="module")
def runs(ensemble_runs) -> dict[str, Path]:
    return ensemble_runs


@pytest.fixture(scope="module")
def ensemble(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ens_out") / "ensemble.onnx"
    build_ensemble([runs[m] for m in MEMBERS], out)
    return out


def _standardised(run: Path, images: np.ndarray, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A member's score and heatmap on the scale of the shared training normals, computed here in PyTorch."""
    m = read_member(run)
    scorer = m.method.hooks().load_scorer(run, m.score_type).eval()
    with torch.no_grad():
        s, h = (t.numpy().astype(np.float64) for t in scorer(torch.from_numpy(images)))
        fs, fh = (t.numpy().astype(np.float64) for t in scorer(torch.from_numpy(floor)))
    q25, q50, q75 = np.quantile(fs, [0.25, 0.5, 0.75])
    p50, p99 = np.quantile(fh.ravel(), [0.5, 0.99])
    return (s - q50) / (q75 - q25), (h - p50) / (p99 - p50)


def test_the_detector_is_the_mean_of_the_members_standardised_outputs(runs, ensemble):
    det = Detector(ensemble, provider="cpu")
    assert det.meta.method == "ensemble" and [i["method"] for i in det.meta.training["member_runs"]] == list(MEMBERS)
    members = [read_member(runs[m]) for m in MEMBERS]
    floor_paths = shared_training_normals(members)
    floor = load_images([floor_paths[i] for i in training_floor_index(len(floor_paths))], det.preprocess_spec)
    images = load_images(sorted((runs["root"] / "test").glob("*.png")), det.preprocess_spec)
    parts = [_standardised(runs[m], images, floor) for m in MEMBERS]
    out = det.run(images)
    np.testing.assert_allclose(out.scores, np.mean([p[0] for p in parts], 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.heatmaps, np.mean([p[1] for p in parts], 0), rtol=1e-4, atol=1e-4)
    # the members really differ: neither alone is the ensemble
    assert not np.allclose(parts[0][0], parts[1][0], atol=1e-2)


def test_it_is_calibrated_on_the_held_out_normals_no_member_trained_on(runs, ensemble):
    det = Detector(ensemble, provider="cpu")
    cal = det.meta.calibration
    members = [read_member(runs[m]) for m in MEMBERS]
    held_out = members[0].data.normal_calibration
    assert cal.n_normals == len(held_out) == 3 and "never trained on by any of the 2 members" in cal.source
    scores = det.run(load_images(held_out, det.preprocess_spec)).scores
    np.testing.assert_allclose(cal.normal_scores, np.sort(scores), rtol=1e-4, atol=1e-4)
    # the floor: the shared training normals, scored by the whole ensemble
    floor_paths = shared_training_normals(members)
    seen = det.run(load_images(floor_paths, det.preprocess_spec)).scores
    np.testing.assert_allclose(cal.training_normal_scores, np.sort(seen), rtol=1e-4, atol=1e-4)
    # 3 held-out normals cannot place 95 %: the 27 shared training normals' estimate sets it
    assert cal.floor_raises(0.95)
    assert cal.threshold_at_specificity(0.95) == pytest.approx(harrell_davis_threshold(np.sort(seen), 0.95), abs=1e-3)
    t = det.meta.training
    assert t["normal_train"] == 27 and t["normal_calibration"] == 3 and t["unlabeled"] == 12
    assert t["roles"] == {"normal": 30, "unlabeled": 12, "abnormal": 0}
    assert all(str(runs["root"]) not in json.dumps(i["training"]) for i in t["member_runs"])  # no paths travel


def _copy(run: Path, tmp_path: Path, name: str, edit) -> Path:
    out = tmp_path / name
    shutil.copytree(run, out)
    for fname in (RUN_FILE, DATA_FILE):
        d = json.loads((out / fname).read_text())
        d = edit(fname, d) or d
        (out / fname).write_text(json.dumps(d))
    return out


def test_runs_that_cannot_be_one_detector_are_refused(runs, tmp_path):
    a, b = runs["msacl"], runs["amae"]
    with pytest.raises(EnsembleError, match="at least two runs"):
        build_ensemble([a], tmp_path / "x.onnx")
    with pytest.raises(EnsembleError, match="given twice"):
        build_ensemble([a, a], tmp_path / "x.onnx")

    def other_preprocessing(fname, d):
        if fname == RUN_FILE:
            d["config"]["preprocess"]["crop"] = "field"
    with pytest.raises(EnsembleError, match="share one preprocessing"):
        build_ensemble([a, _copy(b, tmp_path, "crop", other_preprocessing)], tmp_path / "x.onnx")

    def other_hold_out(fname, d):
        if fname == DATA_FILE:
            d["normal_calibration"][0], d["normal_train"][0] = d["normal_train"][0], d["normal_calibration"][0]
    with pytest.raises(EnsembleError, match="held out other calibration normals.*same known normals.*train it again"):
        build_ensemble([a, _copy(b, tmp_path, "hold", other_hold_out)], tmp_path / "x.onnx")

    def other_normals(fname, d):
        if fname == DATA_FILE:
            d["normal_calibration"] = d["normal_calibration"][1:]
    with pytest.raises(EnsembleError, match="held out other calibration normals.*train every member on the same known"):
        build_ensemble([a, _copy(b, tmp_path, "fewer", other_normals)], tmp_path / "x.onnx")

    def saw_a_held_out_normal(fname, d):
        if fname == DATA_FILE:
            d["unlabeled"].append(d["normal_calibration"][1])
    with pytest.raises(EnsembleError, match="trained on 1 of the calibration normals"):
        build_ensemble([a, _copy(b, tmp_path, "leak", saw_a_held_out_normal)], tmp_path / "x.onnx")

    def unfinished(fname, d):
        if fname == RUN_FILE:
            d["status"] = "training"
    with pytest.raises(EnsembleError, match="not finished"):
        build_ensemble([a, _copy(b, tmp_path, "busy", unfinished)], tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists() and not list(tmp_path.glob(".x.onnx*"))


def test_cli_writes_the_file_or_says_in_one_line_why_not(runs, tmp_path, capsys):
    out = tmp_path / "e.onnx"
    assert cli(["ensemble", str(runs["msacl"]), str(runs["amae"]), "--out", str(out), "--name", "Site ensemble"]) == 0
    text = capsys.readouterr().out
    assert "the mean of 2 standardised scores" in text and "calibrated on 3 held-out normals no member trained on" in text
    assert Detector(out, provider="cpu").meta.name == "Site ensemble"
    assert cli(["ensemble", str(runs["msacl"]), str(runs["amae"]), "--out", str(out)]) == 1  # exists
    assert cli(["ensemble", str(runs["msacl"]), str(tmp_path / "nothing"), "--out", str(tmp_path / "f.onnx")]) == 1
    # a held-out image that is gone since the runs trained (both runs list it: they agree, then it cannot be read)
    def gone(fname, d):
        if fname == DATA_FILE:
            d["normal_calibration"][0] = str(tmp_path / "gone.png")
    moved = [_copy(runs[m], tmp_path, f"moved_{m}", gone) for m in MEMBERS]
    assert cli(["ensemble", *map(str, moved), "--out", str(tmp_path / "f.onnx")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "exists; pass --overwrite" in err[0] and "not a folder" in err[1]
    assert "gone.png" in err[2] and "must still be where they trained" in err[2]
    assert not (tmp_path / "f.onnx").exists()
