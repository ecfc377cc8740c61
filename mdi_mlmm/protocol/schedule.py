"""The λ schedule of the decoupling leg: (coulomb λ, vdW λ) per state, state 0 fully coupled.

λ = 0: the solute interacts fully with its environment; λ = 1: decoupled. Charges are switched
off first, then the Lennard-Jones terms with soft core. Defined here, in code; hosts render a
schedule into their own input (the GROMACS ``lambda`` mdp template gets ``coul-lambdas`` and
``vdw-lambdas`` from it; the LAMMPS windows evaluate every state's energy themselves).

>>> len(FREESOLV), FREESOLV[0], FREESOLV[-1]
(20, (0.0, 0.0), (1.0, 1.0))
>>> decoupling_schedule(5)
[(0.0, 0.0), (1.0, 0.0), (1.0, 0.3333333333333333), (1.0, 0.6666666666666666), (1.0, 1.0)]
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import UserInputError

#: FreeSolv's DG protocol (``prod.X.mdp``): 5 Coulomb states (its fep-lambdas), then 15 soft-core LJ states
FREESOLV: tuple[tuple[float, float], ...] = tuple(zip(
    (0.0, 0.25, 0.5, 0.75, 1.0) + (1.0,) * 15,
    (0.0,) * 5 + (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0),
))


def decoupling_schedule(windows: Optional[int] = None) -> list[tuple[float, float]]:
    """The schedule of ``windows`` states. None or 20: FreeSolv's 20 states; another N (at least 3):
    about N/4 evenly spaced Coulomb states, then evenly spaced soft-core LJ states."""
    if windows is None or windows == len(FREESOLV):
        return list(FREESOLV)
    # N windows: about a quarter switch the charges off (linear), the rest the soft-core LJ
    if windows < 3:
        raise UserInputError("--windows must be at least 3 (coupled, charges off, decoupled)")
    n_c = max(2, round(0.25 * windows))
    n_v = windows - n_c
    sched = [(float(c), 0.0) for c in np.linspace(0.0, 1.0, n_c)]
    sched += [(1.0, float(v)) for v in np.linspace(0.0, 1.0, n_v + 1)[1:]]
    return sched

