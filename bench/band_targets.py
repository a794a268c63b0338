"""The band strengths that ``intensity="equalize-bands"`` normalises to, and how batches differ in them.

``engine.preprocess.BAND_TARGETS`` is the median strength of each detail band over the dev
protocol's 600 known normals (training images: never dev_test), preprocessed as DDAD's default
preset does before the band step (exposed-field crop, 64 px, equalised). This script measures
them (the values to write into ``BAND_TARGETS``), and, as a diagnosis, the same medians for the
real other batch's 8 normals and 8 pneumonia originals and for the known normals under
``bench/shift.py``'s processing shifts: a batch processed differently sits apart in these
numbers, and that is what the band step removes.

``--cue`` also asks how much the band strengths alone tell pneumonia from normal: the AUROC of
each band's weakness (minus its strength) as a score, on the unlabeled pool (whose labels the
methods never see) and on dev_test. Nothing is chosen from it; it says what a detector loses
(a real cue, or an acquisition difference between the data set's normal and pneumonia images)
when the bands are fixed.

    python bench/band_targets.py [--size 64] [--cue]
"""
from __future__ import annotations

import argparse
import csv
import json

import numpy as np

import shift  # bench/ is on sys.path

OUT = shift.REPO / "bench" / "results" / "shift" / "band_targets.json"


def main() -> None:
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import (
        BAND_SIGMAS, BAND_TARGETS, PreprocessSpec, band_strengths, preprocess,
    )

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--cue", action="store_true", help="also the AUROC of band weakness as a pneumonia score")
    args = p.parse_args()
    split_file = shift.DATA / "kermany" / "splits" / "dev.json"
    if not split_file.is_file():
        p.error(f"{split_file} is missing (../shared/data beside the checkout)")
    split = json.loads(split_file.read_text(encoding="utf-8"))
    spec = PreprocessSpec(size=args.size, crop="field", intensity="equalize", output_range=(0.0, 1.0))

    def strengths(images: list[np.ndarray]) -> np.ndarray:
        return np.array([band_strengths(preprocess(px, spec)) for px in images])

    known = [read_radiograph(shift.DATA / "kermany" / rel).pixels for rel in split["train"]["known_normal"]]
    s_known = strengths(known)
    rows = {"known normals (600, dev train)": s_known}
    for name in ("soft_processing", "sharp_processing"):
        rng = np.random.default_rng(0)
        rows[f"known normals under {name}"] = strengths([shift.SHIFTS[name](px, rng) for px in known])
    root = shift.DATA / "fullres" / "kermany"
    if (root / "labels.csv").is_file():
        labelled = list(csv.DictReader(open(root / "labels.csv", encoding="utf-8")))
        for label, what in ((0, "normals"), (1, "pneumonia")):
            px = [read_radiograph(root / r["path"]).pixels for r in labelled if int(r["label"]) == label]
            rows[f"real other batch, {what} ({len(px)})"] = strengths(px)
    targets = [round(float(v), 4) for v in np.median(s_known, axis=0)]
    print(f"sigmas (fraction of the side): {', '.join(f'{s:.4f}' for s in BAND_SIGMAS)}")
    print(f"BAND_TARGETS measured: {tuple(targets)}  (in the code: {BAND_TARGETS})")
    print("median band strength relative to the known normals' (band 0 = finest):")
    result = {"size": args.size, "targets": targets, "sigmas": list(BAND_SIGMAS), "rows": {}}
    for name, s in rows.items():
        rel = np.median(s, axis=0) / np.array(targets)
        result["rows"][name] = {"median": [float(v) for v in np.median(s, axis=0)], "relative": [float(v) for v in rel]}
        print(f"  {name:45s} " + "  ".join(f"{v:5.2f}" for v in rel))
    # how much each processing shift moves the model input, equalised alone and with the band step (60 normals)
    result["input_change"] = {}
    for name in ("soft_processing", "sharp_processing"):
        for intensity in ("equalize", "equalize-bands"):
            sp = PreprocessSpec(size=args.size, crop="field", intensity=intensity, output_range=(0.0, 1.0))
            moved = [np.abs(preprocess(shift.SHIFTS[name](px, None), sp) - preprocess(px, sp)).mean() for px in known[:60]]
            result["input_change"][f"{name}, {intensity}"] = float(np.mean(moved))
            print(f"mean absolute change of the input under {name}, {intensity}: {np.mean(moved):.4f}")
    if args.cue:
        from cxrscreen.engine import metrics as M

        result["cue_auroc"] = {}
        for part, groups in (("unlabeled pool", split["unlabeled_pool"]), ("dev_test", split["dev_test"])):
            s_n = strengths([read_radiograph(shift.DATA / "kermany" / r).pixels for r in groups["normal"]])
            s_a = strengths([read_radiograph(shift.DATA / "kermany" / r).pixels for r in groups["abnormal"]])
            labels = np.r_[np.zeros(len(s_n)), np.ones(len(s_a))]
            aurocs = [M.auroc(labels, -np.r_[s_n[:, k], s_a[:, k]]) for k in range(len(BAND_SIGMAS))]
            result["cue_auroc"][part] = aurocs
            print(f"AUROC of band weakness as a pneumonia score, {part} ({len(s_n)} + {len(s_a)}): "
                  + "  ".join(f"{a:.3f}" for a in aurocs))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"written {OUT.relative_to(shift.REPO)}")


if __name__ == "__main__":
    main()
