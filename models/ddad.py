"""DDAD's anomaly maps from two autoencoder ensembles (Cai et al., MICCAI 2022, Eq. 3-5).

Module A (K members, trained on normal ∪ unlabeled) and module B (K members, trained on normal
only) are held in one stacked :class:`~models.autoencoder.AutoEncoder` of 2K members (A first),
so one grouped forward pass serves both at inference.

Maps, exactly as the official ``test.py`` computes them (per pixel, over the K members):
    μ_A, μ_B            member means of the reconstructions
    AE / MemAE:         rec = (x − μ_B)²,        intra = std_B (unbiased),  inter = |μ_A − μ_B|
    AE-U (var = mean_k exp(logvar_B,k), B's mean predicted variance):
                        rec = (x − μ_B)² / var,  intra = sqrt(var_B(unbiased) / var),
                        inter = sqrt((μ_A − μ_B)² / var) = |μ_A − μ_B| / sqrt(var)
The image score is the mean of the chosen map (the paper's), or with ``top_fraction`` < 1 the
mean of that fraction of its highest pixels (:func:`pool_map`; not in the paper: a small lesion
moves a few pixels of the map a lot and its mean a little).
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from cxrscreen.models.autoencoder import AutoEncoder

ScoreType = Literal["rec", "intra", "inter"]
SCORE_TYPES: tuple[str, ...] = get_args(ScoreType)


def ddad_maps(x: Tensor, a_mean: Tensor, b_mean: Tensor, b_logvar: Tensor | None) -> dict[str, Tensor]:
    """All three DDAD maps.

    Args:
        x: (N, 1, H, W) input in [-1, 1].
        a_mean: (N, K, H, W) module A reconstructions.
        b_mean: (N, K, H, W) module B reconstructions.
        b_logvar: (N, K, H, W) module B predicted log-variances (AE-U), else None.

    Returns:
        {"rec", "intra", "inter"}: each (N, H, W).
    """
    mu_a = a_mean.mean(dim=1)
    mu_b = b_mean.mean(dim=1)
    sq_err = (x[:, 0] - mu_b) ** 2
    intra_var = b_mean.var(dim=1, unbiased=True)
    diff = torch.abs(mu_a - mu_b)
    if b_logvar is None:
        return {"rec": sq_err, "intra": torch.sqrt(intra_var), "inter": diff}
    var = torch.exp(b_logvar).mean(dim=1)
    return {"rec": sq_err / var, "intra": torch.sqrt(intra_var / var), "inter": diff / torch.sqrt(var)}


def pool_map(heatmap: Tensor, top_fraction: float = 1.0) -> Tensor:
    """Image scores from anomaly maps: the mean of each map's ``top_fraction`` highest pixels.

    Args:
        heatmap: (N, H, W) maps.
        top_fraction: in (0, 1]; 1 is the whole map's mean (DDAD's score); below 1 the mean of
            the ``max(1, round(top_fraction * H * W))`` highest pixels.

    Returns:
        (N,) scores.
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    if top_fraction == 1.0:
        return heatmap.mean(dim=(1, 2))
    flat = heatmap.flatten(1)
    k = max(1, round(top_fraction * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(dim=1)


class DDADScorer(nn.Module):
    """The exported DDAD detector: image (N, 1, H, W) -> (score (N,), heatmap (N, H, W)).

    Args:
        ensemble: AutoEncoder with 2K members, module A's K first, module B's K last.
        score_type: which map is the heatmap and is pooled into the score.
        top_fraction: the score is the mean of this fraction of the map's highest pixels
            (:func:`pool_map`; 1: the whole map's mean, as published).
    """

    def __init__(self, ensemble: AutoEncoder, score_type: ScoreType = "inter", top_fraction: float = 1.0) -> None:
        super().__init__()
        if ensemble.members % 2 or ensemble.members < 4:
            raise ValueError(f"the ensemble must hold 2K members with K >= 2, got {ensemble.members}")
        if score_type not in SCORE_TYPES:
            raise ValueError(f"score_type must be one of {SCORE_TYPES}, got {score_type!r}")
        self.ensemble = ensemble
        self.k = ensemble.members // 2
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
        self.score_type: ScoreType = score_type
        self.top_fraction = float(top_fraction)

    def maps(self, x: Tensor) -> dict[str, Tensor]:
        """All three maps for a batch (N, 1, H, W)."""
        out = self.ensemble(x)
        b_logvar = out.logvar[:, self.k :] if out.logvar is not None else None
        return ddad_maps(x, out.mean[:, : self.k], out.mean[:, self.k :], b_logvar)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        heatmap = self.maps(x)[self.score_type]
        return pool_map(heatmap, self.top_fraction), heatmap
