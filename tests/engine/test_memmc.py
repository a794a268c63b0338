"""MemMC-MAE: its network against hand-computed cases, and what only MemMC-MAE does with a trained run.

Stop/resume, the calibration hold-out and ONNX score parity are the shared conformance suite's
(test_method_conformance.py); here: the memory attention (M2's scaling, gradients), the gated
fusion by hand, the long skips' pairing, the plain-MAE configuration, the stored test masks,
the heatmap's ONNX parity and the refusal of a corrupt model file.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrscreen.engine.datasets import DataError, from_folders, load_images
from cxrscreen.engine.methods import registry
from cxrscreen.engine.methods.memmc import Config, make_config
from cxrscreen.engine.methods.memmc.recipe import draw_test_masks, load_scorer
from cxrscreen.engine.progress import Progress
from cxrscreen.engine.synth import write_study
from cxrscreen.engine.train import check_training, run_training
from cxrscreen.models.mae import MaskedAutoencoder, random_masks
from cxrscreen.models.memmc_mae import MemMCMAE, MemMCScorer, MemoryAttention, covering_masks, gated_sum

STUDY = dict(size=64, formats=("png",), variation=0.5, marker=False)
TINY_NET = dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
                decoder_num_heads=2)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------- the network, by hand
def test_memory_attention_is_m2s_scaled_dot_product_attention_with_memory():
    torch.manual_seed(0)
    attn = MemoryAttention(dim=8, num_heads=2, memory_slots=3)
    x = torch.randn(2, 5, 8)
    # M2's ScaledDotProductAttentionMemory.forward, written out: keys [W_k x; √d_k m_k], values [W_v x; √m m_v]
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    k = torch.cat([k, math.sqrt(4) * attn.m_k.expand(2, -1, -1)], dim=1)
    v = torch.cat([v, math.sqrt(3) * attn.m_v.expand(2, -1, -1)], dim=1)
    heads = lambda t: t.reshape(2, t.shape[1], 2, 4).transpose(1, 2)  # noqa: E731
    weights = torch.softmax(heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(4), dim=-1)  # over 5 tokens + 3 slots
    expected = attn.proj((weights @ heads(v)).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attn(x), expected)


def test_memory_slots_change_the_output_and_receive_gradients():
    torch.manual_seed(0)
    attn = MemoryAttention(dim=8, num_heads=2, memory_slots=3)
    x = torch.randn(2, 5, 8)
    before = attn(x).detach()
    for slots in (attn.m_k, attn.m_v):
        with torch.no_grad():
            slots.add_(0.5)
        assert not torch.allclose(attn(x), before)
        with torch.no_grad():
            slots.sub_(0.5)
    attn(x).pow(2).sum().backward()
    assert attn.m_k.grad.abs().sum() > 0 and attn.m_v.grad.abs().sum() > 0


def test_memory_initialisation_is_m2s():
    torch.manual_seed(0)
    attn = MemoryAttention(dim=64, num_heads=2, memory_slots=4000)  # d_k = 32
    # M2: nn.init.normal_(m_k, 0, 1 / d_k) and normal_(m_v, 0, 1 / m): standard deviations
    assert abs(float(attn.m_k.detach().std()) - 1 / 32) < 0.02 / 32
    assert abs(float(attn.m_v.detach().std()) - 1 / 4000) < 0.02 / 4000


def test_gated_sum_by_hand():
    gates = torch.nn.ModuleList([torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)])
    with torch.no_grad():
        gates[0].weight.copy_(torch.tensor([[1.0, 0.0]]))  # α_1 = σ(s) = σ(1)
        gates[1].weight.copy_(torch.tensor([[0.0, 1.0]]))  # α_2 = σ(c_2) = σ(-1)
        for g in gates:
            g.bias.zero_()
    s, c1, c2 = torch.tensor([[1.0]]), torch.tensor([[2.0]]), torch.tensor([[-1.0]])
    # (σ(1)·2 + σ(−1)·(−1)) / √2 = (0.7310586·2 − 0.2689414) / 1.4142136
    torch.testing.assert_close(gated_sum(s, [c1, c2], gates), torch.tensor([[0.8437034]]))


def test_without_its_additions_the_network_is_the_mae():
    torch.manual_seed(0)
    plain = MemMCMAE(**TINY_NET, memory_slots=0, long_skips=False, multi_level=False)
    mae = MaskedAutoencoder(**TINY_NET)
    mae.load_state_dict(plain.state_dict())  # the same parameters, strictly
    x = torch.randn(3, 1, 32, 32)
    mask = random_masks(3, 16, 0.75, torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain(x, mask).pred, mae(x, mask).pred)


def test_long_skips_pair_block_d_minus_1_minus_i_with_the_input_of_block_i():
    torch.manual_seed(0)
    net = MemMCMAE(**TINY_NET, memory_slots=2)  # 4 blocks: 3 <- input of 0, 2 <- input of 1
    assert len(net.skip_linears) == 2
    seen: dict[int, torch.Tensor] = {}
    for i, blk in enumerate(net.blocks):
        blk.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0].detach()))
    d = net.embed_dim
    with torch.no_grad():  # fusion of block 3 keeps only the skip, of block 2 only the running tokens
        net.skip_linears[0].weight.copy_(torch.cat([torch.zeros(d, d), torch.eye(d)], dim=1))
        net.skip_linears[1].weight.copy_(torch.cat([torch.eye(d), torch.zeros(d, d)], dim=1))
        for lin in net.skip_linears:
            lin.bias.zero_()
        tokens = net.patch_embed(torch.randn(2, 1, 32, 32)) + net.pos_embed[:, 1:]
        outs = net._levels(net._with_cls(tokens))
    torch.testing.assert_close(seen[3], seen[0])  # block 3 sees the embedding, block 0's input
    torch.testing.assert_close(seen[2], outs[1])  # block 2 sees block 1's output, unchanged


def test_every_parameter_learns():
    torch.manual_seed(0)
    net = MemMCMAE(**TINY_NET, memory_slots=3)
    x = torch.randn(2, 1, 32, 32)
    mask = random_masks(2, 16, 0.75, torch.Generator().manual_seed(1))
    net.loss(x, net(x, mask).pred, mask).backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad
    names = {n for n, _ in net.named_parameters()}
    assert {f"blocks.{i}.attn.m_k" for i in range(4)} <= names and "decoder_blocks.0.gates.3.weight" in names


# ---------------------------------------------------------------------- test masks and the detector
def test_test_masks_come_from_the_seed_and_hide_every_patch():
    config = registry()["memmc"].config("tiny")
    a, b = draw_test_masks(config, 16), draw_test_masks(config, 16)
    assert torch.equal(a, b) and a.shape == (10, 16)
    assert not torch.equal(a, draw_test_masks(Config.from_dict({**config.to_dict(), "seed": 1}), 16))
    assert bool(a.any(dim=0).all())  # every patch hidden by some mask
    assert ((~a).sum(dim=1) == 4).all()  # 25 % of 16 visible in each
    with pytest.raises(ValueError, match="cannot hide every patch"):
        covering_masks(1, 16, 0.75, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="test_masks 1 hiding 12 of 16"):
        make_config({"architecture": "tiny", "test_masks": 1})
    # a size that no patch grid fits names the flag to change and a size that works
    with pytest.raises(ValueError, match=r"^--size 60 must be a multiple of the patch size 8 \(of --architecture "
                                         r"small\): use 56$"):
        make_config({"architecture": "small", "size": 60})


def test_the_heatmap_is_the_patch_error_averaged_over_the_masks_that_hid_it():
    torch.manual_seed(0)
    net = MemMCMAE(**TINY_NET, memory_slots=2).eval()
    masks = covering_masks(5, 16, 0.75, torch.Generator().manual_seed(0))
    scorer = MemMCScorer(net, masks)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        errors = scorer.patch_errors(x)  # (T, N, L)
        score, heatmap = scorer(x)
    hidden = masks.float()
    expected = (errors * hidden[:, None]).sum(0) / hidden.sum(0)  # per patch: mean over the masks hiding it
    per_patch = net.patchify(heatmap.unsqueeze(1))  # (N, L, p*p): constant within each patch
    torch.testing.assert_close(per_patch, expected.unsqueeze(-1).expand_as(per_patch))
    torch.testing.assert_close(score, heatmap.mean(dim=(1, 2)))
    assert (heatmap >= 0).all() and (heatmap <= 1).all()
    with pytest.raises(ValueError, match="every patch must be hidden"):
        MemMCScorer(net, torch.zeros(2, 16, dtype=torch.bool))


# ---------------------------------------------------------------------- a trained run
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("memmc")
    write_study(root / "normal", 22, 0, seed=31, **STUDY)
    write_study(root / "test", 3, 3, seed=32, **STUDY, lesion_strength=2.0)
    for f in ("normal", "test"):
        (root / f / "labels.csv").unlink()
    config = Config.from_dict({**registry()["memmc"].config("tiny").to_dict(), "device": "cpu"})
    torch.set_num_threads(1)
    outcome = run_training("memmc", config, from_folders(root / "normal", None), root / "run", Progress("none"))
    assert outcome.status == "done"
    return root / "run", root / "test"


def test_unlabeled_images_are_refused(tmp_path):
    write_study(tmp_path / "n", 6, 0, seed=1, **STUDY)
    write_study(tmp_path / "u", 2, 2, seed=2, **STUDY)
    config = registry()["memmc"].config("tiny")
    problems = check_training("memmc", config, from_folders(tmp_path / "n", tmp_path / "u"))
    assert any(p.option == "--unlabeled" and p.level == "error" for p in problems)


def test_trained_run_stores_its_test_masks(trained):
    run, _ = trained
    saved = torch.load(run / "model.pt", weights_only=True)
    config = Config.from_dict(saved["config"])
    assert torch.equal(saved["test_masks"], draw_test_masks(config, 16))
    assert torch.equal(load_scorer(run).test_masks, saved["test_masks"])
    assert saved["summary"]["loss"] > 0 and any(k.endswith("attn.m_k") for k in saved["model"])


def test_onnx_heatmap_equals_torch_heatmap(trained, tmp_path):
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.export import export_run

    run, test = trained
    export_run(run, tmp_path / "d.onnx")
    det = Detector(tmp_path / "d.onnx", provider="cpu")
    images = load_images(sorted(test.glob("*.png")), det.preprocess_spec)
    with torch.no_grad():
        ref_score, ref_map = (t.numpy() for t in load_scorer(run)(torch.from_numpy(images)))
    out = det.run(images)
    np.testing.assert_allclose(out.heatmaps, ref_map, atol=1e-5)
    np.testing.assert_allclose(out.scores, ref_score, atol=1e-5)
    assert det.meta.method == "memmc" and "m4" in det.meta.backbone


def test_corrupt_or_foreign_model_files_are_refused(trained, tmp_path):
    run, _ = trained
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    data = (broken / "model.pt").read_bytes()
    (broken / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt MemMC-MAE model"):
        load_scorer(broken)
    saved = torch.load(run / "model.pt", weights_only=True)
    torch.save({k: v for k, v in saved.items() if k != "test_masks"}, broken / "model.pt")
    with pytest.raises(DataError, match="not a MemMC-MAE model \\(no test_masks\\)"):
        load_scorer(broken)
    saved["model"] = {k: v for k, v in saved["model"].items() if not k.endswith("m_v")}
    torch.save(saved, broken / "model.pt")
    with pytest.raises(DataError, match="does not fit its own settings"):
        load_scorer(broken)


def test_presets_and_paper_numbers():
    m = registry()["memmc"]
    paper, small = m.config("paper"), m.config("small")
    assert (paper.embed_dim, paper.depth, paper.preprocess.size, paper.batch_size, paper.lr) == (768, 12, 224, 256, 1.5e-3)
    # the paper's 1.5e-3 at batch 256, scaled linearly to the small preset's batch of 64
    assert (small.embed_dim, small.depth, small.memory_slots, small.batch_size) == (192, 6, 20, 64)
    assert small.lr == pytest.approx(1.5e-3 * 64 / 256)
    assert not any(p.as_published for p in m.presets)
    assert [r.requirement for r in m.roles] == ["required", "unused", "unused"]
    ablation = m.config("small", memory_slots=0, long_skips=False, multi_level=False)
    assert "no memory" in m.describe(ablation)["backbone"] and "MAE decoder" in m.describe(ablation)["backbone"]
    with pytest.raises(ValueError, match="memory_slots must be >= 0"):
        Config(memory_slots=-1)


@pytest.mark.slow
def test_paper_preset_network_scores_a_224_px_image():
    from cxrscreen.engine.methods.memmc.recipe import build_model

    config = registry()["memmc"].config("paper")
    net = build_model(config).eval()
    assert sum(p.numel() for p in net.blocks[0].attn.parameters() if p.dim() == 3) == 2 * 40 * 768  # m_k, m_v
    scorer = MemMCScorer(net, draw_test_masks(config, net.num_patches))
    with torch.no_grad():
        score, heatmap = scorer(torch.zeros(1, 1, 224, 224).uniform_(-1, 1))
    assert heatmap.shape == (1, 224, 224) and torch.isfinite(score).all()
