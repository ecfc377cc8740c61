"""Trivial potentials for benchmarks and plumbing tests (no torch)."""
from __future__ import annotations

import numpy as np

from .base import ATOMIC_NUMBER, Potential, Result


class ZeroPotential(Potential):
    """E = 0, F = 0 for any element: measures coupling overhead alone."""

    name = "zero"
    supported_elements = tuple(ATOMIC_NUMBER)
    accepts_charge = True

    def _evaluate(self, symbols, positions, cells) -> Result:
        b, n, _ = positions.shape
        return Result(energy=np.zeros(b), forces=np.zeros((b, n, 3)))


class HarmonicPotential(Potential):
    """E = ½ k Σ |x_i − x̄|² (Hartree, Å): a cheap analytic potential for plumbing tests.

    k in Hartree/Å²; translation invariant, so forces sum to zero.
    """

    name = "harmonic"
    supported_elements = tuple(ATOMIC_NUMBER)
    accepts_charge = True

    def __init__(self, k: float = 0.01):
        self.k = float(k)

    def _evaluate(self, symbols, positions, cells) -> Result:
        d = positions - positions.mean(axis=1, keepdims=True)
        return Result(energy=0.5 * self.k * (d ** 2).sum(axis=(1, 2)), forces=-self.k * d)
