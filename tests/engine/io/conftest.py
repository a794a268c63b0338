"""Fixtures for the radiograph reader tests: small generated images and the real DICOM folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def dicom_data(shared_data: Path) -> Path:
    """../shared/data/dicom (skips, with the reason, when the real data is absent)."""
    folder = shared_data / "dicom"
    if not (folder / "labels.csv").is_file():
        pytest.skip(f"real DICOM files not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def ramp12() -> np.ndarray:
    """(64, 80) uint16 smooth 12-bit image: every value 0..4095 reachable, min 0, max 4095."""
    y, x = np.mgrid[0:64, 0:80]
    return np.round((x / 79 * 0.7 + y / 63 * 0.3) * 4095).astype(np.uint16)


@pytest.fixture(scope="session")
def ramp8() -> np.ndarray:
    """(48, 64) uint8 smooth image, min 0, max 255 (compresses well, so lossy errors are small)."""
    y, x = np.mgrid[0:48, 0:64]
    return np.round((x / 63 * 0.6 + y / 47 * 0.4) * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def rgb8() -> np.ndarray:
    """(40, 56, 3) uint8 colour image with different content per channel."""
    y, x = np.mgrid[0:40, 0:56]
    r = (x * 4) % 256
    g = (y * 6) % 256
    b = 255 - (x + y) * 2 % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)
