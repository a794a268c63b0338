"""Can the lung field's bounding box undo a framing shift? (issue 22; a negative result)

An idea against the framing shifts (``crop_tight``, ``crop_offset`` of bench/shift.py), which the
exposed-field crop cannot undo: crop every image to the box of its lungs, found by AnatPaste's
unsupervised lung mask (``engine.methods.amae.anatpaste.lung_mask``, at 256 px), so that any
framing maps to the same anatomy. That works only if the box follows the anatomy: this script
finds the box on 80 dev_test images (40 normal, 40 pneumonia; each first cropped to its exposed
field) and on their framing-shifted copies, maps the shifted box back into the original's
coordinates and prints the intersection over union of the two boxes.

    python bench/lung_box.py
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "packaging" / "src")]
import dev_split  # noqa: E402  (bench/ is on sys.path)
from cxrscreen.engine.io import read_radiograph  # noqa: E402
from cxrscreen.engine.methods.amae.anatpaste import lung_mask  # noqa: E402
from cxrscreen.engine.preprocess import field_box  # noqa: E402
from shift import crop_window  # noqa: E402  (bench/shift.py's framing shifts)


def small(p: np.ndarray, side: int = 256) -> tuple[np.ndarray, float]:
    """The image at ``side`` px on its long side (AnatPaste's scale), and the scale factor."""
    h, w = p.shape
    s = side / max(h, w)
    return np.asarray(Image.fromarray(p.astype(np.float32)).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                                    Image.BILINEAR)), s


def box(p: np.ndarray) -> np.ndarray | None:
    """(top, bottom, left, right) of the lung mask in ``p``'s pixels; None without a mask."""
    q, s = small(p)
    m = lung_mask(q)
    if m.sum() == 0:
        return None
    rows, cols = np.where(m.any(1))[0], np.where(m.any(0))[0]
    return np.array([rows[0], rows[-1] + 1, cols[0], cols[-1] + 1]) / s


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[2], b[2]))
    area = (a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter
    return float(inter / area)


def main() -> None:
    paths, labels = dev_split.dev_test()
    chosen = [q for q, y in zip(paths, labels) if y == 0][:40] + [q for q, y in zip(paths, labels) if y == 1][:40]
    ious: dict[str, list[float]] = {"crop_tight": [], "crop_offset": []}
    sizes, missing = [], 0
    for i, path in enumerate(chosen):
        p = read_radiograph(path).pixels.astype(np.float32)
        t, b, l, r = field_box(p)
        p = p[t:b, l:r]
        h, w = p.shape
        b0 = box(p)
        if b0 is None:
            missing += 1
            continue
        sizes.append((b0[1] - b0[0]) * (b0[3] - b0[2]) / (h * w))
        rng = np.random.default_rng(i)  # as bench/shift.py draws crop_offset's direction
        for name, (frac, dy, dx) in (("crop_tight", (0.8, 0.0, 0.0)),
                                     ("crop_offset", (0.85, 0.07 * rng.choice([-1, 1]), 0.07 * rng.choice([-1, 1])))):
            top, left, ch, cw = crop_window(h, w, frac, dy, dx)
            b1 = box(p[top : top + ch, left : left + cw])
            ious[name].append(0.0 if b1 is None else _iou(b0, b1 + np.array([top, top, left, left])))
    print(f"images without a lung mask: {missing}; lung box share of the field: median {np.median(sizes):.2f}, "
          f"10th-90th percentile {np.percentile(sizes, 10):.2f}-{np.percentile(sizes, 90):.2f}")
    for name, v in ious.items():
        v = np.array(v)
        print(f"{name}: IoU of the box found after the shift with the original's: median {np.median(v):.3f}, "
              f"10th percentile {np.percentile(v, 10):.3f}, share >= 0.8: {np.mean(v >= 0.8):.2f} (n = {len(v)})")


if __name__ == "__main__":
    main()
