"""WSCXR on the development protocol: K-shot sweep, the letter's ablation, the random-encoder floor, cost.

Every run trains with the engine's own driver and data (the same as `cxrscreen train --method
wscxr --split dev.json --shots K --seed SEED`): normals = ``train.known_normal`` with the engine's
calibration hold-out (10 %, never trained on), labelled anomalies = K images of
``fewshot.abnormal`` drawn across patients (one image per patient in turn, patients and images in
a seeded random order; the K-subsets of one seed are nested). One MAE encoder is pre-trained once (`encoder`: normal ∪ the AR-0.6 unlabeled pool, no
labels) and reused by every detector (`--encoder`). Each detector is scored on dev_test with the
trained PyTorch networks: AUROC and AP with stratified bootstrap 95 % intervals, and the
sensitivity / specificity on dev_test at the threshold of 95 % specificity on the run's own
held-out calibration normals. dev_test is only evaluated, never used to choose anything.

    python bench/wscxr_dev.py encoder --pretrain-epochs 40 --threads 1 [--data /work/shared/data]
    python bench/wscxr_dev.py sweep --shots 2 4 8 16 --seeds 0 1 2 --threads 1
    python bench/wscxr_dev.py ablation --shots 16 --seeds 0 --threads 1
    python bench/wscxr_dev.py floor --shots 16 --seeds 0 --threads 1
    python bench/wscxr_dev.py sweep --shots 16 --seeds 0 --head mlp --threads 1
    python bench/wscxr_dev.py throughput --shots 16 --seed 0 --threads 1
    python bench/wscxr_dev.py encoder --pretrain-epochs 100 --encoder-name encoder_pre100 --threads 1
    python bench/wscxr_dev.py sweep --shots 16 --seeds 0 --encoder-name encoder_pre100 --threads 1
    python bench/wscxr_dev.py sweep --shots 2 4 8 16 --seeds 1 2 --encoder-name encoder_pre100 --threads 1
    python bench/wscxr_dev.py ablation --shots 16 --seeds 1 2 --encoder-name encoder_pre100 --threads 1
    python bench/wscxr_dev.py ddad --unlabeled shots --shots 16 2 --seeds 0 --epochs 50 --threads 1
    python bench/wscxr_dev.py ddad --unlabeled ar0.6 --seeds 0 --epochs 50 --threads 1
    python bench/wscxr_dev.py ddad --unlabeled ar0.6+shots --shots 16 2 --seeds 0 --epochs 50 --threads 1
    python bench/wscxr_dev.py sweep --shots 16 --seeds 0 1 2 --msacl-encoder bench/_work/msacl/msacl_e30_s0 --threads 1
    python bench/wscxr_dev.py encoder --pretrain-epochs 100 --encoder-name encoder_pre100_robust --robust --threads 1
    python bench/wscxr_dev.py sweep --shots 16 --seeds 0 1 2 --encoder-name encoder_pre100_robust --robust --threads 1
    python bench/wscxr_dev.py encoder --pretrain-epochs 100 --encoder-name encoder_pre100_robust_s1 --robust --seed 1 --threads 1
    python bench/wscxr_dev.py sweep --shots 16 --seeds 1 --encoder-name encoder_pre100_robust_s1 --robust --threads 1
    python bench/wscxr_dev.py report

Data: ../shared/data (beside the checkout). Runs go to bench/_work/wscxr/ (git-ignored;
resumable); one JSON per detector in bench/results/wscxr/.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import dev_split  # bench/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "_work" / "wscxr"
RESULTS = REPO / "bench" / "results" / "wscxr"
# the letter's Table II: (mining, mixing); "both" last, so a sweep beside it has usually written that row
ABLATION = {"neither": (False, False), "mining": (True, False), "mixing": (False, True), "both": (True, True)}


def draw_shots(seed: int) -> list[str]:
    """All ``fewshot.abnormal`` images in the engine's draw order (`train --split --shots K` takes
    the first K): patients in a seeded random order, one image of each in turn."""
    from cxrscreen.engine.datasets import draw_across_patients

    return draw_across_patients(json.loads(dev_split.SPLIT.read_text())["fewshot"]["abnormal"], seed)


def _config(args, seed: int, **values):
    from cxrscreen.engine.methods import registry

    given = {"seed": seed, "device": args.device, **values}
    if getattr(args, "intensity", None):  # e.g. the robust preset with equalize-bands (issue 22)
        given["intensity"] = args.intensity
    # --robust: the robust preset (the small one with field crop + equalisation, issue 22)
    return registry()["wscxr"].config("robust" if getattr(args, "robust", False) else "small", **given)


def _train(name: str, config, data, progress_mode: str):
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.train import run_training

    run_dir = WORK / name
    WORK.mkdir(parents=True, exist_ok=True)
    with StopRequest() as stop:
        outcome = run_training("wscxr", config, data, run_dir, Progress(progress_mode, log_path=WORK / f"{name}.log.jsonl"),
                               stop)
    if outcome.status != "done":
        sys.exit(f"{name}: stopped; run again to resume")
    return run_dir, outcome


def cmd_encoder(args) -> None:
    """Pre-train the shared MAE encoder (a WSCXR run with the unlabeled pool; its K = 16 shots do not
    reach the pre-training, which uses normal ∪ unlabeled)."""
    dev_split.require()
    from cxrscreen.engine.torch_runtime import set_threads

    set_threads(args.threads)
    # --seed: the pre-training's seed (0 for every encoder before the second robust encoder of issue 22)
    config = _config(args, args.seed, pretrain_epochs=args.pretrain_epochs)
    t0 = time.time()
    load_before = os.getloadavg()
    run_dir, outcome = _train(args.encoder_name, config, dev_split.training_data(shots=16, seed=0), args.progress)
    import torch

    saved = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    out = {"name": args.encoder_name, "config": config.to_dict(), "train_seconds": outcome.summary.get("train_seconds"),
           "phase_seconds": saved["phase_seconds"], "wall_seconds": time.time() - t0, "loadavg_before": load_before,
           "loadavg_after": os.getloadavg(), "summaries": saved["summaries"],
           "environment": outcome.summary.get("environment"), "data": outcome.summary.get("data")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = args.encoder_name if args.encoder_name != "encoder" else f"encoder_pre{args.pretrain_epochs}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"encoder: {out['train_seconds']:.0f} s", flush=True)


def evaluate_run(name: str, run_dir: Path, config, data, outcome, test_paths, test_labels, extra: dict) -> dict:
    import torch

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.wscxr.recipe import evaluate

    images = load_images(test_paths, config.preprocess)
    t = time.time()
    scores = evaluate(run_dir, images)["max"]
    eval_s = time.time() - t
    saved = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    result = {
        "name": name, "method": "wscxr", **extra,
        "config": config.to_dict(), "data": data.summary(), "shots": [str(p) for p in data.abnormal],
        "train_seconds": outcome.summary.get("train_seconds"), "phase_seconds": saved["phase_seconds"],
        "mining": {k: v for k, v in saved["mining"].items() if k != "kept"},
        "summaries": saved["summaries"], "loadavg": os.getloadavg(),
        "environment": outcome.summary.get("environment"),
        **_test_metrics(run_dir, test_labels, scores), "pytorch_eval_seconds": eval_s,
    }
    return _write(result)


def _test_metrics(run_dir: Path, y: np.ndarray, scores: np.ndarray) -> dict:
    """dev_test AUROC and AP with stratified bootstrap 95 % intervals, and the sensitivity and
    specificity at the threshold of 95 % specificity on the run's own held-out calibration normals."""
    from cxrscreen.engine import metrics as M
    from cxrscreen.engine.detector import NormalCalibration

    calibration = NormalCalibration.from_dict(json.loads((run_dir / "calibration.json").read_text()))
    threshold = calibration.threshold_at_specificity(0.95)
    flagged = scores > threshold
    return {"test": {"n": int(len(y)), "n_abnormal": int(y.sum())},
            "auroc": M.auroc(y, scores), "auroc_ci95": M.bootstrap_ci(y, scores, M.auroc, n_boot=1000),
            "ap": M.average_precision(y, scores), "ap_ci95": M.bootstrap_ci(y, scores, M.average_precision, n_boot=1000),
            "threshold_spec95_calibration": threshold,
            "sensitivity_at_cal_spec95": float(flagged[y == 1].mean()),
            "specificity_at_cal_spec95": float(1 - flagged[y == 0].mean())}


def _write(result: dict) -> dict:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{result['name']}.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"{result['name']}: AUROC {result['auroc']:.3f} [{result['auroc_ci95'][0]:.3f}, {result['auroc_ci95'][1]:.3f}] "
          f"AP {result['ap']:.3f}  sens@cal-spec95 {result['sensitivity_at_cal_spec95']:.3f} "
          f"(dev_test spec {result['specificity_at_cal_spec95']:.3f})  train {result['train_seconds']:.0f} s",
          flush=True)
    return result


def _detector(args, name: str, k: int, seed: int, extra: dict, **values) -> dict:
    from cxrscreen.engine.torch_runtime import set_threads

    set_threads(args.threads)
    if getattr(args, "msacl_encoder", None) is not None:  # an MSACL run's ResNet18 instead of the shared MAE
        encoder = args.msacl_encoder.resolve()
        if not (encoder / "model.pt").is_file():
            sys.exit(f"--msacl-encoder {encoder}: not a finished MSACL run (run bench/msacl_dev.py run first)")
        values.update(backbone="msacl", encoder=str(encoder))
        name = f"{name}_msacl_{encoder.name}"
        extra = {**extra, "backbone": "msacl", "msacl_run": encoder.name}
    elif "pretrain_epochs" not in values:
        encoder = WORK / args.encoder_name
        if not (encoder / "model.pt").is_file():
            sys.exit(f"no shared encoder at {encoder}: run `python bench/wscxr_dev.py encoder` first")
        values["encoder"] = str(encoder)
        if args.encoder_name != "encoder":
            name = f"{name}_{args.encoder_name}"
    config = _config(args, seed, head=args.head, **values)
    data = dev_split.training_data(shots=k or None, seed=seed, unlabeled=False)
    tp, tl = dev_split.dev_test()
    run_dir, outcome = _train(name, config, data, args.progress)
    return evaluate_run(name, run_dir, config, data, outcome, tp, tl, {"k": k, "seed": seed, **extra})


def cmd_sweep(args) -> None:
    dev_split.require()
    for seed in args.seeds:
        for k in args.shots:
            _detector(args, f"k{k}_s{seed}_{args.head}", k, seed, {"variant": "both", "head": args.head})


def cmd_ablation(args) -> None:
    dev_split.require()
    for seed in args.seeds:
        for k in args.shots:
            for variant, (mining, mixing) in ABLATION.items():
                suffix = "" if args.encoder_name == "encoder" else f"_{args.encoder_name}"
                if variant == "both" and args.head == "linear" and (RESULTS / f"k{k}_s{seed}_linear{suffix}.json").is_file():
                    continue  # the sweep's row
                _detector(args, f"ablation_{variant}_k{k}_s{seed}_{args.head}", k, seed,
                          {"variant": variant, "head": args.head}, mining=mining, mixing=mixing)


def cmd_floor(args) -> None:
    dev_split.require()
    for seed in args.seeds:
        for k in args.shots:
            _detector(args, f"floor_random_k{k}_s{seed}_{args.head}", k, seed,
                      {"variant": "random encoder", "head": args.head}, pretrain_epochs=0)


def cmd_throughput(args) -> None:
    """Export one detector to ONNX (parity-checked) and time onnxruntime on dev_test (AMAE's bench:
    batches of 32, best of 3)."""
    from amae_dev import _onnx_throughput  # bench/ is on sys.path

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.wscxr import Config
    from cxrscreen.engine.torch_runtime import set_threads

    dev_split.require()
    set_threads(args.threads)
    run_dir = WORK / f"k{args.shots[0]}_s{args.seed}_{args.head}"
    config = Config.from_dict(json.loads((run_dir / "run.json").read_text())["config"])
    images = load_images(dev_split.dev_test()[0], config.preprocess)
    result = {"run": run_dir.name, "threads": args.threads, "loadavg": os.getloadavg(),
              **_onnx_throughput(run_dir, images, WORK / f"{run_dir.name}.onnx", "cpu")}
    (RESULTS / f"throughput_{run_dir.name}_t{args.threads}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


def cmd_ddad(args) -> None:
    """DDAD (the paper preset: AE-U, 3 members, 250 epochs, 64 px) on the same normals and hold-out,
    with the K shots as (part of) its unlabeled set D_u: ``--unlabeled shots`` (D_u = the K shots
    alone, the letter's comparison) or ``ar0.6+shots`` (the AR-0.6 pool plus the K shots); ``ar0.6``
    is DDAD as it runs without shots (K is then 0), for a baseline at the same epochs. Module B
    (known normals only) is the same network whatever D_u is: the first finished run of a seed
    trains it, later runs of that seed reuse it (``reuse_normal_module``)."""
    import dataclasses

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.methods.ddad.recipe import all_maps, load_scorer
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.torch_runtime import set_threads
    from cxrscreen.engine.train import run_training

    dev_split.require()
    set_threads(args.threads)
    tp, tl = dev_split.dev_test()
    for seed in args.seeds:
        for k in ([0] if args.unlabeled == "ar0.6" else args.shots):
            base = dev_split.training_data(shots=k or None, seed=seed, unlabeled=args.unlabeled.startswith("ar0.6"))
            shots = base.abnormal  # DDAD sees them without their labels, in D_u
            data = dataclasses.replace(base, unlabeled=[*base.unlabeled, *shots], abnormal=[],
                                       source={**base.source, "unlabeled": args.unlabeled})
            tag = f"_{args.tag}" if args.tag else ""
            name = f"ddad_{args.unlabeled}_k{k}_s{seed}_e{args.epochs}_{args.precision}{tag}"
            values = {"seed": seed, "device": args.device, "epochs": args.epochs, "precision": args.precision}
            if (WORK / name / "run.json").is_file():  # a started run keeps its own module B's source
                values["reuse_normal_module"] = json.loads((WORK / name / "run.json").read_text())["config"].get(
                    "reuse_normal_module")
            else:
                done_b = sorted(p.parent for p in WORK.glob(f"ddad_*_s{seed}_e{args.epochs}_{args.precision}{tag}/model.pt"))
                values["reuse_normal_module"] = str(done_b[0]) if done_b else None
            config = registry()["ddad"].config("paper", **values)
            run_dir = WORK / name
            t0 = time.time()
            with StopRequest() as stop:
                outcome = run_training("ddad", config, data, run_dir,
                                       Progress(args.progress, log_path=WORK / f"{name}.log.jsonl"), stop)
            if outcome.status != "done":
                sys.exit(f"{name}: stopped; run again to resume")
            scores = all_maps(load_scorer(run_dir), load_images(tp, config.preprocess))[config.score_type]
            _write({"name": name, "method": "ddad", "unlabeled": args.unlabeled, "k": k, "seed": seed,
                    "config": config.to_dict(), "data": data.summary(), "shots": [str(p) for p in shots],
                    "train_seconds": outcome.summary.get("train_seconds"), "wall_seconds": time.time() - t0,
                    "loadavg": os.getloadavg(), "environment": outcome.summary.get("environment"),
                    "score_type": config.score_type, **_test_metrics(run_dir, tl, scores)})


def _encoder(r: dict) -> str:
    """The shared encoder a detector reused (its run's name), or what it trained itself."""
    encoder = r["config"].get("encoder")
    if encoder and r["config"].get("backbone") == "msacl":
        return f"MSACL {Path(encoder).name}"
    return Path(encoder).name if encoder else ("random" if r["config"].get("pretrain_epochs") == 0 else "own")


def _mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def cmd_report(args) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    ws = [r for r in rows if "auroc" in r and r.get("method") == "wscxr"]

    def fmt(r: dict, first: str) -> str:
        lo, hi = r["auroc_ci95"]
        alo, ahi = r["ap_ci95"]
        return (f"| {first} | {r['k']} | {r['seed']} | {r['auroc']:.3f} [{lo:.3f}, {hi:.3f}] | "
                f"{r['ap']:.3f} [{alo:.3f}, {ahi:.3f}] | {r['sensitivity_at_cal_spec95']:.3f} | "
                f"{r['specificity_at_cal_spec95']:.3f} | {r['train_seconds']:.0f} |")

    head = ("| AUROC [95 % CI] | AP [95 % CI] | sens. at cal. spec 95 % | dev_test spec. | train s |\n"
            "|---|---:|---:|---|---|---:|---:|---:|")
    print("| encoder · variant · head | K | seed " + head)
    for r in sorted(ws, key=lambda r: (_encoder(r), r["variant"] != "both", r["head"], r["variant"], r["k"], r["seed"])):
        print(fmt(r, f"{_encoder(r)} · {r['variant']} · {r['head']} · {r['mining']['prototypes']} prototypes"))
    print("\n| encoder | variant | K | seeds | AUROC mean ± sd | AP mean ± sd | sens. at cal. spec 95 % mean ± sd |")
    print("|---|---|---:|---|---|---|---|")
    groups: dict[tuple, list[dict]] = {}
    for r in ws:
        if r["head"] == "linear":
            groups.setdefault((_encoder(r), r["variant"], r["k"]), []).append(r)
    for (encoder, variant, k), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "both", kv[0][1], kv[0][2])):
        rs = sorted(rs, key=lambda r: r["seed"])
        print(f"| {encoder} | {variant} | {k} | {', '.join(str(r['seed']) for r in rs)} | "
              f"{_mean_sd([r['auroc'] for r in rs])} | {_mean_sd([r['ap'] for r in rs])} | "
              f"{_mean_sd([r['sensitivity_at_cal_spec95'] for r in rs])} |")
    dd = [r for r in rows if r.get("method") == "ddad"]
    if dd:
        print("\n| DDAD D_u | K | seed | epochs | precision | AUROC [95 % CI] | AP [95 % CI] | sens. at cal. spec 95 % | "
              "dev_test spec. | train s |\n|---|---:|---:|---:|---|---|---|---:|---:|---:|")
        for r in sorted(dd, key=lambda r: (r["unlabeled"], -r["k"], r["seed"])):
            lo, hi = r["auroc_ci95"]
            alo, ahi = r["ap_ci95"]
            print(f"| {r['unlabeled']} ({r['data']['unlabeled']} images) | {r['k']} | {r['seed']} | "
                  f"{r['config']['epochs']} | {r['config']['precision']} | {r['auroc']:.3f} [{lo:.3f}, {hi:.3f}] | "
                  f"{r['ap']:.3f} [{alo:.3f}, {ahi:.3f}] | {r['sensitivity_at_cal_spec95']:.3f} | "
                  f"{r['specificity_at_cal_spec95']:.3f} | {r['train_seconds']:.0f} |")


def main() -> None:
    from typing import get_args

    from cxrscreen.engine.preprocess import Intensity

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, fn in (("encoder", cmd_encoder), ("sweep", cmd_sweep), ("ablation", cmd_ablation), ("floor", cmd_floor),
                     ("throughput", cmd_throughput), ("ddad", cmd_ddad), ("report", cmd_report)):
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--shots", type=int, nargs="+", default=[2, 4, 8, 16])
        p.add_argument("--seeds", type=int, nargs="+", default=[0])
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--head", choices=("linear", "mlp"), default="linear")
        p.add_argument("--pretrain-epochs", type=int, default=100)
        p.add_argument("--encoder-name", default="encoder", help="the shared encoder's run (bench/_work/wscxr/NAME)")
        p.add_argument("--robust", action="store_true",
                       help="the robust preset (field crop + equalisation, encoder and detectors alike; give the "
                            "encoder its own --encoder-name)")
        p.add_argument("--intensity", default=None, choices=get_args(Intensity),
                       help="the preset's intensity normalisation replaced (encoder and detectors alike: give the "
                            "encoder its own --encoder-name), e.g. equalize-bands")
        p.add_argument("--msacl-encoder", type=Path, default=None,
                       help="a finished MSACL run folder (bench/_work/msacl/NAME): its ResNet18 is the backbone "
                            "(--backbone msacl) instead of the shared MAE encoder")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--device", default="cpu")
        p.add_argument("--progress", default="none")
        p.add_argument("--data", type=Path, default=None, help="the shared data folder (default: ../shared/data)")
        p.add_argument("--unlabeled", choices=("shots", "ar0.6+shots", "ar0.6"), default="shots",
                       help="ddad: its unlabeled set D_u, the K shots alone, the AR-0.6 pool plus the shots, or the "
                            "pool alone")
        p.add_argument("--epochs", type=int, default=250, help="ddad: training epochs (the paper: 250)")
        p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16", help="ddad (the paper: fp32)")
        p.add_argument("--tag", default="", help="ddad: a suffix of the run names")
    args = parser.parse_args()
    if args.data is not None:
        dev_split.use_data(args.data)
    args.fn(args)


if __name__ == "__main__":
    main()
