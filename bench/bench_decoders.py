"""Cost of the crash-proof decoding (engine/io/decoders.py) against today's, on normal files.

    nice -n 10 python bench/bench_decoders.py                  # 5 rounds
    nice -n 10 python bench/bench_decoders.py --rounds 9 --size 2048

"Today" is the same ``read_radiograph`` with the decode step swapped back to what it was before
issue 20: ``pydicom.pixels.pixel_array(ds, index=0)`` in-process with pydicom's default plugin
order (GDCM first for every JPEG and JPEG 2000 syntax). "Ours" is the reader as it is: Pillow for
JPEG Baseline, pylibjpeg for JPEG 2000 and RLE, and the frame-header check plus a round trip
to the GDCM process pool for JPEG Lossless and JPEG-LS. Both are timed alternately on the same
files in one run (the order flips every round), on wall-clock time: the pool decodes in
another process, so this process's CPU time would hide its work. Overhead per case = (sum of
our times / sum of today's) - 1 per round, median over rounds; and the same ratio of each
side's fastest round, which other users' load disturbs least. The pool's one-time start
(spawning its processes, importing GDCM) is reported apart.

Files: synthetic chests (``engine.synth``, ``--size`` px, 12-bit; 8-bit for JPEG Baseline)
written in each compressed syntax, and the real DICOMs of ../shared/data when present (SIIM
JPEG Baseline 1024², RG1_J2KI JPEG 2000 1955×1841).
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

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
if str(REPO) not in sys.path:
    sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO)]

import cxrscreen.engine.io.dicom as dicom_module  # noqa: E402
from cxrscreen.engine.io import read_radiograph  # noqa: E402


def today_decode(path: Path, ds: Any) -> np.ndarray:
    """The decode step before issue 20: pydicom's default plugin order, in this process."""
    from pydicom.pixels import pixel_array

    return pixel_array(ds, index=0)


def make_files(folder: Path, size: int, data: Path) -> dict[str, list[Path]]:
    """Synthetic chests in each compressed syntax, plus the real DICOMs when present."""
    from pydicom.uid import (
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        JPEGLosslessSV1,
        JPEGLSLossless,
        RLELossless,
    )

    from cxrscreen.engine.io.dicom_write import write_dicom
    from cxrscreen.engine.synth import generate_chest

    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, list[Path]] = {}
    chests = [generate_chest(seed, size).pixels for seed in range(2)]
    for name, ts in (("JPEG Lossless SV1 (GDCM pool)", JPEGLosslessSV1),
                     ("JPEG-LS Lossless (GDCM pool)", JPEGLSLossless),
                     ("JPEG Baseline (Pillow)", JPEGBaseline8Bit),
                     ("JPEG 2000 Lossless (pylibjpeg)", JPEG2000Lossless),
                     ("RLE Lossless (pylibjpeg)", RLELossless)):
        paths = []
        for k, chest in enumerate(chests):
            if ts == JPEGBaseline8Bit:
                arr, bits = np.round(chest * 255).astype(np.uint8), 8
            else:
                arr, bits = np.round(chest * 4095).astype(np.uint16), 12
            paths.append(write_dicom(folder / f"{ts.name[:20].replace(' ', '_')}_{k}.dcm", arr,
                                     bits_stored=bits, transfer_syntax=ts))
        cases[f"synthetic {size}² {name}"] = paths
    real = data / "dicom"
    siim = sorted(p for p in (real / "torchxrayvision").glob("1.2.276*.dcm"))
    if siim:
        cases["real SIIM 1024² JPEG Baseline (Pillow)"] = siim
    rg1 = real / "pydicom-data" / "RG1_J2KI.dcm"
    if rg1.is_file():
        cases["real RG1 1955×1841 JPEG 2000 (pylibjpeg)"] = [rg1]
    return cases


def timed(read: Callable[[Path], Any], paths: list[Path], repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        for p in paths:
            read(p)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="reads of each file per round and side")
    parser.add_argument("--size", type=int, default=2048, help="synthetic chest side (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "decoders.json")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.repeat < 1 or args.size < 64:
        parser.error("--rounds and --repeat must be >= 1, --size >= 64")
    cases = make_files(REPO / "bench" / "_work" / "decoders", args.size, args.data)
    ours_decode = dicom_module.decode_first_frame

    def read_today(p: Path) -> Any:
        dicom_module.decode_first_frame = today_decode
        try:
            return read_radiograph(p)
        finally:
            dicom_module.decode_first_frame = ours_decode

    def read_ours(p: Path) -> Any:
        return read_radiograph(p)

    t0 = time.perf_counter()
    for paths in cases.values():  # warm up both; the first pool use spawns its processes
        for p in paths:
            a, b = read_today(p), read_ours(p)
            if not np.array_equal(a.pixels, b.pixels):
                print(f"note: {p.name}: today's and our pixels differ by up to "
                      f"{np.abs(a.pixels - b.pixels).max():.3g}", file=sys.stderr)
    warmup = time.perf_counter() - t0
    from cxrscreen.engine.io.decoders import _Worker

    t0 = time.perf_counter()
    w = _Worker()
    w.call("1.2.840.10008.1.2.4.70", {}, b"", 1, 60)  # a failing request: start and import only
    worker_start = time.perf_counter() - t0
    w.close()

    results: dict[str, Any] = {}
    for name, paths in cases.items():
        overheads, today_s, ours_s = [], [], []
        for r in range(args.rounds):
            order = (read_today, read_ours) if r % 2 == 0 else (read_ours, read_today)
            times = {f: timed(f, paths, args.repeat) for f in order}
            today_s.append(times[read_today])
            ours_s.append(times[read_ours])
            overheads.append(times[read_ours] / times[read_today] - 1)
        n = len(paths) * args.repeat
        results[name] = {
            "files": [p.name for p in paths],
            "today_ms_per_file": round(1000 * statistics.median(today_s) / n, 2),
            "ours_ms_per_file": round(1000 * statistics.median(ours_s) / n, 2),
            "overhead_median": round(statistics.median(overheads), 4),
            # the fastest round of each side: the least disturbed by other users' load
            "overhead_of_fastest_rounds": round(min(ours_s) / min(today_s) - 1, 4),
            "overheads": [round(o, 4) for o in overheads],
        }
        print(f"{name:48s} today {results[name]['today_ms_per_file']:8.2f} ms  ours "
              f"{results[name]['ours_ms_per_file']:8.2f} ms  overhead {100 * results[name]['overhead_median']:+.1f} % "
              f"(fastest rounds {100 * results[name]['overhead_of_fastest_rounds']:+.1f} %)")
    out = {
        "command": "python bench/bench_decoders.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rounds": args.rounds, "repeat": args.repeat, "size": args.size,
        "pool_process_start_s": round(worker_start, 3), "warmup_s": round(warmup, 2),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "cases": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"pool process start (spawn + imports): {worker_start:.2f} s, once per process -> {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
