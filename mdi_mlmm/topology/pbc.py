"""Periodic-boundary helpers (numpy only). Positions and cells in Å; cell rows are a, b, c.

Whole molecules: :class:`WholeMaker` places every atom of a molecule at the periodic image
nearest to its parent in a spanning tree of the molecule — the tree of its bonds when they
are known, else a minimum spanning tree over minimum-image distances of the first frame
(kept for later frames, as GROMACS's MDI module does). Bonds are short, so this is right
for any molecule, however long, unlike placing every atom next to atom 0.
:func:`check_within_half_box` refuses a molecule that spans half the box or more: the MM
engines correct excluded (ML–ML) pairs through their minimum image, which is the
intramolecular pair only while every intramolecular displacement is shorter than half
the box.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import UserInputError
from .graph import components


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """The three perpendicular widths (Å) of a cell (3, 3) of row vectors: the distances between
    opposite faces."""
    cell = np.asarray(cell, dtype=np.float64)
    vol = abs(np.linalg.det(cell))
    return np.array([vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)])


def minimum_image(d: np.ndarray, cell: np.ndarray, *, cutoff: Optional[float] = None,
                  nearest: bool = False) -> np.ndarray:
    """Minimum-image version of displacement vectors ``d`` (..., 3) in a triclinic ``cell`` (3, 3).

    Exact for displacements shorter than half the smallest perpendicular cell width. nearest: in a
    triclinic cell also try the 26 neighbouring cell shifts, so that every displacement becomes its
    nearest image. cutoff (Å): raise :class:`UserInputError` unless it is below half the smallest
    perpendicular width (so one image at most lies within the cutoff, as an MD code sees it).
    """
    cell = np.asarray(cell, dtype=np.float64)
    if cutoff is not None:
        width = float(perpendicular_widths(cell).min())
        if cutoff >= 0.5 * width:
            raise UserInputError(f"cutoff {cutoff} Å is not below half the smallest box width ({width:.2f} Å)")
    inv = np.linalg.inv(cell)
    frac = d @ inv
    frac -= np.round(frac)
    out = frac @ cell
    if nearest and abs(cell[1, 0]) + abs(cell[2, 0]) + abs(cell[2, 1]) > 1e-9:  # triclinic: try the neighbours
        best = out
        best2 = np.einsum("...k,...k->...", out, out)
        for s in np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1])).reshape(3, -1).T:
            if not s.any():
                continue
            cand = out + s @ cell
            c2 = np.einsum("...k,...k->...", cand, cand)
            better = c2 < best2
            best = np.where(better[..., None], cand, best)
            best2 = np.where(better, c2, best2)
        out = best
    return out


def _usable_cell(cell) -> Optional[np.ndarray]:
    if cell is None:
        return None
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if abs(np.linalg.det(cell)) < 1e-12:
        return None
    return cell


def spanning_tree(n: int, bonds: Sequence[tuple[int, int]]) -> np.ndarray:
    """parent[k] of each of ``n`` atoms in a breadth-first tree of ``bonds`` rooted at atom 0
    (parent[0] = -1). Raises :class:`UserInputError` when the bonds do not connect all atoms
    (more than one molecule)."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for i, j in bonds:
        adj[int(i)].append(int(j))
        adj[int(j)].append(int(i))
    parent = np.full(n, -2, dtype=np.int64)
    parent[0] = -1
    queue = [0]
    for a in queue:
        for b in adj[a]:
            if parent[b] == -2:
                parent[b] = a
                queue.append(b)
    if np.any(parent == -2):
        n_comp = len(set(components(n, bonds)))
        raise UserInputError(f"the ML region holds {n_comp} molecules (its bonds do not connect its {n} atoms); "
                             "one molecule is supported: select a single molecule as the ML region")
    return parent


def _mst_parent(pos: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Prim's minimum spanning tree over minimum-image distances (parent array, root 0)."""
    n = len(pos)
    parent = np.full(n, -1, dtype=np.int64)
    placed = np.zeros(n, dtype=bool)
    placed[0] = True
    best = np.full(n, np.inf)
    cur = 0
    for _ in range(n - 1):
        d = minimum_image(pos - pos[cur], cell)
        d2 = np.einsum("ij,ij->i", d, d)
        upd = (~placed) & (d2 < best)
        best[upd] = d2[upd]
        parent[upd] = cur
        cand = np.where(placed, np.inf, best)
        cur = int(np.argmin(cand))
        placed[cur] = True
    return parent


class WholeMaker:
    """Makes one molecule whole across periodic boundaries along a spanning tree.

    n: atoms; bonds: pairs of 0-based indices (within the molecule) or None (the tree is
    then a minimum spanning tree of the first frame's minimum-image distances).
    ``whole(positions (n, 3) Å, cell (3, 3) Å or None) -> (n, 3) Å``; atom 0 stays put.
    """

    def __init__(self, n: int, bonds: Optional[Sequence[tuple[int, int]]] = None):
        self.n = int(n)
        self.parent: Optional[np.ndarray] = spanning_tree(self.n, bonds) if bonds is not None and self.n > 1 else None
        self._path: Optional[np.ndarray] = None

    def _set_paths(self):
        # path[k, e] = 1 when the tree edge (e, parent e) lies on the path root -> k
        n = self.n
        path = np.zeros((n, n))
        order = self._order()
        for k in order[1:]:
            path[k] = path[self.parent[k]]
            path[k, k] = 1.0
        self._path = path

    def _order(self) -> list[int]:
        children: list[list[int]] = [[] for _ in range(self.n)]
        for k in range(self.n):
            if self.parent[k] >= 0:
                children[int(self.parent[k])].append(k)
        order, stack = [], [0]
        while stack:
            a = stack.pop()
            order.append(a)
            stack.extend(children[a])
        return order

    def whole(self, positions: np.ndarray, cell) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.float64)
        if cell is None or self.n < 2:
            return pos.copy()
        # the cell's inverse is kept while the cell stays the same (every step of an NVT run)
        key = np.asarray(cell, dtype=np.float64).tobytes()
        if key != getattr(self, "_cell_key", None):
            usable = _usable_cell(cell)
            self._cell_key, self._cell = key, usable
            self._inv = None if usable is None else np.linalg.inv(usable)
        cell = self._cell
        if cell is None:
            return pos.copy()
        if self.parent is None:
            self.parent = _mst_parent(pos, cell)
        if self._path is None:
            self._set_paths()
            self._kids = np.nonzero(self.parent >= 0)[0]
            self._kid_parents = self.parent[self._kids]
        frac = (pos[self._kids] - pos[self._kid_parents]) @ self._inv
        shift = np.round(frac)
        if not shift.any():  # already whole (what hosts that unwrap send): nothing to move
            return pos.copy()
        edge = np.zeros_like(pos)
        edge[self._kids] = (frac - shift) @ cell
        return pos[0] + self._path @ edge


def make_whole(positions: np.ndarray, cell: np.ndarray | None,
               bonds: Optional[Sequence[tuple[int, int]]] = None) -> np.ndarray:
    """One molecule made whole (:class:`WholeMaker`; a fresh tree each call). positions (N, 3) Å
    → (N, 3) Å; identity when ``cell`` is None."""
    return WholeMaker(len(positions), bonds).whole(positions, cell)


def check_within_half_box(whole: np.ndarray, cell, what: str = "the ML region") -> None:
    """Raise :class:`UserInputError` unless every pair displacement of the whole molecule
    ``whole`` (N, 3) Å is its own minimum image, i.e. lies within half the box along each
    cell vector (fractional components in (-0.5, 0.5))."""
    cell = _usable_cell(cell)
    if cell is None or len(whole) < 2:
        return
    frac = np.asarray(whole, dtype=np.float64) @ np.linalg.inv(cell)
    span = frac.max(axis=0) - frac.min(axis=0)  # extent along a, b, c in box units
    if np.all(span < 0.5):
        return
    k = int(np.argmax(span))
    width = perpendicular_widths(cell)[k]
    raise UserInputError(f"{what} spans {span[k] * width / 10:.2f} nm along box vector {'abc'[k]}, half the box "
                         f"({width / 20:.2f} nm) or more: its ML-ML exclusions would reach periodic images; "
                         "use a larger box")
