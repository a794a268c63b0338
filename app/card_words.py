"""The detector card in words: training settings and data as sentences, and its intended use.

The metadata stores training settings as the engine's configuration (JSON); a reader wants
"Epochs 250; batch size 64; learning rate 0.0001", not ``{"batch_size": 64, ...}``. Keys
this module does not know are still shown, with underscores turned into spaces.
"""
from __future__ import annotations

from typing import Any

from cxrscreen.engine.detector import DetectorMetadata, NormalCalibration

SETTING_WORDS: dict[str, str] = {
    "epochs": "Epochs", "batch_size": "Batch size", "lr": "Learning rate", "betas": "Adam betas",
    "weight_decay": "Weight decay", "members": "Networks per module (K)", "backbone": "Backbone",
    "latent_size": "Latent size", "multiplier": "Width multiplier", "score_type": "Score map",
    "score_top_fraction": "Score: mean of the map's highest pixels (share; 1 = whole map)", "seed": "Random seed",
    "precision": "Precision", "layout": "Network layout", "augment": "Augmentation", "size": "Input size (px)",
    "aspect": "Aspect", "intensity": "Intensity", "output_range": "Input range", "preset": "Preset",
    "pretrain_epochs": "MAE pre-training epochs", "stage1_epochs": "Stage 1 epochs", "module_b": "Module B trains on",
    "ensemble_of": "Ensemble of", "standardisation": "Standardisation", "test_time_views": "Test-time views",
}
_SKIP = {"file_list_sha256", "run_dir", "environment", "config", "source", "note", "member_runs"}


def _words(key: str) -> str:
    return SETTING_WORDS.get(key, key.replace("_", " ").capitalize())


def value_words(v: Any) -> str:
    """A setting's value as text: yes/no, numbers without noise, lists with commas."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(value_words(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{_words(k)} {value_words(x)}" for k, x in v.items())
    return str(v)


def settings_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    """One row per setting (preprocessing flattened in), in the configuration's order."""
    rows: list[tuple[str, str]] = []
    for k, v in config.items():
        if k == "preprocess" and isinstance(v, dict):
            rows += [(_words(pk), value_words(pv)) for pk, pv in v.items()]
        else:
            rows.append((_words(k), value_words(v)))
    return rows


def training_rows(training: dict[str, Any]) -> list[tuple[str, str]]:
    """The training section: images used in one sentence, the time, then every setting."""
    rows: list[tuple[str, str]] = []
    counts = [(training.get("normal_train"), "known normals for training"),
              (training.get("normal_calibration"), "held out to calibrate (never trained on)"),
              (training.get("unlabeled"), "unlabeled images"),
              (training.get("abnormal") or None, "confirmed-abnormal images")]
    used = [f"{n} {what}" for n, what in counts if isinstance(n, int)]
    if used:
        skipped = training.get("skipped")
        rows.append(("Images", ", ".join(used) + (f"; {skipped} unreadable left out" if skipped else "")))
    hold_out = training.get("source", {}).get("hold_out") if isinstance(training.get("source"), dict) else None
    if isinstance(hold_out, dict):
        rows.append(("Calibration hold-out", hold_out_words(hold_out)))
    anomalies = training.get("anomalies")
    if isinstance(anomalies, dict):
        rows.append(("Confirmed anomalies", anomalies_words(anomalies)))
    seconds = training.get("train_seconds")
    if isinstance(seconds, (int, float)):
        m, s = divmod(int(round(seconds)), 60)
        h, m = divmod(m, 60)
        rows.append(("Training time", (f"{h} h {m} min" if h else f"{m} min {s} s")))
    config = training.get("config")
    if isinstance(config, dict):
        rows += settings_rows(config)
    members = training.get("member_runs")
    if isinstance(members, list):  # an ensemble (engine.ensemble): one row per member run
        rows += [(f"Member {i}", member_words(m)) for i, m in enumerate(members, 1) if isinstance(m, dict)]
    rows += [(_words(k), value_words(v)) for k, v in training.items()
             if k not in _SKIP and k not in ("normal_train", "normal_calibration", "unlabeled", "abnormal", "anomalies",
                                             "skipped", "train_seconds", "test_time_views")]
    return rows


def views_words(views: dict[str, Any]) -> str:
    """How the file scores an image when it runs test-time views (engine.export.VIEW_SETS)."""
    shown = [v for v in views.get("views", []) if isinstance(v, (list, tuple)) and len(v) == 3]
    others = [v for v in shown if tuple(float(x) for x in v) != (1.0, 0.0, 0.0)]
    if not others:
        return "each image as read"
    parts = []
    for zoom, across, down in others:
        what = []
        if float(zoom) != 1.0:
            what.append(f"magnified {float(zoom):g}×")
        if float(across):
            what.append(f"shifted {100 * abs(float(across)):g} % {'right' if float(across) > 0 else 'left'}")
        if float(down):
            what.append(f"shifted {100 * abs(float(down)):g} % {'down' if float(down) > 0 else 'up'}")
        parts.append(" and ".join(what) or "as read")
    return (f"the mean score of the image as read and {len(others)} re-framings of it ({', '.join(parts)}); the "
            "heatmap is their maps, each mapped back onto the image; calibrated on those mean scores")


def hold_out_words(hold_out: dict[str, Any]) -> str:
    """How the calibration normals were held out (engine.datasets.hold_out_unit)."""
    if hold_out.get("unit") == "patient":
        return (f"whole patients: {hold_out.get('patients', '?')} of {hold_out.get('of', '?')} (identified by "
                f"{hold_out.get('key', '?')}); none has an image in training")
    if hold_out.get("patients_known") is False:
        return ("single images: the files name no patient (no DICOM PatientID, no known file-name pattern), so two "
                "images of one patient may be split between training and calibration")
    shared = hold_out.get("shared", "?")
    return (f"single images; {shared} share a patient (DICOM PatientID or file-name pattern) with training images, "
            "so the operating point may be slightly optimistic")


def member_words(member: dict[str, Any]) -> str:
    """One member of an ensemble: method, network, score, its standardisation and its own training."""
    t = member.get("training") if isinstance(member.get("training"), dict) else {}
    seconds = t.get("train_seconds")
    parts = [f"{str(member.get('method', '?')).upper()} {member.get('backbone', '')} ({member.get('score_type', '?')})"]
    if isinstance(member.get("score_loc"), (int, float)) and isinstance(member.get("score_scale"), (int, float)):
        parts.append(f"score (s − {member['score_loc']:.4g}) / {member['score_scale']:.4g}")
    if isinstance(seconds, (int, float)):
        parts.append(f"trained {int(round(seconds)) // 60} min")
    if t.get("run_sha256"):
        parts.append(f"run {str(t['run_sha256'])[:12]}")
    return "; ".join(parts)


def anomalies_words(anomalies: dict[str, Any]) -> str:
    """Where a weakly supervised detector's confirmed-abnormal images came from, and how many:
    K drawn from a split's few-shot list (with its seed), a reader's marks, or a folder."""
    k, origin = anomalies.get("k", "?"), anomalies.get("from")
    if origin == "split fewshot.abnormal":
        return (f"K = {k} of the split's {anomalies.get('of', '?')} few-shot anomalies, drawn "
                f"{anomalies.get('draw', 'at random')} with seed {anomalies.get('seed', '?')}")
    if origin == "reader marks":
        return f"K = {k} images a reader marked confirmed abnormal"
    if origin == "folder":
        return f"K = {k}: every readable image of a confirmed-abnormal folder"
    return f"K = {k} ({value_words(anomalies)})"


def intended_use_rows(meta: DetectorMetadata, active: NormalCalibration | None = None) -> list[tuple[str, str]]:
    """What the detector is for, and where its scores stop meaning anything.

    Args:
        meta: the detector's metadata.
        active: the site calibration in use (None: the detector's own); the operating points
            are those it supports, since its thresholds are the ones that flag.
    """
    cal: NormalCalibration = active or meta.calibration
    supported = [s for s in (0.90, 0.95, 0.99) if cal.supports(s)]
    floored = cal.floor_levels(tuple(s for s in (0.90, 0.95, 0.99) if not cal.supports(s)))
    ops = (", ".join(f"{100 * s:g} %" for s in supported) + " specificity") if supported else "none of 90 / 95 / 99 %"
    n = sum(v for k, v in meta.training.items() if k in ("normal_train", "unlabeled", "abnormal") and isinstance(v, int))
    synthetic = "synthetic" in (meta.name or "").lower() or "demo" in (meta.name or "").lower()
    return [
        ("Intended use", "Ranking frontal (PA/AP) chest radiographs by how unusual they look, as a second look for "
                         "a reader: the worklist order, the flag and the heatmap are evidence, not a diagnosis."),
        ("Trained on", (f"{n} images" if n else "images") + " of one site's population"
                       + (" — synthetic images: a demonstration, not for clinical images" if synthetic else "")),
        ("Limitations", "Not a medical device; not validated for clinical use. Scores mean something only for "
                        "images like the training images: other views, body parts, children vs adults, other "
                        "devices or processing may score high or low for reasons unrelated to disease (images "
                        "unlike them are marked out of scope). A normal-looking score does not rule out disease."),
        ("Operating points", (f"The {cal.n_normals} normals of the site calibration “{cal.name}” (in use)" if cal.name
                              else f"{cal.n_normals} calibration normals")
         + f" support {ops} (a threshold at specificity s needs at least 1 / (1 − s) normals)"
         + (f"; at {', '.join(floored)} the threshold rests on "
            f"{len(cal.training_normal_scores)} training normals (the training-normal floor)." if floored else ".")),
    ]


# what NormalCalibration.threshold_method means, in the card's words
THRESHOLD_WORDS = {
    "harrell-davis": "Harrell–Davis: a weighted mean of all normal scores around the rank that passes the "
                     "specificity asked of new normals on average (steadier than one normal's score)",
    "higher": "the normal score at the specificity asked (no more of these normals above it than allowed); "
              "a detector made before the Harrell–Davis estimate",
}
