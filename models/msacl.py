"""MSACL's networks (Tian et al., "Self-supervised Multi-class Pre-training for Unsupervised Anomaly
Detection and Segmentation in Medical Images", MedIA 2023; its predecessor CCD,
github.com/tianyu0207/CCD, fills what the paper leaves out). The method and its choices:
``engine.methods.msacl``.

- :func:`resnet18_encoder`: timm ResNet18 with one input channel, random initial weights,
  no classifier: image (N, 1, S, S) -> pooled feature (N, 512).
- :class:`MSACLNet`: the encoder with the three training heads:
  the projection head (CCD ``colon_global/models/models.py``: Linear 512→512, ReLU, →128),
  the 4-way augmentation classifier (how many MedMix lesions a view holds, 0-3) and the
  8-way relative patch position head (CCD ``colon_local/models/models.py``: each patch's
  feature through Linear 512→512 + ReLU, their difference through Linear 512→128, ReLU,
  →8).

Only the encoder outlives pre-training: the detectors (``models.padim``) use its stages.
Shapes: images and views (N, 1, S, S); patches (N, 1, K, K); features (N, 512).
"""
from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

FEATURE_DIM = 512  # ResNet18's pooled feature
PROJECTION_DIM = 128  # CCD features_dim
AUG_CLASSES = 4  # A0 (weak only) .. A3 (three MedMix lesions)
POSITIONS = 8  # the 8 neighbours of a patch (CCD colon_local/lag_loader.py pos_to_diff)


def resnet18_encoder() -> nn.Module:
    """timm ResNet18, one input channel, random weights, global average pool, no classifier."""
    import timm

    return timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=0)


class MSACLOutput(NamedTuple):
    """Per view: encoder feature (N, 512), projection (N, 128, not normalised), augmentation logits (N, 4)."""

    features: Tensor
    projection: Tensor
    aug_logits: Tensor


class MSACLNet(nn.Module):
    """The encoder and MSACL's training heads (see the module docstring).

    Args:
        encoder: image (N, 1, S, S) -> (N, 512) (default: :func:`resnet18_encoder`).
    """

    def __init__(self, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder if encoder is not None else resnet18_encoder()
        self.projection = nn.Sequential(nn.Linear(FEATURE_DIM, FEATURE_DIM), nn.ReLU(),
                                        nn.Linear(FEATURE_DIM, PROJECTION_DIM))
        self.aug_head = nn.Linear(FEATURE_DIM, AUG_CLASSES)
        self.pos_embed = nn.Sequential(nn.Linear(FEATURE_DIM, FEATURE_DIM), nn.ReLU())
        self.pos_head = nn.Sequential(nn.Linear(FEATURE_DIM, PROJECTION_DIM), nn.ReLU(),
                                      nn.Linear(PROJECTION_DIM, POSITIONS))

    def forward(self, views: Tensor) -> MSACLOutput:
        features = self.encoder(views)
        return MSACLOutput(features, self.projection(features), self.aug_head(features))

    def position_logits(self, first: Tensor, second: Tensor) -> Tensor:
        """Logits (N, 8) of where ``second`` (N, 1, K, K) lies around ``first`` (CCD: h1 − h2)."""
        return self.pos_head(self.pos_embed(self.encoder(first)) - self.pos_embed(self.encoder(second)))
