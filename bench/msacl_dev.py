"""MSACL + PaDiM on the development protocol: dev_test AUROC / AP of each variant, cost, a MedMix contact sheet.

Every run trains with the engine's own driver (the same code as `cxrscreen train --method msacl`):
normals = ``train.known_normal`` with the engine's calibration hold-out (10 %, never trained on);
unlabeled and abnormal images are not used (a one-class method). Each detector is scored on
dev_test with the trained PyTorch networks: AUROC and AP with stratified bootstrap 95 % intervals,
and the sensitivity / specificity on dev_test at the threshold of 95 % specificity on the run's own
held-out calibration normals. dev_test is only evaluated, never used to choose anything.

Variants (the paper's Table 3 ablation, then the floor):
    msacl       the full method (MedMix, MSACL loss, κ = 0.05)
    plain       plain contrastive: no MedMix, SimCLR loss, κ = 1 (position loss kept)
    medmix      + MedMix (4 classes, augmentation classifier), SimCLR loss, κ = 1
    msacl_loss  + the MSACL loss (centred features, centre loss), κ = 1
    random      PaDiM on a random encoder (no pre-training)

    python bench/msacl_dev.py run --variants random msacl --epochs 8 --seeds 0 --threads 1
    python bench/msacl_dev.py igd --epochs 10 --threads 1                      # IGD on a random encoder
    python bench/msacl_dev.py igd --epochs 10 --encoder-run msacl_e8_s0 --threads 1   # MSACL-IGD
    python bench/msacl_dev.py sheet
    python bench/msacl_dev.py throughput --run msacl_e8_s0 --threads 1
    python bench/msacl_dev.py run --variants msacl --epochs 30 --seeds 0 --robust --threads 1   # issue 22
    python bench/msacl_dev.py report

``--robust`` (run and igd): each image cropped to its exposed field and histogram-equalised, in
pre-training, the detector and scoring alike (the preprocessing of WSCXR's robust preset and
DDAD's robust-field one; issue 22); run names get ``_robust``.

Data: ../shared/data (beside the checkout). Runs go to bench/_work/msacl/ (git-ignored; resumable);
one JSON per detector in bench/results/msacl/; the contact sheet in bench/figures/.
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
WORK = REPO / "bench" / "_work" / "msacl"
RESULTS = REPO / "bench" / "results" / "msacl"
FIGURES = REPO / "bench" / "figures"
VARIANTS: dict[str, dict] = {
    "msacl": {},
    "plain": {"medmix": False, "msacl_loss": False, "kappa": 1.0},
    "medmix": {"msacl_loss": False, "kappa": 1.0},
    "msacl_loss": {"kappa": 1.0},
    "random": {"pretrain": False},
}


def _recipe(args) -> tuple[dict, str]:
    """The preprocessing values and the run-name tag of --robust (none without it)."""
    from cxrscreen.engine.methods.base import ROBUST_PREPROCESS

    return (dict(ROBUST_PREPROCESS), "_robust") if args.robust else ({}, "")


def _evaluate(name: str, run_dir: Path, config, data, outcome, extra: dict, method: str = "msacl") -> dict:
    import torch

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods import registry

    paths, y = dev_split.dev_test()
    images = load_images(paths, config.preprocess)
    t = time.process_time()
    scores = registry()[method].hooks().evaluate(run_dir, images)[registry()[method].score_types[0]]
    eval_cpu = time.process_time() - t
    from wscxr_dev import _test_metrics  # bench/ is on sys.path: the same dev_test figures as WSCXR's

    saved = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    result = {
        "name": name, "method": method, **extra, "config": config.to_dict(), "data": data.summary(),
        "train_seconds": outcome.summary.get("train_seconds"), "phase_seconds": saved["phase_seconds"],
        "summaries": saved["summaries"], "encoder_source": saved.get("encoder_source"), "loadavg": os.getloadavg(),
        "environment": outcome.summary.get("environment"),
        **_test_metrics(run_dir, y, scores),
        "pytorch_eval_cpu_seconds": eval_cpu,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"{name}: AUROC {result['auroc']:.3f} [{result['auroc_ci95'][0]:.3f}, {result['auroc_ci95'][1]:.3f}] "
          f"AP {result['ap']:.3f} [{result['ap_ci95'][0]:.3f}, {result['ap_ci95'][1]:.3f}]  "
          f"sens@cal-spec95 {result['sensitivity_at_cal_spec95']:.3f} (dev_test spec "
          f"{result['specificity_at_cal_spec95']:.3f})  train {result['train_seconds']:.0f} s", flush=True)
    return result


def cmd_run(args) -> None:
    """Train (or resume) and evaluate each variant for each seed."""
    dev_split.require()
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.torch_runtime import set_threads
    from cxrscreen.engine.train import run_training

    set_threads(args.threads)
    data = dev_split.training_data(unlabeled=False)
    recipe, tag = _recipe(args)
    for seed in args.seeds:
        for variant in args.variants:
            values = {"seed": seed, "device": args.device, **VARIANTS[variant], **recipe}
            if variant != "random":
                values["epochs"] = args.epochs
            config = registry()["msacl"].config("small", **values)
            name = f"{variant}{tag}_s{seed}" if variant == "random" else f"{variant}{tag}_e{args.epochs}_s{seed}"
            run_dir = WORK / name
            WORK.mkdir(parents=True, exist_ok=True)
            t0 = time.process_time()
            with StopRequest() as stop:
                outcome = run_training("msacl", config, data, run_dir,
                                       Progress(args.progress, log_path=WORK / f"{name}.log.jsonl"), stop)
            if outcome.status != "done":
                sys.exit(f"{name}: stopped; run again to resume")
            _evaluate(name, run_dir, config, data, outcome,
                      {"variant": variant, "robust": args.robust, "seed": seed,
                       "epochs": config.epochs if variant != "random" else 0, "threads": args.threads, "process_cpu_seconds_this_session": time.process_time() - t0})


def cmd_igd(args) -> None:
    """IGD on the encoder of a finished MSACL run of this bench (--encoder-run), or on a random encoder."""
    dev_split.require()
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.torch_runtime import set_threads
    from cxrscreen.engine.train import run_training

    set_threads(args.threads)
    data = dev_split.training_data(unlabeled=False)
    recipe, tag = _recipe(args)
    for seed in args.seeds:
        values = {"seed": seed, "device": args.device, "epochs": args.epochs, **recipe}
        if args.encoder_run:
            values["encoder"] = str(WORK / args.encoder_run)
        config = registry()["msacl_igd"].config("small", **values)
        variant = f"igd_{args.encoder_run}" if args.encoder_run else f"igd_random{tag}"
        name = f"{variant}_e{args.epochs}_s{seed}"
        t0 = time.process_time()
        with StopRequest() as stop:
            outcome = run_training("msacl_igd", config, data, WORK / name,
                                   Progress(args.progress, log_path=WORK / f"{name}.log.jsonl"), stop)
        if outcome.status != "done":
            sys.exit(f"{name}: stopped; run again to resume")
        _evaluate(name, WORK / name, config, data, outcome,
                  {"variant": "igd_msacl" if args.encoder_run else "igd_random", "robust": args.robust, "seed": seed,
                   "epochs": args.epochs,
                   "encoder_run": args.encoder_run, "threads": args.threads,
                   "process_cpu_seconds_this_session": time.process_time() - t0}, method="msacl_igd")


def cmd_sheet(args) -> None:
    """A contact sheet of MedMix views: 4 normals x (A0..A3, each with its lung mask and lesion outlines, then
    the two weak views of A3)."""
    dev_split.require()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.methods.msacl.medmix import lung_masks, medmix, weak_views
    from cxrscreen.engine.methods.msacl.recipe import medmix_settings

    config = registry()["msacl"].config("small")
    data = dev_split.training_data(unlabeled=False)
    paths = data.normal_train[:: max(1, len(data.normal_train) // 4)][:4]
    images = torch.from_numpy(load_images(paths, config.preprocess))
    masks = torch.from_numpy(lung_masks(images.numpy(), config.preprocess.output_range))
    generator = torch.Generator().manual_seed(args.seed)
    settings, rng = medmix_settings(config), config.preprocess.output_range
    fig, axes = plt.subplots(len(images), 6, figsize=(12, 2.1 * len(images)))
    for i in range(len(images)):
        donors = torch.cat([images[:i], images[i + 1 :]])
        for n in range(4):
            mixed, alphas = medmix(images[i], n, donors, masks[i], generator, settings, rng)
            ax = axes[i, n]
            ax.imshow(mixed[0], cmap="gray", vmin=-1, vmax=1)
            ax.contour(masks[i].numpy(), levels=[0.5], colors="cyan", linewidths=0.5)
            for a in alphas:
                ax.contour(a.numpy(), levels=[0.05], colors="red", linewidths=0.6)
            ax.set_title(f"A{n}: {n} lesion{'s' if n != 1 else ''}", fontsize=8)
        views = weak_views(torch.stack([mixed, mixed]), generator, rng)
        for j in range(2):
            axes[i, 4 + j].imshow(views[j, 0], cmap="gray", vmin=-1, vmax=1)
            axes[i, 4 + j].set_title(f"A3, weak view {j + 1}", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("MedMix at 64 px (small preset): lung mask cyan, lesion opacity > 0.05 red; last two: the views "
                 "the network sees", fontsize=9)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    out = FIGURES / "msacl_medmix.png"
    fig.savefig(out, dpi=110)
    print(out)


def cmd_throughput(args) -> None:
    """Export one detector to ONNX (parity-checked) and time onnxruntime on dev_test (AMAE's bench)."""
    from amae_dev import _onnx_throughput  # bench/ is on sys.path

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.torch_runtime import set_threads

    dev_split.require()
    set_threads(args.threads)
    run_dir = WORK / args.run
    run = json.loads((run_dir / "run.json").read_text())
    config = registry()[run["method"]].settings.from_dict(run["config"])
    images = load_images(dev_split.dev_test()[0], config.preprocess)
    result = {"run": run_dir.name, "threads": args.threads, "loadavg": os.getloadavg(),
              **_onnx_throughput(run_dir, images, WORK / f"{run_dir.name}.onnx", "cpu")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"throughput_{run_dir.name}_t{args.threads}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


def cmd_report(args) -> None:
    from wscxr_dev import _mean_sd  # bench/ is on sys.path: the same figures as WSCXR's

    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json")) if '"auroc"' in p.read_text()]
    print("| variant | epochs | seed | AUROC [95 % CI] | AP [95 % CI] | sens. at cal. spec 95 % | dev_test spec. | "
          "train s (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    order = [*VARIANTS, "igd_random", "igd_msacl"]
    def label(r: dict) -> str:
        return r["variant"] + (" (robust)" if r.get("robust") else "")

    for r in sorted(rows, key=lambda r: (order.index(r["variant"]), bool(r.get("robust")), r["epochs"], r["seed"])):
        lo, hi = r["auroc_ci95"]
        alo, ahi = r["ap_ci95"]
        print(f"| {label(r)} | {r['epochs']} | {r['seed']} | {r['auroc']:.3f} [{lo:.3f}, {hi:.3f}] | "
              f"{r['ap']:.3f} [{alo:.3f}, {ahi:.3f}] | {r['sensitivity_at_cal_spec95']:.3f} | "
              f"{r['specificity_at_cal_spec95']:.3f} | {r['train_seconds']:.0f} |")
    groups: dict[tuple[str, bool, int], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["variant"], bool(r.get("robust")), r["epochs"]), []).append(r)
    print("\n| variant | epochs | seeds | AUROC mean ± sd | AP mean ± sd | sens. at cal. spec 95 % mean ± sd |")
    print("|---|---|---|---|---|---|")
    for (_, _, epochs), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1], kv[0][2])):
        if len(rs) < 2:
            continue
        rs = sorted(rs, key=lambda r: r["seed"])
        print(f"| {label(rs[0])} | {epochs} | {', '.join(str(r['seed']) for r in rs)} | {_mean_sd([r['auroc'] for r in rs])} | "
              f"{_mean_sd([r['ap'] for r in rs])} | {_mean_sd([r['sensitivity_at_cal_spec95'] for r in rs])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, fn in (("run", cmd_run), ("igd", cmd_igd), ("sheet", cmd_sheet), ("throughput", cmd_throughput), ("report", cmd_report)):
        p = sub.add_parser(name)
        p.set_defaults(fn=fn)
        p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=["random", "msacl"])
        p.add_argument("--epochs", type=int, default=30, help="pre-training epochs (the small preset: 30)")
        p.add_argument("--seeds", type=int, nargs="+", default=[0])
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--encoder-run", default=None, help="igd: the MSACL run (under bench/_work/msacl) whose "
                       "encoder IGD uses (default: a random encoder)")
        p.add_argument("--run", default="msacl_e30_s0", help="throughput: the run folder under bench/_work/msacl")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--device", default="cpu")
        p.add_argument("--progress", default="none")
        p.add_argument("--data", type=Path, default=None, help="the shared data folder (default: ../shared/data)")
        p.add_argument("--robust", action="store_true", help="run, igd: field crop + equalisation (issue 22)")
    args = parser.parse_args()
    if args.data is not None:
        dev_split.use_data(args.data)
    args.fn(args)


if __name__ == "__main__":
    main()
