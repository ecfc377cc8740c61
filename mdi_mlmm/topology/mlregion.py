"""The ML region of a GROMACS system: which atoms the ML potential describes.

Given either an MDAnalysis selection string (``"resname MOL"``) evaluated on the
coordinate file, or a GROMACS index group (``group`` in ``ndx``), return 0-based atom
indices (sorted) and their atomic numbers (from the topology's atom types, not guessed
from names). Indices: 0-based; ``.ndx`` files are 1-based as GROMACS writes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import UserInputError
from .index import read_ndx
from .pbc import spanning_tree


@dataclass
class MLRegion:
    """indices: 0-based, sorted; atomic_numbers, charges (e, the MM charges) in the same order;
    bonds: (i, j) pairs of positions in ``indices`` (not atom indices) — one connected molecule."""

    indices: np.ndarray
    atomic_numbers: np.ndarray
    charges: np.ndarray = field(default_factory=lambda: np.zeros(0))
    description: str = ""
    bonds: list = field(default_factory=list)

    def __len__(self):
        return len(self.indices)


def select_indices(gro, selection: Optional[str] = None, ndx=None, group: Optional[str] = None) -> np.ndarray:
    """0-based sorted indices of the ML atoms: ``selection`` (MDAnalysis, on ``gro``) or ``group`` in ``ndx``."""
    if (selection is None) == (group is None):
        raise UserInputError("give the ML region either as a selection (e.g. 'resname MOL') or as an index "
                             "group (--ndx FILE --ml-group NAME), not both")
    if group is not None:
        if ndx is None:
            raise UserInputError("--ml-group needs --ndx FILE")
        groups = read_ndx(Path(ndx))
        if group not in groups:
            raise UserInputError(f"index file {ndx} has no group [ {group} ] (groups: {', '.join(groups)})")
        idx = np.array(sorted(set(groups[group])), dtype=int)
    else:
        import MDAnalysis as mda

        try:
            u = mda.Universe(str(gro))
        except Exception as exc:
            raise UserInputError(f"cannot read {gro}: {exc}") from exc
        try:
            idx = np.array(sorted(u.select_atoms(selection).indices), dtype=int)
        except Exception as exc:
            raise UserInputError(f"bad ML selection {selection!r}: {exc}") from exc
    if len(idx) == 0:
        raise UserInputError(f"the ML region {selection or group!r} selects no atoms")
    return idx


def region_bonds(structure, indices) -> list[tuple[int, int]]:
    """Bonds among the atoms ``indices`` (0-based, sorted) of a ParmEd ``structure``, as pairs of
    positions in ``indices``."""
    pos_of = {int(a): k for k, a in enumerate(indices)}
    return sorted({(min(pos_of[b.atom1.idx], pos_of[b.atom2.idx]), max(pos_of[b.atom1.idx], pos_of[b.atom2.idx]))
                   for b in structure.bonds if b.atom1.idx in pos_of and b.atom2.idx in pos_of})


def ml_region(top, gro, selection: Optional[str] = None, ndx=None, group: Optional[str] = None,
              structure=None) -> MLRegion:
    """The ML region of the system ``top`` + ``gro``; checks that it holds whole molecules.

    structure: an already loaded ParmEd structure of the same system (saves re-reading).
    """
    idx = select_indices(gro, selection, ndx, group)
    if structure is None:
        from .gromacs import load_gromacs

        structure = load_gromacs(top, gro)
    n = len(structure.atoms)
    if idx[-1] >= n:
        raise UserInputError(f"ML atom {idx[-1] + 1} (1-based) beyond the {n} atoms of {top}")
    inside = np.zeros(n, dtype=bool)
    inside[idx] = True
    for b in structure.bonds:
        if inside[b.atom1.idx] != inside[b.atom2.idx]:
            raise UserInputError(f"the ML region cuts the bond {b.atom1.idx + 1}-{b.atom2.idx + 1} (1-based; "
                                 f"{b.atom1.residue.name}:{b.atom1.name}-{b.atom2.residue.name}:{b.atom2.name}); "
                                 "it must consist of whole molecules")
    z = np.array([structure.atoms[i].atomic_number for i in idx], dtype=int)
    if np.any(z <= 0):
        raise UserInputError("the topology does not give atomic numbers for every ML atom")
    q = np.array([structure.atoms[i].charge for i in idx], dtype=float)
    desc = selection if selection is not None else f"[ {group} ] in {ndx}"
    bonds = region_bonds(structure, idx)
    if len(idx) > 1:
        try:
            spanning_tree(len(idx), bonds)  # one molecule, or a one-line refusal
        except UserInputError as exc:
            raise UserInputError(f"{exc} (selection {desc!r})") from None
    return MLRegion(indices=idx, atomic_numbers=z, charges=q, description=desc, bonds=bonds)


def check_region_geometry(indices, bonds, structure) -> float:
    """Refuse (one line) an ML molecule that spans half the box or more in ``structure`` (ParmEd, with
    coordinates and box); returns its largest intramolecular distance, Å. indices: 0-based atoms;
    bonds: pairs of positions in ``indices``."""
    from .pbc import WholeMaker, check_within_half_box

    idx = np.asarray(indices, dtype=int)
    pos = np.asarray(structure.coordinates, dtype=np.float64)[idx]
    cell = None
    if structure.box is not None:
        from parmed import unit as u

        cell = np.asarray(structure.box_vectors.value_in_unit(u.angstrom), dtype=np.float64)
    whole = WholeMaker(len(idx), bonds).whole(pos, cell)
    check_within_half_box(whole, cell)
    d = whole[:, None, :] - whole[None, :, :]
    return float(np.sqrt(np.einsum("ijk,ijk->ij", d, d).max())) if len(idx) > 1 else 0.0

