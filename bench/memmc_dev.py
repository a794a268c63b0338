"""MemMC-MAE on the development protocol (normals only): accuracy, the paper's ablation, cost.

Every run trains with the engine's own driver (the same code as `cxrscreen train --method memmc`):
normals = ``train.known_normal`` of the split with the engine's calibration hold-out (10 %, never
trained on); no unlabeled and no abnormal images (the method is one-class). Each detector is
scored on dev_test with the trained PyTorch networks: AUROC and AP with stratified bootstrap 95 %
intervals, and the sensitivity / specificity on dev_test at the threshold of 95 % specificity on
the run's own held-out calibration normals. dev_test is only evaluated, never used to choose
anything (no epoch, no setting).

    python bench/memmc_dev.py protocol --seeds 0 --epochs 40 --threads 1
    python bench/memmc_dev.py protocol --seeds 0 --epochs 40 --threads 1 --variant mae memory
    python bench/memmc_dev.py throughput --seed 0 --epochs 40 --threads 1 --images 128
    python bench/memmc_dev.py cputime --seed 0 --epochs 40 --images 128
    python bench/memmc_dev.py errors --seed 0 --epochs 40 --variant mae
    python bench/memmc_dev.py steptime --variant full mae memory --threads 1 --steps 5
    python bench/memmc_dev.py protocol --seeds 0 --threads 1 --robust      # issue 22
    python bench/memmc_dev.py report

Variants (the paper's Table 2 rows): ``mae`` (plain MAE: no memory, no skips, MAE's decoder),
``memory`` (+ memory-augmented encoder with its long skips, MAE's decoder), ``full`` (+ the
multi-level cross-attention decoder: MemMC-MAE). Every other setting is the small preset's;
``--epochs`` shortens its 300 epochs (the cosine schedule ends at the last epoch given).
``--robust``: each image cropped to its exposed field and histogram-equalised, in training and
scoring alike (WSCXR's robust preset's preprocessing; issue 22); run names get ``_robust``.

Data: ../shared/data (beside the checkout). Runs go to bench/_work/memmc/ (git-ignored;
resumable); one JSON per detector in bench/results/memmc/.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import dev_split  # bench/ is on sys.path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "_work" / "memmc"
RESULTS = REPO / "bench" / "results" / "memmc"
VARIANTS = {"mae": dict(memory_slots=0, long_skips=False, multi_level=False),
            "memory": dict(long_skips=True, multi_level=False),
            "full": dict(long_skips=True, multi_level=True)}


def _name(variant: str, seed: int, epochs: int, robust: bool = False) -> str:
    return f"{variant}{'_robust' if robust else ''}_e{epochs}_s{seed}"


def _config(args, variant: str, seed: int):
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.methods.base import ROBUST_PREPROCESS

    return registry()["memmc"].config("small", seed=seed, epochs=args.epochs, device=args.device, **VARIANTS[variant],
                                      **(ROBUST_PREPROCESS if args.robust else {}))


def evaluate_run(name: str, run_dir: Path, config, data, outcome, extra: dict) -> dict:
    import torch

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.memmc.recipe import evaluate

    paths, y = dev_split.dev_test()
    images = load_images(paths, config.preprocess)
    t = time.time()
    scores = evaluate(run_dir, images)["ms-ssim"]
    eval_s = time.time() - t
    from wscxr_dev import _test_metrics  # bench/ is on sys.path: the same dev_test figures as WSCXR's

    saved = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    train_s = saved["phase_seconds"].get("train")
    result = {
        "name": name, "method": "memmc", **extra,
        "config": config.to_dict(), "data": data.summary(),
        "train_seconds": outcome.summary.get("train_seconds"), "phase_seconds": saved["phase_seconds"],
        "seconds_per_epoch": train_s / config.epochs if train_s else None,
        "summary": saved["summary"], "loadavg": os.getloadavg(), "environment": outcome.summary.get("environment"),
        **_test_metrics(run_dir, y, scores),
        "pytorch_eval_seconds": eval_s,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"{name}: AUROC {result['auroc']:.3f} [{result['auroc_ci95'][0]:.3f}, {result['auroc_ci95'][1]:.3f}] "
          f"AP {result['ap']:.3f}  sens@cal-spec95 {result['sensitivity_at_cal_spec95']:.3f} "
          f"(dev_test spec {result['specificity_at_cal_spec95']:.3f})  train {result['train_seconds']:.0f} s "
          f"({result['seconds_per_epoch']:.1f} s/epoch)", flush=True)
    return result


def cmd_protocol(args) -> None:
    dev_split.require()
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.torch_runtime import set_threads
    from cxrscreen.engine.train import run_training

    set_threads(args.threads)
    data = dev_split.training_data(unlabeled=False)
    for seed in args.seeds:
        for variant in args.variant:
            name = _name(variant, seed, args.epochs, args.robust)
            config = _config(args, variant, seed)
            WORK.mkdir(parents=True, exist_ok=True)
            with StopRequest() as stop:
                outcome = run_training("memmc", config, data, WORK / name,
                                       Progress(args.progress, log_path=WORK / f"{name}.log.jsonl"), stop)
            if outcome.status != "done":
                sys.exit(f"{name}: stopped; run again to resume")
            evaluate_run(name, WORK / name, config, data, outcome,
                         {"variant": variant, "robust": args.robust, "seed": seed, "epochs": args.epochs, "threads": args.threads})


def cmd_throughput(args) -> None:
    """Export one detector to ONNX (parity-checked) and time onnxruntime on dev_test (AMAE's bench:
    batches of 32, best of 3)."""
    from amae_dev import _onnx_throughput  # bench/ is on sys.path

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.memmc import Config
    from cxrscreen.engine.torch_runtime import set_threads

    dev_split.require()
    set_threads(args.threads)
    run_dir = WORK / _name(args.variant[0], args.seed, args.epochs, args.robust)
    config = Config.from_dict(json.loads((run_dir / "run.json").read_text())["config"])
    images = load_images(dev_split.dev_test()[0][: args.images], config.preprocess)
    result = {"run": run_dir.name, "threads": args.threads, "loadavg": os.getloadavg(),
              **_onnx_throughput(run_dir, images, WORK / f"{run_dir.name}.onnx", "cpu")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"throughput_{run_dir.name}_t{args.threads}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


def cmd_cputime(args) -> None:
    """Time an exported detector (``throughput`` wrote it) in CPU seconds: onnxruntime with one
    intra-op thread, batches of 32, ``time.process_time`` (on a CPU shared with many jobs the wall
    clock measures the others' load; the CPU time of one thread does not, up to cache effects)."""
    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.detector import Detector

    dev_split.require()
    name = _name(args.variant[0], args.seed, args.epochs, args.robust)
    det = Detector(WORK / f"{name}.onnx", provider="cpu", threads=1)
    images = load_images(dev_split.dev_test()[0][: args.images], det.preprocess_spec)
    det.run(images[:32])  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(0, len(images), 32):
        det.run(images[i : i + 32])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    result = {"run": name, "ort_threads": 1, "images": len(images), "batch": 32, "cpu_seconds": cpu,
              "wall_seconds": wall, "images_per_cpu_s": len(images) / cpu, "loadavg": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"cputime_{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


def cmd_errors(args) -> None:
    """Diagnostic, not a setting: the same run's dev_test AUROC with the detector's MS-SSIM score
    and with the plain pixel MSE of the masked patches (same 10 masks), and each score's mean on
    normal and abnormal images. Nothing is chosen from it."""
    import torch

    from cxrscreen.engine import metrics as M
    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.memmc.recipe import load_scorer
    from cxrscreen.engine.torch_runtime import set_threads

    dev_split.require()
    set_threads(args.threads)
    name = _name(args.variant[0], args.seed, args.epochs, args.robust)
    scorer = load_scorer(WORK / name)
    paths, y = dev_split.dev_test()
    images = torch.from_numpy(load_images(paths, _spec(WORK / name)))
    ssim, mse = [], []
    model, w = scorer.model, scorer.patch_weights
    with torch.no_grad():
        for i in range(0, len(images), 32):
            x = images[i : i + 32]
            ssim.append(scorer(x)[0])
            m, n = scorer.n_masks, len(x)
            keep = scorer.ids_keep.unsqueeze(1).expand(-1, n, -1).reshape(m * n, -1)
            restore = scorer.ids_restore.unsqueeze(1).expand(-1, n, -1).reshape(m * n, -1)
            xr = x.repeat(m, 1, 1, 1)
            per_patch = ((model.reconstruct(xr, keep, restore) - model.patchify(xr)) ** 2).mean(-1).reshape(m, n, -1)
            mse.append((per_patch * w.unsqueeze(1)).sum(0).mean(-1))
    result = {"run": name}
    for key, s in (("ms-ssim", torch.cat(ssim).numpy()), ("mse", torch.cat(mse).numpy())):
        result[key] = {"auroc": M.auroc(y, s), "mean_normal": float(s[y == 0].mean()),
                       "mean_abnormal": float(s[y == 1].mean())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"errors_{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


def _spec(run_dir: Path):
    from cxrscreen.engine.methods.memmc import Config

    return Config.from_dict(json.loads((run_dir / "run.json").read_text())["config"]).preprocess


def cmd_steptime(args) -> None:
    """Wall and CPU seconds per training step (64 real normals, the small preset's network per
    variant, AMAE's trainer as in training) after one warm-up step; each variant's JSON in results."""
    import torch

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.amae.recipe import _MAETrainer
    from cxrscreen.engine.methods.memmc.recipe import build_model
    from cxrscreen.engine.torch_runtime import set_threads

    dev_split.require()
    set_threads(args.threads)
    data = dev_split.training_data(unlabeled=False)
    for variant in args.variant:
        config = _config(args, variant, args.seed)
        images = torch.from_numpy(load_images(data.normal_train[: config.batch_size], config.preprocess))
        trainer = _MAETrainer(build_model(config), images, config, lr=config.lr, warmup=config.warmup_epochs,
                              epochs=config.epochs, seed=0, steps_per_epoch=1, masks_per_image=1, augment=True,
                              device=torch.device("cpu"))
        trainer.run_epoch(0, lambda loss: None)  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()
        for epoch in range(args.steps):
            trainer.run_epoch(epoch, lambda loss: None)
        cpu, wall = (time.process_time() - cpu) / args.steps, (time.perf_counter() - wall) / args.steps
        result = {"variant": variant, "threads": args.threads, "steps": args.steps, "batch": config.batch_size,
                  "wall_s_per_step": wall, "cpu_s_per_step": cpu, "loadavg": os.getloadavg(),
                  "small_preset_train_minutes_at_this_rate": wall * 8 * 300 / 60}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"steptime_{variant}_t{args.threads}.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result), flush=True)


def cmd_report(args) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))
            if not p.name.startswith(("throughput", "cputime", "errors", "steptime"))]
    print("| variant | epochs | seed | AUROC [95 % CI] | AP [95 % CI] | sens. at cal. spec 95 % | dev_test spec. | "
          "s/epoch | train s | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = list(VARIANTS)
    def label(r: dict) -> str:
        return r["variant"] + (" (robust)" if r.get("robust") else "")

    for r in sorted(rows, key=lambda r: (r["epochs"], order.index(r["variant"]), bool(r.get("robust")), r["seed"])):
        lo, hi = r["auroc_ci95"]
        alo, ahi = r["ap_ci95"]
        print(f"| {label(r)} | {r['epochs']} | {r['seed']} | {r['auroc']:.3f} [{lo:.3f}, {hi:.3f}] | "
              f"{r['ap']:.3f} [{alo:.3f}, {ahi:.3f}] | {r['sensitivity_at_cal_spec95']:.3f} | "
              f"{r['specificity_at_cal_spec95']:.3f} | {r['seconds_per_epoch']:.1f} | {r['train_seconds']:.0f} | "
              f"{r['loadavg'][0]:.1f} |")
    from wscxr_dev import _mean_sd  # bench/ is on sys.path: the same figures as WSCXR's

    groups: dict[tuple[str, bool, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["variant"], bool(r.get("robust")), r["epochs"]), []).append(r)
    for (_, _, epochs), rs in sorted(groups.items(), key=lambda kv: (kv[0][2], order.index(kv[0][0]), kv[0][1])):
        if len(rs) > 1:
            rs = sorted(rs, key=lambda r: r["seed"])
            print(f"{label(rs[0])}, {epochs} epochs, seeds {', '.join(str(r['seed']) for r in rs)}: AUROC "
                  f"{_mean_sd([r['auroc'] for r in rs])}, AP {_mean_sd([r['ap'] for r in rs])}")
    for p in sorted(RESULTS.glob("throughput_*.json")):
        t = json.loads(p.read_text())
        print(f"{t['run']}: {t['images_per_s']:.1f} images/s (onnxruntime CPU with its default threads, torch "
              f"{t['threads']} thread(s), batch "
              f"{t['batch']}, load {t['loadavg'][0]:.1f}); parity |Δscore| {t['parity_score']:.1e}, "
              f"|Δheatmap| {t['parity_heatmap']:.1e}; {t['onnx_mib']:.1f} MiB")
    for p in sorted(RESULTS.glob("cputime_*.json")):
        t = json.loads(p.read_text())
        print(f"{t['run']}: {t['images_per_cpu_s']:.1f} images per CPU second (onnxruntime, 1 thread, {t['images']} "
              f"images, batch {t['batch']}; wall {t['wall_seconds']:.0f} s at load {t['loadavg'][0]:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, fn in (("protocol", cmd_protocol), ("throughput", cmd_throughput), ("cputime", cmd_cputime),
                     ("errors", cmd_errors), ("steptime", cmd_steptime),
                     ("report", cmd_report)):
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        if name == "report":
            continue
        p.add_argument("--epochs", type=int, default=300, help="training epochs (the small preset's 300 by default)")
        p.add_argument("--variant", nargs="+", choices=list(VARIANTS), default=["full"])
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--device", default="cpu")
        p.add_argument("--progress", default="none", choices=("none", "json", "bar"))
        p.add_argument("--robust", action="store_true", help="field crop + equalisation (issue 22)")
        if name == "protocol":
            p.add_argument("--seeds", type=int, nargs="+", default=[0])
        else:
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--images", type=int, default=128, help="the first N dev_test images are timed")
            p.add_argument("--steps", type=int, default=5, help="steps timed (steptime)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "bench"))
    args.fn(args)


if __name__ == "__main__":
    main()
