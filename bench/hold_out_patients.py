"""The calibration hold-out by patient: how many held-out normals had a sibling in training, and did it matter?

For the dev split (``kermany/splits/dev.json``, 600 known normals, fraction 0.1): the hold-out
the engine draws now (whole patients, :func:`engine.datasets.split_calibration`) against the
per-image draw of earlier releases (every image a patient of its own; the same function without
patient keys), counting held-out images whose patient (:func:`engine.datasets.patient_of`, the
Kermany file names) has an image in training.

For each ``--pair DETECTOR.onnx:RUN_DIR`` trained with the per-image hold-out: where those
siblings' scores sit among the run's held-out normal scores (percentile; 50 on average if a
sibling in training taught the detector nothing about them), and the 95 % threshold
(Harrell–Davis) with and without them (the run's held-out normals scored here through the
ONNX graph, as ``bench/calibration_check.py`` scores).

    python bench/hold_out_patients.py [--pair DETECTOR.onnx:RUN_DIR ...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO / "bench")]
import dev_split  # noqa: E402


def siblings(train: list, held_out: list) -> np.ndarray:
    from cxrscreen.engine.datasets import patient_of

    in_training = {patient_of(p) for p in train}
    return np.array([patient_of(p) in in_training for p in held_out])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", action="append", default=[], help="DETECTOR.onnx:RUN_DIR")
    args = p.parse_args()
    dev_split.require()
    from cxrscreen.engine.datasets import split_calibration
    from cxrscreen.engine.detector import harrell_davis_threshold, read_metadata

    known = [dev_split.SPLIT.parent.parent / q for q in json.loads(dev_split.SPLIT.read_text())["train"]["known_normal"]]
    out: dict = {}
    for name, patients in (("per image (before)", {q: str(q) for q in known}), ("whole patients (now)", None)):
        train, cal = split_calibration(known, 0.1, patients=patients)
        sib = siblings(train, cal)
        out[name] = {"held_out": len(cal), "with_a_sibling_in_training": int(sib.sum())}
        print(f"{name}: {len(cal)} held out, {int(sib.sum())} with another image of their patient in training")
    from calibration_check import _scores

    from cxrscreen.engine.detector import Detector

    for pair in args.pair:
        model, run = (Path(x) for x in pair.split(":", 1))
        data = json.loads((run / "data.json").read_text())
        scores = _scores(Detector(model, provider="cpu"), [Path(q) for q in data["normal_calibration"]])
        sib = siblings(data["normal_train"], data["normal_calibration"])
        pct = (np.argsort(np.argsort(scores)) + 0.5) / len(scores) * 100
        t_all = harrell_davis_threshold(np.sort(scores), 0.95)
        t_without = harrell_davis_threshold(np.sort(scores[~sib]), 0.95)
        out[str(model)] = {"siblings": int(sib.sum()), "sibling_percentiles": pct[sib].round(1).tolist(),
                           "threshold_95": t_all, "threshold_95_without_siblings": t_without,
                           "model_id": read_metadata(model).model_id}
        print(f"{model.name}: siblings at percentiles {pct[sib].round().astype(int).tolist()} of the held-out "
              f"normals (mean {pct[sib].mean():.0f}); 95 % threshold {t_all:.5f}, without them {t_without:.5f}")
    dest = REPO / "bench" / "results" / "calibration" / "hold_out_patients.json"
    dest.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
