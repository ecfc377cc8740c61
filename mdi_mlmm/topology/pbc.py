"""Periodic-boundary helpers (numpy only). Positions and cells in Å; cell rows are a, b, c."""
from __future__ import annotations

import numpy as np


def minimum_image(d: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Minimum-image version of displacement vectors ``d`` (..., 3) in a triclinic ``cell`` (3, 3).

    Exact for displacements shorter than half the smallest perpendicular cell width.
    """
    inv = np.linalg.inv(cell)
    frac = d @ inv
    frac -= np.round(frac)
    return frac @ cell


def make_whole(positions: np.ndarray, cell: np.ndarray | None) -> np.ndarray:
    """Undo PBC wrapping of one molecule: every atom is placed at the minimum image of its
    displacement from atom 0. positions (N, 3) Å → (N, 3) Å; identity when ``cell`` is None.

    Valid while the molecule spans less than half the box, which holds for the small
    molecules of an ML region in a solvated box (≥ 2 nm).
    """
    pos = np.asarray(positions, dtype=np.float64)
    if cell is None or len(pos) == 0:
        return pos
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if abs(np.linalg.det(cell)) < 1e-12:
        return pos
    return pos[0] + minimum_image(pos - pos[0], cell)
