"""A scorer averaged over re-framed views of its input (test-time views, issue 22).

Each view magnifies the model input about its centre and shifts it (black outside the image, as
on a detector's edge and as :mod:`engine.augment` trains with); the scorer runs on every view.
The score is the mean of the views' scores. Each view's heatmap is mapped back onto the input's
own pixels and the heatmap is the mean, at every pixel, over the views that saw that pixel (the
identity view sees every pixel), so the map stays in the method's units and shows the image as
it was read. The views run as one batch (view-major), so an exported graph holds the scorer once
and the scorer must score each image independently of the others in its batch (eval mode).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def view_theta(zoom: float, across: float, down: float) -> list[list[float]]:
    """``affine_grid``'s matrix for one view: output pixel -> input pixel, in [-1, 1] coordinates.

    ``zoom`` > 1 magnifies; ``across`` / ``down`` move the content right / down by that fraction
    of the side.
    """
    return [[1.0 / zoom, 0.0, -2.0 * across / zoom], [0.0, 1.0 / zoom, -2.0 * down / zoom]]


def inverse_theta(zoom: float, across: float, down: float) -> list[list[float]]:
    """The matrix that takes a view's output back onto the input's pixels."""
    return [[zoom, 0.0, 2.0 * across], [0.0, zoom, 2.0 * down]]


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) resampled through ``theta`` (2, 3; output -> input), zeros outside."""
    n, c, h, w = x.shape
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class ViewAverage(nn.Module):
    """``scorer`` (image (N, 1, S, S) -> score (N,), heatmap (N, H, W)) averaged over ``views``.

    Args:
        scorer: the method's scorer, in eval mode.
        views: (zoom, across, down) per view, the first normally the identity (1, 0, 0).
        output_range: (low, high) of the input; ``low`` is black (what a view shows outside the image).
    """

    def __init__(self, scorer: nn.Module, views: Sequence[Sequence[float]], output_range: Sequence[float]) -> None:
        super().__init__()
        if not views:
            raise ValueError("at least one view")
        for v in views:
            if len(v) != 3 or not float(v[0]) > 0:
                raise ValueError(f"a view is (zoom > 0, across, down), got {tuple(v)!r}")
        self.scorer = scorer
        self.low, self.high = float(output_range[0]), float(output_range[1])
        self.register_buffer("theta", torch.tensor([view_theta(*map(float, v)) for v in views], dtype=torch.float32))
        self.register_buffer("inverse", torch.tensor([inverse_theta(*map(float, v)) for v in views], dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, size, v = image.shape[0], image.shape[-2:], self.theta.shape[0]
        u = (image - self.low) / (self.high - self.low)
        # every view in one batch (view-major): the scorer runs once, so the graph holds it once
        views = torch.cat([warp(u, self.theta[i]) for i in range(v)]) * (self.high - self.low) + self.low
        s, h = self.scorer(views)
        h = h[:, None]
        if h.shape[-2:] != size:
            h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        total, weight = None, None
        for i in range(v):
            hi = h[i * n:(i + 1) * n]
            seen, mapped = warp(torch.ones_like(hi), self.inverse[i]), warp(hi, self.inverse[i])
            total = mapped if total is None else total + mapped
            weight = seen if weight is None else weight + seen
        return s.reshape(v, n).mean(0), (total / weight.clamp_min(1e-6))[:, 0]
