"""AMAE's networks (Bozorgtabar et al., "AMAE: Adaptation of Pre-Trained Masked Autoencoder for
Dual-Distribution Anomaly Detection in Chest X-Rays", MICCAI 2023): the stage-1 classifier head
and the two exported scorers.

- :class:`MLPHead`: a 3-layer MLP on mean-pooled, frozen encoder tokens; one logit,
  "synthetic anomaly" vs "normal". The features are first standardised with fixed statistics
  (the known normals' mean and standard deviation, set before training): pooled tokens vary
  little (std ~0.1) and a paste moves them less, which a plain MLP learns slowly.
- :class:`Stage1Scorer`: the stage-1 classifier as a detector of its own (normal-only
  setting): score = the head's logit on the mean-pooled patch tokens of the whole (unmasked)
  image; heatmap = the head applied to each patch token, bilinearly upsampled to the input.
- :class:`AMAEScorer`: stage 2's inter-discrepancy. Module A (trained on normal ∪
  pseudo-normal images) and module B (pseudo-abnormal) each reconstruct the image under L fixed
  masks; per pixel, the predictions of the masks that hid it are averaged (μ_A, μ_B), heatmap =
  |μ_A − μ_B|, score = its mean. The masks are buffers, so a score is reproducible and the
  whole detector is one graph.

Shapes: images (N, 1, S, S); heatmaps (N, S, S); scores (N,).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxrscreen.models.mae import MaskedAutoencoder, mask_indices


class MLPHead(nn.Module):
    """(features − mean) / std → Linear(D, hidden) → ReLU → Linear(hidden, hidden) → ReLU → Linear(hidden, 1).

    ``feature_mean`` and ``feature_std`` (D,) are fixed buffers (0 and 1 until
    :meth:`set_feature_statistics`). Applies to the last axis: features (..., D) -> logits (...).
    """

    def __init__(self, in_dim: int, hidden: int = 512) -> None:
        super().__init__()
        if in_dim < 1 or hidden < 1:
            raise ValueError(f"in_dim and hidden must be >= 1, got {in_dim}, {hidden}")
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def set_feature_statistics(self, features: Tensor) -> None:
        """Standardise with the mean and standard deviation of ``features`` (N, D)."""
        if features.dim() != 2 or features.shape[1] != self.feature_mean.shape[0] or len(features) < 2:
            raise ValueError(f"features must be (N >= 2, {self.feature_mean.shape[0]}), got {tuple(features.shape)}")
        self.feature_mean.copy_(features.mean(dim=0))
        self.feature_std.copy_(features.std(dim=0).clamp_min(1e-6))

    def forward(self, features: Tensor) -> Tensor:
        return self.net((features - self.feature_mean) / self.feature_std).squeeze(-1)


def pooled_tokens(mae: MaskedAutoencoder, x: Tensor) -> Tensor:
    """Mean of the encoder's patch tokens (class token excluded) for whole images: (N, D)."""
    return mae.encode_all(x)[:, 1:].mean(dim=1)


class Stage1Scorer(nn.Module):
    """The stage-1 detector: image (N, 1, S, S) -> (logit score (N,), patch-logit heatmap (N, S, S)).

    Args:
        mae: the pre-trained MAE whose (frozen) encoder the head was trained on.
        head: the trained :class:`MLPHead`.
    """

    def __init__(self, mae: MaskedAutoencoder, head: MLPHead) -> None:
        super().__init__()
        self.mae, self.head = mae, head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.mae.encode_all(x)[:, 1:]  # (N, L, D)
        score = self.head(tokens.mean(dim=1))
        g = self.mae.grid_size
        patch_logits = self.head(tokens).reshape(x.shape[0], 1, g, g)
        heatmap = F.interpolate(patch_logits, size=(self.mae.img_size, self.mae.img_size), mode="bilinear",
                                align_corners=False)
        return score, heatmap[:, 0]


class AMAEScorer(nn.Module):
    """The stage-2 detector: image (N, 1, S, S) -> (score (N,), heatmap |μ_A − μ_B| (N, S, S)).

    Args:
        module_a: MAE trained on normal ∪ pseudo-normal images.
        module_b: MAE trained on pseudo-abnormal images (same architecture).
        test_masks: (L, P) bool, True = masked; every patch must be masked by at least one.
    """

    def __init__(self, module_a: MaskedAutoencoder, module_b: MaskedAutoencoder, test_masks: Tensor) -> None:
        super().__init__()
        shape_a = (module_a.img_size, module_a.patch_size, module_a.in_chans)
        if shape_a != (module_b.img_size, module_b.patch_size, module_b.in_chans):
            raise ValueError("modules A and B must share image size, patch size and channels")
        if module_a.in_chans != 1:
            raise ValueError(f"AMAE scores single-channel images, the modules take {module_a.in_chans} channels")
        if test_masks.dim() != 2 or test_masks.shape[1] != module_a.num_patches or test_masks.dtype != torch.bool:
            raise ValueError(f"test_masks must be (L, {module_a.num_patches}) bool, "
                             f"got {tuple(test_masks.shape)} {test_masks.dtype}")
        hidden = test_masks.to(torch.float32)
        if not bool((hidden.sum(dim=0) > 0).all()):
            raise ValueError("every patch must be masked by at least one test mask (else it is never reconstructed)")
        self.module_a, self.module_b = module_a, module_b
        ids_keep, ids_restore = mask_indices(test_masks)
        self.register_buffer("test_masks", test_masks.clone())
        self.register_buffer("ids_keep", ids_keep)
        self.register_buffer("ids_restore", ids_restore)
        # per pixel, weight 1/(number of masks hiding it) for each mask that hides it, else 0
        p = module_a.patch_size
        weights = (hidden / hidden.sum(dim=0, keepdim=True)).unsqueeze(-1).expand(-1, -1, p * p)
        self.register_buffer("pixel_weights", module_a.unpatchify(weights.contiguous())[:, 0])  # (L, S, S)

    @property
    def n_masks(self) -> int:
        return int(self.test_masks.shape[0])

    def mean_reconstruction(self, mae: MaskedAutoencoder, x: Tensor) -> Tensor:
        """μ (N, S, S): each pixel's reconstruction averaged over the masks that hid it."""
        n, masks = x.shape[0], self.n_masks
        xr = x.repeat(masks, 1, 1, 1)  # mask-major: rows l*N .. l*N+N-1 use mask l
        keep = self.ids_keep.unsqueeze(1).expand(-1, n, -1).reshape(masks * n, -1)
        restore = self.ids_restore.unsqueeze(1).expand(-1, n, -1).reshape(masks * n, -1)
        rec = mae.unpatchify(mae.reconstruct(xr, keep, restore))  # (L*N, 1, S, S)
        rec = rec.reshape(masks, n, mae.img_size, mae.img_size)
        return (rec * self.pixel_weights.unsqueeze(1)).sum(dim=0)

    def reconstructions(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(μ_A, μ_B), each (N, S, S)."""
        return self.mean_reconstruction(self.module_a, x), self.mean_reconstruction(self.module_b, x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu_a, mu_b = self.reconstructions(x)
        heatmap = torch.abs(mu_a - mu_b)
        return heatmap.mean(dim=(1, 2)), heatmap
