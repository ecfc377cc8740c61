"""``--leg-end-ps`` (issue 14): the endpoint legs' λ_intra = 1 windows (water and gas) run longer than the
others, for ⟨E_ML⟩ of ΔG_reorg, which needs ~1 ns where the other leg windows do with 20–40 ps.

Checked without MD: the plan records the length (a key field; plans written before the option resume and read
as ``--leg-ps``; a resume with another value is refused in one line naming the option; a length below
``--leg-ps`` is refused), the leg unit specs give it to the λ = 1 window of both legs and to no other, the
command line (hydration and benchmark freesolv) and the API pass it on; the analysis of a synthetic run whose
λ = 1 windows hold 3× the samples uses all of them in both ⟨E_ML⟩ and MBAR/BAR, states the length in
results.json, report.md and the printed summary, and warns (naming the option) when σ(ΔG_reorg) > 0.3; the
overlap of windows of unequal length reads as that of equal-length windows. With the MDI GROMACS build: a real
gas-leg λ = 1 window of such a plan runs (and its ΔU step reads) the longer production.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from mdi_mlmm import HydrationFreeEnergy
from mdi_mlmm.errors import UserInputError
from mdi_mlmm.protocol.plan import PLAN_NAME, load_or_create, make_plan

ETHANOL = "mobley_2310185"
SYSTEM = {"root": "/r", "ml_atoms": list(range(9)), "solvated": {"top": "s.top", "gro": "s.gro", "ndx": "s.ndx"},
          "gas": {"top": "g.top", "gro": "g.gro", "ndx": "g.ndx"}}


def _kw(**kw):
    return {**dict(model="ani2x", host="gromacs", freesolv_id=ETHANOL, windows=3, ns_per_window=0.001, dt_fs=2.0,
                   temperature=298.15, sample_every=10, gas_ns=0.001, equil_ps=1, window_equil_ps=0.05, workers=1,
                   route="endpoint", leg_windows=3, leg_ps=0.3, leg_equil_ps=0.05, leg_sample_every=10), **kw}


def test_only_the_lambda1_windows_of_both_legs_run_longer(tmp_path):
    from mdi_mlmm.workflow.endpoint import leg_specs

    plan = make_plan(tmp_path, **_kw(leg_end_ps=0.9, leg_dt_fs=1.5))
    assert (plan.leg_steps, plan.leg_end_steps) == (200, 600)
    steps = {(s.phase, s.lam): (s.steps, s.equil_steps) for s in leg_specs(plan, SYSTEM, tmp_path / "eq.gro")}
    assert steps == {(ph, lam): (600 if lam == 1.0 else 200, 33) for ph in ("water", "gas") for lam in (0, 0.5, 1)}
    same = make_plan(tmp_path, **_kw())                               # without the option: λ = 1 as the others
    assert same.leg_end_steps == same.leg_steps == 300
    assert {s.steps for s in leg_specs(same, SYSTEM, tmp_path / "eq.gro")} == {300}
    assert make_plan(tmp_path, **_kw(leg_end_ps=0.3)).leg_end_steps == 300
    with pytest.raises(UserInputError, match=r"--leg-end-ps 0.2 is shorter than --leg-ps 0.3") as e:
        make_plan(tmp_path, **_kw(leg_end_ps=0.2))
    assert "\n" not in str(e.value)

    # the API and both commands pass it on; the direct route names it as ignored
    h = HydrationFreeEnergy(freesolv_id=ETHANOL, host="gromacs", route="endpoint", leg_ps=0.3, leg_sample_every=10,
                            windows=3, ns_per_window=0.001, sample_every=10, leg_end_ps=0.9)
    assert h.plan(tmp_path / "api").leg_end_steps == 900
    assert HydrationFreeEnergy(freesolv_id=ETHANOL, leg_end_ps=900.0).ignored_settings() == ["--leg-end-ps"]
    from mdi_mlmm.cli.main import build_parser

    p = build_parser()
    args = p.parse_args(["hydration", "--freesolv", ETHANOL, "--out", "x", "--leg-end-ps", "1000"])
    assert args.leg_end_ps == 1000.0
    assert p.parse_args(["hydration", "--freesolv", ETHANOL, "--out", "x"]).leg_end_ps is None
    args = p.parse_args(["benchmark", "freesolv", "--ids", ETHANOL, "--leg-end-ps", "1000"])
    assert args.leg_end_ps == 1000.0 and "leg_end_ps" in args._protocol


def test_resume_refuses_a_changed_leg_end_ps_and_old_plans_resume(tmp_path):
    out = tmp_path / "run"
    load_or_create(make_plan(out, **_kw(leg_end_ps=0.9)))
    assert load_or_create(make_plan(out, **_kw(leg_end_ps=0.9, workers=2)))[1]
    for other, hint in ((dict(leg_end_ps=0.6), "(--leg-end-ps 0.9)"), ({}, "(--leg-end-ps 0.9)")):
        with pytest.raises(UserInputError, match="different settings") as e:
            load_or_create(make_plan(out, **_kw(**other)))
        assert "leg_end_steps: 900 on disk" in str(e.value) and hint in str(e.value) and "\n" not in str(e.value)

    # a plan written before the option: no leg_end_steps; it resumes without the option, λ = 1 as the others
    old = tmp_path / "old"
    load_or_create(make_plan(old, **_kw()))
    d = json.loads((old / PLAN_NAME).read_text())
    del d["leg_end_steps"]
    (old / PLAN_NAME).write_text(json.dumps(d))
    plan, resumed = load_or_create(make_plan(old, **_kw()))
    assert resumed and plan.leg_end_steps == plan.leg_steps == 300
    with pytest.raises(UserInputError, match=r"leg_end_steps: 300 on disk vs 1000 now.*\(no --leg-end-ps\)"):
        load_or_create(make_plan(old, **_kw(leg_end_ps=1.0)))

    # a benchmark started before the option continues without it and refuses it
    from mdi_mlmm.workflow.benchmark import SETTINGS_FILE, check_settings

    check_settings(tmp_path / "bench", {"model": "ani2x", "leg_ps": 40.0})
    check_settings(tmp_path / "bench", {"model": "ani2x", "leg_ps": 40.0, "leg_end_ps": None})
    assert json.loads((tmp_path / "bench" / SETTINGS_FILE).read_text())["leg_end_ps"] is None
    (tmp_path / "bench" / SETTINGS_FILE).write_text(json.dumps({"model": "ani2x", "leg_ps": 40.0}))
    with pytest.raises(UserInputError, match=r"leg_end_ps: 40.0 on disk vs 1000.0 now"):
        check_settings(tmp_path / "bench", {"model": "ani2x", "leg_ps": 40.0, "leg_end_ps": 1000.0})


def test_overlap_of_a_longer_lambda1_window_reads_as_of_equal_windows(monkeypatch):
    """MBAR's overlap matrix depends on the samples per window: a 10× longer λ = 1 window would lower the
    0 – 0.5 overlap (a false warning) and raise the 0.5 – 1 one (a hidden one). The report's overlap is that
    of equal-length windows, while ΔA uses every sample."""
    from mdi_mlmm.analysis import endpoint
    from tests.test_endpoint import T, exact, gaussian_leg

    equal = endpoint.estimate_leg(gaussian_leg(0.0, 0.8, [0.0, 0.5, 1.0], n=1000, seed=1), T, "water")
    longer = gaussian_leg(0.0, 0.8, [0.0, 0.5, 1.0], n=[1000, 1000, 10000], seed=1)
    est = endpoint.estimate_leg(longer, T, "water")
    assert np.allclose(est.overlap, equal.overlap, atol=0.02), (est.overlap, equal.overlap)
    assert est.min_neighbour_overlap == pytest.approx(equal.min_neighbour_overlap, abs=0.02)
    assert est.samples[-1]["uncorrelated"] > 5000 and est.dA["MBAR"].error < equal.dA["MBAR"].error
    assert abs(est.dA["MBAR"].value - exact(0.0, 0.8)) < 3 * est.dA["MBAR"].error
    from mdi_mlmm.analysis import free_energy
    monkeypatch.setattr(free_energy, "UNEQUAL_SAMPLES", float("inf"))   # the matrix of the unequal fit itself
    raw = endpoint.estimate_leg(longer, T, "water")
    assert raw.overlap[0][1] < 0.8 * equal.overlap[0][1] and raw.overlap[1][2] > 1.25 * equal.overlap[1][2]


def _write_legs(plan, e_ml_sigma, n=(100, 100, 300)):
    """Gaussian ΔU per window (N(μ − βλσ², σ²)), the λ = 1 windows ``n[-1]`` samples; E_ML with noise
    ``e_ml_sigma`` (independent samples), E_MM = E_ML − ΔU."""
    from mdi_mlmm.analysis.delta_u import write_delta_u
    from tests.test_endpoint import BETA

    rng = np.random.default_rng(5)
    for ph, mu in (("water", -97010.0), ("gas", -97000.0)):
        for k, lam in enumerate(plan.leg_lambdas):
            du = rng.normal(mu - BETA * lam * 0.3 ** 2, 0.3, n[k])
            e_ml = -97000.0 + e_ml_sigma * rng.normal(size=n[k]) + (5.0 if ph == "water" else 0.0)
            d = plan.path("legs", ph, f"{k:02d}")
            d.mkdir(parents=True, exist_ok=True)
            write_delta_u(d / "delta_u.csv", np.arange(n[k]) * 0.003, e_ml, e_ml - du)


def test_analysis_uses_the_longer_lambda1_window_and_says_so(tmp_path, monkeypatch):
    """3 λ windows of 0.3 ps, λ = 1 of 0.9 ps (3× the frames): every frame of the λ = 1 windows enters ⟨E_ML⟩
    and MBAR/BAR; the length is in results.json, report.md, the summary; σ(ΔG_reorg) > 0.3 warns, naming
    --leg-end-ps; a small one does not."""
    from mdi_mlmm.analysis import report
    from mdi_mlmm.analysis.endpoint_report import summary_lines
    from tests.test_report_warnings import _synthetic_run

    plan = _synthetic_run(tmp_path / "run", host="gromacs", route="endpoint", dt_fs=2.0, leg_dt_fs=3.0, leg_ps=0.3,
                          leg_end_ps=0.9, leg_equil_ps=0.03, leg_sample_every=1)
    assert (plan.leg_steps, plan.leg_end_steps) == (100, 300)
    load_windows = report.load_windows   # the MM windows are in the LAMMPS CSV layout (as test_endpoint.py)
    monkeypatch.setattr(report, "load_windows", lambda p, d: load_windows(dataclasses.replace(p, host="lammps"), d))

    _write_legs(plan, e_ml_sigma=8.0)
    report.analyze(plan.root, plots=False)
    d = json.loads(plan.path("analysis", "results.json").read_text())
    assert (d["legs"]["ps_per_window"], d["legs"]["ps_lambda1"]) == pytest.approx((0.3, 0.9))
    for ph in ("water", "gas"):
        assert [s["frames"] for s in d[ph]["samples"]] == [100, 100, 300]
        assert d[ph]["samples"][-1]["uncorrelated"] > 100                   # MBAR/BAR saw the whole window
        assert d[ph]["e_ml_lambda1"]["n"] == 270                          # ⟨E_ML⟩: 300 frames less the first 10 %
    sigma = d["dG_reorg"]["error"]
    assert sigma > 0.3
    warn = [w for w in d["warnings"] if w.startswith("ΔG_reorg")]
    assert len(warn) == 1 and "--leg-end-ps" in warn[0] and "from 0.9 ps at λ_intra = 1" in warn[0], d["warnings"]
    md = plan.path("analysis", "report.md").read_text()
    assert "× 0.3 ps (λ = 1: **0.9 ps**, --leg-end-ps;" in md and "--leg-end-ps (σ falls" in md
    assert "3 λ × 0.3 ps (λ = 1: 0.9 ps)" in summary_lines(d)[0]
    from mdi_mlmm.analysis.benchmark import terms_from_results                # the benchmark report's settings line

    assert terms_from_results(d)["run"].endswith("MM windows X–H h-bonds at 2 fs, legs 0.3 ps, λ = 1 0.9 ps, "
                                                 "ML precision float32")

    _write_legs(plan, e_ml_sigma=0.5)                                     # a well-resolved ΔG_reorg: no warning
    report.analyze(plan.root, plots=False)
    d = json.loads(plan.path("analysis", "results.json").read_text())
    assert d["dG_reorg"]["error"] < 0.3 and not [w for w in d["warnings"] if w.startswith("ΔG_reorg")]

    # results.json written before ps_lambda1 was recorded: every window ps_per_window
    from mdi_mlmm.analysis.endpoint_report import report_markdown

    old = dict(d, legs={k: v for k, v in d["legs"].items() if k != "ps_lambda1"})
    assert "× 0.3 ps (λ = 1: 0.3 ps as the others;" in report_markdown(old)
    assert "3 λ × 0.3 ps; MM part" in summary_lines(old)[0]


@pytest.mark.gromacs_build
@pytest.mark.timeout(300)
def test_real_gas_legs_run_the_longer_lambda1_window(tmp_path):
    """The gas leg's λ = 1 window of a plan with --leg-ps 0.02 --leg-end-ps 0.04, run for real (acetone alone,
    MDI gmx + ANI-2x through the λ-mixed engine, the workflow's run_units and ΔU step; one window, no
    equilibration, to stay fast): its trajectory and delta_u.csv hold the --leg-end-ps production."""
    import shutil

    from mdi_mlmm.analysis.delta_u import read_delta_u
    from mdi_mlmm.hosts.gromacs.build import gmx_path
    from mdi_mlmm.workflow.endpoint import compute_delta_u, leg_specs
    from mdi_mlmm.workflow.hydration import run_units
    from tests.test_lammps_host import ACE

    if gmx_path() is None and not os.environ.get("CI"):   # under CI a missing build fails below, never skips
        pytest.skip("no MDI-enabled GROMACS build (run `mdi-mlmm gromacs build`)")
    root = tmp_path / "system"
    shutil.copytree(ACE, root)
    atoms = " ".join(str(i) for i in range(1, 11))
    (root / "index.ndx").write_text(f"[ System ]\n{atoms}\n[ ML ]\n{atoms}\n")
    system = {"root": str(root), "ml_atoms": list(range(10)), "solvated": dict(SYSTEM["solvated"]),
              "gas": {"top": "topol.top", "gro": "conf.gro", "ndx": "index.ndx"}}
    plan = make_plan(tmp_path / "run", **_kw(leg_windows=2, leg_ps=0.02, leg_end_ps=0.04, leg_equil_ps=0.0,
                                             leg_sample_every=2))
    gas = [s for s in leg_specs(plan, system, root / "conf.gro") if s.phase == "gas"]
    assert [(s.lam, s.steps) for s in gas] == [(0.0, 20), (1.0, 40)]
    run_units(gas[1:], workers=1, progress=False)
    (csv,) = compute_delta_u(plan, system, gas[1:], progress=False)
    assert json.loads((csv.parent / "done.json").read_text())["steps"] == 40
    assert len(read_delta_u(csv)["delta_u"]) == 21                # 40 steps / 2 + the first frame (not 11)
