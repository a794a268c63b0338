"""One training job: train ▸ export ▸ verify ▸ validate ▸ register, the engine in separate processes.

Stages:
1. **train**: ``[engine] train ... --out RUN_DIR --progress json``; its JSON lines become
   progress, loss and device signals. SIGTERM stops it after the current epoch with a
   checkpoint; running the same command again resumes (``Resume``); a killed run resumes from
   its last checkpoint.
2. **export**: ``[engine] export RUN_DIR --out RUN_DIR/export/model.onnx --name NAME``. The
   engine writes the file atomically, only after onnxruntime reproduced PyTorch on the
   held-out normals.
3. **verify**: the app reads the file's metadata back (:func:`engine.detector.read_metadata`)
   and checks it is this run's detector.
4. **validate** (when labelled data was given): ``[engine] eval --model ... --labels CSV``:
   AUROC / AP with bootstrap intervals, operating points, and a ROC + histogram figure. A
   failed validation is recorded on the card; the model is still registered (never lose a
   trained detector).
5. **register**: :meth:`app.library.ModelLibrary.register` moves the file into the library
   with its card, atomically.

Nothing reaches the library before stage 5 completes, and stage 5 is all-or-nothing, so a
crash, a kill or a cancel at any point leaves no half-written model there. The job's own
record (``app_job.json`` in the run folder) lets the panel offer Resume or Discard for a run
that did not finish, also in a later session.

The job also fits :class:`app.workers.base.WorkerSet` (``start``, ``request_stop``,
``isFinished``, ``wait``, ``finished``): closing the window stops it (SIGTERM, killed after
:data:`CLOSE_GRACE_MS`) and waits for it.
"""
from __future__ import annotations

import datetime
import json
from collections import deque
import logging
import math
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from PySide6.QtCore import QObject, Signal, Slot

from cxrscreen.app.engine_process import EngineProcess, ProcessOutcome, default_engine_command
from cxrscreen.app.library import ROC_FILE, VALIDATION_FILE, LibraryEntry, ModelLibrary
from cxrscreen.app.training.folders import LabelledValidation
from cxrscreen.app.training.options import MethodInfo, train_arguments
from cxrscreen.app.workers.base import StoppableThread
from cxrscreen.engine.atomic import atomic_write_text
from cxrscreen.engine.detector import DetectorError, DetectorMetadata, read_metadata

logger = logging.getLogger(__name__)
JOB_FILE = "app_job.json"
EXPORT_DIR = "export"
VALIDATION_DIR = "validation"
CANCEL_GRACE_MS = 15 * 60 * 1000  # Cancel waits for the epoch to end (a checkpoint); "Stop now" kills
CLOSE_GRACE_MS = 15_000  # closing the window: SIGTERM, then a kill (the run resumes from its last checkpoint)
STEP_GRACE_MS = 3000  # export and validation: nothing is written until they finish
Stage = Literal["train", "export", "verify", "validate", "register"]
JobStatus = Literal["training", "stopped", "interrupted", "failed", "trained", "registered"]
STAGE_TEXT: dict[str, str] = {"train": "Training", "export": "Exporting and checking the ONNX file",
                              "verify": "Verifying the detector file", "validate": "Validating on the labelled images",
                              "register": "Adding to the model library"}


@dataclass
class JobSpec:
    """What to train and where.

    Attributes:
        name: the detector's name in the library.
        method: the registry name.
        preset: the preset the panel showed ("custom" when settings were changed).
        values: option values by name (None: the preset's or the method's default).
        normal, unlabeled, abnormal: the data folders (unlabeled and abnormal: None when the
            method does not use them or they were not given).
        validation: labelled validation data (a folder or a CSV), or None.
        run_dir: the engine's run folder (also holds the export and the job record).
        counts: what the panel counted per folder ({"normal": {"images", "unreadable"}, ...}).
        base_preset: the preset passed as ``--preset`` (the one the settings started from);
            None in records of earlier versions: then ``preset`` when the method has it.
    """

    name: str
    method: str
    preset: str
    values: dict[str, Any]
    normal: Path
    unlabeled: Path | None
    run_dir: Path
    abnormal: Path | None = None
    validation: Path | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    base_preset: str | None = None

    def folders(self) -> dict[str, Path | None]:
        """The data folders by role."""
        return {"normal": self.normal, "unlabeled": self.unlabeled, "abnormal": self.abnormal}

    def train_args(self, info: MethodInfo, check: bool = False) -> list[str]:
        """The `train` arguments for the method ``info`` (the engine command goes before them).

        Raises:
            ValueError: ``info`` is another method, or a folder or value does not fit it.
        """
        if info.name != self.method:
            raise ValueError(f"the job trains {self.method!r}, not {info.name!r}")
        preset = self.base_preset or self.preset
        known = {p.name for p in info.presets}
        return train_arguments(info, self.values, self.folders(), self.run_dir, preset if preset in known else None,
                               check)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("normal", "unlabeled", "run_dir", "abnormal", "validation"):
            d[k] = str(d[k]) if d[k] is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "JobSpec":
        d = dict(d)
        for k in ("normal", "unlabeled", "run_dir", "abnormal", "validation"):
            d[k] = Path(d[k]) if d.get(k) else None
        d.setdefault("unlabeled", None)
        return cls(**d)


@dataclass(frozen=True)
class JobRecord:
    """A job found in the runs folder (for Resume / Discard).

    Attributes:
        spec: what it trains.
        status: its last status.
        updated: when the record was last written (ISO 8601).
        progress: where training got to ("epoch 37 of 250 (train)"), if known.
        model_id: the registered model (status "registered").
        error: the last error, if any.
    """

    spec: JobSpec
    status: str
    updated: str
    progress: str = ""
    model_id: str | None = None
    error: str | None = None

    @property
    def resumable(self) -> bool:
        """Whether running it again can finish it (not after a data error, not once registered)."""
        return self.status in ("training", "stopped", "interrupted", "trained")


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed.

    Attributes:
        title: a short heading ("Training failed").
        message: what happened, readable.
        log_tail: the last lines of the engine's log (stderr).
        resumable: whether Resume can continue it (the run's checkpoint is kept).
    """

    title: str
    message: str
    log_tail: str
    resumable: bool


class CallThread(StoppableThread):
    """Run one function off the GUI thread.

    Signals:
        returned(object): its result.
        raised(str): ``"ExceptionType: message"`` when it raised.
    """

    returned = Signal(object)
    raised = Signal(str)

    def __init__(self, fn: Callable[[], Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._fn = fn

    def work(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:  # reported to the GUI thread, which decides
            logger.exception("background step failed")
            reason = exc.reason if isinstance(exc, DetectorError) else str(exc)
            self.raised.emit(f"{exc.__class__.__name__}: {reason}")
            return
        self.returned.emit(result)


def _event_line(ev: dict[str, Any]) -> str:
    """One engine event as a log line ("" for progress lines inside an epoch)."""
    kind = ev.get("event")
    if kind == "phase":
        return f"phase {ev.get('phase')} ({ev.get('total')} steps)" + (f" on {ev['device']}" if ev.get("device") else "")
    if kind == "progress" and ev.get("epoch_end"):
        loss = ev.get("loss")
        return f"{ev.get('phase')}: epoch {ev.get('epoch')} of {ev.get('epochs')} done" + (
            f", loss {loss:.5g}" if isinstance(loss, (int, float)) else "")
    if kind == "message":
        return f"{ev.get('level', 'info')}: {ev.get('text', '')}"
    if kind in ("done", "stopped", "error"):
        return f"{kind}" + (f": {ev['message']}" if ev.get("message") else "")
    return ""


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_record(spec: JobSpec, status: JobStatus, **fields: Any) -> None:
    """Write the job record into its run folder (atomically)."""
    path = spec.run_dir / JOB_FILE
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
    record = {**old, **fields, "spec": spec.to_json(), "status": status, "updated": now_iso()}
    record.setdefault("created", record["updated"])
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2, default=str))


def find_jobs(runs_root: Path) -> list[JobRecord]:
    """Jobs recorded under ``runs_root``, newest first (unreadable records are skipped)."""
    out: list[JobRecord] = []
    if not runs_root.is_dir():
        return out
    for folder in runs_root.iterdir():
        path = folder / JOB_FILE
        if not path.is_file():
            continue
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            spec = JobSpec.from_json(d["spec"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("training job record %s is unreadable (%s)", path, exc)
            continue
        out.append(JobRecord(spec, str(d.get("status", "")), str(d.get("updated", "")), _last_progress(folder),
                             d.get("model_id"), d.get("error")))
    out.sort(key=lambda r: r.updated, reverse=True)
    return out


def _last_progress(run_dir: Path) -> str:
    """Where a run got to, from the end of its engine log ("epoch 37 of 250 (train)")."""
    log = run_dir / "log.jsonl"
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "progress" and ev.get("epoch") and ev.get("epochs"):
            done = int(ev["epoch"]) - (0 if ev.get("epoch_end") else 1)
            return f"{done} of {ev['epochs']} epochs done ({ev.get('phase', '')})"
    return ""


class TrainingJob(QObject):
    """Train, export, verify, validate and register one detector.

    Args:
        spec: what to train.
        library: where the detector goes.
        info: the method as the engine describes it (its phases, its command line).
        command: the engine command.
        validation: the labelled validation images (read by the panel), if any.
        provider: where validation scoring runs ("auto", "cuda", "cpu").

    Signals:
        stage_changed(str): "train", "export", "verify", "validate" or "register".
        phase_changed(str, int, int, dict): the engine's phase, its index and the phase count
            (1-based; 0 when the phase is not one the method lists), and the phase event.
        progress(int, int, float): step, total, seconds left in this phase (NaN: unknown).
        epoch_ended(dict): an epoch-end event (epoch, epochs, loss, loss_a, loss_b, ...).
        device_known(str): where the engine trains ("cpu", "cuda", "cuda:0"...).
        log(str, str): a level ("info", "warning", "error") and a line for the job's log.
        succeeded(LibraryEntry): the detector is in the library.
        stopped(str): the job was stopped; the text says how to continue.
        failed(JobFailure): the job failed.
        finished(): the job has ended (after one of the three above).
    """

    stage_changed = Signal(str)
    phase_changed = Signal(str, int, int, dict)
    progress = Signal(int, int, float)
    epoch_ended = Signal(dict)
    device_known = Signal(str)
    log = Signal(str, str)
    succeeded = Signal(object)
    stopped = Signal(str)
    failed = Signal(object)
    finished = Signal()

    def __init__(self, spec: JobSpec, library: ModelLibrary, info: MethodInfo, command: Sequence[str] | None = None,
                 validation: LabelledValidation | None = None, provider: str = "auto",
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        if validation is not None and spec.validation is None:
            raise ValueError("validation data given but the job names no validation source")
        self.spec = spec
        self.library = library
        self.info = info
        self.train_args = spec.train_args(info)  # a ValueError here: nothing started
        self.command = list(command) if command else default_engine_command()
        self.validation = validation
        self.provider = provider
        self.engine = EngineProcess(self.command, parent=self)
        self.engine.events.connect(self._on_events)
        self.engine.finished.connect(self._on_engine_finished)
        self.stage: Stage | None = None
        self.device = ""
        self.started_at = ""
        self._t0 = 0.0
        self._phases = tuple(p.name for p in info.phases)
        self._phase = ""
        self._phase_first: tuple[float, int] | None = None
        self._ended = False
        self._stop = False
        self._thread: CallThread | None = None  # the background step running now
        self._threads: list[CallThread] = []  # every one started (kept until the job is dropped)
        self._meta: DetectorMetadata | None = None
        self._report: dict[str, Any] | None = None
        self._validation_error: str | None = None
        self._events_tail: deque[str] = deque(maxlen=40)  # the engine's recent events, readable

    # ------------------------------------------------------------------ paths
    @property
    def staged_model(self) -> Path:
        return self.spec.run_dir / EXPORT_DIR / "model.onnx"

    @property
    def report_path(self) -> Path:
        return self.spec.run_dir / VALIDATION_DIR / "report.json"

    # ------------------------------------------------------------------ worker protocol
    def start(self) -> None:
        """Start (or resume) the job at training; returns at once."""
        if self.stage is not None:
            return
        self._t0 = time.monotonic()
        self.started_at = now_iso()
        self.spec.run_dir.mkdir(parents=True, exist_ok=True)
        write_record(self.spec, "training", command=shlex.join(self.command + self.train_args))
        self._set_stage("train")
        self.engine.start(self.train_args)

    def request_stop(self) -> None:
        """Stop for the window closing: SIGTERM, killed after :data:`CLOSE_GRACE_MS`."""
        self._request_stop(CLOSE_GRACE_MS)

    def cancel(self) -> None:
        """Stop gracefully: training ends after the current epoch with a checkpoint (Resume continues)."""
        self._request_stop(CANCEL_GRACE_MS)

    def stop_now(self) -> None:
        """End the engine at once (a training resumes from its last checkpoint)."""
        self._stop = True
        self.engine.kill()

    def _request_stop(self, grace_ms: int) -> None:
        self._stop = True
        if self.engine.is_running():
            self.engine.terminate(grace_ms if self.stage == "train" else STEP_GRACE_MS)
        elif self._thread is None and not self._ended:
            self._finish_stopped(trained=self.stage not in (None, "train"))

    def isFinished(self) -> bool:  # noqa: N802 (the QThread name WorkerSet uses)
        """Whether the job has ended."""
        return self._ended

    def wait(self, timeout_ms: int) -> bool:
        """Block until the engine process and any background step have ended (at most ``timeout_ms`` each)."""
        self.engine.wait(timeout_ms)
        for thread in self._threads:
            thread.wait(timeout_ms)
        return not self.engine.is_running() and all(t.isFinished() for t in self._threads)

    @property
    def stopping(self) -> bool:
        return self._stop

    @property
    def running(self) -> bool:
        return self.stage is not None and not self._ended

    # ------------------------------------------------------------------ engine events
    @Slot(list)
    def _on_events(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            kind = ev.get("event")
            line = _event_line(ev)
            if line:
                self._events_tail.append(line)
            if kind == "phase":
                self._phase = str(ev.get("phase", ""))
                self._phase_first = None
                index = self._phases.index(self._phase) + 1 if self._phase in self._phases else 0
                self.phase_changed.emit(self._phase, index, len(self._phases), ev)
                if ev.get("device") and ev["device"] != self.device:
                    self.device = str(ev["device"])
                    self.device_known.emit(self.device)
            elif kind == "progress":
                step, total = int(ev.get("step") or 0), int(ev.get("total") or 0)
                self.progress.emit(step, total, self._eta(step, total, ev.get("eta_s")))
                if ev.get("epoch_end"):
                    self.epoch_ended.emit(ev)
            elif kind == "message":
                self.log.emit(str(ev.get("level", "info")), str(ev.get("text", "")))
            elif kind == "error":
                self.log.emit("error", str(ev.get("message", "")))

    def _eta(self, step: int, total: int, engine_eta: Any) -> float:
        """Seconds left in the phase, from the rate seen in this process (a resumed run starts mid-phase)."""
        now = time.monotonic()
        if self._phase_first is None or step < self._phase_first[1]:
            self._phase_first = (now, step)
        t_first, s_first = self._phase_first
        if step > s_first and now > t_first:
            return (total - step) * (now - t_first) / (step - s_first)
        return float(engine_eta) if isinstance(engine_eta, (int, float)) else math.nan

    @Slot(object)
    def _on_engine_finished(self, outcome: ProcessOutcome) -> None:
        if self._ended:
            return
        stage = self.stage
        if outcome.status == "done" and not self._stop:
            if stage == "train":
                self._export()
            elif stage == "export":
                self._verify()
            elif stage == "validate":
                self._read_report()
            return
        if outcome.status in ("stopped", "done") or self._stop:
            # a step that completed as the stop arrived counts as done: Resume goes on from there
            self._finish_stopped(trained=stage != "train" or outcome.status == "done")
            return
        if stage == "validate":  # keep the trained detector; record why it is not validated
            self._validation_error = outcome.message
            self.log.emit("warning", f"validation failed: {outcome.message}; the detector is added without metrics")
            self._register()
            return
        crashed = outcome.status == "crashed"
        title = {"train": "Training failed", "export": "Export failed"}.get(stage or "", "Engine failed")
        if crashed:
            title = "The engine process died"
        resumable = crashed or stage == "export"
        message = outcome.message
        if stage == "train" and not crashed:
            message += "\n\nNothing was added to the model library. Fix the data (see the log) and start again."
        else:
            message += ("\n\nNothing was added to the model library. Resume continues from the last checkpoint."
                        if resumable else "\n\nNothing was added to the model library.")
        write_record(self.spec, "interrupted" if resumable else "failed", error=outcome.message)
        self._fail(JobFailure(title, message, self.log_tail(outcome.stderr_tail), resumable))

    def log_tail(self, stderr_tail: str = "") -> str:
        """The engine's last events (readable) and the last lines it wrote on stderr."""
        parts = []
        if self._events_tail:
            parts.append("\n".join(self._events_tail))
        if stderr_tail.strip():
            parts.append("stderr:\n" + stderr_tail.strip())
        return "\n\n".join(parts)

    # ------------------------------------------------------------------ stages
    def _set_stage(self, stage: Stage) -> None:
        self.stage = stage
        self.stage_changed.emit(stage)
        self.log.emit("info", STAGE_TEXT[stage] + "…")

    def _export(self) -> None:
        write_record(self.spec, "trained")
        if self.staged_model.is_file():  # a finished export from an earlier attempt: complete (atomic)
            self.log.emit("info", f"using the export from an earlier attempt ({self.staged_model})")
            self._verify()
            return
        self.staged_model.parent.mkdir(parents=True, exist_ok=True)
        self._set_stage("export")
        self.engine.start(["export", str(self.spec.run_dir), "--out", str(self.staged_model), "--name", self.spec.name])

    def _verify(self) -> None:
        self._set_stage("verify")
        method, path = self.spec.method, self.staged_model

        def check() -> DetectorMetadata:
            meta = read_metadata(path)
            if meta.method != method:
                raise DetectorError(path, f"the exported detector is a {meta.method} detector, expected {method}")
            if meta.calibration.n_normals < 1:
                raise DetectorError(path, "the exported detector has no calibration")
            return meta

        self._run_thread(check, self._on_verified, "Verification failed")

    @Slot(object)
    def _on_verified(self, meta: DetectorMetadata) -> None:
        self._meta = meta
        self.log.emit("info", f"detector {meta.model_id[:8]}: calibrated on {meta.calibration.n_normals} held-out normals")
        if self._stop:
            self._finish_stopped(trained=True)
        elif self.validation is not None:
            self._validate()
        else:
            self._register()

    def _validate(self) -> None:
        assert self.validation is not None and self.spec.validation is not None
        self._set_stage("validate")
        folder = self.report_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        labels = self.validation.csv_path or self.validation.write_csv(folder / "labels.csv")
        self.engine.start(["eval", "--model", str(self.staged_model), "--labels", str(labels),
                           "--out", str(self.report_path), "--provider", self.provider])

    def _read_report(self) -> None:
        try:
            self._report = json.loads(self.report_path.read_text(encoding="utf-8"))
            a = self._report["auroc"]
            self.log.emit("info", f"validation: AUROC {a['value']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}] "
                                  f"on {self._report['n']} images")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._validation_error = f"the evaluation report cannot be read ({exc})"
            self.log.emit("warning", self._validation_error)
        self._register()

    def _register(self) -> None:
        self._set_stage("register")
        extra = self._card_extra()
        attachments: dict[str, Path] = {}
        if self._report is not None:
            attachments[VALIDATION_FILE] = self.report_path
            if self.report_path.with_suffix(".png").is_file():
                attachments[ROC_FILE] = self.report_path.with_suffix(".png")
        library, staged, name = self.library, self.staged_model, self.spec.name
        self._run_thread(lambda: library.register(staged, extra, attachments, name), self._on_registered,
                         "Adding to the model library failed")

    @Slot(object)
    def _on_registered(self, entry: LibraryEntry) -> None:
        write_record(self.spec, "registered", model_id=entry.model_id)
        shutil.rmtree(self.staged_model.parent, ignore_errors=True)  # emptied by the move
        self.log.emit("info", f"added to the model library as “{entry.name}”")
        self._ended = True
        self.succeeded.emit(entry)
        self.finished.emit()

    def _card_extra(self) -> dict[str, Any]:
        meta = self._meta
        training = meta.training if meta is not None else {}
        info = self.info
        extra: dict[str, Any] = {
            "source": "trained in the app",
            "training_job": {
                "method": self.spec.method,
                "method_title": info.title,
                "preset": self.spec.preset,
                **self._preset_card(),
                "settings": {k: v for k, v in self.spec.values.items() if v is not None},
                "folders": {k: str(v) if v else None for k, v in (("normal", self.spec.normal),
                            ("unlabeled", self.spec.unlabeled), ("abnormal", self.spec.abnormal))},
                "counts": self.spec.counts,
                "images_used": {k: training.get(k) for k in ("normal_train", "normal_calibration", "unlabeled", "skipped")},
                "command": shlex.join(self.command + self.train_args),
                "started": self.started_at,
                "finished": now_iso(),
                "wall_seconds_this_session": round(time.monotonic() - self._t0, 1),
                "train_seconds": training.get("train_seconds"),
                "device": self.device or (training.get("environment") or {}).get("cuda_device") or "cpu",
                "engine_version": (meta.software.get("cxrscreen") if meta is not None else None),
                "environment": training.get("environment", {}),
                "run_dir": str(self.spec.run_dir),
            },
        }
        if self.spec.validation is not None:
            v: dict[str, Any] = {"source": str(self.spec.validation),
                                 "kind": self.validation.kind if self.validation is not None else None}
            if self._report is not None:
                r = self._report
                v.update({k: r.get(k) for k in ("n", "n_normal", "n_abnormal", "auroc", "ap", "operating_points",
                                                "sensitivity_at_specificity", "bootstrap")})
                v["report"] = VALIDATION_FILE
                v["roc_image"] = ROC_FILE
            else:
                v["error"] = self._validation_error or "not run"
            extra["validation"] = v
        return extra

    def _preset_card(self) -> dict[str, Any]:
        """The preset as the engine describes it: whether it is the paper's, and how it deviates."""
        name = self.spec.base_preset or self.spec.preset
        preset = next((p for p in self.info.presets if p.name == name), None)
        if preset is None:
            return {}
        changed = self.spec.preset != preset.name  # "custom": the user changed trained settings
        return {"preset_title": preset.title, "as_published": preset.as_published and not changed,
                "deviations": list(preset.deviations) + (["settings changed from the preset"] if changed else [])}

    # ------------------------------------------------------------------ helpers
    def _run_thread(self, fn: Callable[[], Any], on_result: Callable[[Any], None], title: str) -> None:
        thread = CallThread(fn, self)

        def done(result: Any) -> None:
            self._thread = None
            on_result(result)

        def raised(message: str) -> None:
            self._thread = None
            write_record(self.spec, "trained", error=message)
            self._fail(JobFailure(title, f"{message}\n\nNothing was added to the model library; Resume tries again.",
                                  "", True))

        thread.returned.connect(done)
        thread.raised.connect(raised)
        self._thread = thread
        self._threads.append(thread)
        thread.start()

    def _finish_stopped(self, trained: bool) -> None:
        if self._ended:
            return
        write_record(self.spec, "trained" if trained else "stopped")
        self._ended = True
        text = ("Stopped after training; Resume exports and registers the detector." if trained else
                "Training stopped with a checkpoint; Resume continues where it stopped.")
        self.log.emit("warning", text)
        self.stopped.emit(text)
        self.finished.emit()

    def _fail(self, failure: JobFailure) -> None:
        if self._ended:
            return
        self._ended = True
        self.log.emit("error", failure.message.splitlines()[0])
        self.failed.emit(failure)
        self.finished.emit()
