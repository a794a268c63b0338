"""DDAD (Cai et al., "Dual-distribution discrepancy for anomaly detection in chest X-rays",
MICCAI 2022): settings and command-line options (torch-free); the recipe is in ``recipe.py``.

Paper / official-code settings reproduced (github.com/caiyu6666/DDAD): module A = K
autoencoders trained on D_n ∪ D_u, module B = K autoencoders on D_n only, each member with its
own initialisation and shuffling; 64 x 64 inputs in [-1, 1]; Adam lr 5e-4, betas (0.5, 0.999),
no weight decay; batch 64 with the last incomplete batch dropped; 250 epochs; losses: AE mean
squared error, AE-U mean(exp(−logvar)·(x−x̂)²) + mean(logvar), MemAE MSE + 2e-4 · attention
entropy (25 slots, no shrinkage); maps and scores as in ``models.ddad``.

Deviations (each also in README "Methods"):
- 10 % of D_n is held out for calibration and not trained on (the paper trains on all of D_n).
- Preprocessing goes through the shared :func:`engine.preprocess.preprocess` on float pixels
  (no uint8 rounding after resizing, which the official PIL pipeline has: < 0.5/255 per pixel).
- The official code evaluates on the test set every 25 epochs while training; we never look at
  test data while training.
- Speed: all data resident as tensors, members trained in one loop; on CUDA the K members of a
  module are one stacked module (grouped convolutions, batched matmuls) updated by one
  optimiser step; on CPU separate members are faster (grouped kernels are slow there, measured
  in bench/RESULTS.md). Both layouts compute the same functions and gradients (tested).
  channels_last memory format and fused Adam. On a CPU with N threads, N members (of either
  module) train at a time with one thread each instead of one member with N threads, step by
  step (a free thread takes the next step of the member with most steps left, so no thread
  idles at the end of an epoch); a member's numbers do not depend on how many train beside it
  or on which thread runs a step (tested).
- ``precision="bf16"`` (opt-in) runs convolutions and matmuls under bfloat16 autocast with fp32
  weights, optimiser and losses.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from engine.preprocess import PreprocessSpec

NAME = "ddad"
Backbone = Literal["ae", "ae-u", "memae"]  # the names models.autoencoder accepts (tested)
ScoreType = Literal["rec", "intra", "inter"]  # the maps models.ddad computes (tested)
Precision = Literal["fp32", "bf16"]
Layout = Literal["auto", "stacked", "separate"]
Augment = Literal["none", "acquisition"]
DeviceChoice = Literal["auto", "cpu", "cuda"]
BACKBONES: tuple[str, ...] = get_args(Backbone)
SCORE_TYPES: tuple[str, ...] = get_args(ScoreType)

CHECKPOINT = "checkpoint.pt"
FINAL_MODEL = "model.pt"
DEFAULT_PREPROCESS = PreprocessSpec(size=64)


@dataclass(frozen=True)
class Config:
    """DDAD training settings; defaults are the paper's (AE-U backbone, K = 3, 250 epochs).

    Attributes:
        backbone: "ae", "ae-u" or "memae".
        members: K, networks per module (>= 2: intra-discrepancy is a standard deviation).
        epochs, batch_size, lr, betas, weight_decay: the optimiser schedule (Adam).
        latent_size, multiplier: AE size (16, 1 in the paper).
        mem_dim, shrink_thres, entropy_weight: MemAE settings (25, 0, 2e-4 in the paper).
        score_type: the map exported as heatmap and score ("inter" is DDAD's).
        seed: base seed; member k of module A uses seed*1000+k, of module B seed*1000+500+k.
        preprocess: the shared preprocessing (64 px, stretch, no intensity normalisation).
        precision: "fp32" (paper) or "bf16" autocast.
        layout: "stacked", "separate" or "auto" (stacked on CUDA, separate on CPU).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        checkpoint_every_s: write a checkpoint at an epoch end when this many seconds passed
            since the last one (and always when stopped).
        augment: "none" (the paper) or "acquisition": train-time exposure, geometry, blur and
            noise changes (:mod:`engine.augment`) for robustness to other hospitals' images.
        reuse_normal_module: a finished run whose module B (trained on the same known normals
            with the same settings) is reused instead of trained again: module B never sees the
            unlabeled images, so a site adding unlabeled images, or an anomaly-rate sweep, only
            needs a new module A.
    """

    backbone: Backbone = "ae-u"
    members: int = 3
    epochs: int = 250
    batch_size: int = 64
    lr: float = 5e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    latent_size: int = 16
    multiplier: float = 1.0
    mem_dim: int = 25
    shrink_thres: float = 0.0
    entropy_weight: float = 2e-4
    score_type: ScoreType = "inter"
    seed: int = 0
    preprocess: PreprocessSpec = field(default_factory=lambda: DEFAULT_PREPROCESS)
    precision: Precision = "fp32"
    layout: Layout = "auto"
    device: DeviceChoice = "auto"
    checkpoint_every_s: float = 60.0
    augment: Augment = "none"
    reuse_normal_module: str | None = None

    def __post_init__(self) -> None:
        for name, value, allowed in (("backbone", self.backbone, BACKBONES), ("score_type", self.score_type, SCORE_TYPES),
                                     ("precision", self.precision, get_args(Precision)), ("layout", self.layout, get_args(Layout)),
                                     ("device", self.device, get_args(DeviceChoice)), ("augment", self.augment, get_args(Augment))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.members < 2:
            raise ValueError(f"members (K) must be >= 2 (intra-discrepancy is a standard deviation), got {self.members}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (BatchNorm), got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.preprocess.size % 16:
            raise ValueError(f"the DDAD autoencoder needs an input size divisible by 16, got {self.preprocess.size}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        d = dict(d)
        d["preprocess"] = PreprocessSpec.from_dict(d["preprocess"])
        d["betas"] = tuple(d["betas"])
        return cls(**d)


def describe(config: Config) -> dict[str, str]:
    """What the detector card and metadata call this detector."""
    return {"backbone": config.backbone, "score_type": config.score_type}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """DDAD's options for `cxrscreen train`."""
    g = parser.add_argument_group("DDAD options")
    d = Config()
    g.add_argument("--backbone", choices=BACKBONES, default=d.backbone, help="autoencoder variant (default: %(default)s)")
    g.add_argument("--members", "-K", type=int, default=d.members, help="networks per module (default: %(default)s)")
    g.add_argument("--latent-size", type=int, default=d.latent_size, help="default: %(default)s")
    g.add_argument("--score", dest="score_type", choices=SCORE_TYPES, default=d.score_type,
                   help="map used as heatmap and score (default: %(default)s)")
    g.add_argument("--precision", choices=get_args(Precision), default=d.precision,
                   help="fp32 (the paper's) or bf16 autocast (default: %(default)s)")
    g.add_argument("--layout", choices=get_args(Layout), default=d.layout,
                   help="stacked members (fast on CUDA) or separate (fast on CPU); default: by device")
    g.add_argument("--augment", choices=get_args(Augment), default=d.augment,
                   help="train-time acquisition augmentation (default: %(default)s, the paper's)")
    g.add_argument("--reuse-normal-module", type=Path, default=None, metavar="RUN_DIR",
                   help="take module B (normal-only) from this finished run instead of training it "
                        "(same known normals and settings required)")


def config_from_args(args: argparse.Namespace, preprocess: PreprocessSpec) -> Config:
    """Settings from `cxrscreen train` options; the shared --epochs/--batch-size/--lr default to the paper's."""
    d = Config()
    return Config(
        backbone=args.backbone, members=args.members,
        epochs=d.epochs if args.epochs is None else args.epochs,
        batch_size=d.batch_size if args.batch_size is None else args.batch_size,
        lr=d.lr if args.lr is None else args.lr,
        latent_size=args.latent_size, score_type=args.score_type, seed=args.seed, preprocess=preprocess,
        precision=args.precision, layout=args.layout, device=args.device,
        checkpoint_every_s=d.checkpoint_every_s if args.checkpoint_every is None else args.checkpoint_every,
        augment=args.augment,
        reuse_normal_module=str(args.reuse_normal_module.resolve()) if args.reuse_normal_module else None,
    )


def train(config: Config, data: Any, images: Any, run_dir: Path, progress: Any, stop: Any) -> bool:
    """See :func:`engine.methods.ddad.recipe.train` (imports torch)."""
    from engine.methods.ddad.recipe import train as _train

    return _train(config, data, images, run_dir, progress, stop)


def load_scorer(run_dir: Path, score_type: ScoreType | None = None) -> Any:
    """See :func:`engine.methods.ddad.recipe.load_scorer` (imports torch)."""
    from engine.methods.ddad.recipe import load_scorer as _load

    return _load(run_dir, score_type)
