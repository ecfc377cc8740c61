"""The interface every ML potential implements. Knows nothing about MDI.

Units: positions and cells in Å, energies in Hartree, forces in Hartree/Å.
Energies are absolute totals (including the model's atomic self energies).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import UnsupportedElementError, UserInputError

# Symbols by atomic number (index 0 unused); enough for every model we ship.
SYMBOLS = [
    "X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S",
    "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge",
    "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd",
    "In", "Sn", "Sb", "Te", "I", "Xe",
]
ATOMIC_NUMBER = {s: z for z, s in enumerate(SYMBOLS) if z}


def to_symbols(elements: Sequence) -> list[str]:
    """Normalise element symbols or atomic numbers to capitalised symbols."""
    out = []
    for e in elements:
        if isinstance(e, (int, np.integer)):
            if not 0 < int(e) < len(SYMBOLS):
                raise UserInputError(f"unknown atomic number {e}")
            out.append(SYMBOLS[int(e)])
        else:
            s = str(e).strip().capitalize()
            if s not in ATOMIC_NUMBER:
                raise UserInputError(f"unknown element symbol {e!r}")
            out.append(s)
    return out


def torch_device(spec: str = "cpu"):
    """A torch device from ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when available, else cpu).

    Raises :class:`~mdi_mlmm.errors.ModelError` in one line when CUDA is asked for but absent.
    """
    import torch

    from ..errors import ModelError

    s = (spec or "cpu").strip().lower()
    if s == "auto":
        s = "cuda" if torch.cuda.is_available() else "cpu"
    if s.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(f"--device {spec}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu")
        try:
            dev = torch.device(s)
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise ModelError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible")
            return dev
        except RuntimeError as exc:
            raise ModelError(f"--device {spec}: {exc}") from exc
    if s != "cpu":
        raise ModelError(f"--device must be cpu, cuda, cuda:N or auto, got {spec!r}")
    return torch.device("cpu")


@dataclass
class Result:
    """One evaluation.

    energy: Hartree, shape () or (B,) for a batch.
    forces: Hartree/Å, shape (N, 3) or (B, N, 3).
    """

    energy: np.ndarray
    forces: np.ndarray


class Potential:
    """Base class. Subclasses set ``name``, ``supported_elements`` and implement ``_evaluate``."""

    name: str = "potential"
    supported_elements: tuple[str, ...] = ()
    #: whether the model accepts a non-zero net charge
    accepts_charge: bool = False

    def check_elements(self, elements: Sequence) -> list[str]:
        """Return symbols; raise :class:`UnsupportedElementError` naming bad atoms.

        The last accepted element list is remembered: an MD engine asks about the same one every step.
        """
        key = tuple(elements)
        last = getattr(self, "_checked", None)
        if last is not None and last[0] == key:
            return list(last[1])
        symbols = to_symbols(elements)
        bad = [(i, s) for i, s in enumerate(symbols) if s not in self.supported_elements]
        if bad:
            listed = ", ".join(f"{s}{i}" for i, s in bad[:10]) + (" ..." if len(bad) > 10 else "")
            raise UnsupportedElementError(
                f"model {self.name} cannot describe atom(s) {listed} (0-based index); "
                f"it supports only {' '.join(self.supported_elements)}"
            )
        self._checked = (key, tuple(symbols))
        return symbols

    def compute(self, elements: Sequence, positions, cell=None) -> Result:
        """Energy (Hartree) and forces (Hartree/Å) of one structure.

        elements: N symbols or atomic numbers; positions: (N, 3) Å;
        cell: optional (3, 3) Å row vectors (periodic in all three directions).
        """
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] != 3:
            raise UserInputError(f"positions must have shape (N, 3), got {pos.shape}")
        r = self.compute_batch(elements, pos[None], None if cell is None else np.asarray(cell)[None])
        return Result(energy=r.energy[0], forces=r.forces[0])

    def compute_batch(self, elements: Sequence, positions, cells=None) -> Result:
        """Energies (B,) Hartree and forces (B, N, 3) Hartree/Å for B structures of one molecule.

        positions: (B, N, 3) Å; cells: optional (B, 3, 3) Å.
        """
        symbols = self.check_elements(elements)
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim != 3 or pos.shape[1:] != (len(symbols), 3):
            raise UserInputError(f"positions must have shape (B, {len(symbols)}, 3), got {pos.shape}")
        if not np.all(np.isfinite(pos)):
            raise UserInputError("positions contain NaN or inf")
        if cells is not None:
            cells = np.asarray(cells, dtype=np.float64).reshape(pos.shape[0], 3, 3)
        return self._evaluate(symbols, pos, cells)

    def _evaluate(self, symbols: list[str], positions: np.ndarray, cells) -> Result:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:
        return self.name
