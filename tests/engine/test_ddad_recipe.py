"""DDAD recipe details: layouts agree, losses are the paper's, seeds differ per member."""
from __future__ import annotations

import pytest
import torch

from engine.methods import ddad
from engine.methods.ddad import Config
from engine.methods.ddad.recipe import _Ensemble, member_losses
from engine.preprocess import PreprocessSpec
from models.autoencoder import BACKBONES as MODEL_BACKBONES
from models.autoencoder import AEOutput
from models.ddad import SCORE_TYPES as MODEL_SCORE_TYPES

CFG = Config(backbone="ae-u", members=2, epochs=1, batch_size=8, preprocess=PreprocessSpec(size=32))


def _one_step(layout: str, data: torch.Tensor) -> list:
    e = _Ensemble("a", data, CFG, torch.device("cpu"), layout)
    e.steps_per_epoch = 1
    e.run_epoch(lambda n: None)
    return [m.state_dict() for m in e.members_on_cpu()]


def test_stacked_and_separate_layouts_take_the_same_first_step():
    # Adam's first step is lr * sign(gradient): the layouts agree except where a gradient is
    # float noise (biases cancelled by the following BatchNorm), where the sign may flip (≤ 2 lr).
    torch.manual_seed(0)
    data = torch.rand(24, 1, 32, 32) * 2 - 1
    sep, stk = _one_step("separate", data), _one_step("stacked", data)
    differing = total = 0
    for a, b in zip(sep, stk):
        for name in a:
            if not a[name].dtype.is_floating_point:
                continue
            d = (a[name] - b[name]).abs()
            assert d.max() <= 2 * CFG.lr + 1e-6, name
            differing += int((d > 1e-6).sum())
            total += d.numel()
    assert differing / total < 0.01  # a batching error would flip about half of all signs


def test_members_get_different_initialisations_and_shuffles():
    e = _Ensemble("a", torch.zeros(16, 1, 32, 32), CFG, torch.device("cpu"), "separate")
    w0, w1 = (m.encoder[0].weight for m in e.nets)
    assert not torch.equal(w0, w1)
    p0, p1 = (torch.randperm(16, generator=g) for g in e.generators)
    assert not torch.equal(p0, p1)
    b = _Ensemble("b", torch.zeros(16, 1, 32, 32), CFG, torch.device("cpu"), "separate")
    assert not torch.equal(b.nets[0].encoder[0].weight, w0)  # module B is seeded apart from A


def test_losses_are_the_papers():
    x = torch.zeros(2, 1, 1, 2)
    mean = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]]])
    logvar = torch.log(torch.full((2, 1, 1, 2), 2.0))
    loss, rec = member_losses(AEOutput(mean, logvar, None), x, "ae-u", 0.0)
    # mean(exp(-logvar) * (x - mean)^2) + mean(logvar) = (1/2 * 1/4) + log 2
    torch.testing.assert_close(loss, torch.tensor([0.125 + torch.log(torch.tensor(2.0)).item()]))
    torch.testing.assert_close(rec, torch.tensor([0.25]))
    att = torch.tensor([[[0.5, 0.5]], [[1.0, 0.0]]])  # entropies log 2 and 0 -> mean log2 / 2
    loss, _ = member_losses(AEOutput(mean, None, att), x, "memae", 2e-4)
    torch.testing.assert_close(loss, torch.tensor([0.25 + 2e-4 * torch.log(torch.tensor(2.0)).item() / 2]))


def test_engine_names_match_the_networks():
    assert ddad.BACKBONES == MODEL_BACKBONES and ddad.SCORE_TYPES == MODEL_SCORE_TYPES


def test_config_validation_and_round_trip():
    assert Config.from_dict(CFG.to_dict()) == CFG
    with pytest.raises(ValueError, match="members"):
        Config(members=1)
    with pytest.raises(ValueError, match="divisible by 16"):
        Config(preprocess=PreprocessSpec(size=40))
    with pytest.raises(ValueError, match="backbone"):
        Config(backbone="vae")
