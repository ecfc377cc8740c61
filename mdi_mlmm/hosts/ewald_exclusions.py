"""The reciprocal-space Coulomb of excluded ML–ML pairs that an MM engine leaves in beyond
its real-space cutoff, and its exact removal (numpy; host-independent).

An Ewald/PME/PPPM engine computes the reciprocal-space energy of *all* charge pairs,
excluded ones included, and then subtracts q_i q_j erf(β r)/r for every excluded pair —
but only for pairs its neighbour list holds: LAMMPS ``coul/long`` special pairs and GROMACS
nbnxm exclusions are corrected for r < r_c only. For every ML–ML pair at r ≥ r_c the term

    L(x) = k Σ_{i<j, r_ij ≥ r_c} q_i q_j erf(β r_ij) / r_ij

stays in E_MM, although the ML potential already describes the whole molecule. A molecule
wider than the cutoff (most drugs, every protein ligand) is then counted twice.
:class:`FarPairCorrection` computes L, its forces and its virial over the whole molecule so
that a host can add −L. Together with the engine's own in-cutoff correction this removes
the ML–ML Coulomb of every pair at any distance, real and reciprocal part; what stays is
the ML atoms' interaction with their own periodic images (as in any exclusion scheme,
OpenMM's NonbondedForce exceptions included).

Units: Å, e, kcal/mol (LAMMPS ``real``); ``coulomb_constant`` in kcal·Å/(mol·e²)
(LAMMPS ``qqr2e``, 332.06371). Distances are those of the molecule made whole; the caller
checks it spans less than half the box (:func:`~mdi_mlmm.topology.pbc.check_within_half_box`).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy.special import erf

TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


class FarPairCorrection:
    """L(x) of the ML–ML pairs beyond ``cutoff_A`` (module docstring).

    charges: (n,) e of the ML atoms (the charges the engine uses now); beta: Ewald
    splitting parameter, 1/Å; cutoff_A: the engine's real-space Coulomb cutoff, Å.
    """

    def __init__(self, charges, beta: float, cutoff_A: float, coulomb_constant: float):
        q = np.asarray(charges, dtype=np.float64)
        n = len(q)
        self.n = n
        self.i, self.j = np.triu_indices(n, 1)
        self.qq = float(coulomb_constant) * q[self.i] * q[self.j]
        self.beta = float(beta)
        self.rc2 = float(cutoff_A) ** 2
        self.n_far = 0

    def leftover(self, whole: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(L kcal/mol, ∂-force of L on each atom (n, 3) kcal/mol/Å = −∇L, virial Σ r ⊗ F (3, 3) kcal/mol)
        for whole-molecule positions ``whole`` (n, 3) Å. Forces and virial are those of +L: a host
        that removes L adds their negatives."""
        x = np.asarray(whole, dtype=np.float64)
        f = np.zeros((self.n, 3))
        if self.n < 2:
            return 0.0, f, np.zeros((3, 3))
        d = x[self.j] - x[self.i]
        r2 = np.einsum("ij,ij->i", d, d)
        far = r2 >= self.rc2
        self.n_far = int(far.sum())
        if not self.n_far:
            return 0.0, f, np.zeros((3, 3))
        d, r2, qq = d[far], r2[far], self.qq[far]
        r = np.sqrt(r2)
        br = self.beta * r
        e_pair = qq * erf(br) / r
        # dE/dr = qq [2β/√π exp(−β²r²)/r − erf(βr)/r²]; force on j = −dE/dr d/r
        dedr = qq * TWO_OVER_SQRT_PI * self.beta * np.exp(-br * br) / r - e_pair / r
        fj = (-dedr / r)[:, None] * d
        np.add.at(f, self.j[far], fj)
        np.add.at(f, self.i[far], -fj)
        vir = d.T @ fj  # Σ_pairs d ⊗ f_j = Σ_atoms r ⊗ F
        return float(e_pair.sum()), f, vir

    @staticmethod
    def virial6(w: np.ndarray) -> list[float]:
        """(3, 3) → [xx, yy, zz, xy, xz, yz] (LAMMPS order), symmetrised."""
        return [w[0, 0], w[1, 1], w[2, 2], 0.5 * (w[0, 1] + w[1, 0]), 0.5 * (w[0, 2] + w[2, 0]),
                0.5 * (w[1, 2] + w[2, 1])]


def max_pair_distance(whole: np.ndarray) -> float:
    """Largest intramolecular distance (Å) of whole-molecule positions (n, 3) Å."""
    x = np.asarray(whole, dtype=np.float64)
    if len(x) < 2:
        return 0.0
    d = x[:, None, :] - x[None, :, :]
    return float(np.sqrt(np.einsum("ijk,ijk->ij", d, d).max()))


def needs_correction(whole: np.ndarray, cutoff_A: float, margin_A: float = 0.0) -> bool:
    """Whether any intramolecular distance reaches ``cutoff_A - margin_A``."""
    return max_pair_distance(whole) >= cutoff_A - margin_A


__all__ = ["FarPairCorrection", "max_pair_distance", "needs_correction"]
