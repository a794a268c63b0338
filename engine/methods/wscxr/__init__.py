"""WSCXR (Ni, Zhang, Xu, Lang, Zhou, "Weakly Supervised Anomaly Detection for Chest X-Ray Image",
IEEE letter 2023, arXiv:2311.09642; official code github.com/IamCuriosity/WSCXR, grown out of
SimpleNet): settings, presets and command-line options (torch-free). The recipe is in
``recipe.py``, the networks in ``models.wscxr``.

The method, as the letter describes it (its code where the letter is silent):
1. Patch features of a frozen backbone (the letter: ImageNet DenseNet121, ``features.denseblock4``,
   1024 channels, stride 32: an 8 x 8 grid at 256 px), each averaged over its p x p neighbourhood
   (p = 5; the code's Unfold + adaptive average pool is ``avg_pool2d(k=5, s=1, pad=2,
   count_include_pad=True)`` when the channel count equals its embedding size, 1024).
2. Normal bank M_n: the aggregated patch features of every known-normal image.
3. Anomaly mining: each patch feature m of the labelled anomalies is scored by its distance to
   its nearest neighbour in M_n (1-NN; the code's ``anomaly_scorer_num_nn: 5`` never reaches the
   scorer); the top r = 20 % are the anomaly prototypes (the others look normal: a pneumonia
   radiograph is mostly normal lung, ribs and mediastinum).
4. Linear mixing: every normal patch feature m_n of a batch is paired with a random prototype
   m_a: m' = α·m_a + (1 − α)·m_n, α ~ U[0.1, 1.0]; as many synthetic anomalous features as
   normal ones per step.
5. Discriminator D (the code's: one bias-free ``Linear(C → 1)``, xavier-normal; the letter: an
   MLP) trained with the hinge loss of the code: mean(relu(0.5 − D(m_n))) + mean(relu(0.5 +
   D(m'))); Adam lr 2e-4, weight decay 1e-5, batches of 8 images, 100 epochs.
6. Inference: D on every grid position; patch score = −D; image score = the maximum; heatmap =
   the patch scores bilinearly upsampled to the input and Gaussian-blurred (σ = 4 px at 256 px).
   One ONNX graph: backbone → aggregation → D → (score, heatmap).

Choices and deviations (each also in the presets' deviations):
- No ImageNet weights exist here (nothing is downloaded). The backbone is either
  (a) ``--backbone NAME --backbone-checkpoint FILE``: a timm CNN (DenseNet121 the letter's) from a
  local timm-compatible state dict loaded with ``weights_only=True``; its patch grid is the output
  of ``--backbone-layer`` (default ``features.denseblock4`` for DenseNets, else the last feature
  stage timm lists); grayscale input is replicated to 3 channels and ImageNet-normalised in the
  graph (as the code's RGB conversion of grayscale files); or
  (b) the default, ``--backbone mae``: the encoder of a masked autoencoder pre-trained
  self-supervised on the site's own images (AMAE's MAE, ``models.mae``, and AMAE's pre-training
  code, ``engine.methods.amae.recipe``), 8-px patches at 64 px = the letter's 8 x 8 grid. It is
  pre-trained on normal ∪ unlabeled when unlabeled images are given, else on normal ∪ abnormal
  without their labels. ``--encoder RUN_DIR`` takes the pre-trained encoder of another finished
  run (WSCXR, or AMAE of the same architecture), so several detectors share one pre-training.
  ``--pretrain-epochs 0`` without ``--encoder`` leaves the encoder random: the floor of the bench.
  (c) ``--backbone msacl --encoder MSACL_RUN``: the one-channel ResNet18 of a finished MSACL run
  (``engine.methods.msacl``: self-supervised on the site's normals with MedMix lesions), cut after
  ``--backbone-layer`` (default ``layer2``: stride 8, the letter's 8 x 8 grid at 64 px, chosen
  for the grid and not on test data), fed the preprocessed image as MSACL trained it.
- Unlabeled images only ever feed the encoder's self-supervised pre-training, never with labels.
- 10 % of the known normals are held out for calibration and never trained on (nor in M_n).
- The code keeps the discriminator of the epoch with the best *test* AUROC/accuracy/F1 and a
  Youden threshold on the test set; here the last epoch is kept and the operating point comes
  from the held-out normals (the engine's calibration).
- M_n holds every normal patch feature (the letter); the code first sub-samples it to 50 % by an
  approximate greedy coreset, which changes the 1-NN distances little and is not done here.
- Prototypes: ``max(1, floor(r · n))`` of the n abnormal patch features (the code's floor, never
  none). Ablations: ``--no-mining`` takes every abnormal patch feature as a prototype;
  ``--no-mixing`` uses the prototypes themselves as the synthetic features (α = 1).
- The discriminator default is the code's linear head (``--head linear``), chosen without test
  data: the official code, which produced the letter's table, trains it (``dsc_layers: 1``), and
  with at most a few hundred prototypes a linear boundary has the fewest ways to fit them by
  heart. ``--head mlp`` is the letter's MLP in the code's form for ``dsc_layers: 2``:
  Linear(C, 1024) → BatchNorm → LeakyReLU(0.2) → bias-free Linear(1024, 1), xavier-normal.
- Aggregation is per channel (``avg_pool2d``), so the feature keeps the backbone's C channels;
  the code's extra adaptive pooling to 1024 values is the identity for DenseNet121 and would mix
  channels for other widths.
- The discriminator's batches: the known-normal training images in a fresh random order each
  epoch, the last smaller batch kept (the code's DataLoader, shuffle on, drop_last off);
  features are computed once (the backbone is frozen and there is no augmentation, so every
  epoch of the code sees the same features).
- σ of the heatmap blur is 4 px at 256 px, scaled with the input size (1 px at 64 px); the blur
  mirrors at the border as scipy's ``gaussian_filter`` (mode "reflect", radius 4σ).
- Every preset scores the image as read, as the letter does. ``test_time_views="framing"``
  (``--test-time-views framing``) makes the detector file score the mean over the image and six
  re-framings (:data:`engine.export.VIEW_SETS`); it was the robust preset's default until three
  encoder seeds were measured: it helped two detectors of one encoder seed and not the other two
  seeds (one ranked dev_test and 10 of the 14 simulated shifts lower with it), bench/RESULTS.md,
  "Test-time views".
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from cxrscreen.engine.methods.base import (
    LossSeries, Method, Phase, Preset, Problem, Role, TestTimeViews, preprocess_from, register, setting,
    settings_from_dict, settings_to_dict, settings_values, recipe_hooks, robust_preset, views_setting,
)
from cxrscreen.engine.preprocess import PreprocessSpec

NAME = "wscxr"
Head = Literal["linear", "mlp"]
DeviceChoice = Literal["auto", "cpu", "cuda"]
HEADS: tuple[str, ...] = get_args(Head)
MAE = "mae"
MSACL = "msacl"  # the one-channel ResNet18 of an MSACL run (--encoder RUN)
MSACL_LAYER = "layer2"  # stride 8: the letter's 8 x 8 grid at 64 px
SCORE_TYPES: tuple[str, ...] = ("max",)
DEFAULT_PREPROCESS = PreprocessSpec(size=64)

# the MAE encoder sizes (AMAE's "small" and "tiny" architectures)
MAE_SIZES: dict[str, dict[str, int]] = {
    "small": dict(patch_size=8, embed_dim=192, depth=6, num_heads=3, decoder_embed_dim=128, decoder_depth=2,
                  decoder_num_heads=4),
    "tiny": dict(patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
                 decoder_num_heads=2),
}
MaeSize = Literal["small", "tiny"]


@dataclass(frozen=True)
class Config:
    """WSCXR training settings; the defaults are the ``small`` preset.

    Attributes:
        backbone: "mae" (a self-supervised MAE encoder), "msacl" (an MSACL run's ResNet18, given by
            ``encoder``) or a timm CNN name ("densenet121", ...).
        backbone_layer: the timm module whose output is the patch grid (None: the default).
        backbone_checkpoint: a local timm state dict for a timm backbone (None: random weights).
        encoder: a finished run folder whose pre-trained MAE encoder is reused (None: pre-train), or
            with ``backbone="msacl"`` a finished MSACL run folder (required).
        mae_size: the MAE's architecture ("small": 192-d x 6 blocks, 8-px patches; "tiny": tests).
        pretrain_epochs, pretrain_lr, pretrain_warmup_epochs, pretrain_batch_size: the MAE's
            self-supervised pre-training (AMAE's recipe: AdamW, warm-up then cosine, mask ratio
            0.75, random resized crops of area ``crop_scale``).
        neighbourhood: p, the side of the feature aggregation window (odd).
        mining, mining_ratio: anomaly mining on/off and r, the fraction of abnormal patch
            features kept as prototypes.
        mixing, alpha_min, alpha_max: linear mixing on/off and the range of α.
        head, mlp_hidden: the discriminator ("linear" or "mlp") and the MLP's width.
        margin: the hinge margin (the code's ``dsc_margin``).
        epochs, batch_size, lr, weight_decay: the discriminator's Adam schedule (batch in images).
        blur_sigma_256: σ of the heatmap's Gaussian blur in pixels at 256 px (scaled to the size).
        seed: seeds the MAE, the discriminator, the batch order, prototypes and α.
        preprocess: the shared preprocessing (its size is the backbone's input size).
        device, checkpoint_every_s: run settings.
        test_time_views: "none" (the letter: each image scored as read) or "framing": the detector
            file scores the image and six re-framings of it and takes the mean
            (:data:`engine.export.VIEW_SETS`; calibrated on those scores); a run setting: it
            changes the exported file, not the networks.
    """

    backbone: str = setting(MAE, flag="--backbone", type="text",
                            help="mae (a masked autoencoder pre-trained on the site's own images), msacl (the "
                                 "ResNet18 of a finished MSACL run, given with --encoder) or a timm CNN name "
                                 "(densenet121 is the letter's) given with --backbone-checkpoint")
    backbone_layer: str | None = setting(None, flag="--backbone-layer", type="text",
                                         help="timm module whose output is the patch grid (default: "
                                              "features.denseblock4 for DenseNets, layer2 for msacl, else the last "
                                              "feature stage)")
    backbone_checkpoint: str | None = setting(None, flag="--backbone-checkpoint", type="path",
                                              path_kind="file", help="local timm-compatible state dict of the --backbone CNN (e.g. "
                                                   "ImageNet DenseNet121); read as plain tensors only")
    encoder: str | None = setting(None, flag="--encoder", type="path",
                                  path_kind="folder", help="a finished WSCXR (or AMAE) run folder whose pre-trained MAE encoder is reused "
                                       "instead of pre-training one (same architecture and input size); with "
                                       "--backbone msacl, a finished MSACL run folder")
    mae_size: MaeSize = setting("small", flag="--mae-size", choices=get_args(MaeSize),
                                help="MAE encoder architecture: small (192-d x 6 blocks, 8-px patches) or tiny (tests)")
    pretrain_epochs: int = setting(100, flag="--pretrain-epochs", minimum=0,
                                   help="MAE pre-training epochs (0 without --encoder: a random encoder, the floor)")
    pretrain_lr: float = 1e-3
    pretrain_warmup_epochs: int = 10
    pretrain_batch_size: int = 64
    mask_ratio: float = 0.75
    crop_scale: tuple[float, float] = (0.5, 1.0)
    neighbourhood: int = setting(5, flag="--neighbourhood", minimum=1,
                                 help="p: each patch feature is averaged over its p x p neighbours (odd)")
    mining: bool = setting(True, flag="--mining", help="anomaly mining: keep the abnormal patch features farthest from "
                                                        "the normal bank as prototypes (--no-mining: keep all)")
    mining_ratio: float = setting(0.2, flag="--mining-ratio", minimum=0.0, maximum=1.0, exclusive_minimum=True,
                                  help="r: fraction of the abnormal patch features kept as prototypes")
    mixing: bool = setting(True, flag="--mixing", help="linear mixing of normal features with prototypes (--no-mixing: "
                                                        "the prototypes themselves are the synthetic anomalies)")
    alpha_min: float = 0.1
    alpha_max: float = 1.0
    head: Head = setting("linear", flag="--head", choices=HEADS,
                         help="discriminator: linear (the official code's bias-free Linear) or mlp (the letter's)")
    mlp_hidden: int = 1024
    margin: float = 0.5
    epochs: int = setting(100, common=True, flag="--epochs")
    batch_size: int = setting(8, common=True, flag="--batch-size")
    lr: float = setting(2e-4, common=True, flag="--lr")
    weight_decay: float = 1e-5
    blur_sigma_256: float = 4.0
    seed: int = setting(0, common=True, flag="--seed")
    preprocess: PreprocessSpec = field(default_factory=lambda: DEFAULT_PREPROCESS)
    device: DeviceChoice = setting("auto", common=True, flag="--device", kind="run")
    checkpoint_every_s: float = setting(60.0, common=True, flag="--checkpoint-every", kind="run")
    test_time_views: TestTimeViews = views_setting()

    def __post_init__(self) -> None:
        if self.test_time_views not in get_args(TestTimeViews):
            raise ValueError(f"test_time_views must be one of {get_args(TestTimeViews)}, got {self.test_time_views!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.mae_size not in MAE_SIZES:
            raise ValueError(f"mae_size must be one of {tuple(MAE_SIZES)}, got {self.mae_size!r}")
        if self.device not in get_args(DeviceChoice):
            raise ValueError(f"device must be one of {get_args(DeviceChoice)}, got {self.device!r}")
        if not self.backbone or not self.backbone.replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"backbone must be 'mae' or a timm model name, got {self.backbone!r}")
        if self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be an odd number >= 1, got {self.neighbourhood}")
        if not 0.0 < self.mining_ratio <= 1.0:
            raise ValueError(f"mining_ratio must be in (0, 1], got {self.mining_ratio}")
        if not 0.0 <= self.alpha_min <= self.alpha_max <= 1.0:
            raise ValueError(f"alpha range must satisfy 0 <= min <= max <= 1, got ({self.alpha_min}, {self.alpha_max})")
        for name in ("epochs", "mlp_hidden", "pretrain_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pretrain_epochs", "pretrain_warmup_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        for name in ("lr", "pretrain_lr", "blur_sigma_256", "margin"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.backbone == MAE:
            patch = MAE_SIZES[self.mae_size]["patch_size"]
            if self.preprocess.size % patch:
                raise ValueError(f"the MAE encoder needs an input size divisible by its patch size {patch}, got "
                                 f"{self.preprocess.size}")
            if self.backbone_checkpoint is not None or self.backbone_layer is not None:
                raise ValueError("backbone_checkpoint and backbone_layer are for a timm --backbone, not mae; use "
                                 "--encoder RUN_DIR to reuse a pre-trained MAE")
        elif self.backbone == MSACL:
            if self.backbone_checkpoint is not None:
                raise ValueError("backbone_checkpoint is for a timm --backbone; --backbone msacl takes its weights "
                                 "from --encoder MSACL_RUN")
            if self.preprocess.size < 32:
                raise ValueError(f"the MSACL ResNet18 needs an input size of at least 32 px, got {self.preprocess.size}")
        elif self.encoder is not None:
            raise ValueError(f"encoder (a run's MAE) cannot be used with the timm backbone {self.backbone!r}")
        for name in ("backbone_checkpoint", "encoder"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))
        object.__setattr__(self, "crop_scale", tuple(float(c) for c in self.crop_scale))

    @property
    def blur_sigma(self) -> float:
        """σ of the heatmap blur in pixels at this input size."""
        return self.blur_sigma_256 * self.preprocess.size / 256

    def mae_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`models.mae.MaskedAutoencoder`."""
        return dict(img_size=self.preprocess.size, in_chans=1, **MAE_SIZES[self.mae_size])

    def to_dict(self) -> dict[str, Any]:
        return settings_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        return settings_from_dict(cls, d, "WSCXR")


def backbone_name(config: Config) -> str:
    """The detector card's name of the backbone."""
    if config.backbone == MAE:
        source = "reused encoder" if config.encoder else ("random" if config.pretrain_epochs == 0 else "self-supervised")
        return f"MAE {config.mae_size} ({source}) @{config.preprocess.size}"
    if config.backbone == MSACL:
        return f"ResNet18 (MSACL run) {config.backbone_layer or MSACL_LAYER} @{config.preprocess.size}"
    return f"{config.backbone}{'' if config.backbone_checkpoint else ' (random)'} @{config.preprocess.size}"


def describe(config: Config) -> dict[str, str]:
    return {"backbone": backbone_name(config), "score_type": "max"}


_OWN = ("backbone", "backbone_layer", "encoder", "mae_size", "pretrain_epochs", "neighbourhood", "mining", "mining_ratio",
        "mixing", "head", "test_time_views")


def make_config(values: dict[str, Any]) -> Config:
    """Settings from option values (by option name; absent: the method's default)."""
    own = {k: values[k] for k in _OWN if values.get(k) is not None}
    for name in ("backbone_checkpoint", "encoder"):
        if values.get(name) is not None:
            own[name] = str(Path(values[name]).resolve())
    return Config(**settings_values(values), **own, preprocess=preprocess_from(DEFAULT_PREPROCESS, values))


def check(config: Config, counts: dict[str, int]) -> list[Problem]:
    """Settings the data cannot work with."""
    problems = []
    if config.backbone == MSACL and config.encoder is None:
        problems.append(Problem("--encoder", "--backbone msacl takes the ResNet18 of a finished MSACL run: "
                                             "--encoder RUN_DIR (train one with --method msacl)"))
    if config.backbone not in (MAE, MSACL) and config.backbone_checkpoint is None:
        problems.append(Problem("--backbone-checkpoint", f"the {config.backbone} backbone needs its weights: "
                                f"--backbone-checkpoint FILE (a local timm state dict; nothing is downloaded)"))
    if config.backbone_checkpoint is not None and not Path(config.backbone_checkpoint).is_file():
        problems.append(Problem("--backbone-checkpoint", f"{config.backbone_checkpoint}: no such file"))
    if config.encoder is not None and not (Path(config.encoder) / "model.pt").is_file():
        problems.append(Problem("--encoder", f"{config.encoder}: not a finished run folder (no model.pt)"))
    if config.backbone == MAE and config.encoder is None and config.pretrain_epochs == 0:
        problems.append(Problem("--pretrain-epochs", "no pre-training and no --encoder: the MAE encoder stays random "
                                                     "(a floor for comparison, not a detector)", level="warning"))
    if 0 < counts.get("abnormal", 0) < 2:
        problems.append(Problem("--abnormal", "one confirmed-abnormal image gives few anomaly prototypes; the letter "
                                              "reports 2 to 16", level="warning"))
    return problems


_COMMON_DEVIATIONS = (
    "10 % of the known normals are held out for calibration and never trained on (nor put in the normal bank)",
    "the last epoch's discriminator is kept and the threshold comes from held-out normals (the code picks the epoch "
    "and a Youden threshold on the test set)",
    "the normal bank holds every normal patch feature (the code sub-samples it to 50 % by a greedy coreset)",
    "grayscale input in [-1, 1] (replicated to 3 ImageNet-normalised channels inside the graph for a timm CNN)",
)
_SMALL_VALUES: dict[str, Any] = {
    "backbone": MAE, "mae_size": "small", "pretrain_epochs": 100, "size": 64, "epochs": 100, "batch_size": 8, "lr": 2e-4,
    "head": "linear", "neighbourhood": 5, "mining_ratio": 0.2, "mining": True, "mixing": True}
_SMALL_DEVIATIONS = (*_COMMON_DEVIATIONS,
                     "the backbone is a small MAE (ViT 192-d x 6 blocks, 8-px patches) pre-trained self-supervised on "
                     "the site's images, not ImageNet DenseNet121 (no ImageNet weights are available offline)",
                     "64 px input (the letter: 256 px); the grid is the letter's 8 x 8")
PRESETS: tuple[Preset, ...] = (
    robust_preset("The default: the small preset with each image cropped to its exposed field and "
                  "histogram-equalised, for the encoder's pre-training, the discriminator and scoring alike, so "
                  "exposure, contrast and borders matter less (a tighter or off-centre framing still does). "
                  "Against the small preset (K = 16, three shot draws; bench/RESULTS.md): dev_test AUROC "
                  "0.957 ± 0.004 (0.953 ± 0.005); over 10 simulated "
                  "acquisition shifts (seed 0) mean AUROC 0.940 (0.923) and specificity at the promised 95 % 0.873 "
                  "(0.616). Each image is scored as read: test-time views (--test-time-views framing) helped "
                  "the two detectors of one encoder seed and not those of two other seeds (bench/RESULTS.md). "
                  "Takes as long as the small preset.",
                  _SMALL_VALUES, _SMALL_DEVIATIONS),
    Preset("small", "Small (self-supervised MAE encoder)",
           "WSCXR on the encoder of a small masked autoencoder pre-trained on the site's own images (normal + "
           "unlabeled, or normal + abnormal without labels) at 64 px (an 8 x 8 grid as the letter's), then the "
           "letter's mining, mixing and discriminator. For 2 CPU cores; an Encoder (a finished run folder, --encoder) "
           "reuses a pre-training.",
           _SMALL_VALUES, deviations=_SMALL_DEVIATIONS),
    Preset("paper", "Paper protocol (needs DenseNet121 weights)",
           "The letter's setting: DenseNet121 features.denseblock4 at 256 px from a local ImageNet state dict "
           "(Backbone weights, --backbone-checkpoint FILE), p = 5, r = 0.2, α ~ U[0.1, 1], linear discriminator, hinge loss, Adam "
           "lr 2e-4, batch 8, 100 epochs. Not as published: see the deviations.",
           {"backbone": "densenet121", "size": 256, "epochs": 100, "batch_size": 8, "lr": 2e-4, "head": "linear",
            "neighbourhood": 5, "mining_ratio": 0.2, "mining": True, "mixing": True},
           deviations=(*_COMMON_DEVIATIONS,
                       "the ImageNet DenseNet121 weights are whatever local file the user names (none ship here)")),
    Preset("tiny", "Tiny (tests only)",
           "Tests only (and smoke checks): a 32-d MAE at 32 px (a 4 x 4 grid), 2 pre-training and 2 discriminator "
           "epochs (seconds on a CPU; detects nothing real).",
           {"backbone": MAE, "mae_size": "tiny", "pretrain_epochs": 2, "size": 32, "epochs": 2, "batch_size": 8,
            "neighbourhood": 3},
           deviations=("tests only: not the letter's backbone, size or schedule",), tests_only=True),
)



_hooks = recipe_hooks(__name__)  # the torch code, imported when first asked for


@register
def _declare() -> Method:
    return Method(
        name=NAME, title="WSCXR (weakly supervised, few confirmed anomalies)",
        paper="Ni, Zhang, Xu, Lang, Zhou, Weakly supervised anomaly detection for chest X-ray image, IEEE letter 2023 "
              "(arXiv:2311.09642)",
        summary="A few confirmed-abnormal images: their patch features least like any normal patch become anomaly "
                "prototypes, mixed into normal features to train a patch discriminator against the normals.",
        roles=(Role("normal", "required", 3, "known-normal radiographs (the normal bank); 10 % are held out for "
                                              "calibration"),
               Role("unlabeled", "optional", 1, "unlabeled radiographs: only for the encoder's self-supervised "
                                                "pre-training, never with labels"),
               Role("abnormal", "required", 1, "confirmed-abnormal radiographs (K shots, image-level labels)")),
        settings=Config, presets=PRESETS,
        phases=(Phase("load", "Reading images"), Phase("pretrain", "Pre-training the MAE encoder"),
                Phase("features", "Patch features, normal bank and anomaly mining"),
                Phase("train", "Training the discriminator"), Phase("calibrate", "Calibrating on held-out normals")),
        loss_series=(LossSeries("loss", "MAE", phase="pretrain"), LossSeries("loss", "discriminator", phase="train")),
        default_preprocess=DEFAULT_PREPROCESS, make_config=make_config, describe=describe,
        score_types=SCORE_TYPES, hooks=_hooks, check=check, order=20,
        # Ni et al. (the letter and its config/zhanglab.yaml): DenseNet121 denseblock4 at 256 px, p = 5,
        # r = 0.2, alpha ~ U[0.1, 1], Adam lr 2e-4 with weight decay 1e-5, batch 8, 100 epochs
        paper_stated={"preprocess.size": 256, "backbone": "densenet121", "neighbourhood": 5, "mining_ratio": 0.2,
                      "alpha_min": 0.1, "alpha_max": 1.0, "lr": 2e-4, "weight_decay": 1e-5, "batch_size": 8,
                      "epochs": 100},
    )


METHOD: Method = _declare  # the registered declaration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """WSCXR's options on ``parser`` (see :func:`engine.train_cli.add_method_arguments`)."""
    from cxrscreen.engine.train_cli import add_method_arguments

    add_method_arguments(parser, METHOD)


def load_scorer(run_dir: Path, score_type: str | None = None) -> Any:
    """See :func:`engine.methods.wscxr.recipe.load_scorer` (imports torch)."""
    return _hooks().load_scorer(run_dir, score_type)
