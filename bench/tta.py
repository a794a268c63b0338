"""Test-time views: does averaging a detector's score over a few re-framed views rank better?

A label-free move that needs no retraining: each image is scored as preprocessed and under a
few geometric views of the model input, and the image's score is the mean over the views. The
views were fixed before any figure was seen, inside the geometry the robust presets train on
(magnification 0.88–1.45, shift ±10 %, black outside the field, ``engine.augment``):

    identity, magnified 1.15 (centred), reduced 0.92 (centred), shifted ±6 % across, ±6 % down

For each detector: dev_test under every simulated shift of ``bench/shift.py`` and the real
16-image batch, AUROC of the identity view and of the mean, and the paired bootstrap interval of
the change (the same image draws for both). Evaluation only: nothing is chosen on these figures.

    python bench/tta.py --model bench/_work/detectors/ddad_framing_e50_s0_base.onnx [--model ...] [--tag NAME]
    python bench/tta.py --summary NAME [NAME ...]
    python bench/tta.py --model D.onnx --batch /tmp/adapt_crop/batch --tag NAME   # a labelled folder instead

``--batch`` evaluates a folder with ``labels.csv`` instead of dev_test: e.g. the simulated new batch
of ``bench/adapt_batch.py prepare`` (pool images no dev-protocol detector trained on, off-centre),
a test set that is not dev_test.

What the views cost in scoring time: ``bench/ensemble_cost.py --model plain.onnx --model views.onnx``.
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
from shift import SHIFTS, TEN, real_batch_files  # noqa: E402

from cxrscreen.engine.export import VIEW_SETS  # noqa: E402
from cxrscreen.models.views import view_theta, warp  # noqa: E402

OUT = REPO / "bench" / "results" / "tta"
VIEWS = VIEW_SETS["framing"]  # (magnification, shift across, shift down): fixed before measuring


def views(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """(V, N, 1, S, S): ``x`` (N, 1, S, S, in [low, high]) under every view, black outside the field
    (:class:`models.views.ViewAverage`'s views, run outside the graph to score each one)."""
    import torch

    t = (torch.from_numpy(x) - low) / (high - low)
    return torch.stack([warp(t, torch.tensor(view_theta(*v), dtype=t.dtype)) for v in VIEWS]).mul(high - low).add(low).numpy()


def _scores(det, batch: np.ndarray) -> np.ndarray:
    """(V, N) scores of every view."""
    low, high = det.preprocess_spec.output_range
    out = []
    for i in range(0, len(batch), 64):
        v = views(batch[i : i + 64], low, high)
        out.append(np.stack([det.run(np.ascontiguousarray(vi)).scores for vi in v]))
    return np.concatenate(out, axis=1)


def _paired(labels: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int = 2000) -> dict:
    from cxrscreen.engine import metrics as M

    idx = np.arange(len(labels))
    lo, hi = M.bootstrap_ci(labels, idx, lambda y, i: M.auroc(y, b[i.astype(int)]) - M.auroc(y, a[i.astype(int)]),
                            n_boot=n_boot)
    return {"identity": M.auroc(labels, a), "mean_of_views": M.auroc(labels, b),
            "change": M.auroc(labels, b) - M.auroc(labels, a), "change_ci95": [lo, hi]}


def evaluate(model: Path) -> dict:
    from cxrscreen.engine import metrics as M
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import preprocess

    det = Detector(model)
    paths, labels = dev_split.dev_test()
    pixels = [read_radiograph(p).pixels for p in paths]
    out = {"model": str(model), "model_id": det.meta.model_id, "provider": det.provider, "views": VIEWS, "shifts": {}}
    for name in SHIFTS:
        t0 = time.time()
        batch = np.stack([preprocess(SHIFTS[name](p, np.random.default_rng(i)), det.preprocess_spec)
                          for i, p in enumerate(pixels)])[:, None].astype(np.float32)
        s = _scores(det, batch)
        r = out["shifts"][name] = {**_paired(labels, s[0], s.mean(0)),
                                   "per_view": [M.auroc(labels, v) for v in s]}
        print(f"{model.stem:36s} {name:16s} AUROC {r['identity']:.3f} -> {r['mean_of_views']:.3f} "
              f"({r['change']:+.3f} [{r['change_ci95'][0]:+.3f}, {r['change_ci95'][1]:+.3f}])  {time.time() - t0:.0f} s",
              flush=True)
    rpaths, rlabels = real_batch_files()
    batch = np.stack([preprocess(read_radiograph(p).pixels, det.preprocess_spec) for p in rpaths])[:, None]
    s = _scores(det, batch.astype(np.float32))
    out["real_batch"] = _paired(rlabels, s[0], s.mean(0))
    r = out["real_batch"]
    print(f"{model.stem:36s} {'real (16)':16s} AUROC {r['identity']:.3f} -> {r['mean_of_views']:.3f} ({r['change']:+.3f})")
    return out


def evaluate_folder(model: Path, folder: Path) -> dict:
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.evaluate import read_labels_csv
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import preprocess

    det = Detector(model)
    data = read_labels_csv(folder / "labels.csv")  # the engine's reader (cxrscreen eval --labels)
    labels = data.labels
    batch = np.stack([preprocess(read_radiograph(p).pixels, det.preprocess_spec) for p in data.paths])[:, None]
    s = _scores(det, batch.astype(np.float32))
    r = _paired(labels, s[0], s.mean(0))
    print(f"{model.stem:36s} {folder.name:16s} n {len(labels)}  AUROC {r['identity']:.3f} -> {r['mean_of_views']:.3f} "
          f"({r['change']:+.3f} [{r['change_ci95'][0]:+.3f}, {r['change_ci95'][1]:+.3f}])")
    return {"model": str(model), "model_id": det.meta.model_id, "provider": det.provider, "views": VIEWS,
            "folder": folder.name, "n": len(labels), "n_abnormal": int(labels.sum()), "batch": r}


def summary(tags: list[str]) -> None:
    rs = [json.loads((OUT / f"{t}.json").read_text()) for t in tags]
    if all("batch" in r for r in rs):  # folder results
        for t, r in zip(tags, rs):
            b = r["batch"]
            print(f"| {t} | {r['n']} ({r['n_abnormal']} abnormal) | {b['identity']:.3f} → {b['mean_of_views']:.3f} "
                  f"({b['change']:+.3f} [{b['change_ci95'][0]:+.3f}, {b['change_ci95'][1]:+.3f}]) |")
        print(f"mean change {np.mean([r['batch']['change'] for r in rs]):+.3f}")
        return
    names = list(rs[0]["shifts"])
    print("| shift | " + " | ".join(tags) + " | mean change |")
    print("|---|" + "---|" * (len(tags) + 1))
    for n in [*names, "real_batch"]:
        cells = [r["shifts"][n] if n != "real_batch" else r["real_batch"] for r in rs]
        print(f"| {n} | " + " | ".join(f"{c['identity']:.3f} → {c['mean_of_views']:.3f}" for c in cells)
              + f" | {np.mean([c['change'] for c in cells]):+.3f} |")
    ten = [n for n in TEN if n != "none" and n in names]  # bench/shift.py's ten older shifts
    means = [(np.mean([r["shifts"][n]["identity"] for n in ten]), np.mean([r["shifts"][n]["mean_of_views"] for n in ten]))
             for r in rs]
    print(f"| mean of the {len(ten)} older shifts | " + " | ".join(f"{a:.3f} → {b:.3f}" for a, b in means)
          + f" | {np.mean([b - a for a, b in means]):+.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, action="append")
    p.add_argument("--tag", action="append")
    p.add_argument("--summary", nargs="+", metavar="TAG")
    p.add_argument("--batch", type=Path, help="a labelled folder (labels.csv) to evaluate instead of dev_test")
    a = p.parse_args()
    if a.summary:
        summary(a.summary)
        return
    if not a.model:
        p.error("give --model (or --summary)")
    if a.batch:
        if not (a.batch / "labels.csv").is_file():
            p.error(f"{a.batch} has no labels.csv")
        OUT.mkdir(parents=True, exist_ok=True)
        for i, model in enumerate(a.model):
            tag = a.tag[i] if a.tag and i < len(a.tag) else f"{model.stem}_{a.batch.name}"
            (OUT / f"{tag}.json").write_text(json.dumps(evaluate_folder(model, a.batch), indent=2))
        return
    dev_split.require()
    OUT.mkdir(parents=True, exist_ok=True)
    for i, model in enumerate(a.model):
        tag = a.tag[i] if a.tag and i < len(a.tag) else model.stem
        (OUT / f"{tag}.json").write_text(json.dumps(evaluate(model), indent=2))


if __name__ == "__main__":
    main()
