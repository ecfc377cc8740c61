"""``hydration --constraints h-bonds`` (issue 13, item 4): the solute's X–H bonds constrained at b0, the ML
region's included, in the direct route's windows and gas run and in the endpoint route's legs (2 fs).

Checked: the plan records the choice as a key field (a resume with another value is refused with one line;
plans written before the option read as ``none``); the time-step policy treats constrained legs as
constrained; LAMMPS takes it too (API, plan, command line, benchmark; its units run it:
tests/test_lammps_constraints.py), an unknown value is refused; the units and their GROMACS mdp carry the
constraints; and a real constrained GROMACS leg window (ethanol in TIP3P,
ANI-2x at λ = 0.5 through the λ-mixed engine, 2 fs) keeps every X–H bond at b0, so the X–H bond terms that
E_MM,intra (and so ΔU = E_ML − E_MM,intra) contains are zero at every saved frame.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm import HydrationFreeEnergy
from mdi_mlmm.errors import UserInputError
from mdi_mlmm.hosts.gromacs import build as gbuild
from mdi_mlmm.protocol.plan import PLAN_NAME, load_or_create, make_plan
from mdi_mlmm.protocol.specs import GasSpec, LegSpec, WindowSpec
from mdi_mlmm.protocol.timestep import check_timestep

DATA = Path(__file__).resolve().parent / "data" / "lammps_ethanol"  # ethanol (GAFF, MOL) + 676 TIP3P, 2037 atoms
GMX = gbuild.gmx_path()
CI = bool(os.environ.get("CI"))
ETHANOL = "mobley_2310185"


def _plan_kw(**kw):
    d = dict(model="ani2x", host="gromacs", freesolv_id=ETHANOL, windows=3, ns_per_window=0.001, dt_fs=2.0,
             temperature=298.15, sample_every=10, gas_ns=0.001, equil_ps=1, window_equil_ps=0.05, workers=1,
             route="endpoint", leg_windows=3, leg_ps=0.3, leg_equil_ps=0.05, leg_sample_every=10)
    d.update(kw)
    return d


def test_plan_records_constraints_and_refuses_a_changed_value(tmp_path):
    h = HydrationFreeEnergy(freesolv_id=ETHANOL, host="gromacs", route="endpoint", constraints="h-bonds",
                            windows=3, ns_per_window=0.001, sample_every=10, leg_ps=0.3, leg_sample_every=10)
    assert (h.timestep_fs, h.leg_timestep_fs) == (2.0, 2.0)        # constrained legs: 2 fs by default
    plan = h.plan(tmp_path / "api")
    assert (plan.constraints, plan.leg_dt_fs, plan.leg_steps) == ("h-bonds", 2.0, 150)
    flexible = HydrationFreeEnergy(freesolv_id=ETHANOL, host="gromacs", route="endpoint")
    assert (flexible.constraints, flexible.timestep_fs, flexible.leg_timestep_fs) == ("none", 2.0, 1.0)
    direct = HydrationFreeEnergy(freesolv_id=ETHANOL, host="gromacs", constraints="h-bonds")
    assert direct.constrained and direct.timestep_fs == 2.0

    out = tmp_path / "run"
    kw = _plan_kw(constraints="h-bonds", leg_dt_fs=2.0)
    plan, resumed = load_or_create(make_plan(out, **kw))
    assert not resumed and json.loads((out / PLAN_NAME).read_text())["constraints"] == "h-bonds"
    assert load_or_create(make_plan(out, **kw))[1]
    with pytest.raises(UserInputError, match="different settings") as e:
        load_or_create(make_plan(out, **dict(kw, constraints="none")))
    assert "constraints: 'h-bonds' on disk vs 'none' now" in str(e.value) and "\n" not in str(e.value)

    # a plan written before the option had no such field: it reads as flexible and resumes as such
    old = tmp_path / "old"
    load_or_create(make_plan(old, **_plan_kw()))
    d = json.loads((old / PLAN_NAME).read_text())
    del d["constraints"]
    (old / PLAN_NAME).write_text(json.dumps(d))
    plan, resumed = load_or_create(make_plan(old, **_plan_kw()))
    assert resumed and plan.constraints == "none"
    with pytest.raises(UserInputError, match="constraints: 'none' on disk vs 'h-bonds' now"):
        load_or_create(make_plan(old, **_plan_kw(constraints="h-bonds")))


def test_leg_time_step_policy():
    err = io.StringIO()
    check_timestep(2.0, constrained_xh=True, allow_large=False, stream=err, option="--leg-dt")
    assert err.getvalue() == ""                                      # 2 fs constrained: silent
    with pytest.raises(UserInputError, match="--leg-dt 3 fs is above the 2 fs limit for flexible"):
        HydrationFreeEnergy(freesolv_id=ETHANOL, host="gromacs", route="endpoint", leg_dt_fs=3.0).plan("unused")
    with pytest.raises(UserInputError, match="--leg-dt 5 fs is above the 4 fs limit for constrained"):
        HydrationFreeEnergy(freesolv_id=ETHANOL, host="gromacs", route="endpoint", constraints="h-bonds",
                            leg_dt_fs=5.0).plan("unused")


def test_lammps_takes_constraints(tmp_path):
    """Both hosts constrain h-bonds (issue 12, item 1): the API, the plan, the units and the benchmark's command
    line take it on LAMMPS too (its runs: tests/test_lammps_constraints.py); an unknown value is refused."""
    h = HydrationFreeEnergy(freesolv_id=ETHANOL, host="lammps", constraints="h-bonds")
    assert h.constrained and h.timestep_fs == 2.0                    # the same time-step rule as GROMACS
    end = HydrationFreeEnergy(freesolv_id=ETHANOL, host="lammps", route="endpoint", constraints="h-bonds")
    assert end.legs_constrained and end.leg_timestep_fs == 2.0
    plan = make_plan(tmp_path / "p", **_plan_kw(host="lammps", route="direct", constraints="h-bonds"))
    assert plan.constraints == plan.windows_constraints == "h-bonds"
    from mdi_mlmm.workflow.hydration import unit_specs

    system = {"root": str(tmp_path), "ml_atoms": list(range(9)),
              "solvated": {"top": "s.top", "gro": "s.gro", "ndx": "s.ndx"},
              "gas": {"top": "g.top", "gro": "g.gro", "ndx": "g.ndx"}}
    units = unit_specs(plan, system, tmp_path / "eq.gro")
    assert {type(u) for u in units} == {WindowSpec, GasSpec} and all(u.constrain_hbonds for u in units)
    assert {u.host for u in units} == {"lammps"}
    with pytest.raises(UserInputError, match="unknown constraints"):
        HydrationFreeEnergy(freesolv_id=ETHANOL, host="lammps", constraints="all-bonds")
    r = subprocess.run([sys.executable, "-m", "mdi_mlmm", "benchmark", "freesolv", "--ids", ETHANOL, "--dry-run",
                        "--host", "lammps", "--constraints", "h-bonds", "--out", str(tmp_path / "b")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "1 molecule(s) selected" in r.stdout, r.stderr


def test_units_and_mdp_carry_the_constraints(tmp_path):
    from mdi_mlmm.hosts.gromacs.alchemy import _lambda_mdp, _leg_mdp
    from mdi_mlmm.prep import mdp
    from mdi_mlmm.workflow.endpoint import leg_specs, mm_plan
    from mdi_mlmm.workflow.hydration import unit_specs

    system = {"root": str(tmp_path), "ml_atoms": list(range(9)),
              "solvated": {"top": "s.top", "gro": "s.gro", "ndx": "s.ndx"},
              "gas": {"top": "g.top", "gro": "g.gro", "ndx": "g.ndx"}}
    for c in ("none", "h-bonds"):
        on = c == "h-bonds"
        end = make_plan(tmp_path / f"e{c}", **_plan_kw(constraints=c, leg_dt_fs=2.0 if on else 1.0))
        legs = leg_specs(end, system, tmp_path / "eq.gro")
        assert len(legs) == 6 and {s.constrain_hbonds for s in legs} == {on} and {s.dt_fs for s in legs} == {
            2.0 if on else 1.0}
        assert all(s.constrain_hbonds for s in unit_specs(mm_plan(end), system, tmp_path / "eq.gro",
                                                          constrain_hbonds=True))   # the MM part: always
        direct = make_plan(tmp_path / f"d{c}", **_plan_kw(route="direct", constraints=c))
        units = unit_specs(direct, system, tmp_path / "eq.gro")
        assert {type(u) for u in units} == {WindowSpec, GasSpec} and {u.constrain_hbonds for u in units} == {on}
        for text in (_leg_mdp(legs[0], "prod", 100, True), _leg_mdp(legs[-1], "eq", 100, True),
                     _lambda_mdp(0, direct.schedule, 100, 2.0, 10, 298.15, 1, True, False, constrain_hbonds=on)):
            o = mdp.parse(text)
            assert o["constraints"] == c
            if on:
                assert (o["constraint-algorithm"].lower(), o["lincs-order"], o["lincs-iter"]) == ("lincs", "12", "2")


@pytest.fixture(scope="module")
def ani():
    from mdi_mlmm.potentials import load_potential

    try:
        return load_potential("ani2x")
    except Exception as exc:  # model files / torchani missing
        if CI:
            pytest.fail(f"CI is set but ANI-2x cannot be loaded: {exc}")
        pytest.skip(f"ANI-2x unavailable: {exc}")


@pytest.mark.gromacs_build
@pytest.mark.timeout(300)
@pytest.mark.skipif(GMX is None and not CI, reason="no MDI-enabled GROMACS build (run `mdi-mlmm gromacs build`)")
def test_constrained_leg_window_keeps_xh_at_b0_and_delta_u(tmp_path, ani):
    """One water-leg window at λ = 0.5, 2 fs, X–H constrained: X–H at b0 in every saved frame; the X–H
    bond terms of E_MM,intra vanish there; ΔU = E_ML − E_MM,intra of each frame as direct calls give it."""
    from MDAnalysis.lib.formats.libmdaxdr import TRRFile

    from mdi_mlmm.analysis.delta_u import read_delta_u, window_delta_u
    from mdi_mlmm.hosts.gromacs.alchemy import run_leg
    from mdi_mlmm.potentials.mm_intra import MMIntra
    from mdi_mlmm.topology.gromacs import load_gromacs

    top = DATA / "topol.top"
    spec = LegSpec(host="gromacs", model="ani2x", out_dir=str(tmp_path / "leg"), top=str(top),
                   gro=str(DATA / "conf.gro"), ndx=str(DATA / "index.ndx"), ml_indices=list(range(9)), steps=20,
                   dt_fs=2.0, temperature=298.15, sample_every=2, seed=3, phase="water", lam=0.5,
                   mm_intra_top=str(top), mm_intra_molecule="MOL", constrain_hbonds=True)
    done = run_leg(spec)
    out = Path(spec.out_dir)
    assert "6 Constraint" in (out / "prod.grompp.out").read_text()  # 5 C-H + O-H of the ML ethanol
    assert "constraints" in (out / "prod.mdp").read_text()

    structure = load_gromacs(top, DATA / "conf.gro")
    xh = [(b.atom1.idx, b.atom2.idx, b.type.req / 10, b.type.k) for b in structure.bonds   # b0 nm, k kcal/mol/Å²
          if b.atom1.idx < 9 and b.atom2.idx < 9 and 1 in (b.atom1.element, b.atom2.element)]
    assert len(xh) == 6
    with TRRFile(str(out / "prod.trr")) as f:
        frames = [(np.array(fr.x, dtype=np.float64), np.diag(fr.box)) for fr in f if fr.hasx]
    assert len(frames) == 11
    worst, e_xh = 0.0, 0.0
    for x, box in frames:
        for i, j, b0, k in xh:
            d = x[i] - x[j]
            d -= np.round(d / box) * box
            r = np.linalg.norm(d)
            worst = max(worst, abs(r - b0) / b0)
            e_xh = max(e_xh, k * ((r - b0) * 10) ** 2)               # ParmEd k: E = k (r − b0)², kcal/mol
    print(f"largest relative X-H deviation from b0: {worst:.2e}; largest X-H bond energy {e_xh:.2e} kcal/mol")
    assert worst < 1e-4 and e_xh < 1e-4

    # ΔU over the frames: E_MM,intra includes every bond term (OpenMM HarmonicBondForce, no constraints), the
    # X-H ones zero at b0; both parts as direct calls on the frames give them
    mm = MMIntra.from_gromacs(top, moleculetype="MOL")
    assert "HarmonicBondForce" in mm.terms(frames[0][0][:9] * 10)
    csv = window_delta_u(done["topology"], done["trajectory"], out / "delta_u.csv", potential=ani, mm=mm,
                         atoms=done["atoms"])
    du = read_delta_u(csv)
    assert len(du["delta_u"]) == 11
    pos = np.stack([x[:9] * 10 for x, _ in frames])                   # ethanol stays whole in this box
    z = ["C", "C", "O", "H", "H", "H", "H", "H", "H"]
    from mdi_mlmm import units

    e_ml = np.array([float(ani.compute(z, p).energy) for p in pos]) * units.HARTREE_IN_KCAL_PER_MOL
    # (MDAnalysis converts the float32 nm to Å in float32: ~1e-5 kcal/mol apart)
    np.testing.assert_allclose(du["e_ml"], e_ml, rtol=0, atol=1e-4)
    np.testing.assert_allclose(du["e_mm_intra"], mm.energy(pos), rtol=0, atol=1e-4)
