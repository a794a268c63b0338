"""Shared pieces of the app benchmarks: a generated 10,000-file folder and an event-loop probe.

The folder holds ``n`` files made from 100 synthetic radiographs (engine.synth, PNG and DICOM
of 8 to 16 bits, MONOCHROME1 and 2) hard-linked under distinct names: every file is read for
real by the indexer and the decoders, generation takes seconds instead of minutes. Files go to
``bench/_work`` (git-ignored).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "_work"


def generated_folder(n: int, size: int = 256, distinct: int = 100) -> Path:
    """A folder of ``n`` radiograph files (made once, reused)."""
    from engine.synth import write_study

    folder = WORK / f"app_{n}_{size}"
    marker = folder / ".complete"
    if marker.is_file():
        return folder / "files"
    source = WORK / f"app_sources_{distinct}_{size}" / "study"
    if not (source / "labels.csv").is_file():
        write_study(source, distinct * 2 // 3, distinct - distinct * 2 // 3, size=size, seed=5)
    images = sorted(p for p in source.iterdir() if p.suffix in (".png", ".dcm"))
    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = images[i % len(images)]
        dst = files / f"img_{i:05d}{src.suffix}"
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                dst.write_bytes(src.read_bytes())
    marker.write_text(str(n))
    return files


class EventLoopProbe:
    """A QTimer firing every ``interval_ms``; a late firing is the event loop's stall.

    ``stalls_ms`` holds, for every firing, how much later than due it ran.
    """

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import QTimer

        self.interval = interval_ms / 1000.0
        self.stalls_ms: list[float] = []
        self._last = time.perf_counter()
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.stalls_ms.append(max(0.0, (now - self._last - self.interval) * 1000.0))
        self._last = now

    def summary(self) -> dict[str, float]:
        import numpy as np

        s = np.asarray(self.stalls_ms or [0.0])
        return {"ticks": int(s.size), "worst_ms": round(float(s.max()), 1),
                "p99_ms": round(float(np.percentile(s, 99)), 1), "median_ms": round(float(np.median(s)), 2)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux: ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
