"""Evaluation report of a detector on labelled images: AUROC, AP, operating points, intervals, plot.

Operating points:
- ``normals``: the threshold chosen on the detector's own calibration normals (held out from
  training) at the requested specificity — the only one a new site could set without labels;
- ``youden``: the threshold maximising Youden's J on the evaluation labels themselves
  (optimistic; its bootstrap interval re-chooses the threshold in every resample);
- sensitivity at 90 % and 95 % specificity measured on the evaluation labels.
Every figure has a stratified bootstrap 95 % interval. Torch-free.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrscreen.engine import metrics as M


class LabelsError(ValueError):
    """The labels file is missing, malformed or has no usable rows."""


@dataclass(frozen=True)
class LabelledSet:
    """Labelled images, and the rows that had no label (not evaluated).

    Attributes:
        paths: the labelled files.
        labels: (N,) 0 normal / 1 abnormal.
        unlabelled_lines: line numbers of the labels file whose label was empty.
    """

    paths: list[Path]
    labels: np.ndarray  # (N,) 0/1
    unlabelled_lines: tuple[int, ...] = ()


def read_labels_csv(csv_path: Path, root: Path | None = None) -> LabelledSet:
    """Rows ``path,label`` (header required; other columns ignored; empty label = unknown, not evaluated).

    Paths are relative to ``root`` (default: the CSV's folder) unless absolute. Rows without a
    label are counted in :attr:`LabelledSet.unlabelled_lines` for the caller to report.

    Raises:
        LabelsError: unreadable or not UTF-8, no ``path``/``label`` header, a label other than
            0, 1 or empty, an empty path, one file with two different labels, or no labelled row.
    """
    csv_path = Path(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise LabelsError(f"{csv_path}: cannot read ({exc.strerror})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise LabelsError(f"{csv_path}: not a UTF-8 CSV file ({exc})") from exc
    if not rows or "path" not in rows[0] or "label" not in rows[0]:
        raise LabelsError(f"{csv_path}: needs a header with 'path' and 'label' columns")
    label_of: dict[Path, int] = {}
    unlabelled: list[int] = []
    for i, row in enumerate(rows, start=2):
        lab = (row["label"] or "").strip()
        if lab == "":
            unlabelled.append(i)
            continue
        if lab not in ("0", "1"):
            raise LabelsError(f"{csv_path}, line {i}: label must be 0, 1 or empty, got {lab!r}")
        text = (row["path"] or "").strip()
        if not text:
            raise LabelsError(f"{csv_path}, line {i}: the path is empty")
        p = Path(text) if Path(text).is_absolute() else root / text
        if label_of.setdefault(p, int(lab)) != int(lab):
            raise LabelsError(f"{csv_path}, line {i}: {text} is labelled both 0 and 1")
    if not label_of:
        raise LabelsError(f"{csv_path}: no labelled rows ({len(unlabelled)} rows with an empty label)")
    return LabelledSet(list(label_of), np.asarray(list(label_of.values()), dtype=np.int64), tuple(unlabelled))


def read_split_part(split_file: Path, part: str, root: Path | None = None) -> LabelledSet:
    """A labelled part of a development-protocol split file, e.g. ``dev_test`` ({normal, abnormal})."""
    import json

    from cxrscreen.engine.datasets import default_split_root

    try:
        d = json.loads(Path(split_file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise LabelsError(f"{split_file}: cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise LabelsError(f"{split_file}: not a JSON split file ({exc})") from exc
    if not isinstance(d, dict) or part not in d or not isinstance(d[part], dict) or not {"normal", "abnormal"} <= set(d[part]):
        raise LabelsError(f"{split_file}: no part {part!r} with 'normal' and 'abnormal' lists")
    root = Path(root) if root is not None else default_split_root(Path(split_file))
    normal, abnormal = d[part]["normal"], d[part]["abnormal"]
    return LabelledSet([root / p for p in normal + abnormal], np.r_[np.zeros(len(normal)), np.ones(len(abnormal))].astype(np.int64))


def _with_ci(labels: np.ndarray, scores: np.ndarray, fn, n_boot: int, seed: int) -> dict[str, Any]:
    value = fn(labels, scores)
    lo, hi = M.bootstrap_ci(labels, scores, fn, n_boot=n_boot, seed=seed)
    return {"value": value, "ci95": [lo, hi]}


def evaluation_report(labels: np.ndarray, scores: np.ndarray, normals_threshold: float, specificity: float,
                      n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """All figures of an evaluation (see module docstring)."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)

    def at(threshold_fn):
        def stat(name):
            return lambda yy, ss: getattr(M.confusion_at(yy, ss, threshold_fn(yy, ss)), name)
        return stat

    fixed = at(lambda yy, ss: normals_threshold)
    youden = at(M.youden_threshold)
    names = ("sensitivity", "specificity", "accuracy", "f1", "precision")
    report: dict[str, Any] = {
        "n": int(len(y)), "n_normal": int((y == 0).sum()), "n_abnormal": int((y == 1).sum()),
        "auroc": _with_ci(y, s, M.auroc, n_boot, seed),
        "ap": _with_ci(y, s, M.average_precision, n_boot, seed),
        "operating_points": {
            "normals": {"description": f"threshold at specificity {specificity:g} on the detector's held-out calibration normals",
                        "threshold": float(normals_threshold),
                        **{n: _with_ci(y, s, fixed(n), n_boot, seed) for n in names}},
            "youden": {"description": "threshold maximising Youden's J on these labels (optimistic)",
                       "threshold": M.youden_threshold(y, s),
                       **{n: _with_ci(y, s, youden(n), n_boot, seed) for n in names}},
        },
        "sensitivity_at_specificity": {
            f"{sp:.2f}": _with_ci(y, s, lambda yy, ss, sp=sp: M.sensitivity_at_specificity(yy, ss, sp), n_boot, seed)
            for sp in (0.90, 0.95)
        },
        "bootstrap": {"resamples": n_boot, "stratified": True, "level": 0.95, "seed": seed},
    }
    return report


def plot_report(labels: np.ndarray, scores: np.ndarray, report: dict[str, Any], out_png: Path, title: str) -> None:
    """ROC curve and per-class score histograms with the operating thresholds, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxrscreen.engine.atomic import atomic_path

    y, s = np.asarray(labels), np.asarray(scores)
    fpr, tpr, _ = M.roc_curve(y, s)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=110)
    auc = report["auroc"]
    ax1.plot(fpr, tpr, lw=2, color="#1f5fa8", label=f"AUROC {auc['value']:.3f} [{auc['ci95'][0]:.3f}, {auc['ci95'][1]:.3f}]")
    ax1.plot([0, 1], [0, 1], ls=":", color="grey")
    for key, color in (("normals", "#c0392b"), ("youden", "#27ae60")):
        op = report["operating_points"][key]
        ax1.plot(1 - op["specificity"]["value"], op["sensitivity"]["value"], "o", color=color, ms=8,
                 label=f"{key}: sens {op['sensitivity']['value']:.2f}, spec {op['specificity']['value']:.2f}")
    ax1.set(xlabel="1 − specificity", ylabel="sensitivity", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax1.legend(loc="lower right", fontsize=8)
    bins = np.linspace(s.min(), s.max(), 50)
    ax2.hist(s[y == 0], bins=bins, alpha=0.55, color="#1f5fa8", label=f"normal (n={int((y == 0).sum())})", density=True)
    ax2.hist(s[y == 1], bins=bins, alpha=0.55, color="#c0392b", label=f"abnormal (n={int((y == 1).sum())})", density=True)
    for key, color in (("normals", "#c0392b"), ("youden", "#27ae60")):
        ax2.axvline(report["operating_points"][key]["threshold"], color=color, ls="--", lw=1.5, label=f"{key} threshold")
    ax2.set(xlabel="anomaly score", ylabel="density", title="Scores by class")
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
