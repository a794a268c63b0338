"""DDAD's convolutional autoencoders (Cai et al., MICCAI 2022), K ensemble members stacked in one module.

The architecture is the official code's (github.com/caiyu6666/DDAD, ``models/autoencoder.py`` and
``models/memory_ae.py``): input 1 x 64 x 64; encoder of four conv k4 s2 p1 (16-32-64-64 channels,
no bias) each followed by BatchNorm and ReLU; fully connected 1024 -> 2048 (BN, ReLU) -> latent
(16); decoder latent -> 2048 (BN, ReLU) -> 1024, then four mirrored transposed convs, the last
with 1 output channel (2 for AE-U: mean and log-variance) and no output activation. MemAE
addresses a memory of ``mem_dim`` slots with the latent (softmax attention, optional hard
shrinkage), as in the official MemAE.

``members`` independent networks live in one module: convolutions are grouped (groups =
members), fully connected layers are batched matrix products and BatchNorm runs over the
concatenated channels, so member k's output depends only on member k's parameters and input
channel k. ``members=1`` is exactly the paper's single network (same parameter shapes for the
convolutions and BatchNorms, so an official checkpoint loads through
:func:`load_official_state_dict`). :func:`stack_members` / :func:`unstack_members` convert
between one K-member module and K single ones without changing any output.

Shapes: input (B, K, H, W) — channel k is member k's image — or (B, 1, H, W), broadcast to all
members. Output maps are (B, K, H, W).
"""
from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Backbone = Literal["ae", "ae-u", "memae"]
BACKBONES: tuple[str, ...] = get_args(Backbone)


class AEOutput(NamedTuple):
    """What every member returns.

    Attributes:
        mean: (B, K, H, W) reconstruction (the predicted mean for AE-U).
        logvar: (B, K, H, W) predicted log-variance (AE-U only, else None).
        attention: (B, K, mem_dim) memory addressing weights (MemAE only, else None).
    """

    mean: Tensor
    logvar: Tensor | None
    attention: Tensor | None


class GroupedLinear(nn.Module):
    """K independent ``nn.Linear`` layers on K feature groups: (B, K*in) -> (B, K*out).

    Weights are stored (K, out, in), member k's slice initialised like ``nn.Linear``.
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members, out_features))
        bound = 1.0 / math.sqrt(in_features)
        for k in range(members):  # nn.Linear.reset_parameters, member by member
            nn.init.kaiming_uniform_(self.weight[k], a=math.sqrt(5))
            nn.init.uniform_(self.bias[k], -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if self.members == 1:
            return F.linear(x, self.weight[0], self.bias[0])
        b = x.shape[0]
        xk = x.reshape(b, self.members, self.in_features).transpose(0, 1)  # (K, B, in)
        y = torch.baddbmm(self.bias.unsqueeze(1), xk, self.weight.transpose(1, 2))  # (K, B, out)
        return y.transpose(0, 1).reshape(b, self.members * self.out_features)

    def extra_repr(self) -> str:
        return f"members={self.members}, in_features={self.in_features}, out_features={self.out_features}"


class Memory(nn.Module):
    """MemAE's memory (official ``MemoryUnit``), one per member: weight (K, mem_dim, latent)."""

    def __init__(self, members: int, mem_dim: int, latent_size: int, shrink_thres: float) -> None:
        super().__init__()
        self.members, self.mem_dim, self.latent_size = members, mem_dim, latent_size
        self.shrink_thres = shrink_thres
        self.weight = nn.Parameter(torch.empty(members, mem_dim, latent_size))
        stdv = 1.0 / math.sqrt(latent_size)
        nn.init.uniform_(self.weight, -stdv, stdv)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z: (B, K*latent) -> (read-out (B, K*latent), attention (B, K, mem_dim))."""
        b = z.shape[0]
        zk = z.reshape(b, self.members, self.latent_size).transpose(0, 1)  # (K, B, C)
        att = torch.softmax(torch.bmm(zk, self.weight.transpose(1, 2)), dim=-1)  # (K, B, M)
        if self.shrink_thres > 0:  # hard shrinkage then L1 renormalisation, as the official code
            lam = self.shrink_thres
            att = F.relu(att - lam) * att / (torch.abs(att - lam) + 1e-12)
            att = F.normalize(att, p=1, dim=-1)
        out = torch.bmm(att, self.weight)  # (K, B, C)
        return out.transpose(0, 1).reshape(b, -1), att.transpose(0, 1)


class AutoEncoder(nn.Module):
    """K stacked DDAD autoencoders (AE, AE-U or MemAE).

    Args:
        backbone: "ae", "ae-u" (two output channels: mean, log-variance) or "memae".
        members: number K of independent networks in this module.
        latent_size: size of the bottleneck (16 in the paper).
        multiplier: channel multiplier (1 in the paper).
        img_size: input side length (64 in the paper; must be divisible by 16).
        mem_dim: MemAE memory slots (25 in the paper's config).
        shrink_thres: MemAE hard-shrinkage threshold (0 in the paper's config).
    """

    def __init__(
        self,
        backbone: Backbone = "ae",
        members: int = 1,
        latent_size: int = 16,
        multiplier: float = 1,
        img_size: int = 64,
        mem_dim: int = 25,
        shrink_thres: float = 0.0,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        if img_size % 16 or img_size < 16:
            raise ValueError(f"img_size must be a positive multiple of 16, got {img_size}")
        self.backbone: Backbone = backbone
        self.members = k = members
        self.latent_size = latent_size
        self.img_size = img_size
        self.fm = img_size // 16
        self.out_channels = 2 if backbone == "ae-u" else 1
        c16, c32, c64 = int(16 * multiplier), int(32 * multiplier), int(64 * multiplier)
        self.c64 = c64
        flat = c64 * self.fm * self.fm

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin * k, cout * k, 4, 2, 1, bias=False, groups=k), nn.BatchNorm2d(cout * k), nn.ReLU(True)]

        def deconv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin * k, cout * k, 4, 2, 1, bias=False, groups=k), nn.BatchNorm2d(cout * k), nn.ReLU(True)]

        self.encoder = nn.Sequential(*conv(1, c16), *conv(c16, c32), *conv(c32, c64), *conv(c64, c64))
        self.linear_enc = nn.Sequential(
            GroupedLinear(k, flat, 2048), nn.BatchNorm1d(2048 * k), nn.ReLU(True), GroupedLinear(k, 2048, latent_size)
        )
        self.mem_rep = Memory(k, mem_dim, latent_size, shrink_thres) if backbone == "memae" else None
        self.linear_dec = nn.Sequential(
            GroupedLinear(k, latent_size, 2048), nn.BatchNorm1d(2048 * k), nn.ReLU(True), GroupedLinear(k, 2048, flat)
        )
        self.decoder = nn.Sequential(
            *deconv(c64, c64),
            *deconv(c64, c32),
            *deconv(c32, c16),
            nn.ConvTranspose2d(c16 * k, self.out_channels * k, 4, 2, 1, bias=False, groups=k),
        )

    def forward(self, x: Tensor) -> AEOutput:
        """x: (B, K, H, W) or (B, 1, H, W) in [-1, 1]."""
        b, c, h, w = x.shape
        if c == 1 and self.members > 1:
            x = x.expand(b, self.members, h, w)
        elif c != self.members:
            raise ValueError(f"input must have 1 or {self.members} channels, got {c}")
        z = self.linear_enc(self.encoder(x).reshape(b, -1))
        attention = None
        if self.mem_rep is not None:
            z, attention = self.mem_rep(z)
        out = self.decoder(self.linear_dec(z).reshape(b, self.members * self.c64, self.fm, self.fm))
        if self.out_channels == 1:
            return AEOutput(out, None, attention)
        out = out.reshape(b, self.members, 2, h, w)
        return AEOutput(out[:, :, 0], out[:, :, 1], attention)


# ----------------------------------------------------------------------------------------------
# stacking and official checkpoints

def _config(model: AutoEncoder) -> dict:
    return {
        "backbone": model.backbone,
        "latent_size": model.latent_size,
        "multiplier": model.c64 / 64,
        "img_size": model.img_size,
        "mem_dim": model.mem_rep.mem_dim if model.mem_rep is not None else 25,
        "shrink_thres": model.mem_rep.shrink_thres if model.mem_rep is not None else 0.0,
    }


def _member_sizes(model: AutoEncoder) -> dict[str, int]:
    """For every tensor of the state dict: its size per member along dim 0.

    Every tensor stacks members along dim 0: GroupedLinear/Memory weights have a member axis
    (size 1 each), grouped (transposed) convolution weights and BatchNorm vectors concatenate
    member blocks.
    """
    k = model.members
    return {
        name: t.shape[0] // k
        for name, t in model.state_dict().items()
        if not name.endswith("num_batches_tracked")
    }


def stack_members(models: list[AutoEncoder]) -> AutoEncoder:
    """K single (or stacked) modules of the same configuration -> one module with all members."""
    if not models:
        raise ValueError("stack_members needs at least one model")
    cfg = _config(models[0])
    if any(_config(m) != cfg for m in models[1:]):
        raise ValueError("all stacked models must share backbone, sizes and memory settings")
    total = sum(m.members for m in models)
    stacked = AutoEncoder(members=total, **cfg)
    states = [m.state_dict() for m in models]
    new_state = {}
    for name, t in stacked.state_dict().items():
        if name.endswith("num_batches_tracked"):
            new_state[name] = states[0][name].clone()
            continue
        new_state[name] = torch.cat([s[name] for s in states], dim=0)
        if new_state[name].shape != t.shape:
            raise ValueError(f"cannot stack {name}: {tuple(new_state[name].shape)} vs {tuple(t.shape)}")
    stacked.load_state_dict(new_state)
    return stacked


def unstack_members(model: AutoEncoder) -> list[AutoEncoder]:
    """One K-member module -> K single-member modules with the same outputs."""
    cfg = _config(model)
    sizes = _member_sizes(model)
    state = model.state_dict()
    singles = []
    for k in range(model.members):
        single = AutoEncoder(members=1, **cfg)
        s = {}
        for name, t in single.state_dict().items():
            if name.endswith("num_batches_tracked"):
                s[name] = state[name].clone()
                continue
            size = sizes[name]
            s[name] = state[name][k * size : (k + 1) * size].clone()
        single.load_state_dict(s)
        singles.append(single)
    return singles


def load_official_state_dict(model: AutoEncoder, state: dict[str, Tensor]) -> None:
    """Load a checkpoint saved by the official DDAD code (``torch.save(model.state_dict())``).

    Works for a single-member module of the matching backbone; official ``nn.Linear`` weights
    (out, in) gain the member axis, and MemAE's ``mem_rep.memory.weight`` becomes ``mem_rep.weight``.
    """
    if model.members != 1:
        raise ValueError("load an official checkpoint into a single-member AutoEncoder, then stack")
    converted = {}
    for name, t in state.items():
        if name == "mem_rep.memory.weight":
            name = "mem_rep.weight"
        module_name = name.rsplit(".", 1)[0]
        try:
            module = model.get_submodule(module_name)
        except AttributeError as exc:
            raise ValueError(f"unexpected key {name!r} in the checkpoint for backbone {model.backbone!r}") from exc
        if isinstance(module, (GroupedLinear, Memory)):
            t = t.unsqueeze(0)
        converted[name] = t
    try:
        missing, unexpected = model.load_state_dict(converted, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"checkpoint does not match backbone {model.backbone!r}: {exc}") from exc
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"checkpoint does not match backbone {model.backbone!r}: missing {missing}, unexpected {unexpected}")
