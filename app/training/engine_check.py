"""`train ... --check` in an engine process: the engine's own verdict on the data and settings.

Before Train is enabled the panel asks the engine it will run whether the training would start:
:class:`TrainCheck` runs ``[engine] train ... --progress json --check`` (the same arguments as
the training, plus ``--check``) in an :class:`app.engine_process.EngineProcess`, so the panel
stays responsive. Requests are debounced (:data:`DEBOUNCE_MS`: typing in a field does not start
one process per key), one check runs at a time, and only the newest request's answer is
reported; a check that is still running when the data or settings change is stopped.

The engine prints one line per problem (see :class:`app.training.options.CheckProblem`) and
exits 0 when there is no error; an engine that fails without saying which option is wrong (it
does not know ``--check``, it crashed) is reported as one error with its message.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from cxrscreen.app.engine_process import EngineProcess, ProcessOutcome
from cxrscreen.app.training.options import CheckProblem

logger = logging.getLogger(__name__)
DEBOUNCE_MS = 500


@dataclass(frozen=True)
class CheckResult:
    """The engine's answer to one check.

    Attributes:
        args: the `train` arguments checked (without ``--check``).
        problems: what it found, in the order printed.
    """

    args: tuple[str, ...]
    problems: tuple[CheckProblem, ...]

    @property
    def ok(self) -> bool:
        """Whether training may start (no error; warnings do not block)."""
        return not any(p.severity == "error" for p in self.problems)


class TrainCheck(QObject):
    """Debounced `train --check` runs of one engine command.

    Args:
        command: the engine command.
        delay_ms: how long a request waits for a newer one before it runs.

    Signals:
        checking(): a check started (the panel shows "checking").
        checked(CheckResult): the answer for the newest request.
    """

    checking = Signal()
    checked = Signal(object)

    def __init__(self, command: Sequence[str], delay_ms: int = DEBOUNCE_MS, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = EngineProcess(command, parent=self)
        self.engine.events.connect(self._on_events)
        self.engine.finished.connect(self._on_finished)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self._run)
        self._wanted: tuple[str, ...] | None = None  # the newest request
        self._running: tuple[str, ...] | None = None  # what the engine process checks now
        self._problems: list[CheckProblem] = []
        self.result: CheckResult | None = None  # the answer for the newest request, once known

    def set_command(self, command: Sequence[str]) -> None:
        """Check with another engine command from now on (a running check is stopped)."""
        self.cancel()
        self.engine.deleteLater()
        self.engine = EngineProcess(command, parent=self)
        self.engine.events.connect(self._on_events)
        self.engine.finished.connect(self._on_finished)

    def request(self, args: Sequence[str]) -> None:
        """Check these `train` arguments (``--check`` is added) after the debounce delay."""
        args = tuple(args)
        if args == self._wanted:
            return  # unchanged: the answer (or the check under way) stands
        self._wanted = args
        self.result = None
        self._timer.start()

    def cancel(self) -> None:
        """Forget the pending request and stop a running check."""
        self._timer.stop()
        self._wanted = None
        self.result = None
        if self.engine.is_running():
            self.engine.kill()

    @property
    def busy(self) -> bool:
        """Whether a requested check has not been answered yet."""
        return self._wanted is not None and self.result is None

    @Slot()
    def _run(self) -> None:
        if self._wanted is None:
            return
        if self.engine.is_running():  # an older request: stop it; _on_finished starts the newest
            if self._running != self._wanted:
                self.engine.kill()
            return
        self._running = self._wanted
        self._problems = []
        self.checking.emit()
        self.engine.start([*self._running, "--check"])

    @Slot(list)
    def _on_events(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            if ev.get("event") != "problem":
                continue
            try:
                self._problems.append(CheckProblem.from_event(ev))
            except ValueError as exc:
                self._problems.append(CheckProblem("error", None, f"The engine's check printed a line the app "
                                                                   f"cannot read: {exc}"))

    @Slot(object)
    def _on_finished(self, outcome: ProcessOutcome) -> None:
        args, self._running = self._running, None
        if args is None or args != self._wanted:
            if self._wanted is not None:
                self._run()  # a newer request waited for this one to end
            return
        problems = list(self._problems)
        if outcome.status != "done" and not any(p.severity == "error" for p in problems):
            problems.append(CheckProblem("error", None, f"The engine's check failed: {outcome.message}"))
        self.result = CheckResult(args, tuple(problems))
        logger.info("train --check: %s", "ok" if self.result.ok else [p.message for p in problems])
        self.checked.emit(self.result)
