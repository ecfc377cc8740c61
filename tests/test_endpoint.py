"""The endpoint route's estimators (analysis/endpoint.py) and ΔU files (analysis/delta_u.py) on
synthetic data with a closed-form answer.

If ΔU = E_ML − E_MM is Gaussian N(μ, σ²) under U_0 (λ = 0), then under U_λ = U_0 + λ·ΔU it is
N(μ − βλσ², σ²), and ΔA(0 → 1) = −kT ln⟨exp(−βΔU)⟩_0 = μ − βσ²/2 exactly.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from mdi_mlmm import units
from mdi_mlmm.analysis import endpoint
from mdi_mlmm.analysis.delta_u import read_delta_u, write_delta_u
from mdi_mlmm.analysis.results import Estimate
from mdi_mlmm.errors import AnalysisError

T = 298.15
BETA = 1.0 / units.kT_kcal(T)


def gaussian_leg(mu, sigma, lambdas, n=3000, seed=0, e_mm=-20.0, labels=None):
    """Independent ΔU samples of each window (exact distributions); E_ML = ΔU + a constant E_MM.
    n: samples per window, or one number per window."""
    rng = np.random.default_rng(seed)
    out = []
    for k, lam in enumerate(lambdas):
        nk = n[k] if isinstance(n, (list, tuple)) else n
        du = rng.normal(mu - BETA * lam * sigma ** 2, sigma, nk)
        lab = lam if labels is None else labels[k]
        out.append(endpoint.WindowSamples(lab, np.arange(nk) * 0.01, du, du + e_mm))
    return out


def exact(mu, sigma):
    return mu - BETA * sigma ** 2 / 2


def test_u_nk_is_alchemlyb_format():
    w = gaussian_leg(5.0, 1.0, [0.0, 0.5, 1.0], n=10)
    frames = endpoint.u_nk_frames(w, T, offset=5.0)
    df = frames[1]
    assert list(df.index.names) == ["time", endpoint.LAMBDA_LEVEL] and list(df.columns) == [0.0, 0.5, 1.0]
    assert df.attrs == {"temperature": T, "energy_unit": "kT"}
    np.testing.assert_allclose(df[0.0], 0.0)
    np.testing.assert_allclose(df[1.0].to_numpy(), BETA * (w[1].delta_u - 5.0))
    np.testing.assert_allclose(df[0.5].to_numpy(), 0.5 * df[1.0].to_numpy())


@pytest.mark.parametrize("mu,sigma,offset", [(-97213.4, 1.5, None), (12.0, 0.6, 0.0), (-3.0, 1.3, 0.0)])
def test_leg_matches_closed_form(mu, sigma, offset):
    """ΔU with absolute ML energies (the leg's median ΔU subtracted and added back) and small ΔU
    (nothing subtracted, so ΔA comes from the estimator alone); 3 windows, the λ = 0 one longest
    (the median is then not the answer)."""
    leg = endpoint.estimate_leg(gaussian_leg(mu, sigma, [0.0, 0.5, 1.0], n=[4000, 1000, 1000], seed=1), T,
                                "gas", offset=offset)
    ref = exact(mu, sigma)
    assert abs(ref - leg.offset) > 0.3  # the estimator's part is not negligible
    for name in ("MBAR", "BAR"):
        est = leg.dA[name]
        assert 0.0 < est.error < 0.05, (name, est)
        assert abs(est.value - ref) < 4 * est.error, (name, est.value, ref, est.error)
    assert leg.min_neighbour_overlap > 0.1 and not leg.warnings
    assert leg.samples[0]["frames"] == 4000 and leg.samples[0]["after_trim"] == 3600
    # ⟨E_ML⟩ at λ = 1: E_ML = ΔU − 20, ΔU ~ N(μ − βσ², σ²)
    assert abs(leg.e_ml.mean - (mu - BETA * sigma ** 2 - 20.0)) < 4 * leg.e_ml.error
    json.dumps(leg.to_json())


def test_wrong_sampling_is_detected():
    """The same data with the λ labels of the windows swapped must give a wrong ΔA (the estimator
    really uses the samples: this is the failure the closed-form test guards against)."""
    mu, sigma = 3.0, 1.0
    good = endpoint.estimate_leg(gaussian_leg(mu, sigma, [0.0, 0.5, 1.0], seed=2), T, "water")
    bad = endpoint.estimate_leg(gaussian_leg(mu, sigma, [0.0, 0.5, 1.0], seed=2, labels=[1.0, 0.5, 0.0]), T, "water")
    ref = exact(mu, sigma)
    assert abs(good.dA["MBAR"].value - ref) < 4 * good.dA["MBAR"].error
    assert abs(bad.dA["MBAR"].value - ref) > 20 * bad.dA["MBAR"].error


def test_poor_overlap_warns():
    leg = endpoint.estimate_leg(gaussian_leg(0.0, 4.0, [0.0, 1.0], n=500, seed=3), T, "water")
    assert leg.min_neighbour_overlap < endpoint.MIN_OVERLAP
    assert any("overlap between λ = 0 and 1" in w for w in leg.warnings)
    leg = endpoint.estimate_leg(gaussian_leg(0.0, 0.5, [0.0, 1.0], n=15, seed=3), T, "gas")
    assert any("fewer than 20 uncorrelated samples" in w for w in leg.warnings)


def test_cycle():
    water = endpoint.estimate_leg(gaussian_leg(-97210.0, 1.2, [0.0, 0.25, 0.5, 0.75, 1.0], seed=4, e_mm=-30.0),
                                  T, "water")
    gas = endpoint.estimate_leg(gaussian_leg(-97205.0, 0.8, [0.0, 0.5, 1.0], seed=5, e_mm=-25.0), T, "gas")
    mm = Estimate(-4.2, 0.1)
    r = endpoint.cycle(mm, water, gas)
    ref = -4.2 + exact(-97210.0, 1.2) - exact(-97205.0, 0.8)
    for name in ("MBAR", "BAR"):
        dg = r.dG[name]
        assert dg.error == pytest.approx(np.sqrt(0.1 ** 2 + water.dA[name].error ** 2 + gas.dA[name].error ** 2))
        assert abs(dg.value - ref) < 4 * dg.error
    # reorganization: ⟨E_ML⟩ at λ = 1, water − gas
    reorg_ref = (-97210.0 - BETA * 1.2 ** 2 - 30.0) - (-97205.0 - BETA * 0.8 ** 2 - 25.0)
    assert abs(r.reorg.value - reorg_ref) < 4 * r.reorg.error
    assert r.combined["MBAR"].value == pytest.approx(r.dG["MBAR"].value + r.reorg.value)
    d = r.to_json()
    assert d["route"] == "endpoint" and set(d) >= {"dG_MBAR", "dG_BAR", "dG_reorg", "dG_MBAR_plus_reorg", "water", "gas"}
    assert "ΔG_hyd(ML/MM) MBAR" in str(r)


def test_bad_lambdas():
    with pytest.raises(AnalysisError, match="from 0 to 1"):
        endpoint.estimate_leg(gaussian_leg(0.0, 1.0, [0.0, 0.5], n=50), T, "gas")


def test_delta_u_csv_roundtrip_and_damage(tmp_path):
    p = write_delta_u(tmp_path / "delta_u.csv", [0.0, 0.1, 0.2], [-97000.5, -97001.0, -96999.0], [3.0, 2.5, 4.0])
    d = read_delta_u(p)
    np.testing.assert_allclose(d["delta_u"], [-97003.5, -97003.5, -97003.0])
    leg = endpoint.read_leg([p, p], [0.0, 1.0])
    assert leg[1].lam == 1.0 and len(leg[1].e_ml) == 3
    lines = p.read_text().splitlines()
    p.write_text("\n".join(lines[:2] + [lines[2].replace("-97003.5", "-97000.0")] + lines[3:]) + "\n")
    with pytest.raises(AnalysisError, match="line 3"):
        read_delta_u(p)


def test_unconverged_sampling_warns():
    """A window whose ΔU drifts (its second half sampled another state) is caught by the halves check;
    stationary data of the same size is not."""
    ok = endpoint.estimate_leg(gaussian_leg(0.0, 0.8, [0.0, 0.5, 1.0], n=1000, seed=6), T, "water")
    assert ok.halves is not None and not ok.warnings
    drift = gaussian_leg(0.0, 0.8, [0.0, 0.5, 1.0], n=1000, seed=6)
    du = drift[1].delta_u.copy()
    du[500:] += 0.3
    drift[1] = endpoint.WindowSamples(0.5, drift[1].time_ps, du, du - 20.0)
    bad = endpoint.estimate_leg(drift, T, "water")
    assert any("first and the second half" in w for w in bad.warnings), bad.warnings
    assert abs(bad.halves[0].value - bad.halves[1].value) > 0.1
    assert bad.to_json()["dA_MBAR_halves"][0]["value"] == bad.halves[0].value


def test_endpoint_results_and_report_say_how_the_run_was_made(tmp_path, monkeypatch):
    """The endpoint analysis of a synthetic run records the plan's physical model, the legs' X–H treatment,
    the ML precision and both time steps in results.json and report.md; results written before these were
    recorded still load. The MM windows are written in the LAMMPS CSV layout and read through it (the GROMACS
    xvg reader is the only part replaced)."""
    import dataclasses

    from mdi_mlmm import load_result
    from mdi_mlmm.analysis import report
    from mdi_mlmm.analysis.delta_u import write_delta_u
    from mdi_mlmm.analysis.endpoint_report import EndpointRunResult, report_markdown
    from tests.test_report_warnings import _synthetic_run

    plan = _synthetic_run(tmp_path / "run", host="gromacs", route="endpoint", protocol="freesolv",
                          constraints="h-bonds", dtype="float64", dt_fs=2.0, leg_dt_fs=1.5, leg_ps=0.3,
                          leg_equil_ps=0.03, leg_sample_every=10)
    for ph, mu in (("water", -97010.0), ("gas", -97000.0)):
        for k, leg in enumerate(gaussian_leg(mu, 0.3, plan.leg_lambdas, n=300, seed=len(ph))):
            plan.path("legs", ph, f"{k:02d}").mkdir(parents=True)
            write_delta_u(plan.path("legs", ph, f"{k:02d}", "delta_u.csv"), leg.time_ps, leg.e_ml,
                          leg.e_ml - leg.delta_u)
    load_windows = report.load_windows
    monkeypatch.setattr(report, "load_windows", lambda p, d: load_windows(dataclasses.replace(p, host="lammps"), d))
    report.analyze(plan.root, plots=False)
    d = json.loads(plan.path("analysis", "results.json").read_text())
    assert (d["protocol"], d["constraints"], d["dtype"]) == (plan.protocol, plan.constraints, plan.dtype) == \
        ("freesolv", "h-bonds", "float64")
    assert (d["legs"]["dt_fs"], d["legs"]["mm_dt_fs"], d["legs"]["constraints"]) == (1.5, 2.0, "h-bonds")
    assert (d["mm"]["protocol"], d["mm"]["constraints"], d["mm"]["dtype"], d["mm"]["dt_fs"]) == \
        ("freesolv", "h-bonds", None, 2.0)                              # the MM part loads no model
    back = load_result(plan.root)
    assert (back.protocol, back.constraints, back.dtype) == ("freesolv", "h-bonds", "float64")
    md = plan.path("analysis", "report.md").read_text()
    assert "Model: **ani2x**, ML precision **float64**, protocol: **freesolv**; legs on **gromacs**" in md
    assert "1.5 fs, X–H constrained" in md and "2 fs, h-bond constraints" in md
    # results.json of an older version: none of these keys
    old = {k: v for k, v in d.items() if k not in ("protocol", "constraints", "dtype")}
    old["legs"] = {k: v for k, v in d["legs"].items() if k != "constraints"}
    r = EndpointRunResult.from_json(old)
    assert (r.protocol, r.constraints, r.dtype) == (None, None, None)
    md = report_markdown(old)
    assert "ML precision **unknown**, protocol: **unknown**;" in md and "1.5 fs, flexible" in md
