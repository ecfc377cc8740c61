"""The λ schedule of the decoupling leg: (coulomb λ, vdW λ) per state, state 0 fully coupled.

λ = 0: the solute interacts fully with its environment; λ = 1: decoupled. Charges are switched
off first, then the Lennard-Jones terms with soft core. Defined here, in code; hosts render a
schedule into their own input (the GROMACS ``lambda`` mdp template gets ``coul-lambdas`` and
``vdw-lambdas`` from it; the LAMMPS windows evaluate every state's energy themselves).

>>> len(FREESOLV), FREESOLV[0], FREESOLV[-1]
(20, (0.0, 0.0), (1.0, 1.0))
>>> decoupling_schedule(5)
[(0.0, 0.0), (1.0, 0.0), (1.0, 0.3333333333333333), (1.0, 0.6666666666666666), (1.0, 1.0)]

Such a schedule ("decharge, then decouple") splits exactly into two stages at its boundary state b (charges
off, LJ untouched: (1, 0)): stage 1 = states 0..b (charges), stage 2 = states b..N−1 (LJ). In stage 2 the
solute's charges are zero at every state, so a GROMACS window there can run with them zero in both
topology states (``couple-lambda0 = vdw``: charges not perturbed, one PME grid instead of two) and its
energies restricted to the states b..N−1 (:func:`stage_boundary`, :func:`window_states`; docs/gromacs.md).

>>> stage_boundary(FREESOLV), window_states(FREESOLV, 7, 4), window_states(FREESOLV, 4, 4)
(4, range(4, 20), range(0, 20))
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



def stage_boundary(schedule) -> Optional[int]:
    """The boundary state b of a "decharge, then decouple" ``schedule`` [(coul λ, vdw λ)]: (1, 0), with vdw λ = 0
    in states 0..b, coul λ = 1 in states b..N−1 and at least one state after b; None when the schedule has
    another shape (then it cannot be split in two stages)."""
    sched = [(float(c), float(v)) for c, v in schedule]
    for b, (c, v) in enumerate(sched):
        if c == 1.0 and v == 0.0:
            ok = b >= 1 and b < len(sched) - 1 and all(vv == 0.0 for _, vv in sched[:b]) \
                and all(cc == 1.0 for cc, _ in sched[b:])
            return b if ok else None
    return None


def window_states(schedule, state: int, boundary: Optional[int]) -> range:
    """The states whose energies window ``state`` evaluates: all, or with a split at ``boundary`` (None: not
    split) the stage-2 states boundary..N−1 for a window after the boundary (the boundary window itself runs
    with the full topology and evaluates all states: it belongs to both stages)."""
    n = len(schedule)
    if boundary is not None and int(state) > int(boundary):
        return range(int(boundary), n)
    return range(n)
