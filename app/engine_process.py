"""Engine subcommands in a separate process: the app's only way to score batches and to train.

The app never imports torch, and a busy Python thread in the GUI process makes the event loop
wait for the GIL (bench/RESULTS.md, "Event loop while scoring"). So long engine jobs (``score``,
``train``, ``export``, ``eval``) run as child processes of the *engine command* — by default
``[sys.executable, "-m", "cxrscreen.engine"]``; a packaged app points it at a separate engine
environment (:attr:`app.settings.AppSettings.engine_command`).

:class:`EngineProcess` wraps one ``QProcess``:
- stdout is read as JSON lines (the engine's ``--progress json`` / ``--format jsonl`` events,
  see :mod:`engine.progress`, :mod:`engine.score_cli` and :mod:`engine.index_cli`); complete
  lines become ``events`` signals (lists, in order) of at most :data:`LINES_PER_TURN` lines,
  one per event-loop turn, so a fast child (``index`` lists ~1,500 files a second) never makes
  the GUI parse thousands of lines at once. Other stdout lines are kept as text.
- stderr is drained continuously (a full pipe would block the child) and its tail kept, to be
  shown when something goes wrong.
- :meth:`EngineProcess.terminate` sends SIGTERM (the engine stops at its next safe point:
  after the current batch or epoch, with a checkpoint) and kills the process if it has not
  ended after a grace period.
- When it has ended, ``finished`` carries a :class:`ProcessOutcome` (exit code 0 done, 3
  stopped, 1 error, or a crash); ``crashed`` is emitted first when it died abnormally.
- The child runs at a lower CPU priority (Linux nice +10) so the GUI keeps its share.

Like a ``QThread``, a ``QProcess`` must outlive the process it runs: owners keep the wrapper
until ``finished``.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal, Slot

logger = logging.getLogger(__name__)

PROCESS_NICE = 10  # Linux: the engine yields the CPU to the GUI process (never starved)
DEFAULT_GRACE_MS = 5000
TAIL_LINES = 200
LINES_PER_TURN = 128  # stdout lines parsed (and handed on) per event-loop turn
EXIT_DONE, EXIT_ERROR, EXIT_STOPPED = 0, 1, 3
ProcessStatus = Literal["done", "stopped", "failed", "crashed"]
FINAL_EVENTS = ("done", "stopped", "error")


def default_engine_command() -> list[str]:
    """The engine of this Python environment: ``[sys.executable, "-m", "cxrscreen.engine"]``."""
    return [sys.executable, "-m", "cxrscreen.engine"]


@dataclass(frozen=True)
class ProcessOutcome:
    """How an engine process ended.

    Attributes:
        status: "done" (exit code 0), "stopped" (exit code 3, or ended after the app asked it
            to stop), "failed" (the engine reported an error: exit code 1 or another code) or
            "crashed" (killed by a signal it was not sent by the app, or could not start).
        exit_code: the exit code, or None when the process did not exit by itself.
        final_event: the last "done" / "stopped" / "error" event it printed, if any.
        stderr_tail: the last lines it wrote on stderr.
        stop_requested: whether the app asked it to stop.
        killed: whether the app killed it after the grace period.
        message: what happened, in one readable sentence.
    """

    status: ProcessStatus
    exit_code: int | None
    final_event: dict[str, Any] | None
    stderr_tail: str
    stop_requested: bool
    killed: bool
    message: str


@dataclass
class _Tail:
    """The last ``limit`` lines of a text stream fed in arbitrary chunks."""

    limit: int = TAIL_LINES
    lines: deque[str] = field(default_factory=deque)
    partial: str = ""

    def feed(self, text: str) -> list[str]:
        """Add text; returns the complete lines it finished."""
        *done, self.partial = (self.partial + text).split("\n")
        for line in done:
            self.lines.append(line.rstrip("\r"))
            while len(self.lines) > self.limit:
                self.lines.popleft()
        return done

    def text(self) -> str:
        return "\n".join([*self.lines, self.partial] if self.partial else self.lines)


def lower_process_priority(pid: int, nice: int = PROCESS_NICE) -> None:
    """Raise the nice value of every thread of process ``pid`` (Linux; no-op elsewhere).

    On Linux the nice value is per thread; threads created later inherit their creator's, so
    renicing right after the start covers the engine's decoding and onnxruntime/torch pools.
    """
    if not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        return
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:  # the thread ended meanwhile
            logger.debug("could not renice thread %d of engine process %d", tid, pid)


class EngineProcess(QObject):
    """One engine subcommand in a child process, its JSON lines turned into signals.

    Args:
        command: the engine command (default: :func:`default_engine_command`); the
            subcommand and its arguments are appended by :meth:`start`.
        nice: nice value of the child on Linux (0 keeps the app's priority).

    Signals:
        events(list[dict]): JSON objects read from stdout, in order (one emission per read).
        crashed(ProcessOutcome): the process died abnormally (emitted just before finished).
        finished(ProcessOutcome): the process has ended, whichever way (emitted once per start).
    """

    events = Signal(list)
    crashed = Signal(object)
    finished = Signal(object)

    def __init__(self, command: Sequence[str] | None = None, nice: int = PROCESS_NICE,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.command = list(command) if command else default_engine_command()
        if not all(isinstance(c, str) and c for c in self.command):
            raise ValueError(f"the engine command must be non-empty strings, got {self.command!r}")
        self.nice = nice
        self.args: list[str] = []
        self.process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        env.insert("PYTHONIOENCODING", "utf-8")
        self.process.setProcessEnvironment(env)
        self.process.readyReadStandardOutput.connect(self._on_stdout)
        self.process.readyReadStandardError.connect(self._on_stderr)
        self.process.started.connect(self._on_started)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill_after_grace)
        self._drain_timer = QTimer(self)
        self._drain_timer.setSingleShot(True)
        self._drain_timer.setInterval(0)
        self._drain_timer.timeout.connect(self._drain)
        self._reset()

    def _reset(self) -> None:
        self._stdout = b""
        self._lines: deque[bytes] = deque()  # complete stdout lines not handed on yet
        self._exit_pending: tuple[bool, int | None] = (False, None)  # (ended, exit code or None: crashed)
        self._stderr = _Tail()
        self._text_out = _Tail(limit=50)
        self._final: dict[str, Any] | None = None
        self._stop_requested = False
        self._killed = False
        self._ended = True

    # ------------------------------------------------------------------ control
    def start(self, args: Sequence[str], working_dir: Path | None = None) -> None:
        """Start ``[command] + args`` (returns at once; ``finished`` follows in any case).

        Raises:
            RuntimeError: this wrapper's process is still running.
        """
        if self.is_running():
            raise RuntimeError("the engine process is still running")
        self._drain_timer.stop()
        self._reset()
        self._ended = False
        self.args = [str(a) for a in args]
        self.process.setProgram(self.command[0])
        self.process.setArguments(self.command[1:] + self.args)
        if working_dir is not None:
            self.process.setWorkingDirectory(str(working_dir))
        logger.info("engine: %s", self.command_line)
        self.process.start()

    def is_running(self) -> bool:
        """Whether a run is under way: from :meth:`start` until ``finished`` has been emitted
        (the child may have exited while its last lines are still being handed on)."""
        return not self._ended

    def _alive(self) -> bool:
        """Whether the child process itself is starting or running."""
        return self.process.state() != QProcess.ProcessState.NotRunning

    def terminate(self, grace_ms: int = DEFAULT_GRACE_MS) -> None:
        """Ask the process to stop (SIGTERM), and kill it if it is still running after ``grace_ms``.

        Returns at once. The engine stops at its next safe point (after the current batch or
        epoch, writing a checkpoint); a killed training resumes from its last checkpoint.
        """
        if not self._alive():
            return
        self._stop_requested = True
        if self.process.state() == QProcess.ProcessState.Starting:
            self.kill()  # nothing to save yet
            return
        self.process.terminate()
        if not self._kill_timer.isActive() or self._kill_timer.remainingTime() > grace_ms:
            self._kill_timer.start(max(0, grace_ms))

    def kill(self) -> None:
        """End the process at once (SIGKILL)."""
        if self._alive():
            self._stop_requested = True
            self._killed = True
            self.process.kill()

    def wait(self, timeout_ms: int) -> bool:
        """Block until the process has ended and its output was handed on (the process at most
        ``timeout_ms``); True when it has."""
        if self._alive():
            # waitForFinished blocks the event loop, so the kill timer of a pending terminate()
            # cannot fire meanwhile: honour its deadline here (a niced engine on a busy machine
            # can take seconds to reach its next safe point)
            if self._kill_timer.isActive() and self._kill_timer.remainingTime() < timeout_ms:
                before = self._kill_timer.remainingTime()
                if not self.process.waitForFinished(max(0, before)):
                    self._kill_timer.stop()
                    self._kill_after_grace()
                    self.process.waitForFinished(max(0, timeout_ms - before))
            else:
                self.process.waitForFinished(timeout_ms)
        if not self._alive() and not self._ended:
            if not self._exit_pending[0]:  # finished() not delivered yet: take the exit status now
                self._on_finished(self.process.exitCode(), self.process.exitStatus())
            while not self._ended:
                self._drain()
        return not self.is_running()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        pid = int(self.process.processId())
        return pid or None

    @property
    def command_line(self) -> str:
        """The full command, shell-quoted (for logs and error messages)."""
        return shlex.join(self.command + self.args)

    @property
    def stderr_tail(self) -> str:
        """The last lines written on stderr."""
        return self._stderr.text()

    @property
    def stdout_text_tail(self) -> str:
        """The last stdout lines that were not JSON events (e.g. `export`'s report)."""
        return self._text_out.text()

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`terminate` or :meth:`kill` was called for the current run."""
        return self._stop_requested

    # ------------------------------------------------------------------ process signals
    @Slot()
    def _on_started(self) -> None:
        pid = self.pid
        if pid is not None and self.nice > 0:
            lower_process_priority(pid, self.nice)

    @Slot()
    def _on_stdout(self) -> None:
        self._stdout += bytes(self.process.readAllStandardOutput().data())
        *lines, self._stdout = self._stdout.split(b"\n")
        self._lines.extend(lines)
        if not self._drain_timer.isActive():
            self._drain()

    @Slot()
    def _drain(self) -> None:
        """Hand on up to LINES_PER_TURN lines; the rest on the next turn; then a pending end."""
        n = min(len(self._lines), LINES_PER_TURN)
        self._emit_lines([self._lines.popleft() for _ in range(n)])
        if self._lines:
            self._drain_timer.start()
        elif self._exit_pending[0]:
            code = self._exit_pending[1]
            self._exit_pending = (False, None)
            self._end(self._outcome(code))

    def _emit_lines(self, lines: list[bytes]) -> None:
        out: list[dict[str, Any]] = []
        for raw in lines:
            line = raw.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict) or "event" not in event:
                self._text_out.feed(raw.decode("utf-8", "replace") + "\n")
                continue
            if event["event"] in FINAL_EVENTS:
                self._final = event
            out.append(event)
        if out:
            self.events.emit(out)

    @Slot()
    def _on_stderr(self) -> None:
        text = bytes(self.process.readAllStandardError().data()).decode("utf-8", "replace")
        for line in self._stderr.feed(text):
            logger.debug("engine stderr: %s", line)

    @Slot(int, QProcess.ExitStatus)
    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        self._on_stderr()
        self._stdout += bytes(self.process.readAllStandardOutput().data())
        rest, self._stdout = self._stdout, b""
        self._lines.extend(rest.split(b"\n"))
        crashed = status == QProcess.ExitStatus.CrashExit
        self._exit_pending = (True, None if crashed else int(code))  # ends once every line is handed on
        if not self._drain_timer.isActive():
            self._drain()

    @Slot(QProcess.ProcessError)
    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error != QProcess.ProcessError.FailedToStart:
            return  # crashes and read errors end in finished()
        message = (f"The engine could not be started ({self.process.errorString()}). Command: {self.command_line}. "
                   "Check the engine command (Detector ▸ Engine command…).")
        self._end(ProcessOutcome("crashed", None, None, "", self._stop_requested, False, message))

    @Slot()
    def _kill_after_grace(self) -> None:
        if self._alive():
            logger.warning("engine process %s did not stop within the grace period: killing it", self.pid)
            self.kill()

    def _outcome(self, code: int | None) -> ProcessOutcome:
        tail = self.stderr_tail
        final = self._final
        stop = self._stop_requested
        if code == EXIT_DONE:
            return ProcessOutcome("done", code, final, tail, stop, False, "finished")
        if code == EXIT_STOPPED or (code is None and stop):
            msg = "stopped at the app's request" + (" (killed after the grace period)" if self._killed else "")
            return ProcessOutcome("stopped", code, final, tail, stop, self._killed, msg)
        if code is None:
            return ProcessOutcome("crashed", None, final, tail, stop, False,
                                  "The engine process ended unexpectedly (killed by the system, out of memory, or crashed).")
        if final is not None and final.get("event") == "error" and final.get("message"):
            msg = str(final["message"])
        else:
            last = [ln for ln in tail.splitlines() if ln.strip()]
            msg = last[-1].strip() if last else f"the engine exited with code {code}"
        return ProcessOutcome("failed", code, final, tail, stop, False, msg)

    def _end(self, outcome: ProcessOutcome) -> None:
        if self._ended:
            return
        self._ended = True
        if outcome.status == "crashed":
            logger.warning("engine process crashed: %s\n%s", outcome.message, outcome.stderr_tail[-2000:])
            self.crashed.emit(outcome)
        self.finished.emit(outcome)
