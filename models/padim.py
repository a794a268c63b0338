"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and
Localization", ICPR workshops 2021) as anomalib implements it (openvinotoolkit/anomalib,
``src/anomalib/models/image/padim/torch_model.py`` and ``anomaly_map.py``): the networks only.
Fitting (the Gaussians) is in ``engine.methods.msacl.recipe``.

- :class:`ResNetStages`: a timm ResNet's ``layer1``..``layer3`` outputs; the deeper two are
  resized to ``layer1``'s grid (nearest, anomalib's ``generate_embedding``) and concatenated,
  then a fixed random subset of the channels is kept (anomalib: 100 of ResNet18's 448).
- :func:`mahalanobis_map`: √((e − μ_p)ᵀ Σ_p⁻¹ (e − μ_p)) at every grid position p, vectorised
  over positions and images (anomalib's ``compute_distance``: one batched matmul, no loop).
- :class:`PaDiMScorer`: image (N, 1, S, S) -> (score (N,), heatmap (N, S, S)): the map upsampled
  bilinearly to the input, Gaussian-blurred (anomalib σ = 4 px at 256 px), score = its maximum.

Shapes: embeddings (N, d, h, w); mean (d, h·w); inverse covariances (h·w, d, d).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrscreen.models.wscxr import GaussianBlur

LAYERS = ("layer1", "layer2", "layer3")


class ResNetStages(nn.Module):
    """The PaDiM embedding of a timm ResNet: (N, 1, S, S) -> (N, d, S/4, S/4).

    Args:
        encoder: a timm ResNet (``conv1``, ``bn1``, ``act1``, ``maxpool``, ``layer1``..``layer3``).
        index: the kept channel indices (d,) of the concatenated layer1-3 embedding, or None for all.
    """

    def __init__(self, encoder: nn.Module, index: Tensor | None = None) -> None:
        super().__init__()
        missing = [n for n in ("conv1", "bn1", "act1", "maxpool", *LAYERS) if not hasattr(encoder, n)]
        if missing:
            raise ValueError(f"PaDiM needs a timm ResNet; the encoder lacks {', '.join(missing)}")
        self.encoder = encoder
        channels = sum(getattr(encoder, n)[-1].conv2.out_channels for n in LAYERS)
        if index is None:
            index = torch.arange(channels)
        if index.ndim != 1 or len(index) == 0 or int(index.min()) < 0 or int(index.max()) >= channels:
            raise ValueError(f"index must be 1-D channel indices in [0, {channels}), got shape {tuple(index.shape)}")
        self.register_buffer("index", index.long().clone())
        self.channels = channels

    def forward(self, x: Tensor) -> Tensor:
        e = self.encoder
        x = e.maxpool(e.act1(e.bn1(e.conv1(x))))
        first = e.layer1(x)
        second = e.layer2(first)
        third = e.layer3(second)
        grid = first.shape[-2:]
        embedding = torch.cat([first, F.interpolate(second, size=grid, mode="nearest"),
                               F.interpolate(third, size=grid, mode="nearest")], dim=1)
        return embedding.index_select(1, self.index)


def mahalanobis_map(embedding: Tensor, mean: Tensor, inv_covariance: Tensor) -> Tensor:
    """√Mahalanobis distance of every position's embedding to its Gaussian.

    Args:
        embedding: (N, d, h, w).
        mean: (d, h·w).
        inv_covariance: (h·w, d, d).

    Returns:
        (N, h, w), float; negative rounding before the root is clamped to 0 (anomalib's ``clamp(0)``).
    """
    n, d, h, w = embedding.shape
    delta = (embedding.reshape(n, d, h * w) - mean).permute(2, 0, 1)  # (P, N, d)
    distances = (torch.matmul(delta, inv_covariance) * delta).sum(2)  # (P, N)
    return distances.permute(1, 0).reshape(n, h, w).clamp(min=0).sqrt()


class PaDiMScorer(nn.Module):
    """The exported detector: image (N, 1, S, S) -> (score (N,), heatmap (N, S, S)).

    Args:
        stages: the frozen embedding network (:class:`ResNetStages`).
        mean: (d, h·w), the per-position means.
        inv_covariance: (h·w, d, d), the per-position inverse covariances (regularised).
        size: S, the input and heatmap side.
        blur_sigma: σ of the heatmap blur in pixels.
    """

    def __init__(self, stages: ResNetStages, mean: Tensor, inv_covariance: Tensor, size: int, blur_sigma: float) -> None:
        super().__init__()
        d, positions = mean.shape
        if inv_covariance.shape != (positions, d, d):
            raise ValueError(f"inv_covariance must be ({positions}, {d}, {d}) for a mean of shape {tuple(mean.shape)}, "
                             f"got {tuple(inv_covariance.shape)}")
        if len(stages.index) != d:
            raise ValueError(f"the mean has {d} channels, the embedding keeps {len(stages.index)}")
        self.stages = stages
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("inv_covariance", inv_covariance.float().clone())
        self.size = size
        self.blur = GaussianBlur(blur_sigma, size)

    def patch_map(self, x: Tensor) -> Tensor:
        """The √Mahalanobis map on the embedding grid (N, h, w)."""
        return mahalanobis_map(self.stages(x), self.mean, self.inv_covariance)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        patches = self.patch_map(x)
        up = F.interpolate(patches.unsqueeze(1), size=(self.size, self.size), mode="bilinear", align_corners=False)
        heatmap = self.blur(up[:, 0])
        return heatmap.amax(dim=(1, 2)), heatmap
