"""The training progress view on Stop and Resume (app/training/progress_view.py)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from PySide6.QtCore import QObject, Signal

from cxrscreen.app.training.options import parse_methods_json
from cxrscreen.app.training.progress_view import TrainingProgressView
from tests.app.fake_engine import methods_json


class _Job(QObject):
    """Stands in for TrainingJob's two things the view uses: its epoch signal and its spec's run folder."""

    epoch_ended = Signal(dict)

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.spec = SimpleNamespace(run_dir=run_dir)


def _epoch(e: int) -> dict:
    return {"event": "progress", "phase": "train", "epoch": e, "epochs": 6, "epoch_end": True,
            "loss_a": 1.0 / e, "loss_b": 2.0 / e}


def test_stop_keeps_the_bar_where_training_got_to(qtbot) -> None:
    view = TrainingProgressView()
    qtbot.addWidget(view)
    view.on_phase("train", 1, 1, {"total": 200})
    view.on_progress(120, 200, 30.0)
    view.finish("Stopped", ok=False)
    assert view.bar.value() == 120 and view.bar.maximum() == 200  # not 0 %
    view.finish("Done", ok=True)
    assert view.bar.value() == view.bar.maximum()


def test_resume_plots_the_epochs_before_the_stop_from_the_log(qtbot, tmp_path) -> None:
    log = [_epoch(e) for e in (1, 2, 3)] + [{"event": "progress", "phase": "train", "step": 5}]
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(x) for x in log) + "\n{\"cut short", encoding="utf-8")
    view = TrainingProgressView()
    qtbot.addWidget(view)
    view.set_method(parse_methods_json(json.dumps(methods_json()), "test engine").method("dual"))  # loss_a, loss_b
    job = _Job(tmp_path)
    job.epoch_ended.connect(view.on_epoch)
    view.reset()  # what the panel does before a resumed job
    job.epoch_ended.emit(_epoch(4))
    xs, ys = view.points["loss_a"]
    assert xs == [1.0, 2.0, 3.0, 4.0] and ys[0] == 1.0
    job.epoch_ended.emit(_epoch(5))  # later epochs append, the history is read once
    assert view.points["loss_b"][0] == [1.0, 2.0, 3.0, 4.0, 5.0]
