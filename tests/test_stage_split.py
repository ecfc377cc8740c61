"""The split decoupling on the GROMACS host ("decharge, then decouple", issue 13 item 6): the windows after the
boundary state b (coul λ = 1, vdw λ = 0) run with the solute's charges zero in both topology states
(``couple-lambda0 = vdw``: one PME grid per step instead of two) and energies at the states b..N−1 only; the
analysis estimates MBAR/BAR per stage and adds them.

Checked with real GROMACS (Debian's gmx; ethanol in 676 TIP3P, tests/data/lammps_ethanol):
1. physics: on the same frames (mdrun -rerun), a stage-2 window's ΔU to every state b..N−1 and its dH/dλ_vdw
   are those of the full-topology window at the same state; its dH/dλ_coul is 0 (Δλ_coul = 0 in stage 2, so TI
   over all windows is unchanged);
2. one grid: md.log's cycle accounting counts one PME spread per step for the split window, two for the full;
3. analysis: a tiny real plain-MM hydration run (4 windows, split) gives ΔG and per-stage figures in results.json
   (stages add up, σ in quadrature, overlap warning on the smaller of both); a stage-2 window's file is accepted
   with its own states only; per-stage MBAR on synthetic frames with every column equals unsplit MBAR (σ/10).
Plus the plan: on by default for a GROMACS decoupling, off for LAMMPS, resumed old plans stay unsplit, a
changed value is refused in one line, ``--no-split-decoupling`` turns it off, the endpoint route's MM windows
split too.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mdi_mlmm.errors import AnalysisError, UserInputError
from mdi_mlmm.hosts.gromacs import build as gbuild
from mdi_mlmm.protocol.plan import PLAN_NAME, load_or_create, make_plan
from mdi_mlmm.protocol.schedule import FREESOLV, decoupling_schedule, stage_boundary, window_states

DATA = Path(__file__).resolve().parent / "data" / "lammps_ethanol"  # ethanol (GAFF, MOL) + 676 TIP3P, 2037 atoms
GMX = shutil.which("gmx")
needs_gmx = pytest.mark.skipif(GMX is None and not os.environ.get("CI"), reason="needs Debian gromacs (gmx)")
T = 298.15


def _plan_kw(**kw):
    d = dict(model="mm", host="gromacs", freesolv_id="mobley_2310185", windows=None, ns_per_window=0.001, dt_fs=1.0,
             temperature=T, sample_every=10, gas_ns=0.0, equil_ps=1, window_equil_ps=0.05, workers=1)
    d.update(kw)
    return d


# ------------------------------------------------------------------------------------------ plan
def test_boundary_of_the_schedules():
    assert stage_boundary(FREESOLV) == 4 and FREESOLV[4] == (1.0, 0.0)
    assert [stage_boundary(decoupling_schedule(n)) for n in (3, 4, 12)] == [1, 1, 2]
    # charges and LJ changing together, or no LJ state after the charges: no split
    assert stage_boundary([(0, 0), (0.5, 0.5), (1, 1)]) is None and stage_boundary([(0, 0), (1, 0)]) is None
    assert stage_boundary([(0, 0), (1, 0), (0.5, 0.5), (1, 1)]) is None
    assert window_states(FREESOLV, 5, 4) == range(4, 20) and window_states(FREESOLV, 4, 4) == range(20)
    assert window_states(FREESOLV, 19, None) == range(20)


def test_plan_default_resume_and_refusal(tmp_path):
    plan = make_plan(tmp_path / "g", **_plan_kw())
    assert plan.split_decoupling and plan.stage_boundary == 4
    assert not make_plan(tmp_path / "l", **_plan_kw(host="lammps")).split_decoupling     # LAMMPS: every state itself
    assert make_plan(tmp_path / "e", **_plan_kw(host="lammps", model="ani2x", route="endpoint")).split_decoupling
    off = make_plan(tmp_path / "o", **_plan_kw(split_decoupling=False))
    assert not off.split_decoupling and off.stage_boundary is None
    with pytest.raises(UserInputError, match="only on GROMACS"):
        make_plan(tmp_path / "x", **_plan_kw(host="lammps", split_decoupling=True))

    out = tmp_path / "run"
    load_or_create(make_plan(out, **_plan_kw()))
    assert json.loads((out / PLAN_NAME).read_text())["split_decoupling"] is True
    assert load_or_create(make_plan(out, **_plan_kw()))[1]
    with pytest.raises(UserInputError, match="different settings") as e:
        load_or_create(make_plan(out, **_plan_kw(split_decoupling=False)))
    assert "split_decoupling: True on disk vs False now" in str(e.value) and "\n" not in str(e.value)
    assert "--no-split-decoupling not given" in str(e.value)

    # a plan written before the option: it ran unsplit and resumes so (the default does not change it) ...
    old = tmp_path / "old"
    load_or_create(make_plan(old, **_plan_kw(split_decoupling=False)))
    d = json.loads((old / PLAN_NAME).read_text())
    del d["split_decoupling"]
    (old / PLAN_NAME).write_text(json.dumps(d))
    plan, resumed = load_or_create(make_plan(old, **_plan_kw()))
    assert resumed and plan.split_decoupling is False and plan.stage_boundary is None
    assert json.loads((old / PLAN_NAME).read_text())["split_decoupling"] is False
    # ... and so again on the next resume, now that the key (False) is on disk
    plan, resumed = load_or_create(make_plan(old, **_plan_kw()))
    assert resumed and plan.split_decoupling is False
    # a run started with --no-split-decoupling resumes unsplit without it too (nothing asked: as it started)
    assert load_or_create(off) == (off, False)
    plan, resumed = load_or_create(make_plan(tmp_path / "o", **_plan_kw()))
    assert resumed and plan.split_decoupling is False
    assert load_or_create(make_plan(tmp_path / "o", **_plan_kw(split_decoupling=False)))[1]
    # ... a split asked for explicitly is refused
    d = json.loads((old / PLAN_NAME).read_text())
    del d["split_decoupling"]
    (old / PLAN_NAME).write_text(json.dumps(d))
    with pytest.raises(UserInputError, match="split_decoupling: False on disk vs True now"):
        load_or_create(make_plan(old, **_plan_kw(split_decoupling=True)))


def test_analysis_refuses_a_split_the_plan_cannot_have_run(tmp_path):
    """plan.json's split_decoupling decides which states each window's file must hold and how the run is
    estimated: a value make_plan would not write is refused in one line naming plan.json (a string "false"
    would read as true; a split LAMMPS run, or a schedule without a boundary, cannot exist)."""
    from mdi_mlmm.analysis.report import _load_plan

    plan = make_plan(tmp_path, **_plan_kw())
    plan.write()
    assert _load_plan(tmp_path).stage_boundary == 4
    d = json.loads((tmp_path / PLAN_NAME).read_text())
    for bad, why in (({"split_decoupling": "false"}, "neither true nor false"),
                     ({"host": "lammps"}, "cannot have run split"),
                     ({"schedule": [[0, 0], [0.5, 0.5], [1, 1]], "windows": d["windows"][:3]}, "cannot have run split")):
        if "windows" in bad:
            bad["windows"] = [dict(w, coul=c, vdw=v) for w, (c, v) in zip(bad["windows"], bad["schedule"])]
        (tmp_path / PLAN_NAME).write_text(json.dumps(dict(d, **bad)))
        with pytest.raises(AnalysisError, match=f"{PLAN_NAME}: split_decoupling .*{why}") as e:
            _load_plan(tmp_path)
        assert "\n" not in str(e.value)
    (tmp_path / PLAN_NAME).write_text(json.dumps(dict(d, host="lammps", split_decoupling=False)))
    assert _load_plan(tmp_path).stage_boundary is None


def test_command_line_switch_and_window_specs(tmp_path):
    from mdi_mlmm.api import HydrationFreeEnergy
    from mdi_mlmm.cli.main import build_parser
    from mdi_mlmm.workflow.endpoint import mm_plan
    from mdi_mlmm.workflow.hydration import unit_specs

    base = ["hydration", "--freesolv", "mobley_2310185", "--host", "gromacs", "--model", "mm", "--out", "x"]
    for extra, want in (([], True), (["--no-split-decoupling"], False)):
        args = build_parser().parse_args(base + extra)
        assert args.split_decoupling is (None if not extra else False)
        from mdi_mlmm.api import hydration_defaults

        calc = HydrationFreeEnergy(**{k: getattr(args, k) for k in hydration_defaults()})
        assert calc.plan(tmp_path / f"c{len(extra)}").split_decoupling is want

    system = {"root": str(DATA), "ml_atoms": list(range(9)),
              "solvated": {"top": "topol.top", "gro": "conf.gro", "ndx": "index.ndx"},
              "gas": {"top": "topol.top", "gro": "conf.gro", "ndx": "index.ndx"}}
    specs = unit_specs(make_plan(tmp_path / "s", **_plan_kw()), system, DATA / "conf.gro")
    assert {s.stage_boundary for s in specs} == {4}
    # the endpoint route's MM decoupling (LAMMPS legs or not) runs through the same windows: split too
    ep = make_plan(tmp_path / "ep", **_plan_kw(host="lammps", model="ani2x", route="endpoint"))
    assert {s.stage_boundary for s in unit_specs(mm_plan(ep), system, DATA / "conf.gro")} == {4}
    assert {s.stage_boundary for s in unit_specs(make_plan(tmp_path / "u", **_plan_kw(split_decoupling=False)),
                                                 system, DATA / "conf.gro")} == {None}


def test_split_window_mdp():
    from mdi_mlmm.hosts.gromacs.alchemy import _lambda_mdp
    from mdi_mlmm.prep.mdp import parse

    full = parse(_lambda_mdp(10, list(FREESOLV), 100, 1.0, 10, T, 1, False, equil=False))
    split = parse(_lambda_mdp(10, list(FREESOLV), 100, 1.0, 10, T, 1, False, equil=False, boundary=4))
    edge = parse(_lambda_mdp(4, list(FREESOLV), 100, 1.0, 10, T, 1, False, equil=False, boundary=4))
    assert (full["couple-lambda0"], split["couple-lambda0"], edge["couple-lambda0"]) == ("vdw-q", "vdw", "vdw-q")
    assert split["init-lambda-state"] == "6" and split["coul-lambdas"].split() == ["1"] * 16
    assert split["vdw-lambdas"].split() == full["vdw-lambdas"].split()[4:]
    assert edge == full | {"init-lambda-state": "4"}   # the boundary window: the full topology, every state
    assert {k: v for k, v in split.items() if k not in ("couple-lambda0", "init-lambda-state", "coul-lambdas",
                                                        "vdw-lambdas")} == \
        {k: v for k, v in full.items() if k not in ("couple-lambda0", "init-lambda-state", "coul-lambdas",
                                                    "vdw-lambdas")}


# ------------------------------------------------------------------------------------------ GROMACS
def _gmx(args, cwd):
    r = subprocess.run([GMX, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def _pme_spreads(log: Path) -> int:
    """The call count of "PME spread" in md.log's cycle accounting."""
    m = re.search(r"^ PME spread\s+\d+\s+\d+\s+(\d+)\s", log.read_text(), re.M)
    assert m, f"no PME spread line in {log}"
    return int(m.group(1))


@pytest.fixture(scope="module")
def window_runs(tmp_path_factory):
    """State 10 of FreeSolv's schedule, 20 steps of the full-topology window and of the split one from the same
    configuration, and both topologies rerun on the full window's frames (every 5 steps)."""
    if GMX is None:
        pytest.fail("no gmx")
    from mdi_mlmm.hosts.gromacs.alchemy import _lambda_mdp

    d = tmp_path_factory.mktemp("split_window")
    for f in DATA.iterdir():
        shutil.copy2(f, d)
    for name, b in (("full", None), ("split", 4)):
        text = _lambda_mdp(10, list(FREESOLV), 20, 1.0, 5, T, 11, False, equil=True, boundary=b)
        (d / f"{name}.mdp").write_text(text + "\nnstxout = 5\nnstvout = 5\n")
        _gmx(["grompp", "-f", f"{name}.mdp", "-c", "conf.gro", "-p", "topol.top", "-n", "index.ndx", "-o",
              f"{name}.tpr", "-maxwarn", "2"], d)
        _gmx(["mdrun", "-deffnm", name, "-ntmpi", "1", "-ntomp", "1", "-nb", "cpu", "-pin", "off", "-dhdl",
              f"{name}.dhdl.xvg"], d)
    for name in ("full", "split"):
        _gmx(["mdrun", "-s", f"{name}.tpr", "-rerun", "full.trr", "-deffnm", f"rerun_{name}", "-ntmpi", "1",
              "-ntomp", "1", "-nb", "cpu", "-pin", "off", "-dhdl", f"rerun_{name}.dhdl.xvg"], d)
    return d


@needs_gmx
def test_split_window_has_the_full_topology_energies(window_runs):
    from mdi_mlmm.analysis import free_energy as fe

    sched = list(FREESOLV)
    u_full, d_full = fe.read_xvg(window_runs / "rerun_full.dhdl.xvg", T, sched[10], sched)
    u_split, d_split = fe.read_xvg(window_runs / "rerun_split.dhdl.xvg", T, sched[10], sched[4:])
    assert len(u_full) == len(u_split) == 5
    assert list(u_split.columns) == list(u_full.columns)[4:]
    du = np.abs(u_split.to_numpy() - u_full.to_numpy()[:, 4:])
    print(f"stage-2 window vs full topology, same frames: max |ΔU_k difference| = {du.max():.2e} kT over "
          f"{du.size} energies (k = 4..19); largest |ΔU_k| {np.abs(u_full.to_numpy()[:, 4:]).max():.1f} kT")
    assert du.max() <= 1e-3
    assert np.abs(u_full.to_numpy()[:, :4]).max() > 1.0    # the charged states differ: the check can fail
    assert np.allclose(d_split["vdw"], d_full["vdw"], atol=1e-3, rtol=0)
    assert np.all(d_split["coul"] == 0) and np.abs(d_full["coul"]).max() > 1.0   # enters TI with Δλ_coul = 0 only


@needs_gmx
def test_split_window_is_exact_with_the_freesolv_protocol(tmp_path):
    """Protocol ``freesolv`` adds what the default model has not: LJ potential-switch, a dispersion correction
    for energy and pressure (its average C6 taken over the A and B atom types), NPT (C-rescale; the dhdl.xvg
    gets a pV column) and 2 fs with h-bond constraints. On the same frames the split topology at state 12 still
    gives the full topology's ΔU to every stage-2 state and its dH/dλ_vdw."""
    from alchemlyb.parsing import gmx as agmx

    from mdi_mlmm.hosts.gromacs.alchemy import _lambda_mdp

    for f in DATA.iterdir():
        shutil.copy2(f, tmp_path)
    for name, b in (("full", None), ("split", 4)):
        text = _lambda_mdp(12, list(FREESOLV), 20, 2.0, 5, T, 11, False, equil=True, protocol="freesolv",
                           constrain_hbonds=True, boundary=b)
        assert "DispCorr                 = AllEnerPres" in text and "pcoupl                   = C-rescale" in text
        (tmp_path / f"{name}.mdp").write_text(text + "\nnstxout = 5\nnstvout = 5\n")
        _gmx(["grompp", "-f", f"{name}.mdp", "-c", "conf.gro", "-p", "topol.top", "-n", "index.ndx", "-o",
              f"{name}.tpr", "-maxwarn", "2"], tmp_path)
    _gmx(["mdrun", "-deffnm", "full", "-ntmpi", "1", "-ntomp", "1", "-nb", "cpu", "-pin", "off"], tmp_path)
    frames = {}
    for name in ("full", "split"):
        _gmx(["mdrun", "-s", f"{name}.tpr", "-rerun", "full.trr", "-deffnm", f"re_{name}", "-ntmpi", "1", "-ntomp",
              "1", "-nb", "cpu", "-pin", "off", "-dhdl", f"re_{name}.xvg"], tmp_path)
        xvg = str(tmp_path / f"re_{name}.xvg")
        frames[name] = (agmx.extract_u_nk(xvg, T=T), agmx.extract_dHdl(xvg, T=T))
    (u_full, d_full), (u_split, d_split) = frames["full"], frames["split"]
    assert len(u_full) == len(u_split) == 5 and list(u_split.columns) == list(u_full.columns)[4:]
    du = np.abs(u_split.to_numpy() - u_full.to_numpy()[:, 4:])
    print(f"protocol freesolv, stage-2 window vs full topology, same frames: max |ΔU_k difference| {du.max():.2e} kT")
    assert du.max() <= 1e-3 and np.abs(u_full.to_numpy()[:, 4:]).max() > 1.0
    assert np.abs(u_full.to_numpy()[:, :4] - u_full.to_numpy()[:, [12]]).max() > 1.0   # charged states differ
    assert np.allclose(d_split["vdw"], d_full["vdw"], atol=1e-3, rtol=0)


@needs_gmx
def test_split_window_computes_one_pme_grid(window_runs):
    full, split = _pme_spreads(window_runs / "full.log"), _pme_spreads(window_runs / "split.log")
    print(f"PME spread calls over 21 force evaluations: full topology {full}, split {split}")
    assert (full, split) == (42, 21)


@needs_gmx
def test_stage2_file_is_accepted_with_its_own_states_only(window_runs):
    from mdi_mlmm.analysis import free_energy as fe

    sched, xvg = list(FREESOLV), window_runs / "split.dhdl.xvg"
    fe.read_xvg(xvg, T, sched[10], sched[4:], 5)
    for wrong in (sched, sched[5:], sched[3:19]):
        with pytest.raises(AnalysisError, match="inconsistent λ states"):
            fe.read_xvg(xvg, T, sched[10], wrong)
    with pytest.raises(AnalysisError, match="inconsistent λ states"):   # a full window's file is not a stage-2 one
        fe.read_xvg(window_runs / "full.dhdl.xvg", T, sched[10], sched[4:])


@pytest.mark.skipif(gbuild.gmx_path() is None and not os.environ.get("CI"),
                    reason="no MDI-enabled GROMACS build (run `mdi-mlmm gromacs build`)")
def test_ml_window_runs_split_with_the_same_energies(tmp_path):
    """An ML/MM window through the MDI gmx (model ``zero``: E_ML = 0, the MDI module and its engine in the loop)
    after the boundary, full topology vs split, from the same configuration and noise: the ML atoms' charges are
    zero in both states of the split one (no ML–ML reciprocal-space correction left to make: qA = qB = 0), it
    computes one PME grid, and its ΔU to every stage-2 state are the full window's."""
    from mdi_mlmm.analysis import free_energy as fe
    from mdi_mlmm.hosts.gromacs.alchemy import run_window
    from mdi_mlmm.protocol.specs import WindowSpec

    sched, runs = list(FREESOLV), {}
    for name, b in (("full", None), ("split", 4)):
        spec = WindowSpec(host="gromacs", model="zero", out_dir=str(tmp_path / name), top=str(DATA / "topol.top"),
                          gro=str(DATA / "conf.gro"), ndx=str(DATA / "index.ndx"), ml_indices=list(range(9)), steps=20,
                          dt_fs=1.0, temperature=T, sample_every=5, seed=5, state=10, schedule=sched,
                          stage_boundary=b, engine_args=["--threads", "1"])
        runs[name] = run_window(spec)
    full, split = (tmp_path / "full", tmp_path / "split")
    assert "couple-lambda0           = vdw " in (split / "prod.mdp").read_text()
    assert (_pme_spreads(full / "prod.log"), _pme_spreads(split / "prod.log")) == (42, 21)
    assert "MDI ML/MM: 21 engine evaluations" in (split / "prod.log").read_text()   # the ML module was in the loop
    u_full, _ = fe.read_xvg(full / "dhdl.xvg", T, sched[10], sched, 5)
    u_split, _ = fe.read_xvg(split / "dhdl.xvg", T, sched[10], sched[4:], 5)
    du = np.abs(u_split.to_numpy() - u_full.to_numpy()[:, 4:])
    print(f"ML window (model zero), split vs full topology over 20 steps: max |ΔU_k difference| {du.max():.2e} kT")
    assert du.max() <= 1e-3 and np.abs(u_full.to_numpy()[:, 4:]).max() > 0.1


def _fake_prepared_run(out: Path):
    """A run directory whose preparation and equilibration are done: tests/data/lammps_ethanol as the prepared,
    equilibrated system (the workflow resumes past both)."""
    (out / "system" / "solvated").mkdir(parents=True)
    for f in DATA.iterdir():
        shutil.copy2(f, out / "system" / "solvated" / f.name)
    system = {"format": "mdi_mlmm.system/1", "name": "mobley_2310185", "smiles": "CCO",
              "freesolv_id": "mobley_2310185", "moleculetype": "MOL", "ml_group": "ML", "ml_atoms": list(range(9)),
              "solvated": {"top": "solvated/topol.top", "gro": "solvated/conf.gro", "ndx": "solvated/index.ndx"},
              "gas": {"top": "solvated/topol.top", "gro": "solvated/conf.gro", "ndx": "solvated/index.ndx"}}
    (out / "system" / "system.json").write_text(json.dumps(system))
    (out / "equil").mkdir()
    shutil.copy2(DATA / "conf.gro", out / "equil" / "npt.gro")
    (out / "equil" / "done.json").write_text(json.dumps({"equil_ps": 1, "gro": str(out / "equil" / "npt.gro")}))


@needs_gmx
def test_split_hydration_run_end_to_end(tmp_path):
    """Plain MM on GROMACS, 4 windows (states (0,0) (1,0) (1,0.5) (1,1): boundary 1, windows 2 and 3 split),
    0.5 ps each: results.json carries the split and both stages; the analysis refuses the files under an unsplit plan."""
    from mdi_mlmm.analysis.report import analyze
    from mdi_mlmm.workflow.hydration import run_hydration

    out = tmp_path / "run"
    _fake_prepared_run(out)
    plan = make_plan(out, **_plan_kw(windows=4, workers=2, ns_per_window=0.0005))
    assert plan.stage_boundary == 1
    run_hydration(plan, progress=False, analyze=False)
    for k in (2, 3):
        w = out / "windows" / f"{k:02d}"
        assert "couple-lambda0           = vdw " in (w / "prod.mdp").read_text()
        assert _pme_spreads(w / "prod.log") == 501      # 500 steps + the last: one grid per step
    assert _pme_spreads(out / "windows" / "01" / "prod.log") == 1002
    res_obj = analyze(out, plots=True)
    res = json.loads((out / "analysis" / "results.json").read_text())
    assert res["split_decoupling"] is True and res["overlap_matrix"] is None
    s1, s2 = res["stages"]
    assert (s1["states"], s2["states"]) == ([0, 1], [1, 2, 3])
    assert len(s1["overlap_matrix"]) == 2 and len(s2["overlap_matrix"]) == 3
    for k in ("MBAR", "BAR"):
        assert res[f"dG_{k}"]["value"] == s1[f"dG_{k}"]["value"] + s2[f"dG_{k}"]["value"], k
        assert res[f"dG_{k}"]["error"] == pytest.approx(math.hypot(s1[f"dG_{k}"]["error"], s2[f"dG_{k}"]["error"]))
    assert math.isfinite(res["dG_TI"]["value"]) and math.isfinite(res["dG_MBAR"]["value"])
    # plumbing, not accuracy: ethanol's MM ΔG_hyd is about −3.4 kcal/mol (FreeSolv GAFF), but charges off in one
    # step of 0.5 ps windows barely overlap (seen: MBAR −13.6 ± 2.2 = stage 1 −8.9 + stage 2 −4.6)
    print("ΔG_hyd TI / MBAR / BAR:", res["dG_TI"], res["dG_MBAR"], res["dG_BAR"], "stages:", s1["dG_MBAR"],
          s2["dG_MBAR"])
    assert -30 < res["dG_MBAR"]["value"] < 10 and -30 < res["dG_TI"]["value"] < 10
    assert -10 < s2["dG_MBAR"]["value"] < 2          # the LJ stage of a small polar solute: a few kcal/mol
    # the overlap warning looks at both stages: the smaller is the charge stage's here
    ov = min(s1["min_neighbour_overlap"], s2["min_neighbour_overlap"])
    assert res["min_neighbour_overlap"] == ov
    assert any(w.startswith(f"smallest neighbour overlap {ov:.3f}") for w in res["warnings"]) == (ov < 0.03)
    assert res_obj.stages == res["stages"] and "stage 2 (Lennard-Jones" in (out / "analysis" / "report.md").read_text()
    assert {"overlap_stage1.png", "overlap_stage2.png"} <= set(res["plots"])

    # the same files under a plan that says every window ran unsplit: the stage-2 windows are refused
    d = json.loads((out / PLAN_NAME).read_text())
    (out / PLAN_NAME).write_text(json.dumps(dict(d, split_decoupling=False)))
    with pytest.raises(AnalysisError, match=r"windows/02/dhdl.xvg.*inconsistent λ states"):
        analyze(out, plots=False)


# ------------------------------------------------------------------------------------------ estimators
def _harmonic_frames(schedule, centres, springs, n=2000, seed=3):
    """u_nk/dH/dλ frames (alchemlyb's shape, kT) of 1-D harmonic states u_k(x) = K_k (x − μ_k)²/2, every column
    present. Shifted wells: a state overlaps its neighbours, hardly the states beyond, as λ windows do."""
    rng = np.random.default_rng(seed)
    us, ds = [], []
    cols = [tuple(s) for s in schedule]
    for i, (c, v) in enumerate(cols):
        x = rng.normal(centres[i], 1.0 / math.sqrt(springs[i]), n)
        idx = pd.MultiIndex.from_arrays([np.arange(n) * 0.1, np.full(n, c), np.full(n, v)],
                                        names=["time", "coul-lambda", "vdw-lambda"])
        u = pd.DataFrame(0.5 * springs[None, :] * (x[:, None] - centres[None, :]) ** 2, index=idx, columns=cols)
        d = pd.DataFrame({"coul": x, "vdw": x}, index=idx)
        for df in (u, d):
            df.attrs = {"temperature": T, "energy_unit": "kT"}
        us.append(u)
        ds.append(d)
    return us, ds


def test_stage_mbar_equals_unsplit_mbar_with_every_column():
    """MBAR per stage, added, vs MBAR over all states on the same samples with every column: within σ/10 when far
    states do not overlap (neighbour overlap ~0.07 here: 0.002–0.02σ over seeds 1–3; states 1.0 apart, overlap
    ~0.24: up to 0.1σ; nested wells that all overlap: 0.1–0.4σ, the information between stages that a split
    run does not have). BAR (neighbours only) is the same; the exact ΔG is 0.5·ln(K_last/K_0) kT."""
    from mdi_mlmm.analysis import free_energy as fe
    from mdi_mlmm import units

    sched = [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (1.0, 0.25), (1.0, 0.5), (1.0, 0.75), (1.0, 0.9), (1.0, 1.0)]
    assert stage_boundary(sched) == 2
    springs = np.linspace(1.0, 3.0, 8)
    us, ds = _harmonic_frames(sched, 2.0 * np.arange(8), springs)
    full = fe.estimate(us, ds, T)
    split = fe.estimate_stages(us, ds, T, 2)
    exact = 0.5 * math.log(springs[-1] / springs[0]) * units.kT_kcal(T)   # ΔG = f_last − f_0
    print(f"MBAR unsplit {full.MBAR}, split {split.MBAR}, exact {exact:.4f}; BAR {full.BAR} vs {split.BAR}")
    assert abs(split.MBAR.value - full.MBAR.value) <= full.MBAR.error / 10
    assert abs(split.MBAR.value - exact) < 4 * split.MBAR.error
    assert split.BAR.value == pytest.approx(full.BAR.value, abs=1e-9)    # neighbours only: the same pairs
    assert split.TI == full.TI                                           # TI over all windows, unchanged
    assert [s.states for s in split.stages] == [[0, 1, 2], [2, 3, 4, 5, 6, 7]]
    assert split.min_neighbour_overlap == min(min(s.overlap[i][i + 1] for i in range(len(s.overlap) - 1))
                                              for s in split.stages)
    # as the files are: a stage-2 window (after state 2) holds the columns 2..7 only; the same estimates
    files = [u if k <= 2 else u.iloc[:, 2:] for k, u in enumerate(us)]
    again = fe.estimate_stages(files, ds, T, 2)
    assert (again.MBAR, again.BAR) == (split.MBAR, split.BAR)
    # forward/backward convergence of a split run: the stages' added; the full data give the total
    conv = fe.convergence(us, T, num=2, boundary=2)
    assert conv["Forward"].iloc[-1] == pytest.approx(split.MBAR.value, abs=1e-6)
