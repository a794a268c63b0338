"""The acquisition check (engine/acquisition.py) on real batches, and what it adds to the drift warning.

The check compares a batch's images (their four detail-band shares) with the detector's known
normals; it does not depend on the detector's network, so one reference serves every detector
trained on the dev protocol: its 600 known normals (``train.known_normal``, training and
calibration normals alike, as ``cxrscreen train`` stores them).

1. Its tolerance's ground: the disease effect on each band, the dev protocol's 300 labelled
   abnormal images of the unlabeled pool (and its 200 normals) against the known normals, as
   Mann–Whitney AUCs (never dev_test). And another source's diseases on their own acquisition:
   NIH ChestX-ray14 (``nih64``, adults, mixed findings): the abnormal images' AUCs against the
   normals, and batches of 150 with 0–100 % abnormal images checked against 200 other normals
   (none of them should differ).
2. Per batch (dev_test under each shift of ``bench/shift.py``, same per-image seeds, and the real
   full-size Kermany batch ``fullres/kermany``): the per-band AUCs, whether the whole batch
   differs, and the share of random sub-batches of 16 / 50 / 200 images that differ (same
   normal/abnormal mix, 500 draws).
3. Under a site calibration: m = 20 or 40 normals of a batch confirmed (drawn 200 times) become
   the reference, and the rest of the same batch (its other normals and all its abnormal images)
   is checked against them: the share of draws that differ (a false alarm: the batch is the
   site's own acquisition).
5. (``--unlabeled``) The training-time check of the unlabeled set against the known normals
   (``engine.acquisition.check_unlabeled``), for the dev protocol's unlabeled set at AR 0–1 and
   for another batch used as the unlabeled set (the issue's failed adaptation, simulated).
4. With the saved drift results of every detector (``bench/results/drift/TAG.json``, made by
   ``bench/drift.py``): per detector and batch, whether its promise fails by more than 5 points,
   the score test's warning, and the warning with the acquisition check added (either warns):
   counts of failing batches warned, other batches warned, dev_test warned.

Nothing is tuned on dev_test: the descriptor and the tolerance come from the unlabeled pool's
labelled abnormal images (item 1) and were fixed before the batches were checked.

    python bench/acquisition.py                 # bench/results/acquisition/acquisition.json and tables
    python bench/acquisition.py --attach bench/_work/detectors/X.onnx bench/_work/detectors/X_acq.onnx
        # a copy of a detector made before the check, with the dev protocol's reference stored as
        # training stores it (for screenshots; the copy keeps the model id, so keep it out of a library
        # that holds the original)
    python bench/acquisition.py --cost bench/_work/detectors/X.onnx   # bench/results/acquisition/cost.json
    python bench/acquisition.py --demo   # the app's demo study against the demo detector's training normals
    python bench/acquisition.py --unlabeled   # item 5: bench/results/acquisition/unlabeled.json
    python bench/acquisition.py --real-rendering   # the real batch through the copies' pipeline
    python bench/acquisition.py --precheck-cost    # train --check's first look, timed
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO), str(REPO / "bench")]
import dev_split  # noqa: E402
from shift import SHIFTS  # noqa: E402

DATA = REPO.parent / "shared" / "data"
WORK = REPO / "bench" / "_work" / "acquisition"
RESULTS = REPO / "bench" / "results" / "acquisition"
DRIFT = REPO / "bench" / "results" / "drift"
SIZES = (16, 50, 200)
REAL = "real fullres/kermany"


def descriptors() -> dict[str, np.ndarray]:
    """Descriptors of the reference, the pool, every shifted dev_test and the real batch (cached)."""
    from cxrscreen.engine.acquisition import descriptor
    from cxrscreen.engine.io import read_radiograph

    cache = WORK / "descriptors.npz"
    if cache.is_file():
        cached = dict(np.load(cache))
        if all(f"shift_{name}" in cached for name in SHIFTS):
            return cached
    split = json.loads(dev_split.SPLIT.read_text())
    root = dev_split.SPLIT.parent.parent

    def of(paths: list[Path], shift: str = "none") -> np.ndarray:
        return np.stack([descriptor(SHIFTS[shift](read_radiograph(p).pixels, np.random.default_rng(i)))
                         for i, p in enumerate(paths)])

    out = {"known": of([root / p for p in split["train"]["known_normal"]]),
           "pool_abnormal": of([root / p for p in split["unlabeled_pool"]["abnormal"]][:300]),
           "pool_normal": of([root / p for p in split["unlabeled_pool"]["normal"]][:200])}
    paths, labels = dev_split.dev_test()
    out["dev_test_labels"] = labels.astype(np.int8)
    for name in SHIFTS:
        t0 = time.time()
        out[f"shift_{name}"] = of(paths, name)
        print(f"{name:16s} {len(paths)} descriptors in {time.time() - t0:.1f} s", flush=True)
    real = DATA / "fullres" / "kermany"
    rows = list(csv.DictReader(open(real / "labels.csv", encoding="utf-8")))
    out["real"] = of([real / r["path"] for r in rows])
    out["real_labels"] = np.array([int(r["label"]) for r in rows], dtype=np.int8)
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def batches(d: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Batch name (as in the drift results) -> (descriptors, labels)."""
    out = {name: (d[f"shift_{name}"], d["dev_test_labels"]) for name in SHIFTS}
    out[REAL] = (d["real"], d["real_labels"])
    return out


def check_batches(d: dict[str, np.ndarray], draws: int, seed: int = 0) -> dict:
    from cxrscreen.engine.acquisition import AcquisitionReference, check_acquisition, mann_whitney_delong

    ref = AcquisitionReference.from_descriptors(d["known"])
    rng = np.random.default_rng(seed)
    res = {"n_reference": ref.n, "disease_effect": {
        "pool_abnormal_vs_known": [mann_whitney_delong(d["pool_abnormal"][:, k], np.array(ref.values[k]))[0] for k in range(4)],
        "pool_normal_vs_known": [mann_whitney_delong(d["pool_normal"][:, k], np.array(ref.values[k]))[0] for k in range(4)]},
        "batches": {}}
    for name, (x, labels) in batches(d).items():
        r = check_acquisition(x, ref)
        row = {"n": len(x), "auc": list(r.auc), "differs": r.differs, "p_value": r.p_value, "sub_batches": {}}
        share = labels.mean()
        for n in SIZES:
            if n >= len(x):
                continue
            k = int(round(n * share))
            ab, no = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
            hits = 0
            for _ in range(draws):
                idx = np.r_[rng.choice(ab, k, replace=False), rng.choice(no, n - k, replace=False)]
                hits += check_acquisition(x[idx], ref).differs
            row["sub_batches"][str(n)] = hits / draws
        res["batches"][name] = row
    return res


def site_reference(d: dict[str, np.ndarray], draws: int = 200, seed: int = 0) -> dict:
    """Item 3: the check against m confirmed normals of the batch itself."""
    from cxrscreen.engine.acquisition import AcquisitionReference, check_acquisition

    rng = np.random.default_rng(seed)
    out = {}
    for name, (x, labels) in batches(d).items():
        normals = np.flatnonzero(labels == 0)
        row = {}
        for m in (20, 40):
            if m >= len(normals):
                continue
            hits = 0
            for _ in range(draws):
                pick = rng.choice(normals, m, replace=False)
                rest = np.setdiff1d(np.arange(len(x)), pick)
                hits += check_acquisition(x[rest], AcquisitionReference.from_descriptors(x[pick])).differs
            row[str(m)] = hits / draws
        out[name] = row
    return out


def nih_same_acquisition(seed: int = 0) -> dict:
    """NIH64: disease effect per band, and batches of its own acquisition at 0–100 % abnormal."""
    from cxrscreen.engine.acquisition import AcquisitionReference, check_acquisition, descriptor, mann_whitney_delong
    from cxrscreen.engine.io import read_radiograph

    root = DATA / "nih64"
    rows = list(csv.DictReader(open(root / "labels.csv", encoding="utf-8")))
    d = np.stack([descriptor(read_radiograph(root / r["path"]).pixels) for r in rows])
    y = np.array([int(r["label"]) for r in rows])
    normal, abnormal = d[y == 0], d[y == 1]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(normal))
    ref = AcquisitionReference.from_descriptors(normal[order[:200]])
    batches = []
    for share in (0.0, 0.3, 0.6, 1.0):
        k = int(round(150 * share))
        b = np.r_[normal[order[200:200 + 150 - k]], abnormal[rng.choice(len(abnormal), k, replace=False)]]
        r = check_acquisition(b, ref)
        batches.append({"abnormal_share": share, "differs": r.differs, "p_value": r.p_value, "auc": list(r.auc)})
    return {"n_normal": len(normal), "n_abnormal": len(abnormal),
            "abnormal_vs_normal": [mann_whitney_delong(abnormal[:, k], np.sort(normal[:, k]))[0] for k in range(4)],
            "batches": batches}


def pool_descriptors() -> dict[str, np.ndarray]:
    """The unlabeled pool's 500 normals and first 500 abnormal images (cached): D_u at any AR."""
    from cxrscreen.engine.acquisition import descriptor
    from cxrscreen.engine.io import read_radiograph

    cache = WORK / "pool.npz"
    if cache.is_file():
        return dict(np.load(cache))
    split = json.loads(dev_split.SPLIT.read_text())
    root = dev_split.SPLIT.parent.parent
    out = {kind: np.stack([descriptor(read_radiograph(root / p).pixels) for p in split["unlabeled_pool"][kind][:500]])
           for kind in ("normal", "abnormal")}
    WORK.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def unlabeled_mix(d: dict[str, np.ndarray], draws: int = 200, seed: int = 0) -> dict:
    """Item 5, the training-time check (engine.acquisition.check_unlabeled): the unlabeled set against
    the 600 known normals. As the dev protocol builds it (AR 0–1: none should differ while AR <= 0.7),
    and the issue's failed adaptation, simulated: another batch as the unlabeled set (dev_test under
    each shift, the real 16-image batch), whole and in random subsets of 100 and 200 (same mix)."""
    from cxrscreen.engine.acquisition import AcquisitionReference, check_unlabeled

    ref = AcquisitionReference.from_descriptors(d["known"])
    pool = pool_descriptors()
    out: dict = {"dev_protocol": {}, "other_batch": {}}
    for ar in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        x = np.r_[pool["normal"][:round(500 * (1 - ar))], pool["abnormal"][:round(500 * ar)]]
        r = check_unlabeled(x, ref)
        out["dev_protocol"][f"{ar:.1f}"] = {"n": len(x), "differs": r.differs, "p_value": r.p_value, "auc": list(r.auc)}
    rng = np.random.default_rng(seed)
    for name, (x, labels) in batches(d).items():
        r = check_unlabeled(x, ref)
        row = {"n": len(x), "differs": r.differs, "p_value": r.p_value, "auc": list(r.auc), "subsets": {}}
        for n in (100, 200):
            if n < len(x):
                row["subsets"][str(n)] = float(np.mean([check_unlabeled(x[rng.choice(len(x), n, replace=False)], ref).differs
                                                        for _ in range(draws)]))
        out["other_batch"][name] = row
    # `train --check`'s first look: a fixed-size subset of each set (engine.train.unlabeled_precheck)
    u06 = np.r_[pool["normal"][:200], pool["abnormal"][:300]]
    sets = {"dev protocol, AR 0.6": u06, **{name: x for name, (x, _) in batches(d).items() if name != REAL}}
    out["precheck"] = {}
    for n in (120, 200, 300):
        out["precheck"][str(n)] = {name: float(np.mean([
            check_unlabeled(x[rng.choice(len(x), n, replace=False)],
                            AcquisitionReference.from_descriptors(d["known"][rng.choice(len(d["known"]), n, replace=False)])).differs
            for _ in range(draws)])) for name, x in sets.items()}
    return out


def real_rendering(d: dict[str, np.ndarray]) -> dict:
    """The real batch through the training copies' own pipeline (224 px, four filters, JPEG q75):
    does the check still call it different? (Is its difference this project's rendering?)"""
    from PIL import Image

    from cxrscreen.engine.acquisition import AcquisitionReference, check_acquisition, descriptor
    from cxrscreen.engine.io import read_radiograph
    from real_batch_diagnosis import _copy_pipeline
    from shift import real_batch_files

    ref = AcquisitionReference.from_descriptors(d["known"])
    paths, labels = real_batch_files()
    renderings = {"as read": lambda p: read_radiograph(p).pixels}
    for name in ("BILINEAR", "BICUBIC", "LANCZOS", "BOX"):
        renderings[f"224 px {name.lower()}, JPEG q75"] = lambda p, f=getattr(Image.Resampling, name): _copy_pipeline(p, f)
    out = {}
    for name, render in renderings.items():
        x = np.stack([descriptor(render(p)) for p in paths])
        r, rn = check_acquisition(x, ref), check_acquisition(x[labels == 0], ref)
        out[name] = {"auc": list(r.auc), "differs": r.differs, "p_value": r.p_value,
                     "normals_only": {"auc": list(rn.auc), "differs": rn.differs, "p_value": rn.p_value}}
    return out


def precheck_cost() -> dict:
    """Wall time of `train --check`'s first look (engine.train.unlabeled_precheck, 2 decoding threads):
    the dev protocol (224-px JPEGs) first and from the cache, and 200 + 200 full-size originals (the 16
    of fullres/kermany under other names, links in a temporary folder)."""
    import os
    import tempfile

    from cxrscreen.engine.datasets import TrainingData
    from cxrscreen.engine.train import unlabeled_precheck
    from shift import real_batch_files

    out = {}
    data = dev_split.training_data(ar=0.6)
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("first", "cached"):
            t0 = time.perf_counter()
            unlabeled_precheck(data, workers=2, cache=Path(tmp) / "cache")
            out[f"dev protocol, {label}"] = time.perf_counter() - t0
        paths, _ = real_batch_files()
        links = []
        for i in range(400):
            link = Path(tmp) / f"{i:03d}{paths[i % len(paths)].suffix}"
            os.symlink(paths[i % len(paths)].resolve(), link)
            links.append(link)
        t0 = time.perf_counter()
        unlabeled_precheck(TrainingData(links[:180], links[180:200], links[200:]), workers=2)
        out["400 full-size originals, first"] = time.perf_counter() - t0
    return out


def combine(checked: dict, tags: list[str]) -> dict:
    """Per detector and batch: the promise failing by > 5 points, the score warning, and with the check."""
    rows = []
    for tag in tags:
        saved = json.loads((DRIFT / f"{tag}.json").read_text())["real"]["batches"]
        for name, b in saved.items():
            if name not in checked["batches"] or "warning" not in b["drift"]:
                continue
            acq = checked["batches"][name]["differs"]
            rows.append({"detector": tag, "batch": name, "specificity_at_95": b["specificity_at_95"],
                         "fails_by_more_than_5": b["fails_by_more_than_5"], "score_warning": b["drift"]["warning"],
                         "acquisition_differs": acq, "warning": b["drift"]["warning"] or acq})
    def count(sel, key):
        return sum(r[key] for r in sel)
    failing = [r for r in rows if r["fails_by_more_than_5"]]
    others = [r for r in rows if not r["fails_by_more_than_5"]]
    dev = [r for r in rows if r["batch"] == "none"]
    return {"rows": rows, "summary": {
        "detectors": len(tags), "batches": len(rows),
        "failing": len(failing), "failing_warned_score": count(failing, "score_warning"),
        "failing_warned_with_check": count(failing, "warning"),
        "others": len(others), "others_warned_score": count(others, "score_warning"),
        "others_warned_with_check": count(others, "warning"),
        "dev_test_warned_score": count(dev, "score_warning"), "dev_test_warned_with_check": count(dev, "warning"),
        "failing_missed_with_check": [(r["detector"], r["batch"], round(r["specificity_at_95"], 3))
                                      for r in failing if not r["warning"]]}}


def attach(model: Path, out: Path, known: np.ndarray) -> None:
    """Write a copy of ``model`` whose scope metadata stores the reference of ``known`` descriptors."""
    import dataclasses

    import onnx

    from cxrscreen.engine.acquisition import AcquisitionReference
    from cxrscreen.engine.detector import METADATA_KEY, read_metadata

    meta = read_metadata(model)
    meta = dataclasses.replace(meta, scope={**meta.scope,
                                            "acquisition": AcquisitionReference.from_descriptors(known).to_dict()})
    m = onnx.load(str(model))
    props = {p.key: p.value for p in m.metadata_props}
    props[METADATA_KEY] = meta.to_json()
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, props)
    onnx.save(m, str(out))
    print(f"{out}: {model.name} with the acquisition reference of {len(known)} known normals")


def cost(model: Path, repeats: int = 3) -> dict:
    """What the descriptor adds to scoring: seconds per image for decoding, the detector's own
    preprocessing + graph, the descriptor on its own (another geometry than the detector's), and
    the descriptor from the detector's crop and resize (the same geometry: what scoring does then),
    on the real full-size batch (968–1776 px) and the full-size DICOMs (one process, CPU
    provider, best of ``repeats``)."""
    from cxrscreen.engine.acquisition import DESCRIPTOR_SPEC, descriptor, descriptor_of_geometry
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import finish, geometry, same_geometry

    det = Detector(model, provider="cpu")
    spec = det.preprocess_spec
    files = sorted((DATA / "fullres" / "kermany").rglob("*.jpeg")) + \
        [p for p in sorted((DATA / "dicom").rglob("*.dcm")) if p.stat().st_size > 100_000]
    keys = ("decode", "detector", "descriptor_alone", "descriptor_shared")
    best = dict.fromkeys(keys, np.inf)
    for _ in range(repeats):
        t = dict.fromkeys(keys, 0.0)
        for f in files:
            t0 = time.perf_counter()
            pix = read_radiograph(f).pixels
            t1 = time.perf_counter()
            resized = geometry(pix, spec)
            det.run(finish(resized, spec)[None, None])
            t2 = time.perf_counter()
            descriptor(pix)
            t3 = time.perf_counter()
            descriptor_of_geometry(resized)
            t4 = time.perf_counter()
            for k, dt in zip(keys, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                t[k] += dt
        best = {k: min(best[k], t[k] / len(files)) for k in keys}
    base = best["decode"] + best["detector"]
    return {"model": str(model), "files": len(files), "provider": det.provider,
            "same_geometry": same_geometry(spec, DESCRIPTOR_SPEC), "seconds_per_image": best,
            "added_alone": best["descriptor_alone"] / base, "added_shared": best["descriptor_shared"] / base}


def demo(work: Path) -> dict:
    """Why the demo detector stores no reference: the app's demo study (``app/demo.py``) checked
    against the normals ``cxrscreen demo-detector`` trains on (its defaults: 160 synthetic normals,
    128 px PNG, seed 1). The check does not depend on the network, so no training is needed."""
    import shutil

    from cxrscreen.app.demo import (DEMO_ABNORMAL, DEMO_LESION_STRENGTH, DEMO_NORMAL, DEMO_SEED, DEMO_SIZE,
                                    DEMO_VARIATION)
    from cxrscreen.engine.acquisition import AcquisitionReference, check_acquisition, descriptor
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.synth import write_study

    shutil.rmtree(work, ignore_errors=True)
    normals = write_study(work / "normal", 160, 0, seed=1, size=128, formats=("png",), variation=DEMO_VARIATION,
                          marker=True)
    study = write_study(work / "study", DEMO_NORMAL, DEMO_ABNORMAL, size=DEMO_SIZE, seed=DEMO_SEED,
                        variation=DEMO_VARIATION, lesion_strength=DEMO_LESION_STRENGTH)
    ref = AcquisitionReference.from_descriptors(np.stack([descriptor(read_radiograph(im.path).pixels) for im in normals]))
    d = np.stack([descriptor(read_radiograph(im.path).pixels) for im in study])
    r = check_acquisition(d, ref)
    lesion = np.array([im.label == 1 for im in study])
    finest = np.array([np.mean(np.asarray(ref.values[0]) < x) for x in d[:, 0]])
    return {"report": r.to_dict(), "finest_share_of_normals_below": {
        "lesion_images_min": float(finest[lesion].min()), "normal_images_median": float(np.median(finest[~lesion]))}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=500, help="random sub-batches per size (default 500)")
    p.add_argument("--attach", nargs=2, type=Path, metavar=("MODEL", "OUT"))
    p.add_argument("--cost", type=Path, metavar="MODEL", help="time the descriptor against decoding and this detector")
    p.add_argument("--demo", action="store_true", help="the app's demo study against the demo detector's normals")
    p.add_argument("--real-rendering", action="store_true",
                   help="the real batch through the training copies' pipeline (bench/results/acquisition/real_rendering.json)")
    p.add_argument("--precheck-cost", action="store_true",
                   help="time train --check's first look at the unlabeled set (bench/results/acquisition/precheck_cost.json)")
    p.add_argument("--unlabeled", action="store_true",
                   help="item 5 only: the training-time check of the unlabeled set (bench/results/acquisition/unlabeled.json)")
    args = p.parse_args()
    if not (DATA / "kermany" / "splits" / "dev.json").is_file():
        raise SystemExit(f"{DATA} is missing (../shared/data beside the checkout)")
    if args.attach:
        attach(*args.attach, descriptors()["known"])
        return
    if args.demo:
        res = demo(WORK / "demo")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "demo.json").write_text(json.dumps(res, indent=1))
        print(res["report"]["message"], json.dumps(res["finest_share_of_normals_below"]))
        return
    if args.real_rendering or args.precheck_cost:
        name, res = (("real_rendering", real_rendering(descriptors())) if args.real_rendering else
                     ("precheck_cost", precheck_cost()))
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1))
        print(json.dumps(res, indent=1))
        return
    if args.unlabeled:
        res = unlabeled_mix(descriptors())
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "unlabeled.json").write_text(json.dumps(res, indent=1))
        print(report_unlabeled(res))
        return
    if args.cost:
        res = cost(args.cost)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "cost.json").write_text(json.dumps(res, indent=1))
        print(json.dumps(res, indent=1))
        return
    t0 = time.time()
    d = descriptors()
    checked = check_batches(d, args.draws)
    tags = sorted(f.stem for f in DRIFT.glob("*.json")
                  if "real" in json.loads(f.read_text()) and "batches" in json.loads(f.read_text())["real"])
    res = {**checked, "nih64": nih_same_acquisition(), "site_reference": site_reference(d),
           "combined": combine(checked, tags), "tags": tags,
           "seconds": time.time() - t0}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "acquisition.json").write_text(json.dumps(res, indent=1))
    print(report(res))


def report_unlabeled(res: dict) -> str:
    lines = ["| unlabeled set (against the 600 known normals) | AUC finest / fine / medium / coarse | differs (p) | "
             "subsets of 100 / 200 differ |", "|---|---|---|---|"]
    for ar, r in res["dev_protocol"].items():
        lines.append(f"| dev protocol, AR {ar} ({r['n']} images) | {' / '.join(f'{a:.2f}' for a in r['auc'])} | "
                     f"{'**yes**' if r['differs'] else 'no'} ({r['p_value']:.2g}) | — |")
    for name, r in res["other_batch"].items():
        sub = " / ".join(f"{100 * r['subsets'][n]:.0f} %" for n in ("100", "200") if n in r["subsets"]) or "—"
        lines.append(f"| {name} ({r['n']}) | {' / '.join(f'{a:.2f}' for a in r['auc'])} | "
                     f"{'**yes**' if r['differs'] else 'no'} ({r['p_value']:.2g}) | {sub} |")
    names = list(res["precheck"]["200"])
    lines += ["", "| `train --check`'s first look: images of each set | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for n, row in res["precheck"].items():
        lines.append(f"| {n} | " + " | ".join(f"{100 * row[k]:.0f} %" for k in names) + " |")
    return "\n".join(lines)


def report(res: dict) -> str:
    from cxrscreen.engine.acquisition import BANDS

    e = res["disease_effect"]
    lines = ["disease effect (AUC against the known normals): " + ", ".join(
        f"{b} {a:.2f}" for b, a in zip(BANDS, e["pool_abnormal_vs_known"])) + " (pool abnormal); " + ", ".join(
        f"{b} {a:.2f}" for b, a in zip(BANDS, e["pool_normal_vs_known"])) + " (pool normal)",
        "NIH64 abnormal vs normal: " + ", ".join(f"{b} {a:.2f}" for b, a in zip(BANDS, res["nih64"]["abnormal_vs_normal"]))
        + "; its own batches of 150 differ at " + ", ".join(
            f"{100 * b['abnormal_share']:.0f} % abnormal: {'yes' if b['differs'] else 'no'} (p {b['p_value']:.2g})"
            for b in res["nih64"]["batches"]), "",
        "| batch | AUC finest / fine / medium / coarse | differs (p) | sub-batches 16 / 50 / 200 differ |",
        "|---|---|---|---|"]
    for name, r in res["batches"].items():
        sub = " / ".join(f"{100 * r['sub_batches'][str(n)]:.0f} %" if str(n) in r["sub_batches"] else "—" for n in SIZES)
        lines.append(f"| {name} | {' / '.join(f'{a:.2f}' for a in r['auc'])} | "
                     f"{'**yes**' if r['differs'] else 'no'} ({r['p_value']:.2g}) | {sub} |")
    lines += ["", "against 20 / 40 confirmed normals of the batch itself, the rest of it differs in: " + "; ".join(
        f"{name} {' / '.join(f'{100 * v:.0f} %' for v in r.values())}" for name, r in res["site_reference"].items())]
    s = res["combined"]["summary"]
    lines += ["", f"{s['detectors']} detectors, {s['batches']} detector × batch pairs with a drift warning recorded:",
              f"failing by > 5 points: {s['failing']}; warned by the score test {s['failing_warned_score']}, "
              f"with the acquisition check {s['failing_warned_with_check']}",
              f"within 5 points: {s['others']}; warned by the score test {s['others_warned_score']}, "
              f"with the acquisition check {s['others_warned_with_check']}",
              f"dev_test warned: {s['dev_test_warned_score']} by the score test, {s['dev_test_warned_with_check']} with the check",
              "failing and still not warned: " + "; ".join(f"{d} {b} ({100 * v:.1f} %)" for d, b, v in s["failing_missed_with_check"])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
