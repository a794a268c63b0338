"""DDAD anomaly maps against hand-computed values (official test.py formulas)."""
from __future__ import annotations

import math

import pytest
import torch

from cxrscreen.models.autoencoder import AutoEncoder
from cxrscreen.models.ddad import DDADScorer, ddad_maps, pool_map

# one image of 1 x 2 pixels, K = 3 members per module
X = torch.tensor([[[[1.0, 0.0]]]])
A = torch.tensor([[[[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])   # μ_A = (0, 0)
B = torch.tensor([[[[1.0, 1.0]], [[2.0, 1.0]], [[3.0, 1.0]]]])   # μ_B = (2, 1); unbiased var = (1, 0)


def test_ae_maps_by_hand():
    m = ddad_maps(X, A, B, None)
    torch.testing.assert_close(m["rec"], torch.tensor([[[1.0, 1.0]]]))    # (1-2)², (0-1)²
    torch.testing.assert_close(m["intra"], torch.tensor([[[1.0, 0.0]]]))  # unbiased std of (1,2,3) is 1
    torch.testing.assert_close(m["inter"], torch.tensor([[[2.0, 1.0]]]))  # |0-2|, |0-1|


def test_ae_u_maps_are_divided_by_the_mean_predicted_variance():
    # predicted variances (2, 4, 6) and (1, 1, 1): their member means are (4, 1)
    logvar = torch.log(torch.tensor([[[[2.0, 1.0]], [[4.0, 1.0]], [[6.0, 1.0]]]]))  # mean exp = (4, 1)
    m = ddad_maps(X, A, B, logvar)
    torch.testing.assert_close(m["rec"], torch.tensor([[[1.0 / 4, 1.0]]]))
    torch.testing.assert_close(m["intra"], torch.tensor([[[math.sqrt(1.0 / 4), 0.0]]]))
    torch.testing.assert_close(m["inter"], torch.tensor([[[2.0 / 2, 1.0]]]))  # |Δμ| / sqrt(var)


@pytest.mark.parametrize("score_type", ["rec", "intra", "inter"])
def test_scorer_returns_mean_of_the_chosen_map(score_type):
    torch.manual_seed(0)
    scorer = DDADScorer(AutoEncoder("ae-u", members=4).eval(), score_type).eval()
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        score, heatmap = scorer(x)
        maps = scorer.maps(x)
    assert score.shape == (3,) and heatmap.shape == (3, 64, 64)
    torch.testing.assert_close(heatmap, maps[score_type])
    torch.testing.assert_close(score, heatmap.mean(dim=(1, 2)))
    assert torch.isfinite(heatmap).all() and (heatmap >= 0).all()


def test_scorer_needs_two_modules_of_at_least_two_members():
    with pytest.raises(ValueError, match="2K members"):
        DDADScorer(AutoEncoder("ae", members=3))
    with pytest.raises(ValueError, match="score_type"):
        DDADScorer(AutoEncoder("ae", members=4), "mean")


def test_pooling_means_the_highest_pixels_by_hand():
    maps = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 8.0]]])  # two 2 x 2 maps
    torch.testing.assert_close(pool_map(maps, 1.0), torch.tensor([2.5, 2.0]))  # the whole map: the paper's mean
    torch.testing.assert_close(pool_map(maps, 0.5), torch.tensor([3.5, 4.0]))  # top 2 of 4: (4 + 3) / 2, (8 + 0) / 2
    torch.testing.assert_close(pool_map(maps, 0.01), torch.tensor([4.0, 8.0]))  # never fewer than one pixel: the max
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="top_fraction"):
            pool_map(maps, bad)


def test_scorer_pools_the_chosen_map_and_refuses_a_bad_fraction():
    torch.manual_seed(0)
    scorer = DDADScorer(AutoEncoder("ae", members=4).eval(), "rec", top_fraction=0.05).eval()
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        score, heatmap = scorer(x)
    top = heatmap.flatten(1).sort(dim=1, descending=True).values[:, :205]  # round(0.05 * 4096) pixels
    torch.testing.assert_close(score, top.mean(dim=1))
    assert (score > heatmap.mean(dim=(1, 2))).all()
    with pytest.raises(ValueError, match="top_fraction"):
        DDADScorer(AutoEncoder("ae", members=4), "rec", top_fraction=0.0)


def test_pooling_is_inside_the_exported_graph(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from cxrscreen.engine.export import HEATMAP_NAME, INPUT_NAME, SCORE_NAME, export_graph

    torch.manual_seed(0)
    scorer = DDADScorer(AutoEncoder("ae-u", members=4, img_size=32).eval(), "rec", top_fraction=0.02).eval()
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    export_graph(scorer, x[:2], tmp_path / "pooled.onnx")
    session = ort.InferenceSession(str(tmp_path / "pooled.onnx"), providers=["CPUExecutionProvider"])
    got_score, got_map = session.run([SCORE_NAME, HEATMAP_NAME], {INPUT_NAME: x.numpy()})  # batch 3, exported at 2
    with torch.no_grad():
        ref_score, ref_map = (t.numpy() for t in scorer(x))
    np.testing.assert_allclose(got_map, ref_map, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_score, ref_score, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got_score, got_map.mean(axis=(1, 2)), rtol=1e-2)  # not the mean
