"""Atomic writes keep the old file on failure; progress lines are JSON with ETA."""
from __future__ import annotations

import io
import json

import pytest

from engine.atomic import atomic_path, atomic_write_text
from engine.progress import Progress


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left behind
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_atomic_write_refuses_to_overwrite_when_asked(tmp_path):
    target = tmp_path / "keep.csv"
    target.write_text("precious")
    with pytest.raises(FileExistsError):
        atomic_write_text(target, "other", overwrite=False)
    assert target.read_text() == "precious"


def test_json_progress_lines(tmp_path):
    out = io.StringIO()
    p = Progress("json", log_path=tmp_path / "log.jsonl", min_interval_s=0.0, stdout=out, stderr=io.StringIO())
    p.phase("train", 10, epochs=2)
    for step in range(1, 11):
        p.update(step, epoch=1 + step // 6, epochs=2, loss=1.0 / step)
    p.finish("done", run_dir="x")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "phase" and lines[0]["total"] == 10
    progress = [l for l in lines if l["event"] == "progress"]
    assert [l["step"] for l in progress] == list(range(1, 11))
    assert progress[-1]["eta_s"] == 0.0 and progress[-1]["loss"] == pytest.approx(0.1)
    assert lines[-1]["event"] == "done"
    assert (tmp_path / "log.jsonl").read_text().count("\n") == len(lines)


def test_progress_is_rate_limited_but_keeps_the_last_step():
    out = io.StringIO()
    p = Progress("json", min_interval_s=3600, stdout=out, stderr=io.StringIO())
    p.phase("load", 100)
    for step in range(1, 101):
        p.update(step)
    steps = [json.loads(l)["step"] for l in out.getvalue().splitlines() if '"progress"' in l]
    assert steps == [1, 100]


def test_bar_mode_writes_to_stderr_only():
    out, err = io.StringIO(), io.StringIO()
    p = Progress("bar", min_interval_s=0.0, stdout=out, stderr=err)
    p.phase("train", 4)
    p.update(2, epoch=1, epochs=2, loss=0.5)
    p.finish("done")
    assert out.getvalue() == ""
    assert "50.0%" in err.getvalue() and "epoch 1/2" in err.getvalue()
