"""MSACL-IGD: IGD's pieces against hand-computed cases and the package they come from, and the
encoder an MSACL run hands over. Export parity, stop/resume and the calibration hold-out are the
shared conformance suite's (test_method_conformance.py).
"""
from __future__ import annotations

import math

import pytest
import torch

from cxrscreen.engine.datasets import DataError, from_folders
from cxrscreen.engine.methods import registry
from cxrscreen.engine.methods.base import SettingsError
from cxrscreen.engine.methods.msacl_igd.recipe import descriptor_centre, descriptor_sigma, poly_lr
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.synth import write_study
from cxrscreen.engine.train import run_training
from cxrscreen.models.igd import IGDCritic, IGDDecoder, MSSSIM_WEIGHTS, gaussian_normality, ms_ssim, ssim_window


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_ssim_window_fits_the_four_downsamplings():
    assert ssim_window(256) == 11  # 160 < 256: IGD's own window
    assert ssim_window(128) == 7  # (7 - 1) * 16 = 96 < 128 <= (9 - 1) * 16
    assert ssim_window(64) == 3


def test_ms_ssim_equals_the_package_and_is_one_on_identical_images():
    from pytorch_msssim import ms_ssim as package_ms_ssim

    torch.manual_seed(0)
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    ours = ms_ssim(x, y, 2.0, 3)
    theirs = package_ms_ssim(x, y, data_range=2.0, size_average=False, win_size=3, weights=list(MSSSIM_WEIGHTS))
    assert torch.allclose(ours, theirs, atol=1e-6) and (ours < 1).all()
    assert torch.allclose(ms_ssim(x, x, 2.0, 3), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        ms_ssim(x, y[:2], 2.0, 3)


def test_gaussian_descriptor_by_hand():
    latents = torch.tensor([[1.0, 0.02], [3.0, 0.04], [2.0, -0.3]])
    # mean (2, -0.08): the second entry is within 0.1 of 0 and negative, so it becomes -0.1
    c = descriptor_centre(latents)
    assert torch.allclose(c, torch.tensor([2.0, -0.1]))
    # batches of 2: squared distances 1.0144 and 1.0196 (mean 1.017), then 0.04 (raised to 1)
    sigma = descriptor_sigma(latents, c, 2)
    assert sigma == pytest.approx(((1 + 0.0144 + 1 + 0.0196) / 2 + 1) / 2, rel=1e-5)
    h = gaussian_normality(torch.tensor([[2.0, -0.1], [3.0, -0.1]]), c, torch.tensor(2.0))
    assert torch.allclose(h, torch.tensor([1.0, math.exp(-0.5)]))  # h = exp(-|z - c|^2 / sigma)
    assert poly_lr(1e-4, 0, 10) == pytest.approx(1e-4) and poly_lr(1e-4, 5, 10) == pytest.approx(1e-4 * 0.5**0.9)


@pytest.mark.parametrize("size", [64, 256])
def test_decoder_and_critic_shapes_follow_the_code(size):
    decoder, critic = IGDDecoder(16, size, 4), IGDCritic(size, 4)
    out = decoder(torch.randn(2, 16))
    assert out.shape == (2, 1, size, size) and critic(out).shape == (2,)
    # IGD's 256-px generator: four residual "up" blocks 8d -> 8d -> 4d -> 2d -> d; its critic four "down" blocks
    assert len(decoder.blocks) == (4 if size == 256 else 2) and len(critic.blocks) == len(decoder.blocks)
    with pytest.raises(ValueError, match="power-of-two"):
        IGDDecoder(16, 96, 4)


def test_settings_refuse_sizes_ms_ssim_cannot_use():
    m = registry()["msacl_igd"]
    with pytest.raises(SettingsError, match="power-of-two"):
        m.config("small", size=96)
    with pytest.raises(SettingsError, match="--xi"):
        m.config("small", xi=1.5)


def test_igd_uses_the_encoder_of_an_msacl_run(tmp_path):
    write_study(tmp_path / "normal", 22, 0, seed=41, size=64, formats=("png",), variation=0.5, marker=False)
    data = from_folders(tmp_path / "normal", None)
    msacl = tmp_path / "msacl"
    assert run_training("msacl", registry()["msacl"].config("tiny", device="cpu", size=64), data, msacl,
                        Progress("none")).status == "done"
    igd = tmp_path / "igd"
    config = registry()["msacl_igd"].config("tiny", device="cpu", encoder=str(msacl))
    assert run_training("msacl_igd", config, data, igd, Progress("none")).status == "done"
    ours = torch.load(msacl / "model.pt", weights_only=True)["encoder"]
    theirs = torch.load(igd / "model.pt", weights_only=True)
    assert all(torch.equal(theirs["encoder"][k], v) for k, v in ours.items())
    assert theirs["encoder_source"]["run"] == str(msacl.resolve())
    assert registry()["msacl_igd"].describe(config)["backbone"].startswith("ResNet18 (MSACL encoder)")
    # an MSACL encoder pre-trained on other inputs (equalised) is refused, not used silently
    other = registry()["msacl_igd"].config("tiny", device="cpu", encoder=str(msacl), intensity="equalize")
    with pytest.raises(DataError, match="other preprocessing"):
        run_training("msacl_igd", other, data, tmp_path / "igd2", Progress("none"))
