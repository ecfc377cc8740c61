"""GAFF/GAFF2 parametrization with AmberTools: antechamber (+sqm AM1-BCC), parmchk2, tleap.

Determinism: antechamber only ever reads an MDL/SDF or mol2 file that we wrote
(never a PDB, whose lack of bond orders makes antechamber guess), the RDKit
conformer has a fixed seed, and parmchk2 is run several times and its outputs
compared — if they ever differ we stop rather than pick one silently.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExternalToolError, UserInputError
from . import tools

log = logging.getLogger(__name__)

FORCEFIELDS = ("gaff2", "gaff")
#: elements GAFF and GAFF2 have atom types for
GAFF_ELEMENTS = frozenset("H C N O F P S Cl Br I".split())
#: how many times parmchk2 runs per preparation; all outputs must be identical
PARMCHK2_RUNS = 3
RESNAME = "MOL"


@dataclass
class Parameters:
    """AmberTools outputs for one solute (all files inside ``workdir``)."""

    forcefield: str
    charge_method: str
    mol2: Path            # antechamber output: GAFF types, partial charges (e), coordinates (Å)
    frcmod: Path          # parmchk2 output: parameters missing from gaff(2).dat
    prmtop: Path          # tleap output
    inpcrd: Path
    atom_types: list[str] = field(default_factory=list)
    charges: list[float] = field(default_factory=list)   # e
    parmchk2_runs: int = PARMCHK2_RUNS


def _read_mol2_atoms(path: Path) -> tuple[list[str], list[str], list[float]]:
    """(names, types, charges/e) from the ATOM section of a mol2 file."""
    names, types, charges = [], [], []
    section = None
    for line in Path(path).read_text().splitlines():
        if line.startswith("@<TRIPOS>"):
            section = line.strip()
            continue
        if section == "@<TRIPOS>ATOM" and line.strip():
            f = line.split()
            names.append(f[1])
            types.append(f[5])
            charges.append(float(f[8]))
    return names, types, charges


def antechamber(inp: Path, fmt: str, workdir: Path, forcefield: str, net_charge: int,
                charge_method: str = "bcc") -> Path:
    """Run antechamber: GAFF(2) atom types and charges. ``fmt``: ``sdf`` or ``mol2``.

    ``charge_method``: ``bcc`` (AM1-BCC through sqm) or ``read`` (keep the charges of an input mol2).
    Returns ``workdir/MOL.mol2``.
    """
    if forcefield not in FORCEFIELDS:
        raise UserInputError(f"unknown force field {forcefield!r}; choose gaff2 or gaff")
    out = workdir / f"{RESNAME}.mol2"
    log.info("antechamber: %s atom types, %s charges (net charge %+d e)", forcefield, charge_method, net_charge)
    args = ["antechamber", "-i", inp.name, "-fi", fmt, "-o", out.name, "-fo", "mol2",
            "-at", forcefield, "-rn", RESNAME, "-s", "0", "-pf", "y", "-dr", "no"]
    if charge_method == "bcc":
        args += ["-c", "bcc", "-nc", str(net_charge)]
    elif charge_method != "read" or fmt != "mol2":
        raise UserInputError(f"charge method {charge_method!r} needs bcc, or read with a mol2 input")
    try:
        tools.run(args, cwd=workdir, log_name="antechamber.log")
    except ExternalToolError as exc:
        # antechamber's diagnosis ("number of electrons is odd") and sqm's own complaint (in sqm.out)
        # say more than its "Fatal Error!"
        text = (workdir / "antechamber.log").read_text() if (workdir / "antechamber.log").is_file() else ""
        notes = [ln.strip().removeprefix("Info: ") for ln in text.splitlines() if "electrons is odd" in ln]
        sqm = workdir / "sqm.out"
        if sqm.is_file():
            bad = [ln.strip() for ln in sqm.read_text().splitlines()
                   if "error" in ln.lower() and "error matrix" not in ln.lower()]
            notes += [f"sqm: {bad[-1]}"] if bad else []
        if notes:
            raise ExternalToolError(f"{exc} ({'; '.join(notes)})") from exc
        raise
    if not out.is_file():
        raise ExternalToolError(f"antechamber wrote no {out.name}; see its output: "
                                f"{tools._summary((workdir / 'antechamber.log').read_text())}")
    return out


def parmchk2(mol2: Path, workdir: Path, forcefield: str, runs: int = PARMCHK2_RUNS) -> Path:
    """Run parmchk2 ``runs`` times; all frcmod files must be byte-identical. Returns ``workdir/MOL.frcmod``."""
    texts = []
    for i in range(runs):
        name = f"parmchk2.{i}.frcmod"
        tools.run(["parmchk2", "-i", mol2.name, "-f", "mol2", "-o", name, "-s", forcefield, "-a", "N"],
                  cwd=workdir, log_name="parmchk2.log")
        p = workdir / name
        if not p.is_file():
            raise ExternalToolError("parmchk2 wrote no frcmod file")
        texts.append(p.read_text())
        p.unlink()
    if len(set(texts)) != 1:
        a, b = texts[0].splitlines(), next(t for t in texts if t != texts[0]).splitlines()
        diff = next((f"{x!r} vs {y!r}" for x, y in zip(a, b) if x != y), "different lengths")
        raise ExternalToolError(f"parmchk2 is not deterministic for this input ({len(set(texts))} different "
                                f"frcmod files in {runs} runs; first difference: {diff})")
    out = workdir / f"{RESNAME}.frcmod"
    out.write_text(texts[0])
    return out


def tleap(mol2: Path, frcmod: Path, workdir: Path, forcefield: str) -> tuple[Path, Path]:
    """Build the Amber topology of the solute with tleap. Returns (prmtop, inpcrd)."""
    script = "\n".join([
        f"source leaprc.{forcefield}",
        f"loadamberparams {frcmod.name}",
        f"{RESNAME} = loadmol2 {mol2.name}",
        f"saveamberparm {RESNAME} {RESNAME}.prmtop {RESNAME}.inpcrd",
        "quit", ""])
    (workdir / "tleap.in").write_text(script)
    out = tools.run(["tleap", "-s", "-f", "tleap.in"], cwd=workdir, log_name="tleap.log")
    prmtop, inpcrd = workdir / f"{RESNAME}.prmtop", workdir / f"{RESNAME}.inpcrd"
    import re
    m = re.search(r"Errors\s*=\s*(\d+)", out)
    if (m and int(m.group(1)) > 0) or not prmtop.is_file() or prmtop.stat().st_size == 0:
        bad = [ln.strip() for ln in out.splitlines() if ln.strip().startswith(("Error", "FATAL", "Could not"))]
        raise ExternalToolError(f"tleap failed: {bad[0] if bad else tools._summary(out)}")
    return prmtop, inpcrd


def check_elements(elements: list[str], forcefield: str) -> None:
    """:class:`UserInputError` for elements GAFF/GAFF2 has no atom types for."""
    bad = sorted(set(elements) - GAFF_ELEMENTS)
    if bad:
        raise UserInputError(f"{forcefield.upper()} has no atom types for element(s) {' '.join(bad)}; "
                             f"it covers {' '.join(sorted(GAFF_ELEMENTS))}")


def parametrize(inp: Path, fmt: str, workdir: Path, forcefield: str = "gaff2", net_charge: int = 0,
                charge_method: str = "bcc") -> Parameters:
    """antechamber → parmchk2 (checked for determinism) → tleap, all inside ``workdir``."""
    tools.which("antechamber", tools.AMBER_HINT)
    mol2 = antechamber(inp, fmt, workdir, forcefield, net_charge, charge_method)
    frcmod = parmchk2(mol2, workdir, forcefield)
    prmtop, inpcrd = tleap(mol2, frcmod, workdir, forcefield)
    _, types, charges = _read_mol2_atoms(mol2)
    return Parameters(forcefield=forcefield, charge_method=charge_method, mol2=mol2, frcmod=frcmod,
                      prmtop=prmtop, inpcrd=inpcrd, atom_types=types, charges=charges)
