"""MBAR's overlap matrix at equal samples per window (analysis/free_energy.py ``overlap_matrix``).

The matrix depends on the uncorrelated samples per state, not only on how the states' distributions overlap: windows
of the same length whose correlation times differ 20 – 30× (as on the ethanol endpoint legs, 78 – 2251 uncorrelated
samples per window) give neighbour overlaps below 0.03 from all samples where equal numbers give ~0.3. The
diagnostic (smallest neighbour overlap, its warning, the stored matrix) is taken at equal numbers; ΔG and σ use
every sample. Poor overlap still warns, at equal or unequal numbers. Synthetic windows with known distributions
(the builders of tests/test_endpoint.py and tests/test_analysis.py); a slow window holds 100 independent samples
each repeated 50 times (the same frames, ~25× fewer uncorrelated samples).
"""
from __future__ import annotations

import numpy as np

from mdi_mlmm.analysis import endpoint
from mdi_mlmm.analysis import free_energy as fe
from mdi_mlmm.analysis.report import MIN_OVERLAP, estimate_windows
from tests.test_analysis import harmonic_windows
from tests.test_endpoint import T, exact, gaussian_leg

REPEAT = 50


def _slow(w: endpoint.WindowSamples) -> endpoint.WindowSamples:
    """The window's first len/REPEAT samples, each held for REPEAT frames: as many frames, REPEAT× the correlation."""
    k = len(w.delta_u) // REPEAT
    return endpoint.WindowSamples(w.lam, w.time_ps, np.repeat(w.delta_u[:k], REPEAT), np.repeat(w.e_ml[:k], REPEAT))


def _legs(sigma, lambdas, slow, n=3000, seed=1):
    """estimate_leg of equal-length windows (``slow``: the indices of the slow ones), and the same fit with the
    matrix of all samples (the overlap before equal numbers)."""
    ws = [_slow(w) if k in slow else w for k, w in enumerate(gaussian_leg(0.0, sigma, lambdas, n=n, seed=seed))]
    new = endpoint.estimate_leg(ws, T, "water")
    old, fe.UNEQUAL_SAMPLES = fe.UNEQUAL_SAMPLES, float("inf")
    try:
        raw = endpoint.estimate_leg(ws, T, "water")
    finally:
        fe.UNEQUAL_SAMPLES = old
    return new, raw


def _warns(leg):
    return any("overlap between" in w for w in leg.warnings)


def test_leg_overlap_is_taken_at_equal_samples():
    new, raw = _legs(1.0, [0.0, 0.5, 1.0], slow={2})
    n = [s["uncorrelated"] for s in new.samples]
    assert {s["frames"] for s in new.samples} == {3000} and max(n) >= 20 * min(n), n
    assert raw.min_neighbour_overlap < endpoint.MIN_OVERLAP and _warns(raw)       # what all samples gave
    assert new.min_neighbour_overlap > 0.15 and not _warns(new), (new.overlap, new.warnings)
    # ΔA and σ from every sample, as before
    assert new.dA == raw.dA and abs(new.dA["MBAR"].value - exact(0.0, 1.0)) < 4 * new.dA["MBAR"].error


def test_poor_leg_overlap_warns_at_equal_and_unequal_samples():
    for slow in (set(), {1}, {0}):
        new, _ = _legs(4.0, [0.0, 1.0], slow=slow, n=1500, seed=3)
        assert new.min_neighbour_overlap < endpoint.MIN_OVERLAP and _warns(new), (slow, new.overlap)


def test_direct_route_overlap_is_taken_at_equal_samples(monkeypatch):
    """The direct route (and the MM decoupling of the endpoint route, unsplit and split in two stages at the slow
    window): windows of 3000 frames, the middle one correlated (AR(1), ρ = 0.97), through the report's trimming and
    decorrelation."""
    ks = [1.0, 4.0, 16.0, 64.0, 256.0]
    u, d = harmonic_windows(ks, n=3000, seed=1)
    us, ds = harmonic_windows(ks, n=3000, seed=2, corr=0.97)
    u[2], d[2] = us[2], ds[2]
    for boundary in (None, 2):
        new, info, *_ = estimate_windows(u, d, 0.1, T, boundary)
        n = [i["uncorrelated_u_nk"] for i in info]
        assert max(n) >= 20 * min(n), n
        assert new.min_neighbour_overlap > 0.15, (boundary, new.overlap)
        monkeypatch.setattr(fe, "UNEQUAL_SAMPLES", float("inf"))
        raw, *_ = estimate_windows(u, d, 0.1, T, boundary)
        monkeypatch.undo()
        assert raw.min_neighbour_overlap < MIN_OVERLAP, (boundary, raw.overlap)        # what all samples gave
        assert (new.MBAR, new.BAR, new.TI) == (raw.MBAR, raw.BAR, raw.TI)
    matrix = np.asarray(fe.estimate(u, d, T).overlap)
    assert matrix.shape == (5, 5) and np.allclose(matrix.sum(axis=1), 1.0)
