"""Site calibrations: an operating point set on reader-confirmed normals of a site's own images.

A detector's promise ("95 % specificity") comes from its calibration normals. On another
acquisition batch the normals may score higher (:mod:`engine.drift` says when); scoring some
normals of that batch, confirmed by a reader, re-sets the threshold without retraining. The
detector file is never touched: a site calibration is a small JSON file beside it (or in the
model library's card), naming the detector it belongs to::

    {"kind": "cxrscreen.site_calibration", "schema": 1, "model_id": ..., "created": ...,
     "calibration": {NormalCalibration.to_dict(), with "name"}}

It keeps the detector's heatmap quantiles (heatmap colours keep meaning the same evidence) and
replaces only the normal scores. The honest-calibration rule holds as for the detector's own
calibration: a threshold at specificity ``s`` needs at least ``1 / (1 − s)`` normals
(:meth:`NormalCalibration.normals_needed`); with fewer it is still made, with a warning.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np

from cxrscreen.engine.acquisition import BANDS, AcquisitionReference
from cxrscreen.engine.acquisition import MIN_IMAGES as ACQ_MIN_IMAGES
from cxrscreen.engine.detector import NormalCalibration

KIND = "cxrscreen.site_calibration"
SCHEMA = 1
MAX_NAME = 120


class SiteCalibrationError(ValueError):
    """A site calibration cannot be made or read.

    Attributes:
        reason: what is wrong.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def check_name(name: str) -> str:
    """A site calibration's name, whitespace collapsed.

    Raises:
        SiteCalibrationError: empty or longer than :data:`MAX_NAME` characters.
    """
    clean = " ".join(str(name).split())
    if not clean:
        raise SiteCalibrationError("a site calibration needs a name (e.g. the site or the batch)")
    if len(clean) > MAX_NAME:
        raise SiteCalibrationError(f"a site calibration name has at most {MAX_NAME} characters, got {len(clean)}")
    return clean


def site_calibration(scores: np.ndarray, base: NormalCalibration, name: str, source: str = "",
                     descriptors: np.ndarray | None = None) -> NormalCalibration:
    """A calibration on a site's confirmed normals, with ``base``'s heatmap quantiles.

    Args:
        scores: (n,) scores of the confirmed normals, n >= 1, finite.
        base: the detector's own calibration (its heatmap quantiles are kept).
        name: the site calibration's name.
        source: where the normals came from (default: "reader-confirmed normals").
        descriptors: (k, 4) acquisition descriptors of (some of) these normals
            (:mod:`engine.acquisition`); with at least :data:`engine.acquisition.MIN_IMAGES`
            finite ones they become the calibration's acquisition reference, so folders are
            checked against the site's own normals while it is in use.

    Raises:
        SiteCalibrationError: no scores, non-finite scores, or a bad name.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if s.size == 0:
        raise SiteCalibrationError("a site calibration needs at least one confirmed normal with a score")
    if not np.all(np.isfinite(s)):
        raise SiteCalibrationError("the confirmed normals' scores must be finite")
    reference = None
    if descriptors is not None and np.size(descriptors):
        d = np.asarray(descriptors, dtype=np.float64).reshape(-1, len(BANDS))
        d = d[np.all(np.isfinite(d), axis=1)]
        if len(d) >= ACQ_MIN_IMAGES:
            reference = AcquisitionReference.from_descriptors(d)
    return NormalCalibration(tuple(float(v) for v in s), base.heatmap_quantile_levels, base.heatmap_quantiles,
                             source=source or f"{s.size} reader-confirmed normals", name=check_name(name),
                             acquisition=reference)


def to_json(calibration: NormalCalibration, model_id: str) -> str:
    """The file text of a site calibration of the detector ``model_id``."""
    if not calibration.name:
        raise SiteCalibrationError("only a named (site) calibration is written to its own file")
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return json.dumps({"kind": KIND, "schema": SCHEMA, "model_id": model_id, "created": created,
                       "calibration": calibration.to_dict()}, indent=2, sort_keys=True)


def from_dict(d: Any, model_id: str | None = None) -> NormalCalibration:
    """Read a site calibration's JSON object; with ``model_id``, check it belongs to that detector.

    Raises:
        SiteCalibrationError: not a site calibration, another detector's, or invalid.
    """
    if not isinstance(d, dict) or d.get("kind") != KIND:
        raise SiteCalibrationError(f"not a cxrscreen site calibration (no \"kind\": \"{KIND}\")")
    if d.get("schema") != SCHEMA:
        raise SiteCalibrationError(f"unsupported site calibration schema {d.get('schema')!r} (this version reads {SCHEMA})")
    if model_id is not None and d.get("model_id") != model_id:
        raise SiteCalibrationError(f"this site calibration belongs to detector {d.get('model_id')}, not to {model_id}")
    try:
        cal = NormalCalibration.from_dict(d["calibration"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SiteCalibrationError(f"invalid site calibration: {exc}") from exc
    if not cal.name:
        raise SiteCalibrationError("invalid site calibration: it has no name")
    return cal


def read_file(path: Path, model_id: str | None = None) -> NormalCalibration:
    """Read a site calibration file (see :func:`from_dict`).

    Raises:
        SiteCalibrationError: unreadable, not JSON, or invalid (the message names the file).
    """
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SiteCalibrationError(f"{path}: cannot read a site calibration ({exc.__class__.__name__}: {exc})") from exc
    try:
        return from_dict(d, model_id)
    except SiteCalibrationError as exc:
        raise SiteCalibrationError(f"{path}: {exc.reason}") from None
