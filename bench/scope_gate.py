"""The out-of-scope gate (engine/scope.py) on images that are not frontal chest radiographs and on
real ones.

Real chest radiographs (../shared/data): the one-class model is fitted exactly as a detector
trained on the dev protocol fits it: on its training images (the 540 training normals of the
600 known normals, split off with the engine's own ``split_calibration`` at fraction 0.1, and
the 500 unlabeled images at AR 0.6), with its threshold set on the 60 held-out calibration
normals. Its two settings (8 components, threshold 1.75 × the farthest held-out normal) were
chosen on the rest of ``unlabeled_pool`` and on generated images, never on dev_test. It is then applied to every image of ``dev_test`` (241
normal, 401 pneumonia; evaluation only) and to the 23 full-size originals of ``fullres``
(Kermany, NIH, TBX11K, COVID: another acquisition, adults among them).

Images that are not frontal chest radiographs are generated at run time into a temporary
folder and read back through the engine's reader (never committed): scikit-image's bundled
sample photographs and their gray versions, crops and flips; rendered text pages; blank and
near-blank images; noise; procedural radiographs of other body parts (hand, knee, skull,
pelvis) and of lateral chests; synthetic frontal chests (engine/synth) and Kermany
``unlabeled_pool`` radiographs with inverted polarity; and DICOM files whose header says
lateral view, another body part or another modality, with a frontal chest's pixels.

    python bench/scope_gate.py            # writes bench/results/scope/scope_gate.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
# beside the checkout (a worktree one level deeper also finds it)
DATA = next((d / "shared" / "data" for d in (REPO.parent, REPO.parent.parent) if (d / "shared" / "data").is_dir()),
            REPO.parent / "shared" / "data")
DEV_SPLIT = DATA / "kermany" / "splits" / "dev.json"
RESULTS = REPO / "bench" / "results" / "scope"


def _gray8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0, 1) * 255).round().astype(np.uint8)


def _save(folder: Path, category: str, i: int, arr: np.ndarray, suffix: str = ".png") -> Path:
    p = folder / category / f"{category}-{i:03d}{suffix}"
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(p)
    return p


def _photos(folder: Path, rng: np.random.Generator) -> list[Path]:
    """scikit-image's bundled photographs: as they are, gray, cropped and flipped."""
    import skimage.data as sd

    names = ["astronaut", "camera", "chelsea", "coffee", "coins", "moon", "page", "text", "rocket", "horse",
             "hubble_deep_field", "immunohistochemistry", "brick", "grass", "gravel", "retina", "cell",
             "microaneurysms", "shepp_logan_phantom", "logo", "clock", "colorwheel", "checkerboard", "motorcycle"]
    out: list[Path] = []
    i = 0
    for name in names:
        try:
            img = getattr(sd, name)() if name != "motorcycle" else sd.stereo_motorcycle()[0]
        except Exception:  # a sample that needs a download is skipped (no network at bench time)
            continue
        img = np.asarray(img, dtype=np.float64) if np.asarray(img).dtype == bool else np.asarray(img)
        if img.dtype != np.uint8:
            img = _gray8((img - img.min()) / max(float(img.max() - img.min()), 1e-9))
        if img.ndim == 3:
            img = img[..., :3]
        variants = [img, img[:, ::-1]]
        h, w = img.shape[:2]
        for _ in range(2):
            s = int(min(h, w) * rng.uniform(0.5, 0.9))
            t, l = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            variants.append(img[t:t + s, l:l + s])
        if img.ndim == 3:
            variants += [np.asarray(Image.fromarray(v).convert("L")) for v in list(variants)]
        for v in variants:
            out.append(_save(folder, "photograph", i, np.ascontiguousarray(v)))
            i += 1
    return out


def _text_pages(folder: Path, rng: np.random.Generator, n: int) -> list[Path]:
    words = ("patient report findings impression chest radiograph normal heart size lungs clear no effusion "
             "signed date referral history cough fever clinical information comparison technique").split()
    font = ImageFont.load_default()
    out = []
    for i in range(n):
        w, h = int(rng.integers(500, 900)), int(rng.integers(700, 1200))
        dark = i % 4 == 3  # some pages white on black (a screenshot of a dark viewer)
        im = Image.new("L", (w, h), 20 if dark else int(rng.integers(225, 256)))
        d = ImageDraw.Draw(im)
        y = int(rng.integers(20, 60))
        size = int(rng.integers(12, 28))
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:
            pass
        while y < h - 40:
            line = " ".join(rng.choice(words, size=int(rng.integers(3, 12))))
            d.text((int(rng.integers(20, 60)), y), line, fill=230 if dark else 0, font=font)
            y += int(size * rng.uniform(1.3, 2.2))
        out.append(_save(folder, "text_page", i, np.asarray(im)))
    return out


def _blank_and_noise(folder: Path, rng: np.random.Generator, n: int) -> list[Path]:
    out = []
    for i in range(n):
        side = int(rng.integers(128, 1024))
        v = rng.uniform(0, 1)
        blank = np.full((side, side), v) + rng.normal(0, 0.005, (side, side))
        if i % 3 == 1:  # a blank exposure with a gentle gradient (heel effect)
            blank += np.linspace(-0.05, 0.05, side)[None, :]
        out.append(_save(folder, "blank", i, _gray8(blank)))
        kind = i % 3
        if kind == 0:
            noise = rng.uniform(0, 1, (side, side))
        elif kind == 1:
            noise = rng.normal(0.5, 0.2, (side, side))
        else:  # smooth noise (blobs)
            small = rng.uniform(0, 1, (8, 8)).astype(np.float32)
            noise = np.asarray(Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC))
        out.append(_save(folder, "noise", i, _gray8(noise)))
    return out


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return ((u / rx) ** 2 + (v / ry) ** 2) <= 1.0


def _smooth(a: np.ndarray, k: int) -> np.ndarray:
    img = Image.fromarray(a.astype(np.float32))
    small = img.resize((max(4, a.shape[1] // k), max(4, a.shape[0] // k)), Image.Resampling.BILINEAR)
    return np.asarray(small.resize((a.shape[1], a.shape[0]), Image.Resampling.BILINEAR), dtype=np.float64)


def _body_part(kind: str, rng: np.random.Generator, side: int = 512) -> np.ndarray:
    """A crude procedural radiograph of another body part (bright bone, gray soft tissue, dark air)."""
    h = w = side
    img = np.full((h, w), 0.05)
    if kind == "hand":
        img[_ellipse(h, w, 0.75 * h, 0.5 * w, 0.2 * h, 0.22 * w)] = 0.35
        for j in range(5):
            ang = (j - 2) * 0.25 + rng.normal(0, 0.05)
            cx = 0.5 * w + (j - 2) * 0.09 * w
            img[_ellipse(h, w, 0.4 * h, cx, 0.25 * h, 0.035 * w, ang)] = 0.35
            for k in range(3):
                img[_ellipse(h, w, (0.25 + 0.1 * k) * h, cx + (0.25 - 0.1 * k) * h * np.sin(ang) * 0,
                             0.04 * h, 0.015 * w, ang)] = 0.8
    elif kind == "knee":
        img[:, int(0.25 * w):int(0.75 * w)] = 0.35
        img[_ellipse(h, w, 0.25 * h, 0.5 * w, 0.3 * h, 0.12 * w)] = 0.8
        img[_ellipse(h, w, 0.78 * h, 0.5 * w, 0.3 * h, 0.11 * w)] = 0.8
        img[_ellipse(h, w, 0.45 * h, 0.56 * w, 0.05 * h, 0.05 * w)] = 0.7
    elif kind == "skull":
        outer = _ellipse(h, w, 0.5 * h, 0.5 * w, 0.42 * h, 0.36 * w)
        inner = _ellipse(h, w, 0.5 * h, 0.5 * w, 0.38 * h, 0.32 * w)
        img[outer] = 0.85
        img[inner] = 0.45
        img[_ellipse(h, w, 0.62 * h, 0.35 * w, 0.05 * h, 0.06 * w)] = 0.3
        img[_ellipse(h, w, 0.62 * h, 0.65 * w, 0.05 * h, 0.06 * w)] = 0.3
    elif kind == "pelvis":
        img[int(0.1 * h):, :] = 0.35
        img[_ellipse(h, w, 0.4 * h, 0.3 * w, 0.22 * h, 0.16 * w, 0.3)] = 0.75
        img[_ellipse(h, w, 0.4 * h, 0.7 * w, 0.22 * h, 0.16 * w, -0.3)] = 0.75
        img[_ellipse(h, w, 0.45 * h, 0.3 * w, 0.12 * h, 0.08 * w)] = 0.4
        img[_ellipse(h, w, 0.45 * h, 0.7 * w, 0.12 * h, 0.08 * w)] = 0.4
        img[_ellipse(h, w, 0.8 * h, 0.2 * w, 0.08 * h, 0.08 * w)] = 0.8
        img[_ellipse(h, w, 0.8 * h, 0.8 * w, 0.08 * h, 0.08 * w)] = 0.8
    elif kind == "lateral_chest":
        img[_ellipse(h, w, 0.55 * h, 0.5 * w, 0.55 * h, 0.4 * w)] = 0.5
        img[_ellipse(h, w, 0.45 * h, 0.48 * w, 0.32 * h, 0.28 * w)] = 0.18  # one overlapping lung field
        img[_ellipse(h, w, 0.62 * h, 0.38 * w, 0.14 * h, 0.14 * w)] = 0.55  # heart, anterior
        img[int(0.1 * h):, int(0.72 * w):int(0.8 * w)] = 0.85  # spine, posterior
        img[int(0.78 * h):, :] = np.maximum(img[int(0.78 * h):, :], 0.6)  # diaphragm / abdomen
    else:
        raise ValueError(kind)
    img = _smooth(img, 6) + rng.normal(0, 0.02, (h, w))
    if rng.uniform() < 0.5:
        img = img[:, ::-1]
    return np.clip(img * rng.uniform(0.8, 1.1) + rng.uniform(-0.05, 0.05), 0, 1)


def _other_body_parts(folder: Path, rng: np.random.Generator, n_each: int) -> list[Path]:
    out = []
    for kind in ("hand", "knee", "skull", "pelvis", "lateral_chest"):
        cat = "lateral_image" if kind == "lateral_chest" else "other_body_part"
        for i in range(n_each):
            out.append(_save(folder, cat, len(out), _gray8(_body_part(kind, rng))))
    return out


def _inverted(folder: Path, rng: np.random.Generator, n_synth: int, real: list[Path]) -> list[Path]:
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.synth.chest import generate_chest

    out = []
    for i in range(n_synth):
        chest = generate_chest(int(rng.integers(0, 2**31)), 384, variation=1.0)
        out.append(_save(folder, "inverted", len(out), _gray8(1.0 - chest.pixels)))
    for p in real:
        out.append(_save(folder, "inverted", len(out), _gray8(1.0 - read_radiograph(p).pixels)))
    return out


def _dicom_headers(folder: Path, rng: np.random.Generator, n: int) -> list[Path]:
    from cxrscreen.engine.io.dicom_write import write_dicom
    from cxrscreen.engine.synth.chest import generate_chest

    variants = [("lateral_header", {"ViewPosition": "LL"}), ("lateral_header", {"ViewPosition": "RL"}),
                ("other_body_part_header", {"BodyPartExamined": "KNEE"}),
                ("other_body_part_header", {"BodyPartExamined": "HAND"}),
                ("other_modality_header", {"Modality": "CT"}), ("other_modality_header", {"Modality": "MG"})]
    out = []
    for i in range(n):
        cat, tags = variants[i % len(variants)]
        chest = generate_chest(int(rng.integers(0, 2**31)), 256, variation=1.0)
        p = folder / cat / f"{cat}-{i:03d}.dcm"
        p.parent.mkdir(parents=True, exist_ok=True)
        out.append(write_dicom(p, _gray8(chest.pixels), tags=tags))
    return out


def _small(folder: Path, rng: np.random.Generator, n: int) -> list[Path]:
    from cxrscreen.engine.synth.chest import generate_chest

    out = []
    for i in range(n):
        side = int(rng.integers(16, 60))
        out.append(_save(folder, "too_small", i, _gray8(generate_chest(int(rng.integers(0, 2**31)), side).pixels)))
        wide = generate_chest(int(rng.integers(0, 2**31)), (200, 600)).pixels
        out.append(_save(folder, "extreme_aspect", i, _gray8(wide)))
    return out


def _check_all(gate, paths: list[Path]) -> list[dict]:
    from cxrscreen.engine.io import RadiographReadError, read_radiograph

    rows = []
    for p in paths:
        try:
            rg = read_radiograph(p)
        except RadiographReadError as exc:
            rows.append({"path": p.name, "refused": True, "reason": f"unreadable: {exc.reason}"})
            continue
        reason = gate.check(rg)
        rows.append({"path": p.name, "refused": reason is not None, "reason": reason})
    return rows


def _summary(rows: list[dict]) -> dict:
    n = len(rows)
    k = sum(r["refused"] for r in rows)
    reasons = Counter((r["reason"] or "").split(" (")[0] for r in rows if r["refused"])
    return {"n": n, "refused": k, "refused_fraction": k / max(n, 1), "reasons": dict(reasons.most_common())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.parse_args()
    if not DEV_SPLIT.is_file():
        sys.exit(f"real data not found at {DATA}: this benchmark needs ../shared/data beside the checkout")
    from cxrscreen.engine.datasets import split_calibration
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.scope import ScopeGate, fit_from_pixels

    t0 = time.monotonic()
    rng = np.random.default_rng(0)
    split = json.loads(DEV_SPLIT.read_text())
    root = DEV_SPLIT.parent.parent
    known = [root / p for p in split["train"]["known_normal"]]
    fit_paths, held_paths = split_calibration(known, 0.1)
    pool = split["unlabeled_pool"]  # D_u at AR 0.6, as the dev protocol's detectors train on it
    fit_paths += [root / p for p in pool["normal"][:200] + pool["abnormal"][:300]]
    model = fit_from_pixels((read_radiograph(p).pixels for p in fit_paths), (read_radiograph(p).pixels for p in held_paths))
    gate, header_only = ScopeGate(model), ScopeGate(None)
    t_fit = time.monotonic() - t0

    real = {
        "dev_test_normal": [root / p for p in split["dev_test"]["normal"]],
        "dev_test_pneumonia": [root / p for p in split["dev_test"]["abnormal"]],
        "fullres": sorted(p for p in (DATA / "fullres").rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")),
    }
    result: dict = {"command": "python bench/scope_gate.py", "model": {k: v for k, v in model.to_dict().items()
                                                                       if k in ("n_fit", "n_threshold", "threshold", "max_held_out")},
                    "fit_seconds": round(t_fit, 1), "real": {}, "out_of_scope": {}, "out_of_scope_header_image_only": {}}
    refused_examples = {}
    for name, paths in real.items():
        rows = _check_all(gate, paths)
        result["real"][name] = _summary(rows)
        refused_examples[name] = [r for r in rows if r["refused"]][:10]
    n_real = sum(v["n"] for v in result["real"].values())
    k_real = sum(v["refused"] for v in result["real"].values())
    result["real"]["all"] = {"n": n_real, "refused": k_real, "refused_fraction": k_real / n_real}

    pool_rest = [root / p for p in pool["normal"][200:230] + pool["abnormal"][300:330]]  # not in D_u
    with tempfile.TemporaryDirectory(prefix="cxr-scope-") as tmp:
        folder = Path(tmp)
        r = np.random.default_rng(1)
        generated = {
            "photograph": _photos(folder, r),
            "text_page": _text_pages(folder, r, 40),
            "blank_and_noise": _blank_and_noise(folder, r, 30),
            "other_body_part_and_lateral_image": _other_body_parts(folder, r, 16),
            "inverted": _inverted(folder, r, 30, pool_rest),
            "header_lateral_body_part_modality": _dicom_headers(folder, r, 36),
            "too_small_and_extreme_aspect": _small(folder, r, 15),
        }
        by_cat: dict[str, list[dict]] = defaultdict(list)
        by_cat_header_only: dict[str, list[dict]] = defaultdict(list)
        for paths in generated.values():
            for row_gate, row_hdr, p in zip(_check_all(gate, paths), _check_all(header_only, paths), paths):
                by_cat[p.parent.name].append(row_gate)
                by_cat_header_only[p.parent.name].append(row_hdr)
        for cat in sorted(by_cat):
            result["out_of_scope"][cat] = _summary(by_cat[cat])
            result["out_of_scope_header_image_only"][cat] = _summary(by_cat_header_only[cat])
            refused_examples.setdefault("passed_" + cat, [x for x in by_cat[cat] if not x["refused"]][:10])
    for key in ("out_of_scope", "out_of_scope_header_image_only"):
        n = sum(v["n"] for v in result[key].values())
        k = sum(v["refused"] for v in result[key].values())
        result[key]["all"] = {"n": n, "refused": k, "refused_fraction": k / n}
    result["examples"] = refused_examples
    result["seconds"] = round(time.monotonic() - t0, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scope_gate.json").write_text(json.dumps(result, indent=1))
    print(f"one-class model: {model.n_fit} fitted, threshold {model.threshold:.2f} "
          f"({model.n_threshold} held out, farthest {model.max_held_out:.2f})")
    for name, v in result["real"].items():
        print(f"real {name:22s} {v['refused']:4d} / {v['n']:4d} refused ({100 * v['refused_fraction']:.1f} %)"
              + (f"  {v.get('reasons')}" if v.get("reasons") else ""))
    for cat, v in result["out_of_scope"].items():
        h = result["out_of_scope_header_image_only"][cat]
        print(f"not CXR {cat:24s} {v['refused']:4d} / {v['n']:4d} refused ({100 * v['refused_fraction']:.1f} %); "
              f"without the model {h['refused']} ({100 * h['refused_fraction']:.1f} %)")
    print(f"-> {RESULTS / 'scope_gate.json'} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
