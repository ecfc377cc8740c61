"""Reading MD output with MDAnalysis for the protein–ligand analyses (``analyze-md``, ``mmgbsa``): one
place that opens a topology + trajectory with one-line errors, selects atoms (an empty selection is an
error), and makes the solute whole across periodic boundaries with the ligand next to the protein.

Positions are MDAnalysis's: Å; times ps.
"""
from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

import numpy as np

from ..errors import UserInputError

log = logging.getLogger(__name__)


def _quiet():
    logging.getLogger("MDAnalysis").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore", module="MDAnalysis")


def _check_file(path, what: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserInputError(f"{what} {path} does not exist")
    return path


def open_universe(topology, trajectories: Sequence = ()):
    """An MDAnalysis Universe of ``topology`` (.tpr, .gro, .pdb, .prmtop, LAMMPS data, ...) with the
    ``trajectories`` (.xtc, .trr, .dcd, ...; read one after the other); one-line errors for a missing file,
    an unreadable one or topology/trajectory atom counts that differ."""
    import MDAnalysis as mda

    _quiet()
    top = _check_file(topology, "topology")
    trajs = [_check_file(t, "trajectory") for t in trajectories]
    try:
        u = mda.Universe(top)
    except Exception as exc:  # noqa: BLE001 - any parser failure is the user's file
        raise UserInputError(f"cannot read topology {top}: {' '.join(str(exc).split())}") from None
    from MDAnalysis.coordinates.core import get_reader_for

    for t in trajs:
        try:
            n = get_reader_for(t)(t).n_atoms
        except Exception as exc:  # noqa: BLE001
            raise UserInputError(f"cannot read trajectory {t}: {' '.join(str(exc).split())}") from None
        if n != u.atoms.n_atoms:
            raise UserInputError(f"trajectory {t} has {n} atoms but topology {top} has {u.atoms.n_atoms}: "
                                 "they are not of the same system")
    if trajs:
        try:
            u.load_new(trajs if len(trajs) > 1 else trajs[0])
        except Exception as exc:  # noqa: BLE001
            raise UserInputError(f"cannot read {', '.join(trajs)}: {' '.join(str(exc).split())}") from None
    return u


def select(atoms, selection: str, what: str, *, required: bool = True):
    """``atoms.select_atoms(selection)``; an invalid or (when ``required``) empty selection is a one-line
    error naming ``what`` (e.g. "--ligand")."""
    try:
        ag = atoms.select_atoms(selection)
    except Exception as exc:  # noqa: BLE001 - MDAnalysis raises SelectionError, ValueError, ...
        raise UserInputError(f"{what} {selection!r} is not a valid MDAnalysis selection: "
                             f"{' '.join(str(exc).split())}") from None
    if required and ag.n_atoms == 0:
        raise UserInputError(f"{what} {selection!r} selects no atoms")
    return ag


def add_bonds(u, bonds: np.ndarray) -> None:
    """Give ``u`` the bonds (pairs of indices into ``u.atoms``) unless its topology has bonds for those atoms
    already (a .gro, or a .pdb with CONECT records for some residues only, has none): needed to make
    molecules whole."""
    bonds = np.asarray(bonds, dtype=int).reshape(-1, 2)
    if not len(bonds):
        return
    pairs = [tuple(map(int, b)) for b in bonds]
    if not hasattr(u, "bonds"):
        u.add_TopologyAttr("bonds", pairs)
    elif not len(u.atoms[np.unique(bonds)].bonds):
        u.add_bonds(pairs)


def ensure_bonds(u, solute) -> None:
    """Bonds for the solute: the topology's, else guessed from distances (van der Waals radii, minimum
    image) within the solute."""
    if hasattr(u, "bonds") and len(solute.bonds):
        return
    from MDAnalysis.guesser.default_guesser import DefaultGuesser

    guesser = DefaultGuesser(u, box=u.dimensions)
    bonds = guesser.guess_bonds(solute, solute.positions) if solute.n_atoms else ()
    idx = solute.indices
    add_bonds(u, np.array([(idx[a], idx[b]) for a, b in bonds], dtype=int).reshape(-1, 2))


class NearestImage:
    """MDAnalysis on-the-fly transformation: every fragment of ``movable`` is translated by a box vector
    so that its centre of geometry is the periodic image nearest the centre of ``anchor`` (e.g. the
    ligand next to the protein). The fragments must already be whole (``unwrap`` first)."""

    def __init__(self, anchor, movable):
        self.anchor = anchor
        self.fragments = [f.intersection(movable) for f in movable.fragments]
        self.parallelizable = False

    def __call__(self, ts):
        if ts.dimensions is None:
            return ts
        from MDAnalysis.lib.distances import minimize_vectors

        c = self.anchor.center_of_geometry()
        for f in self.fragments:
            cf = f.center_of_geometry()
            d = minimize_vectors((cf - c)[None, :], ts.dimensions)[0]
            f.positions = f.positions + (c + d - cf)
        return ts


def whole_solute(u, solute, anchor, movable=None) -> None:
    """Add to ``u``'s trajectory the transformations that make every molecule of ``solute`` whole (by
    its bonds) and bring the fragments of ``movable`` (default: the solute outside ``anchor``) to the
    periodic image nearest ``anchor``. Nothing is added when the trajectory has no box."""
    if u.trajectory.ts.dimensions is None:
        return
    from MDAnalysis import transformations as trans

    ensure_bonds(u, solute)
    movable = (solute - anchor) if movable is None else movable
    steps = [trans.unwrap(solute)]
    # a multi-chain protein: its own chains next to its first one too
    steps.append(NearestImage(anchor.fragments[0], anchor - anchor.fragments[0]) if len(anchor.fragments) > 1
                 else None)
    if movable.n_atoms:
        steps.append(NearestImage(anchor, movable))
    u.trajectory.add_transformations(*[s for s in steps if s is not None])


def frame_slice(n_frames: int, start: Optional[int], stop: Optional[int], step: Optional[int]) -> range:
    """The frames read: Python slice semantics over ``n_frames``; an empty result is a one-line error."""
    r = range(n_frames)[slice(start, stop, step or 1)]
    if len(r) == 0:
        raise UserInputError(f"no frames between start={start} stop={stop} step={step} "
                             f"(the trajectory has {n_frames})")
    return r


#: the topology and trajectory ``mdi-mlmm md`` writes, per host (first match wins)
MD_RUN_FILES = (("md.tpr", "md.xtc"), ("topology.gro", "traj.dcd"))


def md_run_files(run_dir) -> tuple:
    """(topology, [trajectory]) of an ``mdi-mlmm md`` output directory: GROMACS's md.tpr + md.xtc, or
    the LAMMPS host's topology.gro + traj.dcd; one line when there is neither."""
    d = os.fspath(run_dir)
    if not os.path.isdir(d):
        raise UserInputError(f"run directory {d} does not exist")
    for top, traj in MD_RUN_FILES:
        if os.path.isfile(os.path.join(d, top)) and os.path.isfile(os.path.join(d, traj)):
            return os.path.join(d, top), [os.path.join(d, traj)]
    raise UserInputError(f"{d} has no MD trajectory of mdi-mlmm md ("
                         + " or ".join(f"{a} + {b}" for a, b in MD_RUN_FILES) + "): give --top and --traj")
