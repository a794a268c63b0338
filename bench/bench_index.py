"""Header-only indexing of a generated 10,000-file DICOM folder: files per second, peak memory.

    python bench/bench_index.py                       # 10,000 files under bench/_work/index/
    python bench/bench_index.py --files 2000 --rounds 3

The folder is generated once (re-used while it holds the requested number of files): 100
study folders of 100 DX files each, 128×128 12-bit (the header reader never reads pixel data,
so the image size only changes the disk footprint, ~0.25 GB), half Explicit VR Little Endian
and half JPEG 2000 Lossless (so the header reader meets both an uncompressed and an
encapsulated pixel data element), with two window presets, ImagerPixelSpacing and distinct
patient ids. Generation (about a minute) is not timed.

Each round runs ``scan_folder`` over the whole tree in a fresh child process (so every round
starts with the same, empty, interpreter state) and consumes the items as a UI would, keeping
only a count, or keeping every :class:`ScanItem` (the worklist case). Reported per mode:
files per second (wall and CPU), and peak memory: the peak RSS growth of the child over its
state just before the scan, and the peak of Python allocations (tracemalloc, measured in a
separate pass because tracing slows the scan). The page cache is warm (the files were just
written or read); a cold first scan of a network share will be I/O-bound instead.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "_work" / "index"
if str(REPO) not in sys.path:
    sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]

PER_STUDY = 100


def generate(root: Path, n_files: int) -> None:
    """Write ``n_files`` DICOM files under ``root`` (skipped when already there)."""
    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

    from cxrscreen.engine.io import WindowPreset
    from cxrscreen.engine.io.dicom_write import write_dicom

    existing = sum(1 for _ in root.rglob("*.dcm")) if root.is_dir() else 0
    if existing == n_files:
        print(f"re-using {existing} files in {root}", file=sys.stderr)
        return
    if existing:
        sys.exit(f"{root} holds {existing} files, not {n_files}: delete it or pass --work")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:128, 0:128]
    base = (np.hypot(x - 64, y - 64) * 24).astype(np.uint16)
    windows = [WindowPreset(2048, 4096, "default"), WindowPreset(1200, 1600, "lung")]
    t0 = time.perf_counter()
    for i in range(n_files):
        study = root / f"study_{i // PER_STUDY:04d}"
        study.mkdir(parents=True, exist_ok=True)
        pixels = np.minimum(base + rng.integers(0, 64, size=base.shape, dtype=np.uint16), 4095)
        write_dicom(
            study / f"img_{i % PER_STUDY:03d}.dcm", pixels.astype(np.uint16), bits_stored=12,
            transfer_syntax=JPEG2000Lossless if i % 2 else ExplicitVRLittleEndian,
            window=windows, tags={"PatientID": f"P{i // PER_STUDY:05d}", "ImagerPixelSpacing": [0.15, 0.15]},
        )
        if (i + 1) % 1000 == 0:
            print(f"generated {i + 1}/{n_files} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)


CHILD = r"""
import json, os, sys, time, tracemalloc
import psutil
sys.path[:0] = [os.path.join(sys.argv[1], "packaging", "src"), sys.argv[1]]  # the checkout's parent package first
from cxrscreen.engine.io import scan_folder
root, mode, trace = sys.argv[2], sys.argv[3], sys.argv[4] == "1"
proc = psutil.Process()
list(scan_folder(os.path.join(root, "study_0000")))  # imports and lazy caches, not timed
rss0 = proc.memory_info().rss
peak = rss0
if trace:
    tracemalloc.start()
kept, n, bad = [], 0, 0
c0, w0 = time.process_time(), time.perf_counter()
for item in scan_folder(root):
    n += 1
    bad += item.error is not None
    if mode == "keep":
        kept.append(item)
    if n % 250 == 0:
        peak = max(peak, proc.memory_info().rss)
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
peak = max(peak, proc.memory_info().rss)
out = {"files": n, "errors": bad, "wall": wall, "cpu": cpu, "rss_growth": peak - rss0}
if trace:
    out["traced_peak"] = tracemalloc.get_traced_memory()[1]
print(json.dumps(out))
"""


def run_child(root: Path, mode: str, trace: bool) -> dict[str, float]:
    """One scan in a fresh interpreter; its JSON result."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(root), mode, "1" if trace else "0"],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    root = args.work / f"dx_{args.files}"
    generate(root, args.files)
    size = sum(p.stat().st_size for p in root.rglob("*.dcm"))
    rows = []
    for mode in ("stream", "keep"):
        runs = [run_child(root, mode, trace=False) for _ in range(args.rounds)]
        traced = run_child(root, mode, trace=True)
        assert all(r["files"] == args.files and r["errors"] == 0 for r in runs), runs
        rows.append({
            "mode": mode,
            "files": args.files,
            "files_per_s_wall": statistics.median(args.files / r["wall"] for r in runs),
            "files_per_s_cpu": statistics.median(args.files / r["cpu"] for r in runs),
            "rss_growth_mib": max(r["rss_growth"] for r in runs) / 2**20,
            "traced_peak_mib": traced["traced_peak"] / 2**20,
            "walls": [r["wall"] for r in runs],
        })
    print(f"python {platform.python_version()}, {args.files} files, {size / 2**20:.0f} MiB, "
          f"{args.rounds} rounds, warm page cache\n")
    print("| consumer | files/s (wall, median) | files/s (CPU) | peak RSS growth | peak Python allocations |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        what = "counts items (streaming)" if row["mode"] == "stream" else "keeps every ScanItem"
        print(f"| {what} | {row['files_per_s_wall']:,.0f} | {row['files_per_s_cpu']:,.0f} "
              f"| {row['rss_growth_mib']:.1f} MiB | {row['traced_peak_mib']:.1f} MiB |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
