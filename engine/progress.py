"""Progress of long engine jobs: a terminal bar for people, JSON lines for the app.

JSON lines go to stdout, one object per line, always with ``event`` and ``time``:
    {"event": "phase", "phase": "train", "total": 18000, ...}
    {"event": "progress", "phase": "train", "step": 512, "total": 18000, "epoch": 7,
     "epochs": 250, "loss": 0.0123, "elapsed_s": 31.2, "eta_s": 1090.0, ...}
    {"event": "message", "level": "warning", "text": "..."}
    {"event": "done", ...} / {"event": "stopped", ...} / {"event": "error", "message": "..."}
Progress lines are rate-limited (``min_interval_s``); phase changes, epoch ends and final events
are never dropped. Every event is also appended to a log file when one is given.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import IO, Any, Literal

ProgressMode = Literal["auto", "json", "bar", "none"]


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


class Progress:
    """Reports phases, progress, messages and the end of a job.

    Args:
        mode: "json" (stdout JSON lines), "bar" (terminal bar on stderr), "none", or "auto"
            (a bar when stderr is a terminal, JSON lines otherwise).
        log_path: also append every event as JSON to this file.
        min_interval_s: at most one progress line per this many seconds (per output).
        stdout, stderr: streams (for tests).
    """

    def __init__(
        self,
        mode: ProgressMode = "auto",
        log_path: Path | None = None,
        min_interval_s: float = 0.5,
        stdout: IO[str] | None = None,
        stderr: IO[str] | None = None,
    ) -> None:
        if mode not in ("auto", "json", "bar", "none"):
            raise ValueError(f"progress mode must be auto, json, bar or none, got {mode!r}")
        self._out = stdout if stdout is not None else sys.stdout
        self._err = stderr if stderr is not None else sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self._err, "isatty", lambda: False)() else "json"
        self.mode: ProgressMode = mode
        self._log = open(log_path, "a", encoding="utf-8") if log_path is not None else None
        self._min_interval = min_interval_s
        self._phase = ""
        self._total = 0
        self._phase_start = time.monotonic()
        self._last_emit = float("-inf")
        self._bar_open = False

    # ------------------------------------------------------------------ events
    def _emit(self, payload: dict[str, Any]) -> None:
        payload = {"event": payload.pop("event"), "time": round(time.time(), 3), **payload}
        line = json.dumps(payload, default=float)
        if self.mode == "json":
            print(line, file=self._out, flush=True)
        if self._log is not None:
            self._log.write(line + "\n")
            self._log.flush()

    def phase(self, name: str, total: int, **fields: Any) -> None:
        """Start a phase of ``total`` steps (e.g. "load", "train", "calibrate")."""
        self._close_bar()
        self._phase, self._total = name, max(int(total), 0)
        self._phase_start = time.monotonic()
        self._last_emit = float("-inf")
        self._emit({"event": "phase", "phase": name, "total": self._total, **fields})

    def update(self, step: int, force: bool = False, **fields: Any) -> None:
        """Report ``step`` of the current phase (1-based count of steps done)."""
        now = time.monotonic()
        if not force and now - self._last_emit < self._min_interval and step < self._total:
            return
        self._last_emit = now
        elapsed = now - self._phase_start
        eta = elapsed / step * (self._total - step) if step > 0 else float("nan")
        payload = {"event": "progress", "phase": self._phase, "step": step, "total": self._total,
                   "elapsed_s": round(elapsed, 2), "eta_s": round(eta, 1) if math.isfinite(eta) else None, **fields}
        self._emit(payload)
        if self.mode == "bar":
            self._draw_bar(step, elapsed, eta, fields)

    def message(self, text: str, level: Literal["info", "warning", "error"] = "info") -> None:
        self._close_bar()
        self._emit({"event": "message", "level": level, "text": text})
        if self.mode == "bar" or level != "info":
            if self.mode != "json":
                print(f"{level}: {text}" if level != "info" else text, file=self._err, flush=True)

    def finish(self, event: Literal["done", "stopped", "error"], **fields: Any) -> None:
        self._close_bar()
        self._emit({"event": event, **fields})
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------------ terminal bar
    def _draw_bar(self, step: int, elapsed: float, eta: float, fields: dict[str, Any]) -> None:
        width = 28
        frac = step / self._total if self._total else 1.0
        filled = int(round(width * frac))
        extra = []
        if "epoch" in fields and "epochs" in fields:
            extra.append(f"epoch {fields['epoch']}/{fields['epochs']}")
        if fields.get("loss") is not None:
            extra.append(f"loss {fields['loss']:.5g}")
        line = (f"\r{self._phase:<10} [{'#' * filled}{'.' * (width - filled)}] {100 * frac:5.1f}%  "
                f"{' '.join(extra)}  {_format_duration(elapsed)} elapsed, ETA {_format_duration(eta)}")
        self._err.write(line.ljust(100))
        self._err.flush()
        self._bar_open = True

    def _close_bar(self) -> None:
        if self._bar_open:
            self._err.write("\n")
            self._err.flush()
            self._bar_open = False
