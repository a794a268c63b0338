"""DDAD on the development protocol: accuracy (rec / intra / inter), anomaly-rate curve, NIH64.

Every run trains with the engine's own driver (the same code as `cxrscreen train`), evaluates
all three DDAD maps on the held-out test part with the trained PyTorch networks, and writes one
JSON result to bench/results/ddad/ (small, committed). `report` prints the markdown tables of
bench/RESULTS.md from those files.

    python bench/ddad_dev.py protocol --backbone ae-u --seeds 0 1 2
    python bench/ddad_dev.py protocol --backbone ae --seeds 0 1 2
    python bench/ddad_dev.py ar-curve --backbone ae --ars 0 0.2 0.4 0.6 0.8 1.0
        (module B, trained on the known normals only, is taken from the AR 0.6 run of the same
        seed: it is the same network at every AR)
    python bench/ddad_dev.py nih64 --backbone ae-u --seeds 0
    python bench/ddad_dev.py report

Data: ../shared/data (beside the checkout). dev_test is only evaluated, never used to choose
anything. Training runs go to bench/_work/ddad/ (git-ignored; resumable).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import dev_split  # bench/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORK = REPO / "bench" / "_work" / "ddad"
RESULTS = REPO / "bench" / "results" / "ddad"


def _nih64_data(calibration_fraction: float):
    """NIH64: train normals as D_n, the rest of train as D_u, valid as the test set."""
    from cxrscreen.engine.datasets import TrainingData, split_calibration

    rows = list(csv.DictReader(open(DATA / "nih64" / "labels.csv")))
    train_n = [DATA / "nih64" / r["path"] for r in rows if r["split"] == "train" and r["label"] == "0"]
    train_rest = [DATA / "nih64" / r["path"] for r in rows if r["split"] == "train" and r["label"] != "0"]
    test = [(DATA / "nih64" / r["path"], int(r["label"])) for r in rows if r["split"] == "valid"]
    normal_train, cal = split_calibration(train_n, calibration_fraction)
    data = TrainingData(normal_train, cal, sorted(train_rest),
                        {"kind": "nih64", "labels": str(DATA / "nih64" / "labels.csv"),
                         "unlabeled": "all non-normal train images (anomaly rate 1.0)"})
    return data, [p for p, _ in test], np.array([y for _, y in test])


def train_and_evaluate(name: str, data, test_paths, test_labels, config, progress_mode: str) -> dict:
    from cxrscreen.engine import metrics as M
    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.ddad.recipe import all_maps, load_scorer
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.train import run_training

    run_dir = WORK / name
    WORK.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t0 = time.time()
    with StopRequest() as stop:
        outcome = run_training("ddad", config, data, run_dir, Progress(progress_mode, log_path=run_dir.parent / f"{name}.log.jsonl"), stop)
    if outcome.status != "done":
        sys.exit(f"{name}: stopped; run again to resume")
    load_after = os.getloadavg()
    scorer = load_scorer(run_dir)
    images = load_images(test_paths, config.preprocess)
    maps = all_maps(scorer, images)
    result = {
        "name": name,
        "config": config.to_dict(),
        "data": data.summary(),
        "train_seconds": outcome.summary.get("train_seconds"),
        "wall_seconds": time.time() - t0,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "environment": outcome.summary.get("environment"),
        "test": {"n": int(len(test_labels)), "n_abnormal": int(test_labels.sum())},
        "metrics": {k: {"auroc": M.auroc(test_labels, v), "ap": M.average_precision(test_labels, v)} for k, v in maps.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    m = result["metrics"]
    print(f"{name}: rec {m['rec']['auroc']:.3f}  intra {m['intra']['auroc']:.3f}  inter {m['inter']['auroc']:.3f} "
          f"(AP {m['inter']['ap']:.3f})  train {result['train_seconds']:.0f} s", flush=True)
    return result


def _config(args, seed: int, reuse: Path | None = None):
    from cxrscreen.engine.methods.ddad import Config
    from cxrscreen.engine.preprocess import PreprocessSpec

    return Config(backbone=args.backbone, epochs=args.epochs, seed=seed, precision=args.precision, members=args.members,
                  preprocess=PreprocessSpec(size=64, intensity=args.intensity), augment=args.augment,
                  reuse_normal_module=str(reuse) if reuse else None)


def _variant(args) -> str:
    """'' for the paper's recipe, else what differs (part of run and result names)."""
    parts = [f"_{args.intensity}" if args.intensity != "none" else "", "_aug" if args.augment != "none" else ""]
    return "".join(parts)


def _tag(args, ar: float, seed: int) -> str:
    return f"dev_{args.backbone}_ar{ar:g}_s{seed}_e{args.epochs}_{args.precision}{_variant(args)}"


def cmd_protocol(args) -> None:

    dev_split.require()
    tp, tl = dev_split.dev_test()
    for seed in args.seeds:
        data = dev_split.training_data(args.ar)
        train_and_evaluate(_tag(args, args.ar, seed), data, tp, tl, _config(args, seed), args.progress)


def cmd_ar_curve(args) -> None:

    dev_split.require()
    tp, tl = dev_split.dev_test()
    for ar in args.ars:
        for seed in args.seeds:
            data = dev_split.training_data(ar)
            # module B sees only the known normals, identical at every AR: reuse the AR 0.6 run's
            base = WORK / _tag(args, 0.6, seed)
            reuse = base if ar != 0.6 and (base / "model.pt").is_file() else None
            train_and_evaluate(_tag(args, ar, seed), data, tp, tl, _config(args, seed, reuse), args.progress)


def cmd_nih64(args) -> None:
    dev_split.require()
    data, tp, tl = _nih64_data(0.1)
    for seed in args.seeds:
        tag = f"nih64_{args.backbone}_s{seed}_e{args.epochs}_{args.precision}{_variant(args)}"
        train_and_evaluate(tag, data, tp, tl, _config(args, seed), args.progress)


def cmd_report(args) -> None:
    # only this script's run results (the folder also holds other DDAD benchmarks' files)
    rows = [r for r in (json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))) if "config" in r]
    by_group: dict[tuple, list] = {}
    for r in rows:
        c = r["config"]
        src = r["data"]["source"]
        variant = ("equalize " if c["preprocess"].get("intensity") == "equalize" else "") + \
                  ("+aug" if c.get("augment", "none") != "none" else "")
        key = (src.get("kind"), c["backbone"] + (f" {variant.strip()}" if variant.strip() else ""),
               src.get("anomaly_rate"), c["epochs"], c["precision"])
        by_group.setdefault(key, []).append(r)
    print("| data | backbone | AR | epochs | precision | seeds | rec AUROC | rec AP | intra AUROC | intra AP "
          "| inter AUROC | inter AP | train s (each) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, rs in sorted(by_group.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        def ms(k, m):
            v = np.array([r["metrics"][k][m] for r in rs])
            return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"
        secs = ", ".join(f"{r['train_seconds']:.0f}" for r in rs)
        print(f"| {key[0]} | {key[1]} | {key[2] if key[2] is not None else '-'} | {key[3]} | {key[4]} | "
              f"{len(rs)} | " + " | ".join(ms(k, m) for k in ("rec", "intra", "inter") for m in ("auroc", "ap")) + f" | {secs} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("protocol", "ar-curve", "nih64"):
        s = sub.add_parser(name)
        s.add_argument("--backbone", default="ae-u", choices=("ae", "ae-u", "memae"))
        s.add_argument("--seeds", type=int, nargs="+", default=[0])
        s.add_argument("--epochs", type=int, default=250)
        s.add_argument("--members", type=int, default=3)
        s.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
        s.add_argument("--progress", default="bar", choices=("bar", "json", "none"))
        s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: one per core)")
        s.add_argument("--intensity", default="none", choices=("none", "percentile", "equalize"),
                       help="preprocessing intensity normalisation (the paper: none)")
        s.add_argument("--augment", default="none", choices=("none", "acquisition"), help="(the paper: none)")
        if name == "protocol":
            s.add_argument("--ar", type=float, default=0.6)
        if name == "ar-curve":
            s.add_argument("--ars", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    sub.add_parser("report")
    args = p.parse_args()
    if getattr(args, "threads", None) is not None:
        from cxrscreen.engine.torch_runtime import set_threads

        set_threads(args.threads)
    {"protocol": cmd_protocol, "ar-curve": cmd_ar_curve, "nih64": cmd_nih64, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
