"""GAFF/GAFF2 parametrization with AmberTools: antechamber (+sqm AM1-BCC), parmchk2, tleap.

Determinism: antechamber only ever reads an MDL/SDF or mol2 file that we wrote
(never a PDB, whose lack of bond orders makes antechamber guess), and the RDKit
conformer has a fixed seed. parmchk2 itself is not deterministic: with GAFF2
(AmberTools 26, gaff2.dat 2.2.30) it sometimes "misses" a parameter that
gaff2.dat does define and writes a guessed replacement into the frcmod, which
then overrides the real one in tleap (seen for ~1/3 of runs on some FreeSolv
molecules; the outcome changes with address-space randomization). We therefore
(1) drop every frcmod entry whose atom types the main parameter file already
defines (parmchk2 must only list missing ones), and (2) run parmchk2 several
times and require the cleaned outputs to be identical, stopping otherwise.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExternalToolError, UserInputError
from . import tools

log = logging.getLogger(__name__)

FORCEFIELDS = ("gaff2", "gaff")
#: elements GAFF and GAFF2 have atom types for
GAFF_ELEMENTS = frozenset("H C N O F P S Cl Br I".split())
#: how many times parmchk2 runs per preparation (outputs are cleaned and merged, see parmchk2()).
#: GAFF (1.81) gave identical output in every run on 150 FreeSolv molecules; GAFF2 differed for ~45%
#: of them, so it gets more runs (each ~0.2 s).
PARMCHK2_RUNS = {"gaff": 3, "gaff2": 10}
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
    parmchk2_runs: int = 0
    parmchk2_variants: int = 1  # distinct cleaned parmchk2 outputs seen (1: all runs agreed)


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


def main_parameter_file(forcefield: str) -> Path | None:
    """``gaff.dat``/``gaff2.dat`` of the AmberTools in use, or None if it cannot be found."""
    cands = []
    if os.environ.get("AMBERHOME"):
        cands.append(Path(os.environ["AMBERHOME"]))
    cands.append(Path(sys.prefix))
    for prog in ("tleap", "antechamber"):
        exe = shutil.which(prog)
        if exe:
            cands += list(Path(exe).resolve().parents)[:4]
    for c in cands:
        p = c / "dat" / "leap" / "parm" / f"{forcefield}.dat"
        if p.is_file():
            return p
    return None


_PARAMSETS: dict[str, object] = {}


def _paramset(path: Path):
    import parmed

    key = str(path)
    if key not in _PARAMSETS:
        _PARAMSETS[key] = parmed.amber.AmberParameterSet(key)
    return _PARAMSETS[key]


#: parmchk2's fallbacks for an improper torsion that no (general) entry covers: its built-in default,
#: or a "similar" general term picked by penalty score. Which one it prints is random from run to run
#: (GAFF2, AmberTools 26), so both are normalized to the default (kcal/mol, degrees, periodicity).
_GUESSED_IMPROPER = ("Using the default value", "(use general term)")
IMPROPER_DEFAULT = "         1.1          180.0         2.0          Using the default value (mdi_mlmm: parmchk2 guess normalized)"

_KEYLEN = {"BOND": 2, "ANGLE": 3, "DIHE": 4, "IMPROPER": 4}


def clean_frcmod(text: str, main_dat: Path | None) -> tuple[str, list[str]]:
    """Make parmchk2's frcmod reproducible.

    Drops entries (MASS/BOND/ANGLE/DIHE/IMPROPER/NONBON) that ``main_dat`` already covers, also
    through the wildcards tleap applies (X-b-c-X torsions, X-b-c-d / X-X-c-d impropers), and sets
    improper torsions that parmchk2 had to guess to its default (1.1 kcal/mol, 180°, n=2).
    Returns (cleaned text, dropped keys). With ``main_dat`` None nothing is dropped.
    """
    ps = _paramset(main_dat) if main_dat is not None else None
    known = {"BOND": ps.bond_types, "ANGLE": ps.angle_types, "DIHE": ps.dihedral_types} if ps else {}
    impropers = set(ps.improper_periodic_types) if ps else set()
    out, dropped, section = [], [], None
    for i, line in enumerate(text.splitlines()):
        head = line.strip()
        if i > 0 and head in ("MASS", "BOND", "ANGLE", "DIHE", "IMPROPER", "NONBON"):
            section = head
            out.append(line)
            continue
        if section in ("MASS", "NONBON") and head and ps is not None:
            atype = line[:2].strip() if section == "MASS" else line.split()[0]
            if atype in ps.atom_types:  # the main file has this atom type already
                dropped.append(f"{section.lower()} {atype}")
                continue
        n = _KEYLEN.get(section or "")
        if n and head and ps is not None:
            key = tuple(t.strip() for t in line[: 3 * n - 1].split("-"))
            if section == "IMPROPER":  # centre atom third; tleap also matches X-b-c-d and X-X-c-d
                a, b, c, d = key
                hit = any(k in impropers for p in itertools.permutations((a, b, d))
                          for k in ((p[0], p[1], c, p[2]), ("X", p[1], c, p[2]), ("X", "X", c, p[2])))
            elif section == "DIHE":  # tleap falls back to X-b-c-X
                a, b, c, d = key
                hit = any(k in known["DIHE"] for k in (key, key[::-1], ("X", b, c, "X"), ("X", c, b, "X")))
            else:
                hit = key in known[section] or key[::-1] in known[section]
            if hit:
                dropped.append("-".join(key))
                continue
        if section == "IMPROPER" and head and any(m in line for m in _GUESSED_IMPROPER):
            line = f"{line[:11]}{IMPROPER_DEFAULT}"
        out.append(line)
    return "\n".join(out) + "\n", dropped


_PENALTY = re.compile(r"penalty score=\s*([0-9.]+)")


def _parse_frcmod(text: str) -> dict[str, dict[str, str]]:
    """section → {parameter key → line} (MASS/NONBON keyed by atom type)."""
    out: dict[str, dict[str, str]] = {}
    section = None
    for i, line in enumerate(text.splitlines()):
        head = line.strip()
        if i == 0:
            continue
        if head in ("MASS", "BOND", "ANGLE", "DIHE", "IMPROPER", "NONBON"):
            section = head
            out.setdefault(section, {})
            continue
        if not head or section is None:
            continue
        if section in _KEYLEN:
            key = "-".join(t.strip() for t in line[: 3 * _KEYLEN[section] - 1].split("-"))
        else:
            key = line[:2].strip() if section == "MASS" else line.split()[0]
        # a multi-term torsion repeats its key: keep all its lines together
        out[section][key] = out[section].get(key, "") + line + "\n" if key in out[section] else line + "\n"
    return out


def _rank(entry: str) -> tuple[float, str]:
    """Lower is better: an exact or general match before a penalty-scored guess before the bare default."""
    if "Using the default value" in entry:
        return (float("inf"), entry)
    m = _PENALTY.search(entry)
    return (float(m.group(1)) if m else 0.0, entry)


def merge_frcmods(texts: list[str]) -> str:
    """One frcmod from several (cleaned) parmchk2 outputs: the union of parameters, and for a parameter
    printed differently in different runs the best-supported line (:func:`_rank`)."""
    parsed = [_parse_frcmod(t) for t in texts]
    lines = ["Remark line goes here (mdi_mlmm: merged from %d parmchk2 runs)" % len(texts)]
    for section in ("MASS", "BOND", "ANGLE", "DIHE", "IMPROPER", "NONBON"):
        lines.append(section)
        keys = sorted({k for p in parsed for k in p.get(section, {})})
        for k in keys:
            cands = {p[section][k] for p in parsed if k in p.get(section, {})}
            lines.append(min(cands, key=_rank).rstrip("\n"))
        lines.append("")
    return "\n".join(lines) + "\n"


def parmchk2(mol2: Path, workdir: Path, forcefield: str, runs: int | None = None) -> tuple[Path, int]:
    """Missing GAFF parameters for ``mol2``, made reproducible; returns (``workdir/MOL.frcmod``, number of
    distinct cleaned parmchk2 outputs seen).

    parmchk2 runs ``runs`` times (default :data:`PARMCHK2_RUNS`); each output is cleaned
    (:func:`clean_frcmod`) and the runs are merged parameter by parameter (:func:`merge_frcmods`), so a
    parameter that parmchk2 only sometimes finds properly is taken from the run that found it.
    """
    runs = runs or PARMCHK2_RUNS.get(forcefield, 5)
    main_dat = main_parameter_file(forcefield)
    if main_dat is None:
        log.warning("cannot find %s.dat; parmchk2 output is compared but not cleaned", forcefield)
    texts, dropped_all = [], set()
    for i in range(runs):
        name = f"parmchk2.{i}.frcmod"
        tools.run(["parmchk2", "-i", mol2.name, "-f", "mol2", "-o", name, "-s", forcefield, "-a", "N"],
                  cwd=workdir, log_name="parmchk2.log")
        p = workdir / name
        if not p.is_file():
            raise ExternalToolError("parmchk2 wrote no frcmod file")
        cleaned, dropped = clean_frcmod(p.read_text(), main_dat)
        texts.append(cleaned)
        dropped_all.update(dropped)
        p.unlink()
    if dropped_all:
        log.info("parmchk2 listed parameters that %s.dat already covers (ignored): %s", forcefield,
                 ", ".join(sorted(dropped_all)))
    variants = len(set(texts))
    if variants > 1:
        log.warning("parmchk2 gave %d different frcmod files in %d runs; merged parameter by parameter",
                    variants, runs)
    out = workdir / f"{RESNAME}.frcmod"
    out.write_text(merge_frcmods(texts))
    return out, variants


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
    frcmod, variants = parmchk2(mol2, workdir, forcefield)
    prmtop, inpcrd = tleap(mol2, frcmod, workdir, forcefield)
    _, types, charges = _read_mol2_atoms(mol2)
    return Parameters(forcefield=forcefield, charge_method=charge_method, mol2=mol2, frcmod=frcmod,
                      prmtop=prmtop, inpcrd=inpcrd, atom_types=types, charges=charges,
                      parmchk2_runs=PARMCHK2_RUNS.get(forcefield, 5), parmchk2_variants=variants)
