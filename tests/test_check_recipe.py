"""The recipe check's dark-frame measure (bench/check_recipe.py)."""

import numpy as np

from bench.check_recipe import BORDER_LIMIT, border_darkening


def test_a_dark_frame_is_measured_and_the_photos_own_edges_are_not():
    rng = np.random.default_rng(0)
    photo = rng.integers(60, 200, (64, 80, 3)).astype(np.uint8)
    photo[:4] = 20  # the photo's own dark top edge counts for nothing
    framed = photo.copy()
    framed[:, :4] = framed[:, -4:] = framed[-4:] = 10
    assert abs(border_darkening(photo, photo)) < 1e-9
    assert border_darkening(photo, framed) > BORDER_LIMIT
    assert border_darkening(photo, np.clip(photo.astype(int) + 30, 0, 255).astype(np.uint8)) < 1
