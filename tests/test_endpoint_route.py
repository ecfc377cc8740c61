"""The endpoint route end to end with real parts on tiny settings (plumbing, not accuracy): prepare →
equilibrate → plain-MM decoupling windows + MM→ML legs (ANI-2x through the λ-mixed engine) → ΔU →
cycle; results.json and report.md, resume after a kill redoing nothing, `mdi-mlmm analyze`."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mdi_mlmm.errors import UserInputError
from mdi_mlmm.protocol.plan import load_or_create, make_plan
from tests import _prepared

pytestmark = pytest.mark.skipif(not any(Path(p, "gmx").exists() for p in os.environ["PATH"].split(":")),
                                reason="needs Debian gromacs (gmx) for preparation, equilibration and the MM part")


def endpoint_cmd(out, host):
    return [sys.executable, "-m", "mdi_mlmm", "hydration", "--freesolv", "mobley_2310185", "--route", "endpoint",
            "--host", host, "--windows", "3", "--ns-per-window", "0.001", "--equil-ps", "1",
            "--window-equil-ps", "0.05", "--sample-every", "10", "--leg-ps", "0.3", "--leg-equil-ps", "0.05",
            "--leg-sample-every", "10", "--checkpoint-every", "100", "--workers", "2", "--no-progress",
            "--out", str(out)]


def _units(out: Path) -> list[Path]:
    return sorted(out.glob("windows/*")) + sorted(out.glob("legs/*/*"))


def _check_results(out: Path, host: str) -> dict:
    res = json.loads((out / "analysis" / "results.json").read_text())
    assert res["route"] == "endpoint" and res["host"] == host and res["model"] == "ani2x"
    assert res["legs"]["lambdas"] == [0.0, 0.5, 1.0] and res["legs"]["ps_per_window"] == pytest.approx(0.3)
    for k in ("dG_MM", "dG_MBAR", "dG_BAR", "dG_reorg", "dG_MBAR_plus_reorg"):
        assert math.isfinite(res[k]["value"]) and math.isfinite(res[k]["error"]) and res[k]["error"] >= 0, k
    for ph in ("water", "gas"):
        leg = res[ph]
        assert len(leg["overlap_matrix"]) == 3 and 0 <= leg["min_neighbour_overlap"] <= 1
        assert [s["frames"] for s in leg["samples"]] == [31, 31, 31]          # 300 steps / 10 + the first
        # ΔA carries the absolute ANI-2x energy of ethanol minus its GAFF intramolecular energy (~ −97254)
        assert -97300 < leg["dA_MBAR"]["value"] < -97200, leg["dA_MBAR"]
    # the cycle total is the sum of its terms (the same float operations), σ in quadrature
    for k in ("MBAR", "BAR"):
        assert res[f"dG_{k}"]["value"] == res["dG_MM"]["value"] + res["water"][f"dA_{k}"]["value"] \
            - res["gas"][f"dA_{k}"]["value"], k
        assert res[f"dG_{k}"]["error"] == pytest.approx(math.sqrt(res["dG_MM"]["error"] ** 2 + res["water"][f"dA_{k}"][
            "error"] ** 2 + res["gas"][f"dA_{k}"]["error"] ** 2))
        assert res[f"dG_{k}_plus_reorg"]["value"] == res[f"dG_{k}"]["value"] + res["dG_reorg"]["value"]
    assert res["dG_MM"] == res["mm"]["dG_MBAR"]                               # MBAR of the MM part enters the cycle
    # the reorganization energy is ⟨E_ML⟩_water − ⟨E_ML⟩_gas of the λ = 1 windows
    assert res["dG_reorg"]["value"] == pytest.approx(res["water"]["e_ml_lambda1"]["mean"]
                                                     - res["gas"]["e_ml_lambda1"]["mean"])
    # so short a run cannot support its number: the report says so loudly
    assert any("0.3 ps per window" in w for w in res["warnings"])
    report = (out / "analysis" / "report.md").read_text()
    assert "⚠ WARNINGS" in report and "ΔA_MM→ML(water)" in report and "ΔG_reorg" in report
    # how the run was made: the plan's physical model, X–H treatment, precision and time steps
    plan = json.loads((out / "plan.json").read_text())
    assert (res["protocol"], res["constraints"], res["dtype"]) == (plan["protocol"], plan["constraints"], plan["dtype"])
    assert (res["legs"]["dt_fs"], res["legs"]["mm_dt_fs"]) == (plan["leg_dt_fs"], plan["dt_fs"])
    assert (res["mm"]["protocol"], res["mm"]["constraints"], res["mm"]["dt_fs"]) == (plan["protocol"], "h-bonds",
                                                                                     plan["dt_fs"])
    assert f"ML precision **{plan['dtype']}**, protocol: **{plan['protocol']}**;" in report
    return res


def test_plan_records_route_and_leg_settings(tmp_path):
    kw = dict(model="ani2x", host="gromacs", freesolv_id="mobley_2310185", windows=3, ns_per_window=0.001, dt_fs=2.0,
              temperature=298.15, sample_every=10, gas_ns=0.001, equil_ps=1, window_equil_ps=0.05, workers=1,
              route="endpoint", leg_windows=3, leg_ps=0.3, leg_equil_ps=0.05, leg_sample_every=10)
    plan, resumed = load_or_create(make_plan(tmp_path, **kw))
    assert not resumed and plan.route == "endpoint" and plan.leg_lambdas == [0.0, 0.5, 1.0]
    assert (plan.leg_steps, plan.leg_equil_steps, plan.leg_sample_every, plan.gas_steps) == (300, 50, 10, 0)
    assert load_or_create(make_plan(tmp_path, **dict(kw, workers=2)))[1]
    for change in (dict(leg_ps=0.4), dict(leg_windows=4), dict(leg_sample_every=20), dict(route="direct")):
        with pytest.raises(UserInputError, match="different settings"):
            load_or_create(make_plan(tmp_path, **dict(kw, **change)))
    with pytest.raises(UserInputError, match="ML --model"):
        make_plan(tmp_path / "mm", **dict(kw, model="mm"))


@pytest.mark.parametrize("protocol", ["default", "freesolv"])
def test_water_legs_take_the_nonbonded_model_of_the_mm_decoupling(tmp_path, protocol):
    """The cycle needs the water leg at λ_intra = 0 to be the MM decoupling's coupled state: the same LJ
    treatment, cut-offs, Ewald settings and dispersion correction (FreeSolv's with ``--protocol freesolv``);
    the legs stay NVT at the equilibrated volume and the gas legs are the solute alone."""
    from mdi_mlmm.hosts.gromacs.alchemy import _lambda_mdp, _leg_mdp
    from mdi_mlmm.prep import mdp
    from mdi_mlmm.workflow.endpoint import leg_specs, mm_plan
    from mdi_mlmm.workflow.hydration import unit_specs

    kw = dict(model="ani2x", host="gromacs", freesolv_id="mobley_2310185", windows=3, ns_per_window=0.001,
              dt_fs=2.0, temperature=298.15, sample_every=10, gas_ns=0.001, equil_ps=1, window_equil_ps=0.05,
              workers=1, route="endpoint", leg_windows=3, leg_ps=0.3, leg_equil_ps=0.05, leg_sample_every=10,
              protocol=protocol)
    plan = make_plan(tmp_path, **kw)
    system = {"root": str(tmp_path), "ml_atoms": list(range(9)),
              "solvated": {"top": "s.top", "gro": "s.gro", "ndx": "s.ndx"},
              "gas": {"top": "g.top", "gro": "g.gro", "ndx": "g.ndx"}}
    legs = leg_specs(plan, system, tmp_path / "eq.gro")
    assert {s.protocol for s in legs} == {protocol}
    window = unit_specs(mm_plan(plan), system, tmp_path / "eq.gro", constrain_hbonds=True)[0]
    coupled = mdp.parse(_lambda_mdp(0, window.schedule, 100, 2.0, 10, 298.15, 1, False, False,
                                    protocol=window.protocol, constrain_hbonds=True))
    keys = ("coulombtype", "rcoulomb", "vdwtype", "vdw-modifier", "rvdw", "dispcorr", "fourierspacing", "pme-order",
            "ewald-rtol")
    low = lambda o: {k.lower(): str(v).lower() for k, v in o.items()}   # noqa: E731
    coupled = low(coupled)
    for leg in legs:
        o = low(mdp.parse(_leg_mdp(leg, "prod", 100, True)))
        if leg.phase == "water":
            assert {k: o.get(k) for k in keys} == {k: coupled.get(k) for k in keys}
            assert o["pcoupl"] == "no"
            if protocol == "freesolv":
                assert (o["dispcorr"], o["rcoulomb"], o["vdw-modifier"]) == ("allenerpres", "1.2", "potential-switch")
            if "rvdw-switch" in coupled:
                assert o["rvdw-switch"] == coupled["rvdw-switch"]
        else:
            assert o.get("dispcorr", "no") == "no" and o["coulombtype"] == "cut-off"


def test_endpoint_gromacs_end_to_end_resume_and_analyze(tmp_path):
    from mdi_mlmm.hosts.gromacs.build import gmx_path

    if gmx_path() is None:
        pytest.fail("no MDI-enabled GROMACS build: run `mdi-mlmm gromacs build` first")
    out = tmp_path / "run"
    _prepared.seed(out)          # the prepared, equilibrated system of an earlier test, if any
    cmd = endpoint_cmd(out, "gromacs")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    first = out / "legs" / "water" / "00"
    t0 = time.time()
    while time.time() - t0 < 900:   # kill once the first leg window is finished and others are under way
        if (first / "done.json").exists():
            break
        assert p.poll() is None, p.stdout.read().decode()[-3000:]
        time.sleep(0.5)
    else:
        pytest.fail("the run did not get far enough in time")
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    _prepared.remember(out)
    first_mtime = (first / "done.json").stat().st_mtime
    assert not (out / "analysis" / "results.json").exists()

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (first / "done.json").stat().st_mtime == first_mtime        # the finished window was not redone
    assert "ΔG_hyd(ML/MM) MBAR" in r.stdout and "WARNING" in r.stdout
    res = _check_results(out, "gromacs")
    assert res["model_server"]["structures"] > 0                         # two ML legs at a time shared one server

    # a finished run: rerunning redoes nothing (units, ΔU)
    stamps = {p: p.stat().st_mtime for d in _units(out) for p in (d / "done.json", d / "delta_u.csv") if p.exists()}
    assert sum(1 for p in stamps if p.name == "delta_u.csv") == 6
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert {p: p.stat().st_mtime for p in stamps} == stamps

    # mdi-mlmm analyze re-analyses the endpoint run
    a = subprocess.run([sys.executable, "-m", "mdi_mlmm", "analyze", str(out), "--equil-fraction", "0.2",
                        "--no-plots"], capture_output=True, text=True, timeout=300)
    assert a.returncode == 0, a.stderr[-3000:]
    assert "endpoint route" in a.stdout
    from mdi_mlmm import load_result

    again = load_result(out)
    assert again.route == "endpoint" and again.dG["MBAR"].value == json.loads(
        (out / "analysis" / "results.json").read_text())["dG_MBAR"]["value"]


def test_endpoint_lammps_end_to_end(tmp_path):
    """The legs on LAMMPS (solute frames in a DCD), the MM part on GROMACS."""
    out = tmp_path / "run"
    _prepared.seed(out)
    r = subprocess.run(endpoint_cmd(out, "lammps"), capture_output=True, text=True, timeout=1500)
    _prepared.remember(out)
    assert r.returncode == 0, r.stderr[-3000:]
    _check_results(out, "lammps")
    assert (out / "legs" / "gas" / "02" / "solute.dcd").exists()
