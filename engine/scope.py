"""The out-of-scope gate: is this image a frontal chest radiograph like the ones a detector knows?

An anomaly detector scores *anything*: a colour photograph, a lateral view, a blank page or a
knee gets a number, and that number is as likely to read "not flagged" as "flagged". A score
is only evidence for images of the kind the detector was calibrated on, so every image passes
this gate before its score is shown as valid (``cxrscreen score``, ``cxrscreen eval`` and the
desktop app all call :meth:`ScopeGate.check` through :func:`engine.scoring.iter_scores` or
directly). An image that fails gets "out of scope: <reason>" and no score, flag or percentile.

Three layers, cheapest first:

1. **Header** (DICOM): modality other than a projection radiograph (CR, DX, DR, RG), a body
   part other than the chest, a lateral or oblique view position.
2. **Image**: real colour content (a photograph; gray images stored as RGB pass), a side under
   :data:`MIN_SIDE` pixels, an aspect ratio beyond :data:`MAX_ASPECT`, mostly one value (blank,
   a document or a text page), inverted polarity (the mediastinum darker than the lung fields),
   no lung fields (a bright central column with sides no darker than below the diaphragm).
3. **One-class model** (when the detector stores one, :class:`ScopeModel`): a PCA model of a
   16 × 16 thumbnail of the image, fitted on what the detector trained on (its training
   normals and its unlabeled images, which hold the site's abnormal studies); an image whose
   distance from that model exceeds the threshold set on the held-out calibration normals is
   unlike anything the detector was calibrated on. Detectors exported before the gate existed
   have no model: they get the header and image checks only (their card says so).

Torch-free and numpy-only (Pillow for the colour check): imported by the desktop app.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from PIL import Image

from cxrscreen.engine.io.types import Radiograph, RadiographMeta

FEATURE_SIDE = 16
FEATURE_NAME = "thumb16-zscore-v1"
MIN_SIDE = 64
MAX_ASPECT = 2.0
# header values that mean "not a frontal chest projection radiograph"
ACCEPTED_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
ACCEPTED_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "LUNGS", "CHEST_PA", "CHEST_AP", "TORSO"})
FRONTAL_VIEWS = frozenset({"PA", "AP", "POSTERO_ANTERIOR", "ANTERO_POSTERIOR", "AP SUPINE", "APS"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "LLO", "RLO", "LAO", "RAO", "LPO", "RPO",
                           "OBL", "OBLIQUE", "XTABLE", "CROSS-TABLE"})
# image checks (values chosen on synthetic chests and Kermany training normals, never dev_test)
COLOUR_CHROMA = 0.06        # mean |RGB - gray| (0..1) above which the content is colour
UNIFORM_BAND = 0.04         # pixels within this of the most common value count as "the same"
UNIFORM_FRACTION = 0.55     # above this fraction of "the same" pixels: mostly blank / a page
MIN_CONTRAST = 0.02         # standard deviation below this: blank (flat) image
POLARITY_MARGIN = 0.12      # lung fields brighter than the mediastinum by this (after stretch): inverted
NO_LUNGS_BELOW = 0.02       # sides hardly darker than below the diaphragm ...
NO_LUNGS_CENTRE = 0.6       # ... while the centre is far brighter: one bright column (a limb), no lung fields
# one-class model
N_COMPONENTS = 8
MIN_FIT = 50        # training images below which no model is stored (its threshold would mean nothing)
MIN_HELD_OUT = 5    # held-out normals below which no model is stored
THRESHOLD_MARGIN = 1.75     # the threshold is this times the largest held-out normal's distance


def thumbnail_features(pixels: np.ndarray) -> np.ndarray:
    """The one-class model's features: a 16 × 16 area-resized thumbnail, z-scored per image.

    Z-scoring removes exposure and window (a brighter or lower-contrast chest keeps its
    layout); the layout itself — dark lungs either side of a bright mediastinum, the diaphragm
    below — is what separates a frontal chest radiograph from a page, a photograph, a limb or a
    negative. Stretching (not cropping) keeps the whole field, whatever the aspect.

    Args:
        pixels: (H, W) float array in [0, 1] (``Radiograph.pixels``).

    Returns:
        (256,) float32.
    """
    img = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))
    t = np.asarray(img.resize((FEATURE_SIDE, FEATURE_SIDE), resample=Image.Resampling.BILINEAR), dtype=np.float64)
    sd = t.std()
    t = (t - t.mean()) / sd if sd > 1e-6 else np.zeros_like(t)
    return t.ravel().astype(np.float32)


@dataclass(frozen=True)
class ScopeModel:
    """A one-class model of the frontal chest radiographs a detector was fitted on.

    Distance of a feature vector x (see :func:`thumbnail_features`): the Mahalanobis distance
    in the first ``k`` principal components plus the residual outside them scaled by its mean
    normal variance, divided by the number of dimensions (about 1 for a typical normal).

    Attributes:
        mean: (D,) feature mean of the fitting normals.
        components: (k, D) principal axes, orthonormal rows.
        variances: (k,) variance along each axis.
        residual_variance: mean variance per dimension outside the axes.
        threshold: distances above this are out of scope.
        n_fit: normals the model was fitted on.
        n_threshold: held-out normals the threshold was set on.
        max_held_out: the largest held-out normal distance.
        feature: the feature definition's name (a model is refused for another feature).
    """

    mean: tuple[float, ...]
    components: tuple[tuple[float, ...], ...]
    variances: tuple[float, ...]
    residual_variance: float
    threshold: float
    n_fit: int
    n_threshold: int
    max_held_out: float
    feature: str = FEATURE_NAME

    def __post_init__(self) -> None:
        if self.feature != FEATURE_NAME:
            raise ValueError(f"scope model feature {self.feature!r} is not supported (this version computes {FEATURE_NAME!r})")
        d = len(self.mean)
        if d != FEATURE_SIDE * FEATURE_SIDE:
            raise ValueError(f"scope model mean has {d} values, expected {FEATURE_SIDE * FEATURE_SIDE}")
        if len(self.components) != len(self.variances) or any(len(c) != d for c in self.components):
            raise ValueError("scope model components must be (k, D) with k variances")
        if not (self.residual_variance > 0 and all(v > 0 for v in self.variances)):
            raise ValueError("scope model variances must be positive")
        if not self.threshold > 0:
            raise ValueError(f"scope model threshold must be positive, got {self.threshold!r}")

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Distances of (N, D) (or (D,)) feature vectors; (N,) float64."""
        x = np.atleast_2d(np.asarray(features, dtype=np.float64)) - np.asarray(self.mean)
        comps = np.asarray(self.components, dtype=np.float64)
        proj = x @ comps.T
        inside = (proj ** 2 / np.asarray(self.variances)).sum(axis=1)
        residual = (x ** 2).sum(axis=1) - (proj ** 2).sum(axis=1)
        return (inside + np.maximum(residual, 0.0) / self.residual_variance) / x.shape[1]

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "mean": list(self.mean), "components": [list(c) for c in self.components],
                "variances": list(self.variances), "residual_variance": self.residual_variance,
                "threshold": self.threshold, "n_fit": self.n_fit, "n_threshold": self.n_threshold,
                "max_held_out": self.max_held_out}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScopeModel":
        return cls(mean=tuple(float(v) for v in d["mean"]),
                   components=tuple(tuple(float(v) for v in c) for c in d["components"]),
                   variances=tuple(float(v) for v in d["variances"]),
                   residual_variance=float(d["residual_variance"]), threshold=float(d["threshold"]),
                   n_fit=int(d["n_fit"]), n_threshold=int(d["n_threshold"]),
                   max_held_out=float(d["max_held_out"]), feature=str(d.get("feature", "")))


def fit_scope_model(fit_features: np.ndarray, held_out_features: np.ndarray,
                    n_components: int = N_COMPONENTS, margin: float = THRESHOLD_MARGIN) -> ScopeModel:
    """Fit the one-class model on known normals; set its threshold on held-out normals.

    Args:
        fit_features: (N, D) features of the images the detector trained on (N >= 2): its
            training normals and its unlabeled images, so that abnormal chests are in scope.
        held_out_features: (M, D) features of normals the model was not fitted on (M >= 1);
            the threshold is ``margin`` times their largest distance.
        n_components: principal axes kept (at most N − 1).
        margin: how far beyond the held-out normals an image may lie (> 1).

    Raises:
        ValueError: too few normals or a bad margin.
    """
    x = np.asarray(fit_features, dtype=np.float64)
    h = np.asarray(held_out_features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"the scope model needs at least 2 fitting normals, got {len(x)}")
    if h.ndim != 2 or len(h) < 1 or h.shape[1] != x.shape[1]:
        raise ValueError(f"the scope model needs held-out normals with {x.shape[1]} features, got shape {h.shape}")
    if not margin > 1.0:
        raise ValueError(f"margin must be > 1, got {margin!r}")
    mean = x.mean(axis=0)
    xc = x - mean
    _, sv, vt = np.linalg.svd(xc, full_matrices=False)
    k = max(1, min(n_components, len(x) - 1))
    var = sv ** 2 / max(1, len(x) - 1)
    floor = max(float(var.sum()) * 1e-4, 1e-8)  # a flat direction must not make distances explode
    comps, variances = vt[:k], np.maximum(var[:k], floor)
    residual = max(float(var[k:].sum()) / max(1, x.shape[1] - k), floor)
    model = ScopeModel(tuple(mean.tolist()), tuple(tuple(c) for c in comps.tolist()), tuple(variances.tolist()),
                       residual, threshold=1.0, n_fit=len(x), n_threshold=len(h), max_held_out=0.0)
    top = float(model.distance(h).max())
    return ScopeModel(model.mean, model.components, model.variances, model.residual_variance,
                      threshold=max(top * margin, 1e-6), n_fit=len(x), n_threshold=len(h), max_held_out=top)


def _norm(value: str | None) -> str:
    return (value or "").strip().upper()


def header_reason(meta: RadiographMeta) -> str | None:
    """Why the header says this is no frontal chest radiograph, or None."""
    modality = _norm(meta.modality)
    if modality and modality not in ACCEPTED_MODALITIES:
        return f"modality {modality} (a projection radiograph is CR, DX, DR or RG)"
    body = _norm(meta.body_part)
    if body and body not in ACCEPTED_BODY_PARTS:
        return f"body part {body} (not the chest)"
    view = _norm(meta.view_position)
    if view in LATERAL_VIEWS:
        return f"{'lateral' if view in {'LL', 'RL', 'LAT', 'LATERAL', 'LLD', 'RLD', 'XTABLE', 'CROSS-TABLE'} else 'oblique'} view ({view}); the detector reads frontal views"
    return None


def colour_chroma(meta: RadiographMeta) -> float | None:
    """Mean |RGB − gray| (0..1) of a colour raster file, from a small decoded copy; None for gray files."""
    if meta.format == "dicom" or _norm(meta.photometric) in ("", "MONOCHROME1", "MONOCHROME2"):
        return None
    try:
        with Image.open(meta.path) as im:
            im.draft("RGB", (128, 128))
            im.thumbnail((128, 128))
            rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:  # the gray read succeeded; a colour re-read that fails says nothing
        raise ValueError(f"cannot re-read {meta.path.name} in colour: {exc}") from exc
    gray = rgb.mean(axis=2, keepdims=True)
    return float(np.abs(rgb - gray).mean())


def image_reason(pixels: np.ndarray, meta: RadiographMeta) -> str | None:
    """Why the pixels are no frontal chest radiograph (colour, size, aspect, blank, page, inverted), or None."""
    h, w = pixels.shape
    if min(h, w) < MIN_SIDE:
        return f"image too small ({w} × {h} px; at least {MIN_SIDE} px per side)"
    if max(h, w) / min(h, w) > MAX_ASPECT:
        return f"aspect ratio {max(h, w) / min(h, w):.1f} (a chest radiograph is within {MAX_ASPECT:g}:1)"
    if _norm(meta.photometric) in ("RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR", "CMYK") and meta.format == "dicom":
        return f"colour DICOM ({meta.photometric})"
    try:
        chroma = colour_chroma(meta)
    except ValueError:
        chroma = None
    if chroma is not None and chroma > COLOUR_CHROMA:
        return f"colour image (mean colour deviation {chroma:.2f}); a radiograph is gray"
    small = np.asarray(Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))
                       .resize((64, 64), resample=Image.Resampling.BILINEAR), dtype=np.float64)
    if small.std() < MIN_CONTRAST:
        return "blank image (no contrast)"
    hist, edges = np.histogram(small, bins=50, range=(0.0, 1.0))
    mode = edges[int(np.argmax(hist))] + 0.01
    same = float((np.abs(small - mode) <= UNIFORM_BAND).mean())
    if same > UNIFORM_FRACTION:
        return f"mostly uniform ({100 * same:.0f} % of the image one value): blank, a document or a text page"
    lo, hi = np.percentile(small, [2, 98])
    z = np.clip((small - lo) / max(hi - lo, 1e-6), 0, 1)
    # frontal chest: the mediastinum (centre strip) is brighter than the lung fields either side
    centre = z[16:48, 28:36].mean()
    lungs = 0.5 * (z[16:44, 8:22].mean() + z[16:44, 42:56].mean())
    if lungs - centre > POLARITY_MARGIN:
        return "inverted polarity (the lung fields are brighter than the mediastinum)"
    # below the diaphragm (upper abdomen) a frontal chest is brighter than its lung fields; a limb's
    # sides are air or soft tissue from top to bottom around one bright column of bone
    below = 0.5 * (z[54:62, 8:22].mean() + z[54:62, 42:56].mean())
    if below - lungs < NO_LUNGS_BELOW and centre - lungs > NO_LUNGS_CENTRE:
        return "no lung fields (one bright column between uniform sides, as in a limb)"
    return None


@dataclass(frozen=True)
class ScopeGate:
    """All three layers for one detector.

    Attributes:
        model: the detector's one-class model, or None (header and image checks only).
        note: why there is no model (empty: a detector made before the gate).
    """

    model: ScopeModel | None = None
    note: str = ""

    @classmethod
    def from_metadata(cls, scope: dict[str, Any] | None) -> "ScopeGate":
        """The gate a detector's ``scope`` metadata describes (empty or None: no one-class model)."""
        if not scope or not scope.get("model"):
            return cls(None, str((scope or {}).get("note") or ""))
        return cls(ScopeModel.from_dict(scope["model"]))

    @property
    def description(self) -> str:
        """One sentence for the detector card."""
        base = ("header (modality, body part, view) and image checks (colour, size, aspect, blank or page, "
                "polarity, lung fields)")
        if self.model is None:
            why = self.note or "a detector made before the gate"
            return base + f"; no model of this detector's training images ({why}): images unlike them are not caught"
        return (base + f"; a one-class model of its training images ({self.model.n_fit} fitted, threshold "
                f"{THRESHOLD_MARGIN:g} × the farthest of {self.model.n_threshold} held-out normals)")

    def check(self, radiograph: Radiograph) -> str | None:
        """Why ``radiograph`` is out of scope for this detector, or None when it is in scope."""
        reason = header_reason(radiograph.meta) or image_reason(radiograph.pixels, radiograph.meta)
        if reason is None and self.model is not None:
            d = float(self.model.distance(thumbnail_features(radiograph.pixels))[0])
            if d > self.model.threshold:
                reason = (f"unlike the chest radiographs this detector was calibrated on "
                          f"(distance {d:.1f}, limit {self.model.threshold:.1f})")
        return reason


def fit_from_pixels(fit_pixels: Iterable[np.ndarray], held_out_pixels: Iterable[np.ndarray]) -> ScopeModel:
    """:func:`fit_scope_model` from decoded images (``Radiograph.pixels``)."""
    fit = np.stack([thumbnail_features(p) for p in fit_pixels])
    held = np.stack([thumbnail_features(p) for p in held_out_pixels])
    return fit_scope_model(fit, held)
