"""Reference energies for checking the LAMMPS conversion.

* :func:`gromacs_energies` — ``gmx grompp`` + ``gmx mdrun -rerun`` of a GROMACS system on
  its own coordinates, with settings matched to a :class:`~.convert.LammpsSystem`
  (same cutoff, same Ewald β through ``ewald-rtol``, no dispersion correction, the same
  LJ modifier), term by term in kcal/mol.
* :func:`compare_terms` — LAMMPS terms vs GROMACS terms, grouped where the split differs.
* :func:`intramolecular_terms` — the classical terms *inside* a set of atoms (the ML
  region) computed directly, in vacuo, without any cutoff or Ewald: bonds, angles,
  dihedrals (OpenMM, NoCutoff) and LJ / Coulomb pairs (numpy double sum, 1-2/1-3
  excluded, 1-4 scaled by fudgeLJ/fudgeQQ). That is what the ML region removes.

Units: kcal/mol, Å.
"""
from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ... import processes, units
from ...errors import ExternalToolError, UserInputError

KJ2KCAL = units.factor("energy", "kj/mol", "kcal/mol")

GMX_TERMS = ("Bond", "Angle", "Proper Dih.", "Ryckaert-Bell.", "Improper Dih.", "Per. Imp. Dih.", "LJ-14",
             "Coulomb-14", "LJ (SR)", "Coulomb (SR)", "Coul. recip.", "Potential")


def rerun_mdp(cutoff_A: float, ewald_rtol: float, lj_shift: bool, fourier_spacing_nm: float = 0.06,
              pme_order: int = 8) -> str:
    rc = cutoff_A / units.NM_TO_ANGSTROM
    return "\n".join([
        "integrator = md", "nsteps = 0", "cutoff-scheme = Verlet", "pbc = xyz",
        "coulombtype = PME", f"rcoulomb = {rc}", "coulomb-modifier = None",
        "vdwtype = Cut-off", f"rvdw = {rc}", f"vdw-modifier = {'Potential-shift' if lj_shift else 'None'}",
        "DispCorr = no", f"ewald-rtol = {ewald_rtol}", f"fourier-spacing = {fourier_spacing_nm}",
        f"pme-order = {pme_order}", "constraints = none", "nstcalcenergy = 1", "nstenergy = 1",
        "verlet-buffer-tolerance = -1", f"rlist = {rc + 0.1}", ""])


def find_gmx(double: bool = True) -> str:
    for name in (("gmx_d", "gmx") if double else ("gmx", "gmx_d")):
        path = shutil.which(name)
        if path:
            return path
    raise ExternalToolError("no gmx (or gmx_d) on PATH")


def _run(cmd, cwd, stdin=None):
    return processes.run_checked(cmd, cwd=cwd, input=stdin, error=ExternalToolError)


def gromacs_energies(top, gro, workdir, *, cutoff_A: float = 10.0, ewald_rtol: float = 1e-6,
                     lj_shift: bool = False, double: bool = True, **mdp_kw) -> dict:
    """GROMACS energy terms (kcal/mol) of ``gro`` with ``top``; keys as in :data:`GMX_TERMS`
    (terms the system lacks are absent)."""
    gmx = find_gmx(double)
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "rerun.mdp").write_text(rerun_mdp(cutoff_A, ewald_rtol, lj_shift, **mdp_kw))
    top, gro = Path(top).resolve(), Path(gro).resolve()
    from ...prep import tools

    tools.grompp(gmx, "rerun.mdp", gro, top, "rerun.tpr", maxwarn=5, cwd=wd, what="gmx grompp (rerun)",
                 maxwarn_option=None)
    _run([gmx, "mdrun", "-s", "rerun.tpr", "-rerun", str(gro), "-deffnm", "rerun", "-nt", "1"], wd)
    # gmx energy: list available terms first, then select all of ours by name
    p = processes.run([gmx, "energy", "-f", "rerun.edr", "-o", "energy.xvg", "-dp"], cwd=wd,
                      input="0\n", capture_output=True, text=True)
    listing = (p.stdout + p.stderr).split("-" * 20, 1)[-1]
    avail = {name: num for num, name in re.findall(r"(?:^|\s)(\d+)\s+(\S+)", listing)}
    nums = [avail[t.replace(" ", "-")] for t in GMX_TERMS if t.replace(" ", "-") in avail]
    _run([gmx, "energy", "-f", "rerun.edr", "-o", "energy.xvg", "-dp"], wd, stdin="\n".join(nums) + "\n\n")
    legends, values = [], None
    for line in (wd / "energy.xvg").read_text().splitlines():
        m = re.match(r'@ s\d+ legend "(.*)"', line)
        if m:
            legends.append(m.group(1))
        elif line and line[0] not in "#@":
            values = [float(x) for x in line.split()[1:]]
            break
    if values is None:
        raise ExternalToolError(f"no energies in {wd / 'energy.xvg'}")
    return {k: v * KJ2KCAL for k, v in zip(legends, values)}


def compare_terms(lmp: dict, gmx: dict) -> dict:
    """Grouped terms: name → (LAMMPS, GROMACS), kcal/mol."""
    g = lambda *ks: sum(gmx.get(k, 0.0) for k in ks)  # noqa: E731
    return {
        "bonds": (lmp["ebond"], g("Bond")),
        "angles": (lmp["eangle"], g("Angle")),
        "dihedrals (proper+improper)": (lmp["edihed"] + lmp["eimp"],
                                        g("Proper Dih.", "Ryckaert-Bell.", "Per. Imp. Dih.", "Improper Dih.")),
        "LJ (SR + 1-4)": (lmp["evdwl"], g("LJ (SR)", "LJ-14")),
        "Coulomb (SR + recip + 1-4)": (lmp["ecoul"] + lmp["elong"], g("Coulomb (SR)", "Coul. recip.", "Coulomb-14")),
        "total": (lmp["pe"], g("Potential")),
    }


def intramolecular_terms(structure, atoms: Sequence[int], lj_shift_cutoff_A: Optional[float] = None) -> dict:
    """Classical energy terms inside ``atoms`` (kcal/mol), in vacuo, no cutoff, minimum image.

    Keys: ebond, eangle, edihed (proper + RB + improper), evdwl (LJ incl. 1-4 scaled),
    ecoul (Coulomb incl. 1-4 scaled). The atoms must form whole molecules.
    lj_shift_cutoff_A: shift each LJ pair by its value at this cutoff, as LAMMPS's
    ``pair_modify shift yes`` does (for 1-4 pairs too, scaled by fudgeLJ).
    """
    import openmm
    import openmm.app as app
    import openmm.unit as u

    from ...topology.pbc import minimum_image
    from .convert import graph_neighbours

    atoms = sorted(int(i) for i in atoms)
    sel = np.zeros(len(structure.atoms), dtype=bool)
    sel[atoms] = True
    sub = structure[sel]
    box = structure.box_vectors.value_in_unit(u.angstrom) if structure.box is not None else None
    pos = np.array(structure.coordinates, dtype=float)[atoms]
    if box is not None:  # make whole
        pos = pos[0] + minimum_image(pos - pos[0], np.array(box, dtype=float))
    sub.box = None
    system = sub.createSystem(nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False,
                              removeCMMotion=False)
    groups = {}
    for k, f in enumerate(system.getForces()):
        f.setForceGroup(k)
        groups[type(f).__name__] = groups.get(type(f).__name__, []) + [k]
    ctx = openmm.Context(system, openmm.VerletIntegrator(1.0), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos * u.angstrom)

    def e(names):
        ks = {k for n in names for k in groups.get(n, [])}
        if not ks:
            return 0.0
        return ctx.getState(getEnergy=True, groups=ks).getPotentialEnergy().value_in_unit(u.kilocalorie_per_mole)

    out = {"ebond": e(["HarmonicBondForce"]), "eangle": e(["HarmonicAngleForce"]),
           "edihed": e(["PeriodicTorsionForce", "RBTorsionForce"])}
    # nonbonded by direct sum
    n = len(atoms)
    local = {a: k for k, a in enumerate(atoms)}
    bonds = [(local[b.atom1.idx], local[b.atom2.idx]) for b in structure.bonds if b.atom1.idx in local]
    nb = graph_neighbours(n, bonds, 3)
    excl = nb[1] | nb[2]
    p14 = nb[3]
    d = structure.defaults
    fl, fq = float(d.fudgeLJ), float(d.fudgeQQ)
    arith = int(d.comb_rule) == 2
    qqr2e = 332.06371  # LAMMPS real units; = 138.935458 kJ mol-1 nm e-2 (GROMACS)
    elj = ecoul = 0.0
    A = [structure.atoms[i] for i in atoms]
    for i in range(n):
        for j in range(i + 1, n):
            if (i, j) in excl:
                continue
            w_lj, w_q = (fl, fq) if (i, j) in p14 else (1.0, 1.0)
            r = float(np.linalg.norm(pos[i] - pos[j]))
            sig = 0.5 * (A[i].sigma + A[j].sigma) if arith else math.sqrt(A[i].sigma * A[j].sigma)
            eps = math.sqrt(A[i].epsilon * A[j].epsilon)
            sr6 = (sig / r) ** 6
            elj += w_lj * 4 * eps * (sr6 * sr6 - sr6)
            if lj_shift_cutoff_A and r < lj_shift_cutoff_A:
                sc6 = (sig / lj_shift_cutoff_A) ** 6
                elj -= w_lj * 4 * eps * (sc6 * sc6 - sc6)
            ecoul += w_q * qqr2e * A[i].charge * A[j].charge / r
    out["evdwl"] = elj
    out["ecoul"] = ecoul
    out["n_pairs"] = n * (n - 1) // 2 - len(excl)
    out["n_14"] = len(p14)
    return out


def lj14_shift(structure, cutoff_A: float) -> float:
    """Σ over the 1-4 pairs of fudgeLJ × V_LJ(r_c) (kcal/mol): what LAMMPS's ``pair_modify shift yes``
    subtracts from the 1-4 pairs and GROMACS (plain LJ-14) does not."""
    d = structure.defaults
    arith = int(d.comb_rule) == 2
    total = 0.0
    for adj in structure.adjusts:
        a, b = adj.atom1, adj.atom2
        sig = 0.5 * (a.sigma + b.sigma) if arith else math.sqrt(a.sigma * b.sigma)
        eps = math.sqrt(a.epsilon * b.epsilon)
        sc6 = (sig / cutoff_A) ** 6
        total += float(d.fudgeLJ) * 4 * eps * (sc6 * sc6 - sc6)
    return total
