"""What an ensemble costs to score: its members and the ensemble on the same images, in one run (ratios).

The 642 dev_test images, preprocessed once, run through each detector's graph (onnxruntime CPU,
``--threads`` intra-op threads, batches of 128), in turn, ``--repeats`` times; the median time
per detector, its ratio to the first detector's, and the file sizes.

    python bench/ensemble_cost.py --model AMAE.onnx --model DDAD.onnx --model ENSEMBLE.onnx [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO / "bench")]
import dev_split  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, action="append", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    dev_split.require()
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import preprocess

    dets = [Detector(m, provider="cpu", threads=args.threads) for m in args.model]
    spec = dets[0].preprocess_spec
    if any(d.preprocess_spec != spec for d in dets):
        sys.exit("the detectors read images differently; compare detectors with one preprocessing")
    paths, _ = dev_split.dev_test()
    x = np.stack([preprocess(read_radiograph(q).pixels, spec) for q in paths])[:, None]
    times: list[list[float]] = [[] for _ in dets]
    for _ in range(args.repeats):
        for i, d in enumerate(dets):
            t0 = time.perf_counter()
            for b in range(0, len(x), 128):
                d.run(x[b: b + 128])
            times[i].append(time.perf_counter() - t0)
    base = float(np.median(times[0]))
    print(f"{len(x)} images, onnxruntime {dets[0].provider}, {args.threads} threads, median of {args.repeats}")
    print("| detector | size (MiB) | seconds | ratio to the first |\n|---|---:|---:|---:|")
    for m, d, t in zip(args.model, dets, times):
        med = float(np.median(t))
        print(f"| {d.meta.name} ({m.name}) | {m.stat().st_size / 2**20:.0f} | {med:.1f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
