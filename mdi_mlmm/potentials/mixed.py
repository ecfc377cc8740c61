"""The λ-mixed solute potential of the endpoint route: E_λ = λ·E_ML + (1 − λ)·E_MM,intra.

A host's ML/MM dynamics already has every classical solute–solute term removed, so a host that
serves :class:`MixedPotential` as its ML engine samples

    U_λ = U_rest + U_solute–rest + (1 − λ)·E_MM,intra(solute) + λ·E_ML(solute),

λ = 0: the MM Hamiltonian (the solute's intramolecular energy is the force field's, in vacuum, as
with ``couple-intramol = no``); λ = 1: the ML/MM Hamiltonian. The ML model is any
:class:`~.base.Potential` (a registry model, or the batching model server's client); the
MM part is :class:`~.mm_intra.MMIntra`. The atoms the host sends must be the molecule of the
MM topology in its order (checked by element).

``mdi-mlmm engine --model ani2x --mix-lambda 0.5 --mm-intra-top gas/topol.top`` serves it.
At λ = 0 the ML model is not evaluated, at λ = 1 the MM part is not (their weight is zero).
Units: those of :class:`~.base.Potential` (Å, Hartree, Hartree/Å); :meth:`components` in kcal/mol.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .. import units
from ..errors import UserInputError
from .base import ATOMIC_NUMBER, Potential, Result
from .mm_intra import MMIntra

_KCAL_TO_HA = units.factor("energy", "kcal/mol", "hartree")


def check_lambda(lam) -> float:
    """λ as a float in [0, 1]; :class:`UserInputError` (one line) otherwise."""
    try:
        x = float(lam)
    except (TypeError, ValueError):
        x = float("nan")
    if not 0.0 <= x <= 1.0:
        raise UserInputError(f"the mixing λ must be a number from 0 (MM) to 1 (ML), got {lam!r}")
    return x


class MixedPotential(Potential):
    """E_λ = λ·E_ML + (1 − λ)·E_MM,intra of one molecule; forces likewise.

    ml: the ML potential; mm: the molecule's :class:`MMIntra`; lam: λ in [0, 1].
    """

    def __init__(self, ml: Potential, mm: MMIntra, lam: float):
        self.ml = ml
        self.mm = mm
        self.lam = check_lambda(lam)
        self.name = f"{getattr(ml, 'name', 'ml')}+mm_intra(lambda={self.lam:g})"
        self.accepts_charge = getattr(ml, "accepts_charge", False)

    @property
    def supported_elements(self):
        return self.ml.supported_elements

    def check_elements(self, elements: Sequence) -> list[str]:
        symbols = self.ml.check_elements(elements)
        z = [ATOMIC_NUMBER[s] for s in symbols]
        if len(z) != self.mm.n_atoms or list(z) != [int(v) for v in self.mm.atomic_numbers]:
            from .base import SYMBOLS

            mm = "".join(SYMBOLS[int(v)] for v in self.mm.atomic_numbers)
            raise UserInputError(f"the ML region ({len(z)} atoms, {''.join(symbols)}) is not the molecule of the MM "
                                 f"intramolecular topology ({self.mm.n_atoms} atoms, {mm}; {self.mm.description}) "
                                 f"in the same order")
        return symbols

    def _evaluate(self, symbols, positions, cells) -> Result:
        b, n = positions.shape[:2]
        self.check_elements(symbols)
        e = np.zeros(b)
        f = np.zeros((b, n, 3))
        if self.lam > 0.0:
            r = self.ml.compute_batch(symbols, positions, cells)
            e += self.lam * np.asarray(r.energy, dtype=np.float64).reshape(b)
            f += self.lam * np.asarray(r.forces, dtype=np.float64).reshape(b, n, 3)
        if self.lam < 1.0:
            e_mm, f_mm = self.mm.energy_forces(positions)
            e += (1.0 - self.lam) * e_mm * _KCAL_TO_HA
            f += (1.0 - self.lam) * f_mm * _KCAL_TO_HA
        return Result(energy=e, forces=f)

    def components(self, elements: Sequence, positions) -> tuple[np.ndarray, np.ndarray]:
        """(E_ML, E_MM,intra) in kcal/mol of B structures (B, N, 3) Å → two (B,) arrays; both
        are evaluated whatever λ (one batched ML call)."""
        pos = np.asarray(positions, dtype=np.float64)
        symbols = self.check_elements(elements)
        r = self.ml.compute_batch(symbols, pos)
        e_ml = np.asarray(r.energy, dtype=np.float64).reshape(len(pos)) * units.HARTREE_IN_KCAL_PER_MOL
        return e_ml, np.asarray(self.mm.energy(pos)).reshape(len(pos))

    def describe(self) -> str:
        return f"{self.lam:g}·{self.ml.describe()} + {1 - self.lam:g}·E_MM,intra ({self.mm.description})"


def mixed_potential(ml: Potential, lam: float, top, *, moleculetype: Optional[str] = None,
                    atoms: Optional[Sequence[int]] = None) -> MixedPotential:
    """:class:`MixedPotential` of ``ml`` and the molecule of the GROMACS topology ``top``
    (see :meth:`MMIntra.from_gromacs` for ``moleculetype`` / ``atoms``; a gas-phase ``topol.top``
    needs neither)."""
    lam = check_lambda(lam)
    return MixedPotential(ml, MMIntra.from_gromacs(top, moleculetype=moleculetype, atoms=atoms), lam)
