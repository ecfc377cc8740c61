"""topology.pbc.minimum_image: the one minimum-image helper (plain rounding, nearest image, cutoff check)."""
from __future__ import annotations

import numpy as np
import pytest

from mdi_mlmm.errors import UserInputError
from mdi_mlmm.topology.pbc import minimum_image, perpendicular_widths


def test_nearest_image_in_a_skewed_cell_and_the_cutoff_check():
    cell = np.array([[20.0, 0, 0], [9.0, 20.0, 0], [0, 0, 20.0]])
    rng = np.random.default_rng(1)
    d = rng.uniform(-30, 30, (200, 3))
    plain = minimum_image(d, cell)
    near = minimum_image(d, cell, nearest=True)
    # brute force over images
    shifts = np.array(np.meshgrid(*[range(-3, 4)] * 3)).reshape(3, -1).T @ cell
    best = np.min(np.linalg.norm(plain[:, None, :] + shifts[None], axis=2), axis=1)
    np.testing.assert_allclose(np.linalg.norm(near, axis=1), best, atol=1e-9)
    assert (np.linalg.norm(plain, axis=1) > best + 1e-6).any()     # rounding alone misses some here
    frac = (near - d) @ np.linalg.inv(cell)
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)    # only whole cell shifts
    assert perpendicular_widths(cell) == pytest.approx([20 * 20 / np.hypot(20, 9), 20.0, 20.0])
    minimum_image(d, cell, cutoff=8.0)
    with pytest.raises(UserInputError, match="not below half the smallest box width"):
        minimum_image(d, cell, cutoff=9.5)
