"""DDAD (Cai et al., "Dual-distribution discrepancy for anomaly detection in chest X-rays",
MICCAI 2022): settings and command-line options (torch-free); the recipe is in ``recipe.py``.

Paper / official-code settings reproduced (github.com/caiyu6666/DDAD): module A = K
autoencoders trained on D_n ∪ D_u, module B = K autoencoders on D_n only, each member with its
own initialisation and shuffling; 64 x 64 inputs in [-1, 1]; Adam lr 5e-4, betas (0.5, 0.999),
no weight decay; batch 64 with the last incomplete batch dropped; 250 epochs; losses: AE mean
squared error, AE-U mean(exp(−logvar)·(x−x̂)²) + mean(logvar), MemAE MSE + 2e-4 · attention
entropy (25 slots, no shrinkage); maps and scores as in ``models.ddad``.

Deviations (each also in README "Methods"):
- 10 % of D_n (whole patients) is held out for calibration and not trained on (the paper trains
  on all of D_n).
- The default preset (robust-framing) is not the paper's: exposed-field crop, histogram
  equalisation and train-time acquisition augmentation with wide framing, and its detector file
  scores the mean over the image and six re-framings (``test_time_views``); ``paper`` is.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from cxrscreen.engine.methods.base import (
    LossSeries, Method, Phase, Preset, Problem, Role, TestTimeViews, preprocess_from, register, setting,
    settings_from_dict, settings_to_dict, settings_values, recipe_hooks, views_setting,
)
from cxrscreen.engine.preprocess import PreprocessSpec

NAME = "ddad"
Backbone = Literal["ae", "ae-u", "memae"]  # the names models.autoencoder accepts (tested)
ScoreType = Literal["rec", "intra", "inter"]  # the maps models.ddad computes (tested)
Precision = Literal["fp32", "bf16"]
Layout = Literal["auto", "stacked", "separate"]
Augment = Literal["none", "acquisition", "acquisition-framing", "acquisition-aspect", "acquisition-processing"]
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
        score_top_fraction: the image score is the mean of this fraction of the map's highest
            pixels (:func:`models.ddad.pool_map`); 1.0, the whole map's mean, is the paper's.
        seed: base seed; member k of module A uses seed*1000+k, of module B seed*1000+500+k.
        preprocess: the shared preprocessing (64 px, stretch, no intensity normalisation).
        precision: "fp32" (paper) or "bf16" autocast.
        layout: "stacked", "separate" or "auto" (stacked on CUDA, separate on CPU); a run
            setting: a resumed run keeps its checkpoint's layout.
        device: "auto" (CUDA when available), "cpu" or "cuda" (a run setting).
        checkpoint_every_s: write a checkpoint at an epoch end when this many seconds passed
            since the last one (and always when stopped; a run setting).
        augment: "none" (the paper) or "acquisition": train-time exposure, geometry, blur and
            noise changes (:mod:`engine.augment`) for robustness to other hospitals' images;
            "acquisition-framing": the same with a wider geometry (magnification up to 1.45,
            shift ±10 %: tighter and off-centre fields); "acquisition-aspect": framing plus one
            axis stretched up to 1.35× (originals of another width-to-height ratio; measured, and
            not a preset: it costs ranking almost everywhere, bench/RESULTS.md);
            "acquisition-processing": framing plus local contrast raised or lowered (another
            system's unsharp masking or dynamic-range compression; measured on two seeds, not
            the default: bench/RESULTS.md).
        test_time_views: "none" (the paper: each image scored as read) or "framing": the detector
            file scores the image and six re-framings of it and takes the mean
            (:data:`engine.export.VIEW_SETS`; calibrated on those scores); a run setting: it
            changes the exported file, not the networks.
        reuse_normal_module: a finished run whose module B (trained on the same known normals
            with the same settings) is reused instead of trained again: module B never sees the
            unlabeled images, so a site adding unlabeled images, or an anomaly-rate sweep, only
            needs a new module A.
    """

    backbone: Backbone = setting("ae-u", flag="--backbone", choices=BACKBONES,
                                 help="autoencoder variant: ae, ae-u (the paper's) or memae")
    members: int = setting(3, flag="--members", aliases=("-K",), minimum=2, help="networks per module (K)")
    epochs: int = setting(250, common=True, flag="--epochs")
    batch_size: int = setting(64, common=True, flag="--batch-size")
    lr: float = setting(5e-4, common=True, flag="--lr")
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    latent_size: int = setting(16, flag="--latent-size", minimum=1, help="autoencoder latent channels")
    multiplier: float = 1.0
    mem_dim: int = 25
    shrink_thres: float = 0.0
    entropy_weight: float = 2e-4
    score_type: ScoreType = setting("inter", flag="--score", choices=SCORE_TYPES,
                                    help="map used as heatmap and score (inter is DDAD's)")
    score_top_fraction: float = setting(1.0, flag="--score-top-fraction", minimum=0.0, exclusive_minimum=True,
                                        maximum=1.0, help="image score: mean of this fraction of the map's highest "
                                                          "pixels; 1 = the whole map's mean (the paper's)")
    seed: int = setting(0, common=True, flag="--seed")
    preprocess: PreprocessSpec = setting(default_factory=lambda: DEFAULT_PREPROCESS)
    precision: Precision = setting("fp32", flag="--precision", choices=get_args(Precision),
                                   help="fp32 (the paper's) or bf16 autocast")
    layout: Layout = setting("auto", flag="--layout", kind="run", choices=get_args(Layout),
                             help="stacked members (fast on CUDA) or separate (fast on CPU); auto: by device; a "
                                  "resumed run keeps its checkpoint's layout")
    device: DeviceChoice = setting("auto", common=True, flag="--device", kind="run")
    checkpoint_every_s: float = setting(60.0, common=True, flag="--checkpoint-every", kind="run")
    augment: Augment = setting("none", flag="--augment", choices=get_args(Augment), option_default=None,
                               help="train-time acquisition augmentation (none is the paper's; default: the "
                                    "preset's)")
    test_time_views: TestTimeViews = views_setting()
    reuse_normal_module: str | None = setting(None, flag="--reuse-normal-module", type="path",
                                              path_kind="folder", help="take module B (normal-only) from this finished run instead of "
                                                   "training it (same known normals and settings required)")

    def __post_init__(self) -> None:
        for name, value, allowed in (("backbone", self.backbone, BACKBONES), ("score_type", self.score_type, SCORE_TYPES),
                                     ("precision", self.precision, get_args(Precision)), ("layout", self.layout, get_args(Layout)),
                                     ("device", self.device, get_args(DeviceChoice)), ("augment", self.augment, get_args(Augment)),
                                     ("test_time_views", self.test_time_views, get_args(TestTimeViews))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.members < 2:
            raise ValueError(f"members (K) must be >= 2 (intra-discrepancy is a standard deviation), got {self.members}")
        if not 0.0 < self.score_top_fraction <= 1.0:
            raise ValueError(f"score_top_fraction must be in (0, 1] (1: the map's mean), got {self.score_top_fraction!r}")
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
        return settings_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        return settings_from_dict(cls, d, "DDAD")


def describe(config: Config) -> dict[str, str]:
    """What the detector card and metadata call this detector."""
    return {"backbone": config.backbone, "score_type": config.score_type}


def make_config(values: dict[str, Any]) -> Config:
    """Settings from option values (by option name; absent: the method's default)."""
    own = {k: values[k] for k in ("backbone", "members", "latent_size", "score_type", "score_top_fraction", "precision",
                                  "layout", "augment", "test_time_views", "reuse_normal_module") if values.get(k) is not None}
    if "reuse_normal_module" in own:
        own["reuse_normal_module"] = str(Path(own["reuse_normal_module"]).resolve())
    return Config(**settings_values(values), **own, preprocess=preprocess_from(DEFAULT_PREPROCESS, values))


def check(config: Config, counts: dict[str, int]) -> list[Problem]:
    """Settings the data cannot work with: a module with fewer images than one batch."""
    problems = []
    n_b = counts.get("normal_train", 0)
    n_a = n_b + counts.get("unlabeled", 0)
    for module, n in (("B (known normals)", n_b), ("A (known normals + unlabeled)", n_a)):
        if module.startswith("B") and config.reuse_normal_module:
            continue
        if 0 < n < config.batch_size:
            problems.append(Problem("--batch-size", f"module {module} has {n} training images, fewer than one batch "
                                                    f"of {config.batch_size}; use --batch-size {max(2, n)} or less"))
    return problems


_PAPER_DEVIATIONS = (
    "10 % of the known normals (whole patients) are held out for calibration and never trained on (the paper "
    "trains on all of them)",
    "images are resized on float pixels, without the official pipeline's uint8 rounding (< 0.5/255 per pixel)",
)
_PAPER_VALUES = {"backbone": "ae-u", "members": 3, "epochs": 250, "batch_size": 64, "lr": 5e-4, "size": 64,
                 "intensity": "none", "crop": "none", "augment": "none", "score_top_fraction": 1.0}
_ROBUST_VALUES = {**_PAPER_VALUES, "intensity": "equalize", "augment": "acquisition"}
_ROBUST_DEVIATIONS = (*_PAPER_DEVIATIONS, "histogram equalisation of every image (the paper: none)",
                      "train-time acquisition augmentation (the paper: none)")
_FIELD_DEVIATION = "each image cropped to its exposed field (the paper: the whole frame)"
PRESETS: tuple[Preset, ...] = (
    Preset("robust-framing", "Robust, exposed field, wide framing (recommended)",
           "The default. Each image is cropped to its exposed field and equalised, and training shows the networks "
           "images zoomed, shifted, re-exposed, blurred and noisier, as other machines and collimation habits give "
           "them, down to fields tight or off-centre enough to cut the lung apices or bases. Five trainings of 250 "
           "epochs: dev_test AUROC 0.969 ± 0.005; over 10 simulated acquisition shifts 0.966 ± 0.004, every one "
           "≥ 0.943; the promised 95 % specificity kept at 95 % on average under the shifts (the previous default, "
           "robust-field: 0.967 and 0.963, the combined shift 0.932, specificity 89 %). The detector file scores "
           "each image as the mean over it and six re-framings (test-time views): on an off-centre batch no "
           "detector trained on, AUROC +0.009 to +0.037 over eight detectors; at 250 epochs (three seeds) that batch "
           "0.946 -> 0.959, 0.942 -> 0.954 and 0.947 -> 0.963, dev_test 0.971 -> 0.979, 0.972 -> 0.970 and "
           "0.966 -> 0.969, at "
           "about 10 times the network's scoring time. About 26 min on one CPU thread, as robust-field.",
           {**_ROBUST_VALUES, "crop": "field", "augment": "acquisition-framing", "test_time_views": "framing"},
           deviations=(*_ROBUST_DEVIATIONS, _FIELD_DEVIATION,
                       "train-time geometry up to 1.45 magnification and ±10 % shift",
                       "the detector file scores each image as the mean over it and six re-framings (test-time views; "
                       "the paper: the image as read)")),
    Preset("robust-field", "Robust, cropped to the exposed field",
           "The default before robust-framing: the robust preset with each image first cropped to its exposed "
           "field (no black or white "
           "borders, collimation or empty background beside the body), so equalisation is computed on the body and "
           "framing differences between batches shrink. Against the robust preset, both trained 50 epochs (one "
           "seed): dev_test AUROC 0.938 (0.915), mean over 10 simulated acquisition shifts 0.915 (0.848), a wide "
           "field in a black border 0.936 (0.606). At 250 epochs (three seeds, bf16): dev_test 0.967 ± 0.002, mean "
           "over the 10 shifts 0.963 ± 0.002, a tighter or off-centre field 0.974 / 0.948 (every other recipe "
           "measured: at most 0.942 over the shifts). Takes as long as the robust preset.",
           {**_ROBUST_VALUES, "crop": "field"},
           deviations=(*_ROBUST_DEVIATIONS, _FIELD_DEVIATION)),
    Preset("paper", "Paper protocol",
           "DDAD with AE-U, K = 3, 250 epochs at 64 px, as published (Cai et al. 2022). On 2 CPU cores about 20 min "
           "for 1,100 images (measured: 19 min for 600 normals + 500 unlabeled); minutes on a GPU.",
           _PAPER_VALUES, as_published=True, deviations=_PAPER_DEVIATIONS),
    Preset("robust", "Robust to acquisition, whole frame",
           "The paper protocol plus histogram equalisation and acquisition augmentation (zoom, shift, rotation, "
           "exposure, blur, noise). On the dev protocol: dev_test AUROC 0.971 (paper 0.965), mean over 10 simulated "
           "acquisition shifts 0.940 (paper 0.874), real images of another batch 0.875 (paper 0.672; 16 images). "
           "Takes longer to train than the paper protocol.",
           _ROBUST_VALUES, deviations=_ROBUST_DEVIATIONS),
    Preset("quick", "Quick",
           "DDAD with AE-U, K = 3, 50 epochs: a fifth of the paper's training, for a first look at a site's data. "
           "Usually a little less accurate.",
           {"backbone": "ae-u", "members": 3, "epochs": 50, "batch_size": 64, "lr": 5e-4, "size": 64,
            "intensity": "none", "augment": "none", "score_top_fraction": 1.0},
           deviations=(*_PAPER_DEVIATIONS, "50 training epochs (the paper: 250)")),
    Preset("tiny", "Tiny (tests only)",
           "Tests only (and smoke checks): plain AEs, K = 2, 2 epochs at 32 px (seconds on a CPU; detects nothing "
           "real).",
           {"backbone": "ae", "members": 2, "epochs": 2, "batch_size": 16, "size": 32},
           deviations=("tests only: not the paper's architecture, size or schedule",), tests_only=True),
)



_hooks = recipe_hooks(__name__)  # the torch code, imported when first asked for


@register
def _declare() -> Method:
    return Method(
        name=NAME, title="DDAD (dual-distribution discrepancy)",
        paper="Cai et al., Dual-distribution discrepancy for anomaly detection in chest X-rays, MICCAI 2022",
        summary="Two ensembles of autoencoders, one trained on known normals and one on normals plus unlabeled "
                "images; where they disagree is anomalous.",
        roles=(Role("normal", "required", 3, "known-normal radiographs (D_n); 10 % are held out for calibration"),
               Role("unlabeled", "required", 1, "unlabeled radiographs of the site (D_u): normal and abnormal mixed"),
               Role("abnormal", "unused", 0, "not used by DDAD")),
        settings=Config, presets=PRESETS,
        phases=(Phase("load", "Reading images"), Phase("train", "Training modules A and B"),
                Phase("calibrate", "Calibrating on held-out normals")),
        loss_series=(LossSeries("loss_a", "module A"), LossSeries("loss_b", "module B")),
        default_preprocess=DEFAULT_PREPROCESS, make_config=make_config, describe=describe,
        score_types=("inter", "intra", "rec"), hooks=_hooks, check=check, order=0,
        # Cai et al., MICCAI 2022, sec. 4.1 and the official code (github.com/caiyu6666/DDAD): 64 x 64
        # inputs, K = 3 networks per module, AE-U, Adam lr 5e-4 betas (0.5, 0.999), batch 64, 250 epochs, latent 16;
        # the image score is the anomaly map's mean (official test.py)
        paper_stated={"preprocess.size": 64, "members": 3, "backbone": "ae-u", "lr": 5e-4, "batch_size": 64,
                      "epochs": 250, "latent_size": 16, "betas": (0.5, 0.999), "weight_decay": 0.0, "augment": "none",
                      "preprocess.intensity": "none", "preprocess.crop": "none", "score_top_fraction": 1.0},
    )


METHOD: Method = _declare  # the registered declaration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """DDAD's options on ``parser`` (see :func:`engine.train_cli.add_method_arguments`)."""
    from cxrscreen.engine.train_cli import add_method_arguments

    add_method_arguments(parser, METHOD)


def config_from_args(args: argparse.Namespace, preprocess: PreprocessSpec | None = None) -> Config:
    """Settings from parsed `cxrscreen train` options (``--preset`` and every option given)."""
    from cxrscreen.engine.train_cli import config_from_namespace

    return config_from_namespace(METHOD, args)


def train(config: Config, data: Any, images: Any, run_dir: Path, progress: Any, stop: Any) -> bool:
    """See :func:`engine.methods.ddad.recipe.train` (imports torch)."""
    return _hooks().train(config, data, images, run_dir, progress, stop)


def load_scorer(run_dir: Path, score_type: ScoreType | None = None) -> Any:
    """See :func:`engine.methods.ddad.recipe.load_scorer` (imports torch)."""
    return _hooks().load_scorer(run_dir, score_type)
