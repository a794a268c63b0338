"""`cxrscreen recalibrate` and `score --calibration`: a site operating point from confirmed normals, the detector file unchanged."""
from __future__ import annotations

import csv
import hashlib
import json

import pytest

from cxrscreen.engine.cli import main as cli
from cxrscreen.engine.detector import read_metadata
from cxrscreen.engine.site_calibration import SiteCalibrationError, read_file
from cxrscreen.engine.synth import write_study


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_recalibrate_writes_a_site_calibration_and_leaves_the_detector_alone(tiny_detector, tmp_path, capsys):
    write_study(tmp_path / "normals", 24, 0, size=64, formats=("png",), seed=5)
    before = _sha(tiny_detector)
    out = tmp_path / "site.json"
    assert cli(["recalibrate", str(tiny_detector), "--normals", str(tmp_path / "normals"), "--name", "  Site  B ",
                "--out", str(out)]) == 0
    assert _sha(tiny_detector) == before  # the detector file is never rewritten
    meta = read_metadata(tiny_detector)
    cal = read_file(out, meta.model_id)
    assert cal.name == "Site B" and cal.n_normals == 24  # 24 >= 20: enough for 95 %
    assert cal.heatmap_quantiles == meta.calibration.heatmap_quantiles  # heatmap colours mean the same
    err = capsys.readouterr().err
    assert "24 confirmed normals scored" in err and "warning: 95 %" not in err
    # the same name again without --overwrite is refused; a file of another detector is refused by score
    assert cli(["recalibrate", str(tiny_detector), "--normals", str(tmp_path / "normals"), "--name", "Site B",
                "--out", str(out)]) == 1
    d = json.loads(out.read_text())
    d["model_id"] = "0" * 32
    (tmp_path / "other.json").write_text(json.dumps(d))
    with pytest.raises(SiteCalibrationError, match="belongs to detector 0000"):
        read_file(tmp_path / "other.json", meta.model_id)
    assert cli(["score", str(tmp_path / "normals"), "--model", str(tiny_detector), "--calibration",
                str(tmp_path / "other.json"), "--out", str(tmp_path / "r.csv")]) == 1
    assert "--calibration" in capsys.readouterr().err


def test_score_with_a_site_calibration_names_it_on_every_row(tiny_detector, tmp_path, capsys):
    write_study(tmp_path / "normals", 10, 0, size=64, formats=("png",), seed=6)
    site = tmp_path / "site.json"
    assert cli(["recalibrate", str(tiny_detector), "--normals", str(tmp_path / "normals"), "--name", "few",
                "--out", str(site)]) == 0
    assert "warning: 95 % specificity rests on too few normals: it needs at least 20, the site calibration “few” has 10" \
        in capsys.readouterr().err  # issue 14's honest-calibration rule holds for site calibrations too
    out = tmp_path / "r.csv"
    assert cli(["score", str(tmp_path / "normals"), "--model", str(tiny_detector), "--calibration", str(site),
                "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert {r["calibration"] for r in rows} == {"site calibration “few” (10 confirmed normals)"}
    # thresholded on the site's own 10 normals: the largest of them, so none of them is flagged
    assert not any(int(r["flagged"]) for r in rows)
    err = capsys.readouterr().err
    assert "drift check: " in err
    own = tmp_path / "own.csv"
    assert cli(["score", str(tmp_path / "normals"), "--model", str(tiny_detector), "--out", str(own)]) == 0
    assert {r["calibration"] for r in csv.DictReader(open(own))} == {"detector calibration (50 held-out normals)"}


def test_score_reports_drift_in_the_json_stream(tiny_detector, tmp_path, capsys):
    write_study(tmp_path / "s", 12, 0, size=64, formats=("png",), seed=7)
    assert cli(["score", str(tmp_path / "s"), "--model", str(tiny_detector), "--format", "jsonl", "--out", "-"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["calibration"] == "detector calibration (50 held-out normals)" and lines[0]["calibration_name"] == ""
    drift = lines[-2]
    assert drift["event"] == "drift" and drift["n"] == 12 and drift["tested"] is True
    assert isinstance(drift["p_value"], float) and drift["message"]
    # the banner's state travels with it: ⚠ only with a shift found and a short estimate
    assert drift["warning"] == (drift["drift"] and drift["unreliable"]) and isinstance(drift["caution"], bool)
    assert not (drift["warning"] and drift["caution"])
    assert lines[-1]["event"] == "done"


def test_recalibrate_bad_input(tiny_detector, tmp_path, capsys):
    assert cli(["recalibrate", str(tiny_detector), "--name", "x"]) == 1  # no normals given
    assert cli(["recalibrate", str(tiny_detector), "--normals", str(tmp_path / "missing"), "--name", "x"]) == 1
    (tmp_path / "empty").mkdir()
    assert cli(["recalibrate", str(tiny_detector), "--normals", str(tmp_path / "empty"), "--name", " ",
                "--out", str(tmp_path / "c.json")]) == 1
    assert cli(["recalibrate", str(tiny_detector), "--normals", str(tmp_path / "empty"), "--name", "x",
                "--out", str(tmp_path / "c.json")]) == 1  # nothing to calibrate on
    assert not (tmp_path / "c.json").exists()
    err = capsys.readouterr().err
    assert "--normals DIR" in err and "needs a name" in err and "nothing to calibrate on" in err
