"""engine.acquisition: a batch acquired or processed unlike the detector's training normals is caught
from its images, where the score test (engine.drift) can be blind; a batch like them is not."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrscreen.engine.acquisition import (BANDS, MIN_IMAGES, TOLERANCE, AcquisitionReference, AcquisitionReport,
                                          check_acquisition, descriptor, mann_whitney_delong)
from cxrscreen.engine.detector import NormalCalibration
from cxrscreen.engine.drift import DriftReport, check_drift
from cxrscreen.engine.synth.chest import generate_chest


def _chests(seeds: range, size: int = 128) -> list[np.ndarray]:
    return [generate_chest(s, size).pixels for s in seeds]


def _box_blur(p: np.ndarray, r: int = 2) -> np.ndarray:
    k = 2 * r + 1
    q = np.pad(p, r, mode="edge")
    c = np.cumsum(np.cumsum(np.pad(q, ((1, 0), (1, 0))), 0), 1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def _sharpened(p: np.ndarray, amount: float = 1.5) -> np.ndarray:
    """Stronger edge enhancement (unsharp masking), as another system's processing."""
    return np.clip(p + amount * (p - _box_blur(p)), 0.0, 1.0)


def _like_and_sharpened(root: Path, seeds: range) -> dict[str, Path]:
    """Two folders of the same synthetic chests as 8-bit PNGs: "like" as generated, "sharp" sharpened."""
    folders = {}
    for name, make in (("like", lambda p: p), ("sharp", _sharpened)):
        folders[name] = root / name
        folders[name].mkdir()
        for i, p in enumerate(_chests(seeds)):
            Image.fromarray(np.round(255 * make(p)).astype(np.uint8)).save(folders[name] / f"{i:02d}.png")
    return folders


@pytest.fixture(scope="module")
def reference() -> AcquisitionReference:
    return AcquisitionReference.from_descriptors(np.stack([descriptor(p) for p in _chests(range(60))]))


def test_descriptor_is_four_shares_and_sharpening_moves_them_to_fine_detail():
    p = generate_chest(3, 128).pixels
    d, s = descriptor(p), descriptor(_sharpened(p))
    assert d.shape == (len(BANDS),) and d.sum() == pytest.approx(1.0) and np.all(d > 0)
    assert s[0] > d[0] and s[-1] < d[-1]  # the finest band gains, the coarsest loses
    flat = descriptor(np.full((64, 64), 0.5))
    assert np.all(np.isfinite(flat)) and flat.sum() == pytest.approx(1.0)  # a blank image: shares, not NaN


def test_mann_whitney_and_delong_against_the_direct_pair_count():
    rng = np.random.default_rng(1)
    b, r = rng.normal(0.3, 1, 15), np.sort(rng.normal(0, 1, 40))
    a, se = mann_whitney_delong(b, r)
    direct = np.mean([(x > y) + 0.5 * (x == y) for x in b for y in r])
    assert a == pytest.approx(direct)
    v10 = np.array([np.mean((x > r) + 0.5 * (x == r)) for x in b])
    v01 = np.array([np.mean((b > y) + 0.5 * (b == y)) for y in r])
    assert se == pytest.approx(np.sqrt(v10.var(ddof=1) / 15 + v01.var(ddof=1) / 40))


def test_a_batch_like_the_reference_passes_and_a_sharpened_one_differs(reference):
    like = np.stack([descriptor(p) for p in _chests(range(100, 140))])
    r = check_acquisition(like, reference)
    assert r.tested and not r.differs and r.message == ""
    assert all(abs(a - 0.5) < TOLERANCE for a in r.auc)
    sharp = np.stack([descriptor(_sharpened(p)) for p in _chests(range(100, 140))])
    s = check_acquisition(sharp, reference)
    assert s.tested and s.differs and s.p_value < 0.05 and s.against == "the detector's training normals"
    assert s.auc[0] > 0.9  # finest detail stronger than in (nearly) every reference normal
    assert "its finest detail is stronger" in s.message and "unverified" in s.message


def test_too_few_images_are_not_tested_and_bad_input_is_refused(reference):
    few = np.stack([descriptor(p) for p in _chests(range(200, 200 + MIN_IMAGES - 1))])
    r = check_acquisition(few, reference)
    assert not r.tested and not r.differs and r.p_value == 1.0
    assert not check_acquisition(np.zeros((0, 4)), reference).tested
    with pytest.raises(ValueError, match="finite"):
        check_acquisition(np.full((10, 4), np.nan), reference)
    with pytest.raises(ValueError, match="tolerance"):
        check_acquisition(few, reference, tolerance=0.5)


def test_level_at_the_tolerance_and_power_beyond_it():
    """Batches whose first band sits exactly at the tolerance (true AUC 0.62 against the reference:
    a normal shift of √2 Φ⁻¹(0.62)) are called different in at most alpha of draws (plus slack);
    batches at AUC 0.85 in nearly all."""
    from statistics import NormalDist

    rng = np.random.default_rng(0)

    def alarms(auc: float, n: int = 60, reps: int = 200) -> float:
        shift = np.sqrt(2) * NormalDist().inv_cdf(auc)
        hits = 0
        for _ in range(reps):
            ref = AcquisitionReference.from_descriptors(rng.normal(0, 1, (200, 4)))
            batch = rng.normal(0, 1, (n, 4))
            batch[:, 0] += shift
            hits += check_acquisition(batch, ref).differs
        return hits / reps

    assert alarms(0.5 + TOLERANCE) <= 0.05 + 0.04  # P(> 18 of 200 | 5 %) < 0.05
    assert alarms(0.85) >= 0.9


def test_reference_round_trip_and_unknown_features_are_ignored(reference):
    again = AcquisitionReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert again.n == reference.n == 60
    np.testing.assert_allclose(again.values, reference.values, atol=1e-6)
    assert AcquisitionReference.stored_in({"model": None}) is None  # a detector made before the check
    assert AcquisitionReference.stored_in({"acquisition": {**reference.to_dict(), "feature": "v9"}}) is None
    with pytest.raises(ValueError, match="sorted"):
        AcquisitionReference(((0.2, 0.1),) * 4)


def test_drift_report_warns_on_acquisition_alone_and_round_trips(reference):
    rng = np.random.default_rng(0)
    cal = NormalCalibration(tuple(np.sort(rng.normal(0, 1, 120)).tolist()), (0.0, 1.0), (0.0, 1.0))
    scores = rng.normal(0, 1, 40)  # scores exactly like the calibration normals: the score test sees nothing
    sharp = np.stack([descriptor(_sharpened(p)) for p in _chests(range(100, 140))])
    r = check_drift(scores, cal, acquisition=check_acquisition(sharp, reference))
    assert not r.drift and not r.unreliable
    assert r.acquisition_differs and r.warning and not r.caution
    assert r.message.startswith("This folder's images were acquired or processed unlike")
    assert "recalibrate. Scores: No drift detected: this folder's 40 scores" in r.message
    assert r.message.count("Confirm some normals") == 1  # the scores' own advice is not repeated
    d = json.loads(json.dumps(r.to_dict()))
    assert d["acquisition"]["differs"] and d["warning"] and d["acquisition_differs"]
    assert DriftReport.from_dict(d) == r
    old = {k: v for k, v in d.items() if k != "acquisition"}  # a record made before the check
    assert DriftReport.from_dict(old).acquisition is None
    plain = check_drift(scores, cal)
    assert not plain.warning and "acquired" not in plain.message
    assert AcquisitionReport.from_dict(d["acquisition"]) == r.acquisition


def _with_reference(detector: Path, reference: AcquisitionReference, out: Path) -> Path:
    """A copy of a test detector whose metadata stores ``reference`` (as training does)."""
    import dataclasses
    import uuid

    import onnx

    from cxrscreen.engine.detector import METADATA_KEY, read_metadata

    meta = dataclasses.replace(read_metadata(detector), model_id=uuid.uuid4().hex,  # another detector
                               scope={"model": None, "note": "test", "acquisition": reference.to_dict()})
    model = onnx.load(str(detector))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, str(out))
    return out


def test_score_reports_the_acquisition_check_of_a_sharpened_folder(tiny_detector, reference, tmp_path):
    """`cxrscreen score` (jsonl): the drift event carries the acquisition check; the sharpened folder
    warns, the folder like the reference does not; iter_scores gives every result its descriptor."""
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.scoring import iter_scores

    model = _with_reference(tiny_detector, reference, tmp_path / "with_reference.onnx")
    folders = _like_and_sharpened(tmp_path, range(300, 324))
    det = Detector(model, provider="cpu")
    results = [r for b in iter_scores(sorted(folders["sharp"].glob("*.png")), det, check_scope=False) for r in b]
    assert all(r.acquisition is not None and len(r.acquisition) == 4 for r in results)
    assert not any(r.acquisition for b in iter_scores(sorted(folders["like"].glob("*.png"))[:2],
                                                      Detector(tiny_detector, provider="cpu")) for r in b)
    drift = {}
    for name, folder in folders.items():
        out = subprocess.run([sys.executable, "-m", "cxrscreen.engine", "score", str(folder), "--model", str(model),
                              "--format", "jsonl", "--out", "-"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        events = [json.loads(line) for line in out.stdout.splitlines()]
        drift[name] = next(e for e in events if e["event"] == "drift")
        assert drift[name]["acquisition"]["n"] == 24
        assert f"drift check: {drift[name]['message']}" in out.stderr
    assert not drift["like"]["acquisition"]["differs"]
    assert drift["sharp"]["acquisition"]["differs"] and drift["sharp"]["warning"]


def test_training_stores_its_known_normals_descriptors(tmp_path):
    """scope_metadata (what train, export and ensemble store): the reference from the training and
    calibration normals, unreadable files skipped; fewer than MIN_IMAGES readable: none."""
    from cxrscreen.engine.datasets import TrainingData
    from cxrscreen.engine.synth.study import write_study
    from cxrscreen.engine.train import scope_metadata

    images = [im.path for im in write_study(tmp_path / "normals", 12, 0, size=96, formats=("png",), seed=2)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    data = TrainingData(images[:10] + [broken], images[10:], [])
    meta = scope_metadata(data)
    ref = AcquisitionReference.stored_in(meta)
    assert ref is not None and ref.n == 12
    want = np.sort(np.stack([descriptor(np.asarray(Image.open(p), dtype=np.float64) / 255.0) for p in images]), axis=0)
    np.testing.assert_allclose(np.array(ref.values).T, want, atol=2e-3)  # 8-bit PNG vs the reader's decoding
    few = scope_metadata(TrainingData(images[:5], images[5:7], []))
    assert "acquisition" not in few and AcquisitionReference.stored_in(few) is None


def test_training_warns_before_training_when_its_unlabeled_images_were_acquired_otherwise(tmp_path):
    """A dual-distribution method learns what tells its unlabeled images from its known normals: an
    unlabeled set processed otherwise (sharpened) is warned about before training starts and stored
    in the scope metadata; an unlabeled set acquired like the known normals is not."""
    from cxrscreen.engine.datasets import from_folders
    from cxrscreen.engine.methods import registry
    from cxrscreen.engine.progress import Progress
    from cxrscreen.engine.stop import StopRequest
    from cxrscreen.engine.train import run_training, scope_metadata

    folders = _like_and_sharpened(tmp_path, range(700, 724))
    normal = tmp_path / "normal"
    normal.mkdir()
    for i, p in enumerate(_chests(range(800, 840))):
        Image.fromarray(np.round(255 * p).astype(np.uint8)).save(normal / f"{i:02d}.png")
    like = scope_metadata(from_folders(normal, folders["like"]))["unlabeled_acquisition"]
    assert like["tested"] and not like["differs"] and like["message"] == "" and like["n"] == 24
    sharp = AcquisitionReport.from_dict(scope_metadata(from_folders(normal, folders["sharp"]))["unlabeled_acquisition"])
    assert sharp.subject == "unlabeled" and sharp.differs and sharp.against == "the known normals"
    assert sharp.auc[0] > 0.5 + TOLERANCE  # the finest detail is stronger in the sharpened set
    assert sharp.message.startswith("The unlabeled images were acquired or processed unlike the known normals: "
                                    "their finest detail is stronger than the known normals' in ")
    assert "take both sets from the same acquisition, or add confirmed normals of the new batch" in sharp.message
    # run_training says so before the first training step: stopped at once, the warning is in its log
    config = registry()["ddad"].config("tiny")
    config = type(config).from_dict({**config.to_dict(), "checkpoint_every_s": 0.0, "device": "cpu"})
    stop = StopRequest()
    stop.request()
    run = tmp_path / "run"
    log = tmp_path / "log.jsonl"
    outcome = run_training("ddad", config, from_folders(normal, folders["sharp"]), run, Progress("none", log_path=log),
                           stop=stop)
    assert outcome.status == "stopped"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    warnings = [e["text"] for e in events if e["event"] == "message" and e.get("level") == "warning"]
    assert warnings == [sharp.message]


def test_train_check_warns_before_train_is_pressed_when_the_unlabeled_images_differ(tmp_path, capsys, monkeypatch):
    """`train --check` (what the app's panel runs before Train is enabled) takes a first look at the
    two sets: a warning naming --unlabeled for a sharpened unlabeled folder (exit 0: it does not
    block), none for one acquired like the known normals. The answer is kept in the user's cache:
    the same files are not read again; a changed file is."""
    from cxrscreen.engine import train
    from cxrscreen.engine.cli import main as cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    reads = []
    real_read = train._read_features
    monkeypatch.setattr(train, "_read_features", lambda *a, **k: reads.append(1) or real_read(*a, **k))

    folders = _like_and_sharpened(tmp_path, range(900, 924))
    normal = tmp_path / "normal"
    normal.mkdir()
    for i, p in enumerate(_chests(range(1000, 1040))):
        Image.fromarray(np.round(255 * p).astype(np.uint8)).save(normal / f"{i:02d}.png")

    def check(unlabeled: Path) -> list[dict]:
        code = cli(["train", "--method", "ddad", "--preset", "tiny", "--normal", str(normal), "--unlabeled",
                    str(unlabeled), "--out", str(tmp_path / "run"), "--check", "--progress", "json"])
        event = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert code == 0 and event["ok"]
        return [p for p in event["problems"] if p["option"] == "--unlabeled"]

    assert check(folders["like"]) == [] and len(reads) == 1
    (warning,) = check(folders["sharp"])
    assert warning["level"] == "warning" and len(reads) == 2
    assert warning["message"].startswith("The unlabeled images were acquired or processed unlike the known normals: "
                                         "their finest detail is stronger")
    assert warning["message"].endswith("(A first look at 200 images of each set; training checks up to 600.)")
    assert not (tmp_path / "run").exists()  # a check writes no run folder
    assert check(folders["sharp"]) == [warning] and check(folders["like"]) == [] and len(reads) == 2  # kept
    assert len(list((tmp_path / "cache" / "cxrscreen" / "unlabeled-precheck").glob("*.json"))) == 2
    first = sorted(folders["like"].glob("*.png"))[0]
    Image.fromarray(np.round(255 * _sharpened(_chests(range(900, 901))[0])).astype(np.uint8)).save(first)
    assert check(folders["like"]) == [] and len(reads) == 3  # one file changed: read again


def test_scoring_shares_the_crop_and_resize_with_the_descriptor_and_changes_nothing(reference, tmp_path):
    """A detector whose preprocessing has the descriptor's geometry (field crop, stretch, 64 px): scoring
    crops and resizes once for both; its scores and descriptors equal the separate computations."""
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import preprocess, same_geometry
    from cxrscreen.engine.scoring import iter_scores
    from tests.conftest import build_local_contrast_detector

    from cxrscreen.engine.acquisition import DESCRIPTOR_SPEC

    plain = build_local_contrast_detector(tmp_path / "field64.onnx", size=64, crop="field")
    model = _with_reference(plain, reference, tmp_path / "field64_ref.onnx")
    det = Detector(model, provider="cpu")
    assert same_geometry(det.preprocess_spec, DESCRIPTOR_SPEC)
    files = []
    for i, p in enumerate(_chests(range(500, 510), size=200)):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(np.round(255 * p).astype(np.uint8)).save(files[-1])
    results = [r for b in iter_scores(files, det, check_scope=False) for r in b]
    for f, r in zip(files, results):
        pix = read_radiograph(f).pixels
        np.testing.assert_allclose(r.acquisition, descriptor(pix), rtol=0, atol=1e-12)
        want = det.run(preprocess(pix, det.preprocess_spec)[None, None]).scores[0]
        assert r.score == pytest.approx(float(want), rel=1e-6)


def test_a_site_calibration_carries_its_normals_descriptors(tiny_detector, tmp_path):
    """`cxrscreen recalibrate` stores the confirmed normals' descriptors, even for a detector that
    stores no reference; `score --calibration` then checks folders against the site's normals."""
    from cxrscreen.engine.detector import NormalCalibration
    from cxrscreen.engine.site_calibration import read_file, site_calibration, to_json

    folders = _like_and_sharpened(tmp_path, range(600, 620))
    site_file = tmp_path / "sharp_site.json"
    out = subprocess.run([sys.executable, "-m", "cxrscreen.engine", "recalibrate", str(tiny_detector), "--normals",
                          str(folders["sharp"]), "--name", "Sharp site", "--out", str(site_file)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    site = read_file(site_file)
    assert site.acquisition is not None and site.acquisition.n == 20
    drift = {}
    for name, folder in folders.items():
        out = subprocess.run([sys.executable, "-m", "cxrscreen.engine", "score", str(folder), "--model",
                              str(tiny_detector), "--calibration", str(site_file), "--format", "jsonl", "--out", "-"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        drift[name] = next(json.loads(line) for line in out.stdout.splitlines() if '"drift"' in line)
    assert drift["like"]["acquisition"]["differs"] and drift["like"]["acquisition"]["n_reference"] == 20
    assert drift["like"]["message"].startswith("This folder's images were acquired or processed unlike the "
                                               "confirmed normals of site calibration “Sharp site”")
    assert not drift["sharp"]["acquisition"]["differs"]
    # fewer than MIN_IMAGES descriptors, or none: no reference, and the file reads as before
    base = NormalCalibration((0.0, 1.0), (0.0, 1.0), (0.0, 1.0))
    few = site_calibration(np.arange(5.0), base, "few", descriptors=np.full((MIN_IMAGES - 1, 4), 0.25))
    assert few.acquisition is None and "acquisition" not in few.to_dict()
    again = json.loads(to_json(site, "m" * 32))["calibration"]
    assert NormalCalibration.from_dict(again) == site


def test_a_descriptor_read_back_from_json_is_four_finite_numbers_or_nothing():
    from cxrscreen.engine.acquisition import as_descriptor

    assert as_descriptor([0.1, 0.2, 0.3, 0.4]) == (0.1, 0.2, 0.3, 0.4)
    from cxrscreen.engine.acquisition import p_text

    assert p_text(0.0) == "p < 1e-12" and p_text(0.0017) == "p = 0.0017"
    for bad in (None, "0.1,0.2", [0.1, 0.2, 0.3], [0.1, 0.2, 0.3, float("nan")], [0.1, 0.2, "x", 0.4], {"a": 1}):
        assert as_descriptor(bad) is None
