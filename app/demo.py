"""The demo: a synthetic study written to the user's cache folder, and (when the engine offers
it) a small demo detector trained in a separate process.

``python -m cxrscreen.engine demo-detector --out FILE --progress json`` trains a small DDAD detector on
synthetic normals (about two minutes); :class:`DemoDetectorProcess` runs it in a ``QProcess``,
turns its JSON progress lines into signals, and reports "not available" when the engine has
no such command yet.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, Signal, Slot

from cxrscreen.app.workers.base import StoppableThread

logger = logging.getLogger(__name__)
DEMO_NORMAL = 16
DEMO_ABNORMAL = 8
DEMO_SIZE = 512
DEMO_SEED = 2024
DEMO_VARIATION = 0.5  # anatomical variation of the demo's chests; the demo detector trains on the same
# how dense the demo study's lesions are (engine.synth: 1 = clearly visible): 1.5, as dense as the
# lesions of the demo detector's own unlabeled training images (engine/demo_detector.py)
DEMO_LESION_STRENGTH = 1.5
# The demo's study and detector are cached under names carrying this version: bump it whenever
# the settings above or the demo detector's recipe change, so a study and a detector from
# another version are never paired (version 2: variation 0.5 and the rec-scored detector; version 3:
# lesion strength 1.5, a detector trained on chests with side markers and 32 calibration normals;
# version 4: the detector's score is the mean of its map's highest 0.5 % of pixels).
DEMO_VERSION = 4


def demo_detector_file(root: Path) -> Path:
    """Where the demo detector of this :data:`DEMO_VERSION` is kept under the demo folder ``root``."""
    return root / f"demo-detector-v{DEMO_VERSION}.onnx"


def demo_root() -> Path:
    """Where the demo lives (the user's cache folder)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("cxrscreen")) / "demo"


class DemoStudyThread(StoppableThread):
    """Write the synthetic demo study (once; an existing complete one is reused).

    Signals:
        study_ready(Path): the study folder.
        study_failed(str): why it could not be written.
    """

    study_ready = Signal(object)
    study_failed = Signal(str)

    def __init__(self, root: Path | None = None, n_normal: int = DEMO_NORMAL, n_abnormal: int = DEMO_ABNORMAL,
                 size: int = DEMO_SIZE, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.folder = (root or demo_root()) / f"study-v{DEMO_VERSION}"
        self.n_normal, self.n_abnormal, self.size = n_normal, n_abnormal, size

    def work(self) -> None:
        labels = self.folder / "labels.csv"
        try:
            if labels.is_file() and len(labels.read_text(encoding="utf-8").splitlines()) == self.n_normal + self.n_abnormal + 1:
                self.study_ready.emit(self.folder)
                return
            from cxrscreen.engine.synth import write_study

            write_study(self.folder, self.n_normal, self.n_abnormal, size=self.size, seed=DEMO_SEED,
                        variation=DEMO_VARIATION, lesion_strength=DEMO_LESION_STRENGTH)
        except (OSError, ValueError) as exc:
            self.study_failed.emit(f"{exc.__class__.__name__}: {exc}")
            return
        self.study_ready.emit(self.folder)


class DemoDetectorProcess(QObject):
    """Train the demo detector with the engine's command, in a separate process.

    Signals:
        progress(str): a line for the status bar.
        ready(Path): the detector file.
        unavailable(str): the engine cannot make one (no such command, or it failed).
    """

    progress = Signal(str)
    ready = Signal(object)
    unavailable = Signal(str)

    def __init__(self, out: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.out = Path(out)
        self.process = QProcess(self)
        self.process.setProgram(sys.executable)
        # --overwrite: a file left there is incomplete (a finished one is used without a rerun)
        self.process.setArguments(["-m", "cxrscreen.engine", "demo-detector", "--out", str(self.out), "--progress", "json",
                                   "--variation", str(DEMO_VARIATION), "--overwrite"])
        self.process.readyReadStandardOutput.connect(self._on_stdout)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)
        self._buffer = b""
        self._stderr_tail = ""

    def start(self) -> None:
        """Start the process (returns at once)."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.process.start()

    def is_running(self) -> bool:
        return self.process.state() != QProcess.ProcessState.NotRunning

    def stop(self, wait_ms: int = 3000) -> None:
        """Ask the process to stop (SIGTERM: the engine stops at a safe point), then kill it."""
        if not self.is_running():
            return
        self.process.terminate()
        if not self.process.waitForFinished(wait_ms):
            self.process.kill()
            self.process.waitForFinished(1000)

    @Slot()
    def _on_stdout(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "progress" and event.get("total"):
                pct = 100.0 * float(event.get("step", 0)) / float(event["total"])
                eta = event.get("eta_s")
                tail = f", about {eta:.0f} s left" if isinstance(eta, (int, float)) else ""
                self.progress.emit(f"Preparing the demo detector: {event.get('phase', '')} {pct:.0f} %{tail}")
            elif event.get("event") == "phase":
                self.progress.emit(f"Preparing the demo detector: {event.get('phase', '')}…")

    @Slot(int, QProcess.ExitStatus)
    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        err = bytes(self.process.readAllStandardError().data()).decode("utf-8", "replace")
        if code == 0 and status == QProcess.ExitStatus.NormalExit and self.out.is_file():
            self.ready.emit(self.out)
            return
        if "invalid choice" in err:
            self.unavailable.emit("this version of the engine has no demo detector yet")
        else:
            last = err.strip().splitlines()[-1] if err.strip() else f"exit code {code}"
            self.unavailable.emit(f"demo detector training failed: {last}")

    @Slot(QProcess.ProcessError)
    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.unavailable.emit("could not start the engine process")
