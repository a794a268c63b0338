"""One synthetic chest radiograph: anatomy + optional lesion + exposure, blur and noise.

Randomness is split into three independent streams spawned from the seed (anatomy, lesion,
noise), so ``generate_chest(s)`` and ``generate_chest(s, lesion="nodule")`` show the same patient
and differ only around the lesion, and the anatomy does not depend on the image size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from cxrscreen.engine.synth.anatomy import chest_density, lungs_box, sample_anatomy, sample_pose
from cxrscreen.engine.synth.grid import Pose, local, pose_grid
from cxrscreen.engine.synth.imaging import marker_layer, render, sample_exposure
from cxrscreen.engine.synth.lesions import LESION_KINDS, LesionKind, render_lesion, sample_lesion
from cxrscreen.engine.synth.vessels import canvas_size, grow_trees, rasterise, sample_canvas


Finding = Literal["normal", "nodule", "consolidation", "effusion"]
MIN_SIZE = 16
MAX_SIZE = 4096


@dataclass(frozen=True)
class SyntheticChest:
    """A generated radiograph and its ground truth.

    Attributes:
        pixels: (H, W) float32 in [0, 1], higher = brighter (bone and heart bright, lungs
            dark), as :attr:`engine.io.Radiograph.pixels`.
        mask: (H, W) bool lesion mask, or None for a normal chest.
        finding: "normal" or the lesion kind.
        lung_mask: (H, W) bool, the aerated lung field (heart excluded); lesion masks lie inside.
        heart_mask: (H, W) bool, the cardiac silhouette.
        seed: the integer seed the image was generated from.
    """

    pixels: np.ndarray
    mask: np.ndarray | None
    finding: Finding
    lung_mask: np.ndarray
    heart_mask: np.ndarray
    seed: int


def check_options(size: int | tuple[int, int], lesion: str | None, lesion_strength: float, variation: float) -> tuple[int, int]:
    """Validate :func:`generate_chest`'s options (also used before writing a study).

    Returns:
        The image shape (H, W).

    Raises:
        TypeError: ``size`` is not an int or a pair of ints.
        ValueError: a value out of range or an unknown ``lesion``.
    """
    def is_int(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if is_int(size):
        shape = (int(size), int(size))  # type: ignore[arg-type]
    elif isinstance(size, tuple) and len(size) == 2 and all(is_int(s) for s in size):
        shape = (int(size[0]), int(size[1]))
    else:
        raise TypeError(f"size must be an int or an (H, W) tuple of ints, got {size!r}")
    if not all(MIN_SIZE <= s <= MAX_SIZE for s in shape):
        raise ValueError(f"size must be in [{MIN_SIZE}, {MAX_SIZE}] pixels per side, got {size!r}")
    if lesion is not None and lesion not in LESION_KINDS:
        raise ValueError(f"lesion must be None or one of {LESION_KINDS}, got {lesion!r}")
    if not 0.0 <= float(lesion_strength) <= 10.0:
        raise ValueError(f"lesion_strength must be in [0, 10], got {lesion_strength!r}")
    if not 0.0 <= float(variation) <= 2.0:
        raise ValueError(f"variation must be in [0, 2], got {variation!r}")
    return shape


def _seed(seed: int | np.random.Generator) -> int:
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        return int(seed)
    raise TypeError(f"seed must be a non-negative int or a numpy Generator, got {type(seed).__name__} {seed!r}")


def generate_chest(
    seed: int | np.random.Generator,
    size: int | tuple[int, int] = 256,
    *,
    lesion: LesionKind | None = None,
    lesion_strength: float = 1.0,
    variation: float = 1.0,
    pose: bool = True,
    marker: bool = True,
) -> SyntheticChest:
    """Generate one frontal (PA) chest radiograph.

    Args:
        seed: an int (the same int always gives the same image) or a Generator, from which
            one integer seed is drawn (then ``result.seed`` says which).
        size: side length, or (H, W); at least 16 and at most 4096 pixels per side.
        lesion: None for a normal chest, or "nodule", "consolidation", "effusion".
        lesion_strength: scale of the lesion's added density, >= 0 (1 = clearly visible,
            0.3 = subtle, 0 = invisible but with its mask).
        variation: spread of anatomy, exposure and positioning, in [0, 2]: 0 gives the
            average chest with average exposure, 1 a realistic population.
        pose: vary rotation, zoom and centring (scaled by ``variation``); False keeps the
            chest upright and centred.
        marker: draw a lead "L"/"R" marker in a top corner.

    Returns:
        The image and its masks.

    Raises:
        TypeError: ``seed`` or ``size`` of the wrong type.
        ValueError: a value out of range or an unknown ``lesion``.
    """
    shape = check_options(size, lesion, lesion_strength, variation)
    int_seed = _seed(seed)
    anat_rng, lesion_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(int_seed).spawn(3))

    # every draw happens whatever the options, so options never change the patient
    anat = sample_anatomy(anat_rng, variation)
    exposure = sample_exposure(anat_rng, variation)
    drawn_pose = sample_pose(anat_rng, variation)
    trees = grow_trees(anat, anat_rng)
    marker_density = marker_layer(anat_rng, shape)

    x, y = pose_grid(shape, drawn_pose if pose else Pose())
    canvas = rasterise(trees, canvas_size(shape))
    vessels = local(lambda x, y: sample_canvas(canvas, x, y), x, y, lungs_box(anat))
    layers = chest_density(anat, x, y, vessels)
    density = layers.density
    mask = None
    if lesion is not None:
        spec = sample_lesion(lesion, anat, lesion_rng)
        added, mask = render_lesion(spec, anat, x, y, layers.lung, float(lesion_strength))
        density += added
    if marker:
        density += marker_density
    # automatic exposure control: the dose follows the patient's size, so soft tissue of any
    # habitus lands at about the same brightness
    density *= 1.0 / anat.habitus
    pixels = render(density, exposure, noise_rng.standard_normal(shape, dtype=np.float32))
    return SyntheticChest(
        pixels=pixels,
        mask=mask,
        finding=lesion if lesion is not None else "normal",
        lung_mask=layers.lung > 0.5,
        heart_mask=layers.heart > 0.5,
        seed=int_seed,
    )
