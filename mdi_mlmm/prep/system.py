"""``prepare_system``: FreeSolv id or SMILES → solvated and gas-phase GROMACS inputs + ``system.json``.

Output layout (``out/``)::

    system.json            what was built, how, and from what (see docs/prepare.md)
    solvated/topol.top     self-contained GROMACS topology: solute (moleculetype MOL) + TIP3P (SOL)
    solvated/conf.gro      cubic box, nm; energy-minimized (steepest descent, template em)
    solvated/index.ndx     standard groups + ML (the solute) + MM (the rest)
    gas/topol.top, gas/conf.gro, gas/index.ndx     the solute alone in a large cubic box (minimized, gas_em)
    ligand/                AmberTools files (MOL.mol2, MOL.frcmod, MOL.prmtop, MOL.inpcrd, input.sdf)
                           or FreeSolv's own topology (with --source freesolv)

Everything is built in a hidden sibling directory and renamed to ``out`` only
once complete: after a failure nothing is left behind but the full output of the
GROMACS step that failed (``out``'s name + ``.grompp.out`` etc., named in the error).
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from .. import __version__, files
from ..errors import MdiMlmmError, PrepError, UserInputError
from ..potentials import registry
from ..topology.index import ML_GROUP
from . import freesolv, molecule, parametrize, solvate, tools

log = logging.getLogger(__name__)

SCHEMA = "mdi_mlmm.system/1"
MOLTYPE = parametrize.RESNAME
DEFAULT_BOX_PADDING_NM = 1.2
DEFAULT_GAS_PADDING_NM = 2.5
SOURCES = ("amber", "freesolv")
CHARGES = ("am1bcc", "freesolv")


def _neutralize_rounding(structure, target: int) -> float:
    """Spread the difference between the sum of partial charges and the integer ``target`` (e)
    evenly over all atoms (tools print 4-6 decimals, leaving ~1e-4 e that GROMACS warns about).
    Returns the removed residual (e)."""
    q = sum(a.charge for a in structure.atoms)
    resid = q - target
    if abs(resid) > 0.01:
        raise PrepError(f"partial charges sum to {q:.4f} e, not the net charge {target:+d} e")
    for a in structure.atoms:
        a.charge -= resid / len(structure.atoms)
    return resid


def _check_same_atoms(solute: molecule.Solute, structure, what: str) -> None:
    want = solute.elements
    got = solvate.elements(structure)
    if want != got:
        raise PrepError(f"{what} has atoms {' '.join(got)}, expected {' '.join(want)} (atom order changed)")


def prepare_system(out: Path | str, *, smiles: str | None = None, freesolv_id: str | None = None,
                   name: str | None = None, forcefield: str = "gaff", source: str = "amber",
                   charges: str = "am1bcc", box_padding_nm: float = DEFAULT_BOX_PADDING_NM,
                   gas_padding_nm: float = DEFAULT_GAS_PADDING_NM, model: str = "ani2x",
                   overwrite: bool = False, check: bool = True, minimize: bool = True,
                   maxwarn: int = 0) -> dict:
    """Build the solvated and gas-phase systems in directory ``out``; return the ``system.json`` dict.

    Exactly one of ``smiles`` and ``freesolv_id``. ``source="freesolv"`` takes FreeSolv's own GAFF
    topology (needs ``freesolv_id``, implies ``forcefield="gaff"``); ``charges="freesolv"`` runs our
    AmberTools pipeline on FreeSolv's mol2 keeping its AM1-BCC charges. Paddings are nm. ``model`` is
    the ML potential the region will use (``ani2x``, ``ani1x``, ``ani1ccx``, ``mm``, ``mace:PATH``); it
    decides which elements and net charges are accepted. ``check`` runs ``gmx grompp`` on the results.
    ``minimize``: steepest descent of both systems (``system.json`` records the final Epot and Fmax);
    ``maxwarn``: grompp warnings accepted on top of the one a charged solute causes with PME.
    """
    if (smiles is None) == (freesolv_id is None):
        raise UserInputError("give exactly one of a SMILES and a FreeSolv id")
    if forcefield not in parametrize.FORCEFIELDS:
        raise UserInputError(f"unknown force field {forcefield!r}; choose {' or '.join(parametrize.FORCEFIELDS)}")
    if source not in SOURCES:
        raise UserInputError(f"unknown source {source!r}; choose {' or '.join(SOURCES)}")
    if charges not in CHARGES:
        raise UserInputError(f"unknown charge method {charges!r}; choose {' or '.join(CHARGES)}")
    if (source == "freesolv" or charges == "freesolv") and freesolv_id is None:
        raise UserInputError("--source freesolv and --charges freesolv need --freesolv ID")
    if source == "freesolv" and forcefield != "gaff":
        log.info("--source freesolv uses FreeSolv's GAFF topology; ignoring --forcefield %s", forcefield)
        forcefield = "gaff"
    if box_padding_nm <= 0 or gas_padding_nm <= 0:
        raise UserInputError("box paddings must be positive (nm)")
    if int(maxwarn) < 0:
        raise UserInputError(f"--maxwarn must be >= 0, got {maxwarn}")
    model_name = registry.resolve(model).name

    out = Path(out).expanduser().absolute()
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"output {out} already exists (use --force to replace it)")
    entry = freesolv.lookup(freesolv_id) if freesolv_id else None   # fail fast on an unknown id
    if smiles is not None:
        solute = molecule.from_smiles(smiles)                        # fail fast on a bad SMILES
        registry.check_model(model_name, solute.elements, solute.net_charge)
        parametrize.check_elements(solute.elements, forcefield)
    if source == "amber":
        tools.which("antechamber", tools.AMBER_HINT)
    tools.which("gmx", tools.GMX_HINT)

    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        info = _build(tmp, out, smiles=smiles, entry=entry, name=name, forcefield=forcefield, source=source,
                      charges=charges, box_padding_nm=box_padding_nm, gas_padding_nm=gas_padding_nm,
                      model=model_name, check=check, minimize=minimize, maxwarn=int(maxwarn))
        files.publish_dir(tmp, out)
    except BaseException as exc:
        exc = _keep_failure_log(exc, tmp, out)
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # parents we made, innermost first
            try:
                p.rmdir()
            except OSError:
                break
        if isinstance(exc, MdiMlmmError) or not isinstance(exc, Exception):
            raise exc
        raise PrepError(f"preparation failed: {type(exc).__name__}: {exc}") from exc
    log.info("wrote %s", out / "system.json")
    return info


def _keep_failure_log(exc: BaseException, tmp: Path, out: Path) -> BaseException:
    """A GROMACS error names its full-output file (``(full grompp output: PATH)``); the build directory
    is about to go, so keep that one file next to ``out`` as ``OUT.NAME`` and name that instead."""
    import re

    if not isinstance(exc, MdiMlmmError):
        return exc
    m = re.search(r"\(full (?:grompp )?output: (\S+)\)", str(exc))
    if not m or not m.group(1).startswith(str(tmp)):
        return exc
    src = Path(m.group(1))
    dst = out.parent / f"{out.name}.{src.name}"
    try:
        shutil.copy2(src, dst)
    except OSError:
        return exc
    new = type(exc)(str(exc).replace(str(src), str(dst)))
    new.__cause__ = exc.__cause__
    return new


def _minimize(system: solvate.BuiltSystem, template: str, workdir: Path, maxwarn: int, title: str) -> dict:
    """Steepest descent of ``system`` in place (conf.gro replaced, its title line kept); the record for
    system.json (kJ/mol, kJ/mol/nm)."""
    from . import minimize as em

    r = em.minimize(system.top, system.gro, workdir, template=template, ndx=system.ndx, maxwarn=maxwarn,
                    maxwarn_option="mdi-mlmm prepare --maxwarn", name=f"em_{system.gro.parent.name}")
    lines = r.gro.read_text().splitlines()
    lines[0] = title
    system.gro.write_text("\n".join(lines) + "\n")
    if not r.converged:
        log.warning("%s minimization stopped at Fmax %.1f kJ/mol/nm (asked for < %g)", system.gro.parent.name,
                    r.fmax_kj_mol_nm, r.emtol_kj_mol_nm)
    return {"minimized": True, "method": f"steepest descent, gmx mdrun, mdp template {template}",
            "converged": r.converged, "steps": r.steps, "emtol_kj_mol_nm": r.emtol_kj_mol_nm,
            "epot_initial_kj_mol": r.epot_initial_kj_mol, "epot_kj_mol": r.epot_kj_mol,
            "fmax_kj_mol_nm": r.fmax_kj_mol_nm}


def _build(tmp: Path, out: Path, *, smiles, entry, name, forcefield, source, charges, box_padding_nm,
           gas_padding_nm, model, check, minimize, maxwarn) -> dict:
    work = tmp / "work"
    work.mkdir()
    lig = tmp / "ligand"
    lig.mkdir()
    inputs: dict[str, str] = {}

    # --- the solute -------------------------------------------------------------
    if entry is not None:
        sdf = freesolv.extract(entry.id, "sdf", work)
        inputs[f"freesolv/{sdf.name}"] = tools.sha256_file(sdf)
        solute = molecule.from_sdf(sdf, smiles=entry.smiles)
        seed = None
    else:
        solute = molecule.from_smiles(smiles)
        seed = molecule.CONFORMER_SEED
        entry = freesolv.find_by_smiles(smiles)
        if entry:
            log.info("SMILES %s is FreeSolv %s (%s)", smiles, entry.id, entry.iupac)
    if smiles is not None:
        inputs["smiles"] = tools.sha256_text(smiles)
    net_charge = solute.net_charge
    registry.check_model(model, solute.elements, net_charge)
    if source == "amber":
        parametrize.check_elements(solute.elements, forcefield)
    name = name or (entry.id if entry else solute.smiles)
    log.info("solute %s: %d atoms, net charge %+d e", name, solute.mol.GetNumAtoms(), net_charge)

    # --- parameters -------------------------------------------------------------
    if source == "freesolv":
        top = freesolv.extract(entry.id, "top", work)
        gro = freesolv.extract(entry.id, "gro", work)
        inputs[f"freesolv/{top.name}"] = tools.sha256_file(top)
        inputs[f"freesolv/{gro.name}"] = tools.sha256_file(gro)
        structure = solvate.solute_from_gromacs(top, gro)
        shutil.copy2(top, lig / top.name)
        shutil.copy2(gro, lig / gro.name)
        charge_method, atom_types = "FreeSolv AM1-BCC (OpenEye), FreeSolv topology", [a.type for a in structure.atoms]
        params = None
    else:
        if charges == "freesolv":
            src = freesolv.extract(entry.id, "mol2", work)
            inputs[f"freesolv/{src.name}"] = tools.sha256_file(src)
            params = parametrize.parametrize(src, "mol2", work, forcefield, net_charge, charge_method="read")
            charge_method = "FreeSolv AM1-BCC (OpenEye), read from FreeSolv's mol2"
        else:
            src = solute.write_sdf(work / "input.sdf")
            inputs["input.sdf"] = tools.sha256_file(src)
            params = parametrize.parametrize(src, "sdf", work, forcefield, net_charge, charge_method="bcc")
            charge_method = "AM1-BCC (antechamber/sqm)"
        structure = solvate.solute_from_amber(params.prmtop, params.inpcrd)
        for f in (src, params.mol2, params.frcmod, params.prmtop, params.inpcrd):
            shutil.copy2(f, lig / f.name)
        atom_types = params.atom_types
    _check_same_atoms(solute, structure, "the parametrized solute")
    for r in structure.residues:
        r.name = MOLTYPE
    resid = _neutralize_rounding(structure, net_charge)

    # --- systems ------------------------------------------------------------------
    title = f"{name} in TIP3P water"
    solv = solvate.solvate(structure, work, tmp / "solvated", box_padding_nm, title)
    gas = solvate.gas_box(structure, work, tmp / "gas", gas_padding_nm, f"{name} in gas phase")
    # Ewald with a net charge is a grompp warning; accepted (and recorded) for charged solutes
    gas_maxwarn = maxwarn
    maxwarn = maxwarn + (1 if net_charge else 0)
    em_solv = em_gas = {"minimized": False}
    if minimize:
        log.info("minimizing the solvated and gas-phase systems (steepest descent)")
        em_solv = _minimize(solv, "em", work, maxwarn, title)
        em_gas = _minimize(gas, "gas_em", work, gas_maxwarn, f"{name} in gas phase")
    if check:
        log.info("checking the systems with gmx grompp")
        solvate.grompp_check(solv, "em", work, maxwarn)
        solvate.grompp_check(solv, "lambda", work, maxwarn, init_lambda_state=0, couple_moltype=MOLTYPE)
        solvate.grompp_check(gas, "gas", work, gas_maxwarn)

    rel = lambda p: str(p.relative_to(tmp))  # noqa: E731
    outputs = {rel(p): tools.sha256_file(p) for p in sorted([solv.top, solv.gro, solv.ndx, gas.top, gas.gro, gas.ndx])}
    info = {
        "format": SCHEMA,
        "name": name,
        "smiles": solute.smiles,
        "input_smiles": smiles,
        "freesolv_id": entry.id if entry else None,
        "source": source,
        "forcefield": forcefield,
        "charge_method": charge_method,
        "water_model": "TIP3P",
        "model": model,
        "moleculetype": MOLTYPE,
        "net_charge": net_charge,
        "n_atoms": len(structure.atoms),
        "elements": solute.elements,
        "atom_names": [a.name for a in structure.atoms],
        "atom_types": atom_types,
        "charges": [round(a.charge, 8) for a in structure.atoms],
        "ml_group": ML_GROUP,
        "ml_atoms": list(range(len(structure.atoms))),
        "units": {"charges": "e", "box": "nm", "padding": "nm", "free_energies": "kcal/mol",
                  "indices": "0-based (index.ndx is 1-based, as GROMACS)"},
        "solvated": {"top": rel(solv.top), "gro": rel(solv.gro), "ndx": rel(solv.ndx), "n_atoms": solv.n_atoms,
                     "n_waters": solv.n_waters, "box_nm": solv.box_nm, "box_padding_nm": box_padding_nm,
                     "grompp_maxwarn": maxwarn, "minimization": em_solv},
        "gas": {"top": rel(gas.top), "gro": rel(gas.gro), "ndx": rel(gas.ndx), "n_atoms": gas.n_atoms,
                "box_nm": gas.box_nm, "box_padding_nm": gas_padding_nm, "grompp_maxwarn": gas_maxwarn,
                "minimization": em_gas},
        "ligand_files": sorted(p.name for p in lig.iterdir()),
        "freesolv": entry.as_dict() if entry else None,
        "provenance": {
            "mdi_mlmm": __version__,
            "tools": tools.tool_versions(),
            "rdkit_conformer_seed": seed,
            "parmchk2_runs": params.parmchk2_runs if params else None,
            "parmchk2_distinct_outputs": params.parmchk2_variants if params else None,
            "charge_rounding_removed_e": round(resid, 8),
            "inputs_sha256": inputs,
            "outputs_sha256": outputs,
        },
    }
    shutil.rmtree(work)
    (tmp / "system.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def load_system(path: Path | str) -> dict:
    """Read ``system.json`` (``path`` is the file or its directory); adds ``root`` (the directory)."""
    p = Path(path)
    if p.is_dir():
        p = p / "system.json"
    if not p.is_file():
        raise UserInputError(f"no system.json at {p} (run `mdi-mlmm prepare` first)")
    info = json.loads(p.read_text())
    if info.get("format") != SCHEMA:
        raise UserInputError(f"{p} is not a {SCHEMA} file")
    info["root"] = str(p.parent.resolve())
    return info
