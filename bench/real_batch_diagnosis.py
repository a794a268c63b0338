"""Why do the real other batch's normals score high? Re-render its originals and see what brings them back.

The 8 normal and 8 pneumonia full-size Kermany originals of ``fullres/kermany`` (another
acquisition batch) are scored by a detector as read, and again after one change each that could
explain a difference from the training copies: the copies' own pipeline (resized to 224 px and
JPEG-compressed at quality 75), another width-to-height ratio (rows or columns stretched 1.2×,
``bench/shift.py``'s aspect shifts), and local contrast raised or lowered (``bench/shift.py``'s
processing shifts, σ 3 % of the side). For each: the median percentile of the 8 normals among the
detector's calibration normals (50 if they scored like them) and the AUROC of the 16. A change
that brings the normals to the calibration's median is a candidate for what differs; 8 images
cannot prove one.

    python bench/real_batch_diagnosis.py --model D.onnx [--model …] --tag NAME
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

import shift  # bench/ is on sys.path

OUT = shift.REPO / "bench" / "results" / "shift"


def _copy_pipeline(path: Path, resample: Image.Resampling) -> np.ndarray:
    im = Image.open(path).convert("RGB").resize((224, 224), resample)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=75)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"), dtype=np.float32) / 255.0


def main() -> None:
    from cxrscreen.engine import metrics as M
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import preprocess

    args = shift.detector_args(__doc__)
    paths, labels = shift.real_batch_files()
    raw = [read_radiograph(path).pixels for path in paths]
    variants = {
        "as read": raw,
        "the copies' pipeline (224 px bilinear, JPEG q75)": [_copy_pipeline(path, Image.Resampling.BILINEAR)
                                                             for path in paths],
        "the copies' pipeline (224 px bicubic, JPEG q75)": [_copy_pipeline(path, Image.Resampling.BICUBIC)
                                                            for path in paths],
        "columns stretched 1.2 (a narrower original)": [shift.stretch(x, cols=1.2) for x in raw],
        "rows stretched 1.2 (a wider original)": [shift.stretch(x, rows=1.2) for x in raw],
        "local contrast raised (+0.7)": [shift.local_contrast(x, 0.7) for x in raw],
        "local contrast lowered (-0.5)": [shift.local_contrast(x, -0.5) for x in raw],
    }
    out = {"n_normal": int((labels == 0).sum()), "n_abnormal": int(labels.sum()), "detectors": {}}
    for model in args.model:
        det = Detector(model, provider="cpu")
        cal = np.sort(np.asarray(det.calibration.normal_scores))
        res = {}
        for name, pix in variants.items():
            scores = det.run(np.stack([preprocess(x, det.preprocess_spec) for x in pix])[:, None]).scores
            pct = np.array([100.0 * np.mean(cal <= s) for s in scores])
            res[name] = {"normal_percentile_median": float(np.median(pct[labels == 0])),
                         "auroc": M.auroc(labels, scores)}
        out["detectors"][model.stem] = res
        print(f"\n{model.stem} (provider {det.provider})")
        for name, r in res.items():
            print(f"  {name:50s} normals at calibration percentile {r['normal_percentile_median']:3.0f}, "
                  f"AUROC {r['auroc']:.3f}")
    names = list(variants)
    print("\n| re-rendering | " + " | ".join(out["detectors"]) + " | median |")
    print("|---|" + "---:|" * (len(out["detectors"]) + 1))
    for name in names:
        v = [d[name]["normal_percentile_median"] for d in out["detectors"].values()]
        print(f"| {name} | " + " | ".join(f"{x:.0f}" for x in v) + f" | {np.median(v):.0f} |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"real_batch_diagnosis_{args.tag}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
