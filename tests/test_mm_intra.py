"""E_MM,intra (potentials/mm_intra.py) against GROMACS in double precision.

The reference is what the MM hydration free energy (FreeSolv's protocol) uses for the solute:
``couple-moltype`` with ``couple-intramol = no``, where GROMACS turns every intramolecular pair
beyond the exclusions into an explicit plain Coulomb + LJ pair without cut-off. Both coupling ends
are ``none``, so the solute's own non-bonded kernel terms are zero and GROMACS's potential energy
is exactly its intramolecular vacuum energy: bonds, angles, dihedrals, 1-4 pairs and those pairs.
Single points by ``gmx_d mdrun`` (nsteps 0) at perturbed geometries (non-zero forces).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm import units
from mdi_mlmm.errors import UserInputError
from mdi_mlmm.potentials.mm_intra import MMIntra

DATA = Path(__file__).parent / "data"
GMX = shutil.which("gmx_d") or shutil.which("gmx")

REFERENCE_MDP = """
integrator      = md
nsteps          = 0
nstfout         = 1
nstenergy       = 1
nstcalcenergy   = 1
cutoff-scheme   = Verlet
pbc             = xyz
coulombtype     = Cut-off
rcoulomb        = 1.0
rvdw            = 1.0
table-extension = 4.0          ; nm: the explicit pairs are tabulated up to the cut-off + this
constraints     = none
free-energy     = yes
init-lambda     = 0
couple-moltype  = MOL
couple-lambda0  = none
couple-lambda1  = none
couple-intramol = no
"""


def _solute_only_top(top: Path, out: Path) -> Path:
    """``top`` with ``[ molecules ]`` cut down to its first line (the solute)."""
    text = top.read_text()
    head, sep, tail = text.partition("[ molecules ]")
    first = next(ln for ln in tail.splitlines() if ln.strip() and not ln.strip().startswith(";"))
    out.write_text(head + sep + "\n" + first + "\n")
    return out


def _write_gro(path: Path, names, pos_A: np.ndarray, box_nm: float = 8.0):
    lines = ["reference", f"{len(pos_A)}"]
    for i, (nm, x) in enumerate(zip(names, pos_A / 10.0)):
        lines.append(f"{1:5d}{'MOL':<5s}{nm:>5s}{i + 1:5d}{x[0]:12.7f}{x[1]:12.7f}{x[2]:12.7f}")
    lines.append(f"{box_nm:10.5f}{box_nm:10.5f}{box_nm:10.5f}")
    # the gro format above carries 7 decimals (nm): plenty for the comparison (same positions both sides)
    path.write_text("\n".join(lines) + "\n")


def _read_gro_positions(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    n = int(lines[1])
    first = lines[2][20:]
    w = first.index(".", first.index(".") + 1) - first.index(".")  # field width (gro: fixed, any precision)
    return np.array([[float(ln[20 + k * w:20 + (k + 1) * w]) for k in range(3)] for ln in lines[2:2 + n]]) * 10.0


def gromacs_single_point(top: Path, names, pos_A: np.ndarray, work: Path) -> tuple[float, np.ndarray]:
    """GROMACS potential energy (kcal/mol) and forces (kcal/mol/Å) of the solute alone."""
    import pyedr
    from MDAnalysis.coordinates.TRR import TRRReader

    work.mkdir(parents=True, exist_ok=True)
    _write_gro(work / "conf.gro", names, pos_A)
    (work / "sp.mdp").write_text(REFERENCE_MDP)
    r = subprocess.run([GMX, "grompp", "-f", "sp.mdp", "-c", "conf.gro", "-p", str(top), "-o", "sp.tpr",
                        "-maxwarn", "2"], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([GMX, "mdrun", "-s", "sp.tpr", "-deffnm", "sp", "-ntmpi", "1", "-ntomp", "1", "-nb", "cpu",
                        "-pin", "off"], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    e = pyedr.edr_to_dict(str(work / "sp.edr"))
    energy = float(e["Potential"][0]) * units.KJ_PER_MOL_TO_KCAL_PER_MOL
    trr = TRRReader(str(work / "sp.trr"), convert_units=False)
    ts = trr[0]
    forces = np.asarray(ts.forces, dtype=np.float64) * units.force_factor("kj/mol", "nm", "kcal/mol", "angstrom")
    return energy, forces


def _perturbed(pos: np.ndarray, seed: int, scale: float = 0.05) -> np.ndarray:
    """Positions moved by up to ``scale`` Å, rounded to the gro file's 1e-7 nm."""
    rng = np.random.default_rng(seed)
    return np.round((pos + rng.uniform(-scale, scale, pos.shape)) / 10.0, 7) * 10.0


CASES = {
    # name: (topology, gro, atoms of the solute in that system)
    "ethanol": (DATA / "lammps_ethanol" / "topol.top", DATA / "lammps_ethanol" / "conf.gro", range(9)),
    "imatinib": (DATA / "wide_drug" / "gas" / "topol.top", DATA / "wide_drug" / "gas" / "conf.gro", range(68)),
}


@pytest.mark.skipif(GMX is None, reason="GROMACS (gmx_d or gmx) not installed")
@pytest.mark.parametrize("name", list(CASES))
def test_matches_gromacs_couple_intramol_no(name, tmp_path):
    top, gro, atoms = CASES[name]
    mm = MMIntra.from_gromacs(top, atoms=list(atoms))
    assert mm.n_atoms == len(atoms)
    ref_top = _solute_only_top(top, tmp_path / "solute.top")
    pos0 = _read_gro_positions(gro)[list(atoms)]
    # double-precision gmx: 1e-4 relative on energy, 1e-4 of the largest force on every component
    # (mixed-precision gmx agrees to about 1e-5 relative on these molecules)
    for seed in (1, 2):
        pos = _perturbed(pos0, seed)
        e_ref, f_ref = gromacs_single_point(ref_top, mm.names, pos, tmp_path / f"sp{seed}")
        e, f = mm.energy_forces(pos)
        assert e.shape == () and f.shape == (len(atoms), 3)
        scale = sum(abs(v) for v in mm.terms(pos).values())
        assert abs(e - e_ref) <= 1e-4 * max(abs(e_ref), scale), (name, e, e_ref)
        fmax = np.abs(f_ref).max()
        assert fmax > 10.0  # perturbed: real forces to compare
        assert np.abs(f - f_ref).max() <= 1e-4 * fmax, (name, np.abs(f - f_ref).max(), fmax)


def test_forces_are_minus_the_gradient():
    top, gro, atoms = CASES["ethanol"]
    mm = MMIntra.from_gromacs(top, moleculetype="MOL")
    pos = _perturbed(_read_gro_positions(gro)[:9], 3)
    _, f = mm.energy_forces(pos)
    h = 1e-5
    for i, k in [(0, 0), (2, 1), (8, 2)]:
        p, m = pos.copy(), pos.copy()
        p[i, k] += h
        m[i, k] -= h
        num = -(mm.energy(p) - mm.energy(m)) / (2 * h)
        assert abs(num - f[i, k]) < 1e-5 * max(1.0, abs(f[i, k]))


def test_batch_and_selection():
    top, gro, _ = CASES["ethanol"]
    by_type = MMIntra.from_gromacs(top, moleculetype="MOL")
    by_atoms = MMIntra.from_gromacs(top, atoms=range(9))
    assert list(by_type.atoms) == list(range(9)) and list(by_type.atomic_numbers) == [6, 6, 8, 1, 1, 1, 1, 1, 1]
    pos0 = _read_gro_positions(gro)[:9]
    batch = np.stack([_perturbed(pos0, s) for s in range(3)])
    e, f = by_type.energy_forces(batch)
    assert e.shape == (3,) and f.shape == (3, 9, 3)
    for k in range(3):
        ek, fk = by_atoms.energy_forces(batch[k])
        assert ek == pytest.approx(e[k], abs=1e-10) and np.allclose(fk, f[k], atol=1e-10)
    # a rigid motion changes nothing (vacuum, no periodic images)
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert by_type.energy(batch[0] @ rot.T + 30.0) == pytest.approx(float(e[0]), abs=1e-8)


def test_refusals(tmp_path):
    top, _, _ = CASES["ethanol"]
    with pytest.raises(UserInputError, match="holds 677 molecules"):
        MMIntra.from_gromacs(top)
    with pytest.raises(UserInputError, match="cut the bond"):
        MMIntra.from_gromacs(top, atoms=range(5))
    with pytest.raises(UserInputError, match="no \\[ moleculetype \\] LIG"):
        MMIntra.from_gromacs(top, moleculetype="LIG")
    mm = MMIntra.from_gromacs(top, moleculetype="MOL")
    with pytest.raises(UserInputError, match="shape"):
        mm.energy(np.zeros((8, 3)))
