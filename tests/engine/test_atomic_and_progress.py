"""Atomic writes keep the old file on failure and honour the umask (0600 only when private); progress lines are JSON with ETA."""
from __future__ import annotations

import io
import json
import os
import stat

import pytest

from cxrscreen.engine.atomic import atomic_path, atomic_write_text
from cxrscreen.engine.progress import Progress


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


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    """Run the test under a umask (restored afterwards)."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_atomic_files_honour_the_umask_unless_private(tmp_path, umask):
    atomic_write_text(tmp_path / "report.json", "{}")
    assert _mode(tmp_path / "report.json") == 0o666 & ~umask  # 0644 under 022, 0600 under 077
    atomic_write_text(tmp_path / "keys.txt", "secret", private=True)
    assert _mode(tmp_path / "keys.txt") == 0o600  # whatever the umask
    (tmp_path / "old.csv").write_text("old")
    os.chmod(tmp_path / "old.csv", 0o600)
    atomic_write_text(tmp_path / "old.csv", "new")  # a replaced file gets the umask's mode too
    assert _mode(tmp_path / "old.csv") == 0o666 & ~umask


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_command_outputs_honour_the_umask(tiny_detector, tmp_path, umask, capsys):
    """Score and index tables, an eval report with its CSV and figure: 0666 & ~umask; an index
    with identifiers: 0600."""
    from cxrscreen.engine.cli import main
    from cxrscreen.engine.synth import write_study

    write_study(tmp_path / "s", 2, 1, size=96, formats=("png",), seed=0)
    assert main(["score", str(tmp_path / "s"), "--model", str(tiny_detector), "--out", str(tmp_path / "r.csv")]) == 0
    assert main(["index", str(tmp_path / "s"), "--format", "csv", "--out", str(tmp_path / "i.csv")]) == 0
    assert main(["index", str(tmp_path / "s"), "--identifiers", "--out", str(tmp_path / "ids.jsonl")]) == 0
    assert main(["eval", "--model", str(tiny_detector), "--labels", str(tmp_path / "s" / "labels.csv"),
                 "--out", str(tmp_path / "e.json"), "--bootstrap", "10"]) == 0
    capsys.readouterr()
    for name in ("r.csv", "i.csv", "e.json", "e.scores.csv", "e.png"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name
    assert _mode(tmp_path / "ids.jsonl") == 0o600
