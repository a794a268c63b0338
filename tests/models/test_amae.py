"""AMAE's scorers: the mask-combined reconstructions, |μ_A − μ_B|, the stage-1 head and heatmap."""
from __future__ import annotations

import pytest
import torch

from cxrscreen.models.amae import AMAEScorer, MLPHead, Stage1Scorer, pooled_tokens
from cxrscreen.models.mae import MaskedAutoencoder, partition_masks

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
            decoder_num_heads=2)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run faster on one thread, far faster on a CPU shared with other jobs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pair() -> tuple[MaskedAutoencoder, MaskedAutoencoder]:
    torch.manual_seed(0)
    return MaskedAutoencoder(**TINY).eval(), MaskedAutoencoder(**TINY).eval()


def _expected_mean(mae: MaskedAutoencoder, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mask by mask: each pixel's reconstruction averaged over the masks that hid its patch."""
    total = torch.zeros(x.shape[0], 32, 32)
    count = torch.zeros(32, 32)
    for m in masks:
        rec = mae.unpatchify(mae(x, m.expand(x.shape[0], -1)).pred)[:, 0]
        hidden = m.reshape(4, 4).repeat_interleave(8, 0).repeat_interleave(8, 1).float()
        total += rec * hidden
        count += hidden
    return total / count


def test_mean_reconstruction_combines_the_masked_patches_of_each_mask():
    a, b = _pair()
    masks = partition_masks(16, 4, 0.75, torch.Generator().manual_seed(0))
    scorer = AMAEScorer(a, b, masks).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        mu_a, mu_b = scorer.reconstructions(x)
        torch.testing.assert_close(mu_a, _expected_mean(a, x, masks), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mu_b, _expected_mean(b, x, masks), atol=1e-5, rtol=1e-5)
        score, heatmap = scorer(x)
    torch.testing.assert_close(heatmap, (mu_a - mu_b).abs())
    torch.testing.assert_close(score, heatmap.mean(dim=(1, 2)))


def test_masks_that_overlap_unevenly_are_weighted_per_pixel():
    a, b = _pair()
    # 3 masks hiding patches 0-7, 4-11 and 8-15: patches 0-3 and 12-15 are hidden once,
    # 4-11 twice, so their pixels average 1 and 2 reconstructions
    masks = torch.zeros(3, 16, dtype=torch.bool)
    masks[0, 0:8], masks[1, 4:12], masks[2, 8:16] = True, True, True
    scorer = AMAEScorer(a, b, masks).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scorer.reconstructions(x)[0], _expected_mean(a, x, masks), atol=1e-5, rtol=1e-5)
    assert set(scorer.pixel_weights[:, 0, 0].tolist()) == {1.0, 0.0}  # patch 0: mask 0 alone
    assert sorted(scorer.pixel_weights[:, 8, 0].tolist()) == [0.0, 0.5, 0.5]  # patch 4: masks 0 and 1


def test_scores_are_reproducible_and_independent_of_the_batch():
    a, b = _pair()
    scorer = AMAEScorer(a, b, partition_masks(16, 4, 0.75, torch.Generator().manual_seed(0))).eval()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        s1, h1 = scorer(x)
        s2, _ = scorer(x)
        alone, _ = scorer(x[2:3])
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)  # fixed masks: no randomness at test time
    torch.testing.assert_close(alone, s1[2:3], atol=1e-6, rtol=1e-5)
    assert h1.shape == (4, 32, 32) and bool(torch.isfinite(h1).all())
    assert "test_masks" in scorer.state_dict()  # stored with the detector


def test_identical_modules_see_no_anomaly():
    a, _ = _pair()
    scorer = AMAEScorer(a, a, partition_masks(16, 4, 0.75)).eval()
    with torch.no_grad():
        score, heatmap = scorer(torch.randn(2, 1, 32, 32))
    assert float(heatmap.abs().max()) == 0.0 and float(score.abs().max()) == 0.0


def test_scorer_validation():
    a, b = _pair()
    with pytest.raises(ValueError, match="masked by at least one"):
        AMAEScorer(a, b, torch.zeros(2, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(L, 16\) bool"):
        AMAEScorer(a, b, torch.ones(2, 9, dtype=torch.bool))
    other = MaskedAutoencoder(**{**TINY, "img_size": 48})
    with pytest.raises(ValueError, match="share image size"):
        AMAEScorer(a, other, partition_masks(16, 4, 0.75))


def test_stage1_scorer_score_and_heatmap():
    a, _ = _pair()
    torch.manual_seed(1)
    head = MLPHead(32, 16).eval()
    scorer = Stage1Scorer(a, head).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        score, heatmap = scorer(x)
        torch.testing.assert_close(score, head(pooled_tokens(a, x)))
        patch_logits = head(a.encode_all(x)[:, 1:]).reshape(3, 16)
    assert heatmap.shape == (3, 32, 32)
    # the heatmap is the patch logits upsampled: its patch means follow the logits
    patch_means = heatmap.reshape(3, 4, 8, 4, 8).mean(dim=(2, 4)).reshape(3, 16)
    for i in range(3):
        assert torch.corrcoef(torch.stack([patch_means[i], patch_logits[i]]))[0, 1] > 0.9


def test_head_is_three_layers_and_trains():
    head = MLPHead(32, 16)
    assert [type(m).__name__ for m in head.net] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    feats = torch.randn(8, 32)
    head(feats).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert head(torch.randn(2, 5, 32)).shape == (2, 5)  # applies to the last axis
