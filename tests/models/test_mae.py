"""The masked autoencoder: shapes, masks, the official loss, gradients, pre-trained checkpoints."""
from __future__ import annotations

import math

import pytest
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from cxrscreen.models.mae import (
    MaskedAutoencoder,
    load_pretrained,
    mask_indices,
    partition_masks,
    random_masks,
    sincos_pos_embed,
    unwrap_state_dict,
)

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=2,
            decoder_num_heads=2)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run faster on one thread, far faster on a CPU shared with other jobs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(**kw) -> MaskedAutoencoder:
    torch.manual_seed(0)
    return MaskedAutoencoder(**{**TINY, **kw})


def test_shapes_and_patchify_round_trip():
    m = _tiny()
    assert (m.grid_size, m.num_patches) == (4, 16)
    x = torch.randn(3, 1, 32, 32)
    out = m(x, random_masks(3, 16, 0.75, torch.Generator().manual_seed(0)))
    assert out.pred.shape == (3, 16, 64) and out.mask.shape == (3, 16)
    assert m.encode_all(x).shape == (3, 17, 32)
    torch.testing.assert_close(m.unpatchify(m.patchify(x)), x, rtol=0, atol=0)
    # patch 1 is the second patch of the first row: rows 0-7, columns 8-15
    torch.testing.assert_close(m.patchify(x)[:, 1], x[:, 0, 0:8, 8:16].reshape(3, 64))


def test_sine_cosine_embedding_by_hand():
    # embed_dim 4: one frequency (1.0); channels are sin(col), cos(col), sin(row), cos(row)
    pe = sincos_pos_embed(4, 2)
    assert pe.shape == (5, 4)
    torch.testing.assert_close(pe[0], torch.zeros(4))  # the class token's row
    torch.testing.assert_close(pe[2], torch.tensor([math.sin(1), math.cos(1), 0.0, 1.0]))  # row 0, col 1
    torch.testing.assert_close(pe[3], torch.tensor([0.0, 1.0, math.sin(1), math.cos(1)]))  # row 1, col 0
    assert "pos_embed" not in dict(_tiny().named_parameters())  # fixed, not learned


def test_random_masks_keep_the_official_count_and_are_reproducible():
    a = random_masks(5, 16, 0.75, torch.Generator().manual_seed(3))
    b = random_masks(5, 16, 0.75, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert ((~a).sum(dim=1) == 4).all()  # int(16 * 0.25) visible per image
    assert len({tuple(r.tolist()) for r in a}) > 1  # per-image masks
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masks(1, 16, 1.0)


def test_same_stored_mask_gives_the_same_output():
    m = _tiny().eval()
    x = torch.randn(2, 1, 32, 32)
    mask = random_masks(2, 16, 0.75, torch.Generator().manual_seed(1))
    with torch.no_grad():
        p1, p2 = m(x, mask).pred, m(x, mask.clone()).pred
        p3 = m(x, random_masks(2, 16, 0.75, torch.Generator().manual_seed(2))).pred
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    assert not torch.allclose(p1, p3)


def test_mask_indices():
    mask = torch.tensor([[True, False, True, False], [False, True, True, False]])
    keep, restore = mask_indices(mask)
    assert keep.tolist() == [[1, 3], [0, 3]]  # visible patches in patch order
    # [visible..., masked...] gathered with restore is back in patch order
    seq = torch.cat([keep, torch.tensor([[0, 2], [1, 2]])], dim=1)
    assert torch.gather(seq, 1, restore).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    with pytest.raises(ValueError, match="same number"):
        mask_indices(torch.tensor([[True, False], [False, False]]))


def test_partition_masks_hide_every_patch_the_same_number_of_times():
    masks = partition_masks(16, 4, 0.75, torch.Generator().manual_seed(0))
    assert masks.shape == (4, 16) and ((~masks).sum(dim=1) == 4).all()
    assert (masks.sum(dim=0) == 3).all()  # 4 masks at 25 % visible: each patch hidden 3 times
    with pytest.raises(ValueError, match="visible in every mask"):
        partition_masks(16, 2, 0.25, torch.Generator().manual_seed(0))


def test_loss_counts_only_the_masked_patches():
    m = _tiny()
    x = torch.zeros(1, 1, 32, 32)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, :4] = True
    pred = torch.zeros(1, 16, 64)
    pred[0, 0] = 2.0  # masked patch 0: squared error 4 per pixel
    pred[0, 10] = 100.0  # visible patch: ignored
    # mean over the 4 masked patches of their per-pixel MSE: (4 + 0 + 0 + 0) / 4
    torch.testing.assert_close(m.loss(x, pred, mask), torch.tensor(1.0))


def test_every_parameter_gets_a_gradient():
    m = _tiny()
    x = torch.randn(2, 1, 32, 32)
    mask = random_masks(2, 16, 0.75, torch.Generator().manual_seed(0))
    out = m(x, mask)
    m.loss(x, out.pred, mask).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_masked_patches_do_not_reach_the_encoder():
    m = _tiny().eval()
    x = torch.randn(1, 1, 32, 32)
    mask = random_masks(1, 16, 0.75, torch.Generator().manual_seed(0))
    y = x.clone()
    hidden = int(mask[0].nonzero()[0])
    r, c = divmod(hidden, 4)
    y[0, 0, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8] += 5.0  # change a hidden patch only
    with torch.no_grad():
        torch.testing.assert_close(m(x, mask).pred, m(y, mask).pred)


# ---------------------------------------------------------------------- checkpoints
def test_timm_checkpoint_loads_and_rgb_weights_are_summed():
    torch.manual_seed(1)
    vit = VisionTransformer(img_size=32, patch_size=8, in_chans=3, embed_dim=32, depth=2, num_heads=2, num_classes=5).eval()
    m = _tiny()
    report = load_pretrained(m, {"state_dict": vit.state_dict()})
    assert report.format == "timm"
    assert "head.weight" in report.ignored and "decoder_pred.weight" in report.missing
    assert any("summed" in a for a in report.adapted)
    # a gray image is an RGB image with three equal channels: the same features
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m.eval().encode_all(x), vit.forward_features(x.repeat(1, 3, 1, 1)), atol=1e-5, rtol=1e-5)


def test_timm_checkpoint_of_another_grid_is_resampled():
    torch.manual_seed(1)
    vit = VisionTransformer(img_size=48, patch_size=8, in_chans=3, embed_dim=32, depth=2, num_heads=2, num_classes=0)
    m = _tiny()
    report = load_pretrained(m, vit.state_dict())
    expected = resample_abs_pos_embed(vit.pos_embed.detach(), [4, 4], [6, 6], num_prefix_tokens=1)
    torch.testing.assert_close(m.pos_embed, expected)
    assert any("6x6 resampled" in a for a in report.adapted)
    torch.testing.assert_close(m.blocks[1].mlp.fc2.weight, vit.blocks[1].mlp.fc2.weight)


def test_official_mae_checkpoint_with_rgb_and_another_grid():
    torch.manual_seed(2)
    rgb = MaskedAutoencoder(**{**TINY, "in_chans": 3, "img_size": 48}).eval()
    ckpt = {"model": {f"module.{k}": v for k, v in rgb.state_dict().items()}, "epoch": 799}
    m = _tiny()
    report = load_pretrained(m, ckpt)
    assert report.format == "mae" and not report.missing and not report.ignored
    torch.testing.assert_close(m.patch_embed.proj.weight, rgb.patch_embed.proj.weight.sum(dim=1, keepdim=True))
    # decoder predictions (p, q, colour) averaged over colour
    torch.testing.assert_close(m.decoder_pred.weight, rgb.decoder_pred.weight.reshape(64, 3, 32).mean(dim=1))
    assert m.decoder_pos_embed.shape == (1, 17, 32)
    assert sum("resampled" in a for a in report.adapted) == 2  # encoder and decoder embeddings


def test_official_mae_checkpoint_same_grid_reconstructs_the_gray_mean():
    torch.manual_seed(2)
    rgb = MaskedAutoencoder(**{**TINY, "in_chans": 3}).eval()
    m = _tiny().eval()
    load_pretrained(m, {"model": rgb.state_dict()})
    x = torch.randn(2, 1, 32, 32)
    mask = random_masks(2, 16, 0.75, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = m(x, mask).pred
        theirs = rgb(x.repeat(1, 3, 1, 1), mask).pred.reshape(2, 16, 64, 3).mean(dim=-1)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_checkpoint_mismatches():
    rgb = MaskedAutoencoder(**{**TINY, "in_chans": 3, "embed_dim": 64}).state_dict()
    with pytest.raises(ValueError, match="width 64"):
        load_pretrained(_tiny(), rgb)
    other_decoder = MaskedAutoencoder(**{**TINY, "decoder_depth": 1}).state_dict()
    m = _tiny()
    report = load_pretrained(m, other_decoder)
    assert any("decoder not loaded" in a for a in report.adapted)
    assert "decoder_pred.weight" in report.ignored and "decoder_pred.weight" in report.missing
    torch.testing.assert_close(m.blocks[0].attn.qkv.weight, other_decoder["blocks.0.attn.qkv.weight"])
    with pytest.raises(ValueError, match="not a model checkpoint"):
        unwrap_state_dict({"epoch": 3})
