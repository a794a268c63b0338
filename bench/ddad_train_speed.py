"""DDAD training speed on this machine: how the CPU's threads are best used.

    .venv/bin/python bench/ddad_train_speed.py [--epochs 3] [--backbone ae-u] \
        [--modes parallel:2 serial:2 serial:1] [--json bench/results/ddad/train_speed.json]

Runs the engine's real training loop (:func:`engine.methods.ddad.recipe.train`) for a few
epochs on random images with the development protocol's sizes (module A: 540 + 500 images,
module B: 540, K = 3, batch 64, 64 x 64) in one process, one mode after the other:

- ``serial:N``: one member at a time, torch with N threads (what the engine did before);
- ``parallel:N``: N members at a time, one torch thread each (the engine's default on a CPU
  when given N threads).

Prints and stores seconds per epoch (after one warm-up epoch) and the projection to the
paper's 250 epochs. Timings are ratios within one run; run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]

from cxrscreen.engine.methods.ddad import Config  # noqa: E402
from cxrscreen.engine.methods.ddad import recipe  # noqa: E402
from cxrscreen.engine.preprocess import PreprocessSpec  # noqa: E402
from cxrscreen.engine.progress import Progress  # noqa: E402
from cxrscreen.engine.stop import StopRequest  # noqa: E402


class _Data:
    """The two things the recipe asks of its training data besides the images."""

    normal_train: list[Path] = []

    @staticmethod
    def file_list_hash() -> str:
        return "random"


class _EpochClock(Progress):
    """Records when each epoch ends."""

    def __init__(self) -> None:
        super().__init__("none")
        self.ends: list[float] = []

    def update(self, step: int, force: bool = False, **fields) -> None:  # type: ignore[override]
        if fields.get("epoch_end"):
            self.ends.append(time.perf_counter())


def time_mode(mode: str, epochs: int, backbone: str, n_normal: int, n_unlabeled: int) -> dict:
    kind, threads = mode.split(":")
    threads = int(threads)
    torch.set_num_threads(threads)
    original = recipe.cpu_member_workers
    if kind == "serial":
        recipe.cpu_member_workers = lambda *a: 1  # one member at a time, `threads` OpenMP threads
    elif kind != "parallel":
        raise SystemExit(f"mode {mode!r}: serial:N or parallel:N")
    rng = np.random.default_rng(0)
    images = {"normal_train": rng.uniform(-1, 1, (n_normal, 1, 64, 64)).astype(np.float32),
              "unlabeled": rng.uniform(-1, 1, (n_unlabeled, 1, 64, 64)).astype(np.float32)}
    config = Config(backbone=backbone, epochs=epochs + 1, preprocess=PreprocessSpec(size=64), device="cpu",
                    checkpoint_every_s=1e9)
    clock = _EpochClock()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            recipe.train(config, _Data(), images, Path(tmp), clock, StopRequest())
    finally:
        recipe.cpu_member_workers = original
        torch.set_num_threads(os.cpu_count() or 1)
    per_epoch = float(np.mean(np.diff(clock.ends)))  # the first epoch (warm-up) is left out
    return {"mode": mode, "seconds_per_epoch": round(per_epoch, 3), "first_epoch_s": round(clock.ends[0] - t0, 3),
            "projected_250_epochs_min": round(per_epoch * 250 / 60, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per mode, after one warm-up epoch")
    parser.add_argument("--backbone", default="ae-u")
    parser.add_argument("--modes", nargs="+", default=["parallel:2", "serial:2", "serial:1"])
    parser.add_argument("--normal", type=int, default=540, help="module B's images (the protocol's 600 - 10 %% held out)")
    parser.add_argument("--unlabeled", type=int, default=500)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = []
    for mode in args.modes:
        row = time_mode(mode, args.epochs, args.backbone, args.normal, args.unlabeled)
        rows.append(row)
        print(f"{mode:>12}: {row['seconds_per_epoch']:.2f} s/epoch -> {row['projected_250_epochs_min']:.1f} min "
              f"for 250 epochs", flush=True)
    base = rows[0]["seconds_per_epoch"]
    for row in rows:
        row["time_vs_first_mode"] = round(row["seconds_per_epoch"] / base, 3)
    out = {"backbone": args.backbone, "images": {"module_a": args.normal + args.unlabeled, "module_b": args.normal},
           "members": 3, "batch_size": 64, "timed_epochs": args.epochs, "rows": rows,
           "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in os.getloadavg()],
           "machine": {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                       "torch": torch.__version__, "python": platform.python_version()}}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
