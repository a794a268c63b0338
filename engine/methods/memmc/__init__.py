"""MemMC-MAE (Tian, Pang, Liu, Wang, Chen, Liu, Singh, Verjans, Wang, Carneiro, "Unsupervised
Anomaly Detection in Medical Images with a Memory-augmented Multi-level Cross-attentional Masked
Autoencoder", MLMI 2023, arXiv:2203.11725): settings, presets and command-line options
(torch-free). The recipe is in ``recipe.py``, the networks in ``models.memmc_mae``.

The method (one-class: trained on known normals only; no public code):
1. A masked autoencoder whose encoder sees the visible 25 % of the patches; every encoder block
   attends to learnable memory slots besides the tokens (Eq. 1), the encoder has U-Net-like long
   skips, and every decoder block cross-attends to every encoder block's output, the levels fused
   by sigmoid gates (Eq. 2–3). The paper's equations are those of the Meshed-Memory Transformer
   (github.com/aimagelab/meshed-memory-transformer), whose code fills what the paper leaves out
   (``models.memmc_mae`` cites the files).
2. Training: MSE on the pixels of the masked patches; AdamW, weight decay 0.05, batch 256,
   lr 1.5e-3, 5 warm-up epochs, 2000 epochs, random resized crops (no flip).
3. Inference: 10 random masks; per-patch MS-SSIM error averaged over the masks that hid the
   patch is the anomaly map; the image score is its mean.

Choices where the paper gives no number (each also in the presets' deviations):
- Schedule: MAE's (github.com/facebookresearch/mae ``util/lr_sched.py``): per-step linear
  warm-up, then half-cycle cosine to 0; AdamW betas (0.9, 0.95); no weight decay on biases and
  norms (the memory slots, like every weight matrix, are decayed). ``--lr`` is the rate used;
  the presets scale the paper's 1.5e-3 at batch 256 linearly with the batch (MAE's rule,
  lr = 1.5e-3 × batch / 256): 3.75e-4 at the small preset's batch of 64.
- Random resized crops of area 0.5–1 and aspect 3/4–4/3 (AMAE's, after Xiao et al.'s chest X-ray
  MAE; MAE's ImageNet range 0.2–1 zooms further than a radiograph at test time ever is), no flip.
- Memory slots: m = 40 in the paper preset (M2's value), 20 in the small one; the long-skip
  pattern and the decoder's shape are stated in ``models.memmc_mae``.
- Test masks: 10 independent random masks (MAE's ``random_masking``), drawn once from the run's
  seed and stored in the detector; a draw that leaves a patch visible in all 10 is drawn again
  (at 75 % masking that happens with probability ≈ P · 0.25^10).
- The reconstruction compared with the input is the input on the visible patches and the
  prediction on the masked ones; MS-SSIM per pixel (``models.ssim``) with as many of the 5
  scales as the image allows (3 at 64 px), averaged within each patch.
- Initialisation: random (MAE's). Never from an MAE that has seen unlabeled images: the method is
  one-class, and this engine's only pre-trained MAEs (AMAE's, WSCXR's) were trained on
  normal ∪ unlabeled.
- 10 % of the known normals are held out for calibration and never trained on.
- Grayscale input in [-1, 1] (no ImageNet normalisation, no 3-channel replication).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from cxrscreen.engine.methods.base import (
    LossSeries, Method, Phase, Preset, Problem, Role, preprocess_from, register, setting, settings_from_dict,
    settings_to_dict, settings_values, recipe_hooks, robust_preset,
)
from cxrscreen.engine.methods.amae import check_mae_geometry
from cxrscreen.engine.preprocess import PreprocessSpec

NAME = "memmc"
Architecture = Literal["small", "paper", "tiny"]
DeviceChoice = Literal["auto", "cpu", "cuda"]
ARCHITECTURE_NAMES: tuple[str, ...] = get_args(Architecture)
SCORE_TYPES: tuple[str, ...] = ("ms-ssim",)
PAPER_LR, PAPER_BATCH = 1.5e-3, 256

# network sizes of each architecture (the ViT-B/16 MAE's for the paper)
ARCHITECTURES: dict[str, dict[str, int]] = {
    "small": dict(size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3, decoder_embed_dim=128,
                  decoder_depth=2, decoder_num_heads=4, memory_slots=20),
    "paper": dict(size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=512,
                  decoder_depth=8, decoder_num_heads=16, memory_slots=40),
    "tiny": dict(size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32,
                 decoder_depth=1, decoder_num_heads=2, memory_slots=4),
}
DEFAULT_PREPROCESS = PreprocessSpec(size=ARCHITECTURES["small"]["size"])


def scaled_lr(batch_size: int) -> float:
    """The paper's learning rate at another batch: 1.5e-3 × batch / 256 (MAE's linear scaling rule)."""
    return PAPER_LR * batch_size / PAPER_BATCH


@dataclass(frozen=True)
class Config:
    """MemMC-MAE training settings; the defaults are the ``small`` architecture.

    Attributes:
        architecture: the network sizes' name ("small", "paper" or "tiny"; a label).
        patch_size, embed_dim, depth, num_heads: the ViT encoder.
        decoder_embed_dim, decoder_depth, decoder_num_heads: the decoder.
        memory_slots: m per encoder block (0: none, the ablation's plain MAE).
        long_skips, multi_level: the encoder's long skips; the multi-level cross-attention decoder.
        mask_ratio: fraction of patches hidden in training and in every test mask.
        epochs, lr, warmup_epochs, batch_size, weight_decay, betas: AdamW and its schedule.
        crop_scale: random-resized-crop area range.
        test_masks: T, the random masks of the detector.
        seed: seeds the initialisation, the batch order, crops, masks and the test masks.
        preprocess: the shared preprocessing (its size is the network's image size).
        device, checkpoint_every_s: run settings.
    """

    architecture: Architecture = setting("small", flag="--architecture", choices=ARCHITECTURE_NAMES,
                                         help="network sizes: small (ViT 192-d x 6 at 64 px, for 2 CPU cores), "
                                              "paper (ViT-B/16 at 224 px, for a GPU) or tiny (tests only)")
    patch_size: int = 8
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    decoder_embed_dim: int = 128
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    memory_slots: int = setting(20, flag="--memory-slots", minimum=0, option_default=None,
                                help="learnable memory slots per encoder block (0: none; default: the "
                                     "architecture's)")
    long_skips: bool = setting(True, flag="--long-skips", help="U-Net-like long skips between encoder blocks")
    multi_level: bool = setting(True, flag="--multi-level",
                                help="multi-level cross-attention decoder (--no-multi-level: MAE's decoder)")
    mask_ratio: float = 0.75
    epochs: int = setting(300, common=True, flag="--epochs")
    lr: float = setting(PAPER_LR * 64 / PAPER_BATCH, common=True, flag="--lr")
    warmup_epochs: int = setting(5, flag="--warmup-epochs", minimum=0, help="linear warm-up epochs before the cosine "
                                                                             "decay")
    batch_size: int = setting(64, common=True, flag="--batch-size")
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    crop_scale: tuple[float, float] = (0.5, 1.0)
    test_masks: int = setting(10, flag="--test-masks", minimum=1,
                              help="random masks per image at test time (drawn once from the seed, stored)")
    seed: int = setting(0, common=True, flag="--seed")
    preprocess: PreprocessSpec = field(default_factory=lambda: DEFAULT_PREPROCESS)
    device: DeviceChoice = setting("auto", common=True, flag="--device", kind="run")
    checkpoint_every_s: float = setting(60.0, common=True, flag="--checkpoint-every", kind="run")

    def __post_init__(self) -> None:
        for name, value, allowed in (("architecture", self.architecture, ARCHITECTURE_NAMES),
                                     ("device", self.device, get_args(DeviceChoice))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        for name in ("patch_size", "embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth",
                     "decoder_num_heads", "epochs", "test_masks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("memory_slots", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        patches, keep = check_mae_geometry(self, architecture=self.architecture)
        if self.preprocess.size < 11:
            raise ValueError(f"the input size {self.preprocess.size} is smaller than MS-SSIM's 11-px window")
        if self.test_masks * (patches - keep) < patches:
            raise ValueError(f"test_masks {self.test_masks} hiding {patches - keep} of {patches} patches each cannot "
                             "hide every patch; use more masks")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "crop_scale", tuple(float(c) for c in self.crop_scale))

    def to_dict(self) -> dict[str, Any]:
        return settings_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        return settings_from_dict(cls, d, "MemMC-MAE")

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`models.memmc_mae.MemMCMAE`."""
        return dict(img_size=self.preprocess.size, patch_size=self.patch_size, in_chans=1, embed_dim=self.embed_dim,
                    depth=self.depth, num_heads=self.num_heads, decoder_embed_dim=self.decoder_embed_dim,
                    decoder_depth=self.decoder_depth, decoder_num_heads=self.decoder_num_heads,
                    memory_slots=self.memory_slots, long_skips=self.long_skips, multi_level=self.multi_level)


def backbone_name(config: Config) -> str:
    """The detector card's name of the network ("MemMC-MAE ViT-B/16 m40 @224", ablations named)."""
    vit_b = (config.embed_dim, config.depth, config.num_heads) == (768, 12, 12)
    body = "ViT-B" if vit_b else f"ViT-{config.embed_dim}x{config.depth}"
    parts = [f"m{config.memory_slots}" if config.memory_slots else "no memory"]
    if not config.long_skips:
        parts.append("no skips")
    if not config.multi_level:
        parts.append("MAE decoder")
    return f"MemMC-MAE {body}/{config.patch_size} {', '.join(parts)} @{config.preprocess.size}"


def describe(config: Config) -> dict[str, str]:
    return {"backbone": backbone_name(config), "score_type": SCORE_TYPES[0]}


_OWN = ("memory_slots", "long_skips", "multi_level", "warmup_epochs", "test_masks")


def make_config(values: dict[str, Any]) -> Config:
    """Settings from option values (by option name; absent: the architecture's / method's default)."""
    arch = values.get("architecture") or "small"
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURE_NAMES}, got {arch!r}")
    sizes = dict(ARCHITECTURES[arch])
    size = sizes.pop("size")
    own = {k: values[k] for k in _OWN if values.get(k) is not None}
    return Config(**{"architecture": arch, **sizes, **settings_values(values), **own,
                     "preprocess": preprocess_from(PreprocessSpec(size=size), values)})


def check(config: Config, counts: dict[str, int]) -> list[Problem]:
    """Settings the data cannot work with."""
    problems = []
    n = counts.get("normal_train", counts.get("normal", 0))
    if n and config.batch_size > n:
        problems.append(Problem("--batch-size", f"a batch of {config.batch_size} is larger than the {n} training "
                                                f"normals: every step uses all of them", level="warning"))
    return problems


_COMMON_DEVIATIONS = (
    "10 % of the known normals are held out for calibration and never trained on",
    "grayscale input in [-1, 1] (no ImageNet normalisation, no 3-channel replication)",
    "no public code: the memory attention, the gates and the sum divided by the square root of L follow the "
    "Meshed-Memory Transformer's code; the U-Net-like long skips pair block D-1-i with the input of block i (the "
    "paper gives no pattern)",
    "MAE's schedule where the paper gives none: half-cycle cosine after the warm-up, AdamW betas (0.9, 0.95), no "
    "decay on biases and norms",
    "random resized crops of area 0.5-1 (the paper gives no range)",
    "per-pixel MS-SSIM averaged within each patch, on the input with the masked patches replaced by their "
    "reconstruction",
)
_SMALL_VALUES: dict[str, Any] = {
    "architecture": "small", "size": 64, "epochs": 300, "batch_size": 64, "lr": scaled_lr(64), "warmup_epochs": 5,
    "memory_slots": 20, "long_skips": True, "multi_level": True, "test_masks": 10}
_SMALL_DEVIATIONS = (*_COMMON_DEVIATIONS, "a small ViT (192-d x 6, 8-px patches) at 64 px with a 128-d x 2 decoder "
                                          "and 20 memory slots (the paper: ViT-B)",
                     "300 epochs at batch 64 with the learning rate scaled to the batch (the paper: 2000 at 256)",
                     "MS-SSIM on 3 scales at 64 px (5 need 176 px or more)")
PRESETS: tuple[Preset, ...] = (
    robust_preset("The default: the small preset with each image cropped to its exposed field and "
                  "histogram-equalised, in training and scoring alike. Against the small preset (three seeds each; "
                  "bench/RESULTS.md): dev_test AUROC 0.888 ± 0.048 (0.750 ± 0.012); over 10 simulated acquisition "
                  "shifts mean AUROC 0.830 ± 0.014 (seed 0 of small: 0.720). A tighter or off-centre field still "
                  "moves it, and its 95 % promise fell short on new normals (83-88 %): set a site calibration. "
                  "Takes as long as the small preset.",
                  _SMALL_VALUES, _SMALL_DEVIATIONS),
    Preset("small", "Small (2 CPU cores)",
           "MemMC-MAE with a small ViT (192-d x 6 blocks, 8-px patches) at 64 px, decoder 128-d x 2, 20 memory slots "
           "per block, 300 epochs at batch 64 (lr 1.5e-3 x 64 / 256), 10 test masks.",
           _SMALL_VALUES, deviations=_SMALL_DEVIATIONS),
    Preset("paper", "Paper protocol (ViT-B, for a GPU)",
           "The paper's training: ViT-B/16 at 224 px, batch 256, AdamW lr 1.5e-3, weight decay 0.05, 5 warm-up "
           "epochs, 2000 epochs, 75 % masking, 10 test masks. Days on a GPU; not possible on a CPU.",
           {"architecture": "paper", "size": 224, "epochs": 2000, "batch_size": PAPER_BATCH, "lr": PAPER_LR,
            "warmup_epochs": 5, "memory_slots": 40, "long_skips": True, "multi_level": True, "test_masks": 10},
           deviations=(*_COMMON_DEVIATIONS, "m = 40 memory slots per block (M2's; the paper gives no number)",
                       "MAE ViT-B decoder sizes (512-d x 8 blocks, 16 heads; the paper gives none)")),
    Preset("tiny", "Tiny (tests only)",
           "Tests only (and smoke checks): a 32-d ViT at 32 px, 4 memory slots, 2 epochs (seconds on a CPU; detects "
           "nothing real).",
           {"architecture": "tiny", "size": 32, "epochs": 2, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 1},
           deviations=("tests only: not the paper's architecture, size or schedule",), tests_only=True),
)



_hooks = recipe_hooks(__name__)  # the torch code, imported when first asked for


@register
def _declare() -> Method:
    return Method(
        name=NAME, title="MemMC-MAE (memory-augmented masked autoencoder, normals only)",
        paper="Tian, Pang, Liu, Wang, Chen, Liu, Singh, Verjans, Wang, Carneiro, Unsupervised anomaly detection in "
              "medical images with a memory-augmented multi-level cross-attentional masked autoencoder, MLMI 2023 "
              "(arXiv:2203.11725)",
        summary="A masked autoencoder trained on known normals only, whose encoder attends to learnt memories of "
                "normal patterns and whose decoder attends to every encoder level; anomalies are reconstructed badly "
                "(MS-SSIM error under 10 random masks).",
        roles=(Role("normal", "required", 3, "known-normal radiographs; 10 % are held out for calibration"),
               Role("unlabeled", "unused", 0, "not used: MemMC-MAE learns from known normals only"),
               Role("abnormal", "unused", 0, "not used by MemMC-MAE")),
        settings=Config, presets=PRESETS,
        phases=(Phase("load", "Reading images"), Phase("train", "Training the masked autoencoder"),
                Phase("calibrate", "Calibrating on held-out normals")),
        loss_series=(LossSeries("loss", "masked-patch MSE", phase="train"),),
        default_preprocess=DEFAULT_PREPROCESS, make_config=make_config, describe=describe,
        score_types=SCORE_TYPES, hooks=_hooks, check=check, order=30,
        # Tian et al., MLMI 2023, sec. 3 (implementation details), as issue 17 reads them: ViT-B encoder, 75 %
        # masking, AdamW weight decay 0.05, batch 256, lr 1.5e-3, 5 warm-up epochs, 2000 epochs, 10 test masks
        paper_stated={"embed_dim": 768, "depth": 12, "num_heads": 12, "mask_ratio": 0.75, "weight_decay": 0.05,
                      "batch_size": 256, "lr": 1.5e-3, "warmup_epochs": 5, "epochs": 2000, "test_masks": 10},
        # the per-pixel MS-SSIM map is ill-conditioned in float32 where a coarse scale's contrast-structure term
        # is near 0 (local moments are differences of filtered products, then raised to a fractional power):
        # a trained small-preset detector (300 epochs, seed 0) differed by 5.0e-4 at one border pixel of one
        # held-out normal between onnxruntime and PyTorch (its score by 8e-6, within 1e-4); a map difference of
        # 1e-3 is a tenth of a step of the 256-level colour scale
        heatmap_tolerance=1e-3,
    )


METHOD: Method = _declare  # the registered declaration


def load_scorer(run_dir: Path, score_type: str | None = None) -> Any:
    """See :func:`engine.methods.memmc.recipe.load_scorer` (imports torch)."""
    return _hooks().load_scorer(run_dir, score_type)
