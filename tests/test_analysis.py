"""Analysis on data with known answers (no simulation): TI/MBAR/BAR, reorganization energy, report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mdi_mlmm import units
from mdi_mlmm.analysis import free_energy as fe
from mdi_mlmm.analysis.reorg import mean_with_error, reorganization
from mdi_mlmm.protocol.outputs import write_window_frames

T = 298.15


def harmonic_windows(ks, n=4000, seed=0, corr=0.0):
    """Samples from u_k(x) = k x²/2 (kT) for each stiffness k; exact ΔF_0→K = ½ ln(k_K/k_0) kT.

    Shaped like alchemlyb's GROMACS output with a single 'vdw-lambda' component; dH/dλ for
    k(λ) = k0 + λ (k1 − k0) is (k1 − k0) x²/2.
    """
    rng = np.random.default_rng(seed)
    lambdas = np.linspace(0, 1, len(ks))
    u_frames, d_frames = [], []
    for i, (lam, k) in enumerate(zip(lambdas, ks)):
        z = rng.normal(size=n)
        if corr:  # AR(1) correlated samples with the same stationary distribution
            for t in range(1, n):
                z[t] = corr * z[t - 1] + np.sqrt(1 - corr ** 2) * z[t]
        x = z / np.sqrt(k)
        idx = pd.MultiIndex.from_arrays([np.arange(n) * 1.0, np.full(n, lam)], names=["time", "vdw-lambda"])
        u = pd.DataFrame({lj: 0.5 * kj * x ** 2 for lj, kj in zip(lambdas, ks)}, index=idx)
        d = pd.DataFrame({"vdw": 0.5 * (ks[-1] - ks[0]) * x ** 2}, index=idx)
        for df in (u, d):
            df.attrs = {"temperature": T, "energy_unit": "kT"}
        u_frames.append(u)
        d_frames.append(d)
    return u_frames, d_frames


def test_mbar_bar_ti_recover_exact_free_energy():
    ks = np.linspace(1.0, 4.0, 11)  # linear k(λ): TI integrand smooth
    u, d = harmonic_windows(ks)
    est = fe.estimate(u, d, T)
    exact = 0.5 * np.log(ks[-1] / ks[0]) * units.kT_kcal(T)
    for k in ("MBAR", "BAR", "TI"):
        v, e = getattr(est, k).value, getattr(est, k).error
        assert abs(v - exact) < max(4 * e, 0.01), (k, v, e, exact)
    assert np.asarray(est.overlap).shape == (11, 11)


def test_decorrelation_reduces_samples_and_keeps_answer():
    ks = np.linspace(1.0, 2.0, 6)
    u, d = harmonic_windows(ks, n=3000, corr=0.9, seed=2)
    pre = [fe.preprocess(a, b, 0.1) for a, b in zip(u, d)]
    assert all(p[2]["uncorrelated_u_nk"] < 0.5 * p[2]["after_trim"] for p in pre)
    est = fe.estimate([p[0] for p in pre], [p[1] for p in pre], T)
    exact = 0.5 * np.log(2.0) * units.kT_kcal(T)
    assert abs(est.MBAR.value - exact) < max(4 * est.MBAR.error, 0.02)


def test_window_csv_roundtrip_is_alchemlyb_shaped(tmp_path):
    """The LAMMPS host's CSV format reads back into the DataFrames alchemlyb's gmx parser makes."""
    sched = [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (1.0, 0.5), (1.0, 1.0)]
    n = 50
    rng = np.random.default_rng(1)
    idx = pd.MultiIndex.from_arrays([np.arange(n) * 0.2, np.full(n, 0.5), np.full(n, 0.0)],
                                    names=["time", "coul-lambda", "vdw-lambda"])
    u = pd.DataFrame({s: rng.normal(size=n) for s in sched}, index=idx)
    d = pd.DataFrame({"coul": rng.normal(size=n), "vdw": rng.normal(size=n)}, index=idx)
    write_window_frames(u, d, tmp_path / "u.csv", tmp_path / "d.csv")
    u2, d2 = fe.read_window_frames(tmp_path / "u.csv", tmp_path / "d.csv", T)
    assert list(u2.columns) == sched and u2.index.names == ["time", "coul-lambda", "vdw-lambda"]
    np.testing.assert_allclose(u2.to_numpy(), u.to_numpy(), rtol=1e-12)
    assert u2.attrs == {"temperature": T, "energy_unit": "kT"} and list(d2.columns) == ["coul", "vdw"]


def test_mean_error_accounts_for_autocorrelation():
    rng = np.random.default_rng(3)
    n, phi = 20000, 0.95
    x = np.empty(n)
    x[0] = 0
    e = rng.normal(size=n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    m = mean_with_error(x, equil_fraction=0.0)
    naive = np.std(x) / np.sqrt(n)
    g_exact = (1 + phi) / (1 - phi)  # 39
    assert 0.6 * g_exact < m.g < 1.5 * g_exact
    assert m.error > 4 * naive


def test_reorganization_difference_of_means():
    rng = np.random.default_rng(4)
    water = -97000.0 + 2.0 + rng.normal(scale=1.5, size=4000)
    gas = -97000.0 + rng.normal(scale=1.4, size=4000)
    r = reorganization(water, gas)
    assert abs(r.value - 2.0) < 4 * r.error and 0.01 < r.error < 0.2


def test_window_csv_states_with_long_decimals_stay_matched(tmp_path):
    """λ = 1/3 must identify the sampled state exactly (MBAR looks the state up by value)."""
    sched = [(0.0, 0.0), (1.0, 0.0), (1.0, 1 / 3), (1.0, 2 / 3), (1.0, 1.0)]
    n = 40
    rng = np.random.default_rng(5)
    us, ds = [], []
    for c, v in sched:
        idx = pd.MultiIndex.from_arrays([np.arange(n) * 0.1, np.full(n, c), np.full(n, v)],
                                        names=["time", "coul-lambda", "vdw-lambda"])
        u = pd.DataFrame({s: rng.normal(scale=0.3, size=n) for s in sched}, index=idx)
        u[(c, v)] = 0.0
        d = pd.DataFrame({"coul": rng.normal(size=n), "vdw": rng.normal(size=n)}, index=idx)
        p = tmp_path / f"{len(us)}"
        p.mkdir()
        write_window_frames(u, d, p / "u.csv", p / "d.csv")
        u2, d2 = fe.read_window_frames(p / "u.csv", p / "d.csv", T)
        us.append(u2)
        ds.append(d2)
    est = fe.estimate(us, ds, T)
    assert np.isfinite(est.MBAR.value) and np.isfinite(est.BAR.value)


@pytest.mark.parametrize("first_use", [
    # the free-energy estimators (the levels must be set before the import, not after it)
    "from mdi_mlmm.analysis.free_energy import _quiet_imports; _quiet_imports(); from alchemlyb.estimators import MBAR",
    # the <E_ML> error (reorg.statistical_inefficiency, pymbar's timeseries) as the first estimator a process uses
    "import numpy as np; from mdi_mlmm.analysis.reorg import statistical_inefficiency; "
    "statistical_inefficiency(np.random.default_rng(0).normal(size=200))",
], ids=["estimators", "e_ml_mean"])
def test_the_analysis_logs_no_pymbar_banner(first_use):
    """pymbar logs a JAX banner at WARNING when imported; the analysis must import it quietly, so that a user's
    `mdi-mlmm analyze` shows the result, not pymbar's advice (each case fails on the code before b67b73d/e405a42)."""
    import subprocess
    import sys

    code = "import logging; logging.basicConfig(level=logging.INFO); " + first_use
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "JAX" not in out.stderr + out.stdout
