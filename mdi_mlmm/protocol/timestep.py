"""The one time-step policy of every MD run (``md``, ``hydration``, the Python API).

The fastest motion is the X–H bond stretch (about 3000–3700 cm⁻¹, a period of 9–11 fs) and velocity
Verlet needs about 10 steps per period to conserve energy; with X–H bonds constrained the fastest motions
left are bends near 1600 cm⁻¹ (about 20 fs). Hydrogen mass repartitioning (HMR, :mod:`mdi_mlmm.topology.hmr`,
GROMACS host) on top of the constraints slows the X–H bends and rotations by √factor: 4 fs.
"""
from __future__ import annotations

import sys

from ..errors import UserInputError

#: fs; (warn above, refuse above) for flexible and for constrained X–H bonds
DT_LIMITS_FLEXIBLE = (1.0, 2.0)
DT_LIMITS_CONSTRAINED = (2.0, 4.0)
#: fs; (warn above, refuse above) with X–H bonds constrained and hydrogen masses repartitioned (×3 by default)
DT_LIMITS_HMR = (4.0, 5.0)

#: the X–H bond treatments of an ML/MM ``md`` or ``hydration`` run (``--constraints``): ``none`` (every bond
#: flexible, the default) or ``h-bonds`` (every X–H bond constrained at its force-field length b0, the ML
#: region's included; both hosts: GROMACS LINCS, LAMMPS fix rattle/shake)
CONSTRAINTS = ("none", "h-bonds")


def mass_factor(factor) -> float | None:
    """A hydrogen mass factor as runs hold it: None for off (None or 1; also 0 or False), else the factor as a
    float. The one place that says what "off" is; :func:`check_mass_repartition` checks a factor given."""
    return None if not factor or factor == 1 else float(factor)


def default_dt_fs(constrained_xh: bool, hmr=None) -> float:
    """The time step (fs) of a run that asks for none: 1 fs with flexible X–H bonds, 2 fs with them constrained,
    4 fs with them constrained and hydrogen masses repartitioned (``hmr``: the factor, :func:`mass_factor`)."""
    return 4.0 if constrained_xh and mass_factor(hmr) else 2.0 if constrained_xh else 1.0


def check_timestep(dt_fs: float, *, constrained_xh: bool, allow_large: bool, stream=None, option: str = "--dt",
                   hmr: bool = False) -> None:
    """Refuse (:class:`UserInputError`) or warn (one ``warning:`` line on ``stream``, default stderr)
    about a time step ``dt_fs`` (fs) that is unsafe for X–H bonds (limits above). option: the
    command-line option the messages name (``--leg-dt`` for the endpoint legs); hmr: hydrogen masses
    repartitioned (with ``constrained_xh`` only: :func:`check_mass_repartition`)."""
    if hmr and constrained_xh:
        warn_above, refuse_above = DT_LIMITS_HMR
        bonds = "constrained X-H bonds with repartitioned hydrogen masses"
    else:
        warn_above, refuse_above = DT_LIMITS_CONSTRAINED if constrained_xh else DT_LIMITS_FLEXIBLE
        bonds = "constrained X-H bonds" if constrained_xh else "flexible X-H bonds (about 10 fs period)"
    if dt_fs > refuse_above and not allow_large:
        raise UserInputError(f"{option} {dt_fs:g} fs is above the {refuse_above:g} fs limit for {bonds}; "
                             f"use a smaller {option} or pass --allow-large-dt")
    if dt_fs > warn_above:
        print(f"warning: {option} {dt_fs:g} fs is above {warn_above:g} fs, large for {bonds}: expect energy drift "
              f"or instability", file=stream or sys.stderr, flush=True)


#: the hosts that can repartition hydrogen masses: GROMACS reads per-atom masses from the topology; the LAMMPS
#: host's data files carry one mass per atom type, shared by heavy atoms with different numbers of hydrogens
HMR_HOSTS = ("gromacs",)


def check_mass_repartition(factor, *, constrained_xh: bool, host: str | None = None,
                           option: str = "--mass-repartition") -> float | None:
    """The hydrogen mass repartitioning factor (:mod:`mdi_mlmm.topology.hmr`) as a float, None for off (None
    or 1), or one line (:class:`UserInputError`): a factor not above 1, X–H bonds not constrained, or a
    host that cannot (:data:`HMR_HOSTS`)."""
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float))
                               or not (factor > 1 or factor == 1)):
        raise UserInputError(f"{option}: the hydrogen mass factor must be a number above 1 (3: the usual; 1: off), "
                             f"got {factor!r}")
    factor = mass_factor(factor)
    if factor is None:
        return None
    if host is not None and host not in HMR_HOSTS:
        raise UserInputError(f"{option}: hydrogen mass repartitioning runs on the GROMACS host only (LAMMPS keeps "
                             f"one mass per atom type), not on {host}")
    if not constrained_xh:
        raise UserInputError(f"{option} needs the X-H bonds constrained (--constraints h-bonds): heavier hydrogens "
                             "with flexible X-H bonds do not allow a longer time step")
    return float(factor)
