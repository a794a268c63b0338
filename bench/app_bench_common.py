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
    from cxrscreen.engine.synth import write_study

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


class StallTracer:
    """While the event loop is late, sample the GUI thread's Python stack (to find what stalls it).

    A daemon thread checks every ``every_ms`` how late the probe's next firing is; beyond
    ``threshold_ms`` it records the GUI thread's innermost frames. When the GUI thread runs C++
    (a repaint, a proxy sort), the stack shows the Python call that entered it; when it waits
    for the GIL, the Python line where it waits. Create it in the GUI thread.
    """

    def __init__(self, probe: EventLoopProbe, threshold_ms: float = 60.0, every_ms: float = 15.0, depth: int = 6) -> None:
        import threading

        self.probe = probe
        self.threshold = threshold_ms
        self.every = every_ms / 1000.0
        self.depth = depth
        self.gui_thread = threading.get_ident()
        self.samples: list[tuple[float, float, list[str]]] = []  # (time, ms late, innermost frames)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-tracer", daemon=True)
        self._t0 = time.perf_counter()

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import sys
        import traceback

        while not self._stop.wait(self.every):
            late = (time.perf_counter() - self.probe._last - self.probe.interval) * 1000.0
            if late < self.threshold:
                continue
            frame = sys._current_frames().get(self.gui_thread)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)[-self.depth:]
            self.samples.append((round(time.perf_counter() - self._t0, 2), round(late, 1),
                                 [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack]))

    def summary(self, top: int = 12) -> list[tuple[int, str]]:
        """The most frequent innermost frame chains during stalls, with their sample counts."""
        from collections import Counter

        counts = Counter(" < ".join(reversed(s[2][-3:])) for s in self.samples)
        return [(n, chain) for chain, n in counts.most_common(top)]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux: ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def process_events_until(app, cond, timeout: float = 120.0) -> bool:
    """Run ``app``'s event loop until ``cond()`` holds (True) or ``timeout`` seconds pass (False):
    the screenshot scripts' wait for the window to finish indexing, scoring, loading."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        app.processEvents()
        if cond():
            return True
        time.sleep(0.01)
    return False
