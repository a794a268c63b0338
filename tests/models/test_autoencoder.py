"""DDAD autoencoders: the paper's architecture, stacking equivalence, official checkpoints."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cxrscreen.models.autoencoder import AutoEncoder, load_official_state_dict, stack_members, unstack_members


def _official_ae(unc: bool) -> nn.Module:
    """The official DDAD AE (models/autoencoder.py of caiyu6666/DDAD), rebuilt layer by layer."""
    out = 2 if unc else 1

    class Official(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Conv2d(1, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True),
                nn.Conv2d(16, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(True),
                nn.Conv2d(32, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
                nn.Conv2d(64, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True))
            self.linear_enc = nn.Sequential(nn.Linear(1024, 2048), nn.BatchNorm1d(2048), nn.ReLU(True), nn.Linear(2048, 16))
            self.linear_dec = nn.Sequential(nn.Linear(16, 2048), nn.BatchNorm1d(2048), nn.ReLU(True), nn.Linear(2048, 1024))
            self.decoder = nn.Sequential(
                nn.ConvTranspose2d(64, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
                nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(True),
                nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True),
                nn.ConvTranspose2d(16, out, 4, 2, 1, bias=False))

        def forward(self, x):
            z = self.linear_enc(self.encoder(x).view(x.size(0), -1))
            y = self.decoder(self.linear_dec(z).view(x.size(0), 64, 4, 4))
            return y.chunk(2, 1) if unc else y

    return Official()


@pytest.mark.parametrize("backbone", ["ae", "ae-u", "memae"])
def test_output_shapes_and_parameter_count(backbone):
    m = AutoEncoder(backbone, members=3).eval()
    out = m(torch.randn(2, 1, 64, 64))
    assert out.mean.shape == (2, 3, 64, 64)
    assert (out.logvar is not None) == (backbone == "ae-u")
    assert (out.attention is None) == (backbone != "memae")
    if backbone == "memae":
        assert out.attention.shape == (2, 3, 25)
        torch.testing.assert_close(out.attention.sum(-1), torch.ones(2, 3))  # softmax addressing
    single = AutoEncoder(backbone, members=1)
    assert sum(p.numel() for p in m.parameters()) == 3 * sum(p.numel() for p in single.parameters())


@pytest.mark.parametrize("unc", [False, True])
def test_single_member_equals_the_official_network(unc):
    # same weights in the official layout -> identical outputs, train and eval mode
    torch.manual_seed(0)
    official = _official_ae(unc)
    ours = AutoEncoder("ae-u" if unc else "ae", members=1)
    load_official_state_dict(ours, official.state_dict())
    x = torch.randn(4, 1, 64, 64)
    for mode in (True, False):
        official.train(mode)
        ours.train(mode)
        ref = official(x)
        got = ours(x)
        if unc:
            torch.testing.assert_close(got.mean, ref[0])
            torch.testing.assert_close(got.logvar, ref[1])
        else:
            torch.testing.assert_close(got.mean, ref)


def test_official_checkpoint_of_another_backbone_is_refused():
    official = _official_ae(unc=True)  # 2 output channels
    with pytest.raises(ValueError, match="ae"):
        load_official_state_dict(AutoEncoder("ae", members=1), official.state_dict())


@pytest.mark.parametrize("backbone", ["ae", "ae-u", "memae"])
def test_stacked_members_equal_separate_networks(backbone):
    torch.manual_seed(1)
    singles = [AutoEncoder(backbone, 1) for _ in range(3)]
    stacked = stack_members(singles)
    x = torch.randn(6, 3, 64, 64)  # member k sees channel k
    for mode in (True, False):  # BatchNorm statistics are per member in both modes
        stacked.train(mode)
        for s in singles:
            s.train(mode)
        out = stacked(x)
        for k, s in enumerate(singles):
            torch.testing.assert_close(out.mean[:, k : k + 1], s(x[:, k : k + 1]).mean, rtol=1e-5, atol=1e-5)


def test_stacked_gradients_equal_separate_gradients():
    # one optimiser step on the stack == one step per member (the training layouts agree)
    torch.manual_seed(2)
    singles = [AutoEncoder("ae-u", 1) for _ in range(2)]
    stacked = stack_members(singles)
    x = torch.randn(4, 2, 64, 64)
    out = stacked(x)
    (((out.mean - x) ** 2).mean(dim=(0, 2, 3)).sum()).backward()
    for k, s in enumerate(singles):
        o = s(x[:, k : k + 1])
        ((o.mean - x[:, k : k + 1]) ** 2).mean().backward()
    back = unstack_members(stacked)  # parameters only; compare gradients of a conv and a linear
    conv_w = stacked.encoder[3].weight.grad  # (2*32, 16, 4, 4)
    lin_w = stacked.linear_enc[0].weight.grad  # (2, 2048, 1024)
    for k, s in enumerate(singles):
        torch.testing.assert_close(conv_w[32 * k : 32 * (k + 1)], s.encoder[3].weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(lin_w[k], s.linear_enc[0].weight.grad[0], rtol=1e-4, atol=1e-6)
    assert len(back) == 2


def test_unstack_inverts_stack():
    singles = [AutoEncoder("memae", 1) for _ in range(3)]
    back = unstack_members(stack_members(singles))
    for a, b in zip(singles, back):
        for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert na == nb
            torch.testing.assert_close(ta, tb)


def test_invalid_configurations_are_refused():
    with pytest.raises(ValueError, match="backbone"):
        AutoEncoder("vae")
    with pytest.raises(ValueError, match="multiple of 16"):
        AutoEncoder("ae", img_size=72)
    with pytest.raises(ValueError, match="channels"):
        AutoEncoder("ae", members=3)(torch.randn(2, 2, 64, 64))
    with pytest.raises(ValueError, match="share"):
        stack_members([AutoEncoder("ae"), AutoEncoder("ae-u")])
