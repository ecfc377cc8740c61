"""``--constraints h-bonds`` on the LAMMPS host (issue 12, item 1: the same constraints on both hosts).

Every X–H bond outside the rigid waters, the ML region's included, gets a bond type of its own with r0 = the
force field's b0 (:func:`mdi_mlmm.hosts.lammps.convert.convert` with ``constrain_hbonds``) and joins the waters
in the one ``fix rattle``/``shake``, defined after the ``fix external`` of the ML forces. Checked with real
LAMMPS on ethanol in TIP3P (2037 atoms) and the cheap analytic ``harmonic`` ML test model, whose forces pull
every atom toward the centroid (so they load the constrained bonds): the converted types; ``run_md`` at 2 fs
(every X–H at b0 in every frame, E_ML applied and in E_pot, the temperature's degrees of freedom less the
constraints, the flexible C–C bond still moving); an endpoint water-leg window and a gas run keep every X–H
at b0 too; an atom with four X–H bonds (beyond LAMMPS's SHAKE clusters) is refused in one line.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm.errors import UserInputError

REPO = Path(__file__).resolve().parent.parent
ETH = Path(__file__).resolve().parent / "data" / "lammps_ethanol"  # ethanol (GAFF, MOL, atoms 0-8) + 676 TIP3P
KB_KCAL = 0.0019872043  # kcal/mol/K (LAMMPS real units' boltz)
N_ATOMS, N_WATERS = 2037, 676

pytestmark = [pytest.mark.timeout(300)]


def _python(code: str, *args) -> None:
    """Run ``code`` in a fresh interpreter (MDI can be initialised once per process)."""
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                       timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.fixture(scope="module")
def structure():
    from mdi_mlmm.topology.gromacs import load_gromacs

    return load_gromacs(ETH / "topol.top", ETH / "conf.gro")


def _xh(structure):
    """(i, j, b0 Å) of ethanol's X–H bonds (5 C–H, 1 O–H)."""
    out = [(b.atom1.idx, b.atom2.idx, b.type.req) for b in structure.bonds
           if b.atom1.idx < 9 and 1 in (b.atom1.atomic_number, b.atom2.atomic_number)]
    assert len(out) == 6
    return out


def _worst(frames, cells, xh) -> float:
    """Largest |r − b0| (Å) over the frames (minimum image in each frame's orthorhombic cell)."""
    worst = 0.0
    for x, cell in zip(frames, cells):
        box = np.diag(np.asarray(cell, dtype=float).reshape(3, 3))
        for i, j, b0 in xh:
            d = np.asarray(x[i], dtype=float) - np.asarray(x[j], dtype=float)
            d -= np.round(d / box) * box
            worst = max(worst, abs(float(np.linalg.norm(d)) - b0))
    return worst


def test_convert_types_the_xh_bonds_at_b0(tmp_path, structure):
    from mdi_mlmm.hosts.lammps.convert import convert
    from mdi_mlmm.hosts.lammps.host import shake_args

    xh = _xh(structure)
    for ml in ([], list(range(9))):
        plain = convert(ETH / "topol.top", ETH / "conf.gro", tmp_path / f"p{len(ml)}", ml_indices=ml,
                        structure=structure)
        sys_ = convert(ETH / "topol.top", ETH / "conf.gro", tmp_path / f"c{len(ml)}", ml_indices=ml,
                       structure=structure, constrain_hbonds=True)
        assert plain.hbond_types == [] and sys_.hbond_types
        assert shake_args(plain) == shake_args(sys_) and " b " in shake_args(sys_, hbonds=True)
        coeff = {}
        for ln in sys_.settings_file.read_text().splitlines():
            w = ln.split("#")[0].split()
            if w and w[0] == "bond_coeff":
                coeff[int(w[1])] = [x for x in w[2:] if x not in ("harmonic", "zero")]
        rows = {}
        section = None
        for ln in sys_.data_file.read_text().splitlines():
            s = ln.strip()
            if s and s[0].isalpha():
                section = s
            elif s and section == "Bonds":
                _, t, a, b = (int(v) for v in s.split())
                rows[tuple(sorted((a - 1, b - 1)))] = t
        for i, j, b0 in xh:                                  # each X–H bond: an X–H type whose r0 is b0
            t = rows[tuple(sorted((i, j)))]
            assert t in sys_.hbond_types and float(coeff[t][-1]) == pytest.approx(b0, abs=1e-12)
        xh_pairs = {tuple(sorted((i, j))) for i, j, _ in xh}
        assert {p for p, t in rows.items() if t in sys_.hbond_types} == xh_pairs  # and nothing else
        assert not set(sys_.hbond_types) & set(sys_.water_bond_types)
        if ml:  # the ML X–H pairs are zero bonds (no energy), all other ML–ML pairs length-less zero bonds
            assert all(len(coeff[t]) == 1 for t in sys_.hbond_types)
            assert sum(1 for p in rows if p[1] < 9) == 36


def test_four_xh_bonds_on_one_atom_are_refused(tmp_path):
    import parmed

    from mdi_mlmm.hosts.lammps.convert import convert

    s = parmed.Structure()
    for name, z, mass in (("C", 6, 12.011), *((f"H{k}", 1, 1.008) for k in range(1, 5))):
        s.add_atom(parmed.Atom(name=name, atomic_number=z, mass=mass, type=name[0], charge=0.0), "MET", 1)
    bt = parmed.BondType(340.0, 1.09)
    s.bond_types.append(bt)
    for k in range(1, 5):
        s.bonds.append(parmed.Bond(s.atoms[0], s.atoms[k], type=bt))
    for a in s.atoms:
        a.atom_type = parmed.AtomType(a.type, None, a.mass, a.atomic_number)
        a.atom_type.set_lj_params(0.1, 1.5)
    s.coordinates = [[5, 5, 5], [6, 5, 5], [4.6, 6, 5], [4.6, 4.5, 5.9], [4.6, 4.5, 4.1]]
    s.box = [20, 20, 20, 90, 90, 90]
    s.defaults = parmed.gromacs.gromacstop._Defaults(nbfunc=1, comb_rule=2, gen_pairs="yes", fudgeLJ=0.5,
                                                     fudgeQQ=0.8333)
    convert("m.top", "m.gro", tmp_path / "flex", structure=s)          # flexible: nothing to refuse
    with pytest.raises(UserInputError, match="has 4 X-H bonds to constrain; LAMMPS's fix shake") as e:
        convert("m.top", "m.gro", tmp_path / "c", structure=s, constrain_hbonds=True)
    assert "\n" not in str(e.value)


def test_run_md_h_bonds_at_b0_with_ml_forces(tmp_path, structure):
    import MDAnalysis as mda

    from mdi_mlmm.hosts.lammps.host import read_energies

    out = tmp_path / "md"
    _python("import sys; from mdi_mlmm.hosts.lammps.host import run_md; "
            "run_md(sys.argv[1], sys.argv[2], 'resname MOL', 'harmonic', 20, 2.0, 'nve', sys.argv[3], "
            "report_every=10, traj_every=1, progress=False, constraints='h-bonds')",
            ETH / "topol.top", ETH / "conf.gro", out)
    s = json.loads((out / "summary.json").read_text())
    log = (out / "lammps.log").read_text()
    # the ML forces' fix comes before the constraint fix (fixes act at post_force in definition order)
    assert log.index("fix mlext all external") < log.index("fix rigidw all rattle")
    u = mda.Universe(str(out / "topology.gro"), str(out / "traj.dcd"))
    frames, cells = [], []
    for ts in u.trajectory:
        frames.append(u.atoms.positions[:9].astype(np.float64).copy())
        cells.append(np.diag(ts.dimensions[:3]))
    assert len(frames) == 21
    worst = _worst(frames, cells, _xh(structure))
    print(f"largest |r - b0| of ethanol's X-H bonds over 21 frames at 2 fs: {worst:.1e} A")
    assert worst < 1e-4                                       # float32 DCD: ~1e-6 seen
    cc = [np.linalg.norm(x[0] - x[1]) for x in frames]
    assert np.ptp(cc) > 1e-3                                  # the flexible C-C bond moves (left to the model)

    e = read_energies(out / "energies.csv")
    assert np.all(np.abs(e["E_ML_kcal_mol"]) > 1.0) and np.ptp(e["E_ML_kcal_mol"]) > 0  # the model acts
    np.testing.assert_allclose(e["E_pot_kcal_mol"], e["E_MM_kcal_mol"] + e["E_ML_kcal_mol"], rtol=1e-10)
    # temperature's degrees of freedom: 3N − 3 (momentum) − 3 per rigid water − the 6 X–H constraints
    dof = 2 * e["E_kin_kcal_mol"] / (KB_KCAL * e["T_K"])
    np.testing.assert_allclose(dof, 3 * N_ATOMS - 3 - 3 * N_WATERS - 6, rtol=1e-5)
    assert s["ml_calls"] >= 21


def _run_unit(spec) -> dict:
    """The host's unit (:func:`mdi_mlmm.hosts.lammps.run_leg`, ``run_window``, ``run_gas``) in a fresh
    interpreter; its done.json."""
    _python("import json, sys; from mdi_mlmm.hosts import lammps; from mdi_mlmm.protocol.specs import unit_from_json; "
            "s = unit_from_json(json.loads(sys.argv[1])); getattr(lammps, 'run_' + s.kind)(s)",
            json.dumps(spec.to_json()))
    return json.loads((Path(spec.out_dir) / "done.json").read_text())


def test_leg_window_keeps_xh_at_b0(tmp_path, structure):
    from mdi_mlmm.protocol.specs import LegSpec

    xh = _xh(structure)
    leg = LegSpec(host="lammps", model="harmonic", out_dir=str(tmp_path / "leg"), top=str(ETH / "topol.top"),
                  gro=str(ETH / "conf.gro"), ml_indices=list(range(9)), steps=20, dt_fs=2.0, temperature=298.15,
                  sample_every=2, seed=3, phase="water", lam=0.5, mm_intra_top=str(ETH / "topol.top"),
                  mm_intra_molecule="MOL", constrain_hbonds=True)
    done = _run_unit(leg)
    z = np.load(Path(leg.out_dir) / "checkpoint.npz")
    assert json.loads(str(z["meta"]))["constraints"] == "h-bonds"
    X = z["X"].reshape(-1, 9, 3)
    assert done["samples"] == len(X) == 11
    worst = _worst(X, z["cell"], xh)
    print(f"leg window (water, lambda 0.5): largest |r - b0| {worst:.1e} A")
    assert worst < 1e-4
    assert "rattle 1e-10 500 0 b" in (Path(leg.out_dir) / "lammps.log").read_text()


def test_direct_window_keeps_xh_at_b0(tmp_path, structure):
    from mdi_mlmm.protocol.specs import WindowSpec

    win = WindowSpec(host="lammps", model="harmonic", out_dir=str(tmp_path / "w"), top=str(ETH / "topol.top"),
                     gro=str(ETH / "conf.gro"), ml_indices=list(range(9)), steps=10, dt_fs=2.0, temperature=298.15,
                     sample_every=5, seed=4, state=1, schedule=[(0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (1.0, 1.0)],
                     constrain_hbonds=True)
    done = _run_unit(win)
    assert done["samples"] == 3 and done["E_ML_mean_kcal_mol"] > 1.0       # the model acts
    z = np.load(Path(win.out_dir) / "checkpoint.npz")
    assert json.loads(str(z["meta"]))["constraints"] == "h-bonds" and int(z["step"]) == 10
    worst = _worst([z["x"]], [np.diag(structure.box[:3])], _xh(structure))
    print(f"direct window (coul lambda 0.5): largest |r - b0| {worst:.1e} A")
    assert worst < 1e-4


def test_gas_run_keeps_xh_at_b0(tmp_path, structure):
    """The gas run: the solute alone (a 30 Å box around ethanol), no water, the X–H bonds still constrained."""
    import MDAnalysis as mda

    from mdi_mlmm.protocol.specs import GasSpec

    xh = _xh(structure)
    gas_dir = tmp_path / "gas_in"
    gas_dir.mkdir()
    top = (ETH / "topol.top").read_text()
    sol = top.index("[ moleculetype ]", top.index("[ moleculetype ]") + 1)   # the water's, then [ system ]
    top = top[:sol] + top[top.index("[ system ]"):]
    (gas_dir / "gas.top").write_text(re.sub(r"(?m)^SOL\s+\d+\s*$", "", top))   # [ molecules ]: MOL 1 only
    mol = mda.Universe(str(ETH / "conf.gro")).atoms[:9]
    mol.dimensions = [30.0, 30.0, 30.0, 90.0, 90.0, 90.0]
    mol.write(str(gas_dir / "gas.gro"))
    gas = GasSpec(host="lammps", model="harmonic", out_dir=str(tmp_path / "gas"), top=str(gas_dir / "gas.top"),
                  gro=str(gas_dir / "gas.gro"), ml_indices=list(range(9)), steps=20, dt_fs=2.0, temperature=298.15,
                  sample_every=5, seed=2, constrain_hbonds=True)
    res = _run_unit(gas)
    assert res["samples"] == 5
    z = np.load(Path(gas.out_dir) / "checkpoint.npz")
    worst = _worst([z["x"]], [np.diag([30.0] * 3)], xh)
    print(f"gas run: largest |r - b0| {worst:.1e} A")
    assert worst < 1e-4


def test_mm_window_constraints_change_no_dU(tmp_path, structure):
    """The λ states' energies of an MM-mode window (``model="mm"``: the intramolecular Coulomb kept by
    :class:`IntraCoulomb`, coul λ 0.5) are the same functions of the coordinates with and without the X–H
    constraints: the window's own evaluation (the Coulomb evaluator, the intramolecular Coulomb, the soft-core
    LJ, :func:`window_frames`) of the system converted both ways gives the same u_nk (every state) and dH/dλ
    rows on the same configurations; the constrained conversion names ethanol's 3 X–H bond types for the
    ``fix rattle`` (GAFF's X–H bond types hold X–H bonds only, so its data file is the unconstrained one). (Two
    whole windows from conf.gro part at the first sample already: SHAKE puts its X–H bonds, 6e-3 Å off b0,
    at b0 before step 0: ΔU of state 0 −12.15 vs −12.25 kT.)"""
    code = """
import json, sys
from pathlib import Path
import numpy as np
from mdi_mlmm.hosts.lammps.alchemy import AlchemicalSystem, CoulombEvaluator, IntraCoulomb, coulomb_sample, window_frames
from mdi_mlmm.topology.gromacs import load_gromacs
eth, out = Path(sys.argv[1]), Path(sys.argv[2])
sched = [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (1.0, 0.5), (1.0, 1.0)]
st = load_gromacs(eth / "topol.top", eth / "conf.gro")
x0 = np.asarray(st.coordinates, dtype=float)
cell = np.diag(np.asarray(st.box[:3], dtype=float))
rng = np.random.default_rng(7)
confs = [x0] + [x0 + rng.normal(0.0, 0.05, x0.shape) for _ in range(2)]
res = {}
for hb in (False, True):
    asys = AlchemicalSystem.build(eth / "topol.top", eth / "conf.gro", out / f"l{int(hb)}", list(range(9)), ml=False,
                                  structure=st, constrain_hbonds=hb)
    ev, intra = CoulombEvaluator(asys, log_file=out / f"ev{int(hb)}.log"), IntraCoulomb(asys, 0.5)
    smp = {k: [] for k in ("time_ps", "C", "E_ss", "E_intra", "S", "dS")}
    for t, x in enumerate(confs):
        C, e_ss, e_intra = coulomb_sample(ev, intra, x, cell)
        S, dS = asys.lj_solute_env(x, cell, [1.0 - v for _, v in sched])
        for k, v in zip(smp, (t, C, e_ss, e_intra, S, dS[1])):
            smp[k].append(v)
    u, d = window_frames(smp, sched, 1, 298.15)
    ev.close()
    data = sorted((out / f"l{int(hb)}").glob("*.data"))
    res[int(hb)] = {"u": u.to_numpy().tolist(), "d": d.to_numpy().tolist(), "data": data[0].read_text(),
                    "hbond_types": list(asys.system.hbond_types)}
print(json.dumps(res))
"""
    r = subprocess.run([sys.executable, "-c", code, str(ETH), str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                       timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    flex, cons = res["0"], res["1"]
    assert flex["hbond_types"] == [] and len(cons["hbond_types"]) == 3 and flex["data"] == cons["data"]
    u0, u1 = np.array(flex["u"]), np.array(cons["u"])
    assert u0.shape == (3, 5)
    print("u_nk (kT), flexible:", u0[0].round(4), "constrained:", u1[0].round(4))
    np.testing.assert_allclose(u1, u0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.array(cons["d"]), np.array(flex["d"]), rtol=0, atol=1e-9)
    assert np.abs(u0[:, -1]).min() > 1.0 and np.ptp(u0[:, -1]) > 0.1   # not trivially 0 or constant: it can fail
    print(f"conf.gro: largest |r - b0| of the X-H bonds {_worst([structure.coordinates[:9]], [np.diag(structure.box[:3])], _xh(structure)):.1e} A")
