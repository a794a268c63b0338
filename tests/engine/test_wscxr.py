"""WSCXR: its steps against small hand-computed examples, and what only WSCXR does with a trained run.

Export parity, finite scores, stop/resume and the calibration hold-out are the shared conformance
suite's (test_method_conformance.py), which gives WSCXR the abnormal folder its roles declare.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.datasets import DataError, TrainingData, from_folders
from engine.methods import registry
from engine.methods.wscxr import Config
from engine.methods.wscxr.recipe import draw_mixing, hinge_loss, mine_prototypes, mix, read_state_dict
from engine.progress import Progress
from engine.synth import write_study
from engine.train import read_run, run_training
from models.wscxr import Discriminator, GaussianBlur, WSCXRScorer, neighbourhood_mean

STUDY = dict(size=64, formats=("png",), variation=0.5, marker=False)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------- the method's steps, by hand
def test_neighbourhood_mean_counts_the_zero_padding():
    ones = torch.ones(1, 1, 3, 3)
    got = neighbourhood_mean(ones, 3)[0, 0]
    # a corner sees 4 of its 9 window cells inside the grid, an edge 6, the centre 9
    assert torch.allclose(got, torch.tensor([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9)
    grid = torch.arange(9.0).reshape(1, 1, 3, 3)
    assert torch.allclose(neighbourhood_mean(grid, 3)[0, 0, 1, 1], grid.mean())  # the centre: every cell
    assert torch.equal(neighbourhood_mean(grid, 1), grid)  # p = 1: no aggregation
    with pytest.raises(ValueError, match="odd"):
        neighbourhood_mean(grid, 4)


def test_mining_keeps_the_features_farthest_from_the_normal_bank():
    bank = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    abnormal = torch.tensor([[0.0, 1.0], [5.0, 0.0], [10.0, 3.0], [20.0, 0.0]])  # 1-NN distances 1, 5, 3, 10
    prototypes, kept = mine_prototypes(abnormal, bank, 0.5)
    assert kept.tolist() == [3, 1] and torch.equal(prototypes, abnormal[[3, 1]])
    # floor(0.2 * 4) = 0: at least one prototype is kept
    assert mine_prototypes(abnormal, bank, 0.2)[1].tolist() == [3]
    # equal distances: the earlier feature first
    assert mine_prototypes(torch.tensor([[0.0, 2.0], [0.0, -2.0]]), bank[:1], 0.5)[1].tolist() == [0]


def test_linear_mixing_by_hand():
    normal = torch.tensor([[0.0, 0.0], [4.0, 8.0]])
    prototypes = torch.tensor([[10.0, 20.0], [2.0, 2.0]])
    got = mix(normal, prototypes, torch.tensor([0, 1]), torch.tensor([[0.25], [1.0]]))
    # 0.25 * (10, 20) + 0.75 * (0, 0); alpha 1: the prototype itself
    assert torch.allclose(got, torch.tensor([[2.5, 5.0], [2.0, 2.0]]))


def test_mixing_draws_alpha_in_range_and_one_prototype_per_feature():
    g = torch.Generator().manual_seed(0)
    index, alpha = draw_mixing(1000, 3, g, (0.1, 1.0))
    assert index.shape == (1000,) and set(index.tolist()) == {0, 1, 2}
    assert alpha.shape == (1000, 1) and 0.1 <= float(alpha.min()) and float(alpha.max()) <= 1.0
    assert float(alpha.min()) < 0.15 and float(alpha.max()) > 0.95  # the whole range is drawn
    _, no_mix = draw_mixing(5, 3, g, (0.1, 1.0), mixing=False)
    assert torch.equal(no_mix, torch.ones(5, 1))
    again = draw_mixing(1000, 3, torch.Generator().manual_seed(0), (0.1, 1.0))
    assert torch.equal(again[0], index) and torch.equal(again[1], alpha)  # the generator's draws only


def test_hinge_loss_by_hand():
    # normal: relu(0.5 - 1) = 0, relu(0.5 - 0) = 0.5 -> 0.25; synthetic: relu(0.5 - 1) = 0, relu(0.5 + 0.5) = 1 -> 0.5
    loss = hinge_loss(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.5]), 0.5)
    assert float(loss) == pytest.approx(0.75)


def test_blur_is_scipys_gaussian_filter():
    ndimage = pytest.importorskip("scipy.ndimage")
    maps = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1))
    for sigma in (0.5, 1.0, 2.5):
        want = np.stack([ndimage.gaussian_filter(m, sigma, mode="reflect") for m in maps.numpy()])
        np.testing.assert_allclose(GaussianBlur(sigma, 16)(maps).numpy(), want, atol=1e-6)
    with pytest.raises(ValueError, match="larger than"):
        GaussianBlur(4.0, 16)  # radius 16 does not fit a 16-px map


def test_discriminator_heads_and_the_scorer_takes_the_patch_maximum():
    linear = Discriminator(4, "linear")
    assert [p.shape for p in linear.parameters()] == [torch.Size([1, 4])]  # one bias-free Linear
    mlp = Discriminator(4, "mlp", hidden=8).eval()
    assert mlp(torch.zeros(2, 3, 4)).shape == (2, 3)
    with torch.no_grad():
        linear.tail.weight.copy_(torch.tensor([[-1.0, 0.0, 0.0, 0.0]]))  # normality = -channel 0

    class Grid(torch.nn.Module):  # a 2 x 2 grid: channel 0 is the image's mean over each quadrant
        def forward(self, x):
            q = torch.nn.functional.avg_pool2d(x, x.shape[-1] // 2)
            return torch.cat([q, torch.zeros(x.shape[0], 3, 2, 2)], dim=1)

    scorer = WSCXRScorer(Grid(), linear, neighbourhood=1, size=8, blur_sigma=0.5).eval()
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, :4, 4:] = 3.0  # one bright quadrant
    with torch.no_grad():
        score, heatmap = scorer(x)
    assert float(score[0]) == pytest.approx(3.0) and heatmap.shape == (1, 8, 8)
    assert heatmap[0, :4, 4:].mean() > heatmap[0, 4:, :4].mean()


# ---------------------------------------------------------------------- settings
def test_presets_hold_the_letters_numbers():
    m = registry()["wscxr"]
    paper = m.config("paper")
    stated = {"backbone": "densenet121", "neighbourhood": 5, "mining_ratio": 0.2, "alpha_min": 0.1, "alpha_max": 1.0,
              "lr": 2e-4, "weight_decay": 1e-5, "batch_size": 8, "epochs": 100, "head": "linear", "margin": 0.5,
              "blur_sigma_256": 4.0, "mining": True, "mixing": True}
    assert {k: getattr(paper, k) for k in stated} == stated and paper.preprocess.size == 256
    assert paper.blur_sigma == 4.0 and m.config("small").blur_sigma == 1.0  # 4 px at 256, scaled
    assert not m.preset("paper").as_published and m.preset("paper").deviations
    assert m.preset("tiny").tests_only and [p.name for p in m.presets][0] == "small"
    roles = {r.role: (r.requirement, r.min_count) for r in m.roles}
    assert roles == {"normal": ("required", 3), "unlabeled": ("optional", 1), "abnormal": ("required", 1)}


@pytest.mark.parametrize("values, message", [
    ({"neighbourhood": 4}, "--neighbourhood must be an odd number"),
    ({"mining_ratio": 0.0}, "--mining-ratio must be > 0"),
    ({"size": 60}, "divisible by its patch size 8"),
    ({"backbone": "densenet121", "encoder": "/x"}, "cannot be used with the timm backbone"),
])
def test_bad_settings_name_their_option(values, message):
    from engine.methods.base import SettingsError

    with pytest.raises(SettingsError, match=message):
        registry()["wscxr"].config("small", **values)


# ---------------------------------------------------------------------- trained runs (tiny preset)
@pytest.fixture(scope="module")
def chests(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wscxr")
    write_study(root / "normal", 22, 0, seed=31, **STUDY)
    write_study(root / "abnormal", 0, 4, seed=32, **STUDY, lesion_strength=2.0)
    write_study(root / "unlabeled", 3, 3, seed=33, **STUDY)
    for f in ("normal", "abnormal", "unlabeled"):
        (root / f / "labels.csv").unlink()
    return {f: root / f for f in ("normal", "abnormal", "unlabeled")}


def _tiny(**values) -> Config:
    config = registry()["wscxr"].config("tiny")
    return Config.from_dict({**config.to_dict(), "checkpoint_every_s": 0.0, "device": "cpu", **values})


@pytest.fixture(scope="module")
def trained(chests, tmp_path_factory) -> tuple[Path, TrainingData]:
    data = from_folders(chests["normal"], None, abnormal_dir=chests["abnormal"])
    run = tmp_path_factory.mktemp("wscxr_run") / "run"
    torch.set_num_threads(1)
    assert run_training("wscxr", _tiny(), data, run, Progress("none")).status == "done"
    return run, data


def test_mining_on_a_trained_run(trained):
    run, _ = trained
    summary = read_run(run)
    assert summary["status"] == "done" and summary["data"]["roles"] == {"normal": 22, "unlabeled": 0, "abnormal": 4}
    saved = torch.load(run / "model.pt", weights_only=True)
    # 4 abnormal images x a 4 x 4 grid = 64 patch features, r = 0.2 -> 12 prototypes; 20 training normals in the bank
    assert saved["mining"]["abnormal_patches"] == 64 and saved["prototypes"].shape[0] == 12
    assert saved["mining"]["bank"] == 20 * 16


def test_a_reused_encoder_is_the_other_runs_and_unlabeled_images_only_pretrain(trained, chests, tmp_path):
    run, data = trained
    reuse = tmp_path / "reuse"
    assert run_training("wscxr", _tiny(encoder=str(run), epochs=1), data, reuse, Progress("none")).status == "done"
    a, b = (torch.load(r / "model.pt", weights_only=True) for r in (run, reuse))
    assert all(torch.equal(a["encoder"][k], b["encoder"][k]) for k in a["encoder"])
    assert b["summaries"]["pretrain"] is None and b["backbone_source"]["run"] == str(run.resolve())
    with_unlabeled = from_folders(chests["normal"], chests["unlabeled"], abnormal_dir=chests["abnormal"])
    assert run_training("wscxr", _tiny(epochs=1), with_unlabeled, tmp_path / "u", Progress("none")).status == "done"
    c = torch.load(tmp_path / "u" / "model.pt", weights_only=True)
    assert c["backbone_source"]["mae"] == "pre-trained on normal + unlabeled"
    assert not torch.equal(c["encoder"]["blocks.0.attn.qkv.weight"], a["encoder"]["blocks.0.attn.qkv.weight"])


class NotTensors:
    """A pickled object other than tensors: a state-dict reader must refuse it, never unpickle it."""


def test_a_timm_backbone_from_a_local_state_dict(trained, tmp_path):
    import timm

    _, data = trained
    torch.manual_seed(0)
    sd = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save({"state_dict": sd}, tmp_path / "resnet18.pth")
    config = _tiny(backbone="resnet18", backbone_layer="layer3", backbone_checkpoint=str(tmp_path / "resnet18.pth"),
                   epochs=1)
    assert run_training("wscxr", config, data, tmp_path / "run", Progress("none")).status == "done"
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert saved["channels"] == 256 and "encoder" not in saved  # layer3 of ResNet18: 256 channels, no MAE
    key = "body.net.conv1.weight"
    assert torch.equal(saved["timm_backbone"][key], sd["conv1.weight"])
    torch.save({"x": NotTensors()}, tmp_path / "evil.pth")
    with pytest.raises(DataError, match="not a readable state dict"):
        read_state_dict(tmp_path / "evil.pth")


def test_cli_requires_the_abnormal_folder_and_check_reports_it(chests, tmp_path, capsys):
    from engine.cli import main as cli

    args = ["train", "--method", "wscxr", "--preset", "tiny", "--normal", str(chests["normal"]), "--out",
            str(tmp_path / "r"), "--progress", "json", "--check"]
    assert cli(args) == 1
    event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert event["problems"][0]["option"] == "--abnormal" and "at least 1" in event["problems"][0]["message"]
    assert cli([*args, "--abnormal", str(chests["abnormal"])]) == 0
    capsys.readouterr()
    code = cli([*args, "--backbone", "densenet121", "--abnormal", str(chests["abnormal"])])
    event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    errors = [p["option"] for p in event["problems"] if p["level"] == "error"]
    assert code == 1 and errors == ["--backbone-checkpoint"]  # a timm backbone needs its weights
    assert not (tmp_path / "r").exists()
