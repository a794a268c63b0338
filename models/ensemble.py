"""Several trained detectors' networks as one: the mean of their standardised scores and maps.

Each member is a scorer (image batch (N, 1, S, S) -> score (N,), heatmap (N, H, W)) of any
method. Its score is put on the scale of the normals it trained on, ``(score - median) / IQR``,
and its heatmap likewise (pixel median and the spread from median to 99th percentile), so no
member dominates by its units; the ensemble's score and heatmap are the plain means. A member
whose heatmap is not S × S is resized (bilinear) to the input size first. ``engine.ensemble``
chooses the constants and calibrates the whole on normals none of the members trained on.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ScoreEnsemble(nn.Module):
    """``K`` member scorers with per-member score and heatmap standardisation constants.

    Args:
        members: the member scorers, in eval mode.
        score_loc, score_scale: per member, the score's location and scale (scale > 0).
        map_loc, map_scale: per member, the heatmap's location and scale (scale > 0).
    """

    def __init__(self, members: Sequence[nn.Module], score_loc: Sequence[float], score_scale: Sequence[float],
                 map_loc: Sequence[float], map_scale: Sequence[float]) -> None:
        super().__init__()
        k = len(members)
        if k < 1 or not all(len(v) == k for v in (score_loc, score_scale, map_loc, map_scale)):
            raise ValueError("one location and scale per member, for the score and the heatmap")
        if min(*score_scale, *map_scale) <= 0:
            raise ValueError("scales must be positive")
        self.members = nn.ModuleList(members)
        for name, values in (("score_loc", score_loc), ("score_scale", score_scale), ("map_loc", map_loc),
                             ("map_scale", map_scale)):
            self.register_buffer(name, torch.tensor([float(v) for v in values], dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = image.shape[-2:]
        scores, maps = [], []
        for i, member in enumerate(self.members):
            s, h = member(image)
            if h.shape[-2:] != size:
                h = F.interpolate(h[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
            scores.append((s - self.score_loc[i]) / self.score_scale[i])
            maps.append((h - self.map_loc[i]) / self.map_scale[i])
        return torch.stack(scores).mean(0), torch.stack(maps).mean(0)
