"""Which parts of the combined shift cost a detector its AUROC: dev_test AUROC with and without each component.

``bench/shift.py``'s combined shift applies two to four of the other nine shifts to each image
(drawn from the image's own seeded generator). This replays each image's draw, splits dev_test
into the images whose mix includes a component and those whose mix does not, and reports the
combined-shift AUROC of each part (the mean over the detectors given). Scores come from
``bench/drift_scores.py``'s cache (scored if missing).

    python bench/shift_components.py --model A.onnx [--model B.onnx ...] [--tag NAME]

Results: ``bench/results/shift/components_NAME.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "packaging" / "src"), str(REPO / "bench")]
import dev_split  # noqa: E402
import shift  # noqa: E402


def components(n: int) -> list[set[str]]:
    """The shifts mixed into each of the first ``n`` dev_test images (``shift.py`` seeds image i with i)."""
    return [set(shift.combined_mix(np.random.default_rng(i))) for i in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, action="append", required=True)
    p.add_argument("--tag", default="combined")
    args = p.parse_args()
    dev_split.require()
    from drift_scores import score_all

    from cxrscreen.engine.metrics import auroc

    scores = [dict(np.load(score_all(m))) for m in args.model]
    y = scores[0]["dev_test_labels"]
    mixes = components(len(y))
    rows = {}
    print("| component | images with it | AUROC with it | AUROC without it |")
    print("|---|---:|---:|---:|")
    for name in shift._MIXABLE:
        inc = np.array([name in m for m in mixes])
        with_, without = ([auroc(y[part], s["shift_combined"][part]) for s in scores] for part in (inc, ~inc))
        rows[name] = {"n": int(inc.sum()), "auroc_with": float(np.mean(with_)), "auroc_without": float(np.mean(without))}
        print(f"| {name} | {inc.sum()} | {np.mean(with_):.3f} | {np.mean(without):.3f} |")
    out = REPO / "bench" / "results" / "shift" / f"components_{args.tag}.json"
    out.write_text(json.dumps({"models": [str(m) for m in args.model], "components": rows}, indent=1))


if __name__ == "__main__":
    main()
