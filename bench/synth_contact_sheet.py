"""Contact sheet of synthetic chest radiographs: `python bench/synth_contact_sheet.py`.

Writes ``bench/figures/synthetic_contact_sheet.png``: a 4 x 4 grid of :func:`engine.synth.
generate_chest` images (8 normal, then nodule, consolidation and effusion cases), with lesion
masks outlined in red and a caption under each tile. It is the visual check that the
generator's images look like frontal chest radiographs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from cxrscreen.engine.synth import generate_chest

OUT = Path(__file__).resolve().parent / "figures" / "synthetic_contact_sheet.png"
CASES: tuple[tuple[int, str | None], ...] = (
    *((seed, None) for seed in range(8)),
    (8, "nodule"), (9, "nodule"), (10, "nodule"),
    (11, "consolidation"), (12, "consolidation"),
    (13, "effusion"), (14, "effusion"), (15, "effusion"),
)


def tile(seed: int, lesion: str | None, size: int, outline: bool) -> Image.Image:
    """One captioned RGB tile."""
    chest = generate_chest(seed, size, lesion=lesion)
    rgb = np.repeat((chest.pixels * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    if outline and chest.mask is not None:
        edge = chest.mask & ~ndimage.binary_erosion(chest.mask)
        rgb[edge] = (255, 40, 40)
    canvas = Image.new("RGB", (size, size + 14), (0, 0, 0))
    canvas.paste(Image.fromarray(rgb), (0, 0))
    ImageDraw.Draw(canvas).text((3, size + 1), f"seed {seed}: {chest.finding}", fill=(220, 220, 220))
    return canvas


def contact_sheet(size: int = 224, columns: int = 4, outline: bool = True) -> Image.Image:
    """The grid of :data:`CASES`."""
    tiles = [tile(seed, lesion, size, outline) for seed, lesion in CASES]
    w, h = tiles[0].size
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * w + (columns - 1) * 4, rows * h + (rows - 1) * 4), (40, 40, 40))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % columns) * (w + 4), (i // columns) * (h + 4)))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="tile size in pixels (default 224)")
    parser.add_argument("--no-outline", action="store_true", help="do not outline lesion masks")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output PNG (default {OUT})")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(args.size, outline=not args.no_outline).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
