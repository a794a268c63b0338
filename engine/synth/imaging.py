"""From density to a displayed radiograph: exposure, processing, blur, noise and lead markers.

A digital radiography system log-transforms the detected exposure, so displayed brightness
is close to linear in projected density; processing then applies a tone curve and edge
enhancement. :func:`render` does that, plus detector blur and quantum noise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cxrscreen.engine.synth.filters import gaussian_filter

# Lead marker glyphs (5 x 7 bitmaps).
_GLYPHS: dict[str, tuple[str, ...]] = {
    "L": ("1....", "1....", "1....", "1....", "1....", "1....", "11111"),
    "R": ("1111.", "1...1", "1...1", "1111.", "1.1..", "1..1.", "1...1"),
}


@dataclass(frozen=True)
class Exposure:
    """How density becomes display brightness: technique and processing, per image.

    Attributes:
        offset: brightness of unattenuated air (before gamma).
        gain: brightness per unit of density (contrast).
        gamma: exponent of the display curve (> 1 darkens the lungs relative to bone).
        noise: standard deviation of quantum noise in display units, per pixel of a 256 px
            image (smaller images have bigger pixels, so less noise per pixel).
        blur_px: detector/focal-spot blur (Gaussian sigma) in output pixels.
        sharpen: unsharp-mask amount (edge enhancement of CR/DX processing).
    """

    offset: float
    gain: float
    gamma: float
    noise: float
    blur_px: float
    sharpen: float


def sample_exposure(rng: np.random.Generator, variation: float = 1.0) -> Exposure:
    """Draw one exposure and processing.

    Args:
        rng: source of randomness (always six draws).
        variation: 0 gives the average exposure, 1 a realistic spread.
    """

    def j(mean: float, sd: float, lo: float, hi: float) -> float:
        return float(np.clip(mean + variation * sd * rng.standard_normal(), lo, hi))

    return Exposure(
        offset=j(0.035, 0.02, 0.0, 0.1),
        gain=j(0.82, 0.06, 0.68, 0.96),
        gamma=j(1.35, 0.15, 1.0, 1.8),
        noise=j(0.012, 0.004, 0.004, 0.025),
        blur_px=j(0.7, 0.15, 0.4, 1.1),
        sharpen=j(0.3, 0.2, 0.0, 0.8),
    )


def tone_map(density: np.ndarray, exposure: Exposure) -> np.ndarray:
    """Display brightness of a density map: linear, a soft shoulder near white, a gamma.

    Returns:
        float32 array in [0, 1], higher = brighter.
    """
    lin = exposure.offset + exposure.gain * density
    knee = 0.8
    shoulder = knee + (1.0 - knee) * np.tanh((lin - knee) / (1.0 - knee))
    lin = np.where(lin > knee, shoulder, lin)
    return (np.clip(lin, 0.0, 1.0) ** exposure.gamma).astype(np.float32)


def render(density: np.ndarray, exposure: Exposure, noise: np.ndarray) -> np.ndarray:
    """Blur, tone-map, sharpen and add noise.

    Args:
        density: (H, W) float32 projected density.
        exposure: technique and processing.
        noise: (H, W) standard normal noise (its own random stream, so a lesion does not
            change the noise pattern).

    Returns:
        (H, W) float32 pixels in [0, 1].
    """
    density = gaussian_filter(density, exposure.blur_px, truncate=3.0)
    pixels = tone_map(density, exposure)
    if exposure.sharpen > 0:
        # CR/DX processing boosts mid-frequency detail (unsharp mask with a ~1 cm kernel)
        low = gaussian_filter(pixels, 0.015 * density.shape[0], truncate=2.5)
        pixels += exposure.sharpen * (pixels - low)
    # quantum noise: fewer photons behind dense structures, so brighter pixels are noisier;
    # a bigger pixel collects more photons (per-pixel noise ~ sqrt of the resolution)
    sigma = exposure.noise * float(np.clip(np.sqrt(min(density.shape) / 256.0), 0.5, 2.0))
    pixels += sigma * (0.5 + np.clip(pixels, 0.0, 1.0)) * noise
    return np.clip(pixels, 0.0, 1.0).astype(np.float32, copy=False)


def _marker(letter: str, shape: tuple[int, int], corner: tuple[float, float]) -> np.ndarray:
    """A lead letter on a faint plastic tab, as a (H, W) float image in [0, 1].

    ``corner`` is the tab's position as fractions of the free room (0, 0 = top left).
    """
    h, w = shape
    glyph = np.array([[c == "1" for c in row] for row in _GLYPHS[letter]], dtype=np.float32)
    cell = max(1, round(h * 0.007))
    big = np.kron(glyph, np.ones((cell, cell), dtype=np.float32))
    tab = np.full((big.shape[0] + 2 * cell, big.shape[1] + 2 * cell), 0.04, dtype=np.float32)
    tab[cell:-cell, cell:-cell] += 0.96 * big
    th, tw = tab.shape
    out = np.zeros(shape, dtype=np.float32)
    if th <= h and tw <= w:
        top = int(round(corner[1] * (h - th)))
        left = int(round(corner[0] * (w - tw)))
        out[top : top + th, left : left + tw] = tab
    return out


def marker_layer(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """An "L" or "R" lead marker near a top corner, as (H, W) density (lead is opaque).

    Drawn in pixel space: markers lie on the detector, not on the patient. Always four draws.
    """
    letter = "L" if rng.random() < 0.5 else "R"
    # R usually goes on the patient's right (image left) and L on the image right
    image_right = (letter == "L") != (rng.random() < 0.15)
    cx = 0.97 - 0.06 * rng.random() if image_right else 0.03 + 0.06 * rng.random()
    cy = 0.03 + 0.1 * rng.random()
    return 2.0 * _marker(letter, shape, (cx, cy))
