"""AMAE end to end on synthetic radiographs: train -> export (both detectors) -> score; stop/resume; checkpoints."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
import pytest
import torch

from cxrscreen.engine.cli import main as cli
from cxrscreen.engine.datasets import DataError, from_folders, load_images
from cxrscreen.engine.detector import Detector
from cxrscreen.engine.methods.amae import PHASES, preset_config
from cxrscreen.engine.methods.amae.recipe import all_scores, load_scorer
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.stop import StopRequest
from cxrscreen.engine.synth import write_study
from cxrscreen.engine.train import read_run, run_training
from cxrscreen.models.mae import MaskedAutoencoder

pytestmark = pytest.mark.slow
TINY = ["--method", "amae", "--amae-preset", "tiny", "--threads", "1", "--seed", "0", "--progress", "json"]
STUDY = dict(size=96, formats=("png",), variation=0.5, marker=False)
LESIONS = dict(lesion_strength=2.0, lesions=("consolidation", "effusion"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run faster on one thread, far faster on a CPU shared with other jobs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("amae_synthetic")
    write_study(root / "normal", 40, 0, seed=11, **STUDY)
    write_study(root / "unlabeled", 12, 12, seed=12, **STUDY, **LESIONS)
    write_study(root / "test", 6, 6, seed=13, **STUDY, **LESIONS)
    for folder in ("normal", "unlabeled"):
        (root / folder / "labels.csv").unlink()
    return {"normal": root / "normal", "unlabeled": root / "unlabeled", "test": root / "test"}


@pytest.fixture(scope="session")
def trained(synthetic, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("amae_run") / "amae"
    threads = torch.get_num_threads()  # training sets --threads for the process: restore it
    code = cli(["train", "--normal", str(synthetic["normal"]), "--unlabeled", str(synthetic["unlabeled"]),
                "--out", str(run), *TINY])
    torch.set_num_threads(threads)
    assert code == 0
    return run


def test_training_run_folder(trained):
    run = read_run(trained)
    assert run["status"] == "done" and run["method"] == "amae"
    assert run["data"]["normal_train"] == 36 and run["data"]["normal_calibration"] == 4 and run["data"]["unlabeled"] == 24
    assert (trained / "model.pt").is_file() and not (trained / "checkpoint.pt").exists()
    events = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["load", *PHASES, "calibrate"]  # the panel's phases, in order
    pseudo = [e for e in events if e.get("phase") == "pseudo-label" and e["event"] == "progress"][-1]
    saved = torch.load(trained / "model.pt", weights_only=False)
    assert pseudo["pseudo_normal"] == len(saved["pseudo"]["normal"])
    assert pseudo["pseudo_abnormal"] == len(saved["pseudo"]["abnormal"])
    assert not set(saved["pseudo"]["normal"]) & set(saved["pseudo"]["abnormal"])
    # the 50th percentile keeps about half of each predicted class
    assert 6 <= len(saved["pseudo"]["normal"]) + len(saved["pseudo"]["abnormal"]) <= 18
    assert set(saved["phase_seconds"]) == set(PHASES)
    assert saved["test_masks"].shape == (4, 16) and bool((saved["test_masks"].sum(dim=0) == 3).all())
    epoch_ends = [e for e in events if e.get("epoch_end")]
    assert {e["phase"] for e in epoch_ends} == {"pretrain", "stage1", "stage2"}
    assert all("loss" in e and "epoch" in e and "epochs" in e for e in epoch_ends)


def test_export_score_and_the_stage1_detector(trained, synthetic, tmp_path, capsys):
    onnx_path = tmp_path / "amae.onnx"
    assert cli(["export", str(trained), "--out", str(onnx_path)]) == 0
    assert "parity" in capsys.readouterr().out  # ONNX vs PyTorch checked within 1e-4, or nothing is written
    det = Detector(onnx_path, provider="cpu")
    assert det.meta.method == "amae" and det.meta.score_type == "inter"
    assert det.meta.backbone == "MAE ViT-32x2/8 @32" and det.meta.calibration.n_normals == 4
    # one graph: both modules (two encoders) and the stored masks' visible patches (4 masks x 4)
    graph = onnx.load(str(onnx_path)).graph
    assert sum(1 for i in graph.initializer if i.name.endswith("patch_embed.proj.weight")) == 2
    ids_keep = load_scorer(trained).ids_keep.numpy()
    constants = [numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT64]
    assert any(c.size == ids_keep.size and np.array_equal(c.reshape(ids_keep.shape), ids_keep) for c in constants)

    results = tmp_path / "scores.csv"
    assert cli(["score", str(synthetic["test"]), "--model", str(onnx_path), "--out", str(results)]) == 0
    scored = {Path(r["path"]).name: float(r["score"]) for r in csv.DictReader(open(results)) if r["score"]}
    assert len(scored) == 12
    names = sorted(scored)
    images = load_images([synthetic["test"] / n for n in names], det.preprocess_spec)
    with torch.no_grad():
        torch_scores = load_scorer(trained)(torch.from_numpy(images))[0].numpy()
    np.testing.assert_allclose([scored[n] for n in names], torch_scores, atol=1e-4)
    again = det.run(images[::-1].copy()).scores[::-1]  # reproducible whatever the batch order
    np.testing.assert_allclose(again, torch_scores, atol=1e-5)

    stage1_path = tmp_path / "stage1.onnx"
    assert cli(["export", str(trained), "--out", str(stage1_path), "--score", "stage1"]) == 0
    s1 = Detector(stage1_path, provider="cpu")
    assert s1.meta.score_type == "stage1" and s1.meta.calibration.n_normals == 4  # re-calibrated on the held-out files
    out = s1.run(images)
    both = all_scores(trained, images)
    np.testing.assert_allclose(out.scores, both["stage1"], atol=1e-4)
    np.testing.assert_allclose(det.run(images).scores, both["inter"], atol=1e-4)
    assert out.heatmaps.shape == (12, 32, 32)
    assert cli(["export", str(trained), "--out", str(tmp_path / "x.onnx"), "--score", "rec"]) == 1  # not an AMAE map


def _config(**kw):
    return preset_config("tiny", checkpoint_every_s=0.0, **kw)


class _StopAt(Progress):
    """Requests a stop at the first epoch end of ``phase``."""

    def __init__(self, phase: str, stop: StopRequest) -> None:
        super().__init__("none")
        self.target, self.stop, self.current = phase, stop, ""

    def phase(self, name, total, **fields):
        self.current = name
        super().phase(name, total, **fields)

    def update(self, step, force=False, **fields):
        if fields.get("epoch_end") and self.current == self.target:
            self.stop.request()
        super().update(step, force, **fields)


@pytest.mark.parametrize("phase", ["pretrain", "stage1", "stage2"])
def test_stop_and_resume_equals_an_uninterrupted_run(synthetic, tmp_path, phase):
    data = from_folders(synthetic["normal"], synthetic["unlabeled"])
    assert run_training("amae", _config(), data, tmp_path / "straight", Progress("none")).status == "done"
    stop = StopRequest()
    first = run_training("amae", _config(), data, tmp_path / "resumed", _StopAt(phase, stop), stop)
    assert first.status == "stopped" and read_run(tmp_path / "resumed")["status"] == "stopped"
    ckpt = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert (ckpt["phase"], ckpt["epoch"]) == (phase, 1)
    assert run_training("amae", _config(), data, tmp_path / "resumed", Progress("none")).status == "done"
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)
    for part in ("pretrained", "head", "module_a", "module_b"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=1e-6, msg=f"{part}.{k}")
    assert a["pseudo"]["normal"] == b["pseudo"]["normal"] and torch.equal(a["test_masks"], b["test_masks"])


def test_start_from_an_official_mae_checkpoint(synthetic, tmp_path):
    torch.manual_seed(5)
    c = _config()
    rgb = MaskedAutoencoder(**{**c.mae_kwargs(), "in_chans": 3, "img_size": 48})  # another grid, RGB
    path = tmp_path / "mae_pretrain.pth"
    torch.save({"model": rgb.state_dict(), "epoch": 799}, path)
    data = from_folders(synthetic["normal"], synthetic["unlabeled"])
    config = _config(mae_checkpoint=str(path), pretrain_epochs=0)
    assert run_training("amae", config, data, tmp_path / "run", Progress("none")).status == "done"
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=False)
    report = saved["mae_checkpoint"]
    assert report["format"] == "mae" and len(report["sha256"]) == 64 and not report["missing"]
    torch.testing.assert_close(saved["pretrained"]["blocks.1.attn.qkv.weight"], rgb.blocks[1].attn.qkv.weight.detach())
    torch.testing.assert_close(saved["pretrained"]["patch_embed.proj.weight"],
                               rgb.patch_embed.proj.weight.detach().sum(dim=1, keepdim=True))
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"patch_embed.proj.weight": torch.zeros(64, 3, 16, 16)}}, bad)
    with pytest.raises(DataError, match="bad.pth: checkpoint encoder has width 64"):
        run_training("amae", _config(mae_checkpoint=str(bad), pretrain_epochs=0), data, tmp_path / "bad", Progress("none"))


def test_amae_needs_unlabeled_images(synthetic, tmp_path, capsys):
    code = cli(["train", "--normal", str(synthetic["normal"]), "--out", str(tmp_path / "r"), *TINY])
    assert code == 1
    assert "AMAE needs unlabeled images" in capsys.readouterr().out
