"""Solvated and gas-phase GROMACS systems from a parametrized solute (ParmEd + ``gmx``).

Lengths: ParmEd structures hold Å; GROMACS files and all ``*_nm`` arguments are nm.
Topologies are self-contained: ``[ defaults ]`` and every ``[ atomtypes ]`` line come
before the first ``[ moleculetype ]``, no ``#include`` of a force-field directory.
"""
from __future__ import annotations

import logging

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PrepError
from ..topology.index import ML_GROUP, MM_GROUP, read_ndx, write_ndx
from . import mdp, tools

log = logging.getLogger(__name__)

WATER_RESNAME = "SOL"
#: smallest cubic water box (nm): the templates' 1.2 nm cut-off must stay below half the box under NPT
MIN_SOLVATED_BOX_NM = 2.8

# Amber TIP3P (Jorgensen 1983 as in AmberTools' leaprc.water.tip3p): rigid through SETTLE.
# Charges e, sigma nm, epsilon kJ/mol, distances nm.
TIP3P_TOP = """\
[ defaults ]
1 2 yes 0.5 0.8333333333

[ atomtypes ]
OW   8  16.000  0.0  A  0.315061   0.636386
HW   1   1.008  0.0  A  0.0        0.0

[ moleculetype ]
SOL 2

[ atoms ]
1 OW 1 SOL OW  1 -0.834 16.000
2 HW 1 SOL HW1 1  0.417  1.008
3 HW 1 SOL HW2 1  0.417  1.008

[ settles ]
1 1 0.09572 0.15136

[ exclusions ]
1 2 3
2 1 3
3 1 2

[ system ]
water

[ molecules ]
SOL 1
"""


def water_structure():
    """ParmEd structure of one TIP3P water (residue ``SOL``, atoms OW HW1 HW2)."""
    import parmed

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "tip3p.top"
        p.write_text(TIP3P_TOP)
        top = parmed.gromacs.GromacsTopologyFile(str(p))
    s = top.copy(parmed.Structure)
    for bt in s.bond_types:  # SETTLE carries no force constant; use Amber's flexible TIP3P one for -DFLEXIBLE
        bt.k = 553.0  # kcal/mol/Å^2
    s.coordinates = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2400, 0.9266, 0.0]])
    return s


def solute_from_amber(prmtop: Path, inpcrd: Path):
    """ParmEd structure of the solute from tleap output (plain :class:`parmed.Structure`)."""
    import parmed

    return parmed.load_file(str(prmtop), str(inpcrd)).copy(parmed.Structure)


def solute_from_gromacs(top: Path, gro: Path):
    """ParmEd structure of the solute from a GROMACS topology and coordinates (e.g. FreeSolv's)."""
    import parmed

    s = parmed.load_file(str(top), xyz=str(gro))
    out = s.copy(parmed.Structure)
    out.box = None
    return out


def _amber_defaults(structure) -> None:
    """Check the 1-4 scaling is Amber's (scee 1.2, scnb 2.0) so that gen-pairs with fudgeLJ 0.5 /
    fudgeQQ 0.8333 reproduces it."""
    for d in structure.dihedrals:
        dt = d.type
        if d.improper or d.ignore_end or dt is None:
            continue
        if abs(dt.scee - 1.2) > 1e-3 or abs(dt.scnb - 2.0) > 1e-3:
            raise PrepError(f"unexpected 1-4 scaling (scee {dt.scee}, scnb {dt.scnb}); only GAFF is supported")


def write_gromacs(structure, top: Path, gro: Path, title: str) -> None:
    """Write ``structure`` as a self-contained GROMACS topology and a .gro file (nm).

    ParmEd's header (date, user, host) is replaced by a fixed one, so the same input gives
    byte-identical files.
    """
    import parmed

    _amber_defaults(structure)
    gtop = parmed.gromacs.GromacsTopologyFile.from_structure(structure)
    gtop.defaults = parmed.gromacs.gromacstop._Defaults(
        nbfunc=1, comb_rule=2, gen_pairs="yes", fudgeLJ=0.5, fudgeQQ=0.8333333333)
    gtop.title = title
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / "topol.top"
        gtop.write(str(tmp))
        text = tmp.read_text()
    body = text[text.index("[ defaults ]"):]
    header = (f"; {title}\n; GROMACS topology written by mdi-mlmm prepare (ParmEd {parmed.__version__}).\n"
              "; Self-contained: GAFF solute and TIP3P water (rigid by SETTLE; -DFLEXIBLE for flexible water).\n\n")
    top.write_text(header + body)
    structure.save(str(gro), format="gro", overwrite=True)
    # a fixed title line in the .gro as well
    lines = gro.read_text().splitlines()
    lines[0] = title
    gro.write_text("\n".join(lines) + "\n")


def _gro_box_nm(gro: Path) -> list[float]:
    return [float(x) for x in gro.read_text().splitlines()[-1].split()[:3]]


@dataclass
class BuiltSystem:
    """Files of one GROMACS system; ``n_solute`` atoms (the ML region) come first."""

    top: Path
    gro: Path
    ndx: Path
    n_atoms: int
    n_solute: int
    n_waters: int
    box_nm: list[float]


def solvate(solute, workdir: Path, outdir: Path, padding_nm: float, title: str) -> BuiltSystem:
    """Cubic TIP3P box with at least ``padding_nm`` between the solute and the box faces
    (and an edge of at least :data:`MIN_SOLVATED_BOX_NM`)."""
    if padding_nm <= 0:
        raise PrepError(f"box padding must be positive, got {padding_nm} nm")
    solute.save(str(workdir / "solute.gro"), format="gro", overwrite=True)
    tools.run(["gmx", "-quiet", "editconf", "-f", "solute.gro", "-o", "boxed.gro", "-bt", "cubic",
               "-d", f"{padding_nm}", "-c"], cwd=workdir, log_name="editconf.log")
    edge = _gro_box_nm(workdir / "boxed.gro")[0]
    if edge < MIN_SOLVATED_BOX_NM:
        log.info("box edge %.3f nm from %.2f nm padding is below %.1f nm (twice the 1.2 nm cut-off plus buffer); "
                 "using %.1f nm", edge, padding_nm, MIN_SOLVATED_BOX_NM, MIN_SOLVATED_BOX_NM)
        tools.run(["gmx", "-quiet", "editconf", "-f", "solute.gro", "-o", "boxed.gro", "-bt", "cubic",
                   "-box", f"{MIN_SOLVATED_BOX_NM}", "-c"], cwd=workdir, log_name="editconf.log")
    tools.run(["gmx", "-quiet", "solvate", "-cp", "boxed.gro", "-cs", "spc216.gro", "-o", "solvated.gro"],
              cwd=workdir, log_name="solvate.log")
    import parmed

    solv = parmed.load_file(str(workdir / "solvated.gro"))
    n_solute = len(solute.atoms)
    waters = solv.residues[len(solute.residues):]
    if any(r.name != WATER_RESNAME or len(r) != 3 for r in waters):
        raise PrepError("gmx solvate produced something other than 3-site SOL waters")
    n_wat = len(waters)
    log.info("solvated: %d TIP3P waters, cubic box %.3f nm", n_wat, solv.box[0] / 10)
    system = solute + water_structure() * n_wat if n_wat else solute.copy(type(solute))
    system.coordinates = solv.coordinates
    system.box = solv.box
    outdir.mkdir(parents=True, exist_ok=True)
    top, gro = outdir / "topol.top", outdir / "conf.gro"
    write_gromacs(system, top, gro, title)
    ndx = write_index(gro, outdir / "index.ndx", n_solute, workdir, with_mm=True)
    return BuiltSystem(top, gro, ndx, len(system.atoms), n_solute, n_wat, _gro_box_nm(gro))


def gas_box(solute, workdir: Path, outdir: Path, padding_nm: float, title: str) -> BuiltSystem:
    """The solute alone, centred in a cubic box ``padding_nm`` larger than it on every side."""
    import parmed

    solute.save(str(workdir / "gas_in.gro"), format="gro", overwrite=True)
    tools.run(["gmx", "-quiet", "editconf", "-f", "gas_in.gro", "-o", "gas.gro", "-bt", "cubic",
               "-d", f"{padding_nm}", "-c"], cwd=workdir, log_name="editconf_gas.log")
    g = parmed.load_file(str(workdir / "gas.gro"))
    system = solute.copy(parmed.Structure)
    system.coordinates = g.coordinates
    system.box = g.box
    outdir.mkdir(parents=True, exist_ok=True)
    top, gro = outdir / "topol.top", outdir / "conf.gro"
    write_gromacs(system, top, gro, title)
    ndx = write_index(gro, outdir / "index.ndx", len(system.atoms), workdir, with_mm=False)
    log.info("gas phase: cubic box %.3f nm", g.box[0] / 10)
    return BuiltSystem(top, gro, ndx, len(system.atoms), len(system.atoms), 0, _gro_box_nm(gro))


def write_index(gro: Path, ndx: Path, n_solute: int, workdir: Path, with_mm: bool) -> Path:
    """GROMACS' standard groups (``gmx make_ndx``) plus ``ML`` (the solute, atoms 0..n_solute-1)
    and, if ``with_mm``, ``MM`` (everything else)."""
    tools.run(["gmx", "-quiet", "make_ndx", "-f", str(gro.resolve()), "-o", str(ndx.resolve())],
              cwd=workdir, stdin="q\n", log_name="make_ndx.log")
    n_total = sum(len(v) for k, v in read_ndx(ndx).items() if k == "System")
    groups = {ML_GROUP: range(n_solute)}
    if with_mm:
        groups[MM_GROUP] = range(n_solute, n_total)
    write_ndx(ndx, groups, append=True)
    return ndx


def grompp_check(system: BuiltSystem, template: str, workdir: Path, maxwarn: int = 0, **overrides) -> str:
    """Run ``gmx grompp`` on ``system`` with mdp ``template`` (e.g. ``em``; ``overrides`` as
    :func:`.mdp.render`); raise with GROMACS's own reason if it rejects it. Returns grompp's output."""
    tag = f"check_{template}"
    mdp.write(template, workdir / f"{tag}.mdp", **overrides)
    return tools.grompp("gmx", f"{tag}.mdp", system.gro.resolve(), system.top.resolve(), f"{tag}.tpr",
                        ndx=system.ndx.resolve(), maxwarn=maxwarn, cwd=workdir,
                        what=f"gmx grompp (check, {template} template, {system.gro.parent.name} system)",
                        maxwarn_option="mdi-mlmm prepare --maxwarn")


def net_charge(structure) -> float:
    """Sum of partial charges (e)."""
    return float(sum(a.charge for a in structure.atoms))


def elements(structure) -> list[str]:
    """Element symbols of ``structure``'s atoms."""
    from parmed.periodic_table import Element

    return [Element[a.atomic_number] for a in structure.atoms]


