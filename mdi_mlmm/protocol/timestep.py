"""The one time-step policy of every MD run (``md``, ``hydration``, the Python API).

The fastest motion is the X–H bond stretch (about 3000–3700 cm⁻¹, a period of 9–11 fs) and velocity
Verlet needs about 10 steps per period to conserve energy; with X–H bonds constrained the fastest motions
left are bends near 1600 cm⁻¹ (about 20 fs).
"""
from __future__ import annotations

import sys

from ..errors import UserInputError

#: fs; (warn above, refuse above) for flexible and for constrained X–H bonds
DT_LIMITS_FLEXIBLE = (1.0, 2.0)
DT_LIMITS_CONSTRAINED = (2.0, 4.0)

#: the X–H bond treatments of an ML/MM ``md`` or ``hydration`` run (``--constraints``): ``none`` (every bond
#: flexible, the default) or ``h-bonds`` (every X–H bond constrained at its force-field length b0, the ML
#: region's included; both hosts: GROMACS LINCS, LAMMPS fix rattle/shake)
CONSTRAINTS = ("none", "h-bonds")


def check_timestep(dt_fs: float, *, constrained_xh: bool, allow_large: bool, stream=None, option: str = "--dt") -> None:
    """Refuse (:class:`UserInputError`) or warn (one ``warning:`` line on ``stream``, default stderr)
    about a time step ``dt_fs`` (fs) that is unsafe for X–H bonds (limits above). option: the
    command-line option the messages name (``--leg-dt`` for the endpoint legs)."""
    warn_above, refuse_above = DT_LIMITS_CONSTRAINED if constrained_xh else DT_LIMITS_FLEXIBLE
    bonds = "constrained X-H bonds" if constrained_xh else "flexible X-H bonds (about 10 fs period)"
    if dt_fs > refuse_above and not allow_large:
        raise UserInputError(f"{option} {dt_fs:g} fs is above the {refuse_above:g} fs limit for {bonds}; "
                             f"use a smaller {option} or pass --allow-large-dt")
    if dt_fs > warn_above:
        print(f"warning: {option} {dt_fs:g} fs is above {warn_above:g} fs, large for {bonds}: expect energy drift "
              f"or instability", file=stream or sys.stderr, flush=True)
