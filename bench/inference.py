"""Inference speed of an exported detector, in one run:

1. the ONNX graph in onnxruntime against the same networks in PyTorch eager, on the same
   preprocessed batch, alternating rounds (images per second and their ratio);
2. end-to-end scoring of a folder (`engine.scoring.iter_scores`: read + preprocess + batch +
   onnxruntime, as `cxrscreen score` and the app do) against reading + preprocessing alone.

    python bench/inference.py --model DETECTOR.onnx --run RUN_DIR [--batch 64] [--rounds 7]

RUN_DIR is the training run the detector was exported from (for the PyTorch side). Images are
dev_test of the development split. Prints a markdown table and writes bench/results/inference/.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEV_SPLIT = DATA / "kermany" / "splits" / "dev.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True, help="the run folder the detector came from")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--provider", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--tag", default=None)
    args = p.parse_args()
    if not DEV_SPLIT.is_file():
        sys.exit(f"real data not found at {DATA}")

    import torch

    from cxrscreen.engine.datasets import load_images
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.methods import get_method
    from cxrscreen.engine.preprocess import preprocess
    from cxrscreen.engine.scoring import iter_scores
    from cxrscreen.engine.train import read_run

    d = json.loads(DEV_SPLIT.read_text())["dev_test"]
    paths = [DEV_SPLIT.parent.parent / q for q in d["normal"] + d["abnormal"]]
    det = Detector(args.model, provider=args.provider)
    run = read_run(args.run)
    scorer = get_method(run["method"]).load_scorer(args.run, det.meta.score_type).eval()
    spec = det.preprocess_spec
    batch = load_images(paths[: args.batch], spec)
    threads = torch.get_num_threads()

    def ort_once() -> float:
        t = time.perf_counter()
        det.run(batch)
        return time.perf_counter() - t

    def torch_once() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            scorer(torch.from_numpy(batch))
        return time.perf_counter() - t

    ort_once(), torch_once()  # warm-up
    ort_t, torch_t, ratios = [], [], []
    for r in range(args.rounds):
        a, b = (ort_once(), torch_once()) if r % 2 == 0 else tuple(reversed((torch_once(), ort_once())))
        ort_t.append(a)
        torch_t.append(b)
        ratios.append(b / a)
    n = len(batch)
    ort_ips, torch_ips = n / statistics.median(ort_t), n / statistics.median(torch_t)

    # end to end: read + preprocess alone vs the full scoring pipeline, alternating
    def read_only() -> float:
        t = time.perf_counter()
        for q in paths:
            preprocess(read_radiograph(q).pixels, spec)
        return time.perf_counter() - t

    def score_all() -> float:
        t = time.perf_counter()
        for _ in iter_scores(paths, det, batch_size=args.batch, workers=2):
            pass
        return time.perf_counter() - t

    read_t, score_t = [], []
    for r in range(3):
        if r % 2 == 0:
            read_t.append(read_only())
            score_t.append(score_all())
        else:
            score_t.append(score_all())
            read_t.append(read_only())
    result = {
        "model": str(args.model), "model_id": det.meta.model_id, "method": det.meta.method,
        "backbone": det.meta.backbone, "provider": det.provider, "provider_note": det.provider_note,
        "torch_threads": threads, "cpu_count": os.cpu_count(), "batch": n, "rounds": args.rounds,
        "onnx_images_per_s": ort_ips, "torch_images_per_s": torch_ips,
        "onnx_speedup_over_torch_median": statistics.median(ratios),
        "folder_images": len(paths),
        "read_preprocess_images_per_s": len(paths) / statistics.median(read_t),
        "end_to_end_score_images_per_s": len(paths) / statistics.median(score_t),
        "loadavg": os.getloadavg(),
    }
    out = REPO / "bench" / "results" / "inference"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.tag or args.model.stem}.json").write_text(json.dumps(result, indent=2))
    print(f"| detector | provider | batch | ONNX img/s | PyTorch eager img/s | ONNX / PyTorch | read+preprocess img/s | end-to-end score img/s |\n"
          f"|---|---|---|---|---|---|---|---|\n"
          f"| {det.meta.method} {det.meta.backbone} | {det.provider} | {n} | {ort_ips:.0f} | {torch_ips:.0f} | "
          f"{result['onnx_speedup_over_torch_median']:.2f}x | {result['read_preprocess_images_per_s']:.0f} | "
          f"{result['end_to_end_score_images_per_s']:.0f} |")


if __name__ == "__main__":
    main()
