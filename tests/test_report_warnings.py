"""The direct route's report warns loudly when overlap or sampling cannot support the number."""
import json
import math

import pytest

from mdi_mlmm.analysis.report import MIN_OVERLAP, direct_warnings, load_result, report_markdown, summary_lines
from mdi_mlmm.analysis.results import Estimate, HydrationResult


def _result(overlap=0.2, uncorrelated=(200, 150, 300), ti=(-5.0, 0.2), mbar=(-5.1, 0.2)):
    return HydrationResult(run_dir="/r", model="mm", host="gromacs", temperature_K=298.15, windows=len(uncorrelated),
                           ns_per_window=0.1, dG={"TI": Estimate(*ti), "MBAR": Estimate(*mbar), "BAR": Estimate(*mbar)},
                           samples=[{"samples": 1000, "after_trim": 900, "uncorrelated_u_nk": n} for n in uncorrelated],
                           min_neighbour_overlap=overlap)


def test_a_sound_run_has_no_warnings():
    assert direct_warnings(_result()) == []


def test_each_reason_is_named():
    assert "overlap 0.010" in " ".join(direct_warnings(_result(overlap=0.01)))
    assert MIN_OVERLAP > 0.01
    w = direct_warnings(_result(uncorrelated=(200, 7, 300, 3)))
    assert len(w) == 1 and "windows [1, 3]" in w[0]
    w = direct_warnings(_result(ti=(-4.0, 0.1), mbar=(-5.0, 0.1)))
    assert len(w) == 1 and "TI and MBAR differ by 1.00" in w[0]
    w = direct_warnings(_result(mbar=(math.nan, math.nan), overlap=math.nan))
    assert any("MBAR is not a number" in x for x in w) and any("overlap is unknown" in x for x in w)


def test_warnings_are_loud_in_summary_and_report_and_survive_json():
    r = _result(overlap=0.0)
    r.warnings = direct_warnings(r)
    back = HydrationResult.from_json(r.to_json())
    assert back.warnings == r.warnings and back.warnings
    assert any("WARNING(S)" in line for line in summary_lines(back))
    assert "⚠ WARNINGS" in report_markdown(back)
    assert "WARNING" not in "\n".join(summary_lines(_result()))


def _synthetic_run(out, **kw):
    """A plan and λ windows of a tiny LAMMPS run written without running anything: harmonic u_nk
    (u_j = k_j x²/2 kT) per window, E_ML series of the end windows and the gas run."""
    import numpy as np
    import pandas as pd

    from mdi_mlmm.protocol.outputs import write_e_ml, write_window_frames
    from mdi_mlmm.protocol.plan import make_plan

    plan = make_plan(out, **{**dict(model="ani2x", host="lammps", smiles="CCO", windows=3, ns_per_window=0.001,
                                    dt_fs=0.5, temperature=298.15, sample_every=10, gas_ns=0.001, equil_ps=1,
                                    window_equil_ps=0.05, workers=1), **kw})
    plan.write()
    rng = np.random.default_rng(3)
    ks = np.linspace(1.0, 2.0, len(plan.schedule))
    n = 400
    for w, k in zip(plan.windows, ks):
        x = rng.normal(size=n) / np.sqrt(k)
        idx = pd.MultiIndex.from_arrays([np.arange(n) * 0.005, np.full(n, w.coul), np.full(n, w.vdw)],
                                        names=["time", "coul-lambda", "vdw-lambda"])
        u = pd.DataFrame({tuple(s): 0.5 * kj * x ** 2 for s, kj in zip(plan.schedule, ks)}, index=idx)
        d = pd.DataFrame({"coul": 0.5 * x ** 2, "vdw": 0.5 * x ** 2}, index=idx)
        wd = plan.path(w.directory)
        wd.mkdir(parents=True, exist_ok=True)
        write_window_frames(u, d, wd / "u_nk.csv", wd / "dhdl.csv")
    if plan.ml:
        for d in (plan.windows[0].directory, plan.windows[-1].directory, "gas"):
            plan.path(d).mkdir(parents=True, exist_ok=True)
            write_e_ml(plan.path(d, "e_ml.csv"), np.arange(n) * 0.005, -97000.0 + rng.normal(size=n))
    return plan


def test_results_and_report_say_how_the_run_was_made(tmp_path):
    """results.json and report.md record the plan's time step, physical model, X–H treatment and ML precision."""
    from mdi_mlmm.analysis.report import analyze

    plan = _synthetic_run(tmp_path / "run", dtype="float64")
    res = analyze(plan.root, plots=False)
    d = json.loads(plan.path("analysis", "results.json").read_text())
    assert (d["dt_fs"], d["protocol"], d["constraints"], d["dtype"]) == (plan.dt_fs, plan.protocol, plan.constraints,
                                                                           plan.dtype) == (0.5, "default", "none",
                                                                                           "float64")
    assert (res.dt_fs, res.protocol, res.constraints, res.dtype) == (0.5, "default", "none", "float64")
    report = plan.path("analysis", "report.md").read_text()
    assert ("Model: **ani2x**, ML precision **float64**, host: **lammps**, protocol: **default**, solute flexible, "
            "T = 298.15 K, 3 λ windows × 0.001 ns at 0.5 fs.") in report
    # plain MM loads no model: no precision; the same through load_result
    mm = _synthetic_run(tmp_path / "mm", model="mm")
    analyze(mm.root, plots=False)
    back = load_result(mm.root)
    assert (back.dt_fs, back.protocol, back.constraints, back.dtype) == (0.5, "default", "none", None)
    assert "precision" not in mm.path("analysis", "report.md").read_text()


@pytest.mark.parametrize("model, protocol, constraints, expect", [
    ("ani2x", "freesolv", "h-bonds", ("freesolv", "h-bonds", "float32")),
    ("mm", "freesolv", "none", ("freesolv", "h-bonds", None)),        # FreeSolv's MM windows constrain X–H
    ("ani2x", "freesolv", "none", ("freesolv", "none", "float32")),
    ("mm", "default", "none", ("default", "none", None))])
def test_gromacs_settings_recorded_as_the_windows_ran(tmp_path, model, protocol, constraints, expect):
    from mdi_mlmm.analysis.report import run_settings
    from mdi_mlmm.protocol.plan import make_plan

    plan = make_plan(tmp_path, model=model, host="gromacs", smiles="CCO", windows=3, ns_per_window=0.001, dt_fs=2.0,
                     temperature=298.15, sample_every=10, gas_ns=0.001, equil_ps=1, window_equil_ps=0.05, workers=1,
                     protocol=protocol, constraints=constraints)
    s = run_settings(plan)
    assert (s["protocol"], s["constraints"], s["dtype"]) == expect and s["dt_fs"] == 2.0
    r = _result()
    for k, v in s.items():
        setattr(r, k, v)
    bonds = "X–H constrained" if expect[1] == "h-bonds" else "flexible"
    assert f"protocol: **{protocol}**, solute {bonds}," in report_markdown(HydrationResult.from_json(r.to_json()))


def test_results_written_before_the_settings_were_recorded_still_load(tmp_path):
    d = _result().to_json()
    for k in ("dt_fs", "protocol", "constraints", "dtype"):
        del d[k]
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "results.json").write_text(json.dumps(d))
    old = load_result(tmp_path)
    assert (old.dt_fs, old.protocol, old.constraints, old.dtype) == (None, None, None, None)
    assert old.dG["MBAR"].value == -5.1
    report = report_markdown(old)
    assert "protocol: **unknown**, solute X–H treatment unknown, T = 298.15 K, 3 λ windows × 0.1 ns." in report
    ml = dict(d, model="ani2x")
    assert "ML precision **unknown**" in report_markdown(HydrationResult.from_json(ml))
