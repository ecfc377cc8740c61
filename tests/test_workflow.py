"""Hydration workflow end to end on a tiny run (plumbing, not accuracy), and resume after a kill."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mdi_mlmm.errors import UserInputError
from mdi_mlmm.protocol.plan import load_or_create, make_plan
from tests import _prepared

pytestmark = pytest.mark.skipif(not any(Path(p, "gmx").exists() for p in os.environ["PATH"].split(":")),
                                reason="needs Debian gromacs (gmx) for preparation/equilibration")


def hydration_cmd(out, *extra, model="mm", host="lammps"):
    return [sys.executable, "-m", "mdi_mlmm", "hydration", "--freesolv", "mobley_2310185", "--model", model,
            "--host", host, "--windows", "3", "--equil-ps", "1", "--window-equil-ps", "0.05", "--sample-every", "10",
            "--workers", "2", "--no-progress", "--out", str(out), *extra]


# ANI-2x (8 members, float64) ethanol at its BFGS minimum from the tests/data/ani_reference.json geometry
# (scipy BFGS, gtol 1e-7 Ha/Å): -154.99058 Ha.
ANI2X_ETHANOL_MIN_KCAL = -97258.06


def _check_ml_results(res: dict, out: Path, units: tuple[str, ...]) -> None:
    """results.json of an ANI-2x ethanol run: finite numbers, the analysis's sums, and ⟨E_ML⟩ per unit.

    A plumbing run (3 windows × 0.2 ps) is far from converged, so ΔG itself is only required to be a
    number (the BAR error excepted: it came out NaN in short MM runs here). ⟨E_ML⟩ is
    physics at any length: the thermal mean of a 9-atom molecule's potential energy at 298 K lies
    (3N−6)/2·kT ≈ 6.2 kcal/mol above the minimum (harmonic; seen +4.4 to +5.8 in 0.3 ps LAMMPS NVE runs
    in water; +4.8, +7.0, +4.9 for windows 0, 2 and gas in this test on LAMMPS); allowed: minimum − 1
    (another conformer) to minimum + 15 (short, hot starts). (The old window, −97400 to −97100, also
    held ANI-1ccx ethanol, 62 kcal/mol above ANI-2x's.)"""
    for k in ("dG_TI", "dG_MBAR", "dG_BAR", "dG_reorg_gas", "dG_reorg_windows", "dG_TI_plus_reorg",
              "dG_MBAR_plus_reorg"):
        assert math.isfinite(res[k]["value"]), (k, res[k])
        if k != "dG_BAR":
            assert math.isfinite(res[k]["error"]) and res[k]["error"] >= 0, (k, res[k])
    for k in ("TI", "MBAR"):  # ΔG + ΔG_reorg(gas), the same float64 sum as the analysis
        assert res[f"dG_{k}_plus_reorg"]["value"] == res[f"dG_{k}"]["value"] + res["dG_reorg_gas"]["value"], k
    for unit in units:
        e = pd.read_csv(out / unit / "e_ml.csv")["e_ml_kcal_mol"]  # plain numbers, absolute E_ML
        print(f"{unit}: <E_ML> - minimum = {e.mean() - ANI2X_ETHANOL_MIN_KCAL:.2f} kcal/mol over {len(e)} samples")
        assert e.dtype == float and ANI2X_ETHANOL_MIN_KCAL - 1 < e.mean() < ANI2X_ETHANOL_MIN_KCAL + 15, unit


def test_plan_written_first_and_mismatch_refused(tmp_path):
    kw = dict(model="mm", host="lammps", freesolv_id="mobley_2310185", windows=3, ns_per_window=0.001, dt_fs=1.0,
              temperature=298.15, sample_every=10, gas_ns=0.0, equil_ps=1, window_equil_ps=0.05, workers=1)
    plan, resumed = load_or_create(make_plan(tmp_path, **kw))
    assert not resumed and (tmp_path / "plan.json").exists()
    assert [tuple(s) for s in plan.schedule] == [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]
    _, resumed = load_or_create(make_plan(tmp_path, **dict(kw, workers=2)))
    assert resumed
    with pytest.raises(UserInputError, match="different settings"):
        load_or_create(make_plan(tmp_path, **dict(kw, ns_per_window=0.002)))


def test_end_to_end_ml_run_lammps(tmp_path):
    """ANI-2x on LAMMPS: prepare → equilibrate → 3 windows + gas → analysis, report, plots, JSON."""
    out = tmp_path / "run"
    r = subprocess.run(hydration_cmd(out, "--ns-per-window", "0.0002", model="ani2x"), capture_output=True,
                       text=True, timeout=1500)
    _prepared.remember(out)   # this test prepares its own system; later ones may start from it
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "analysis" / "results.json").read_text())
    _check_ml_results(res, out, ("windows/00", "windows/02", "gas"))
    assert res["freesolv"]["experimental"] == -5.0
    assert (out / "analysis" / "report.md").read_text().count("kcal/mol") >= 1
    assert set(res["plots"]) >= {"dhdl.png", "overlap.png", "e_ml.png"}
    assert "ΔG MBAR" in r.stdout and "reorg" in r.stdout
    # two units at a time shared one model server, which batched their steps
    stats = json.loads((out / "model_server" / "server.log").read_text().strip().splitlines()[-1])
    print("model server:", stats)
    assert stats["clients"] >= 4 and stats["batch_sizes"].get("2", 0) > stats["model_calls"] // 2
    assert res["model_server"]["structures"] == stats["structures"] and "batched model calls" in \
        (out / "analysis" / "report.md").read_text()


def test_end_to_end_ml_run_gromacs(tmp_path):
    """ANI-2x on our MDI GROMACS: 3 windows + gas through one shared model server, then the analysis."""
    from mdi_mlmm.hosts.gromacs.build import gmx_path

    if gmx_path() is None:
        pytest.fail("no MDI-enabled GROMACS build: run `mdi-mlmm gromacs build` first")
    out = tmp_path / "run"
    _prepared.seed(out)          # the prepared, equilibrated system of an earlier test, if any
    r = subprocess.run(hydration_cmd(out, "--ns-per-window", "0.0002", model="ani2x", host="gromacs"),
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "analysis" / "results.json").read_text())
    _check_ml_results(res, out, ("windows/00", "windows/02", "gas"))
    stats = json.loads((out / "model_server" / "server.log").read_text().strip().splitlines()[-1])
    print("model server:", stats)
    assert stats["clients"] >= 7 and stats["batch_sizes"].get("2", 0) > 0   # eq + prod per window, gas


def test_resume_after_kill_loses_nothing_and_redoes_nothing(tmp_path):
    out = tmp_path / "run"
    _prepared.seed(out)
    cmd = hydration_cmd(out, "--ns-per-window", "0.0006", "--checkpoint-every", "100", "--workers", "1")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    # wait until window 0 has finished and window 1 is part way, past a checkpoint
    t0 = time.time()
    w0, w1 = out / "windows" / "00", out / "windows" / "01"
    while time.time() - t0 < 900:
        prog = w1 / "progress.json"
        if (w0 / "done.json").exists() and prog.exists() and json.loads(prog.read_text())["done"] >= 300:
            break
        assert p.poll() is None, p.stdout.read().decode()[-2000:]
        time.sleep(0.5)
    else:
        pytest.fail("the run did not get far enough in time")
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done0_mtime = (w0 / "done.json").stat().st_mtime
    u0_before = (w0 / "u_nk.csv").read_text()
    ckpt_rows = len(pd.read_csv(w1 / "u_nk.csv")) if (w1 / "u_nk.csv").exists() else 0
    assert not (w1 / "done.json").exists()

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (w0 / "done.json").stat().st_mtime == done0_mtime          # finished window not redone
    assert (w0 / "u_nk.csv").read_text() == u0_before
    for w in (w0, w1, out / "windows" / "02"):
        u = pd.read_csv(w / "u_nk.csv")
        t = u["time"].to_numpy()
        assert len(u) == 600 // 10 + 1, w                                 # every sample present once
        assert (abs((t[1:] - t[:-1]) - t[1] + t[0]) < 1e-9).all()         # contiguous times
    assert ckpt_rows > 0                                                  # samples saved before the kill were kept
    res = json.loads((out / "analysis" / "results.json").read_text())
    assert "dG_MBAR" in res and "dG_reorg_gas" not in res                 # plain MM: no reorganization term


def test_windows_run_on_a_dask_cluster(tmp_path):
    """--scheduler: units are submitted to a Dask distributed scheduler (local cluster here)."""
    from dask.distributed import LocalCluster

    from mdi_mlmm.prep.system import prepare_system
    from mdi_mlmm.protocol.specs import WindowSpec
    from mdi_mlmm.workflow.hydration import run_units

    sysdir = tmp_path / "system"
    info = prepare_system(sysdir, freesolv_id="mobley_2310185", model="mm")
    spec = WindowSpec(host="lammps", model="mm", state=2, schedule=[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]],
                      steps=60, equil_steps=0, dt_fs=1.0, temperature=298.15, sample_every=20, seed=1,
                      ml_indices=info["ml_atoms"], checkpoint_every=1000, top=str(sysdir / info["solvated"]["top"]),
                      gro=str(sysdir / info["solvated"]["gro"]), ndx=str(sysdir / info["solvated"]["ndx"]),
                      out_dir=str(tmp_path / "w2"))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = run_units([spec], scheduler=cluster.scheduler_address, progress=False)
    assert res[0]["state"] == 2 and len(pd.read_csv(tmp_path / "w2" / "u_nk.csv")) == 60 // 20 + 1
