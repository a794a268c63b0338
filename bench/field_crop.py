"""The exposed-field crop (``PreprocessSpec.crop="field"``): how stable the model input stays under
simulated acquisition shifts of training images, and what it costs to read and preprocess.

Stability: for known normals of the dev protocol's training set (never dev_test), each shift of
``bench/shift.py`` is applied to the decoded pixels and the mean absolute difference between the
preprocessed shifted image and the preprocessed original is reported (model input range -1..1;
0 = the detector sees the same input). This is the measurement the field's parameters were chosen
on (``engine/preprocess.py``'s ``FIELD_*`` constants).

Speed: reading + preprocessing, in images/s, of the same files with each preprocessing,
alternating rounds in one run (the machine is shared: only the ratio within the run counts):
224 px training JPEGs and the full-size originals of ``fullres/kermany`` (968-1776 px).

    python bench/field_crop.py [--images 120] [--rounds 3] [--out bench/results/shift/field_crop.json]
    python bench/field_crop.py --score WHOLE.onnx FIELD.onnx [--rounds 3]   # end-to-end, see below

``--score``: end-to-end scoring of the 642 dev_test files (``engine.scoring.iter_scores``: read,
preprocess, out-of-scope gate, onnxruntime; the app's and ``cxrscreen score``'s path) with two
detectors that differ only in their preprocessing, alternating rounds (timing only: no label is
read). Written to ``--out`` with ``_score`` before the suffix.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import dev_split  # noqa: E402
from shift import DATA, SHIFTS  # noqa: E402

SPECS = {
    "paper (no normalisation)": {"size": 64},
    "robust (equalize)": {"size": 64, "intensity": "equalize"},
    "field crop + equalize": {"size": 64, "intensity": "equalize", "crop": "field"},
    "field crop + percentile": {"size": 64, "intensity": "percentile", "crop": "field"},
}


def stability(paths: list[Path]) -> dict[str, dict[str, float]]:
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import PreprocessSpec, preprocess

    pixels = [read_radiograph(p).pixels for p in paths]
    out: dict[str, dict[str, float]] = {}
    for label, d in SPECS.items():
        spec = PreprocessSpec(**d)
        base = np.stack([preprocess(p, spec) for p in pixels])
        out[label] = {}
        for name, shift in SHIFTS.items():
            if name == "none":
                continue
            shifted = np.stack([preprocess(shift(p, np.random.default_rng(i)), spec) for i, p in enumerate(pixels)])
            out[label][name] = float(np.abs(shifted - base).mean())
        print(label, {k: round(v, 3) for k, v in out[label].items()}, flush=True)
    return out


def speed(paths: list[Path], rounds: int) -> dict[str, list[float]]:
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import PreprocessSpec, preprocess

    specs = {"robust (equalize)": PreprocessSpec(size=64, intensity="equalize"),
             "field crop + equalize": PreprocessSpec(size=64, intensity="equalize", crop="field")}
    rates: dict[str, list[float]] = {k: [] for k in specs}
    for _ in range(rounds):
        for label, spec in specs.items():
            t0 = time.perf_counter()
            for p in paths:
                preprocess(read_radiograph(p).pixels, spec)
            rates[label].append(len(paths) / (time.perf_counter() - t0))
    return rates


def score_speed(models: list[Path], rounds: int) -> dict[str, list[float]]:
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.scoring import iter_scores

    paths, _ = dev_split.dev_test()
    detectors = {str(m): Detector(m) for m in models}
    rates: dict[str, list[float]] = {k: [] for k in detectors}
    for _ in range(rounds):
        for name, det in detectors.items():
            t0 = time.perf_counter()
            n = sum(len(batch) for batch in iter_scores(paths, det))
            rates[name].append(n / (time.perf_counter() - t0))
    return {f"{k} ({detectors[k].meta.preprocess.to_dict()})": v for k, v in rates.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=120, help="training normals used for stability (default 120)")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (default 3)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "shift" / "field_crop.json")
    p.add_argument("--score", type=Path, nargs=2, metavar=("WHOLE", "FIELD"),
                   help="time end-to-end scoring with these two detectors instead")
    args = p.parse_args()
    if not dev_split.SPLIT.is_file():
        sys.exit(f"real data not found at {DATA}: this benchmark needs ../shared/data beside the checkout")
    if args.images < 1 or args.rounds < 1:
        sys.exit(f"--images and --rounds must be >= 1, got {args.images} and {args.rounds}")
    if args.score:
        rates = score_speed(args.score, args.rounds)
        for k, v in rates.items():
            print(k, [round(r) for r in v])
        out = args.out.with_name(args.out.stem + "_score" + args.out.suffix)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"images": 642, "score_images_per_s": rates}, indent=2))
        return
    split = json.loads(dev_split.SPLIT.read_text())
    root = dev_split.SPLIT.parent.parent
    train = [root / q for q in split["train"]["known_normal"][: args.images]]
    full = sorted((DATA / "fullres" / "kermany" / "val").iterdir())
    result = {"images": len(train), "stability_mean_abs_diff": stability(train),
              "speed_images_per_s": {"224px training JPEGs": speed(train, args.rounds),
                                     "full-size originals": speed(full, args.rounds)},
              "n_full_size": len(full)}
    for kind, rates in result["speed_images_per_s"].items():
        print(kind, {k: [round(v) for v in vs] for k, vs in rates.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
