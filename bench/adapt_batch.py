"""Adaptation to a new acquisition batch, on a simulated batch of training-disjoint images.

The new batch is the dev protocol's ``unlabeled_pool`` images that D_u at AR 0.6 does not use
(normals 200-499, pneumonia 300-1003: never trained on by a dev-protocol detector), re-rendered
with one acquisition shift of ``bench/shift.py`` (default ``crop_offset``, the weakest single
shift of the robust-field detector) and written as 8-bit PNGs, as another site would deliver them.

``prepare`` writes, under ``--work`` (outside the repository):
- ``normal/``: the 600 known normals of the protocol (links) plus ``--confirmed`` normals of the
  new batch (pool normals 200..200+N): "reader-confirmed normals of the new batch";
- ``unlabeled/``: D_u at AR 0.6 (links), unchanged;
- ``batch/``: the evaluation batch, the remaining pool normals and 400 pool pneumonia images, with
  ``labels.csv``.
Then ``cxrscreen train --normal WORK/normal --unlabeled WORK/unlabeled ...`` trains the adapted
detector. ``evaluate`` scores detectors on the batch (and on dev_test unshifted, to see the
adaptation does not hurt the old batch): AUROC [bootstrap CI] and the specificity at the
calibrated 95 % threshold, every image scored by the graph, and how many the out-of-scope gate
would have left unscored. No labels of dev_test or the batch choose anything here.

``pseudo`` is adaptation without labels: it scores the batch with a detector (the app's path, the
out-of-scope gate first) and writes ``normal_pseudo/``, the 600 known normals plus the lowest-scoring
``--share`` of the scored images, as if the reader had confirmed them. ``more-normals`` is its
control: as many extra normals of the *old* batch (the unshifted originals of the batch's first
normals), so that a gain which is only "more training normals" shows there too. ``evaluate`` then
also reports the batch without the images a detector trained on, and every model's AUROC change
from the first one with a paired bootstrap interval.

    python bench/adapt_batch.py prepare --work /tmp/adapt --confirmed 40
    python bench/adapt_batch.py evaluate --work /tmp/adapt --model A.onnx --model B.onnx --tag a --tag b
    python bench/adapt_batch.py pseudo --work /tmp/pseudo --model A.onnx --share 0.1
    python bench/adapt_batch.py more-normals --work /tmp/pseudo --count 58
    python bench/adapt_batch.py summary pseudo_crop_base_ddad_framing_e50 pseudo_crop_pseudo10_ddad_framing_e50
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import dev_split  # noqa: E402
from shift import DATA, SHIFTS, _summary  # noqa: E402

OUT = REPO / "bench" / "results" / "shift"
N_ABNORMAL_EVAL = 400


def _write(src: Path, dst: Path, shift: str, seed: int) -> None:
    from cxrscreen.engine.io import read_radiograph

    p = SHIFTS[shift](read_radiograph(src).pixels, np.random.default_rng(seed))
    Image.fromarray((np.clip(p, 0, 1) * 255).round().astype(np.uint8)).save(dst)


def prepare(work: Path, confirmed: int, shift: str) -> None:
    split = json.loads(dev_split.SPLIT.read_text())
    root = dev_split.SPLIT.parent.parent
    pool_n, pool_a = split["unlabeled_pool"]["normal"], split["unlabeled_pool"]["abnormal"]
    if not 0 <= confirmed <= 100:
        sys.exit(f"--confirmed must be in [0, 100], got {confirmed}")
    for sub in ("normal", "unlabeled", "batch"):
        (work / sub).mkdir(parents=True, exist_ok=False)
    for i, q in enumerate(split["train"]["known_normal"]):
        os.symlink(root / q, work / "normal" / f"dn_{i:04d}{Path(q).suffix}")
    for i, q in enumerate(pool_n[:200] + pool_a[:300]):
        os.symlink(root / q, work / "unlabeled" / f"du_{i:04d}{Path(q).suffix}")
    new_normals = pool_n[200:]
    for i, q in enumerate(new_normals[:confirmed]):
        _write(root / q, work / "normal" / f"new_{i:04d}.png", shift, 10_000 + i)
    rows = []
    for i, q in enumerate(new_normals[confirmed:]):
        name = f"n_{i:04d}.png"
        _write(root / q, work / "batch" / name, shift, 20_000 + i)
        rows.append((name, 0))
    for i, q in enumerate(pool_a[300 : 300 + N_ABNORMAL_EVAL]):
        name = f"a_{i:04d}.png"
        _write(root / q, work / "batch" / name, shift, 30_000 + i)
        rows.append((name, 1))
    with open(work / "batch" / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])
    (work / "batch" / "about.json").write_text(json.dumps({"shift": shift, "confirmed": confirmed}))
    print(f"{work}: {600 + confirmed} normals ({confirmed} of the new batch), 500 unlabeled, batch of {len(rows)}")


def evaluate(work: Path, models: list[Path], tags: list[str]) -> None:
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import preprocess_batch

    rows = list(csv.DictReader(open(work / "batch" / "labels.csv")))
    paths = [work / "batch" / r["path"] for r in rows]
    labels = np.array([int(r["label"]) for r in rows])
    split = json.loads(dev_split.SPLIT.read_text())["dev_test"]
    dev_paths = [dev_split.SPLIT.parent.parent / q for q in split["normal"] + split["abnormal"]]
    dev_labels = np.r_[np.zeros(len(split["normal"])), np.ones(len(split["abnormal"]))].astype(int)
    about = json.loads((work / "batch" / "about.json").read_text())
    taken_file = work / "normal_pseudo.json"
    taken = set(json.loads(taken_file.read_text())["taken_paths"]) if taken_file.is_file() else set()
    more_file = work / "normal_more.json"  # their originals were trained on by the control detector
    taken |= set(json.loads(more_file.read_text())["batch_paths"]) if more_file.is_file() else set()
    # left out of "simulated_batch_without_taken": the images a detector here trained on (pseudo-normals,
    # the control's originals)
    keep = np.array([q.name not in taken for q in paths])
    batch_images = [read_radiograph(q) for q in paths]  # decoded once for every model, graph and gate alike
    dev_images = [read_radiograph(q) for q in dev_paths]
    first: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # each part's (labels, scores) under the first model
    for model, tag in zip(models, tags):
        det = Detector(model)
        out = {"model": str(model), "model_id": det.meta.model_id, "preprocess": det.meta.preprocess.to_dict(),
               "batch": about, "training": {k: det.meta.training.get(k) for k in ("normal_train", "unlabeled")}}
        parts = []
        for name, images, ys in (("simulated_batch", batch_images, labels), ("dev_test", dev_images, dev_labels)):
            # the graph on every image (the app would leave out-of-scope ones unscored: counted below)
            batch = preprocess_batch([g.pixels for g in images], det.preprocess_spec)
            scores = np.concatenate([det.run(batch[i : i + 128]).scores for i in range(0, len(batch), 128)])
            parts.append((name, ys, scores))
            if name == "simulated_batch" and taken:
                parts.append(("simulated_batch_without_taken", ys[keep], scores[keep]))
        for name, ys, scores in parts:
            r = out[name] = {"n": len(ys), **_summary(det, ys, scores)}
            print(f"{tag:40s} {name:16s} AUROC {r['auroc']:.3f} [{r['auroc_ci95'][0]:.3f}, {r['auroc_ci95'][1]:.3f}]  "
                  f"specificity at the promised 95 % {r['specificity_at_calibrated_95']:.3f} "
                  f"(sensitivity {r['sensitivity_at_calibrated_95']:.3f})", flush=True)
            if name in first:  # the AUROC change from the first model, on the same images
                c = out[f"{name}_change_from_first"] = _paired_change(first[name], scores)
                print(f"{'':40s} {'':16s} AUROC change from the first model {c['auroc_change']:+.3f} "
                      f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] (paired bootstrap)", flush=True)
            else:
                first[name] = (ys, scores)
        gate = det.scope_gate  # as scoring applies it (engine.scoring), on the images decoded once above
        out["simulated_batch"]["out_of_scope"] = sum(gate.check(g) is not None for g in batch_images)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"adapt_{tag}.json").write_text(json.dumps(out, indent=2))


def _link_known_normals(work: Path, out: Path) -> None:
    """Link the protocol's 600 known normals (``prepare``'s ``normal/dn_*`` links) into ``out``."""
    for q in sorted((work / "normal").glob("dn_*")):
        os.symlink(os.readlink(q), out / q.name)


def _paired_change(first: tuple[np.ndarray, np.ndarray], other_scores: np.ndarray) -> dict:
    """AUROC(other) - AUROC(first) on the same images, with a paired interval: the engine's stratified
    bootstrap (``metrics.bootstrap_ci``) resampling image indices, so both detectors see the same draw."""
    from cxrscreen.engine import metrics as M

    y, a = first
    b = other_scores

    def change(ys: np.ndarray, idx: np.ndarray) -> float:
        i = idx.astype(np.intp)
        return M.auroc(ys, b[i]) - M.auroc(ys, a[i])

    lo, hi = M.bootstrap_ci(y, np.arange(y.size), change, n_boot=2000)
    return {"auroc_change": M.auroc(y, b) - M.auroc(y, a), "ci95": [lo, hi]}


def pseudo(work: Path, model: Path, share: float) -> None:
    """Adaptation without labels: the detector's lowest-scoring images of the new batch as normals.

    Scores the batch as the app does (the out-of-scope gate first: a gated image is never taken),
    takes the lowest ``share`` of the scored images and writes ``normal_pseudo/``: the 600 known
    normals (links) plus those images (links). Their labels are read only to report how many are
    truly normal; nothing is chosen with them.
    """
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.scoring import iter_scores

    rows = list(csv.DictReader(open(work / "batch" / "labels.csv")))
    label_of = {r["path"]: int(r["label"]) for r in rows}
    paths = [work / "batch" / r["path"] for r in rows]
    det = Detector(model)
    scored = [(r.score, r.path) for b in iter_scores(paths, det) for r in b if r.score is not None]
    take = max(1, int(round(share * len(scored))))
    chosen = [q for _, q in sorted(scored, key=lambda t: t[0])[:take]]
    out = work / "normal_pseudo"
    out.mkdir(exist_ok=False)
    _link_known_normals(work, out)
    for q in chosen:
        os.symlink(q, out / f"pseudo_{q.name}")
    normals = sum(label_of[q.name] == 0 for q in chosen)
    report = {"model": str(model), "batch": json.loads((work / "batch" / "about.json").read_text()),
              "scored": len(scored), "gated": len(paths) - len(scored), "share": share, "taken": take,
              "truly_normal": normals, "taken_paths": [q.name for q in chosen]}
    (work / "normal_pseudo.json").write_text(json.dumps(report, indent=2))
    print(f"{out}: 600 known normals + the {take} lowest-scoring of {len(scored)} scored images "
          f"({len(paths) - len(scored)} gated); {normals} of them truly normal ({normals / take:.1%})")


def more_normals(work: Path, count: int) -> None:
    """The control for ``pseudo``: ``count`` more normals of the *old* batch instead.

    Writes ``normal_more/``: the 600 known normals plus the first ``count`` of the new batch's
    normals as they were acquired (the unshifted originals, links): as many extra normals as
    ``pseudo`` adds, without the new acquisition, so a gain that is only "more normals" shows here too.
    """
    split = json.loads(dev_split.SPLIT.read_text())
    root = dev_split.SPLIT.parent.parent
    confirmed = json.loads((work / "batch" / "about.json").read_text())["confirmed"]
    out = work / "normal_more"
    out.mkdir(exist_ok=False)
    _link_known_normals(work, out)
    # the batch's normals n_0000... are the pool normals 200 + confirmed + i, shifted (prepare)
    first = 200 + confirmed
    for i, q in enumerate(split["unlabeled_pool"]["normal"][first : first + count]):
        os.symlink(root / q, out / f"more_{i:04d}{Path(q).suffix}")
    (work / "normal_more.json").write_text(json.dumps({"count": count, "batch_paths": [f"n_{i:04d}.png" for i in range(count)]}))
    print(f"{out}: 600 known normals + {count} more normals of the old batch (the originals of the batch's first {count})")


def summary(stems: list[str]) -> None:
    """Means over seeds of saved ``evaluate`` results (``adapt_{stem}_sN.json``): the batch (without the
    images a detector trained on, when there were any), its specificity at the promise, dev_test, and
    the changes from the first model of that evaluation."""
    parts = ("simulated_batch_without_taken", "simulated_batch", "dev_test")
    for stem in stems:
        runs = [json.loads(f.read_text()) for f in sorted(OUT.glob(f"adapt_{stem}_s[0-9]*.json"))]
        if not runs:
            sys.exit(f"no results adapt_{stem}_sN.json in {OUT}")
        batch = next(k for k in parts if k in runs[0])
        cells = [f"{batch} AUROC {np.mean([r[batch]['auroc'] for r in runs]):.3f}",
                 f"specificity {np.mean([r[batch]['specificity_at_calibrated_95'] for r in runs]):.3f}",
                 f"dev_test AUROC {np.mean([r['dev_test']['auroc'] for r in runs]):.3f}"]
        for k in (batch, "dev_test"):
            if all(f"{k}_change_from_first" in r for r in runs):
                changes = [r[f"{k}_change_from_first"]["auroc_change"] for r in runs]
                cells.append(f"{k} change {np.mean(changes):+.3f} (" + ", ".join(f"{c:+.3f}" for c in changes) + ")")
        print(f"{stem} ({len(runs)} seeds): " + "; ".join(cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prepare")
    pr.add_argument("--work", type=Path, required=True)
    pr.add_argument("--confirmed", type=int, default=40)
    pr.add_argument("--shift", choices=[s for s in SHIFTS if s != "none"], default="crop_offset")
    ev = sub.add_parser("evaluate")
    ev.add_argument("--work", type=Path, required=True)
    ev.add_argument("--model", type=Path, action="append", required=True)
    ev.add_argument("--tag", action="append", required=True)
    ps = sub.add_parser("pseudo")
    ps.add_argument("--work", type=Path, required=True)
    ps.add_argument("--model", type=Path, required=True)
    ps.add_argument("--share", type=float, default=0.1)
    mo = sub.add_parser("more-normals")
    mo.add_argument("--work", type=Path, required=True)
    mo.add_argument("--count", type=int, required=True)
    su = sub.add_parser("summary")
    su.add_argument("stems", nargs="+", help="result names without the _sN ending, e.g. pseudo_crop_base_ddad_framing_e50")
    args = p.parse_args()
    if args.command == "summary":
        summary(args.stems)
        return
    if not dev_split.SPLIT.is_file():
        sys.exit(f"real data not found at {DATA}: this benchmark needs ../shared/data beside the checkout")
    if args.command == "prepare":
        prepare(args.work, args.confirmed, args.shift)
    elif args.command == "more-normals":
        more_normals(args.work, args.count)
    elif args.command == "pseudo":
        pseudo(args.work, args.model, args.share)
    else:
        if len(args.tag) != len(args.model):
            sys.exit(f"give one --tag per --model ({len(args.model)} models, {len(args.tag)} tags)")
        evaluate(args.work, args.model, args.tag)


if __name__ == "__main__":
    main()
