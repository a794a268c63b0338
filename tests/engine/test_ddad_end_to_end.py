"""DDAD end to end on synthetic radiographs: train -> stop/resume -> export -> score -> eval."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrscreen.engine.cli import main as cli
from cxrscreen.engine.datasets import from_folders, load_images
from cxrscreen.engine.detector import Detector
from cxrscreen.engine.methods.ddad import Config
from cxrscreen.engine.methods.ddad.recipe import load_scorer
from cxrscreen.engine.preprocess import PreprocessSpec
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.stop import StopRequest
from cxrscreen.engine.synth import write_study
from cxrscreen.engine.train import RunFolderError, read_run, run_training

pytestmark = pytest.mark.slow
TINY = ["--backbone", "ae", "--members", "2", "--batch-size", "16", "--size", "32", "--seed", "0", "--progress", "json"]
# low anatomical variation and large lesions: a 30-epoch, 32-pixel training must find them
STUDY = dict(size=96, formats=("png",), variation=0.5, marker=False)
LESIONS = dict(lesion_strength=2.0, lesions=("consolidation", "effusion"))


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    write_study(root / "normal", 64, 0, seed=1, **STUDY)
    write_study(root / "unlabeled", 24, 24, seed=2, **STUDY, **LESIONS)
    write_study(root / "test", 20, 20, seed=3, **{**STUDY, "formats": ("png", "dicom")}, **LESIONS)
    (root / "test" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    for folder in ("normal", "unlabeled"):  # the training folders hold images only
        (root / folder / "labels.csv").unlink()
    return {"root": root, "normal": root / "normal", "unlabeled": root / "unlabeled", "test": root / "test"}


@pytest.fixture(scope="session")
def trained(synthetic, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "ddad"
    code = cli(["train", "--normal", str(synthetic["normal"]), "--unlabeled", str(synthetic["unlabeled"]),
                "--out", str(run), "--epochs", "30", *TINY])
    assert code == 0
    return run


def test_training_run_folder(trained):
    run = read_run(trained)
    assert run["status"] == "done" and run["method"] == "ddad"
    assert run["data"]["normal_train"] == 58 and run["data"]["normal_calibration"] == 6 and run["data"]["unlabeled"] == 48
    assert (trained / "model.pt").is_file() and not (trained / "checkpoint.pt").exists()
    cal = json.loads((trained / "calibration.json").read_text())
    assert cal["n_normals"] == 6
    events = [json.loads(line)["event"] for line in (trained / "log.jsonl").read_text().splitlines()]
    assert events.count("phase") == 3 and events[-1] == "done"  # load, train, calibrate


def test_export_score_eval(trained, synthetic, tmp_path, capsys):
    onnx_path = tmp_path / "det.onnx"  # each image as read (the default preset's file runs views: the test below)
    assert cli(["export", str(trained), "--out", str(onnx_path), "--views", "none"]) == 0
    out = capsys.readouterr().out
    assert "parity" in out and "calibrated on 6 held-out normals; threshold floor from 58 training normals (" in out
    assert "  unlabeled  acquired like the known normals (48 checked against 64; the largest difference, their " in out
    det = Detector(onnx_path, provider="cpu")
    assert det.meta.method == "ddad" and det.meta.backbone == "ae" and det.meta.score_type == "inter"
    # the default preset (robust-framing): cropped to the exposed field and equalised, in training and scoring alike
    assert (det.meta.preprocess.crop, det.meta.preprocess.intensity) == ("field", "equalize")
    assert det.meta.training["normal_train"] == 58 and len(det.meta.training["file_list_sha256"]) == 64
    assert det.meta.calibration.n_normals == 6
    # the out-of-scope gate's model of the training images (58 normals + 48 unlabeled) travels with it
    assert det.meta.scope["model"]["n_fit"] == 106 and det.meta.scope["model"]["n_threshold"] == 6
    assert det.scope_gate.model is not None
    # never overwrite silently
    assert cli(["export", str(trained), "--out", str(onnx_path), "--views", "none"]) == 1

    results = tmp_path / "scores.csv"
    assert cli(["score", str(synthetic["test"]), "--model", str(onnx_path), "--out", str(results)]) == 0
    rows = list(csv.DictReader(open(results)))
    assert len(rows) == 41  # 40 radiographs + the broken file, which gets a reason
    broken = [r for r in rows if r["path"].endswith("broken.png")][0]
    assert broken["score"] == "" and broken["error"]
    assert [r["path"] for r in rows if r["out_of_scope"]] == []  # chests of the training kind are in scope
    scored = {Path(r["path"]).name: float(r["score"]) for r in rows if r["score"]}

    # the app/score path and the training path give the same scores (one preprocessing function)
    scorer = load_scorer(trained)
    names = sorted(scored)[:8]
    images = load_images([synthetic["test"] / n for n in names], det.preprocess_spec)
    with torch.no_grad():
        torch_scores = scorer(torch.from_numpy(images))[0].numpy()
    np.testing.assert_allclose([scored[n] for n in names], torch_scores, atol=1e-4)

    # another map as score: re-calibrated on the held-out normal files at export
    rec_path = tmp_path / "rec.onnx"
    assert cli(["export", str(trained), "--out", str(rec_path), "--score", "rec", "--views", "none"]) == 0
    assert Detector(rec_path, provider="cpu").meta.score_type == "rec"
    report = tmp_path / "eval.json"
    assert cli(["eval", "--model", str(rec_path), "--labels", str(synthetic["test"] / "labels.csv"),
                "--out", str(report), "--bootstrap", "200"]) == 0
    rep = json.loads(report.read_text())
    assert rep["n"] == 40 and rep["n_abnormal"] == 20
    lo, hi = rep["auroc"]["ci95"]
    assert lo <= rep["auroc"]["value"] <= hi
    assert rep["auroc"]["value"] > 0.75  # large synthetic lesions are found after a short training
    assert rep["operating_points"]["normals"]["threshold"] == Detector(rec_path).calibration.threshold_at_specificity(0.95)
    assert report.with_suffix(".png").stat().st_size > 10_000


def test_export_with_test_time_views(trained, synthetic, tmp_path, capsys):
    from cxrscreen.engine.export import VIEW_SETS
    from cxrscreen.models.views import ViewAverage

    viewed = tmp_path / "views.onnx"
    assert read_run(trained)["config"]["test_time_views"] == "framing"  # the default preset's
    assert cli(["export", str(trained), "--out", str(viewed)]) == 0
    capsys.readouterr()
    det = Detector(viewed, provider="cpu")
    assert det.meta.score_type == "inter, mean of 7 views"
    assert det.meta.training["test_time_views"] == {"name": "framing", "views": [list(v) for v in VIEW_SETS["framing"]]}
    # the file runs every view: its scores are the mean of the torch scorer's over the views
    names = sorted(p.name for p in synthetic["test"].glob("*.png") if p.name != "broken.png")[:6]
    images = load_images([synthetic["test"] / n for n in names], det.preprocess_spec)
    scorer = load_scorer(trained)
    wrapped = ViewAverage(scorer, VIEW_SETS["framing"], det.preprocess_spec.output_range).eval()
    with torch.no_grad():
        want = wrapped(torch.from_numpy(images))[0].numpy()
        single = scorer(torch.from_numpy(images))[0].numpy()
    got = det.run(images)
    np.testing.assert_allclose(got.scores, want, atol=1e-4)
    assert not np.allclose(got.scores, single, atol=1e-3)  # the views change the score
    assert got.heatmaps.shape == (6, 32, 32)
    # calibrated again on the same held-out normals, with the views
    plain = json.loads((trained / "calibration.json").read_text())
    assert det.meta.calibration.n_normals == plain["n_normals"] == 6
    assert list(det.meta.calibration.normal_scores) != plain["normal_scores"]
    # an unknown set of views is one clear line
    with pytest.raises(SystemExit) as exc:
        cli(["export", str(trained), "--out", str(tmp_path / "x.onnx"), "--views", "spin"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'spin'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


def _config(**kw) -> Config:
    base = dict(backbone="ae", members=2, epochs=3, batch_size=16, preprocess=PreprocessSpec(size=32), checkpoint_every_s=0.0)
    return Config(**{**base, **kw})


def test_stop_and_resume_equals_an_uninterrupted_run(synthetic, tmp_path):
    data = from_folders(synthetic["normal"], synthetic["unlabeled"])
    quiet = Progress("none")
    assert run_training("ddad", _config(), data, tmp_path / "straight", quiet).status == "done"

    stop = StopRequest()

    class StopAfterFirstEpoch(Progress):
        def update(self, step, force=False, **fields):
            if fields.get("epoch_end"):
                stop.request()
            super().update(step, force, **fields)

    first = run_training("ddad", _config(), data, tmp_path / "resumed", StopAfterFirstEpoch("none"), stop)
    assert first.status == "stopped" and (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert read_run(tmp_path / "resumed")["status"] == "stopped"
    second = run_training("ddad", _config(), data, tmp_path / "resumed", quiet)
    assert second.status == "done"
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=False)["ensemble"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)["ensemble"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_a_run_folder_of_another_run_is_refused(synthetic, tmp_path):
    data = from_folders(synthetic["normal"], synthetic["unlabeled"])
    run_training("ddad", _config(epochs=1), data, tmp_path / "run", Progress("none"))
    with pytest.raises(RunFolderError, match="another run"):
        run_training("ddad", _config(epochs=2), data, tmp_path / "run", Progress("none"))


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(synthetic, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "cxrscreen.engine", "train", "--normal", str(synthetic["normal"]), "--unlabeled",
           str(synthetic["unlabeled"]), "--out", str(run), "--epochs", "30", "--checkpoint-every", "1000", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    for line in proc.stdout:
        if '"epoch_end": true' in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err[-2000:]
    assert (run / "checkpoint.pt").exists() and read_run(run)["status"] == "stopped"
    stopped_at = torch.load(run / "checkpoint.pt", weights_only=False)["epoch"]
    assert 1 <= stopped_at < 30
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from epoch {stopped_at}" in done.stdout
    assert read_run(run)["status"] == "done"


def test_bad_data_gets_a_clear_error(tmp_path, capsys):
    (tmp_path / "few").mkdir()
    write_study(tmp_path / "few", 2, 0, seed=0, **STUDY)
    code = cli(["train", "--normal", str(tmp_path / "few"), "--unlabeled", str(tmp_path / "few"), "--out", str(tmp_path / "r"), *TINY])
    assert code == 1
    assert "at least 3 known normals" in capsys.readouterr().out


def test_training_needs_the_split_or_folders(tmp_path):
    with pytest.raises(SystemExit):
        cli(["train", "--out", str(tmp_path / "r")])


def test_module_b_can_be_reused_when_only_the_unlabeled_set_changes(synthetic, tmp_path):
    from cxrscreen.engine.datasets import DataError

    quiet = Progress("none")
    first = from_folders(synthetic["normal"], synthetic["unlabeled"])
    run_training("ddad", _config(epochs=2), first, tmp_path / "first", quiet)
    second = from_folders(synthetic["normal"], synthetic["test"])  # a new unlabeled batch
    reuse = _config(epochs=2, reuse_normal_module=str(tmp_path / "first"))
    run_training("ddad", reuse, second, tmp_path / "second", quiet)
    a = torch.load(tmp_path / "first" / "model.pt", weights_only=False)["ensemble"]
    b = torch.load(tmp_path / "second" / "model.pt", weights_only=False)["ensemble"]
    conv = "encoder.0.weight"  # (2K*16, 1, 4, 4): members A1, A2, B1, B2
    torch.testing.assert_close(a[conv][32:], b[conv][32:], rtol=0, atol=0)  # module B taken as is
    assert not torch.equal(a[conv][:32], b[conv][:32])  # module A trained on the new union
    with pytest.raises(DataError, match="different epochs"):
        run_training("ddad", _config(epochs=3, reuse_normal_module=str(tmp_path / "first")), second,
                     tmp_path / "third", quiet)
