"""AMAE (Bozorgtabar, Mahapatra, Thiran, "AMAE: Adaptation of Pre-Trained Masked Autoencoder for
Dual-Distribution Anomaly Detection in Chest X-Rays", MICCAI 2023, arXiv:2307.12721): settings,
presets and command-line options (torch-free); the recipe is in ``recipe.py``, the synthetic
anomalies in ``anatpaste.py``, the networks in ``models.mae`` and ``models.amae``.

The method, as the paper describes it (its code is not public):
0. A masked autoencoder (MAE, He et al. CVPR 2022) with a ViT-S/16 encoder, pre-trained on
   chest X-rays (the paper starts from the MAE of Xiao et al., WACV 2023, 0.3 M radiographs).
1. Stage 1: AnatPaste synthetic anomalies (Sato et al. 2023) are made from the known normals
   only; a 3-layer MLP on the frozen encoder's mean-pooled tokens learns normal vs synthetic.
2. Pseudo-labels: stage 1 scores the unlabeled images; for each predicted class the threshold
   is the 50th percentile of the prediction confidence; images at or above it become
   pseudo-normal or pseudo-abnormal, the rest are left out.
3. Stage 2: module A (an MAE re-initialised from the pre-trained one) is trained on normal ∪
   pseudo-normal, module B on pseudo-abnormal, with the MAE loss (pixel MSE on masked patches),
   L = 2 random masks per image, 25 % of the patches visible; AdamW with warm-up and cosine decay.
4. Test: L = 4 masks; each module's reconstructions are averaged per pixel over the masks that
   hid it (μ_A, μ_B); heatmap = |μ_A − μ_B|, score = its mean.

Where the paper gives no number, the choice here follows the official MAE recipe
(github.com/facebookresearch/mae): AdamW betas (0.9, 0.95), weight decay 0.05 on weights only
(not biases, norms, class or mask tokens), per-iteration linear warm-up then half-cycle cosine to
0, learning rate = base 1.5e-4 × batch / 256, pixel loss without per-patch normalisation
(``norm_pix_loss`` off: the heatmap compares reconstructions in pixel space).

Deviations and choices (each also in README "Methods", AMAE):
- No hub weights exist on these machines: the engine pre-trains the MAE itself, self-supervised,
  on the run's own known-normal (training part) + unlabeled images (no labels involved), with
  the MAE loss at mask ratio 0.75 and random-resized-crop augmentation (area 0.5–1, aspect
  3/4–4/3, as Xiao et al.; no horizontal flip: chest anatomy is lateralised). A local
  checkpoint (``--mae-checkpoint``: timm ViT or official MAE format, e.g. an MAE pre-trained on
  large chest X-ray collections) replaces or precedes that pre-training; RGB weights are
  adapted to one channel and position embeddings resampled to the grid (``models.mae``).
- Grayscale input (in_chans = 1) in [-1, 1], the shared preprocessing (no ImageNet
  normalisation, no 3-channel replication).
- 10 % of the known normals are held out for calibration and never trained on.
- Stage-1 head: hidden width 512 (paper preset) / 256 (small), ReLU, one logit trained with
  binary cross-entropy on balanced batches (B normals + their B AnatPaste copies, a fresh
  paste every epoch); AdamW lr 1e-3, no weight decay (chosen: the paper gives no numbers).
  Its input is standardised with the known normals' pooled-feature mean and standard
  deviation (fixed buffers in the head: a linear map the first layer could absorb, added
  because pooled tokens vary little and a plain MLP learned them slowly in our checks).
  The encoder sees whole images (no masking) in stage 1 and for the stage-1 score.
- Pseudo-labels: predicted class = abnormal when P(synthetic) >= 0.5; confidence = P of the
  predicted class. When a predicted class holds fewer than 2 images (a stage-1 classifier on
  real radiographs may call nearly all of them normal), the classes are instead the halves
  below / above the median P, and the same per-class percentile selects within them.
- Stage 2: one epoch = one pass over module A's data (normal ∪ pseudo-normal); module B takes
  the same number of steps, cycling through its smaller set, so both modules move as far from
  the shared initialisation. The L training masks of an image are independent random masks.
- Test masks: L = 4 masks made from one random permutation of the patches, visible blocks
  cyclic in it (at 25 % visible: a partition, every patch hidden by exactly 3 masks), drawn
  once from the run's seed and stored in the detector.
- Stage-1 detector: the score is the logit (not the probability, which saturates in float32 and
  ties); its heatmap is the head applied to every patch token, bilinearly upsampled.
- Architectures (``--architecture``): ``paper`` (ViT-S/16 at 224 px, MAE decoder 512-d × 8 blocks,
  pre-training 400 epochs with 20 warm-up at lr 1.5e-4 × 64 / 256, stage 1 50 epochs, stage 2 as
  the paper states: AdamW lr 2.5e-4, batch 16, 20 warm-up epochs, cosine to 150 epochs; for a
  GPU) and ``small`` (ViT 192-d × 6 blocks, 3 heads, 8-px patches
  at 64 px, decoder 128-d × 2 blocks; pre-training 100 epochs at lr 1e-3, stage 1 40 epochs,
  stage 2 30 epochs at lr 5e-4: the shorter schedule takes higher rates; trains on 2 shared
  CPU cores in well under an hour on the development protocol). ``tiny`` is for tests only.
  The method presets (``--preset``: robust, robust-augment, quick, paper, small, tiny) pick an
  architecture, module B, the preprocessing and stage 2's augmentation; each lists its deviations
  from the paper (none is as published: the MAE pre-training differs). Measured costs in
  bench/RESULTS.md.
- Stage-2 augmentation (``--augment acquisition``; the robust-augment preset): not in the paper.
  Both modules train on images through DDAD's acquisition augmentation (``engine.augment``), so
  a tighter or off-centre framing changes their reconstructions alike. It ranks framing-shifted
  images better and costs dev_test accuracy (bench/RESULTS.md), so it is not the default.
- CPU threads are a run-time choice (`cxrscreen train --threads N`, not stored in the run): on a
  CPU shared with other jobs one thread was 4–5 times faster than two in our measurements.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from cxrscreen.engine.methods.base import (
    LossSeries, Method, Phase, Preset as MethodPreset, Role, preprocess_from, register, setting, settings_from_dict,
    settings_to_dict, settings_values, recipe_hooks, robust_preset,
)
from cxrscreen.engine.preprocess import PreprocessSpec

NAME = "amae"
Preset = Literal["small", "paper", "tiny"]
ScoreType = Literal["inter", "stage1"]  # the scorers models.amae provides (tested)
DeviceChoice = Literal["auto", "cpu", "cuda"]
ModuleB = Literal["pseudo-abnormal", "normal+pseudo-abnormal"]
Augment = Literal["none", "acquisition"]
PRESETS: tuple[str, ...] = get_args(Preset)
SCORE_TYPES: tuple[str, ...] = get_args(ScoreType)
PHASES: tuple[str, ...] = ("pretrain", "stage1", "pseudo-label", "stage2")  # progress phases, in order

CHECKPOINT = "checkpoint.pt"
FINAL_MODEL = "model.pt"

# settings that differ between the presets; every other Config default is shared
PRESET_SETTINGS: dict[str, dict[str, Any]] = {
    "small": dict(
        size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3,
        decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
        pretrain_epochs=100, pretrain_lr=1e-3, pretrain_warmup_epochs=10,
        stage1_epochs=40, head_hidden=256,
        epochs=30, lr=5e-4, warmup_epochs=3, batch_size=64,
    ),
    "paper": dict(
        size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6,
        decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
        pretrain_epochs=400, pretrain_lr=1.5e-4 * 64 / 256, pretrain_warmup_epochs=20,
        stage1_epochs=50, head_hidden=512,
        epochs=150, lr=2.5e-4, warmup_epochs=20, batch_size=16,  # the paper's stage 2
    ),
    # for tests and smoke checks only (seconds on a CPU; detects nothing real)
    "tiny": dict(
        size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
        pretrain_epochs=2, pretrain_lr=1e-3, pretrain_warmup_epochs=1,
        stage1_epochs=2, head_hidden=32,
        epochs=2, lr=1e-3, warmup_epochs=1, batch_size=16,
    ),
}
DEFAULT_PREPROCESS = PreprocessSpec(size=PRESET_SETTINGS["small"]["size"])


def _every_patch_hidden(patches: int, keep: int, n_masks: int) -> bool:
    """Whether the cyclic test masks of ``models.mae.partition_masks`` hide every patch at least once."""
    return all(any((i - m * keep) % patches >= keep for m in range(n_masks)) for i in range(patches))



def check_mae_geometry(config: Any, architecture: str) -> tuple[int, int]:
    """Checks shared by the MAE-based methods' settings (AMAE, MemMC-MAE): crop scale, widths
    divisible by heads, a patch grid that fits ``--size``, a mask ratio that leaves some patches
    visible and hides others.

    Args:
        config: settings with ``crop_scale``, ``embed_dim``, ``num_heads``, ``decoder_embed_dim``,
            ``decoder_num_heads``, ``patch_size``, ``mask_ratio`` and ``preprocess.size``.
        architecture: the architecture's name, for the message that names ``--architecture``.

    Returns:
        (patches per image, patches visible per mask).

    Raises:
        ValueError: naming the setting to change.
    """
    lo, hi = config.crop_scale
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {config.crop_scale}")
    for name, dim, heads in (("encoder", config.embed_dim, config.num_heads),
                             ("decoder", config.decoder_embed_dim, config.decoder_num_heads)):
        if dim % heads or dim % 4:
            raise ValueError(f"the {name} width {dim} must be divisible by its {heads} heads and by 4")
    size, patch = config.preprocess.size, config.patch_size
    if size % patch:
        raise ValueError(f"--size {size} must be a multiple of the patch size {patch} (of --architecture "
                         f"{architecture}): use {size - size % patch or patch}")
    patches = (size // patch) ** 2
    keep = int(patches * (1 - config.mask_ratio))
    if not 1 <= keep < patches:
        raise ValueError(f"mask_ratio {config.mask_ratio} keeps {keep} of {patches} patches visible; need 1 .. "
                         f"{patches - 1}")
    return patches, keep

@dataclass(frozen=True)
class Config:
    """AMAE training settings; the defaults are the ``small`` preset (see :func:`preset_config`).

    Attributes:
        preset: the preset these settings started from ("small" or "paper"; a label).
        patch_size, embed_dim, depth, num_heads: the MAE's ViT encoder.
        decoder_embed_dim, decoder_depth, decoder_num_heads: its decoder.
        mask_ratio: fraction of patches hidden (0.75: 25 % visible) in every phase.
        mae_checkpoint: a local timm / official-MAE checkpoint to start from, or None.
        pretrain_epochs, pretrain_lr, pretrain_warmup_epochs: self-supervised MAE pre-training
            on normal ∪ unlabeled (0 epochs: use the checkpoint as it is).
        crop_scale: random-resized-crop area range of the pre-training augmentation.
        stage1_epochs, stage1_lr, head_hidden: the stage-1 MLP head.
        pseudo_percentile: per-class confidence percentile of the pseudo-label thresholds.
        module_b: what stage 2's module B models: "pseudo-abnormal" (the paper: the anomalous
            distribution) or "normal+pseudo-abnormal" (our variant, DDAD's logic: B also sees the
            known normals, so A and B agree on normal anatomy and disagree only on anomalous
            content; on Kermany pneumonia, hazy lungs are easier to reconstruct than sharp normal
            ribs, and a B that never saw a normal chest disagrees most with A on *normal* images).
        epochs, lr, warmup_epochs: stage 2 (the shared --epochs / --lr options).
        augment: stage 2's train-time augmentation: "none" (the paper) or "acquisition" (zoom,
            shift, rotation, blur, noise and, unless equalised, exposure: ``engine.augment``, as
            DDAD's), so both modules see other framings and agree on them.
        batch_size: images per step in every phase (stage 1: normals, plus as many synthetic).
        weight_decay, betas: AdamW (pre-training and stage 2).
        train_masks, test_masks: masks per image in stage-2 training (2) and at test time (4).
        score_type: the detector exported by default: "inter" (stage 2) or "stage1".
        seed: seeds every initialisation, shuffle, mask and AnatPaste draw.
        preprocess: the shared preprocessing (its size is the MAE's image size).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        checkpoint_every_s: write a checkpoint at an epoch end when this many seconds passed
            since the last one (and always when stopped).
    """

    preset: Preset = setting("small", flag="--architecture", option_name="architecture", aliases=("--amae-preset",),
                             choices=PRESETS, help="network sizes and their schedule: small (2 CPU cores, under an hour), "
                                                   "paper (ViT-S/16 at 224 px, for a GPU) or tiny (tests only)")
    patch_size: int = 8
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    decoder_embed_dim: int = 128
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    mask_ratio: float = 0.75
    mae_checkpoint: str | None = setting(None, flag="--mae-checkpoint", type="path",
                                         path_kind="file", help="start from a local MAE (official format) or timm ViT checkpoint of the "
                                              "architecture (then no pre-training unless --pretrain-epochs is given)")
    pretrain_epochs: int = setting(100, flag="--pretrain-epochs", minimum=0, option_default=None,
                                   help="MAE pre-training epochs on normal + unlabeled images (default: the "
                                        "architecture's; 0 with --mae-checkpoint)")
    pretrain_lr: float = 1e-3
    pretrain_warmup_epochs: int = 10
    crop_scale: tuple[float, float] = (0.5, 1.0)
    stage1_epochs: int = setting(40, flag="--stage1-epochs", minimum=1, option_default=None,
                                 help="stage-1 head epochs (default: the architecture's)")
    stage1_lr: float = 1e-3
    head_hidden: int = 256
    pseudo_percentile: float = 50.0
    module_b: ModuleB = setting("pseudo-abnormal", flag="--module-b", aliases=("--amae-module-b",),
                                choices=get_args(ModuleB), option_default=None,
                                help="stage-2 module B's data: the pseudo-abnormal images (the paper's) or the known "
                                     "normals plus them (our variant; the quick preset's)")
    epochs: int = setting(30, common=True, flag="--epochs")
    augment: Augment = setting("none", flag="--augment", choices=get_args(Augment), option_default=None,
                               help="stage-2 train-time acquisition augmentation (none is the paper's; default: the "
                                    "preset's)")
    lr: float = setting(5e-4, common=True, flag="--lr")
    warmup_epochs: int = setting(3, flag="--warmup-epochs", minimum=0, option_default=None,
                                 help="stage-2 warm-up epochs before the cosine decay (default: the architecture's)")
    batch_size: int = setting(64, common=True, flag="--batch-size")
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    train_masks: int = 2
    test_masks: int = 4
    score_type: ScoreType = setting("inter", flag="--score", aliases=("--amae-score",), choices=SCORE_TYPES,
                                    help="detector exported by default: stage-2 inter-discrepancy or the stage-1 "
                                         "classifier")
    seed: int = setting(0, common=True, flag="--seed")
    preprocess: PreprocessSpec = field(default_factory=lambda: DEFAULT_PREPROCESS)
    device: DeviceChoice = setting("auto", common=True, flag="--device", kind="run")
    checkpoint_every_s: float = setting(60.0, common=True, flag="--checkpoint-every", kind="run")

    def __post_init__(self) -> None:
        for name, value, allowed in (("preset", self.preset, PRESETS), ("score_type", self.score_type, SCORE_TYPES),
                                     ("module_b", self.module_b, get_args(ModuleB)),
                                     ("augment", self.augment, get_args(Augment)),
                                     ("device", self.device, get_args(DeviceChoice))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        for name in ("patch_size", "embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth",
                     "decoder_num_heads", "head_hidden", "epochs", "train_masks", "test_masks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pretrain_epochs", "stage1_epochs", "pretrain_warmup_epochs", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.stage1_epochs < 1:
            raise ValueError(f"stage1_epochs must be >= 1 (stage 2 needs the stage-1 pseudo-labels), got {self.stage1_epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        for name in ("pretrain_lr", "stage1_lr", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not 0.0 <= self.pseudo_percentile <= 100.0:
            raise ValueError(f"pseudo_percentile must be in [0, 100], got {self.pseudo_percentile}")
        patches, keep = check_mae_geometry(self, architecture=self.preset)
        if not _every_patch_hidden(patches, keep, self.test_masks):
            raise ValueError(f"{self.test_masks} test masks with {keep} of {patches} patches visible leave some patch "
                             "visible in every mask (never reconstructed); use more masks or a higher mask ratio")
        if self.mae_checkpoint is not None:
            object.__setattr__(self, "mae_checkpoint", str(self.mae_checkpoint))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "crop_scale", tuple(float(c) for c in self.crop_scale))

    def to_dict(self) -> dict[str, Any]:
        return settings_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        return settings_from_dict(cls, d, "AMAE")

    def mae_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`models.mae.MaskedAutoencoder`."""
        return dict(img_size=self.preprocess.size, patch_size=self.patch_size, in_chans=1, embed_dim=self.embed_dim,
                    depth=self.depth, num_heads=self.num_heads, decoder_embed_dim=self.decoder_embed_dim,
                    decoder_depth=self.decoder_depth, decoder_num_heads=self.decoder_num_heads)


def preset_config(preset: Preset, **overrides: Any) -> Config:
    """The settings of ``preset`` ("small" or "paper") with ``overrides``.

    ``preprocess`` defaults to the preset's size; ``size=`` is accepted as a shortcut for it.
    """
    if preset not in PRESET_SETTINGS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    values = dict(PRESET_SETTINGS[preset])
    size = overrides.pop("size", values.pop("size"))
    values.update(overrides)
    values.setdefault("preprocess", PreprocessSpec(size=size))
    return Config(preset=preset, **values)


def backbone_name(config: Config) -> str:
    """The detector card's name of the MAE ("MAE ViT-S/16", or width x depth / patch)."""
    vit_s = (config.embed_dim, config.depth, config.num_heads) == (384, 12, 6)
    body = "ViT-S" if vit_s else f"ViT-{config.embed_dim}x{config.depth}"
    return f"MAE {body}/{config.patch_size} @{config.preprocess.size}"


def describe(config: Config) -> dict[str, str]:
    """What the detector card and metadata call this detector."""
    return {"backbone": backbone_name(config), "score_type": config.score_type}


def make_config(values: dict[str, Any]) -> Config:
    """Settings from option values (by option name; absent: the architecture's / method's default)."""
    arch = values.get("architecture") or "small"
    if arch not in PRESET_SETTINGS:
        raise ValueError(f"architecture must be one of {PRESETS}, got {arch!r}")
    overrides: dict[str, Any] = settings_values(values)
    if values.get("mae_checkpoint") is not None:
        overrides["mae_checkpoint"] = str(Path(values["mae_checkpoint"]).resolve())
        overrides["pretrain_epochs"] = 0  # a checkpoint replaces pre-training unless asked for
    for name in ("pretrain_epochs", "stage1_epochs", "warmup_epochs", "module_b", "score_type", "augment"):
        if values.get(name) is not None:
            overrides[name] = values[name]
    preprocess = preprocess_from(PreprocessSpec(size=PRESET_SETTINGS[arch]["size"]), values)
    return preset_config(arch, preprocess=preprocess, **overrides)


_COMMON_DEVIATIONS = (
    "the MAE is pre-trained here on the run's own normal + unlabeled images (no chest X-ray MAE of Xiao et al. is "
    "available offline), unless --mae-checkpoint gives one",
    "grayscale input in [-1, 1] (no ImageNet normalisation, no 3-channel replication)",
    "10 % of the known normals are held out for calibration and never trained on",
    "stage-1 head: hidden width, optimiser (AdamW lr 1e-3) and feature standardisation chosen here (the paper "
    "gives no numbers)",
)
_QUICK_VALUES: dict[str, Any] = {"architecture": "small", "module_b": "normal+pseudo-abnormal"}
_QUICK_DEVIATIONS = (*_COMMON_DEVIATIONS, "a small ViT (192-d x 6 blocks, 8-px patches) at 64 px",
                     "stage 2: 30 epochs, lr 5e-4, batch 64, 3 warm-up epochs",
                     "module B learns the known normals and the pseudo-abnormal images (the paper: pseudo-abnormal "
                     "only)")
PRESETS_DECLARED: tuple[MethodPreset, ...] = (
    robust_preset("The default: the quick preset with each image cropped to its exposed field and "
                  "histogram-equalised, for pre-training, both stages and scoring alike, so exposure, contrast "
                  "and borders matter less (a tighter or off-centre framing still does). Against the quick preset "
                  "(seed 0, AR 0.6; bench/RESULTS.md): dev_test AUROC 0.966 (0.940; three seeds of robust: "
                  "0.964 ± 0.002); over 10 simulated acquisition "
                  "shifts mean AUROC 0.912 (0.878) and specificity at the promised 95 % 0.710 (0.451). Takes as long "
                  "as the quick preset (about 25 minutes on 2 CPU cores).",
                  _QUICK_VALUES, _QUICK_DEVIATIONS),
    robust_preset("The robust preset with stage 2's modules trained on acquisition-augmented images (zoom, "
                  "shift, rotation, blur, noise), for sites whose framing differs from the training images'. Against "
                  "the robust preset (seeds 0-2, AR 0.6; bench/RESULTS.md): dev_test AUROC 0.948 ± 0.003 (0.964 ± "
                  "0.002); tighter and off-centre framing 0.934 and 0.869 (0.846 and 0.805); over 10 simulated "
                  "acquisition shifts mean AUROC 0.930 (0.920) and specificity at the promised 95 % 0.805 (0.711). "
                  "Costs dev_test accuracy, so not the default. Takes as long as the robust preset.",
                  {**_QUICK_VALUES, "augment": "acquisition"},
                  (*_QUICK_DEVIATIONS, "stage 2 trains on acquisition-augmented images (the paper: no augmentation)"),
                  title="Robust, also to framing", name="robust-augment"),
    MethodPreset("quick", "Quick (small MAE)",
                 "AMAE with a small ViT at 64 px (pre-training 100, stage 1 40, stage 2 30 epochs): about 25 minutes on "
                 "2 CPU cores with one thread. Module B also learns the known normals (not the paper's choice: with "
                 "this small model the paper's module B ranked normals above pneumonia).",
                 _QUICK_VALUES, deviations=_QUICK_DEVIATIONS),
    MethodPreset("paper", "Paper protocol",
                 "AMAE with ViT-S/16 at 224 px and the paper's stage 2 (AdamW lr 2.5e-4, batch 16, 20 warm-up epochs, "
                 "cosine to 150 epochs): for a GPU (days on a CPU). Not as published: the MAE is pre-trained on the "
                 "run's own images.",
                 {"architecture": "paper", "module_b": "pseudo-abnormal", "epochs": 150, "lr": 2.5e-4,
                  "batch_size": 16, "warmup_epochs": 20, "size": 224},
                 deviations=(*_COMMON_DEVIATIONS,
                             "the batch of 16 also applies to pre-training and stage 1 (one --batch-size for every "
                             "phase)")),
    MethodPreset("small", "Small MAE, paper's module B",
                 "The quick preset's small ViT with the paper's module B (pseudo-abnormal images only).",
                 {"architecture": "small", "module_b": "pseudo-abnormal"},
                 deviations=(*_COMMON_DEVIATIONS, "a small ViT (192-d x 6 blocks, 8-px patches) at 64 px",
                             "stage 2: 30 epochs, lr 5e-4, batch 64, 3 warm-up epochs")),
    MethodPreset("tiny", "Tiny (tests only)",
                 "Tests only (and smoke checks): a 32-d ViT at 32 px, 2 epochs per phase (seconds on a CPU; "
                 "detects nothing real).",
                 {"architecture": "tiny"},
                 deviations=("tests only: not the paper's architecture, size or schedule",), tests_only=True),
)



_hooks = recipe_hooks(__name__, evaluate="all_scores")  # the torch code, imported when first asked for


@register
def _declare() -> Method:
    return Method(
        name=NAME, title="AMAE (adapted masked autoencoder)",
        paper="Bozorgtabar, Mahapatra, Thiran, AMAE: Adaptation of pre-trained masked autoencoder for dual-distribution "
              "anomaly detection in chest X-rays, MICCAI 2023",
        summary="A masked autoencoder learns normal anatomy; a classifier of synthetic anomalies pseudo-labels the "
                "unlabeled images, and two autoencoders (normal / abnormal) disagree on anomalies.",
        roles=(Role("normal", "required", 3, "known-normal radiographs; 10 % are held out for calibration"),
               Role("unlabeled", "required", 2, "unlabeled radiographs of the site (pseudo-labelled by stage 1)"),
               Role("abnormal", "unused", 0, "not used by AMAE")),
        settings=Config, presets=PRESETS_DECLARED,
        phases=(Phase("load", "Reading images"), Phase("pretrain", "Pre-training the MAE"),
                Phase("stage1", "Stage 1: synthetic-anomaly classifier"),
                Phase("pseudo-label", "Pseudo-labelling the unlabeled images"),
                Phase("stage2", "Stage 2: modules A and B"), Phase("calibrate", "Calibrating on held-out normals")),
        loss_series=(LossSeries("loss", "MAE", phase="pretrain"), LossSeries("loss", "stage-1 head", phase="stage1"),
                     LossSeries("loss_a", "module A", phase="stage2"), LossSeries("loss_b", "module B", phase="stage2")),
        default_preprocess=DEFAULT_PREPROCESS, make_config=make_config, describe=describe,
        score_types=SCORE_TYPES, hooks=_hooks, order=10,
        # Bozorgtabar et al., MICCAI 2023, sec. 3 (implementation details): MAE with a ViT-S/16 encoder at
        # 224 x 224, 75 % masking, L = 2 masks per image in training and 4 at test, the 50th-percentile
        # pseudo-label threshold, module B on the pseudo-abnormal images, stage 2 AdamW lr 2.5e-4, batch 16,
        # 20 warm-up epochs and cosine decay to 150 epochs
        paper_stated={"preprocess.size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6,
                      "mask_ratio": 0.75, "train_masks": 2, "test_masks": 4, "pseudo_percentile": 50.0,
                      "module_b": "pseudo-abnormal", "lr": 2.5e-4, "batch_size": 16, "warmup_epochs": 20,
                      "epochs": 150},
    )


METHOD: Method = _declare  # the registered declaration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """AMAE's options on ``parser`` (see :func:`engine.train_cli.add_method_arguments`)."""
    from cxrscreen.engine.train_cli import add_method_arguments

    add_method_arguments(parser, METHOD)


def config_from_args(args: argparse.Namespace, preprocess: PreprocessSpec | None = None) -> Config:
    """Settings from parsed `cxrscreen train` options (``--preset`` and every option given; what is
    not given is the architecture's)."""
    from cxrscreen.engine.train_cli import config_from_namespace

    return config_from_namespace(METHOD, args)


def train(config: Config, data: Any, images: Any, run_dir: Path, progress: Any, stop: Any) -> bool:
    """See :func:`engine.methods.amae.recipe.train` (imports torch)."""
    return _hooks().train(config, data, images, run_dir, progress, stop)


def load_scorer(run_dir: Path, score_type: ScoreType | None = None) -> Any:
    """See :func:`engine.methods.amae.recipe.load_scorer` (imports torch)."""
    return _hooks().load_scorer(run_dir, score_type)
