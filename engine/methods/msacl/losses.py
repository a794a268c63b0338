"""MSACL's loss terms (paper Eq. 1-9; imports torch). The method: ``engine.methods.msacl``.

Loss = ℓ_ctr + ℓ_MSACL + ℓ_aug + ℓ_pos, every weight 1 (Eq. 1). Projections are L2-normalised
before anything else (CCD ``models.py``: ``F.normalize(features, dim=1)``).

- :func:`class_centres`: c_k, the normalised mean of the class-k projections (Eq. 3), computed
  once with the initial network and frozen.
- :func:`centre_loss`: ℓ_ctr = mean_i ‖ẑ_i − c_{y_i}‖² (Eq. 2).
- :func:`msacl_loss`: the contrastive term on centred, normalised features
  v_i = (ẑ_i − c_{y_i}) / ‖ẑ_i − c_{y_i}‖ (Eq. 4-5), with its twin view as the positive and every
  other view as a negative, a negative of the anchor's own class weighted by κ in the
  denominator (Eq. 6-7): ℓ_i = −s_ip + log Σ_{j≠i} w_ij exp(s_ij), s = v·v / τ,
  w_ij = κ when y_j = y_i and j is not the twin, else 1. The paper gives neither τ nor κ: τ = 0.2
  (CCD ``configs/pretext/simclr_global.yml``) and κ = 0.05 (the same-class negative scale of
  MCL, CCD's source). Without centres and with κ = 1 it is SimCLR's NT-Xent.
- ℓ_aug and ℓ_pos are cross-entropies (Eq. 8-9): :func:`torch.nn.functional.cross_entropy`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_centres(projections: Tensor, labels: Tensor, classes: int) -> Tensor:
    """(classes, D): the normalised mean of each class's normalised projections (zero for an absent class)."""
    unit = F.normalize(projections, dim=1)
    centres = torch.zeros(classes, projections.shape[1], dtype=projections.dtype, device=projections.device)
    for k in range(classes):
        chosen = unit[labels == k]
        if len(chosen):
            centres[k] = F.normalize(chosen.mean(0), dim=0)
    return centres


def centre_loss(projections: Tensor, labels: Tensor, centres: Tensor) -> Tensor:
    """ℓ_ctr: mean squared distance of the normalised projections (N, D) to their class centres (K, D)."""
    return (F.normalize(projections, dim=1) - centres[labels]).pow(2).sum(1).mean()


def msacl_loss(projections: Tensor, labels: Tensor, twins: Tensor, temperature: float, kappa: float,
               centres: Tensor | None = None) -> Tensor:
    """ℓ_MSACL (see the module docstring).

    Args:
        projections: (N, D), not normalised.
        labels: (N,) augmentation classes.
        twins: (N,) index of each view's positive (its other weak view); ``twins[twins[i]] == i``.
        temperature: τ > 0.
        kappa: weight of a same-class negative in the denominator, in (0, 1].
        centres: (K, D) frozen class centres; None: plain normalised features.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 < kappa <= 1.0:
        raise ValueError(f"kappa must be in (0, 1], got {kappa}")
    n = len(projections)
    unit = F.normalize(projections, dim=1)
    if centres is not None:
        unit = F.normalize(unit - centres[labels], dim=1)
    logits = unit @ unit.T / temperature
    eye = torch.eye(n, dtype=torch.bool, device=projections.device)
    positive = torch.zeros_like(eye)
    positive[torch.arange(n, device=projections.device), twins] = True
    same_class = (labels.reshape(-1, 1) == labels.reshape(1, -1)) & ~positive & ~eye
    log_weights = torch.where(same_class, torch.full_like(logits, float(torch.log(torch.tensor(kappa)))),
                              torch.zeros_like(logits))
    masked = (logits + log_weights).masked_fill(eye, float("-inf"))
    return (torch.logsumexp(masked, dim=1) - logits[positive]).mean()
