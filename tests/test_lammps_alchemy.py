"""LAMMPS λ windows (hosts/lammps/alchemy.py): energies behind u_nk/dHdl, alchemlyb, resume, gas leg.

System: ethanol in TIP3P from ``mdi-mlmm prepare --smiles CCO`` (session fixture; raw solvated
box, not equilibrated — fine for energy identities and short plumbing runs). Windows use the
classical ``mm`` solute (stable, no engine) or the ``zero`` engine at a charge-free state; ANI-2x
runs once (gas leg).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm import units
from mdi_mlmm.errors import UserInputError
from mdi_mlmm.hosts.lammps import alchemy as al
from mdi_mlmm.hosts.lammps.convert import new_lammps
from mdi_mlmm.hosts.lammps.host import box_matrix

REPO = Path(__file__).resolve().parents[1]
SOLUTE = list(range(9))  # prepare writes the solute first
SCHED3 = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]


@pytest.fixture(scope="session")
def ethanol(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("alchemy") / "eth"
    r = subprocess.run([sys.executable, "-m", "mdi_mlmm", "prepare", "--smiles", "CCO", "--out", str(out),
                        "--no-check"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"prepare failed:\n{r.stdout}\n{r.stderr}")
    meta = json.loads((out / "system.json").read_text())
    assert meta["ml_atoms"] == SOLUTE
    return out


def _solv(eth):
    return eth / "solvated" / "topol.top", eth / "solvated" / "conf.gro"


def _perturbed(asys, seed=0):
    """The system's coordinates with a small random displacement (not a lattice-aligned special case)."""
    rng = np.random.default_rng(seed)
    return np.array(asys.structure.coordinates) + rng.normal(0, 0.05, (asys.natoms, 3))


def _lammps_terms(asys, mesh, kappa_c, kappa_v, pos):
    """(ecoul + elong, evdwl) of the sampling Hamiltonian's LAMMPS instance at (κ_c, κ_v)."""
    lmp = new_lammps(None)
    try:
        for c in asys.commands(kappa_v, mesh=mesh):
            lmp.command(c)
        nlocal = lmp.extract_global("nlocal")
        tags = np.asarray(lmp.numpy.extract_atom("id")[:nlocal]) - 1
        lmp.numpy.extract_atom("x")[:nlocal] = pos[tags]
        q = lmp.numpy.extract_atom("q")
        q[:nlocal] = np.where(np.isin(tags, asys.solute), kappa_c, 1.0) * asys.charges[tags]
        lmp.command("thermo_style custom step ecoul elong evdwl")
        lmp.command("run 0 post no")
        return (lmp.get_thermo("ecoul") + lmp.get_thermo("elong"), lmp.get_thermo("evdwl"), box_matrix(lmp))
    finally:
        lmp.close()


@pytest.fixture(scope="module")
def ml_system(ethanol, tmp_path_factory):
    top, gro = _solv(ethanol)
    return al.AlchemicalSystem.build(top, gro, tmp_path_factory.mktemp("mlsys"), SOLUTE, ml=True)


# ------------------------------------------------------------------ energies
def test_soft_core_lj_matches_lammps(ml_system):
    """numpy S(κ) = LAMMPS lj/cut/soft (with shift) solute–water energy at two κ; dS/dκ = finite difference."""
    asys = ml_system
    pos = _perturbed(asys)
    _, lj_off, cell = _lammps_terms(asys, (40, 40, 40), 0.0, 0.0, pos)  # κ_v = 0: solute–water LJ off
    kappas = [0.35, 0.8, 1.0]
    S, dS = asys.lj_solute_env(pos, cell, kappas)
    for k, s in zip(kappas, S):
        _, lj, _ = _lammps_terms(asys, (40, 40, 40), 0.0, k, pos)
        assert abs((lj - lj_off) - s) < 1e-8 * max(1.0, abs(s)), (k, lj - lj_off, s)
    assert abs(S[-1]) > 0.1  # a real interaction, not an empty pair set
    h = 1e-5
    for k, d in zip(kappas[:2], dS[:2]):
        (sp, sm), _ = asys.lj_solute_env(pos, cell, [k + h, k - h])
        assert abs(d - (sp - sm) / (2 * h)) < 1e-5 * max(1.0, abs(d))


@pytest.mark.parametrize("ml", [True, False], ids=["ml", "mm"])
def test_coulomb_decomposition_matches_lammps(ethanol, ml, tmp_path):
    """Evaluator C, E_ss reproduce the LAMMPS Coulomb of the sampling instance at κ_c = 1 and 0.5:
    E(κ) − E(0) = κ C + κ² E_ss. For mm, E_ss − E_intra (plain intramolecular Coulomb) is the tiny
    image term, equal to the ML system's E_ss."""
    top, gro = _solv(ethanol)
    asys = al.AlchemicalSystem.build(top, gro, tmp_path / "sys", SOLUTE, ml=ml)
    pos = _perturbed(asys, 1)
    ev = al.CoulombEvaluator(asys, log_file=tmp_path / "ev.log")
    try:
        C, e_ss = ev.evaluate(pos)
        C2, e_ss2 = ev.evaluate(pos)  # repeatable (charges/positions restored each time)
        ev.evaluate(pos + 0.1)
        C3, _ = ev.evaluate(pos)
    finally:
        ev.close()
    assert (C, e_ss) == (C2, e_ss2) and abs(C3 - C) < 1e-9
    e0, _, cell = _lammps_terms(asys, ev.mesh, 0.0, 1.0, pos)
    for k in (1.0, 0.5):
        ek, _, _ = _lammps_terms(asys, ev.mesh, k, 1.0, pos)
        assert abs((ek - e0) - (k * C + k * k * e_ss)) < 1e-7, (k, ek - e0, k * C + k * k * e_ss)
    assert abs(C) > 0.5
    if ml:
        assert abs(e_ss) < 0.05  # only the periodic-image interaction is left
    else:
        intra = al.IntraCoulomb(asys, 0.5)
        e_intra, _ = intra.energy_forces(pos[asys.solute], cell)
        assert abs(e_ss - e_intra) < 0.05 and abs(e_intra) > 1.0


def test_intra_coulomb_energy_and_forces(ethanol, tmp_path):
    """The mm baseline's intramolecular Coulomb: energy = validate's in-vacuo sum, forces = −∇E."""
    from mdi_mlmm.hosts.lammps import validate as va

    top, gro = _solv(ethanol)
    asys = al.AlchemicalSystem.build(top, gro, tmp_path / "sys", SOLUTE, ml=False)
    ref = va.intramolecular_terms(asys.structure, SOLUTE)["ecoul"]
    intra = al.IntraCoulomb(asys, 0.25)
    pos = np.array(asys.structure.coordinates)[SOLUTE]
    e, f = intra.energy_forces(pos, None)
    assert abs(e - ref) < 1e-6 * abs(ref), (e, ref)
    h = 1e-5
    for i in range(len(pos)):
        for a in range(3):
            p, m = pos.copy(), pos.copy()
            p[i, a] += h
            m[i, a] -= h
            fd = -(intra.energy_forces(p, None)[0] - intra.energy_forces(m, None)[0]) / (2 * h)
            assert abs(fd - f[i, a]) < 1e-5 * max(1.0, abs(fd))
    e_ha, f_ha = intra.compute(pos, None)
    assert abs(e_ha * units.HARTREE_IN_KCAL_PER_MOL - (1 - 0.25 ** 2) * e) < 1e-9


def test_shared_atom_type_refused(ethanol, tmp_path):
    top, gro = _solv(ethanol)
    with pytest.raises(UserInputError, match="both solute and environment"):
        al.AlchemicalSystem.build(top, gro, tmp_path / "sys", [9, 10, 11], ml=False)  # one water as "solute"


def test_window_frames_formulae():
    """u_nk/dHdl from raw samples: own column 0, linear-in-κ Coulomb, λ derivative signs."""
    sched = [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (1.0, 0.5), (1.0, 1.0)]
    n = 4
    S = np.tile([5.0, 5.0, 5.0, 2.0, 0.0], (n, 1))
    samples = {"time_ps": np.arange(n) * 0.1, "C": np.full(n, -10.0), "E_ss": np.full(n, 0.02),
               "E_intra": np.zeros(n), "S": S, "dS": np.full(n, 4.0)}
    T = 300.0
    kT = units.kT_kcal(T)
    u, d = al.window_frames(samples, sched, 1, T)
    assert list(u.columns) == sched and u.index.names == ["time", "coul-lambda", "vdw-lambda"]
    assert np.allclose(u[(0.5, 0.0)], 0.0)
    # κ: 0.5 → 1: ΔU = 0.5 C + 0.75 W ; → 0: −0.5 C − 0.25 W ; → (1, 1): −0.5 C − 0.25 W − 5
    assert np.allclose(u[(0.0, 0.0)] * kT, 0.5 * -10 + 0.75 * 0.02)
    assert np.allclose(u[(1.0, 0.0)] * kT, -0.5 * -10 - 0.25 * 0.02)
    assert np.allclose(u[(1.0, 1.0)] * kT, -0.5 * -10 - 0.25 * 0.02 - 5.0)
    assert np.allclose(d["coul"] * kT, 10 - 2 * 0.5 * 0.02)
    assert np.allclose(d["vdw"] * kT, -4.0)


# ------------------------------------------------------------------ windows
@pytest.fixture(scope="module")
def mm_windows(ethanol, tmp_path_factory):
    """Three short mm windows of a 3-state schedule."""
    top, gro = _solv(ethanol)
    base = tmp_path_factory.mktemp("mmwin")
    res = []
    for k in range(len(SCHED3)):
        t0 = time.perf_counter()
        r = al.run_window(top, gro, SOLUTE, "mm", k, SCHED3, 100, 1.0, base / f"w{k}", sample_every=20,
                          checkpoint_every=40, equil_steps=20, seed=3 + k)
        r["_test_wall"] = time.perf_counter() - t0
        res.append(r)
    return base, res


def test_windows_read_back_and_alchemlyb_estimators(mm_windows):
    from alchemlyb.estimators import MBAR, TI

    from mdi_mlmm.analysis.free_energy import read_window_frames

    base, res = mm_windows
    T = 298.15
    us, ds = [], []
    for k, r in enumerate(res):
        assert r["samples"] == 6 and r["steps"] == 100
        u, d = read_window_frames(base / f"w{k}" / "u_nk.csv", base / f"w{k}" / "dhdl.csv", T)
        assert len(u) == len(d) == 6
        assert np.allclose(u.index.get_level_values("time"), np.arange(6) * 0.02)
        assert list(u.columns) == SCHED3 and np.isfinite(u.values).all() and np.isfinite(d.values).all()
        assert np.allclose(u[SCHED3[k]], 0.0)
        assert set(u.index.get_level_values("coul-lambda")) == {SCHED3[k][0]}
        assert not (base / f"w{k}" / "e_ml.csv").exists()  # mm: no ML energy
        us.append(u)
        ds.append(d)
    # coupled window: u(1,0) − u(0,0) = −(C + E_ss − E_intra), dH/dλ_coul = −(C + 2 (E_ss − E_intra))
    assert list(ds[0].columns) == ["coul", "vdw"]  # as alchemlyb's GROMACS parser names them
    assert np.all(np.abs(us[0][(1.0, 0.0)].values - ds[0]["coul"].values) < 0.2)
    import pandas as pd

    mbar = MBAR().fit(pd.concat(us))
    ti = TI().fit(pd.concat(ds))
    assert np.isfinite(mbar.delta_f_.iloc[0, -1]) and np.isfinite(ti.delta_f_.iloc[0, -1])


def test_finished_window_not_rerun(mm_windows, ethanol):
    base, res = mm_windows
    top, gro = _solv(ethanol)
    before = {p.name: p.stat().st_mtime_ns for p in (base / "w1").iterdir() if p.is_file()}
    t0 = time.perf_counter()
    again = al.run_window(top, gro, SOLUTE, "mm", 1, SCHED3, 100, 1.0, base / "w1", sample_every=20,
                          checkpoint_every=40, equil_steps=20)
    assert time.perf_counter() - t0 < 1.0
    r = dict(res[1])
    r.pop("_test_wall")
    assert again == json.loads(json.dumps(r))
    after = {p.name: p.stat().st_mtime_ns for p in (base / "w1").iterdir() if p.is_file()}
    assert before == after


_CHILD = """
import sys
from mdi_mlmm.hosts.lammps import alchemy as al
top, gro, out = sys.argv[1:4]
al.run_window(top, gro, list(range(9)), "zero", 1, [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)], 300, 1.0, out,
              sample_every=10, checkpoint_every=50, seed=5)
"""

_GAS = """
import sys
from mdi_mlmm.hosts.lammps import alchemy as al
top, gro, out = sys.argv[1:4]
al.run_gas(top, gro, list(range(9)), "ani2x", 100, 0.5, out, sample_every=10, temperature=298.15, seed=2,
           checkpoint_every=50, engine_options=["--dtype", "float64"])
"""


def _python(code, *args):
    """Run ``code`` in a fresh interpreter (MDI can be initialised once per process)."""
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def _children(pid):
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid):
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_resume_after_sigkill(ethanol, tmp_path):
    """SIGKILL mid-window (zero engine, charge-free state): the rerun continues from the last
    checkpoint; the samples saved before the kill are kept unchanged, none is duplicated or
    missing; a changed setting is refused."""
    top, gro = _solv(ethanol)
    out = tmp_path / "win"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(top), str(gro), str(out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ck = out / al.CHECKPOINT
    deadline = time.time() + 300
    step = 0
    engine = []
    while time.time() < deadline and proc.poll() is None:
        engine = engine or _children(proc.pid)
        if ck.exists():
            try:
                step = int(np.load(ck)["step"])
            except Exception:  # being replaced right now
                step = 0
            if step >= 100:
                break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    engine = engine or _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "done.json").exists()
    # the engine notices the dead driver and exits
    t_end = time.time() + 30
    while time.time() < t_end and any(_alive(p) for p in engine):
        time.sleep(0.2)
    assert not any(_alive(p) for p in engine), "the engine outlived its killed driver"
    z = np.load(ck)
    saved_step = int(z["step"])
    saved_t = np.array(z["time_ps"])
    assert saved_step >= 100 and len(saved_t) == saved_step // 10 + 1
    saved_u = None
    if (out / "u_nk.csv").exists():
        import pandas as pd

        saved_u = pd.read_csv(out / "u_nk.csv")
        assert len(saved_u) <= len(saved_t) + 5  # at most one checkpoint ahead/behind
    with pytest.raises(UserInputError, match="other settings"):
        al.run_window(top, gro, SOLUTE, "zero", 1, SCHED3, 400, 1.0, out, sample_every=10, checkpoint_every=50)
    _python(_CHILD, top, gro, out)
    res = json.loads((out / "done.json").read_text())
    assert res["resumed_from_step"] == saved_step and res["steps_this_run"] == 300 - saved_step
    assert res["samples"] == 31
    import pandas as pd

    u = pd.read_csv(out / "u_nk.csv")
    d = pd.read_csv(out / "dhdl.csv")
    e = pd.read_csv(out / "e_ml.csv")
    assert len(u) == len(d) == len(e) == 31
    assert np.allclose(u["time"], np.arange(31) * 0.01) and np.allclose(e["time_ps"], u["time"])
    z2 = np.load(ck)
    assert np.array_equal(z2["time_ps"][:len(saved_t)], saved_t)
    assert np.array_equal(z2["C"][:len(saved_t)], z["C"]) and np.array_equal(z2["S"][:len(saved_t)], z["S"])
    if saved_u is not None:
        n = min(len(saved_u), len(saved_t))
        assert np.allclose(u.iloc[:n].values, saved_u.iloc[:n].values, rtol=0, atol=0)
    assert (out / "done.json").exists()


# ------------------------------------------------------------------ gas leg
def test_gas_leg_ani2x(ethanol, tmp_path):
    top, gro = ethanol / "gas" / "topol.top", ethanol / "gas" / "conf.gro"
    _python(_GAS, top, gro, tmp_path / "gas")
    res = json.loads((tmp_path / "gas" / "done.json").read_text())
    import pandas as pd

    e = pd.read_csv(tmp_path / "gas" / "e_ml.csv")
    assert list(e.columns) == ["time_ps", "e_ml_kcal_mol"] and len(e) == 11 == res["samples"]
    assert np.allclose(e["time_ps"], np.arange(11) * 0.005)
    # E_ML is ANI-2x (8 members, float64) at the coordinates LAMMPS held: the first sample at the gas
    # conf.gro geometry, the last at the positions in the final checkpoint. A direct call of the same
    # model agrees to float64 round-off (Å→Bohr→Å, summation order): 1e-9 Ha ≈ 6e-7 kcal/mol.
    from mdi_mlmm.topology.gromacs import load_gromacs
    from mdi_mlmm.potentials import load_potential

    st = load_gromacs(top, gro)
    z = [a.element_name for a in st.atoms]
    ck = np.load(tmp_path / "gas" / "checkpoint.npz")
    assert int(ck["step"]) == 100
    x_end = np.asarray(ck["x"])
    box = np.asarray(st.box[:3])  # Å, rectangular, fixed (NVT); make the molecule whole as the engine does
    x_end = x_end[0] + (x_end - x_end[0]) - np.round((x_end - x_end[0]) / box) * box
    ani = load_potential("ani2x", dtype="float64")
    e_ha = e["e_ml_kcal_mol"].to_numpy() / units.HARTREE_IN_KCAL_PER_MOL
    d0 = e_ha[0] - float(ani.compute(z, np.asarray(st.coordinates)).energy)
    d1 = e_ha[-1] - float(ani.compute(z, x_end).energy)
    print(f"E_ML(gas leg) - direct ANI-2x: first {d0:.2e} Ha, last {d1:.2e} Ha; "
          f"range over 50 fs {np.ptp(e['e_ml_kcal_mol']):.3f} kcal/mol")
    assert abs(d0) < 1e-9 and abs(d1) < 1e-9
    assert np.ptp(e["e_ml_kcal_mol"]) > 0.01  # the molecule moved
    assert al.run_gas(top, gro, SOLUTE, "ani2x", 100, 0.5, tmp_path / "gas", sample_every=10, temperature=298.15,
                      seed=2, checkpoint_every=50) == res
    with pytest.raises(UserInputError, match="no gas leg"):
        al.run_gas(top, gro, SOLUTE, "mm", 100, 0.5, tmp_path / "gas_mm", sample_every=10, temperature=298.15,
                   seed=2, checkpoint_every=50)


def test_window_blow_up_is_one_line_naming_the_step_and_log(ethanol, tmp_path):
    """A window that blows up (a 20 fs step) ends with LAMMPS's own error line, the steps it happened
    between and the log file: a HostError of one line, not a traceback from inside LAMMPS."""
    from mdi_mlmm.errors import HostError

    top, gro = _solv(ethanol)
    with pytest.raises(HostError) as ei:
        al.run_window(top, gro, SOLUTE, "mm", 0, SCHED3, 2000, 20.0, tmp_path / "w", sample_every=100,
                      checkpoint_every=1000)
    msg = str(ei.value)
    print(msg)
    assert msg.startswith("LAMMPS error ") and "Lost atoms" in msg and "\n" not in msg
    assert str(tmp_path / "w" / "lammps.log") in msg
