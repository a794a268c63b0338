"""AMAE on the development protocol: stage 1 and stage 2 accuracy, anomaly-rate curve, cost.

Every run trains with the engine's own driver (the same code as `cxrscreen train --method amae`),
evaluates both detectors (stage 1 alone, stage 2 inter-discrepancy) on dev_test with the trained
PyTorch networks, exports the stage-2 detector to ONNX (parity-checked on the held-out normals)
and times it with onnxruntime, and writes one JSON result to bench/results/amae/ (small,
committed). `estimate` times a few steps of every phase on the real data and extrapolates the
whole schedule. `report` prints the markdown tables of bench/RESULTS.md, the AR curve beside
DDAD's results (bench/results/ddad/).

    python bench/amae_dev.py estimate --preset small --threads 1
    python bench/amae_dev.py estimate --preset paper --threads 1 --time-batch 8
    python bench/amae_dev.py throughput --preset small --threads 1
    python bench/amae_dev.py throughput --preset paper --threads 1 --images 16 --batch 8
    python bench/amae_dev.py protocol --preset small --seeds 0 --threads 1
    python bench/amae_dev.py ar-curve --preset small --ars 0 0.2 0.4 0.6 0.8 1.0 --threads 1
    python bench/amae_dev.py anatpaste-sheet
    python bench/amae_dev.py report

Data: ../shared/data (beside the checkout). dev_test is only evaluated, never used to choose
anything; the unlabeled pool's labels are read only to report how pure the pseudo-labels were.
Training runs go to bench/_work/amae/ (git-ignored; resumable).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import dev_split  # bench/ is on sys.path
from ddad_dev import RESULTS as DDAD_RESULTS

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "_work" / "amae"
RESULTS = REPO / "bench" / "results" / "amae"


def _config(args, seed: int):
    from cxrscreen.engine.methods.amae import preset_config

    overrides = {k: v for k, v in (("pretrain_epochs", args.pretrain_epochs), ("stage1_epochs", args.stage1_epochs),
                                   ("epochs", args.epochs)) if v is not None}
    return preset_config(args.preset, seed=seed, device=args.device, module_b=args.module_b, **overrides)


def _tag(config, ar: float, seed: int) -> str:
    variant = "" if config.module_b == "pseudo-abnormal" else "_bnormal"  # module B also sees the normals
    return (f"dev_{config.preset}_ar{ar:g}_s{seed}_pre{config.pretrain_epochs}_s1{config.stage1_epochs}"
            f"_e{config.epochs}_{config.device}{variant}")


def _pseudo_purity(data, pseudo: dict) -> dict:
    """How many pseudo-normal / pseudo-abnormal images are truly normal / abnormal (evaluation only)."""
    split = json.loads(dev_split.SPLIT.read_text())
    abnormal_files = {Path(p).name for p in split["unlabeled_pool"]["abnormal"]}
    truth = np.array([Path(p).name in abnormal_files for p in data.unlabeled])
    n_idx, a_idx = list(pseudo["normal"]), list(pseudo["abnormal"])
    from cxrscreen.engine import metrics as M

    return {
        "pseudo_normal": len(n_idx), "pseudo_abnormal": len(a_idx), "split": pseudo["split"],
        "pseudo_normal_truly_normal": float(1 - truth[n_idx].mean()) if n_idx else None,
        "pseudo_abnormal_truly_abnormal": float(truth[a_idx].mean()) if a_idx else None,
        "stage1_auroc_on_unlabeled": M.auroc(truth, np.asarray(pseudo["p_abnormal"])) if 0 < truth.sum() < len(truth) else None,
    }


def _onnx_throughput(run_dir: Path, images: np.ndarray, out: Path, provider: str) -> dict:
    """Export the run's default detector and time onnxruntime on ``images`` (batches of 32, best of 3)."""
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.export import export_run

    report = export_run(run_dir, out, overwrite=True)
    det = Detector(out, provider=provider)
    det.run(images[:32])  # warm-up
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for i in range(0, len(images), 32):
            det.run(images[i : i + 32])
        best = min(best, time.perf_counter() - t)
    return {"provider": det.provider, "images": len(images), "images_per_s": len(images) / best, "batch": 32,
            "parity_score": report.max_score_diff, "parity_heatmap": report.max_heatmap_diff,
            "onnx_mib": out.stat().st_size / 2**20, "export_s": report.seconds}


def train_and_evaluate(name: str, data, test_paths, test_labels, config, progress_mode: str) -> dict:
    import torch

    from cxrscreen.engine import metrics as M
    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.amae.recipe import all_scores
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.train import run_training

    run_dir = WORK / name
    WORK.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t0 = time.time()
    with StopRequest() as stop:
        progress = Progress(progress_mode, log_path=run_dir.parent / f"{name}.log.jsonl")
        outcome = run_training("amae", config, data, run_dir, progress, stop)
    if outcome.status != "done":
        sys.exit(f"{name}: stopped; run again to resume")
    load_after = os.getloadavg()
    saved = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)
    images = load_images(test_paths, config.preprocess)
    t_eval = time.time()
    scores = all_scores(run_dir, images)
    eval_s = time.time() - t_eval
    throughput = {"cpu": _onnx_throughput(run_dir, images, WORK / f"{name}.onnx", "cpu")}
    if torch.cuda.is_available():
        throughput["cuda"] = _onnx_throughput(run_dir, images, WORK / f"{name}.onnx", "cuda")
    result = {
        "name": name,
        "method": "amae",
        "config": config.to_dict(),
        "data": data.summary(),
        "train_seconds": outcome.summary.get("train_seconds"),
        "phase_seconds": saved["phase_seconds"],
        "wall_seconds": time.time() - t0,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "environment": outcome.summary.get("environment"),
        "summaries": saved["summaries"],
        "pseudo_labels": _pseudo_purity(data, saved["pseudo"]),
        "test": {"n": int(len(test_labels)), "n_abnormal": int(test_labels.sum())},
        "metrics": {k: {"auroc": M.auroc(test_labels, v), "ap": M.average_precision(test_labels, v)} for k, v in scores.items()},
        "pytorch_eval_seconds_both_detectors": eval_s,
        "inference": throughput,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    m = result["metrics"]
    print(f"{name}: stage1 AUROC {m['stage1']['auroc']:.3f} (AP {m['stage1']['ap']:.3f})  inter AUROC {m['inter']['auroc']:.3f} "
          f"(AP {m['inter']['ap']:.3f})  train {result['train_seconds']:.0f} s  ONNX CPU "
          f"{throughput['cpu']['images_per_s']:.1f} img/s", flush=True)
    return result


def cmd_protocol(args) -> None:

    dev_split.require()
    tp, tl = dev_split.dev_test()
    for seed in args.seeds:
        data = dev_split.training_data(args.ar)
        config = _config(args, seed)
        train_and_evaluate(_tag(config, args.ar, seed), data, tp, tl, config, args.progress)


def cmd_ar_curve(args) -> None:

    dev_split.require()
    tp, tl = dev_split.dev_test()
    for ar in args.ars:
        for seed in args.seeds:
            data = dev_split.training_data(ar)
            config = _config(args, seed)
            train_and_evaluate(_tag(config, ar, seed), data, tp, tl, config, args.progress)


# ---------------------------------------------------------------------- cost estimate
def cmd_estimate(args) -> None:
    """Time a few steps of every phase on the real data and extrapolate the preset's schedule."""
    import torch

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.amae.anatpaste import anatpaste, lung_mask
    from cxrscreen.engine.methods.amae.recipe import _build_head, _build_mae, _MAETrainer
    from cxrscreen.engine.torch_runtime import resolve_device, set_threads
    from cxrscreen.models.amae import AMAEScorer, pooled_tokens
    from cxrscreen.models.mae import partition_masks

    dev_split.require()
    config = _config(args, 0)
    device = resolve_device(config.device)
    set_threads(args.threads)
    data = dev_split.training_data(args.ar)
    t = time.perf_counter()
    normal = load_images(data.normal_train, config.preprocess)
    unlabeled = load_images(data.unlabeled, config.preprocess)
    load_s = time.perf_counter() - t
    tb = args.time_batch or config.batch_size
    scale = config.batch_size / tb  # per-step times measured at batch tb, scaled to the preset's batch
    n_n, n_u = len(normal), len(unlabeled)
    union = torch.from_numpy(np.concatenate([normal, unlabeled])).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def per_step(fn, n: int) -> float:
        fn()  # warm-up (first-call allocations)
        sync()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        return (time.perf_counter() - t) / n

    timed_config = replace(config, batch_size=tb)
    mae = _build_mae(config)
    pre = _MAETrainer(mae, union, timed_config, lr=config.pretrain_lr, warmup=1, epochs=2, seed=0, steps_per_epoch=1,
                      masks_per_image=1, augment=True, device=device)
    pre_step = per_step(lambda: pre.run_epoch(1, lambda loss: None), args.steps) * scale
    pre_steps = max(1, len(union) // config.batch_size) * config.pretrain_epochs

    mae.eval().requires_grad_(False)
    low, high = config.preprocess.output_range
    unit = (normal[:, 0] - low) / (high - low)
    t = time.perf_counter()
    lungs = [lung_mask(u) for u in unit[:32]]
    lung_s = (time.perf_counter() - t) / 32 * n_n
    rng = np.random.default_rng(0)
    head = _build_head(config).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)

    def s1_step() -> None:
        synth = np.stack([anatpaste(unit[i % 32], rng, lungs=lungs[i % 32]).image for i in range(tb)]) * 2 - 1
        with torch.no_grad():
            f = pooled_tokens(mae, torch.from_numpy(synth[:, None].astype(np.float32)).to(device))
        loss = head(torch.cat([f, f])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    s1_step_s = per_step(s1_step, args.steps) * scale
    s1_steps = max(1, n_n // config.batch_size) * config.stage1_epochs
    with torch.no_grad():
        feat_per_image = per_step(lambda: pooled_tokens(mae, union[:tb]), max(1, args.steps // 2)) / tb
    s1_setup = lung_s + feat_per_image * n_n
    pseudo_s = feat_per_image * n_u

    a = _MAETrainer(_build_mae(config), union, timed_config, lr=config.lr, warmup=1, epochs=2, seed=1, steps_per_epoch=1,
                    masks_per_image=config.train_masks, augment=False, device=device)
    s2_step = per_step(lambda: a.run_epoch(1, lambda loss: None), args.steps) * scale
    set_a = n_n + n_u // 4  # expected: the normals + half of the predicted-normal half of D_u
    s2_steps = 2 * max(1, set_a // config.batch_size) * config.epochs

    m = _build_mae(config).eval()
    scorer = AMAEScorer(m, m, partition_masks(m.num_patches, config.test_masks, config.mask_ratio)).to(device).eval()
    with torch.no_grad():
        infer = per_step(lambda: scorer(union[:tb]), max(1, args.steps // 2)) / tb

    phases = {
        "pretrain": {"per_step_s": pre_step, "steps": pre_steps, "total_s": pre_step * pre_steps},
        "stage1": {"per_step_s": s1_step_s, "steps": s1_steps, "setup_s": s1_setup, "total_s": s1_step_s * s1_steps + s1_setup},
        "pseudo-label": {"total_s": pseudo_s},
        "stage2": {"per_step_s": s2_step, "steps": s2_steps, "total_s": s2_step * s2_steps},
        "calibration (60 normals, PyTorch)": {"total_s": infer * len(data.normal_calibration)},
    }
    total = sum(p["total_s"] for p in phases.values())
    result = {
        "preset": config.preset, "config": config.to_dict(), "device": str(device), "threads": torch.get_num_threads(),
        "timed_batch": tb, "timed_steps": args.steps, "loadavg": os.getloadavg(), "load_images_s": load_s,
        "images": {"normal_train": n_n, "unlabeled": n_u, "stage2_set_a_assumed": set_a},
        "phases": phases, "total_s": total, "pytorch_inference_images_per_s": 1 / infer,
        "environment": {"torch": torch.__version__,
                        "cuda_device": torch.cuda.get_device_name(0) if device.type == "cuda" else None},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"estimate_{config.preset}_{device.type}_t{torch.get_num_threads()}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"estimate for preset {config.preset} on {device} ({torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}); "
          f"steps timed at batch {tb}" + (f", scaled to {config.batch_size}" if tb != config.batch_size else ""))
    for name, p in phases.items():
        step = f"{p['per_step_s']:.2f} s/step x {p['steps']}" if "per_step_s" in p else ""
        print(f"  {name:<34} {step:<24} -> {p['total_s'] / 60:7.1f} min")
    print(f"  {'total':<34} {'':<24} -> {total / 60:7.1f} min   (-> {out})")


def cmd_throughput(args) -> None:
    """ONNX images/s of a preset's stage-2 detector (random weights: the cost does not depend on them)."""
    import contextlib
    import io
    import logging

    import onnxruntime as ort
    import torch

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.amae.recipe import _build_mae
    from cxrscreen.models.amae import AMAEScorer
    from cxrscreen.models.mae import partition_masks

    dev_split.require()
    config = _config(args, 0)
    from cxrscreen.engine.torch_runtime import set_threads

    set_threads(args.threads)
    tp, _ = dev_split.dev_test()
    images = load_images(tp[: args.images], config.preprocess)
    a, b = _build_mae(config).eval(), _build_mae(config).eval()
    scorer = AMAEScorer(a, b, partition_masks(a.num_patches, config.test_masks, config.mask_ratio)).eval()
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / f"throughput_{config.preset}.onnx"
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(scorer, (torch.from_numpy(images[:2]),), str(out), input_names=["image"],
                          output_names=["score", "heatmap"], dynamo=True, opset_version=18, external_data=False,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=65536)}})
    export_s = time.perf_counter() - t
    providers = ["CPUExecutionProvider"] if args.device != "cuda" else ["CUDAExecutionProvider", "CPUExecutionProvider"]
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(out), sess_options=options, providers=providers)
    batch = min(args.batch, len(images))
    session.run(None, {"image": images[:batch]})  # warm-up
    t = time.perf_counter()
    for i in range(0, len(images), batch):
        session.run(None, {"image": images[i : i + batch]})
    ips = len(images) / (time.perf_counter() - t)
    result = {"preset": config.preset, "provider": session.get_providers()[0], "threads": args.threads,
              "images": len(images), "batch": batch, "images_per_s": ips, "export_s": export_s,
              "onnx_mib": out.stat().st_size / 2**20, "loadavg": os.getloadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"throughput_{config.preset}_{result['provider'].replace('ExecutionProvider', '').lower()}_t{args.threads}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(f"{config.preset}: {ips:.2f} images/s ({result['provider']}, batch {batch}, {args.threads or 'all'} threads, "
          f"load {os.getloadavg()[0]:.1f}); ONNX {result['onnx_mib']:.0f} MiB, export {export_s:.0f} s")


def cmd_anatpaste_sheet(args) -> None:
    """Known normals of the dev split, their unsupervised lung masks and one AnatPaste each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods.amae.anatpaste import anatpaste, lung_mask
    from cxrscreen.engine.preprocess import PreprocessSpec

    dev_split.require()
    data = dev_split.training_data(0.6)
    unit = (load_images(data.normal_train[: args.n], PreprocessSpec(size=args.size))[:, 0] + 1) / 2
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(3, args.n, figsize=(2 * args.n, 6.3))
    for i, img in enumerate(unit):
        lungs = lung_mask(img)
        paste = anatpaste(img, rng, lungs=lungs)
        axes[0, i].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(np.ma.masked_where(~lungs, lungs), cmap="autumn", alpha=0.45)
        axes[2, i].imshow(paste.image, cmap="gray", vmin=0, vmax=1)
        axes[2, i].contour(paste.alpha, levels=[0.05], colors="cyan", linewidths=0.6)
        for ax in axes[:, i]:
            ax.set_axis_off()
    for ax, title in zip(axes[:, 0], ("known normal", "lung mask", "AnatPaste (alpha > 0.05)")):
        ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    out = REPO / "bench" / "figures" / "amae_anatpaste.png"
    fig.savefig(out, dpi=80)
    print(f"-> {out}")


# ---------------------------------------------------------------------- report
def _ms(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def _module_b(config: dict) -> str:
    """Module B's training set in a run's config: the paper's, or our variant (see the README)."""
    b = config.get("module_b", "pseudo-abnormal")
    return f"{b} ({'paper' if b == 'pseudo-abnormal' else 'variant'})"


def cmd_report(args) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("dev_*.json"))]
    groups: dict[tuple, list] = {}
    for r in rows:
        c = r["config"]
        key = (c["preset"], r["data"]["source"].get("anomaly_rate"), c["pretrain_epochs"], c["stage1_epochs"], c["epochs"],
               r["inference"]["cpu"]["provider"] if r.get("inference") else "-", _module_b(c))
        groups.setdefault(key, []).append(r)
    print("| preset | module B | AR | epochs (pre / s1 / s2) | seeds | stage 1 AUROC | stage 1 AP | stage 2 AUROC | stage 2 AP | "
          "pseudo-abnormal truly abnormal | train min: pre / s1 / pseudo / s2 (total) | ONNX CPU img/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        ph = {k: np.mean([r["phase_seconds"].get(k, 0.0) for r in rs]) / 60
              for k in ("pretrain", "stage1", "pseudo-label", "stage2")}
        total = np.mean([r["train_seconds"] for r in rs]) / 60
        purity = [r["pseudo_labels"]["pseudo_abnormal_truly_abnormal"] for r in rs]
        purity_s = _ms([p for p in purity if p is not None]) if any(p is not None for p in purity) else "-"
        ips = np.mean([r["inference"]["cpu"]["images_per_s"] for r in rs])
        print(f"| {key[0]} | {key[6]} | {key[1]} | {key[2]} / {key[3]} / {key[4]} | {len(rs)} | "
              f"{_ms([r['metrics']['stage1']['auroc'] for r in rs])} | {_ms([r['metrics']['stage1']['ap'] for r in rs])} | "
              f"{_ms([r['metrics']['inter']['auroc'] for r in rs])} | {_ms([r['metrics']['inter']['ap'] for r in rs])} | "
              f"{purity_s} | {ph['pretrain']:.1f} / {ph['stage1']:.1f} / {ph['pseudo-label']:.2f} / {ph['stage2']:.1f} "
              f"({total:.1f}) | {ips:.0f} |")

    # the AR curve beside DDAD's (inter-discrepancy AUROC on dev_test)
    amae_ar: dict[tuple, dict[float, list]] = {}
    for r in rows:
        c = r["config"]
        amae_ar.setdefault((c["preset"], c["pretrain_epochs"], c["stage1_epochs"], c["epochs"], _module_b(c)), {}).setdefault(
            r["data"]["source"].get("anomaly_rate"), []).append(r["metrics"]["inter"]["auroc"])
    ddad_ar: dict[tuple, dict[float, list]] = {}
    for p in sorted(DDAD_RESULTS.glob("dev_*.json")):
        r = json.loads(p.read_text())
        if r["data"]["source"].get("kind") != "split":
            continue
        c = r["config"]
        if (c["preprocess"].get("intensity", "none") != "none" or c.get("augment", "none") != "none"
                or c.get("precision", "fp32") != "fp32"):
            continue  # the paper's recipe only, not the robust or bf16 variants
        ddad_ar.setdefault((c["backbone"], c["epochs"]), {}).setdefault(r["data"]["source"].get("anomaly_rate"), []).append(
            r["metrics"]["inter"]["auroc"])
    curves = {f"AMAE {k[0]}, module B {k[4]} (pre {k[1]}, s1 {k[2]}, s2 {k[3]})": v for k, v in amae_ar.items()}
    curves.update({f"DDAD {k[0]} ({k[1]} ep.)": v for k, v in ddad_ar.items()})
    ars = sorted({ar for v in curves.values() for ar in v if ar is not None})
    if curves and ars:
        print("\nInter-discrepancy AUROC on dev_test against the anomaly rate of D_u (mean over seeds):\n")
        print("| detector | " + " | ".join(f"AR {a:g}" for a in ars) + " |")
        print("|---|" + "---|" * len(ars))
        for name, v in curves.items():
            print(f"| {name} | " + " | ".join(_ms(v[a]) if a in v else "-" for a in ars) + " |")

    throughputs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("throughput_*.json"))]
    if throughputs:
        print("\nStage-2 detector inference, onnxruntime (the whole graph: 2 MAEs x 4 masks):\n")
        print("| preset | provider | threads | batch | images/s | ONNX MiB | load |")
        print("|---|---|---|---|---|---|---|")
        for t in throughputs:
            print(f"| {t['preset']} | {t['provider']} | {t['threads'] or 'all'} | {t['batch']} | {t['images_per_s']:.3g} | "
                  f"{t['onnx_mib']:.0f} | {t['loadavg'][0]:.1f} |")

    estimates = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("estimate_*.json"))]
    if estimates:
        print("\nEstimated training cost (a few timed steps per phase on the dev data, extrapolated):\n")
        print("| preset | device, threads (load) | pre-train | stage 1 | pseudo-labels | stage 2 | calibration | total | "
              "PyTorch img/s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for e in estimates:
            def cell(name: str) -> str:
                p = e["phases"][name]
                step = f" ({p['per_step_s']:.2f} s/step × {p['steps']})" if "per_step_s" in p else ""
                return f"{p['total_s'] / 60:.1f} min{step}"
            cal = next(k for k in e["phases"] if k.startswith("calibration"))
            print(f"| {e['preset']} | {e['device']}, {e['threads']} ({e['loadavg'][0]:.1f}) | {cell('pretrain')} | "
                  f"{cell('stage1')} | {cell('pseudo-label')} | {cell('stage2')} | {cell(cal)} | "
                  f"{e['total_s'] / 60:.1f} min | {e['pytorch_inference_images_per_s']:.3g} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("protocol", "ar-curve", "estimate", "throughput"):
        s = sub.add_parser(name)
        s.add_argument("--preset", default="small", choices=("small", "paper", "tiny"))
        s.add_argument("--seeds", type=int, nargs="+", default=[0])
        s.add_argument("--pretrain-epochs", type=int, default=None, help="default: the preset's")
        s.add_argument("--stage1-epochs", type=int, default=None, help="default: the preset's")
        s.add_argument("--epochs", type=int, default=None, help="stage-2 epochs (default: the preset's)")
        s.add_argument("--threads", type=int, default=0, help="CPU threads (0: one per core)")
        s.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        s.add_argument("--module-b", default="pseudo-abnormal", choices=("pseudo-abnormal", "normal+pseudo-abnormal"),
                       help="stage-2 module B data (the paper: pseudo-abnormal only)")
        s.add_argument("--progress", default="bar", choices=("bar", "json", "none"))
        if name in ("protocol", "estimate"):
            s.add_argument("--ar", type=float, default=0.6)
        if name == "ar-curve":
            s.add_argument("--ars", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
        if name == "estimate":
            s.add_argument("--steps", type=int, default=3, help="timed steps per phase (after one warm-up step)")
            s.add_argument("--time-batch", type=int, default=None,
                           help="time steps at this batch and scale to the preset's (for slow devices)")
        if name == "throughput":
            s.add_argument("--images", type=int, default=64, help="dev_test images to score")
            s.add_argument("--batch", type=int, default=32)
    sheet = sub.add_parser("anatpaste-sheet")
    sheet.add_argument("--n", type=int, default=8)
    sheet.add_argument("--size", type=int, default=128)
    sub.add_parser("report")
    args = p.parse_args()
    if getattr(args, "threads", None) is not None:
        from cxrscreen.engine.torch_runtime import set_threads

        set_threads(args.threads)
    {"protocol": cmd_protocol, "ar-curve": cmd_ar_curve, "estimate": cmd_estimate, "throughput": cmd_throughput,
     "anatpaste-sheet": cmd_anatpaste_sheet, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
