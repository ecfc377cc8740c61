"""Hydrogen mass repartitioning (HMR) of a GROMACS topology, written into the ``.top`` text.

Every hydrogen bonded to a heavy atom gets ``factor`` × its mass (3: 1.008 → 3.024 amu, the usual choice)
and its heavy atom loses what the hydrogen gained, so each molecule keeps its total mass. With the X–H
bonds constrained this slows the fastest motions left (X–H bends, heavy-atom–H rotations) enough for a
4 fs time step. Equilibrium averages and free energies do not depend on the masses (the configurational
distribution does not, but for the constraints' mass-metric factor, negligible here: docs/gromacs.md), so
ΔG is unchanged in the limit of converged sampling.

GROMACS 2022 (the version built here) has no ``mass-repartition-factor`` mdp option (it came in 2023), so
the masses are written into the ``[ atoms ]`` mass column. Edited: every ``[ moleculetype ]`` defined in
the file itself except rigid water (a moleculetype with ``[ settles ]``, left as it is, as AMBER and
GROMACS HMR set-ups do). :func:`repartition` first writes every ``#include``-d file found next to the file
that includes it (where grompp looks first) into the text (:func:`inline_includes`), so that a ligand's
``.itp`` beside a protein's ``.top`` is repartitioned too and the written copy runs from any directory;
includes found only through GMXLIB (a force field's atom types, water, ions) stay ``#include`` lines and
their moleculetypes are not seen (a self-contained topology, as ``mdi-mlmm prepare`` writes, has none; a
file that defines no moleculetype but rigid water is refused; a solute without hydrogens, e.g. CCl4, is
left as it is). Anything odd is refused in one line (:class:`UserInputError`):
a hydrogen bonded to no heavy atom or to two, a heavy atom that would end lighter than a hydrogen bonded to it
(GROMACS 2023's ``mass-repartition-factor`` refuses that too: CH3 at factor 4 would leave C 2.94 amu beside
H 4.03; CH4 allows a factor up to 3.18, CH3 3.73), masses that look repartitioned already, a hydrogen whose
name does not start with H (GROMACS ``constraints = h-bonds`` finds X–H bonds by atom name, not mass),
perturbed (B-state) masses.

Hydrogens are recognised by mass (0.9–1.2 amu, as :mod:`mdi_mlmm.prep.complex` does); masses from the
``[ atoms ]`` column, else from the atom type. ``check_elements``: an edited ML atom's type must give an
atomic number in the file's ``[ atomtypes ]``: the GROMACS MDI module (``mditopology.cpp``) takes the
``mdi-ml-group`` atoms' elements from there and guesses them from the masses only when it is missing — a
repartitioned mass would then be guessed wrong (O − 2.016 amu ≈ N) or not at all; no other atom's element is
read. True checks every edited atom; a collection of 0-based atom indices (the ML region) only those, found
through ``[ molecules ]``, so that atom types from a force field under GMXLIB (a pdb2gmx protein's) pass.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import UserInputError
from .topfile import INCLUDE, blocks, fields

#: the usual factor: H 1.008 → 3.024 amu
DEFAULT_FACTOR = 3.0
#: a hydrogen's mass range (amu): protium only; 1.2–4.5 amu is no element's mass but a repartitioned H's (or D, T)
H_MASS = (0.9, 1.2)
_ODD_MASS = (1.2, 4.5)
#: the ``ptype`` letters of ``[ atomtypes ]``
_PTYPES = {"A", "D", "S", "V", "B"}


@dataclass
class Repartitioned:
    """What :func:`repartition` changed: moleculetype → number of hydrogens repartitioned, the
    moleculetypes left as rigid water, and the factor."""

    factor: float
    molecules: dict = field(default_factory=dict)
    water: list = field(default_factory=list)

    @property
    def n_hydrogens(self) -> int:
        return sum(self.molecules.values())


def _atomtypes(lines: list[str]) -> dict[str, tuple[Optional[int], float]]:
    """{type name: (atomic number or None, mass)} of the file's ``[ atomtypes ]`` (every GROMACS layout:
    the ptype letter is found, mass and charge precede it, an atomic number before those when present)."""
    out = {}
    for section, _, i, header in blocks(lines):
        if section != "atomtypes" or header or lines[i].lstrip().startswith("#"):
            continue
        f = fields(lines[i])
        k = next((j for j in range(3, len(f)) if f[j] in _PTYPES), None)
        if k is None:
            continue
        try:
            mass = float(f[k - 2])
            z = int(f[k - 3]) if k >= 4 and re.fullmatch(r"-?\d+", f[k - 3]) else None
        except ValueError:
            continue
        out[f[0]] = (z if z and z > 0 else None, mass)
    return out


#: the bond functions whose oscillation period grompp estimates (``check_bonds_timestep``): 1 harmonic, 2 GROMOS-96
#: (V = ¼ kb (r² − b0²)²), 6 harmonic without exclusions
BOND_FUNCTIONS = ("1", "2", "6")


def _harmonic_kb(func: str, b0: str, kb: str) -> float:
    """The harmonic force constant (kJ/mol/nm²) grompp takes for a bond of function ``func`` (of
    :data:`BOND_FUNCTIONS`) with parameters ``b0``, ``kb`` as written: ``kb``, for a G96 bond its curvature at b0,
    2 kb b0² (grompp 2022: ``2 * fc * re``, re holding b0²)."""
    return 2.0 * float(kb) * float(b0) ** 2 if func == "2" else float(kb)


def _bondtypes(lines: list[str]) -> tuple[dict[str, str], dict[tuple[str, str, str], float]]:
    """({atom type: its bonded type}, {(function, bonded type, bonded type), both orders: harmonic kb}) of the file's
    ``[ atomtypes ]`` (the bonded-type column, where the layout has one: grompp's rule, the ptype letter in field 5,
    or in field 4 with field 1 starting with a letter) and ``[ bondtypes ]`` of :data:`BOND_FUNCTIONS`
    (:func:`_harmonic_kb`; a later line wins, as in grompp)."""
    bonded: dict[str, str] = {}
    kbs: dict[tuple[str, str, str], float] = {}
    for section, _, i, header in blocks(lines):
        f = fields(lines[i])
        if header or not f or lines[i].lstrip().startswith("#"):
            continue
        if section == "atomtypes":
            k = next((j for j in range(3, len(f)) if f[j] in _PTYPES), None)
            if k == 5 or (k == 4 and f[1][:1].isalpha()):
                bonded[f[0]] = f[1]
        elif section == "bondtypes" and len(f) >= 5 and f[2] in BOND_FUNCTIONS:
            try:
                kbs[(f[2], f[0], f[1])] = kbs[(f[2], f[1], f[0])] = _harmonic_kb(f[2], f[3], f[4])
            except ValueError:
                continue
    return bonded, kbs


#: grompp warns when a flexible bond oscillates in fewer time steps than this (leap-frog turns unstable near 4.4)
MIN_STEPS_PER_PERIOD = 5


def fastest_bond(text: str, *, hbonds_constrained: bool = True) -> Optional[tuple[float, str, str]]:
    """(period in fs, moleculetype, ``NAME1-NAME2``) of the fastest bond of :data:`BOND_FUNCTIONS` (harmonic, G96,
    harmonic without exclusions) in ``text`` (a ``.top``) left flexible (not in ``[ constraints ]``; with
    ``hbonds_constrained``, as ``constraints = h-bonds`` does, no bond of function 1 or 2 with an atom named H*
    either: grompp leaves those of function 6 flexible; rigid water skipped), as grompp estimates it:
    2π √(μ / kb) from the ``[ atoms ]`` masses (else the atom type's) and the harmonic kb (:func:`_harmonic_kb`) of
    the parameters on the ``[ bonds ]`` line, or for a line without parameters those the ``[ bondtypes ]`` of
    ``text`` of its function give its atoms' bonded types (:func:`_bondtypes`; one whose parameters are in neither,
    e.g. a force field's under GMXLIB, is skipped); None if there is none. Repartitioned
    masses make heavy-atom bonds faster (a =CH2 carbon 7.98 amu), and triple bonds are fast already (C≡N 17 fs):
    at 4 fs some fall under :data:`MIN_STEPS_PER_PERIOD` steps."""
    lines = text.splitlines()
    types = _atomtypes(lines)
    bonded, bondtypes = _bondtypes(lines)
    atoms: dict[str, dict[int, tuple[float, str]]] = {}
    atom_types: dict[str, dict[int, str]] = {}
    bonds: dict[str, list[tuple[int, int, str, Optional[float]]]] = {}
    constrained: set[tuple[str, frozenset]] = set()
    water: set[str] = set()
    for section, mol, i, header in blocks(lines):
        if header or mol is None or lines[i].lstrip().startswith("#"):
            continue
        f = fields(lines[i])
        try:
            if section == "settles":
                water.add(mol)
            elif section == "constraints" and len(f) >= 2:
                constrained.add((mol, frozenset((int(f[0]), int(f[1])))))
            elif section == "atoms" and len(f) >= 7:
                m = float(f[7]) if len(f) >= 8 else types.get(f[1], (None, 0.0))[1]
                atoms.setdefault(mol, {})[int(f[0])] = (m, f[4])
                atom_types.setdefault(mol, {})[int(f[0])] = bonded.get(f[1], f[1])
            elif section == "bonds" and len(f) >= 5 and f[2] in BOND_FUNCTIONS:
                bonds.setdefault(mol, []).append((int(f[0]), int(f[1]), f[2], _harmonic_kb(f[2], f[3], f[4])))
            elif section == "bonds" and len(f) == 3 and f[2] in BOND_FUNCTIONS:   # kb from [ bondtypes ] (below)
                bonds.setdefault(mol, []).append((int(f[0]), int(f[1]), f[2], None))
        except (ValueError, IndexError):
            continue
    for mol, bl in bonds.items():
        names = atom_types.get(mol, {})
        bl[:] = [(a, b, fn, bondtypes.get((fn, names.get(a), names.get(b)), 0.0) if kb is None else kb)
                 for a, b, fn, kb in bl]
    best = None
    for mol, bl in bonds.items():
        if mol in water:
            continue
        for a, b, fn, kb in bl:
            (ma, na), (mb, nb) = atoms.get(mol, {}).get(a, (0.0, "H")), atoms.get(mol, {}).get(b, (0.0, "H"))
            xh = fn != "6" and (na.upper().startswith("H") or nb.upper().startswith("H"))   # h-bonds: 1 and 2 only
            if (hbonds_constrained and xh) or min(ma, mb, kb) <= 0 or (mol, frozenset((a, b))) in constrained:
                continue
            period = 2000.0 * math.pi * math.sqrt(ma * mb / ((ma + mb) * kb))   # fs: amu, kJ/mol/nm^2
            if best is None or period < best[0]:
                best = (period, mol, f"{na}-{nb}")
    return best


def largest_dt_fs(period_fs: float) -> float:
    """The largest time step (fs) on a 0.5 fs grid (0.1 fs under 2.5 fs periods) that keeps
    :data:`MIN_STEPS_PER_PERIOD` steps in a bond oscillation of ``period_fs``."""
    per = period_fs / MIN_STEPS_PER_PERIOD
    return math.floor(per * 2) / 2 or math.floor(per * 10) / 10


def text_as_run(top, factor: Optional[float] = None) -> str:
    """The text of the ``.top`` file ``top`` as a unit runs it (for :func:`fastest_bond`): the files it includes
    from beside it written in (:func:`inline_includes`), the hydrogen masses repartitioned by ``factor`` (None:
    not)."""
    text = inline_includes(top)
    return repartition_text(text, factor, source=str(top))[0] if factor else text


def fast_bond_message(text: str, dt_fs: float, *, hbonds_constrained: bool, option: str = "--dt",
                      source: str = "topology", factor: Optional[float] = None) -> Optional[str]:
    """One line saying that the fastest flexible bond of ``text`` (:func:`fastest_bond`) oscillates in fewer than
    :data:`MIN_STEPS_PER_PERIOD` steps of ``dt_fs`` and naming the ``option`` value (a multiple of 0.5 fs) that
    keeps them; None when every bond has them. ``factor``: the hydrogen masses were repartitioned by it (said)."""
    fast = fastest_bond(text, hbonds_constrained=hbonds_constrained)
    if not dt_fs or fast is None or fast[0] >= MIN_STEPS_PER_PERIOD * dt_fs:
        return None
    ok = largest_dt_fs(fast[0])
    masses = f"with hydrogen masses x {factor:g} " if factor else ""
    state = "not constrained" if hbonds_constrained else "flexible: no --constraints h-bonds"
    return (f"{source}: {masses}the bond {fast[2]} of {fast[1]} ({state}) oscillates in {fast[0]:.1f} fs, under "
            f"{MIN_STEPS_PER_PERIOD} steps of {dt_fs:g} fs (grompp's warning; leap-frog turns unstable near 4.4): "
            f"give {option} {ok:g} or less")


def _sites(lines: list[str], atoms: dict, indices, source: str) -> set[tuple[str, int]]:
    """(moleculetype, atom nr) of the 0-based system atom ``indices``, counted through ``[ molecules ]``;
    a moleculetype the file does not define (``atoms``: those it does) before the last of them is refused."""
    want, found, offset = sorted({int(i) for i in indices}), set(), 0
    for section, _, i, header in blocks(lines):
        f = fields(lines[i])
        if section != "molecules" or header or len(f) < 2 or lines[i].lstrip().startswith("#") or offset > want[-1]:
            continue
        if f[0] not in atoms:
            raise UserInputError(f"{source}: cannot find the ML atoms' atom types: moleculetype {f[0]} of "
                                 "[ molecules ] comes before them and is not defined in the file (an #include "
                                 "found through GMXLIB?); list the ML molecule before it")
        nrs = sorted(atoms[f[0]])
        n = len(nrs) * int(f[1]) if f[1].isdigit() else 0
        found |= {(f[0], nrs[(i - offset) % len(nrs)]) for i in want if offset <= i < offset + n}
        offset += n
    return found


def repartition_text(text: str, factor: float = DEFAULT_FACTOR, *, check_elements=False,
                     source: str = "topology") -> tuple[str, Repartitioned]:
    """``text`` (a ``.top``) with its hydrogens' masses repartitioned by ``factor`` (module docstring);
    returns (new text, :class:`Repartitioned`). ``check_elements``: False, True (every edited atom) or the ML
    region's 0-based atom indices (module docstring). ``source`` names the file in messages."""
    factor = float(factor)
    if not factor > 1.0:
        raise UserInputError(f"mass repartitioning factor must be above 1 (3: the usual), got {factor:g}")
    lines = text.splitlines(keepends=True)
    types = _atomtypes(lines)
    atoms: dict[str, dict[int, tuple[int, list[str]]]] = {}   # moltype -> nr -> (line index, fields)
    bonds: dict[str, list[tuple[int, int]]] = {}
    water: set[str] = set()
    order: list[str] = []
    for section, mol, i, header in blocks(lines):
        if header or mol is None or lines[i].lstrip().startswith("#"):
            continue
        if mol not in order:
            order.append(mol)
        f = fields(lines[i])
        if not f:
            continue
        if section == "settles":
            water.add(mol)
        elif section == "atoms":
            atoms.setdefault(mol, {})[int(f[0])] = (i, f)
        elif section in ("bonds", "constraints") and len(f) >= 2:
            bonds.setdefault(mol, []).append((int(f[0]), int(f[1])))
    report = Repartitioned(factor, water=sorted(water))
    ml = None if check_elements is True or not check_elements else _sites(lines, atoms, check_elements, source)
    for mol in order:
        if mol in water or mol not in atoms:
            continue
        where = f"{source}, moleculetype {mol}"
        mass = {}
        for nr, (i, f) in atoms[mol].items():
            if len(f) not in (7, 8, 11):
                raise UserInputError(f"{where}: atom {nr} has {len(f)} [ atoms ] columns; mass repartitioning "
                                     "edits the layouts nr type resnr residue atom cgnr charge [mass] (and no "
                                     "perturbed B state without its own mass)")
            if len(f) == 11 and float(f[10]) != float(f[7]):
                raise UserInputError(f"{where}: atom {nr} has a perturbed mass (massB {f[10]} != {f[7]}): not "
                                     "repartitioned")
            if len(f) >= 8:
                mass[nr] = float(f[7])
            elif f[1] in types:
                mass[nr] = types[f[1]][1]
            else:
                raise UserInputError(f"{where}: atom {nr} has no mass column and its type {f[1]} is not in the "
                                     "file's [ atomtypes ]: cannot repartition its mass")
        odd = [nr for nr, m in mass.items() if _ODD_MASS[0] < m < _ODD_MASS[1]]
        if odd:
            raise UserInputError(f"{where}: atom {odd[0]} has mass {mass[odd[0]]:g} amu, not a hydrogen's nor a "
                                 "heavy atom's: is the topology repartitioned already?")
        hydrogens = {nr for nr, m in mass.items() if H_MASS[0] <= m <= H_MASS[1]}
        if not hydrogens:
            continue
        partner: dict[int, list[int]] = {h: [] for h in hydrogens}
        for a, b in bonds.get(mol, []):
            for h, x in ((a, b), (b, a)):
                if h in hydrogens and x not in hydrogens:
                    partner[h].append(x)
        new = dict(mass)
        for h in sorted(hydrogens):
            name = atoms[mol][h][1][4]
            if len(set(partner[h])) != 1:
                raise UserInputError(f"{where}: hydrogen {h} ({name}) is bonded to {len(set(partner[h]))} heavy "
                                     "atoms, not one: cannot repartition its mass")
            if not name.upper().startswith("H"):
                raise UserInputError(f"{where}: hydrogen {h} is named {name!r}; GROMACS constraints = h-bonds "
                                     "finds X-H bonds by names starting with H, so it would stay flexible")
            gain = (factor - 1.0) * mass[h]
            new[h] += gain
            new[partner[h][0]] -= gain
        for x in sorted(set(new) - hydrogens):
            own = [mass[h] for h in hydrogens if partner[h][0] == x]
            if own and new[x] < factor * max(own):   # lighter than its hydrogens (GROMACS's own rule)
                most = math.floor((mass[x] + sum(own)) / (sum(own) + max(own)) * 10) / 10
                raise UserInputError(f"{where}: atom {x} ({atoms[mol][x][1][4]}) would drop to {new[x]:.3f} amu "
                                     f"(from {mass[x]:g}) with factor {factor:g}, lighter than its hydrogens "
                                     f"({factor * max(own):.3f} amu); use a factor of {most:g} or less")
        if check_elements:
            for x in new:
                t = atoms[mol][x][1][1]
                if new[x] != mass[x] and (t not in types or types[t][0] is None) and (ml is None or (mol, x) in ml):
                    raise UserInputError(f"{where}: atom type {t} has no atomic number in the file's [ atomtypes ]: "
                                         "the GROMACS MDI module would guess the ML atoms' elements from the "
                                         "repartitioned masses; give at.num there")
        for x, m in new.items():
            if m == mass[x]:
                continue
            i, f = atoms[mol][x]
            f = list(f)
            if len(f) == 7:
                f.append("")
            f[7] = f"{m:.6f}"
            if len(f) == 11:
                f[10] = f[7]
            comment = lines[i].split(";", 1)[1] if ";" in lines[i] else None
            eol = "\n" if lines[i].endswith("\n") else ""
            body = f"{int(f[0]):5d} {f[1]:>10s} {f[2]:>6s} {f[3]:>6s} {f[4]:>6s} {f[5]:>6s} " + " ".join(f[6:])
            lines[i] = body + (f"   ;{comment.rstrip(chr(10))}" if comment is not None else "") + eol
        report.molecules[mol] = len(hydrogens)
    if not any(mol not in water for mol in atoms):
        raise UserInputError(f"{source}: no moleculetype outside rigid water to repartition (a solute defined in an "
                             "#include-d file not found next to the topology is not edited: give a self-contained "
                             "topology)")
    header = (f"; hydrogen mass repartitioning by mdi-mlmm: H mass x {factor:g}, taken from the bonded heavy atom "
              f"({', '.join(f'{m}: {n} H' for m, n in report.molecules.items()) or 'no hydrogen outside water'}; "
              "rigid water untouched)\n")
    return header + "".join(lines), report


def inline_includes(top, _within: tuple = ()) -> str:
    """The text of ``top`` with every ``#include`` that names a file next to the including file (grompp's first
    place to look; recursively) replaced by that file's text between two comment lines; other includes (found
    by grompp through ``-I`` or GMXLIB: a force field's) stay as they are. ``#ifdef`` lines stay too."""
    top = Path(top)
    out = []
    for ln in top.read_text().splitlines(keepends=True):
        m = INCLUDE.match(ln)
        inc = top.parent / m.group(1) if m else None
        if inc is None or not inc.is_file():
            out.append(ln)
            continue
        if inc.resolve() in _within:
            raise UserInputError(f"{top}: {ln.strip()} includes a file that includes it")
        body = inline_includes(inc, _within + (top.resolve(), inc.resolve()))
        out += [f"; mdi-mlmm (hydrogen mass repartitioning): {ln.strip()} written in\n",
                body if body.endswith("\n") or not body else body + "\n", f"; end of {m.group(1)}\n"]
    return "".join(out)


def repartition(top, out, factor: float = DEFAULT_FACTOR, *, check_elements=False) -> Repartitioned:
    """Write ``top`` with repartitioned hydrogen masses (:func:`repartition_text`) to ``out``; the files it
    ``#include``-s from beside it are written in (:func:`inline_includes`), so ``out`` may be anywhere."""
    top, out = Path(top), Path(out)
    if not top.is_file():
        raise UserInputError(f"no such file: {top}")
    text, report = repartition_text(inline_includes(top), factor, check_elements=check_elements, source=str(top))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    return report
