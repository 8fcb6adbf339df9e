"""Fixtures of the ML tests used by more than one module."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def painting(tmp_path):
    """A 40x40 painting of random pixels, as a PNG file."""
    pixels = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    path = tmp_path / "painting.png"
    Image.fromarray(pixels).save(path)
    return path
