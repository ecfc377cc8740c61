"""Checks of prepared systems: vacuum single-point energies split by term (OpenMM, no cut-off).

Energies are kJ/mol. The GROMACS topology is read with OpenMM's own parser
(independent of ParmEd, which wrote it), the Amber one with OpenMM's prmtop reader.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

TERMS = ("bond", "angle", "torsion", "lj", "coulomb", "total")


def _terms(system, positions) -> dict[str, float]:
    import openmm
    from openmm import unit

    groups = {"bond": [], "angle": [], "torsion": [], "nonbonded": []}
    kinds = {"HarmonicBondForce": "bond", "HarmonicAngleForce": "angle", "PeriodicTorsionForce": "torsion",
             "RBTorsionForce": "torsion", "NonbondedForce": "nonbonded"}
    for i, f in enumerate(system.getForces()):
        f.setForceGroup(i)
        name = type(f).__name__
        if name == "CMMotionRemover":
            continue
        if name not in kinds:
            raise ValueError(f"unexpected force {name} in a GAFF system")
        groups[kinds[name]].append(i)

    def energies(sys_):
        ctx = openmm.Context(sys_, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(positions)
        out = {}
        for k, idx in groups.items():
            mask = sum(1 << i for i in idx)
            out[k] = ctx.getState(getEnergy=True, groups=mask).getPotentialEnergy().value_in_unit(
                unit.kilojoule_per_mole) if idx else 0.0
        return out

    e = energies(system)
    # LJ alone: the same system with every charge (and 1-4 charge product) zeroed
    neutral = openmm.XmlSerializer.clone(system) if hasattr(openmm.XmlSerializer, "clone") else \
        openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    for f in neutral.getForces():
        if isinstance(f, openmm.NonbondedForce):
            for i in range(f.getNumParticles()):
                q, s, eps = f.getParticleParameters(i)
                f.setParticleParameters(i, 0.0, s, eps)
            for i in range(f.getNumExceptions()):
                a, b, qq, s, eps = f.getExceptionParameters(i)
                f.setExceptionParameters(i, a, b, 0.0, s, eps)
    lj = energies(neutral)["nonbonded"]
    out = {"bond": e["bond"], "angle": e["angle"], "torsion": e["torsion"], "lj": lj,
           "coulomb": e["nonbonded"] - lj}
    out["total"] = sum(out.values())
    return out


def gromacs_vacuum_terms(top: Path, positions_nm: np.ndarray) -> dict[str, float]:
    """Vacuum (no cut-off, no periodicity) energy terms (kJ/mol) of a GROMACS topology at ``positions_nm`` (N, 3)."""
    from openmm import app, unit

    gtop = app.GromacsTopFile(str(top))
    system = gtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False,
                               removeCMMotion=False)
    return _terms(system, np.asarray(positions_nm) * unit.nanometer)


def amber_vacuum_terms(prmtop: Path, positions_nm: np.ndarray) -> dict[str, float]:
    """Vacuum energy terms (kJ/mol) of an Amber prmtop at ``positions_nm`` (N, 3)."""
    from openmm import app, unit

    prm = app.AmberPrmtopFile(str(prmtop))
    system = prm.createSystem(nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False,
                              removeCMMotion=False)
    return _terms(system, np.asarray(positions_nm) * unit.nanometer)


def gro_positions_nm(gro: Path) -> np.ndarray:
    """(N, 3) coordinates (nm) of a .gro file."""
    from openmm import app, unit

    return np.array(app.GromacsGroFile(str(gro)).getPositions().value_in_unit(unit.nanometer))
