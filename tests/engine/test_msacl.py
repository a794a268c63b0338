"""MSACL + PaDiM: MedMix, the losses and PaDiM against small hand-computed examples, and what only
this method does with a run (encoder reuse, local weights, corrupt files).

Export parity, finite scores, stop/resume and the calibration hold-out of every registered method
are the shared conformance suite's (test_method_conformance.py).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cxrscreen.engine.datasets import DataError, from_folders, load_images
from cxrscreen.engine.loop import CheckpointError
from cxrscreen.engine.methods import registry
from cxrscreen.engine.methods.base import SettingsError
from cxrscreen.engine.methods.msacl import Config
from cxrscreen.engine.methods.msacl.losses import centre_loss, class_centres, msacl_loss
from cxrscreen.engine.methods.msacl.medmix import MedMixSettings, medmix, medmix_batch, position_pairs, weak_views
from cxrscreen.engine.methods.msacl.recipe import cosine_lr, encoder_state_from_file, fit_gaussians, load_scorer
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.synth import write_study
from cxrscreen.engine.train import run_training
from cxrscreen.models.msacl import resnet18_encoder
from cxrscreen.models.padim import PaDiMScorer, ResNetStages, mahalanobis_map

STUDY = dict(size=64, formats=("png",), variation=0.5, marker=False)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------- MedMix and the views
def _lungs(size: int = 32) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[6:26, 4:14] = True  # two "lungs"
    mask[6:26, 18:28] = True
    return mask


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_medmix_pastes_exactly_n_lesions_inside_the_mask(n):
    image = torch.full((1, 32, 32), -1.0)  # black
    donors = torch.full((2, 1, 32, 32), 1.0)  # white: every pasted pixel becomes brighter
    mask = _lungs()
    mixed, alphas = medmix(image, n, donors, mask, torch.Generator().manual_seed(n))
    assert len(alphas) == n and mixed.shape == image.shape
    touched = torch.zeros(32, 32, dtype=torch.bool)
    for alpha in alphas:
        assert alpha.max() == 1.0  # centred on a lung pixel: full opacity there
        assert not (alpha[~mask] > 0).any()  # nothing outside the lungs
        touched |= alpha > 0
    assert torch.equal(mixed[0][~touched], image[0][~touched])  # untouched pixels keep their value
    assert (mixed[0][touched] > -1.0).all()


def test_medmix_uses_the_whole_image_without_lungs_or_with_in_lungs_off():
    image, donors = torch.full((1, 32, 32), -1.0), torch.full((1, 1, 32, 32), 1.0)
    for mask, settings in ((torch.zeros(32, 32, dtype=torch.bool), MedMixSettings()),  # no lung found
                           (_lungs(), MedMixSettings(in_lungs=False))):
        outside = torch.zeros(32, 32)
        for seed in range(20):
            _, alphas = medmix(image, 3, donors, mask, torch.Generator().manual_seed(seed), settings)
            outside += sum(a * ~_lungs() for a in alphas)
        assert outside.sum() > 0  # lesions also land outside the lung region
    with pytest.raises(ValueError, match="lesion sides"):
        MedMixSettings(side_min=0.3, side_max=0.2)


def test_medmix_batch_orders_the_classes_per_image():
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    out, labels = medmix_batch(images, None, torch.Generator().manual_seed(0), MedMixSettings(), (-1.0, 1.0))
    assert out.shape == (12, 1, 32, 32) and labels.tolist() == [0, 1, 2, 3] * 3
    assert torch.equal(out[0], images[0]) and torch.equal(out[4], images[1])  # A0 is the image itself


def test_weak_views_never_flip_the_image():
    image = torch.full((8, 1, 32, 32), -1.0)
    image[:, :, :, :16] = 1.0  # bright on the left
    views = weak_views(image, torch.Generator().manual_seed(0), (-1.0, 1.0))
    assert views.shape == image.shape and views.min() >= -1.0 and views.max() <= 1.0
    assert (views[:, 0, :, :12].mean(dim=(1, 2)) > views[:, 0, :, 20:].mean(dim=(1, 2)) + 1.0).all()


def test_position_pairs_lie_in_their_stated_direction():
    from cxrscreen.engine.methods.msacl.medmix import POSITION_OFFSETS

    size, k = 256, 32
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    coded = (rows * 1000 + cols).float().reshape(1, 1, size, size).repeat(64, 1, 1, 1)  # pixel = its position
    first, second, pos = position_pairs(coded, k, torch.Generator().manual_seed(0))
    assert first.shape == (64, 1, k, k) and set(pos.tolist()) == set(range(8))
    for a, b, p in zip(first[:, 0, 0, 0], second[:, 0, 0, 0], pos):
        (r1, c1), (r2, c2) = divmod(int(a), 1000), divmod(int(b), 1000)
        dr, dc = POSITION_OFFSETS[int(p)]
        for d, start, end in ((dr, r1, r2), (dc, c1, c2)):
            if d == 0:
                assert end == start
            elif 0 < start + d * 24 <= size - k and 0 <= start + d * 31 <= size - k:  # not clipped
                assert 24 <= d * (end - start) <= 31  # 3K/4 + U{0..K/4 - 1}
            else:
                assert d * (end - start) >= 0  # clipped towards the border, never the other way


# ---------------------------------------------------------------------- the losses, by hand
def test_centre_loss_and_class_centres_by_hand():
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # projections are normalised first: (2, 0) and (0, 3) sit exactly on their centres
    assert centre_loss(torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 1]), centres) == 0
    # (0, 1) in class 0: |(0, 1) - (1, 0)|^2 = 2; averaged with a zero
    assert centre_loss(torch.tensor([[0.0, 1.0], [0.0, 5.0]]), torch.tensor([0, 1]), centres) == pytest.approx(1.0)
    got = class_centres(torch.tensor([[3.0, 0.0], [0.0, 2.0], [0.0, 1.0]]), torch.tensor([0, 0, 1]), 3)
    s = 1 / math.sqrt(2)
    assert torch.allclose(got, torch.tensor([[s, s], [0.0, 1.0], [0.0, 0.0]]))  # class 2 absent: zero


def test_msacl_loss_by_hand():
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])  # views 0, 1 alike; 2, 3 alike
    twins = torch.tensor([1, 0, 3, 2])
    # τ = 1, four classes: each anchor has its twin at similarity 1 and two negatives at 0
    assert msacl_loss(z, torch.arange(4), twins, 1.0, 0.05) == pytest.approx(math.log(math.e + 2) - 1, abs=1e-6)
    # one class: both negatives are same-class, weighted by κ = 0.05
    assert msacl_loss(z, torch.zeros(4, dtype=torch.long), twins, 1.0, 0.05) == pytest.approx(
        math.log(math.e + 0.1) - 1, abs=1e-6)
    # τ = 0.5 doubles every similarity
    assert msacl_loss(z, torch.arange(4), twins, 0.5, 1.0) == pytest.approx(math.log(math.e**2 + 2) - 2, abs=1e-6)
    # centred: class 0 (views 0, 1) minus (0, 1), class 1 minus (1, 0): the classes point in opposite directions
    centres = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert msacl_loss(z, labels, twins, 1.0, 1.0, centres) == pytest.approx(
        math.log(math.e + 2 / math.e) - 1, abs=1e-6)
    for bad in (dict(temperature=0.0, kappa=0.5), dict(temperature=1.0, kappa=0.0)):
        with pytest.raises(ValueError):
            msacl_loss(z, labels, twins, **bad)


def test_cosine_schedule_runs_from_lr_to_a_thousandth():
    assert cosine_lr(0.01, 0, 10) == pytest.approx(0.01)
    assert cosine_lr(0.01, 5, 10) == pytest.approx((0.01 + 1e-5) / 2)
    assert cosine_lr(0.01, 10, 10) == pytest.approx(1e-5)


# ---------------------------------------------------------------------- PaDiM
def test_mahalanobis_map_equals_a_loop_over_positions():
    rng = np.random.default_rng(0)
    n, d, h, w = 2, 3, 2, 2
    e = rng.normal(size=(n, d, h, w))
    mean = rng.normal(size=(d, h * w))
    a = rng.normal(size=(h * w, d, d))
    inv = a @ a.transpose(0, 2, 1) + np.eye(d)  # symmetric positive definite
    got = mahalanobis_map(torch.tensor(e), torch.tensor(mean), torch.tensor(inv)).numpy()
    for i in range(n):
        for p in range(h * w):
            delta = e[i, :, p // w, p % w] - mean[:, p]
            assert got[i, p // w, p % w] == pytest.approx(math.sqrt(delta @ inv[p] @ delta))


def test_fit_gaussians_equals_numpy_covariance_plus_eps():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 3, 2, 2)).astype(np.float32)  # the "embedding" itself: 7 images, 3 channels, 4 positions
    mean, inv = fit_gaussians(nn.Identity(), torch.from_numpy(x), 0.01, torch.device("cpu"), batch=3)
    flat = x.reshape(7, 3, 4).astype(np.float64)
    assert np.allclose(mean.numpy(), flat.mean(0), atol=1e-6)
    for p in range(4):
        expected = np.linalg.inv(np.cov(flat[:, :, p].T) + 0.01 * np.eye(3))
        assert np.allclose(inv[p].numpy(), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(DataError, match="at least 2"):
        fit_gaussians(nn.Identity(), torch.from_numpy(x[:1]), 0.01, torch.device("cpu"))


def test_padim_onnx_map_equals_the_torch_map(tmp_path):
    import onnxruntime as ort

    from cxrscreen.engine.export import export_graph

    torch.manual_seed(0)
    encoder = resnet18_encoder()
    stages = ResNetStages(encoder, torch.arange(0, 448, 28)).eval()  # 16 channels on an 8 x 8 grid at 32 px
    positions, d = 64, 16
    a = torch.randn(positions, d, d)
    scorer = PaDiMScorer(stages, torch.randn(d, positions), a @ a.transpose(1, 2) / d + torch.eye(d), 32, 0.5).eval()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    export_graph(scorer, x[:2], tmp_path / "padim.onnx")
    session = ort.InferenceSession(str(tmp_path / "padim.onnx"), providers=["CPUExecutionProvider"])
    got_score, got_map = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref_score, ref_map = scorer(x)
    assert got_map.shape == (3, 32, 32)
    np.testing.assert_allclose(got_map, ref_map.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_score, ref_map.numpy().max(axis=(1, 2)), rtol=1e-4, atol=1e-4)  # score = max
    with pytest.raises(ValueError, match="inv_covariance"):
        PaDiMScorer(stages, torch.randn(d, positions), torch.randn(positions, d, d + 1), 32, 0.5)


# ---------------------------------------------------------------------- settings
def test_settings_refuse_contradictions_naming_the_option(tmp_path):
    m = registry()["msacl"]
    with pytest.raises(SettingsError, match="--kappa"):
        m.config("small", kappa=0.0)
    with pytest.raises(SettingsError, match="exclude each other"):
        m.config("small", encoder=str(tmp_path), backbone_checkpoint=str(tmp_path / "w.pt"))
    with pytest.raises(SettingsError, match="random encoder"):
        m.config("small", pretrain=False, encoder=str(tmp_path))
    with pytest.raises(SettingsError, match="--padim-dims"):
        m.config("small", padim_dims=449)
    assert m.config("paper").preprocess.size == 256 and Config().padim_dims == 100


# ---------------------------------------------------------------------- a run, end to end
@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("msacl")
    write_study(root / "normal", 22, 0, seed=31, **STUDY)
    write_study(root / "test", 4, 4, seed=32, **STUDY, lesion_strength=2.0)
    return {"normal": root / "normal", "test": root / "test"}


@pytest.fixture(scope="module")
def tiny_run(study, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("msacl_run") / "run"
    config = registry()["msacl"].config("tiny", device="cpu")
    assert run_training("msacl", config, from_folders(study["normal"], None), run, Progress("none")).status == "done"
    return run


def test_tiny_run_trains_exports_and_scores(tiny_run, study, tmp_path):
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.export import export_run

    saved = torch.load(tiny_run / "model.pt", weights_only=True)
    summary = saved["summaries"]["pretrain"]
    assert set(summary) == {"loss", "contrastive", "centre", "aug", "pos"}  # the four terms of Eq. 1 and their sum
    assert summary["loss"] == pytest.approx(sum(v for k, v in summary.items() if k != "loss"), rel=1e-5)
    assert saved["padim"]["inv_covariance"].shape == (64, 16, 16)  # 8 x 8 grid at 32 px, 16 channels
    export_run(tiny_run, tmp_path / "d.onnx")
    det = Detector(tmp_path / "d.onnx", provider="cpu")
    images = load_images(sorted(study["test"].glob("*.png")), det.preprocess_spec)
    result = det.run(images)
    with torch.no_grad():
        ref_score, ref_map = load_scorer(tiny_run)(torch.from_numpy(images))
    np.testing.assert_allclose(result.scores, ref_score.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.scores, ref_map.numpy().max(axis=(1, 2)), rtol=1e-5)


def test_encoder_reuse_and_local_weights_give_the_same_encoder(tiny_run, study, tmp_path):
    m = registry()["msacl"]
    data = from_folders(study["normal"], None)
    encoder = torch.load(tiny_run / "model.pt", weights_only=True)["encoder"]
    reused = tmp_path / "reused"
    assert run_training("msacl", m.config("tiny", device="cpu", encoder=str(tiny_run)), data, reused,
                        Progress("none")).status == "done"
    again = torch.load(reused / "model.pt", weights_only=True)
    assert all(torch.equal(again["encoder"][k], v) for k, v in encoder.items())
    assert again["encoder_source"]["run"] == str(tiny_run.resolve()) and "pretrain" not in again["phase_seconds"]
    # a three-channel state dict (ImageNet-style, with a classifier): conv1's filters are summed to one channel
    rgb = {**encoder, "conv1.weight": encoder["conv1.weight"].repeat(1, 3, 1, 1) / 3,
           "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(rgb, tmp_path / "rgb.pt")
    loaded = encoder_state_from_file(tmp_path / "rgb.pt")
    assert torch.allclose(loaded["conv1.weight"], encoder["conv1.weight"], atol=1e-6) and "fc.weight" not in loaded


def test_corrupt_or_foreign_files_are_refused(tiny_run, study, tmp_path):
    import shutil

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(DataError, match="not a readable state dict"):
        encoder_state_from_file(garbage)
    torch.save({"conv1.weight": torch.zeros(64, 1, 7, 7)}, tmp_path / "partial.pt")
    with pytest.raises(DataError, match="lacks"):
        encoder_state_from_file(tmp_path / "partial.pt")
    # a truncated model.pt: refused by the scorer and as an --encoder, with the file named
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    data = (broken / "model.pt").read_bytes()
    (broken / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_scorer(broken)
    config = registry()["msacl"].config("tiny", device="cpu", encoder=str(broken))
    with pytest.raises(CheckpointError, match="model.pt"):
        run_training("msacl", config, from_folders(study["normal"], None), tmp_path / "run", Progress("none"))
