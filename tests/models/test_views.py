"""Test-time views: scores averaged over views, heatmaps mapped back onto the input's pixels."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cxrscreen.models.views import ViewAverage


class Echo(nn.Module):
    """Score: the mean of the input's central 4 x 4 pixels; heatmap: the input itself."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = x.shape[-1]
        return x[:, 0, s // 2 - 2 : s // 2 + 2, s // 2 - 2 : s // 2 + 2].mean((1, 2)), x[:, 0]


def _image(n: int = 2, s: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, s, s, generator=g) * 2 - 1


def test_the_identity_view_alone_is_the_scorer():
    x = _image()
    s, h = ViewAverage(Echo(), [(1.0, 0.0, 0.0)], (-1.0, 1.0))(x)
    ref_s, ref_h = Echo()(x)
    torch.testing.assert_close(s, ref_s)
    torch.testing.assert_close(h, ref_h)


def test_a_shifted_view_moves_the_content_and_its_map_comes_back_in_place():
    x = _image()
    # content moved right by 1/8 of 16 px = 2 px: the view's column c shows the input's column c - 2
    shifted = ViewAverage(Echo(), [(1.0, 0.125, 0.0)], (-1.0, 1.0))
    s, h = shifted(x)
    torch.testing.assert_close(s, x[:, 0, 6:10, 4:8].mean((1, 2)))
    # mapped back: every input pixel the view saw (all but the last 2 columns) holds its own value
    torch.testing.assert_close(h[:, :, :14], x[:, 0, :, :14], atol=1e-5, rtol=0)


def test_outside_the_image_a_view_shows_black():
    x = torch.ones(1, 1, 16, 16)
    u = ViewAverage(Echo(), [(1.0, 0.25, 0.0)], (-1.0, 1.0))
    grid_view = []
    u.scorer = type("Grab", (nn.Module,), {"forward": lambda self, v: (grid_view.append(v) or Echo()(v))})()
    u(x)
    torch.testing.assert_close(grid_view[0][0, 0, :, :4], torch.full((16, 4), -1.0))  # black fill: the range's low
    torch.testing.assert_close(grid_view[0][0, 0, :, 4:], torch.ones(16, 12))


def test_the_score_is_the_mean_over_views_and_the_map_averages_only_where_a_view_saw():
    x = _image(1)
    views = [(1.0, 0.0, 0.0), (1.0, 0.125, 0.0)]
    s, h = ViewAverage(Echo(), views, (-1.0, 1.0))(x)
    s0, _ = ViewAverage(Echo(), views[:1], (-1.0, 1.0))(x)
    s1, _ = ViewAverage(Echo(), views[1:], (-1.0, 1.0))(x)
    torch.testing.assert_close(s, (s0 + s1) / 2)
    torch.testing.assert_close(h[0, :, :14], x[0, 0, :, :14], atol=1e-5, rtol=0)  # both views agree there
    torch.testing.assert_close(h[0, :, 15], x[0, 0, :, 15], atol=1e-5, rtol=0)   # the identity alone saw the last column


def test_a_batch_is_scored_as_its_images_one_by_one():
    # the views of a batch run through the scorer as one batch: no image's views mix with another's
    x = _image(3)
    views = [(1.0, 0.0, 0.0), (1.15, 0.0, 0.0), (1.0, 0.06, 0.0), (0.92, 0.0, -0.06)]
    u = ViewAverage(Echo(), views, (-1.0, 1.0))
    s, h = u(x)
    for i in range(3):
        si, hi = u(x[i:i + 1])
        torch.testing.assert_close(s[i:i + 1], si)
        torch.testing.assert_close(h[i:i + 1], hi)
    assert len({round(float(v), 6) for v in s}) == 3


def test_magnification_maps_back_exactly_on_a_ramp():
    # bilinear sampling reproduces a linear ramp exactly, so a 2x view mapped back is the input
    ramp = ((torch.arange(32.0) - 15.5) / 32).expand(1, 1, 32, 32).contiguous()
    s, h = ViewAverage(Echo(), [(2.0, 0.0, 0.0)], (-1.0, 1.0))(ramp)
    torch.testing.assert_close(s, torch.zeros(1), atol=1e-6, rtol=0)  # the centre of a symmetric ramp
    torch.testing.assert_close(h[0, 8:24, 8:24], ramp[0, 0, 8:24, 8:24], atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad", [[], [(0.0, 0.0, 0.0)], [(1.0, 0.0)]])
def test_bad_views_are_refused(bad):
    with pytest.raises(ValueError):
        ViewAverage(Echo(), bad, (-1.0, 1.0))
