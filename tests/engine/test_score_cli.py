"""`cxrscreen score`: CSV and streamed JSON lines, explicit path lists, refusing to overwrite."""
from __future__ import annotations

import csv
import json

from cxrscreen.engine.cli import main as cli
from cxrscreen.engine.synth import write_study


def test_csv_rows_for_every_file(tiny_detector, tmp_path, capsys):
    write_study(tmp_path / "s", 3, 1, size=64, formats=("png", "dicom"), seed=0)
    (tmp_path / "s" / "bad.dcm").write_bytes(b"\x00" * 200)
    out = tmp_path / "r.csv"
    assert cli(["score", str(tmp_path / "s"), "--model", str(tiny_detector), "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 5 and sum(1 for r in rows if r["error"]) == 1
    assert "provider CPUExecutionProvider" in capsys.readouterr().err
    # never overwrite without being asked
    assert cli(["score", str(tmp_path / "s"), "--model", str(tiny_detector), "--out", str(out)]) == 1


def test_jsonl_stream_with_a_path_list(tiny_detector, tmp_path, capsys):
    images = [im.path for im in write_study(tmp_path / "s", 2, 1, size=64, formats=("png",), seed=1)]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p in images + [tmp_path / "missing.png"]) + "\n")
    code = cli(["score", "--paths-from", str(listing), "--model", str(tiny_detector), "--format", "jsonl",
                "--out", "-", "--threshold", "0"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["event"] == "start" and lines[0]["total"] == 4 and lines[0]["threshold"] == 0.0
    results = [l for l in lines if l["event"] == "result"]
    assert [r["path"] for r in results] == [str(p) for p in images + [tmp_path / "missing.png"]]
    assert all(r["flagged"] is True for r in results[:3])  # any local contrast is above 0
    assert results[3]["score"] is None and results[3]["error"]
    assert lines[-1] == {"event": "done", "scored": 3, "flagged": 3, "unreadable": 1, "out_of_scope": 0}


def test_stdout_needs_jsonl(tiny_detector, tmp_path):
    assert cli(["score", str(tmp_path), "--model", str(tiny_detector), "--out", "-"]) == 1


def test_engine_csvs_never_hold_a_formula(tiny_detector, tmp_path, monkeypatch, capsys):
    """score, index and eval tables: a cell a spreadsheet would run (a relative path "=…", a
    detector named "@…") starts with "'" instead (engine.csv_safe, shared with the app's export)."""
    import onnx

    from cxrscreen.engine.detector import METADATA_KEY

    model = onnx.load(str(tiny_detector))
    meta = json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps({**meta, "name": "@SUM(1+1)"})})
    onnx.save(model, str(tmp_path / "det.onnx"))
    images = write_study(tmp_path / "s", 2, 1, size=96, formats=("png",), seed=0)
    for i, im in enumerate(images):
        im.path.rename(tmp_path / f"=HYPERLINK(\"x{i}\").png")
    (tmp_path / "labels.csv").write_text("path,label\n" + "".join(f"\"=HYPERLINK(\"\"x{i}\"\").png\",{i % 2}\n"
                                                                  for i in range(3)))
    monkeypatch.chdir(tmp_path)
    names = [f"=HYPERLINK(\"x{i}\").png" for i in range(3)]
    assert cli(["score", *names, "--model", "det.onnx", "--out", "r.csv"]) == 0
    assert cli(["index", *names, "--format", "csv", "--out", "i.csv"]) == 0
    assert cli(["eval", "--model", "det.onnx", "--labels", "labels.csv", "--root", ".", "--out", "e.json",
                "--bootstrap", "10"]) == 0
    capsys.readouterr()
    for table in ("r.csv", "i.csv", "e.scores.csv"):
        rows = list(csv.reader(open(tmp_path / table, encoding="utf-8")))[1:]
        assert len(rows) == 3
        cells = [c for row in rows for c in row]
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@") and not _is_number(c)], table
        assert sum(c.startswith("'=HYPERLINK") for c in cells) >= 3, table
    assert {r["model_name"] for r in csv.DictReader(open(tmp_path / "r.csv", encoding="utf-8"))} == {"'@SUM(1+1)"}


def _is_number(text: str) -> bool:
    """A number is written as a number (a score of -0.5 is not a formula)."""
    try:
        float(text)
    except ValueError:
        return False
    return True
