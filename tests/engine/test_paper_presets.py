"""A preset named after a paper holds the paper's stated numbers; every other difference is a listed deviation.

The tables are the papers' own statements (not the engine's code):
- DDAD, Cai et al., MICCAI 2022 (sec. 4.1 and the official code github.com/caiyu6666/DDAD): 64 x 64
  inputs, K = 3 networks per module, AE-U backbone, Adam lr 5e-4, batch 64, 250 epochs, latent 16.
- AMAE, Bozorgtabar et al., MICCAI 2023 (sec. 3, implementation details): MAE with a ViT-S/16
  encoder at 224 x 224, 75 % masking, L = 2 masks per image in training and 4 at test time, the
  50th-percentile pseudo-label threshold, module B on the pseudo-abnormal images, stage 2 AdamW
  with lr 2.5e-4, batch 16, 20 warm-up epochs and cosine decay to 150 epochs.
"""
from __future__ import annotations

import pytest

from engine.methods import registry

PAPER_STATED = {
    "ddad": {"preprocess.size": 64, "members": 3, "backbone": "ae-u", "lr": 5e-4, "batch_size": 64, "epochs": 250,
             "latent_size": 16, "betas": (0.5, 0.999), "weight_decay": 0.0, "augment": "none",
             "preprocess.intensity": "none"},
    "amae": {"preprocess.size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6,
             "mask_ratio": 0.75, "train_masks": 2, "test_masks": 4, "pseudo_percentile": 50.0,
             "module_b": "pseudo-abnormal", "lr": 2.5e-4, "batch_size": 16, "warmup_epochs": 20, "epochs": 150},
}


def _value(config, key):
    obj = config
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", sorted(PAPER_STATED))
def test_the_paper_preset_holds_the_papers_numbers(name):
    m = registry()[name]
    config = m.config("paper")
    wrong = {k: (_value(config, k), v) for k, v in PAPER_STATED[name].items() if _value(config, k) != v}
    assert not wrong, f"{name} paper preset differs from the paper (got, paper): {wrong}"


def test_every_paper_named_preset_has_a_table_and_says_how_it_differs():
    for name, m in registry().items():
        for preset in m.presets:
            if preset.name == "paper":
                assert name in PAPER_STATED, f"{name} has a paper preset but no table of the paper's numbers here"
            if not preset.as_published:
                assert preset.deviations, f"{name}/{preset.name}: not as published, but no deviation is listed"
    # AMAE's MAE is pre-trained on the run's own images, not the paper's chest X-ray MAE: not "as published"
    amae = registry()["amae"].preset("paper")
    assert not amae.as_published and any("pre-trained" in d for d in amae.deviations)
    ddad = registry()["ddad"].preset("paper")
    assert ddad.as_published and any("held out for calibration" in d for d in ddad.deviations)
    for preset in registry()["ddad"].presets[1:]:
        assert not preset.as_published
