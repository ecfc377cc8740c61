"""``prepare_complex``: protein PDB + ligand SDF → solvated, minimized, equilibrated GROMACS system
with the ligand as the ML group, plus dry AMBER topologies for MM-GBSA.

Steps (each announced by a progress line on the ``mdi_mlmm`` logger):

1. read and check the ligand (RDKit; the ML model's elements and net charge, GAFF2's elements);
2. fix the protein with pdbfixer: heterogens and waters removed, non-standard residues replaced by
   their standard parents, missing heavy atoms added, hydrogens added at ``ph`` (their presence decides
   HID/HIE/HIP, ASH, GLH, LYN; disulfide-bonded cysteines become CYX); residues missing inside a chain
   are modelled, those missing at a chain's ends are not;
3. check that the ligand sits in a pocket (a ligand heavy atom within ``pocket_cutoff`` Å of a
   protein heavy atom);
4. ligand GAFF2/AM1-BCC (:mod:`.parametrize`, coordinates of the SDF kept);
5. tleap: Amber ff14SB protein (hydrogens rebuilt from the residue names of step 2), TIP3P in a
   cubic box, neutralizing Na+/Cl-, and dry complex/receptor/ligand topologies (mbondi2 radii);
6. ParmEd → self-contained GROMACS topology (position restraints under ``#ifdef POSRES``), index
   groups ``ML`` (the ligand) and ``MM``;
7. steepest descent, then NVT and NPT with restraints on protein and ligand heavy atoms (``gmx``).

Output layout (``out/``): see docs/protein_ligand.md. Lengths: PDB/SDF/AMBER Å, GROMACS nm.
Everything is built in a hidden sibling directory and renamed to ``out`` only once complete.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import files
from .. import __version__
from ..errors import MdiMlmmError, PrepError, UserInputError
from ..potentials import registry
from ..topology.index import ML_GROUP, MM_GROUP, read_ndx, write_ndx
from . import molecule, parametrize, solvate, tools

log = logging.getLogger(__name__)

SCHEMA = "mdi_mlmm.complex/1"
LIGAND_RESNAME = parametrize.RESNAME          # "MOL", as the small-molecule route
FORCEFIELD_PROTEIN = "ff14SB"
DEFAULT_BOX_PADDING_NM = 1.0
DEFAULT_POCKET_CUTOFF_A = 4.0
DEFAULT_NVT_STEPS = 5000                      # 10 ps at 2 fs
DEFAULT_NPT_STEPS = 5000
DEFAULT_EM_STEPS = 5000
POSRES_FC = 1000.0                            # kJ/mol/nm^2
#: PME as GROMACS's defaults for preparation (the templates' FreeSolv-tight PME costs ~3x for nothing here)
PREP_PME = {"fourierspacing": 0.12, "pme-order": 4, "ewald-rtol": 1e-5}
WATER_NAMES = {"O": "OW", "H1": "HW1", "H2": "HW2"}
ION_NAMES = {"Na+": "NA", "Cl-": "CL"}


def _stage(i: int, n: int, text: str, t0: float) -> None:
    log.info("[%d/%d] %s (%.0f s)", i, n, text, time.monotonic() - t0)


# ----------------------------------------------------------------------------- inputs
def read_ligand(path: Path | str, model: str, forcefield: str = "gaff2") -> molecule.Solute:
    """The ligand from an SDF/molfile with explicit hydrogens; one-line errors for what cannot be run."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"ligand file {path} does not exist")
    try:
        sol = molecule.from_sdf(path)
    except UserInputError:
        raise UserInputError(f"RDKit cannot read ligand {path} (give an SDF/molfile with bond orders and "
                             "explicit hydrogens)") from None
    mol = sol.mol
    if mol.GetNumAtoms() == 0:
        raise UserInputError(f"ligand {path} has no atoms")
    if any(a.GetTotalNumHs() > 0 for a in mol.GetAtoms()):
        raise UserInputError(f"ligand {path} lacks explicit hydrogens; protonate it (e.g. at pH 7) and "
                             "write the hydrogens into the SDF")
    from rdkit import Chem

    if len(Chem.GetMolFrags(mol)) > 1:
        raise UserInputError(f"ligand {path} has several disconnected fragments; give one molecule")
    elements = sol.elements
    registry.check_model(model, elements, sol.net_charge)
    parametrize.check_elements(elements, forcefield)
    return sol


def fix_protein(path: Path | str, ph: float = 7.0):
    """pdbfixer on ``path``: (topology, positions in Å as an (N, 3) array, report dict).

    :class:`UserInputError` for a file that pdbfixer cannot read or that holds no protein.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"protein file {path} does not exist")
    try:
        from pdbfixer import PDBFixer
    except ImportError as exc:  # pragma: no cover - install hint
        raise UserInputError("pdbfixer is not installed: pip install pdbfixer (in the prep extra)") from exc
    try:
        fixer = PDBFixer(filename=str(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure is the input's fault
        raise UserInputError(f"the fixer cannot read protein {path}: not a PDB (or PDBx/mmCIF) file it can parse "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    protein_res = [r for r in fixer.topology.residues() if r.name in _AMINO]
    if not protein_res:
        raise UserInputError(f"the fixer cannot repair protein {path}: no amino-acid residues in it")
    report: dict = {}
    try:
        fixer.findMissingResidues()
        chains = list(fixer.topology.chains())
        for key in list(fixer.missingResidues):  # do not grow the chain ends
            if key[1] == 0 or key[1] == len(list(chains[key[0]].residues())):
                del fixer.missingResidues[key]
        report["missing_residues_modelled"] = sum(len(v) for v in fixer.missingResidues.values())
        fixer.findNonstandardResidues()
        report["nonstandard_replaced"] = [f"{r.name}{r.id}->{n}" for r, n in fixer.nonstandardResidues]
        fixer.replaceNonstandardResidues()
        het = sorted({r.name for r in fixer.topology.residues() if r.name not in _AMINO})
        report["removed_heterogens"] = het
        fixer.removeHeterogens(keepWater=False)
        fixer.findMissingAtoms()
        report["missing_heavy_atoms_added"] = sum(len(v) for v in fixer.missingAtoms.values()) + \
            sum(len(v) for v in fixer.missingTerminals.values())
        fixer.addMissingAtoms()
        fixer.addMissingHydrogens(ph)
    except Exception as exc:  # noqa: BLE001
        raise UserInputError(f"the fixer cannot repair protein {path}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    pos = np.array([[v.x, v.y, v.z] for v in fixer.positions.value_in_unit(fixer.positions.unit)]) * 10.0
    if not np.all(np.isfinite(pos)):
        raise UserInputError(f"the fixer cannot repair protein {path}: non-finite coordinates")
    report["n_residues"] = fixer.topology.getNumResidues()
    report["n_chains"] = fixer.topology.getNumChains()
    report["ph"] = ph
    return fixer.topology, pos, report


_AMINO = frozenset("ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL "
                   "HID HIE HIP CYX ASH GLH LYN ACE NME".split())
# pdbfixer's non-standard residues it can map (MSE, CSO, ...) count as protein too
try:  # pragma: no cover - depends on the installed pdbfixer
    from pdbfixer.pdbfixer import substitutions as _SUBST

    _AMINO = _AMINO | frozenset(_SUBST)
except Exception:  # noqa: BLE001
    pass


def amber_residue_names(topology) -> dict[int, str]:
    """Residue index → Amber ff14SB name from the hydrogens pdbfixer placed (and SG–SG bonds)."""
    disulfide = set()
    for b in topology.bonds():
        a1, a2 = b
        if a1.name == "SG" and a2.name == "SG" and a1.residue is not a2.residue:
            disulfide.update({a1.residue.index, a2.residue.index})
    out = {}
    for r in topology.residues():
        names = {a.name for a in r.atoms()}
        n = r.name
        if n == "HIS":
            n = "HIP" if {"HD1", "HE2"} <= names else "HID" if "HD1" in names else "HIE"
        elif n == "CYS" and r.index in disulfide:
            n = "CYX"
        elif n == "ASP" and "HD2" in names:
            n = "ASH"
        elif n == "GLU" and "HE2" in names:
            n = "GLH"
        elif n == "LYS" and not {"HZ1", "HZ2", "HZ3"} <= names:
            n = "LYN"
        out[r.index] = n
    return out


def write_amber_pdb(topology, pos_a: np.ndarray, path: Path) -> dict[str, int]:
    """Heavy atoms of the fixed protein with Amber residue names (tleap rebuilds the hydrogens), TER
    between chains. Returns counts of the renamed residues."""
    names = amber_residue_names(topology)
    lines, serial, counts = [], 0, {}
    for chain in topology.chains():
        last = None
        for r in chain.residues():
            rn = names[r.index]
            if rn != r.name:
                counts[rn] = counts.get(rn, 0) + 1
            for a in r.atoms():
                if a.element is not None and a.element.symbol == "H":
                    continue
                serial += 1
                x, y, z = pos_a[a.index]
                nm = a.name if len(a.name) >= 4 else f" {a.name}"
                lines.append(f"ATOM  {serial % 100000:5d} {nm:<4s} {rn:<3s} {'A'}{(r.index + 1) % 10000:4d}    "
                             f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00")
            last = r
        if last is not None:
            lines.append("TER")
    lines.append("END")
    path.write_text("\n".join(lines) + "\n")
    return counts


def pocket_check(protein_heavy_a: np.ndarray, ligand_heavy_a: np.ndarray, cutoff_a: float, name: str) -> dict:
    """Closest ligand–protein heavy-atom distance (Å) ≤ ``cutoff_a``, and no overlap (< 1 Å); else a
    one-line :class:`UserInputError`."""
    d = np.sqrt(((ligand_heavy_a[:, None, :] - protein_heavy_a[None, :, :]) ** 2).sum(-1))
    dmin = float(d.min())
    centroid = ligand_heavy_a.mean(0)
    dcen = float(np.sqrt(((protein_heavy_a - centroid) ** 2).sum(-1)).min())
    if dmin > cutoff_a:
        raise UserInputError(
            f"ligand {name} is not in a pocket of the protein: its closest heavy atom is {dmin:.1f} Å from "
            f"any protein heavy atom (allowed {cutoff_a:g} Å, --pocket-cutoff); are both files in the same frame?")
    if dmin < 1.0:
        raise UserInputError(f"ligand {name} overlaps the protein: heavy atoms {dmin:.2f} Å apart")
    return {"closest_heavy_atom_distance_A": round(dmin, 3), "centroid_to_protein_A": round(dcen, 3),
            "protein_heavy_atoms_within_4A": int((d <= 4.0).any(0).sum()), "cutoff_A": cutoff_a}


# ----------------------------------------------------------------------------- tleap
def _tleap(script: str, workdir: Path, log_name: str) -> str:
    (workdir / f"{log_name}.in").write_text(script)
    out = tools.run(["tleap", "-s", "-f", f"{log_name}.in"], cwd=workdir, log_name=f"{log_name}.log")
    m = re.search(r"Errors\s*=\s*(\d+)", out)
    if m and int(m.group(1)) > 0:
        bad = [ln.strip() for ln in out.splitlines() if ln.strip().startswith(("Error", "FATAL", "Could not"))]
        raise PrepError(f"tleap failed: {bad[0] if bad else tools._summary(out)} (log: {workdir / (log_name + '.log')})")
    return out


_LEAP_HEAD = """source leaprc.protein.{ff}
source leaprc.gaff2
source leaprc.water.tip3p
set default PBRadii mbondi2
loadamberparams {frcmod}
LIG = loadmol2 {mol2}
REC = loadpdb {pdb}
COM = combine {{ REC LIG }}
"""


BOX_SHAPES = ("cubic", "rectangular")


def build_amber(pdb: Path, mol2: Path, frcmod: Path, workdir: Path, padding_a: float, box: str = "cubic") -> dict:
    """Dry receptor/ligand/complex and the solvated, neutralized complex (prmtop + inpcrd in ``workdir``)."""
    head = _LEAP_HEAD.format(ff=FORCEFIELD_PROTEIN, frcmod=frcmod.name, mol2=mol2.name, pdb=pdb.name)
    _tleap(head + "\n".join([
        "saveamberparm REC receptor.prmtop receptor.inpcrd",
        "saveamberparm LIG ligand.prmtop ligand.inpcrd",
        "saveamberparm COM complex.prmtop complex.inpcrd", "quit", ""]), workdir, "tleap_dry")
    import parmed

    q = sum(a.charge for a in parmed.load_file(str(workdir / "complex.prmtop")).atoms)
    charge = int(round(q))
    ion = "Cl-" if charge > 0 else "Na+"
    _tleap(head + "\n".join([
        f"solvatebox COM TIP3PBOX {padding_a:.3f}{' iso' if box == 'cubic' else ''}",
        *([f"addionsrand COM {ion} 0"] if charge else []),
        "saveamberparm COM solvated.prmtop solvated.inpcrd", "quit", ""]), workdir, "tleap_solvated")
    return {"complex_charge": charge, "counter_ion": ion if charge else None, "n_counter_ions": abs(charge)}


# ----------------------------------------------------------------------------- GROMACS
def _posres_block(indices: list[int]) -> str:
    rows = "\n".join(f"{i + 1:6d} 1 {POSRES_FC:g} {POSRES_FC:g} {POSRES_FC:g}" for i in indices)
    return f"\n#ifdef POSRES\n[ position_restraints ]\n;  ai funct fcx fcy fcz (kJ/mol/nm^2)\n{rows}\n#endif\n"


def add_position_restraints(top: Path, structure) -> list[str]:
    """Insert ``#ifdef POSRES`` heavy-atom restraints into every non-water, non-ion moleculetype of
    ``top`` (written by ParmEd from ``structure``). Returns the restrained moleculetype names."""
    from ..topology.topfile import blocks, fields

    lines = top.read_text().splitlines(keepends=True)
    walked = list(blocks(lines))
    starts = [i for section, _, i, header in walked if header and section == "moleculetype"]
    out, restrained = ["".join(lines[:starts[0] if starts else len(lines)])], []
    for start, end in zip(starts, starts[1:] + [len(lines)]):
        block = walked[start:end]
        name = next((mol for _, mol, _, _ in block if mol is not None), "")
        atoms = [fields(lines[i]) for section, _, i, header in block if section == "atoms" and not header]
        if name in ("SOL", "NA", "CL") or not any(section == "atoms" for section, _, _, _ in block):
            out.append("".join(lines[start:end]))
            continue
        heavy = [int(f[0]) - 1 for f in atoms if len(f) >= 8 and float(f[7]) > 1.5]   # mass: not a hydrogen
        tail = next((i for section, _, i, header in block if header and section == "system"), end)
        head = "".join(lines[start:tail]).rstrip("\n") + "\n" + _posres_block(heavy) + "\n"
        out.append(head + "".join(lines[tail:end]))
        restrained.append(name)
    top.write_text("".join(out))
    return restrained


def to_gromacs(prmtop: Path, inpcrd: Path, outdir: Path, title: str):
    """The solvated AMBER system as ``outdir/topol.top`` + ``conf.gro`` (water SOL/OW/HW1/HW2, ions NA/CL,
    ligand MOL). Returns the ParmEd structure written."""
    import parmed

    s = parmed.load_file(str(prmtop), str(inpcrd))   # an AmberParm (a Structure): no slow copy
    for r in s.residues:
        if r.name in ("WAT", "HOH"):
            r.name = solvate.WATER_RESNAME
            for a in r.atoms:
                a.name = WATER_NAMES.get(a.name, a.name)
        elif r.name in ION_NAMES:
            r.name = ION_NAMES[r.name]
            for a in r.atoms:
                a.name = r.name
    outdir.mkdir(parents=True, exist_ok=True)
    top, gro = outdir / "topol.top", outdir / "conf.gro"
    solvate.write_gromacs(s, top, gro, title)
    text = top.read_text().replace(
        "; Self-contained: GAFF solute and TIP3P water",
        "; Self-contained: Amber ff14SB protein, GAFF2/AM1-BCC ligand (MOL), Na+/Cl- and TIP3P water")
    # ParmEd names multi-residue molecules system1, system2, ...: those are the protein chains
    text = re.sub(r"(?m)^system(\d+)(\s)", r"Protein\1\2", text)
    top.write_text(text)
    return s


def _mdrun(name: str, template: str, top: Path, gro: Path, ndx: Path, workdir: Path, overrides: dict,
           maxwarn: int, ntomp: int) -> Path:
    from . import mdp

    mdp_path = mdp.write(template, workdir / f"{name}.mdp", overrides)
    tools.grompp("gmx", mdp_path, gro.resolve(), top.resolve(), workdir / f"{name}.tpr", ndx=ndx.resolve(),
                 ref=gro.resolve(), maxwarn=maxwarn, cwd=workdir, what=f"gmx grompp ({name})",
                 maxwarn_option="mdi-mlmm prepare --maxwarn", error=PrepError)
    code, out = tools._execute(["gmx", "-quiet", "mdrun", "-deffnm", name, "-ntmpi", "1", "-ntomp", str(ntomp),
                                "-nb", "cpu", "-pin", "off"], workdir, None, tools.tool_timeout(3600.0), PrepError)
    (workdir / f"{name}.mdrun.out").write_text(out)
    if code != 0 or not (workdir / f"{name}.gro").is_file():
        raise PrepError(f"gmx mdrun ({name}) failed (exit {code}): {tools.gromacs_reason(out, 0, None)} "
                        f"(full output: {workdir / f'{name}.mdrun.out'})")
    return workdir / f"{name}.gro"


def _edr_last(workdir: Path, name: str, terms: list[str]) -> dict:
    """Averages of ``terms`` over the run ``name`` (pyedr), or {} when unavailable."""
    try:
        import pyedr

        d = pyedr.edr_to_dict(str(workdir / f"{name}.edr"))
    except Exception:  # noqa: BLE001
        return {}
    return {t: round(float(np.mean(d[t])), 4) for t in terms if t in d}


# ----------------------------------------------------------------------------- driver
def prepare_complex(out: Path | str, *, protein: Path | str, ligand: Path | str, name: str | None = None,
                    model: str = "ani2x", ph: float = 7.0, box_padding_nm: float = DEFAULT_BOX_PADDING_NM,
                    pocket_cutoff_a: float = DEFAULT_POCKET_CUTOFF_A, em_steps: int = DEFAULT_EM_STEPS,
                    nvt_steps: int = DEFAULT_NVT_STEPS,
                    npt_steps: int = DEFAULT_NPT_STEPS, temperature_k: float = 298.15, box: str = "cubic",
                    overwrite: bool = False,
                    maxwarn: int = 0, threads: int | None = None) -> dict:
    """Build the protein–ligand system in directory ``out``; return the ``system.json`` dict.

    ``protein``: PDB (may contain the ligand and waters as HETATM: they are dropped; the ligand comes
    from ``ligand``, an SDF with explicit hydrogens in the protein's frame). ``model``: the ML potential
    the ligand will use (decides the allowed elements and net charge). ``nvt_steps``/``npt_steps``:
    2 fs steps of restrained equilibration (0 skips the stage). ``box``: ``cubic`` (default; any
    orientation of the protein stays inside) or ``rectangular`` (fewer waters for an elongated protein).
    """
    t0 = time.monotonic()
    if box_padding_nm <= 0:
        raise UserInputError(f"--box-padding must be positive (nm), got {box_padding_nm}")
    if box not in BOX_SHAPES:
        raise UserInputError(f"unknown box shape {box!r}; choose {' or '.join(BOX_SHAPES)}")
    if pocket_cutoff_a <= 0:
        raise UserInputError(f"--pocket-cutoff must be positive (Å), got {pocket_cutoff_a}")
    if int(em_steps) < 1 or int(nvt_steps) < 0 or int(npt_steps) < 0 or int(maxwarn) < 0:
        raise UserInputError("step counts and --maxwarn must be >= 0")
    if not 0 <= ph <= 14:
        raise UserInputError(f"--ph must be within 0..14, got {ph}")
    model_name = registry.resolve(model).name
    out = Path(out).expanduser().absolute()
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"output {out} already exists (use --force to replace it)")
    protein, ligand = Path(protein), Path(ligand)
    n = 7
    _stage(1, n, f"ligand {ligand.name}", t0)
    lig = read_ligand(ligand, model_name)
    _stage(2, n, f"fixing protein {protein.name} with pdbfixer (pH {ph:g})", t0)
    topo, pos, fix_report = fix_protein(protein, ph)
    heavy = np.array([i for i, a in enumerate(topo.atoms()) if a.element is None or a.element.symbol != "H"])
    lig_xyz = lig.mol.GetConformer().GetPositions()
    lig_heavy = np.array([a.GetIdx() for a in lig.mol.GetAtoms() if a.GetSymbol() != "H"])
    pocket = pocket_check(pos[heavy], lig_xyz[lig_heavy], pocket_cutoff_a, ligand.name)
    log.info("ligand %s: %d atoms, net charge %+d e; closest protein heavy atom %.2f Å, %d protein heavy "
             "atoms within 4 Å", lig.smiles, lig.mol.GetNumAtoms(), lig.net_charge,
             pocket["closest_heavy_atom_distance_A"], pocket["protein_heavy_atoms_within_4A"])
    tools.which("antechamber", tools.AMBER_HINT)
    tools.which("tleap", tools.AMBER_HINT)
    tools.which("gmx", tools.GMX_HINT)

    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        info = _build(tmp, protein=protein, ligand=ligand, lig=lig, topo=topo, pos=pos, fix_report=fix_report,
                      pocket=pocket, name=name or protein.stem, model=model_name, box_padding_nm=box_padding_nm, box=box,
                      em_steps=int(em_steps), nvt_steps=int(nvt_steps), npt_steps=int(npt_steps),
                      temperature_k=temperature_k,
                      maxwarn=int(maxwarn), threads=threads, t0=t0, n=n)
        files.publish_dir(tmp, out)
    except BaseException as exc:
        keep = out.parent / f"{out.name}.failed"
        shutil.rmtree(keep, ignore_errors=True)
        try:
            tmp.rename(keep)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            keep = None
        if not keep:
            for p in created:
                try:
                    p.rmdir()
                except OSError:
                    break
        if isinstance(exc, MdiMlmmError):
            raise type(exc)(f"{exc}{f' (partial build kept in {keep})' if keep else ''}") from exc
        if not isinstance(exc, Exception):
            raise
        raise PrepError(f"preparation failed: {type(exc).__name__}: {exc}"
                        f"{f' (partial build kept in {keep})' if keep else ''}") from exc
    log.info("wrote %s (%.0f s)", out / "system.json", time.monotonic() - t0)
    return info


def _build(tmp: Path, *, protein, ligand, lig, topo, pos, fix_report, pocket, name, model, box_padding_nm, box,
           em_steps, nvt_steps, npt_steps, temperature_k, maxwarn, threads, t0, n) -> dict:
    from openmm.app import PDBFile

    work = tmp / "work"
    for d in ("work", "amber", "protein", "ligand", "solvated"):
        (tmp / d).mkdir()
    # protein files
    with open(tmp / "protein" / "fixed.pdb", "w") as fh:
        from openmm import Vec3, unit

        PDBFile.writeFile(topo, [Vec3(*(p * 0.1)) for p in pos] * unit.nanometer, fh, keepIds=True)
    renamed = write_amber_pdb(topo, pos, tmp / "protein" / "amber_input.pdb")
    fix_report["amber_residue_names"] = renamed
    shutil.copy2(tmp / "protein" / "amber_input.pdb", work / "protein.pdb")

    _stage(3, n, "ligand GAFF2/AM1-BCC (antechamber/sqm, parmchk2)", t0)
    sdf = lig.write_sdf(work / "input.sdf")
    params = parametrize.parametrize(sdf, "sdf", work, "gaff2", lig.net_charge, charge_method="bcc")
    for f in (sdf, params.mol2, params.frcmod):
        shutil.copy2(f, tmp / "ligand" / f.name)

    _stage(4, n, f"tleap: {FORCEFIELD_PROTEIN} protein, {box} TIP3P box ({box_padding_nm:g} nm padding), ions", t0)
    ions = build_amber(work / "protein.pdb", params.mol2, params.frcmod, work, box_padding_nm * 10.0, box)
    for stem in ("complex", "receptor", "ligand", "solvated"):
        for ext in ("prmtop", "inpcrd"):
            shutil.copy2(work / f"{stem}.{ext}", tmp / "amber" / f"{stem}.{ext}")

    _stage(5, n, "GROMACS topology, position restraints, index groups", t0)
    title = f"{name}: protein + ligand {LIGAND_RESNAME} in TIP3P water"
    solv = tmp / "solvated"
    s = to_gromacs(work / "solvated.prmtop", work / "solvated.inpcrd", solv, title)
    restrained = add_position_restraints(solv / "topol.top", s)
    ml_atoms = [a.idx for a in s.atoms if a.residue.name == LIGAND_RESNAME]
    if len(ml_atoms) != lig.mol.GetNumAtoms():
        raise PrepError(f"the built system has {len(ml_atoms)} ligand atoms, expected {lig.mol.GetNumAtoms()}")
    ml_elements = [solvate.elements(s)[i] for i in ml_atoms]
    if ml_elements != lig.elements:
        raise PrepError("ligand atom order changed between the SDF and the built system")
    n_total = len(s.atoms)
    ndx = solv / "index.ndx"
    tools.run(["gmx", "-quiet", "make_ndx", "-f", str((solv / "conf.gro").resolve()), "-o", str(ndx.resolve())],
              cwd=work, stdin="q\n", log_name="make_ndx.log")
    ml_set = set(ml_atoms)
    write_ndx(ndx, {ML_GROUP: ml_atoms, MM_GROUP: [i for i in range(n_total) if i not in ml_set]}, append=True)
    groups = sorted(read_ndx(ndx))
    n_water = sum(1 for r in s.residues if r.name == solvate.WATER_RESNAME)
    n_protein_res = sum(1 for r in s.residues if r.name not in (solvate.WATER_RESNAME, LIGAND_RESNAME, "NA", "CL"))
    charge = sum(a.charge for a in s.atoms)
    maxwarn_run = maxwarn + (1 if abs(charge) > 1e-3 else 0)
    ntomp = int(threads) if threads else max(1, min(os.cpu_count() or 1, 4))

    _stage(6, n, f"steepest-descent minimization, at most {em_steps} steps (restrained heavy atoms), "
                 f"{n_total} atoms", t0)
    from . import minimize as em

    top, gro = solv / "topol.top", solv / "conf.gro"
    r = em.minimize(top, gro, work, template="em", ndx=ndx, maxwarn=maxwarn_run, overrides={"define": "-DPOSRES", "nsteps": em_steps, **PREP_PME},
                    maxwarn_option="mdi-mlmm prepare --maxwarn", name="em", ntomp=ntomp, reprod=False,
                    error=PrepError, ref=gro)
    shutil.copy2(r.gro, solv / "minimized.gro")
    em_rec = {"converged": r.converged, "steps": r.steps, "epot_initial_kj_mol": r.epot_initial_kj_mol,
              "epot_kj_mol": r.epot_kj_mol, "fmax_kj_mol_nm": r.fmax_kj_mol_nm}
    current = solv / "minimized.gro"
    eq: dict = {"restraints": f"protein and ligand heavy atoms, {POSRES_FC:g} kJ/mol/nm^2 (-DPOSRES)",
                "minimization": em_rec}

    _stage(7, n, f"restrained equilibration: NVT {nvt_steps} + NPT {npt_steps} steps of 2 fs", t0)
    base = {"define": "-DPOSRES", **PREP_PME, "ref-t": temperature_k, "nstxout-compressed": 0, "nstlog": 500,
            "nstenergy": 100}
    if nvt_steps:
        current = _mdrun("nvt", "nvt", top, current, ndx, work,
                         {**base, "nsteps": nvt_steps, "gen-temp": temperature_k}, maxwarn_run, ntomp)
        eq["nvt"] = {"steps": nvt_steps, "dt_ps": 0.002, **_edr_last(work, "nvt", ["Temperature", "Potential"])}
        log.info("NVT done: %s (%.0f s)", eq["nvt"], time.monotonic() - t0)
    if npt_steps:
        ov = {**base, "nsteps": npt_steps}
        if not nvt_steps:
            ov.update({"gen-vel": "yes", "gen-temp": temperature_k, "continuation": "no"})
        current = _mdrun("npt", "npt", top, current, ndx, work, ov, maxwarn_run, ntomp)
        eq["npt"] = {"steps": npt_steps, "dt_ps": 0.002,
                     **_edr_last(work, "npt", ["Temperature", "Pressure", "Density", "Volume"])}
        log.info("NPT done: %s (%.0f s)", eq["npt"], time.monotonic() - t0)
    lines = current.read_text().splitlines()
    lines[0] = title
    gro.write_text("\n".join(lines) + "\n")
    box_nm = [float(x) for x in lines[-1].split()[:3]]

    rel = lambda p: str(Path(p).relative_to(tmp))  # noqa: E731
    info = {
        "format": SCHEMA,
        "name": name,
        "model": model,
        "n_atoms": n_total,
        "ml_group": ML_GROUP,
        "ml_atoms": ml_atoms,
        "units": {"box": "nm", "indices": "0-based (index.ndx is 1-based, as GROMACS)", "distances": "Å"},
        "protein": {"input": str(protein.resolve()), "sha256": tools.sha256_file(protein),
                    "forcefield": f"Amber {FORCEFIELD_PROTEIN}", "fixer": "pdbfixer", **fix_report,
                    "atoms": [a.idx for a in s.atoms if a.residue.name not in
                              (solvate.WATER_RESNAME, LIGAND_RESNAME, "NA", "CL")],
                    "n_residues_built": n_protein_res},
        "ligand": {"input": str(ligand.resolve()), "sha256": tools.sha256_file(ligand), "resname": LIGAND_RESNAME,
                   "smiles": lig.smiles, "n_atoms": lig.mol.GetNumAtoms(), "net_charge": lig.net_charge,
                   "elements": lig.elements, "forcefield": "gaff2", "charge_method": "AM1-BCC (antechamber/sqm)",
                   "atom_types": params.atom_types, "pocket": pocket},
        "solvated": {"top": rel(top), "gro": rel(gro), "minimized_gro": rel(solv / "minimized.gro"),
                     "ndx": rel(ndx), "index_groups": groups, "n_waters": n_water, "box_nm": box_nm,
                     "box_padding_nm": box_padding_nm, "box_shape": box, "water_model": "TIP3P", **ions,
                     "net_charge": round(charge, 6), "posres_define": "POSRES", "restrained_moleculetypes": restrained,
                     "grompp_maxwarn": maxwarn_run},
        "amber": {"radii": "mbondi2 (for GB igb=5 / MM-GBSA)",
                  **{k: {"prmtop": f"amber/{k}.prmtop", "inpcrd": f"amber/{k}.inpcrd"}
                     for k in ("complex", "receptor", "ligand", "solvated")},
                  "atom_order": "solvated = complex atoms (protein, then ligand MOL) first, then ions and water"},
        "equilibration": eq,
        "provenance": {"mdi_mlmm": __version__, "tools": tools.tool_versions(),
                       "parmchk2_runs": params.parmchk2_runs, "parmchk2_distinct_outputs": params.parmchk2_variants},
    }
    (tmp / "system.json").write_text(json.dumps(info, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return info
