"""Scores for ``bench/drift.py``: one real detector over dev_test under every shift, and the real other batch.

dev_test re-rendered under each shift of ``bench/shift.py`` (its shift functions, imported; the
same per-image seeds), scored with the detector's own preprocessing and graph (onnxruntime,
the app's path, gate off: the shifts are in scope by construction), and the full-size Kermany
``val`` originals (``fullres/kermany``, another acquisition batch) scored as ``cxrscreen
score`` scores them (gate on). Cached as one ``.npz`` per detector under ``bench/_work/drift``; a
shift added to ``bench/shift.py`` after a detector's cache was written is scored and added to it.

    python bench/drift_scores.py --model bench/_work/drift/detector.onnx
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

import dev_split  # bench/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORK = REPO / "bench" / "_work" / "drift"


def cache_path(model: Path) -> Path:
    """Where the scores of ``model`` are cached."""
    from cxrscreen.engine.detector import read_metadata

    return WORK / f"scores_{read_metadata(model).model_id}.npz"


def score_all(model: Path) -> Path:
    """Score every batch with ``model`` (or return the cache); returns the cache file."""
    sys.path.insert(0, str(REPO / "bench"))
    from shift import SHIFTS  # bench/shift.py's shift functions (not edited here)

    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import preprocess
    from cxrscreen.engine.scoring import iter_scores

    out = cache_path(model)
    cached = dict(np.load(out)) if out.is_file() else {}
    missing = [name for name in SHIFTS if f"shift_{name}" not in cached]
    if cached and not missing:
        return out
    det = Detector(model, provider="cpu")
    paths, labels = dev_split.dev_test()
    labels = labels.astype(np.int8)
    pixels = [read_radiograph(p).pixels for p in paths]
    arrays: dict[str, np.ndarray] = cached or {"dev_test_labels": labels}
    for name in missing:  # every shift, or those added to bench/shift.py since the cache was written
        t0 = time.time()
        batch = np.stack([preprocess(SHIFTS[name](p, np.random.default_rng(i)), det.preprocess_spec)
                          for i, p in enumerate(pixels)])[:, None]
        arrays[f"shift_{name}"] = np.concatenate([det.run(batch[i: i + 128]).scores for i in range(0, len(batch), 128)])
        print(f"{name:13s} scored {len(batch)} in {time.time() - t0:.1f} s", flush=True)
    if cached:
        np.savez(out, **arrays)
        return out
    froot = DATA / "fullres" / "kermany"
    rows = list(csv.DictReader(open(froot / "labels.csv", encoding="utf-8")))
    results = [r for b in iter_scores([froot / r["path"] for r in rows], det) for r in b]
    if any(r.score is None for r in results):
        raise RuntimeError(f"fullres/kermany: not every image was scored: {[(r.path.name, r.error, r.out_of_scope) for r in results if r.score is None]}")
    arrays["fullres_scores"] = np.array([r.score for r in results])
    arrays["fullres_labels"] = np.array([int(r["label"]) for r in rows], dtype=np.int8)
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    args = p.parse_args()
    dev_split.require()
    print(score_all(args.model))


if __name__ == "__main__":
    main()
