"""ΔU = E_ML − E_MM,intra of the solute at the saved frames of an endpoint-route window.

Each window of an endpoint leg samples U_λ = U_0 + λ·ΔU (:mod:`mdi_mlmm.potentials.mixed`), so
the reduced potential of a sample x at every other λ_k needs only ΔU(x). This module reads a
window's trajectory, makes the solute whole (:class:`~mdi_mlmm.topology.pbc.WholeMaker`), evaluates
E_ML (one batched model call per ``batch`` frames) and E_MM,intra (:class:`~mdi_mlmm.potentials.mm_intra.MMIntra`)
and writes ``delta_u.csv``: ``time_ps,delta_u_kcal_mol,e_ml_kcal_mol,e_mm_intra_kcal_mol``.

Trajectory precision: use full-precision frames.

* GROMACS: ``.trr`` with ``nstxout`` = the sample interval. A mixed-precision mdrun keeps
  positions in float32 itself, so its ``.trr`` holds exactly the sampled positions. ``.xtc`` is
  refused: its 0.001 nm rounding moved ΔU by 0.10 kcal/mol rms per frame for ethanol in gas
  (ANI-2x vs GAFF; growing about as √N with the solute's atoms), noise that biases the exponential
  averages by about β·σ²/2 and is not needed.
* LAMMPS: DCD holds float32 Å of the double-precision run: an error ≤ 6e-8·|x| (3e-6 Å at
  50 Å), which changes ΔU by about |F|·δx·√N ≈ 1e-3 kcal/mol per frame for a drug-sized solute,
  far below kT (0.59 kcal/mol) and random in sign.

Units: times ps, positions Å, energies kcal/mol.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .. import files, units
from ..errors import AnalysisError, UserInputError
from . import validate

DELTA_U_HEADER = "time_ps,delta_u_kcal_mol,e_ml_kcal_mol,e_mm_intra_kcal_mol"
#: trajectory formats that hold positions in full (or float32) precision
FULL_PRECISION = (".trr", ".dcd", ".nc", ".ncdf", ".h5md")


def read_solute_frames(topology, trajectory, atoms: Sequence[int], bonds=None, *, start_ps: float = 0.0):
    """Times (F,) ps and whole solute positions (F, N, 3) Å of every frame of ``trajectory``
    (frames without positions, as a ``.trr`` may hold, are skipped; frames before ``start_ps`` too).

    topology: any file MDAnalysis reads for the system's atoms (``.gro``, ``.tpr``, a LAMMPS data
    file, ...); atoms: the solute's 0-based indices; bonds: pairs of positions in ``atoms`` (the
    whole-making tree; None: a minimum spanning tree of the first frame)."""
    import MDAnalysis as mda

    from ..topology.pbc import WholeMaker

    trajectory = Path(trajectory)
    if trajectory.suffix.lower() == ".xtc":
        raise UserInputError(f"{trajectory}: .xtc rounds positions to 0.001 nm, too coarse for ΔU = E_ML − E_MM; "
                             "write full-precision frames (GROMACS: nstxout → .trr)")
    if not trajectory.is_file():
        raise AnalysisError(f"no trajectory {trajectory}")
    try:
        u = mda.Universe(str(topology), str(trajectory))
    except Exception as exc:
        raise AnalysisError(f"cannot read {trajectory} with {topology}: {exc}") from exc
    idx = np.asarray(atoms, dtype=int)
    if idx.max() >= u.atoms.n_atoms:
        raise UserInputError(f"solute atom {idx.max()} beyond the {u.atoms.n_atoms} atoms of {trajectory}")
    wm = WholeMaker(len(idx), bonds)
    times, frames = [], []
    for ts in u.trajectory:
        if not ts.has_positions or ts.time < start_ps - 1e-9:
            continue
        cell = ts.triclinic_dimensions if ts.dimensions is not None else None
        pos = np.asarray(ts.positions[idx], dtype=np.float64)
        frames.append(wm.whole(pos, None if cell is None else np.asarray(cell, dtype=np.float64)))
        times.append(float(ts.time))
    if not frames:
        raise AnalysisError(f"{trajectory} holds no frames with positions")
    return np.asarray(times), np.stack(frames)


def evaluate(potential, mm, elements: Sequence, positions, *, batch: int = 64,
             progress: Optional[Callable[[int, int], None]] = None) -> tuple[np.ndarray, np.ndarray]:
    """E_ML and E_MM,intra (kcal/mol, two (F,) arrays) of F structures (F, N, 3) Å.

    potential: the ML :class:`~mdi_mlmm.potentials.base.Potential` (one ``compute_batch`` call per
    ``batch`` frames: ANI and the model server's client evaluate a batch at once); mm:
    :class:`~mdi_mlmm.potentials.mm_intra.MMIntra` of the same molecule, atoms in the same order."""
    pos = np.asarray(positions, dtype=np.float64)
    symbols = potential.check_elements(elements)
    from ..potentials.base import ATOMIC_NUMBER

    if [ATOMIC_NUMBER[s] for s in symbols] != [int(z) for z in mm.atomic_numbers]:
        raise UserInputError(f"the solute's elements do not match the MM topology ({mm.description})")
    n = len(pos)
    e_ml = np.empty(n)
    e_mm = np.empty(n)
    for a in range(0, n, max(1, int(batch))):
        b = min(n, a + max(1, int(batch)))
        r = potential.compute_batch(symbols, pos[a:b])
        e_ml[a:b] = np.asarray(r.energy, dtype=np.float64).reshape(b - a) * units.HARTREE_IN_KCAL_PER_MOL
        e_mm[a:b] = mm.energy(pos[a:b])
        if progress:
            progress(b, n)
    if not (np.all(np.isfinite(e_ml)) and np.all(np.isfinite(e_mm))):
        raise AnalysisError("E_ML or E_MM,intra is NaN/inf at some frame")
    return e_ml, e_mm


def write_delta_u(path, time_ps, e_ml, e_mm) -> Path:
    """Write ``delta_u.csv`` (atomically): time (ps), ΔU, E_ML, E_MM,intra (kcal/mol), one row per frame."""
    t, a, b = (np.asarray(x, dtype=float).ravel() for x in (time_ps, e_ml, e_mm))
    if not len(t) == len(a) == len(b):
        raise ValueError("time, E_ML and E_MM must have the same length")
    rows = "".join(f"{ti!r},{ai - bi!r},{ai!r},{bi!r}\n" for ti, ai, bi in zip(t.tolist(), a.tolist(), b.tolist()))
    return files.write_text(Path(path), DELTA_U_HEADER + "\n" + rows)


def read_delta_u(path) -> dict[str, np.ndarray]:
    """``delta_u.csv`` → {"time_ps", "delta_u", "e_ml", "e_mm_intra"} (kcal/mol, (F,) arrays).
    Raises :class:`AnalysisError` naming the file and line of any damage, or when ΔU ≠ E_ML − E_MM."""
    df = validate.read_csv(path, "ΔU samples of an endpoint window", required=DELTA_U_HEADER.split(","),
                           exact=True)
    lines = list(range(2, len(df) + 2))
    validate.check_time(path, df["time_ps"].to_numpy(), lines)
    d = df["delta_u_kcal_mol"].to_numpy()
    a, b = df["e_ml_kcal_mol"].to_numpy(), df["e_mm_intra_kcal_mol"].to_numpy()
    bad = np.nonzero(np.abs(d - (a - b)) > 1e-6 * np.maximum(1.0, np.abs(a)))[0]
    if len(bad):
        raise validate.damaged(path, "ΔU is not E_ML − E_MM,intra", int(bad[0]) + 2)
    return {"time_ps": df["time_ps"].to_numpy(), "delta_u": d, "e_ml": a, "e_mm_intra": b}


def window_delta_u(topology, trajectory, out_csv, *, potential, mm, atoms: Sequence[int], bonds=None,
                   start_ps: float = 0.0, batch: int = 64,
                   progress: Optional[Callable[[int, int], None]] = None) -> Path:
    """ΔU of one window: read ``trajectory`` (see :func:`read_solute_frames`), evaluate
    (:func:`evaluate`), write ``out_csv`` (:func:`write_delta_u`); returns its path. Elements are
    those of ``mm`` (the solute's topology)."""
    from ..potentials.base import SYMBOLS

    times, pos = read_solute_frames(topology, trajectory, atoms, bonds, start_ps=start_ps)
    if pos.shape[1] != mm.n_atoms:
        raise UserInputError(f"{len(atoms)} solute atoms but the MM topology has {mm.n_atoms} ({mm.description})")
    elements = [SYMBOLS[int(z)] for z in mm.atomic_numbers]
    e_ml, e_mm = evaluate(potential, mm, elements, pos, batch=batch, progress=progress)
    return write_delta_u(out_csv, times, e_ml, e_mm)
