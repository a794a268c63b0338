"""Where in the image do the real other batch's normals score higher than dev_test's normals?

The 8 normal full-size Kermany originals of ``fullres/kermany`` (another acquisition batch) sit
high among a detector's calibration normals. This compares the detector's anomaly maps (model
input coordinates, after the detector's own preprocessing) of those 8 normals with the maps of
dev_test's 241 normals (evaluation only: nothing is chosen on them): the mean map of each, and
how the excess of the real normals' mean over dev_test's splits between the border (the outer
eighth of the side on every edge), the upper and lower halves of the centre, and the left and
right halves. A PNG of the two mean maps and their difference is written beside the JSON.

    python bench/real_batch_maps.py --model D.onnx [--model …] --tag NAME
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

import dev_split
import shift  # bench/ is on sys.path

OUT = shift.REPO / "bench" / "results" / "shift"


def _regions(size: int) -> dict[str, np.ndarray]:
    edge = max(1, size // 8)
    border = np.ones((size, size), bool)
    border[edge:-edge, edge:-edge] = False
    rows, cols = np.indices((size, size))
    centre = ~border
    return {"border": border, "centre, upper half": centre & (rows < size // 2),
            "centre, lower half": centre & (rows >= size // 2), "centre, left half": centre & (cols < size // 2),
            "centre, right half": centre & (cols >= size // 2)}


def _png(maps: list[np.ndarray], path: Path) -> None:
    """The real normals' mean map, dev_test normals' mean map and their difference, side by side."""
    hi = max(float(m.max()) for m in maps[:2])
    diff = maps[2]
    tiles = [np.clip(m / hi, 0, 1) for m in maps[:2]] + [np.clip(0.5 + diff / (2 * max(np.abs(diff).max(), 1e-9)), 0, 1)]
    strip = np.concatenate([np.kron(t, np.ones((4, 4))) for t in tiles], axis=1)
    Image.fromarray((strip * 255).astype(np.uint8)).save(path)


def main() -> None:
    from cxrscreen.engine.detector import Detector
    from cxrscreen.engine.io import read_radiograph
    from cxrscreen.engine.preprocess import preprocess

    args = shift.detector_args(__doc__)
    real_paths, real_labels = shift.real_batch_files()
    dev_split.require()
    real = [read_radiograph(path).pixels for path, y in zip(real_paths, real_labels) if y == 0]
    paths, labels = dev_split.dev_test()
    dev = [read_radiograph(q).pixels for q, y in zip(paths, labels) if y == 0]
    out = {"n_real_normals": len(real), "n_dev_test_normals": len(dev), "detectors": {}}
    for model in args.model:
        det = Detector(model, provider="cpu")

        def maps(images: list[np.ndarray]) -> np.ndarray:
            batch = np.stack([preprocess(x, det.preprocess_spec) for x in images])[:, None]
            return np.concatenate([det.run(batch[i : i + 64]).heatmaps for i in range(0, len(batch), 64)])

        m_real, m_dev = maps(real).mean(axis=0), maps(dev).mean(axis=0)
        excess = m_real - m_dev
        total = float(excess.sum())
        res = {"provider": det.provider, "mean_map_real": float(m_real.mean()), "mean_map_dev_test": float(m_dev.mean()),
               "excess_share": {}, "area_share": {}}
        for name, mask in _regions(excess.shape[0]).items():
            res["excess_share"][name] = float(excess[mask].sum() / total) if total else float("nan")
            res["area_share"][name] = float(mask.mean())
        out["detectors"][model.stem] = res
        _png([m_real, m_dev, excess], OUT / f"real_batch_maps_{args.tag}_{model.stem}.png")
        print(f"\n{model.stem} (provider {det.provider}): mean map, real normals {res['mean_map_real']:.4f}, "
              f"dev_test normals {res['mean_map_dev_test']:.4f}")
        for name in res["excess_share"]:
            print(f"  {name:20s} {100 * res['area_share'][name]:3.0f} % of the area, "
                  f"{100 * res['excess_share'][name]:4.0f} % of the excess")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"real_batch_maps_{args.tag}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
