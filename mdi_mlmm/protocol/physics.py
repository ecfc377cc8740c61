"""The physical model of every run, the same on both hosts (one place; the table is ``docs/hosts.md``).

``default`` — what windows, the gas leg, ``md``, the equilibration and the endpoint legs use on GROMACS
and on LAMMPS:

* Lennard-Jones: plain cut-off at :data:`CUTOFF_NM`, potential shifted to zero there (GROMACS
  ``vdw-modifier = Potential-shift``; LAMMPS ``pair_modify shift yes``, ``lj/cut/soft`` in windows);
* no long-range dispersion correction on either host (GROMACS ``DispCorr = no``; LAMMPS ``tail no``).
  GROMACS's DispCorr with a shifted LJ also counts the shift inside the cut-off, LAMMPS's ``tail yes``
  does not, so "on both" would not be the same Hamiltonian; "none on both" is;
* Coulomb: Ewald with the real-space cut-off :data:`CUTOFF_NM` on both (GROMACS PME, LAMMPS PPPM) and
  one splitting parameter β from erfc(β r_c) = :data:`EWALD_RTOL` (GROMACS ``ewald-rtol``; LAMMPS
  ``kspace_modify gewald``);
* rigid TIP3P water (GROMACS SETTLE, LAMMPS SHAKE/RATTLE), the solute flexible (``--constraints h-bonds``:
  X–H constrained at b0 on both hosts: LINCS, SHAKE/RATTLE);
* λ windows: Langevin NVT at the volume of the classical equilibration (both hosts start from its
  ``npt.gro``), :data:`TEMPERATURE_K`.

``freesolv`` — FreeSolv's own GROMACS protocol (Coulomb 1.2 nm, LJ switched 0.9–1.0 nm, dispersion
correction for energy and pressure, NPT windows, h-bond constraints on an MM solute), kept for
comparisons with FreeSolv's published values (``bench/bench_mm_baseline.py``). LAMMPS has no
potential-switch of that form, so this protocol is GROMACS-only.

Units: nm for GROMACS values, Å for LAMMPS values (:mod:`mdi_mlmm.units`).
"""
from __future__ import annotations

from ..errors import UserInputError

#: the protocols a hydration run can use
PROTOCOLS = ("default", "freesolv")
DEFAULT = "default"

#: LJ and real-space Coulomb cut-off of the default model, nm (10 Å)
CUTOFF_NM = 1.0
#: Ewald splitting: erfc(β r_c) = EWALD_RTOL on both hosts
EWALD_RTOL = 1e-6
#: LJ shifted to 0 at the cut-off (GROMACS Potential-shift = LAMMPS pair_modify shift yes)
LJ_SHIFT = True
#: long-range dispersion correction (GROMACS DispCorr, LAMMPS pair_modify tail): none on both
DISPERSION_CORRECTION = False
TEMPERATURE_K = 298.15

#: FreeSolv's nonbonded settings as mdp values (their DG protocol, prod.X.mdp)
FREESOLV_NONBONDED = {"rcoulomb": 1.2, "vdw-modifier": "Potential-switch", "rvdw-switch": 0.9, "rvdw": 1.0,
                      "DispCorr": "AllEnerPres"}
#: FreeSolv's λ windows on top of that: NPT (C-rescale, as our earlier default)
FREESOLV_WINDOW = {**FREESOLV_NONBONDED, "pcoupl": "C-rescale"}


def cutoff_A() -> float:
    """The default cut-off in Å (LAMMPS ``real`` units)."""
    from .. import units

    return CUTOFF_NM * units.factor("length", "nm", "angstrom")


def check_protocol(protocol: str, host: str | None = None) -> str:
    """``protocol`` if it is one of :data:`PROTOCOLS` and ``host`` can run it, else :class:`UserInputError`."""
    if protocol not in PROTOCOLS:
        raise UserInputError(f"unknown protocol {protocol!r}; choose {' or '.join(PROTOCOLS)}")
    if protocol == "freesolv" and host not in (None, "gromacs"):
        raise UserInputError("protocol freesolv (LJ potential-switch + dispersion correction, FreeSolv's GROMACS "
                             f"settings) runs on the GROMACS host only, not on {host}; the default protocol is "
                             "the same on both hosts")
    return protocol


def gromacs_window_overrides(protocol: str) -> dict:
    """mdp overrides of a λ window (template ``lambda``) for ``protocol`` (nothing for the default)."""
    check_protocol(protocol, "gromacs")
    return dict(FREESOLV_WINDOW) if protocol == "freesolv" else {}


def gromacs_equilibration_overrides(protocol: str) -> dict:
    """mdp overrides of the classical equilibration (templates ``em``, ``nvt``, ``npt``) for ``protocol``."""
    check_protocol(protocol)
    return dict(FREESOLV_NONBONDED) if protocol == "freesolv" else {}
