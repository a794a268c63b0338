"""Folder summaries, duplicates, findings and labelled validation data (no Qt)."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from cxrscreen.app.training.folders import (
    FolderSummary,
    ValidationSourceError,
    check_training_data,
    find_duplicates,
    read_validation,
    summarise_folder,
)


def _summary(n: int, folder: str = "/d", **kw) -> FolderSummary:
    paths = [Path(folder) / f"{i}.png" for i in range(n)]
    return FolderSummary(Path(folder), paths, sizes=[(1000, 1000)] * n, file_bytes=[100 + i for i in range(n)],
                         formats=Counter({"PNG": n}), **kw)


def _texts(findings) -> list[str]:
    return [f"{f.severity}: {f.text}" for f in findings]


def test_the_methods_role_minimums_are_errors() -> None:
    # a weakly supervised method: normals and confirmed abnormal images, no unlabeled folder
    f = check_training_data({"normal": _summary(150, "/n"), "abnormal": _summary(1, "/a")}, required=["normal", "abnormal"],
                            min_counts={"normal": 20, "abnormal": 2})
    assert _texts(f) == ["error: The confirmed-abnormal folder has 1 readable radiographs; this method needs at least 2."]
    # the method's minimum for normals replaces the "few normals" warning when it is not met
    f = check_training_data({"normal": _summary(10, "/n")}, required=["normal"], min_counts={"normal": 20})
    assert _texts(f) == ["error: The known-normal folder has 10 readable radiographs; this method needs at least 20 "
                         "(some are held out to calibrate the scores)."]
    # a declared minimum below the engine's 3 normals does not lower it
    f = check_training_data({"normal": _summary(2, "/n")}, required=["normal"], min_counts={"normal": 1})
    assert "needs at least 3" in _texts(f)[0]
    # a one-class method: no unlabeled folder asked for
    assert check_training_data({"normal": _summary(150, "/n")}, required=["normal"], min_counts={"normal": 5}) == []


def test_summary_counts_sizes_and_unreadable_files(mixed_folder: Path) -> None:
    s = summarise_folder(mixed_folder)
    assert s.count == 2 and len(s.unreadable) == 2  # the cut DICOM and the empty PNG; the .txt is not an image
    assert {p.name for p, _ in s.unreadable} == {"cut.dcm", "empty.png"}
    assert all(r == c == 128 for r, c in s.sizes) and "all 128 × 128 px" in s.describe()
    assert "2 unreadable" in s.describe()
    stopped = summarise_folder(mixed_folder, should_stop=lambda: True)
    assert stopped.stopped and stopped.count == 0


def test_findings_block_what_the_engine_refuses_and_warn_about_the_rest() -> None:
    # nothing given: both folders are asked for
    assert [f.severity for f in check_training_data({"normal": None, "unlabeled": None})] == ["error", "error"]
    # 2 normals: below the engine's minimum of 3
    f = check_training_data({"normal": _summary(2, "/n"), "unlabeled": _summary(60, "/u")})
    assert _texts(f)[0].startswith("error: The known-normal folder has 2 readable")
    # 50 normals, 10 unlabeled: warnings only
    f = check_training_data({"normal": _summary(50, "/n"), "unlabeled": _summary(10, "/u")})
    assert {x.severity for x in f} == {"warning"} and len(f) == 2
    # the same folder twice: an error
    f = check_training_data({"normal": _summary(120, "/same"), "unlabeled": _summary(120, "/same")})
    assert any(x.severity == "error" and "both in the known-normal and the unlabeled" in x.text for x in f)


def test_header_checks_lateral_views_other_body_parts_and_view_mix() -> None:
    normal = _summary(200, "/n", views=Counter({"PA": 190, "LL": 10}), body_parts=Counter({"CHEST": 195, "HAND": 5}),
                      modalities=Counter({"DX": 198, "CT": 2}))
    unlabeled = _summary(200, "/u", views=Counter({"AP": 150, "PA": 50}))
    texts = " | ".join(_texts(check_training_data({"normal": normal, "unlabeled": unlabeled})))
    assert "In the known-normal folder, 10 images are lateral views" in texts
    assert "Body Part Examined: HAND ×5" in texts and "2 images are not radiographs" in texts
    assert "Modality: CT ×2" in texts
    assert "Views differ between folders: 75 % AP in the unlabeled folder, 0 % in the known-normal" in texts
    tiny = _summary(150, "/t")
    tiny.sizes = [(64, 64)] * 150
    odd = _summary(150, "/o")
    odd.sizes = [(3000, 1000)] * 150
    texts = " | ".join(_texts(check_training_data({"normal": tiny, "unlabeled": odd})))
    assert "smaller than 128 px" in texts and "more than twice as long as wide" in texts


def test_duplicates_across_and_within_folders(tmp_path: Path, study: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    images = sorted(p for p in study.iterdir() if p.suffix in (".png", ".dcm"))
    for p in images[:3]:
        shutil.copy(p, a / p.name)
    shutil.copy(images[0], b / f"renamed{images[0].suffix}")  # the same image under another name, in the other folder
    shutil.copy(images[1], a / f"copy_of_1{images[1].suffix}")  # a copy inside the same folder
    shutil.copy(images[3], b / images[3].name)
    sa, sb = summarise_folder(a), summarise_folder(b)
    dups = find_duplicates({"normal": sa, "unlabeled": sb})
    assert [(x.name, y.name) for x, y in dups[("normal", "unlabeled")]] == [(images[0].name, f"renamed{images[0].suffix}")]
    assert len(dups[("normal", "normal")]) == 1
    texts = _texts(check_training_data({"normal": sa, "unlabeled": sb}, dups))
    assert any(t.startswith("warning: 1 image is identical in the known-normal and the unlabeled") for t in texts)
    assert any(t.startswith("note: In the known-normal folder, 1 image is an identical copy") for t in texts)


def test_validation_from_subfolders_csv_and_its_errors(training_folders: dict[str, Path], tmp_path: Path) -> None:
    v = read_validation(training_folders["validation"])
    assert v.kind == "folders" and (v.n_normal, v.n_abnormal) == (4, 4)
    out = v.write_csv(tmp_path / "labels.csv")
    assert out.read_text().splitlines()[0] == "path,label" and len(out.read_text().splitlines()) == 9
    # a CSV with relative paths and an unknown label (empty: skipped)
    csv = tmp_path / "v.csv"
    first = v.paths[0]
    csv.write_text(f"path,label\n{first},0\n{v.paths[-1]},1\n{v.paths[1]},\n")
    c = read_validation(csv)
    assert c.kind == "csv" and c.labels == (0, 1) and c.csv_path == csv
    bad = tmp_path / "bad.csv"
    bad.write_text(f"path,label\n{first},2\n")
    with pytest.raises(ValidationSourceError, match="label must be 0, 1 or empty"):
        read_validation(bad)
    plain = tmp_path / "plain"
    shutil.copytree(training_folders["validation"] / "normal", plain)
    (plain / "labels.csv").unlink()  # engine.synth writes one: without it, the folder has no labels
    with pytest.raises(ValidationSourceError, match="normal/ and abnormal/"):
        read_validation(plain)
    # validation images that are training images: an error
    s = summarise_folder(training_folders["validation"] / "normal")
    f = check_training_data({"normal": s, "unlabeled": _summary(100, "/u")}, validation=v)
    assert any(x.severity == "error" and x.text.startswith("4 validation images are also training images") for x in f)
