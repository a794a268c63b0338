"""AMAE recipe details: pseudo-labels, schedules, samplers, settings, presets and options."""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from cxrscreen.engine.methods import amae
from cxrscreen.engine.methods.amae import PRESET_SETTINGS, Config, preset_config
from cxrscreen.engine.methods.amae.recipe import _Sampler, lr_at, param_groups, pseudo_labels, random_resized_crop, read_checkpoint_file
from cxrscreen.engine.preprocess import PreprocessSpec
from cxrscreen.models.amae import AMAEScorer, MLPHead, Stage1Scorer
from cxrscreen.models.mae import MaskedAutoencoder, load_pretrained
from timm.models.vision_transformer import VisionTransformer


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run faster on one thread, far faster on a CPU shared with other jobs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_pseudo_labels_by_hand():
    p = np.array([0.9, 0.8, 0.6, 0.55, 0.1, 0.2, 0.3, 0.45])
    labels = pseudo_labels(p, 50.0)
    # predicted abnormal (P >= 0.5): confidences 0.9, 0.8, 0.6, 0.55 -> median 0.7 -> images 0, 1
    # predicted normal: confidences 1 - P = 0.9, 0.8, 0.7, 0.55 -> median 0.75 -> images 4, 5
    assert labels.abnormal == (0, 1) and labels.normal == (4, 5)
    assert labels.threshold_abnormal == pytest.approx(0.7) and labels.threshold_normal == pytest.approx(0.75)
    assert labels.split == "classifier"


def test_pseudo_labels_edge_cases():
    # P = 0.5 counts as abnormal; a class of one keeps its image (confidence >= its own median)
    labels = pseudo_labels(np.array([0.5, 0.1, 0.2, 0.3]), 50.0, min_class=1)
    assert labels.abnormal == (0,) and labels.normal == (1, 2)  # normal confidences 0.9 0.8 0.7 -> >= 0.8
    # percentile 0 keeps every image of both classes
    labels = pseudo_labels(np.array([0.9, 0.1, 0.7, 0.4]), 0.0)
    assert labels.abnormal == (0, 2) and labels.normal == (1, 3)


def test_pseudo_labels_fall_back_to_the_median_split():
    # stage 1 calls every image normal: the classes become the lower and upper halves of P
    labels = pseudo_labels(np.array([0.1, 0.4, 0.2, 0.3]), 50.0)
    assert labels.split == "median"
    # lower half 0.1, 0.2: confidences 0.9, 0.8 -> median 0.85 -> image 0
    # upper half 0.4, 0.3: confidences 0.4, 0.3 -> median 0.35 -> image 1
    assert labels.normal == (0,) and labels.abnormal == (1,)
    with pytest.raises(ValueError, match="at least 2 unlabeled"):
        pseudo_labels(np.array([0.3]))


def test_learning_rate_schedule_is_maes():
    assert lr_at(0.0, 1.0, 2, 10) == 0.0
    assert lr_at(1.0, 1.0, 2, 10) == pytest.approx(0.5)  # linear warm-up
    assert lr_at(2.0, 1.0, 2, 10) == pytest.approx(1.0)
    assert lr_at(6.0, 1.0, 2, 10) == pytest.approx(0.5)  # half way down the half cosine
    assert lr_at(10.0, 1.0, 2, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(3.0, 2.0, 0, 4) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))


def test_weight_decay_spares_biases_norms_and_tokens():
    m = MaskedAutoencoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
                          decoder_depth=1, decoder_num_heads=2)
    no_decay, decay = param_groups(m, 0.05)
    names = {id(p): n for n, p in m.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} >= {"cls_token", "mask_token", "norm.weight", "decoder_pred.bias"}
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.05
    assert len(no_decay["params"]) + len(decay["params"]) == len(list(m.parameters()))


def test_sampler_permutations_and_state():
    s = _Sampler(10, 4, seed=0)
    first = torch.cat([s.next(), s.next()])
    assert len(set(first.tolist())) == 8  # no repeats within a permutation; the remainder of 2 is dropped
    state = s.state()
    following = [s.next().tolist() for _ in range(3)]
    s.load_state(state)
    assert [s.next().tolist() for _ in range(3)] == following
    assert len(_Sampler(3, 16, seed=0).next()) == 3  # fewer images than a batch: all of them


def test_random_resized_crop():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    same = random_resized_crop(x, (1.0, 1.0), torch.Generator().manual_seed(0), ratio=(1.0, 1.0))
    torch.testing.assert_close(same, x, atol=1e-4, rtol=0)  # the whole image: unchanged
    crops = random_resized_crop(x.repeat(4, 1, 1, 1), (0.25, 0.5), torch.Generator().manual_seed(0))
    assert crops.shape == (4, 1, 8, 8)
    assert not torch.allclose(crops[0], crops[1])  # one draw per image
    assert float(crops.max() - crops.min()) < 63  # a zoomed part, not the whole range


def test_presets():
    paper, small = preset_config("paper"), preset_config("small")
    assert (paper.preprocess.size, paper.patch_size, paper.embed_dim, paper.depth, paper.num_heads) == (224, 16, 384, 12, 6)
    assert (paper.decoder_embed_dim, paper.decoder_depth, paper.decoder_num_heads) == (512, 8, 16)
    for c in (paper, small):
        assert (c.mask_ratio, c.train_masks, c.test_masks, c.pseudo_percentile) == (0.75, 2, 4, 50.0)
    assert Config() == small  # the defaults are the small preset
    assert set(PRESET_SETTINGS) == set(amae.PRESETS)



def test_config_round_trip_and_validation():
    c = preset_config("tiny", mae_checkpoint="/x/mae.pth", seed=3)
    assert Config.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="multiple of the patch size"):
        preset_config("small", size=60)
    with pytest.raises(ValueError, match="score_type"):
        Config(score_type="rec")
    with pytest.raises(ValueError, match="divisible by its 5 heads"):
        Config(num_heads=5)
    with pytest.raises(ValueError, match="visible in every mask"):
        Config(test_masks=1)
    with pytest.raises(ValueError, match="unknown AMAE settings"):
        Config.from_dict({**c.to_dict(), "members": 3})


def _args(**kw) -> argparse.Namespace:
    from cxrscreen.engine import train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)  # the real `cxrscreen train` options, shared and per method
    argv = ["--method", "amae", "--out", "unused"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return parser.parse_args(argv)


def test_command_line_options():
    c = amae.config_from_args(_args(amae_preset="paper"), PreprocessSpec(size=64))
    assert c.preset == "paper" and c.preprocess.size == 224  # no --size: the preset's
    c = amae.config_from_args(_args(size=96, epochs=7, lr=0.01, batch_size=8), PreprocessSpec(size=96))
    assert (c.preprocess.size, c.epochs, c.lr, c.batch_size) == (96, 7, 0.01, 8)  # stage 2 and every phase
    assert c.pretrain_epochs == PRESET_SETTINGS["small"]["pretrain_epochs"]
    c = amae.config_from_args(_args(mae_checkpoint="w.pth"), PreprocessSpec(size=64))
    assert c.pretrain_epochs == 0 and c.mae_checkpoint.endswith("w.pth")  # a checkpoint replaces pre-training
    c = amae.config_from_args(_args(mae_checkpoint="w.pth", pretrain_epochs=5, amae_score="stage1"), PreprocessSpec(size=64))
    assert c.pretrain_epochs == 5 and c.score_type == "stage1"
    assert amae.describe(preset_config("paper")) == {"backbone": "MAE ViT-S/16 @224", "score_type": "inter"}


def test_paper_preset_networks_run():
    # a smoke test of the paper's architecture: ViT-S/16 is timm's (less the learned position
    # embedding, fixed here), and a training step and both scorers run (on 32 px: 4 patches)
    c = preset_config("paper")
    torch.manual_seed(0)
    mae = MaskedAutoencoder(**{**c.mae_kwargs(), "img_size": 32})
    vit_s = VisionTransformer(img_size=224, patch_size=16, in_chans=1, embed_dim=384, depth=12, num_heads=6, num_classes=0)
    encoder = sum(p.numel() for n, p in mae.named_parameters() if not n.startswith(("decoder", "mask_token")))
    assert encoder == sum(p.numel() for p in vit_s.parameters()) - vit_s.pos_embed.numel()
    x = torch.randn(2, 1, 32, 32)
    mask = torch.tensor([[True, True, True, False], [True, False, True, True]])
    out = mae(x, mask)
    mae.loss(x, out.pred, mask).backward()
    assert all(p.grad is not None for p in mae.parameters())
    masks = torch.tensor([[True, True, True, False], [True, True, False, True], [True, False, True, True],
                          [False, True, True, True]])
    with torch.no_grad():
        score, heatmap = AMAEScorer(mae, mae, masks).eval()(x)
        s1, h1 = Stage1Scorer(mae, MLPHead(c.embed_dim, c.head_hidden)).eval()(x)
    assert heatmap.shape == (2, 32, 32) and float(score.abs().max()) == 0.0  # one module twice: no discrepancy
    assert s1.shape == (2,) and h1.shape == (2, 32, 32) and bool(torch.isfinite(h1).all())


def test_checkpoint_files(tmp_path):
    from safetensors.torch import save_file

    m = MaskedAutoencoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
                          decoder_depth=1, decoder_num_heads=2)
    # an official MAE training checkpoint keeps its optimiser and argparse settings beside the weights
    torch.save({"model": m.state_dict(), "optimizer": torch.optim.AdamW(m.parameters()).state_dict(), "epoch": 3,
                "args": argparse.Namespace(model="mae_vit_small_patch16", mask_ratio=0.75)}, tmp_path / "mae.pth")
    assert load_pretrained(m, read_checkpoint_file(tmp_path / "mae.pth")).format == "mae"
    vit = VisionTransformer(img_size=32, patch_size=8, in_chans=3, embed_dim=32, depth=1, num_heads=2, num_classes=0)
    save_file(vit.state_dict(), str(tmp_path / "vit.safetensors"))  # the hub's timm format
    assert load_pretrained(m, read_checkpoint_file(tmp_path / "vit.safetensors")).format == "timm"
    (tmp_path / "evil.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable weights file"):
        read_checkpoint_file(tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="no such file"):
        read_checkpoint_file(tmp_path / "missing.pth")


def test_module_b_variant_is_an_option_with_the_paper_as_default():
    assert amae.config_from_args(_args(), PreprocessSpec(size=64)).module_b == "pseudo-abnormal"
    c = amae.config_from_args(_args(amae_module_b="normal+pseudo-abnormal"), PreprocessSpec(size=64))
    assert c.module_b == "normal+pseudo-abnormal"
    with pytest.raises(ValueError, match="module_b"):
        preset_config("tiny", module_b="everything")


def test_stage2_acquisition_augmentation_is_an_option_with_the_paper_as_default():
    from cxrscreen.engine.methods.amae.recipe import _MAETrainer

    assert amae.config_from_args(_args(), PreprocessSpec(size=64)).augment == "none"
    assert amae.config_from_args(_args(augment="acquisition"), PreprocessSpec(size=64)).augment == "acquisition"
    with pytest.raises(ValueError, match="augment"):
        preset_config("tiny", augment="flip")
    c = preset_config("tiny", augment="acquisition", batch_size=4)
    data = torch.linspace(-1, 1, 8 * c.preprocess.size**2).reshape(8, 1, c.preprocess.size, c.preprocess.size)

    def batches(augment: str, steps: int, state: dict | None = None) -> tuple[list[torch.Tensor], dict]:
        torch.manual_seed(0)
        model = MaskedAutoencoder(**c.mae_kwargs())
        t = _MAETrainer(model, data, c, lr=1e-3, warmup=0, epochs=1, seed=5, steps_per_epoch=steps, masks_per_image=1,
                        augment=augment, device=torch.device("cpu"))
        if state is not None:
            t.load_state(state)
        seen = []
        model.forward = (lambda f: lambda x, m: (seen.append(x.clone()), f(x, m))[1])(model.forward)
        t.run_epoch(0, lambda v: None)
        return seen, t.state()

    plain, _ = batches("none", 1)
    augmented, state = batches("acquisition", 1)
    assert plain[0].shape == augmented[0].shape and not torch.allclose(plain[0], augmented[0])  # changed images
    assert float(augmented[0].min()) >= -1 and float(augmented[0].max()) <= 1  # still in the preprocessing's range
    # a resumed run replays the augmentation's random stream from the checkpoint: its next batch is the one an
    # uninterrupted run sees second
    continuous, _ = batches("acquisition", 2)
    resumed, _ = batches("acquisition", 1, state)
    torch.testing.assert_close(continuous[0], augmented[0])
    torch.testing.assert_close(resumed[0], continuous[1])
