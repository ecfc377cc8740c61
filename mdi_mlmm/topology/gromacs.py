"""Reading a GROMACS system (``.top`` + ``.gro``) into a ParmEd structure.

Used by the ML region (:mod:`.mlregion`), the LAMMPS converter and the LAMMPS windows. Units:
ParmEd's (Å, e); the box comes from the ``.gro``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import UserInputError


def load_gromacs(top, gro, defines: Optional[dict] = None):
    """ParmEd structure of a GROMACS ``top`` with coordinates and box from ``gro``."""
    import parmed

    top, gro = Path(top), Path(gro)
    for p in (top, gro):
        if not p.is_file():
            raise UserInputError(f"no such file: {p}")
    try:
        return parmed.load_file(str(top), xyz=str(gro), defines=defines)
    except Exception as exc:  # ParmEd raises many kinds
        _check_atom_counts(top, gro, defines)
        raise UserInputError(f"cannot read GROMACS system {top} + {gro}: {exc}") from exc


def _check_atom_counts(top: Path, gro: Path, defines: Optional[dict]) -> None:
    """After a failed load: if ``gro`` and ``top`` hold different numbers of atoms, say so
    (ParmEd's own message is a numpy reshape error); otherwise return and let the caller report."""
    import parmed

    try:
        n_gro = int(gro.read_text(errors="replace").splitlines()[1].split()[0])
        n_top = len(parmed.load_file(str(top), defines=defines).atoms)
    except Exception:  # either file unreadable on its own: the caller's message stands
        return
    if n_gro != n_top:
        raise UserInputError(f"{gro} has {n_gro} atoms but {top} has {n_top}: they do not describe the same system")
