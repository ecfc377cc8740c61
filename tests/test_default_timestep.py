"""The default time step follows the solute's fastest flexible bond (workflow.hydration.settle_timesteps).

With ``--mass-repartition`` the default is 4 fs, but 51 FreeSolv molecules (alkenes, alkynes, nitriles) have a
flexible bond faster than 5 steps of 4 fs, which every GROMACS unit refuses: a time step not given is lowered
to the largest multiple of 0.5 fs that keeps 5 steps (propene's C=C 18.8 fs with HMR: 3.5 fs; acetonitrile's
C#N 17.3 fs: 3 fs) once the system is prepared, before plan.json is written; a resume finds the same value; a
time step given too large is refused in one line before anything runs; ethanol keeps 4 fs.

The prepared system is the FreeSolv topology itself under ``DIR/system`` (the check reads only its ``.top``).
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess

import pytest

from mdi_mlmm import HydrationFreeEnergy
from mdi_mlmm.errors import UserInputError
from mdi_mlmm.prep import freesolv
from mdi_mlmm.prep.system import SCHEMA
from mdi_mlmm.protocol.plan import load_or_create

PROPENE, ACETONITRILE, ETHANOL = "mobley_303222", "mobley_7532833", "mobley_2310185"
HMR = dict(model="mm", host="gromacs", constraints="h-bonds", mass_repartition=3, ns_per_window=0.01,
           sample_every=10)


def _prepared(out, freesolv_id):
    """``out/system`` as prepare leaves it, as far as the time-step check reads it."""
    sysdir = out / "system"
    sysdir.mkdir(parents=True)
    top = freesolv.extract(freesolv_id, "top", sysdir)
    (sysdir / "system.json").write_text(json.dumps({"format": SCHEMA, "solvated": {"top": top.name},
                                                    "gas": {"top": top.name}}))
    return top


def _settled(calc, out):
    from mdi_mlmm.workflow.hydration import settle_timesteps

    return load_or_create(settle_timesteps(calc.plan(out)))


def test_default_lowered_for_a_fast_bond_and_resumed(tmp_path, caplog):
    from mdi_mlmm.hosts.gromacs.alchemy import _unit_top
    from mdi_mlmm.protocol.specs import WindowSpec
    from mdi_mlmm.workflow.hydration import unit_specs

    out = tmp_path / "propene"
    top = _prepared(out, PROPENE)
    with caplog.at_level(logging.INFO, logger="mdi_mlmm.workflow.hydration"):
        plan, resumed = _settled(HydrationFreeEnergy(freesolv_id=PROPENE, **HMR), out)
    assert not resumed and plan.dt_fs == 3.5 and plan.steps_per_window == round(0.01e6 / 3.5)
    assert json.loads((out / "plan.json").read_text())["dt_fs"] == 3.5                     # plan.json records it
    lines = [r.getMessage() for r in caplog.records if "not given" in r.getMessage()]
    assert len(lines) == 1 and "--dt not given: 3.5 fs instead of 4 fs" in lines[0] and "C2-C3" in lines[0] \
        and "18.8 fs" in lines[0]
    # the unit accepts it (at 4 fs it refuses: the bond check every GROMACS unit makes before grompp)
    unit = dict(host="gromacs", model="mm", top=str(top), gro="g", ndx="n", ml_indices=[0], steps=10,
                temperature=298.15, sample_every=1, seed=1, constrain_hbonds=True, mass_repartition=3.0, state=0,
                schedule=[(1, 1)])
    assert _unit_top(WindowSpec(**unit, dt_fs=plan.dt_fs, out_dir=str(tmp_path / "w")), tmp_path / "w", False)
    with pytest.raises(UserInputError, match="give --dt 3.5 or less"):
        _unit_top(WindowSpec(**unit, dt_fs=4.0, out_dir=str(tmp_path / "w4")), tmp_path / "w4", False)
    if shutil.which("gmx"):   # and grompp (maxwarn 0) takes the repartitioned topology at 3.5 fs, not at 4 fs
        gro = freesolv.extract(PROPENE, "gro", tmp_path / "w")
        for dt, ok in ((plan.dt_fs, True), (4.0, False)):
            (tmp_path / "w" / "t.mdp").write_text(f"integrator = md\ndt = {dt / 1000}\nnsteps = 10\n"
                                                  "constraints = h-bonds\ncutoff-scheme = Verlet\n"
                                                  "coulombtype = cut-off\nrcoulomb = 0.9\nrvdw = 0.9\n")
            r = subprocess.run(["gmx", "grompp", "-f", "t.mdp", "-c", gro.name, "-p", "topol_hmr.top", "-o", "t.tpr",
                                "-po", "out.mdp"], cwd=tmp_path / "w", capture_output=True, text=True, timeout=60)
            assert (r.returncode == 0) == ok and ("less than 5 times" in r.stderr) != ok, r.stderr[-2000:]
    assert {s.dt_fs for s in unit_specs(plan, {"root": str(out / "system"), "ml_atoms": [0],
                                               "solvated": {"top": top.name, "gro": "c", "ndx": "i"},
                                               "gas": {"top": top.name, "gro": "c", "ndx": "i"}}, "eq")} == {3.5}
    # a resume without --dt finds the same time step; an explicit --dt 3.5 matches it too
    again, resumed = _settled(HydrationFreeEnergy(freesolv_id=PROPENE, **HMR), out)
    assert resumed and again.dt_fs == 3.5
    assert _settled(HydrationFreeEnergy(freesolv_id=PROPENE, **HMR, dt_fs=3.5), out)[0].dt_fs == 3.5
    # a benchmark compares the default (4 fs with HMR), not a molecule's lowered value: a rerun without --dt goes on
    from mdi_mlmm.workflow.benchmark import check_settings

    settings = dict(HMR, dt_fs=None, leg_dt_fs=None)
    check_settings(tmp_path / "bench", settings)
    assert check_settings(tmp_path / "bench", settings)["dt_fs"] is None
    with pytest.raises(UserInputError, match=r"dt_fs: 4\.0 on disk vs 3\.5 now"):
        check_settings(tmp_path / "bench", dict(settings, dt_fs=3.5))


def test_given_time_step_too_large_refused_and_ethanol_keeps_4fs(tmp_path):
    out = tmp_path / "acetonitrile"
    _prepared(out, ACETONITRILE)
    with pytest.raises(UserInputError, match=r"C2-N1 of MOL .* 17\.3 fs.*give --dt 3 or less") as exc:
        _settled(HydrationFreeEnergy(freesolv_id=ACETONITRILE, **HMR, dt_fs=4.0), out)
    assert "\n" not in str(exc.value) and not (out / "plan.json").exists()              # before anything runs
    assert _settled(HydrationFreeEnergy(freesolv_id=ACETONITRILE, **HMR), out)[0].dt_fs == 3.0
    # without HMR, the constrained default (2 fs) keeps 5 steps: unchanged
    _prepared(tmp_path / "plain", ACETONITRILE)
    plain = dict(HMR, mass_repartition=None)
    assert _settled(HydrationFreeEnergy(freesolv_id=ACETONITRILE, **plain), tmp_path / "plain")[0].dt_fs == 2.0
    eth = tmp_path / "ethanol"
    _prepared(eth, ETHANOL)
    assert _settled(HydrationFreeEnergy(freesolv_id=ETHANOL, **HMR), eth)[0].dt_fs == 4.0


def test_allow_large_dt_warns_instead_of_refusing_a_fast_bond(tmp_path, capsys):
    """``allow_large_dt`` (``--allow-large-dt``) reaches the fast-bond check: a time step given under 5 steps of the
    solute's fastest flexible bond is warned about, before the run and in every GROMACS unit, not refused (it was
    refused whatever the option); a resume keeps the permission of its own command."""
    from mdi_mlmm.hosts.gromacs.alchemy import _unit_top
    from mdi_mlmm.workflow.hydration import unit_specs

    out = tmp_path / "acetonitrile"
    top = _prepared(out, ACETONITRILE)
    calc = HydrationFreeEnergy(freesolv_id=ACETONITRILE, **HMR, dt_fs=4.0, allow_large_dt=True)
    plan, _ = _settled(calc, out)
    err = capsys.readouterr().err
    assert plan.dt_fs == 4.0 and "warning:" in err and "give --dt 3 or less" in err and "--allow-large-dt" in err
    system = {"root": str(out / "system"), "ml_atoms": [0], "solvated": {"top": top.name, "gro": "c", "ndx": "i"},
              "gas": {"top": top.name, "gro": "c", "ndx": "i"}}
    spec = unit_specs(plan, system, "eq")[0]
    assert spec.allow_large_dt and _unit_top(spec, tmp_path / "w", False)             # the unit runs it
    assert "give --dt 3 or less" in capsys.readouterr().err
    with pytest.raises(UserInputError, match="give --dt 3 or less"):                # without the option: refused
        _settled(HydrationFreeEnergy(freesolv_id=ACETONITRILE, **HMR, dt_fs=4.0), out)
    assert _settled(calc, out)[0].allow_large_dt                                      # a resume with it: runs


def test_refused_fresh_run_leaves_no_system_behind(tmp_path, monkeypatch):
    """The check prepares the system before plan.json exists: a refused fresh run removes that system/, or a
    rerun into the same --out with other inputs (another molecule, force field or model) would take it unchecked.
    (Preparation itself stands in as :func:`_prepared`, which writes what the check reads.)"""
    from mdi_mlmm.prep.system import load_system
    from mdi_mlmm.workflow import hydration

    out = tmp_path / "fresh"
    monkeypatch.setattr(hydration, "_prepare",
                        lambda plan: (_prepared(out, ACETONITRILE), load_system(out / "system"))[1])
    with pytest.raises(UserInputError, match=r"give --dt 3 or less"):
        _settled(HydrationFreeEnergy(freesolv_id=ACETONITRILE, **HMR, dt_fs=4.0), out)
    assert not (out / "system").exists() and not (out / "plan.json").exists()


def test_endpoint_leg_default_lowered_and_old_plan_remade(tmp_path):
    """The endpoint route's --leg-dt default (and its MM windows' --dt) follow the same rule; a plan.json written
    at the unlowered 4 fs before this check (every unit refused it, none ran) is remade instead of refused."""
    out = tmp_path / "endpoint"
    _prepared(out, ACETONITRILE)
    kw = dict(HMR, model="zero", route="endpoint", leg_ps=2.0, leg_sample_every=10, windows=3)
    calc = HydrationFreeEnergy(freesolv_id=ACETONITRILE, **kw)
    old, _ = load_or_create(calc.plan(out))                      # as the code before settle_timesteps wrote it
    assert (old.dt_fs, old.leg_dt_fs) == (4.0, 4.0)
    plan, resumed = _settled(calc, out)
    assert resumed and (plan.dt_fs, plan.leg_dt_fs) == (3.0, 3.0) and plan.leg_steps == round(2000 / 3.0)
    assert json.loads((out / "plan.json").read_text())["leg_dt_fs"] == 3.0
    with pytest.raises(UserInputError, match="give --leg-dt 3 or less"):
        _settled(HydrationFreeEnergy(freesolv_id=ACETONITRILE, **kw, leg_dt_fs=4.0, dt_fs=3.0), out)
    # a unit of the old plan had started (a run from before the units refused the bond): kept, refused as usual
    ran = tmp_path / "ran"
    _prepared(ran, ACETONITRILE)
    load_or_create(calc.plan(ran))
    (ran / "legs" / "water" / "00").mkdir(parents=True)
    (ran / "legs" / "water" / "00" / "progress.json").write_text("{}")
    with pytest.raises(UserInputError, match="different settings .*dt_fs: 4.0 on disk vs 3.0 now"):
        _settled(calc, ran)
    assert json.loads((ran / "plan.json").read_text())["dt_fs"] == 4.0
