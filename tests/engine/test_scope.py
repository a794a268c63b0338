"""The out-of-scope gate: header, image and one-class checks, and what `score` writes for a refusal."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cxrscreen.engine.io import read_radiograph
from cxrscreen.engine.io.types import Radiograph, RadiographMeta
from cxrscreen.engine.scope import ScopeGate, ScopeModel, fit_from_pixels, header_reason, image_reason, thumbnail_features
from cxrscreen.engine.synth.chest import generate_chest


def _meta(path: Path = Path("x.png"), **kw) -> RadiographMeta:
    return RadiographMeta(path=path, format=kw.pop("format", "png"), rows=256, columns=256, **kw)


def _chest(seed: int, size: int | tuple[int, int] = 256) -> np.ndarray:
    return generate_chest(seed, size, variation=1.0).pixels


def _save(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(path)
    return path


@pytest.mark.parametrize(("tags", "expected"), [
    ({"view_position": "LL"}, "lateral view (LL)"),
    ({"view_position": "RAO"}, "oblique view"),
    ({"body_part": "KNEE"}, "body part KNEE"),
    ({"modality": "CT"}, "modality CT"),
])
def test_header_refuses_laterals_other_body_parts_and_modalities(tags, expected) -> None:
    assert expected in header_reason(_meta(**tags))


def test_header_accepts_frontal_chest_and_absent_fields() -> None:
    assert header_reason(_meta(modality="DX", body_part="CHEST", view_position="PA")) is None
    assert header_reason(_meta(modality="cr", body_part="Chest", view_position="ap")) is None  # case does not matter
    assert header_reason(_meta()) is None  # a PNG has no header: the image checks decide


def test_synthetic_frontal_chests_pass_the_image_checks() -> None:
    for seed in range(12):
        assert image_reason(_chest(seed), _meta()) is None, seed


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: _chest(0, 40), "too small"),                 # a 40 px thumbnail
    (lambda: _chest(1, (200, 600)), "aspect ratio 3.0"),  # a panorama
    (lambda: np.full((300, 300), 0.4, np.float32), "blank image"),
    (lambda: 1.0 - _chest(2), "inverted polarity"),       # a negative
])
def test_image_checks_name_what_is_wrong(make, expected) -> None:
    assert expected in image_reason(make(), _meta())


def test_a_text_page_is_mostly_uniform(tmp_path) -> None:
    im = Image.new("L", (600, 800), 245)
    d = ImageDraw.Draw(im)
    for y in range(40, 760, 24):
        d.text((30, y), "findings: lungs clear, heart size normal, no effusion", fill=0)
    rg = read_radiograph(_save(tmp_path / "page.png", np.asarray(im)))
    assert "mostly uniform" in image_reason(rg.pixels, rg.meta)


def test_colour_content_is_refused_but_gray_stored_as_rgb_passes(tmp_path) -> None:
    gray = (_chest(3) * 255).astype(np.uint8)
    as_rgb = read_radiograph(_save(tmp_path / "gray_rgb.png", np.stack([gray] * 3, axis=-1)))
    assert image_reason(as_rgb.pixels, as_rgb.meta) is None  # Kermany's JPEGs are RGB with gray content
    colour = np.stack([gray, np.roll(gray, 40, axis=1), 255 - gray], axis=-1)  # strongly tinted
    rg = read_radiograph(_save(tmp_path / "photo.png", colour))
    assert "colour image" in image_reason(rg.pixels, rg.meta)


def test_one_class_model_keeps_held_out_chests_and_refuses_what_the_image_checks_miss() -> None:
    model = fit_from_pixels((_chest(s) for s in range(60)), (_chest(s) for s in range(100, 110)))
    gate = ScopeGate(model)
    # by construction the held-out normals lie within the threshold (a margin above the farthest)
    assert model.max_held_out < model.threshold
    unseen = [Radiograph(_chest(s), _meta()) for s in range(200, 210)]
    assert sum(gate.check(r) is not None for r in unseen) <= 1
    # smooth blobs: contrast, no uniform area, no polarity sign; only the model catches them
    rng = np.random.default_rng(0)
    blobs = np.asarray(Image.fromarray(rng.uniform(0, 1, (6, 6)).astype(np.float32)).resize((256, 256), Image.Resampling.BICUBIC))
    blobs = np.clip(blobs, 0, 1)
    if image_reason(blobs, _meta()) is None:
        assert "unlike the chest radiographs" in gate.check(Radiograph(blobs, _meta()))
    assert ScopeGate(None).check(Radiograph(_chest(5), _meta())) is None


def test_scope_model_round_trips_and_refuses_another_feature() -> None:
    model = fit_from_pixels((_chest(s) for s in range(10)), (_chest(s) for s in range(20, 23)))
    again = ScopeModel.from_dict(json.loads(json.dumps(model.to_dict())))
    x = thumbnail_features(_chest(42))
    assert again.distance(x) == pytest.approx(model.distance(x))
    with pytest.raises(ValueError, match="feature 'thumb8'"):
        ScopeModel.from_dict({**model.to_dict(), "feature": "thumb8"})


def test_score_reports_out_of_scope_without_score_or_flag(tmp_path, tiny_detector, capsys) -> None:
    from cxrscreen.engine.cli import main

    chest = _save(tmp_path / "chest.png", (_chest(7) * 255).astype(np.uint8))
    negative = _save(tmp_path / "negative.png", ((1 - _chest(8)) * 255).astype(np.uint8))
    rc = main(["score", str(chest), str(negative), "--model", str(tiny_detector), "--format", "jsonl", "--out", "-",
               "--threshold", "0"])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {Path(r["path"]).name: r for r in lines if r["event"] == "result"}
    assert by_name["chest.png"]["out_of_scope"] is None and by_name["chest.png"]["flagged"] is True
    refused = by_name["negative.png"]
    assert "inverted polarity" in refused["out_of_scope"]
    assert refused["score"] is None and refused["flagged"] is None and refused["error"] is None
    assert lines[-1]["out_of_scope"] == 1


def test_metadata_keeps_the_scope_model_and_old_detectors_read_without_it(tiny_detector) -> None:
    from cxrscreen.engine.detector import DetectorMetadata, read_metadata

    meta = read_metadata(tiny_detector)
    assert meta.scope == {}  # made without a gate model: header and image checks only
    assert "no model" in ScopeGate.from_metadata(meta.scope).description
    model = fit_from_pixels((_chest(s) for s in range(8)), (_chest(s) for s in range(30, 32)))
    with_scope = DetectorMetadata.from_json(replace(meta, scope={"model": model.to_dict()}).to_json())
    assert ScopeGate.from_metadata(with_scope.scope).model == model


def test_eval_leaves_out_of_scope_images_out_of_the_figures_and_lists_them(tmp_path, tiny_detector) -> None:
    from cxrscreen.engine.cli import main

    rows = ["path,label"]
    for i in range(6):
        _save(tmp_path / f"n{i}.png", (_chest(100 + i) * 255).astype(np.uint8))
        _save(tmp_path / f"a{i}.png", (_chest(200 + i) * 255).astype(np.uint8))
        rows += [f"n{i}.png,0", f"a{i}.png,1"]
    _save(tmp_path / "negative.png", ((1 - _chest(300)) * 255).astype(np.uint8))
    rows.append("negative.png,1")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "report.json"
    assert main(["eval", "--model", str(tiny_detector), "--labels", str(tmp_path / "labels.csv"), "--out", str(out),
                 "--bootstrap", "50", "--provider", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 12  # the negative is not among the scored
    assert [(Path(r["path"]).name, r["label"]) for r in report["out_of_scope"]] == [("negative.png", 1)]
    assert "inverted polarity" in report["out_of_scope"][0]["reason"]


def test_too_few_images_store_no_model_and_the_card_says_why() -> None:
    from cxrscreen.engine.datasets import TrainingData
    from cxrscreen.engine.train import scope_metadata

    # 14 training normals + 12 unlabeled, 2 held out: a threshold on 2 normals would mean nothing
    data = TrainingData([Path(f"n{i}.png") for i in range(14)], [Path("c0.png"), Path("c1.png")],
                        [Path(f"u{i}.png") for i in range(12)])
    meta = scope_metadata(data)
    assert meta["model"] is None and "26 training images (at least 50) and 2 held-out normals (at least 5)" in meta["note"]
    gate = ScopeGate.from_metadata(meta)
    assert gate.model is None and "too few images for one" in gate.description
