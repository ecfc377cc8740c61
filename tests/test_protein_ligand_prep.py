"""Protein–ligand preparation (``mdi-mlmm prepare --protein PDB --ligand SDF``, :mod:`mdi_mlmm.prep.complex`).

Data: T4 lysozyme L99A + p-xylene from openmmtools' test data (MIT; tests/data/protein_ligand/README.md).
One real preparation through the CLI (small rectangular box, few minimization/equilibration steps), checked
file by file; the bad inputs each through the real CLI (one ``error:`` line, non-zero exit, nothing written).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli_errors import assert_one_error, run_cli

DATA = Path(__file__).parent / "data" / "protein_ligand"
PDB, SDF = DATA / "complex.pdb", DATA / "ligand.sdf"

needs_tools = pytest.mark.skipif(
    shutil.which("antechamber") is None or shutil.which("tleap") is None or shutil.which("gmx") is None,
    reason="needs AmberTools (antechamber, tleap) and GROMACS (gmx) on PATH")
pdbfixer = pytest.importorskip("pdbfixer")


def _gro_atoms(gro: Path):
    lines = gro.read_text().splitlines()
    n = int(lines[1])
    res = [ln[5:10].strip() for ln in lines[2:2 + n]]
    xyz = np.array([[float(ln[20:28]), float(ln[28:36]), float(ln[36:44])] for ln in lines[2:2 + n]])
    return res, xyz * 10.0  # Å


def _ndx(path: Path) -> dict[str, list[int]]:
    groups, cur = {}, None
    for ln in path.read_text().splitlines():
        m = re.match(r"\[\s*(\S+)\s*\]", ln)
        if m:
            cur = groups.setdefault(m.group(1), [])
        elif cur is not None:
            cur += [int(x) for x in ln.split()]
    return groups


def test_data_derived_from_the_shipped_openmmtools_files(tmp_path):
    """complex.pdb and ligand.sdf are what scripts/make_protein_ligand_data.py makes from the copied originals."""
    assert (DATA / "LICENSE.openmmtools").read_text().startswith("MIT License")
    work = tmp_path / "tests" / "data" / "protein_ligand"
    work.mkdir(parents=True)
    for f in ("openmmtools_receptor.pdb", "openmmtools_ligand.tripos.mol2"):
        shutil.copy2(DATA / f, work / f)
    (tmp_path / "scripts").mkdir()
    shutil.copy2(Path(__file__).parent.parent / "scripts" / "make_protein_ligand_data.py", tmp_path / "scripts")
    subprocess.run([sys.executable, str(tmp_path / "scripts" / "make_protein_ligand_data.py")], check=True)
    assert (work / "complex.pdb").read_text() == PDB.read_text()
    assert (work / "ligand.sdf").read_text() == SDF.read_text()


def test_fixer_adds_hydrogens_and_names_residues_for_amber():
    from mdi_mlmm.prep import complex as cx

    topo, pos, report = cx.fix_protein(PDB, 7.0)
    assert report["n_residues"] == 162 and report["removed_heterogens"] == ["MOL"]
    n_h = sum(1 for a in topo.atoms() if a.element.symbol == "H")
    assert n_h > 1200, n_h              # the input has none
    names = cx.amber_residue_names(topo)
    his = [names[r.index] for r in topo.residues() if r.name == "HIS"]
    assert his and set(his) <= {"HID", "HIE", "HIP"}
    assert pos.shape == (topo.getNumAtoms(), 3) and np.isfinite(pos).all()


def test_pocket_check_measures_heavy_atom_contacts():
    from mdi_mlmm.errors import UserInputError
    from mdi_mlmm.prep.complex import pocket_check

    prot = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    r = pocket_check(prot, np.array([[3.5, 0.0, 0.0]]), 4.0, "x")
    assert r["closest_heavy_atom_distance_A"] == pytest.approx(3.5)
    with pytest.raises(UserInputError, match="not in a pocket"):
        pocket_check(prot, np.array([[5.0, 5.0, 0.0]]), 4.0, "x")
    with pytest.raises(UserInputError, match="overlaps"):
        pocket_check(prot, np.array([[0.5, 0.0, 0.0]]), 4.0, "x")


# ----------------------------------------------------------------------------- bad input, via the CLI
def _edit_ligand(tmp_path: Path, how: str) -> Path:
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    m = Chem.RWMol(Chem.MolFromMolFile(str(SDF), removeHs=False))
    if how == "far":
        c = m.GetConformer()
        for i in range(m.GetNumAtoms()):
            p = c.GetAtomPosition(i)
            c.SetAtomPosition(i, Point3D(p.x + 40.0, p.y, p.z))
    elif how == "bromine":   # an aromatic H -> Br: GAFF2 has it, ANI-2x does not
        h = next(a.GetIdx() for a in m.GetAtoms() if a.GetSymbol() == "H" and a.GetNeighbors()[0].GetIsAromatic())
        m.GetAtomWithIdx(h).SetAtomicNum(35)
    elif how == "charged":   # a methyl C -> NH3+: p-toluidinium, net charge +1
        c = next(a.GetIdx() for a in m.GetAtoms() if a.GetSymbol() == "C" and not a.GetIsAromatic())
        m.GetAtomWithIdx(c).SetAtomicNum(7)
        m.GetAtomWithIdx(c).SetFormalCharge(1)
    Chem.SanitizeMol(m)
    if how == "no_hydrogens":
        m = Chem.RemoveHs(m)
    out = tmp_path / f"{how}.sdf"
    Chem.MolToMolFile(m, str(out))
    return out


@pytest.mark.parametrize("case, causes", [
    ("far", ["is not in a pocket", "--pocket-cutoff"]),
    ("bromine", ["ani2x", "Br"]),
    ("charged", ["net charge +1", "ani2x"]),
    ("no_hydrogens", ["lacks explicit hydrogens"]),
    ("garbage", ["the fixer cannot read protein", "garbage.pdb"]),
    ("no_protein", ["no amino-acid residues"]),
    ("no_ligand", ["--protein and --ligand go together"]),
])
def test_bad_input_one_line_each(tmp_path, case, causes):
    protein, ligand = PDB, SDF
    if case in ("far", "bromine", "charged", "no_hydrogens"):
        ligand = _edit_ligand(tmp_path, case)
    elif case == "garbage":
        protein = tmp_path / "garbage.pdb"
        protein.write_bytes(b"this is not a PDB file\n\x00\x01\x02 random bytes\n")
    elif case == "no_protein":   # only the ligand's HETATM lines
        protein = tmp_path / "ligand_only.pdb"
        protein.write_text("".join(ln + "\n" for ln in PDB.read_text().splitlines() if ln.startswith("HETATM")) + "END\n")
    args = ["prepare", "--protein", protein, "--out", tmp_path / "out"]
    if case != "no_ligand":
        args += ["--ligand", ligand]
    r = run_cli(*args)
    assert_one_error(r, *causes, code=2)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the real thing
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("complex") / "t4l"
    r = run_cli("prepare", "--protein", PDB, "--ligand", SDF, "--out", out, "--box", "rectangular",
                "--box-padding", "0.6", "--em-steps", "50", "--nvt-steps", "10", "--npt-steps", "10",
                "--threads", "2", timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return out, r


@needs_tools
def test_prepare_complex_end_to_end(prepared):
    out, r = prepared
    for stage in range(1, 8):                       # progress lines
        assert f"[{stage}/7]" in r.stderr
    assert "ML group ML" in r.stdout
    info = json.loads((out / "system.json").read_text())
    assert info["format"] == "mdi_mlmm.complex/1" and info["model"] == "ani2x"
    s = info["solvated"]
    assert s["complex_charge"] == 8 and s["counter_ion"] == "Cl-" and s["n_counter_ions"] == 8
    assert abs(s["net_charge"]) < 1e-3
    assert s["restrained_moleculetypes"] == ["Protein1", "MOL"]
    # GROMACS files: ML group = the 18 ligand atoms, contiguous residue MOL, ML + MM = everything
    res, xyz = _gro_atoms(out / s["gro"])
    groups = _ndx(out / s["ndx"])
    ml = [i - 1 for i in groups["ML"]]
    assert ml == info["ml_atoms"] and len(ml) == 18
    assert {res[i] for i in ml} == {"MOL"} and res.count("MOL") == 18
    assert sorted(ml + [i - 1 for i in groups["MM"]]) == list(range(len(res))) == list(range(info["n_atoms"]))
    assert {"Protein", "Water_and_ions", "C-alpha", "Backbone"} <= set(groups)
    top = (out / s["top"]).read_text()
    assert top.count("#ifdef POSRES") == 2 and "[ settles ]" in top and "#include" not in top
    # the ligand is still in its pocket after minimization and restrained equilibration
    prot = np.array([i for i in range(len(res)) if i < min(ml)])
    d = np.sqrt(((xyz[ml][:, None] - xyz[prot][None]) ** 2).sum(-1)).min()
    assert 1.5 < d < 4.0, d
    assert info["equilibration"]["nvt"]["steps"] == 10 and "Density" in info["equilibration"]["npt"]


@needs_tools
def test_prepare_complex_amber_files_line_up(prepared):
    import parmed

    out, _ = prepared
    info = json.loads((out / "system.json").read_text())
    am = {k: parmed.load_file(str(out / info["amber"][k]["prmtop"]), str(out / info["amber"][k]["inpcrd"]))
          for k in ("complex", "receptor", "ligand", "solvated")}
    n_rec, n_lig = len(am["receptor"].atoms), len(am["ligand"].atoms)
    assert n_lig == 18 and len(am["complex"].atoms) == n_rec + n_lig
    assert [a.name for a in am["complex"].atoms] == [a.name for a in am["solvated"].atoms[:n_rec + n_lig]]
    assert info["ml_atoms"] == list(range(n_rec, n_rec + n_lig))
    assert abs(sum(a.charge for a in am["complex"].atoms) - 8) < 1e-3
    assert abs(sum(a.charge for a in am["ligand"].atoms)) < 1e-3
    assert {a.solvent_radius for a in am["complex"].atoms} >= {1.2, 1.3}   # mbondi2: H 1.2 / H-N 1.3


def test_fixer_restores_missing_side_chain_atoms(tmp_path):
    """A lysine without CD CE NZ (as in many crystal structures) comes back whole."""
    from mdi_mlmm.prep import complex as cx

    lines = PDB.read_text().splitlines()
    lys = next(ln[22:26] for ln in lines if ln.startswith("ATOM") and ln[17:20] == "LYS")
    cut = [ln for ln in lines if not (ln.startswith("ATOM") and ln[22:26] == lys and ln[12:16].strip() in ("CD", "CE", "NZ"))]
    assert len(cut) == len(lines) - 3
    pdb = tmp_path / "cut.pdb"
    pdb.write_text("\n".join(cut) + "\n")
    topo, _, report = cx.fix_protein(pdb, 7.0)
    assert report["missing_heavy_atoms_added"] >= 3
    res = next(r for r in topo.residues() if r.id.strip() == lys.strip())
    assert {"CD", "CE", "NZ", "HZ1", "HZ2", "HZ3"} <= {a.name for a in res.atoms()}


@needs_tools
@pytest.mark.gromacs_build
def test_ligand_in_ani2x_runs_2_ps_then_analyze_md_and_mmgbsa(prepared, tmp_path):
    """The prepared complex unchanged through ML/MM MD (ligand in ANI-2x, GROMACS host, at 2 fs
    with X–H constrained, 2 ps), then analyze-md and mmgbsa over its trajectory: the ligand stays in the
    pocket, E_ML is p-xylene's, the temperature holds, the binding energy is finite and negative."""
    from mdi_mlmm.hosts.gromacs.build import gmx_path
    import os

    if gmx_path() is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but there is no MDI-enabled GROMACS build")
        pytest.skip("no MDI-enabled GROMACS build (run `mdi-mlmm gromacs build`)")
    out, _ = prepared
    info = json.loads((out / "system.json").read_text())
    s = info["solvated"]
    md = tmp_path / "md"
    r = run_cli("md", "--host", "gromacs", "--top", out / s["top"], "--gro", out / s["gro"], "--ndx", out / s["ndx"],
                "--ml-group", "ML", "--model", "ani2x", "--steps", "1000", "--dt", "2", "--constraints", "h-bonds",
                "--ensemble", "nvt", "--no-minimize", "--seed", "3", "--energy-every", "10", "--traj-every", "50",
                "--out", md, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    summary = json.loads((md / "summary.json").read_text())
    assert summary["n_ml_atoms"] == 18 and summary["simulated_ps"] == pytest.approx(2.0)
    e = np.loadtxt(md / "energies.csv", delimiter=",", skiprows=1,
                   usecols=(md / "energies.csv").read_text().splitlines()[0].split(",").index("E_ML_hartree"))
    # ANI-2x p-xylene is about -310.78 Ha; thermal fluctuations are a few mHa
    assert np.isfinite(e).all() and np.all(np.abs(e - (-310.78)) < 0.02), (e.min(), e.max())
    assert 250.0 < summary["T_mean_K"] < 350.0, summary["T_mean_K"]

    an = tmp_path / "analysis"
    r = run_cli("analyze-md", "--run", md, "--out", an, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    a = json.loads((an / "summary.json").read_text())["runs"][0]
    assert a["n_frames"] == 21 and a["ligand_heavy_atoms"] == 8
    assert (an / "rmsd.png").exists() and (an / "bfactors.png").exists()
    assert 0.0 < a["rmsd_backbone_A"]["max"] < 2.0, a["rmsd_backbone_A"]
    assert 0.0 < a["rmsd_ligand_A"]["max"] < 3.0, a["rmsd_ligand_A"]        # stays in the pocket

    gb = tmp_path / "mmgbsa"
    r = run_cli("mmgbsa", "--run", md, "--prepared", out, "--out", gb, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    g = json.loads((gb / "mmgbsa.json").read_text())["runs"][0]
    tot = g["dE_kcal_mol"]["total"]
    assert g["n_frames"] == 21 and np.isfinite([tot["mean"], tot["sem_block"]]).all()
    assert -60.0 < tot["mean"] < -5.0, tot                # p-xylene in the L99A pocket binds
    assert abs(g["dE_kcal_mol"]["bonded"]["mean"]) < 0.05  # single trajectory: bonded terms cancel
