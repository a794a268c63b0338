"""WSCXR's networks (Ni et al., "Weakly Supervised Anomaly Detection for Chest X-Ray Image", 2023;
official code github.com/IamCuriosity/WSCXR): patch backbones, the neighbourhood aggregation,
the discriminator and the exported scorer. The method and its choices: ``engine.methods.wscxr``.

- :func:`neighbourhood_mean`: each grid feature averaged over its p x p neighbours, zero padding
  counted (the code's Unfold + adaptive average pool).
- :class:`MAEPatchBackbone`: the patch tokens of a :class:`models.mae.MaskedAutoencoder`'s
  encoder on the whole (unmasked) image, as a grid.
- :class:`TimmPatchBackbone`: a timm CNN cut after one module (DenseNet121's
  ``features.denseblock4`` in the letter), grayscale [-1, 1] input replicated to 3
  ImageNet-normalised channels; or, with ``in_chans=1``, a one-channel CNN that takes the
  preprocessed image as it is (MSACL's self-supervised ResNet18, ``models.msacl``).
- :class:`Discriminator`: the code's bias-free ``Linear(C, 1)`` or the letter's MLP; it outputs a
  *normality* logit (trained towards > margin on normal features, < −margin on synthetic ones).
- :class:`GaussianBlur`: scipy's ``gaussian_filter`` (mode "reflect", truncate 4) as a graph.
- :class:`WSCXRScorer`: image (N, 1, S, S) -> (score (N,), heatmap (N, S, S)); patch score = −D,
  image score = the patch maximum, heatmap = patch scores upsampled bilinearly and blurred.

Shapes: images (N, 1, S, S); feature grids (N, C, h, w); patch features (..., C).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrscreen.models.mae import MaskedAutoencoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def neighbourhood_mean(features: Tensor, p: int) -> Tensor:
    """(N, C, h, w) -> (N, C, h, w): the mean over each position's p x p window (zero padding counted)."""
    if p < 1 or p % 2 == 0:
        raise ValueError(f"the neighbourhood must be an odd size >= 1, got {p}")
    if p == 1:
        return features
    return F.avg_pool2d(features, kernel_size=p, stride=1, padding=p // 2, count_include_pad=True)


class MAEPatchBackbone(nn.Module):
    """The MAE encoder's patch tokens as a grid: (N, 1, S, S) -> (N, D, S/p, S/p)."""

    def __init__(self, mae: MaskedAutoencoder) -> None:
        super().__init__()
        self.mae = mae
        self.out_channels = mae.embed_dim

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.mae.encode_all(x)[:, 1:]  # (N, L, D), class token dropped
        g = self.mae.grid_size
        return tokens.transpose(1, 2).reshape(x.shape[0], self.mae.embed_dim, g, g)


def _cut(model: nn.Module, layer: str) -> nn.Module:
    """``model`` up to and including ``layer``: a child of the model's ``features`` Sequential, which
    takes the image (DenseNet, VGG: "features.denseblock4"), or one of timm's feature stages
    (``model.feature_info``: "layer3" of a ResNet...)."""
    parent, _, child = layer.rpartition(".")
    container = getattr(model, "features", None)
    if parent == "features" and isinstance(container, nn.Sequential) and child in dict(container.named_children()):
        names = [n for n, _ in container.named_children()]
        return nn.Sequential(*[container.get_submodule(n) for n in names[: names.index(child) + 1]])
    stages = [f["module"] for f in getattr(model, "feature_info", [])]
    if layer in stages:
        from timm.models import FeatureListNet

        return _FirstOutput(FeatureListNet(model, out_indices=(stages.index(layer),)))
    raise ValueError(f"layer {layer!r} is not a prefix of a Sequential nor a feature stage of this model; feature "
                     f"stages: {', '.join(stages) or 'none'}")


class _FirstOutput(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[0]


def default_layer(model_name: str, model: nn.Module) -> str:
    """The patch layer of a timm model: DenseNets' last dense block (the letter's), else its last feature stage."""
    if model_name.startswith("densenet"):
        return "features.denseblock4"
    stages = [f["module"] for f in getattr(model, "feature_info", [])]
    if not stages:
        raise ValueError(f"timm model {model_name!r} lists no feature stages; give the layer explicitly")
    return stages[-1]


class TimmPatchBackbone(nn.Module):
    """A timm CNN cut after ``layer``: (N, 1, S, S) in ``input_range`` -> (N, C, h, w).

    With ``in_chans=3`` the grayscale input is mapped to [0, 1], replicated to 3 channels and
    normalised with the ImageNet mean and standard deviation (what an ImageNet checkpoint
    expects). With ``in_chans=1`` the network takes the preprocessed image unchanged (a CNN
    pre-trained on this preprocessing, e.g. MSACL's one-channel ResNet18).

    Args:
        model_name: a timm model name (e.g. "densenet121").
        layer: the module whose output is the feature grid (None: :func:`default_layer`).
        state_dict: the full model's weights (timm key names; a classifier is ignored), or None
            for random initial weights (then set by ``load_state_dict`` of this module).
        input_range: the preprocessed images' value range.
        in_chans: 3 (ImageNet-style input) or 1 (the preprocessed image as it is).
    """

    def __init__(self, model_name: str, layer: str | None = None, state_dict: dict[str, Tensor] | None = None,
                 input_range: tuple[float, float] = (-1.0, 1.0), in_chans: int = 3) -> None:
        super().__init__()
        import timm

        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
        self.in_chans = in_chans
        try:
            model = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_chans)
        except RuntimeError as exc:  # timm: "Unknown model (...)"
            raise ValueError(f"backbone {model_name!r} is not a timm model ({exc})") from None
        if state_dict is not None:
            own = model.state_dict()
            usable = {k: v for k, v in state_dict.items() if k in own}
            missing = sorted(set(own) - set(usable))
            if missing:
                raise ValueError(f"the checkpoint lacks {len(missing)} of the {model_name} weights (e.g. {missing[0]}); "
                                 f"is it a timm {model_name} state dict?")
            wrong = [k for k, v in usable.items() if v.shape != own[k].shape]
            if wrong:
                raise ValueError(f"checkpoint {wrong[0]} has shape {tuple(usable[wrong[0]].shape)}, {model_name} "
                                 f"{tuple(own[wrong[0]].shape)}")
            model.load_state_dict(usable)
        self.model_name, self.layer = model_name, layer or default_layer(model_name, model)
        self.body = _cut(model, self.layer)
        low, high = input_range
        self.register_buffer("scale", torch.tensor(1.0 / (high - low)))
        self.register_buffer("low", torch.tensor(float(low)))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1))
        with torch.no_grad():
            self.out_channels = int(self.body.eval()(torch.zeros(1, in_chans, 64, 64)).shape[1])

    def forward(self, x: Tensor) -> Tensor:
        if self.in_chans == 1:
            return self.body(x)
        unit = (x - self.low) * self.scale
        return self.body((unit.expand(-1, 3, -1, -1) - self.mean) / self.std)


class Discriminator(nn.Module):
    """Normality logit of patch features: (..., C) -> (...).

    Args:
        in_dim: C.
        head: "linear" (the code's ``dsc_layers: 1``: one bias-free Linear) or "mlp" (the letter's
            MLP, as the code builds ``dsc_layers: 2``: Linear(C, hidden) → BatchNorm1d → LeakyReLU(0.2)
            → bias-free Linear(hidden, 1)).
        hidden: the MLP's width.

    Linear weights are xavier-normal (the code's ``init_weight``); biases and BatchNorm keep
    PyTorch's defaults.
    """

    def __init__(self, in_dim: int, head: Literal["linear", "mlp"] = "linear", hidden: int = 1024) -> None:
        super().__init__()
        if in_dim < 1 or hidden < 1:
            raise ValueError(f"in_dim and hidden must be >= 1, got {in_dim}, {hidden}")
        if head == "linear":
            self.body: nn.Module = nn.Identity()
            self.tail = nn.Linear(in_dim, 1, bias=False)
        elif head == "mlp":
            self.body = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2))
            self.tail = nn.Linear(hidden, 1, bias=False)
        else:
            raise ValueError(f"head must be 'linear' or 'mlp', got {head!r}")
        self.in_dim = in_dim
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)

    def forward(self, features: Tensor) -> Tensor:
        lead = features.shape[:-1]
        return self.tail(self.body(features.reshape(-1, self.in_dim))).reshape(lead)


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> Tensor:
    """scipy's 1-D Gaussian weights: radius ``int(truncate * sigma + 0.5)``, normalised to sum 1."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


class GaussianBlur(nn.Module):
    """Separable Gaussian blur of (N, S, S) maps, mirrored at the border as scipy's mode "reflect"
    (d c b a | a b c d | d c b a), so it equals ``scipy.ndimage.gaussian_filter(m, sigma)``."""

    def __init__(self, sigma: float, size: int) -> None:
        super().__init__()
        kernel = gaussian_kernel(sigma)
        r = (len(kernel) - 1) // 2
        if r >= size:
            raise ValueError(f"a blur of sigma {sigma} (radius {r}) needs maps larger than {size} px")
        index = list(range(r - 1, -1, -1)) + list(range(size)) + list(range(size - 1, size - 1 - r, -1))
        self.size = size
        self.register_buffer("index", torch.tensor(index, dtype=torch.long))
        self.register_buffer("kernel_w", kernel.reshape(1, 1, 1, -1))
        self.register_buffer("kernel_h", kernel.reshape(1, 1, -1, 1))

    def forward(self, maps: Tensor) -> Tensor:
        x = maps.unsqueeze(1).index_select(3, self.index)
        x = F.conv2d(x, self.kernel_w)
        x = F.conv2d(x.index_select(2, self.index), self.kernel_h)
        return x[:, 0]


class WSCXRScorer(nn.Module):
    """The detector: image (N, 1, S, S) -> (score (N,), heatmap (N, S, S)).

    Args:
        backbone: image -> feature grid (N, C, h, w) (frozen).
        discriminator: the trained :class:`Discriminator` on C channels.
        neighbourhood: p of :func:`neighbourhood_mean`.
        size: S, the input (and heatmap) side.
        blur_sigma: σ of the heatmap blur in pixels.
    """

    def __init__(self, backbone: nn.Module, discriminator: Discriminator, neighbourhood: int, size: int,
                 blur_sigma: float) -> None:
        super().__init__()
        self.backbone, self.discriminator = backbone, discriminator
        self.neighbourhood, self.size = neighbourhood, size
        self.blur = GaussianBlur(blur_sigma, size)

    def patch_features(self, x: Tensor) -> Tensor:
        """Aggregated feature grid (N, C, h, w)."""
        return neighbourhood_mean(self.backbone(x), self.neighbourhood)

    def patch_scores(self, x: Tensor) -> Tensor:
        """Anomaly score of every grid position, −D (N, h, w)."""
        return -self.discriminator(self.patch_features(x).permute(0, 2, 3, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        patches = self.patch_scores(x)
        score = patches.amax(dim=(1, 2))
        up = F.interpolate(patches.unsqueeze(1), size=(self.size, self.size), mode="bilinear", align_corners=False)
        return score, self.blur(up[:, 0])
