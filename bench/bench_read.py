"""Reading throughput of ``engine.io.read_radiograph`` against the raw decoder, in the same run.

    python bench/bench_read.py                 # all cases, 5 rounds
    python bench/bench_read.py --rounds 9 --kermany 400 --json bench/_work/read.json

For each case every file is read by the raw decoder and by our reader alternately (the order
flips every round), so slow drifts in machine load hit both sides alike:

- raster files: raw = ``PIL.Image.open(p).convert('L')`` (what the DDAD code does); ours adds
  content sniffing, the size checks, metadata and the float32 [0, 1] array.
- DICOM: raw = ``pydicom.dcmread(p).pixel_array``; ours adds the header checks, the modality
  LUT, VOI, polarity and both float32 arrays (pixels and modality values).

A third reader, "raw + float32", is the raw decode followed by the float32 array every
consumer needs (``np.asarray(img) / 255`` or ``pixel_array.astype(float32)``): writing 4 bytes
per pixel is itself ~10-20 % of a JPEG decode, so the overhead over it shows what the reader
adds beyond the output format the API promises.

Overhead = (sum of our times / sum of raw times) - 1 per round, median over rounds, on CPU
time of this process (``time.process_time``): the benchmark machine is shared, and other
users' load inflates wall-clock times unevenly. Wall-clock figures are printed beside them.
Decoders here are single-threaded, so CPU time is the work done. Needs ../shared/data.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import pydicom
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
if str(REPO) not in sys.path:
    sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]

from cxrscreen.engine.io import read_radiograph  # noqa: E402


def raw_pillow(path: Path) -> Any:
    """The raw raster decode the DDAD code does."""
    return Image.open(path).convert("L")


def raw_pydicom(path: Path) -> Any:
    """The raw DICOM decode: pydicom's default plugin choice, stored values only."""
    return pydicom.dcmread(path).pixel_array


def raw_pillow_f32(path: Path) -> np.ndarray:
    """Reference: the raw raster decode plus the float32 [0, 1] array any consumer needs."""
    return np.divide(np.asarray(Image.open(path).convert("L")), np.float32(255), dtype=np.float32)


def raw_pydicom_f32(path: Path) -> np.ndarray:
    """Reference: the raw DICOM decode plus one float32 copy of the stored values."""
    return pydicom.dcmread(path).pixel_array.astype(np.float32)


FLOAT_REFERENCE: dict[Callable[[Path], Any], Callable[[Path], Any]] = {
    raw_pillow: raw_pillow_f32,
    raw_pydicom: raw_pydicom_f32,
}


def cases(kermany: int) -> list[tuple[str, Callable[[Path], Any], list[Path]]]:
    """(name, raw reader, files) for every case whose files exist."""
    kermany_files = sorted((DATA / "kermany").glob("*/*.jpeg"))[:kermany]
    full_jpeg = sorted(p for p in (DATA / "fullres").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    full_png = sorted((DATA / "fullres").rglob("*.png"))
    dicom = DATA / "dicom"
    j2k = [dicom / "pydicom-data" / "RG1_J2KI.dcm"]
    jpeg_baseline = sorted((dicom / "torchxrayvision").glob("*.dcm"))
    found = [
        ("JPEG 224² (Kermany, RGB)", raw_pillow, kermany_files),
        ("JPEG full size (fullres)", raw_pillow, full_jpeg),
        ("PNG full size (fullres)", raw_pillow, full_png),
        ("DICOM JPEG 2000, 1955×1841 15-bit", raw_pydicom, j2k),
        ("DICOM JPEG baseline, 1024² 8-bit", raw_pydicom, jpeg_baseline),
    ]
    return [(name, raw, files) for name, raw, files in found if files]


def measure(raw: Callable[[Path], Any], files: list[Path], rounds: int, min_seconds: float) -> dict[str, Any]:
    """Alternate raw, raw + float32 and ours over ``files``; return per-round means per read."""
    readers = {"raw": raw, "f32": FLOAT_REFERENCE[raw], "ours": read_radiograph}
    for path in files:  # warm the page cache and import-time lazies
        for fn in readers.values():
            fn(path)
    # Repeat short lists so each round lasts long enough to time (e.g. one DICOM file).
    probe = time.perf_counter()
    raw(files[0])
    per_file = max(time.perf_counter() - probe, 1e-5)
    repeat = max(1, int(np.ceil(min_seconds / (per_file * len(files)))))
    sequence = files * repeat
    out: dict[str, list[float]] = {f"{side}_{clock}": [] for side in readers for clock in ("cpu", "wall")}
    order = list(readers.items())
    for r in range(rounds):
        sums = dict.fromkeys(out, 0.0)
        for i, path in enumerate(sequence):
            for side, fn in (order if (i + r) % 2 == 0 else order[::-1]):
                c0, w0 = time.process_time(), time.perf_counter()
                fn(path)
                sums[f"{side}_cpu"] += time.process_time() - c0
                sums[f"{side}_wall"] += time.perf_counter() - w0
        for key in out:
            out[key].append(sums[key] / len(sequence))
    return {"files": len(files), "reads_per_round": len(sequence), **out}


def summarise(name: str, m: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds, and overheads of ours over raw and over raw + float32."""
    row: dict[str, Any] = {"case": name, "files": m["files"], "reads_per_round": m["reads_per_round"]}
    for clock in ("cpu", "wall"):
        for side in ("raw", "f32", "ours"):
            row[f"{side}_ms_{clock}"] = statistics.median(m[f"{side}_{clock}"]) * 1e3
        for base in ("raw", "f32"):
            ratios = [o / b - 1 for o, b in zip(m[f"ours_{clock}"], m[f"{base}_{clock}"])]
            row[f"overhead_vs_{base}_{clock}"] = statistics.median(ratios)
            row[f"overhead_vs_{base}_{clock}_range"] = (min(ratios), max(ratios))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kermany", type=int, default=300, help="number of 224² JPEGs")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="per side and round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not (DATA / "README.md").is_file():
        sys.exit(f"real data not found at {DATA}: this benchmark needs ../shared/data beside the checkout")
    rows = []
    for name, raw, files in cases(args.kermany):
        rows.append(summarise(name, measure(raw, files, args.rounds, args.min_seconds)))
        print(f"done: {name}", file=sys.stderr)
    print(f"python {platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}, "
          f"pydicom {pydicom.__version__}, {args.rounds} rounds\n")
    print("| case | files | raw ms (CPU) | raw + float32 ms | ours ms | overhead vs raw, CPU median "
          "[min, max] | overhead vs raw, wall | overhead vs raw + float32, CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        lo, hi = row["overhead_vs_raw_cpu_range"]
        print(f"| {row['case']} | {row['files']} | {row['raw_ms_cpu']:.2f} | {row['f32_ms_cpu']:.2f} "
              f"| {row['ours_ms_cpu']:.2f} | {row['overhead_vs_raw_cpu']:+.1%} [{lo:+.1%}, {hi:+.1%}] "
              f"| {row['overhead_vs_raw_wall']:+.1%} | {row['overhead_vs_f32_cpu']:+.1%} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
