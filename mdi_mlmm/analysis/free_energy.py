"""Alchemical free energies with alchemlyb: parsing, trimming, decorrelation, TI / MBAR / BAR.

Inputs are alchemlyb DataFrames: ``u_nk`` (reduced potentials of every sample at every
λ state, in kT) and ``dHdl`` (dU/dλ per λ component, in kT), with the ``temperature`` and
``energy_unit`` attrs alchemlyb sets. GROMACS ``dhdl.xvg`` files are read by alchemlyb
as they are; the LAMMPS host writes the same DataFrames itself
(:func:`mdi_mlmm.protocol.outputs.write_window_frames`; read back with :func:`read_window_frames`).

Sign convention: the windows run from state 0 (solute fully coupled to water) to the
last state (decoupled), so the estimators give ΔG_decouple = G_last − G_0 and the
hydration free energy is ΔG_hyd = −ΔG_decouple. Results are kcal/mol.

A split decoupling (:attr:`mdi_mlmm.protocol.plan.Plan.split_decoupling`, boundary state b) is estimated
by :func:`estimate_stages`: MBAR and BAR per stage (windows 0..b on states 0..b; windows b..N−1 on states
b..N−1), added; TI over all windows as before.
"""
from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .. import units
from ..protocol.outputs import DHDL_COLUMNS, WINDOW_INDEX, parse_state_label
from . import validate
from .results import Estimate, FreeEnergyEstimates

log = logging.getLogger(__name__)

#: windows whose numbers of uncorrelated samples differ by more than this factor get their overlap matrix from equal
#: numbers (:func:`overlap_matrix`)
UNEQUAL_SAMPLES = 1.1


def _quiet_imports():
    import contextlib
    import io

    for name in ("pymbar", "alchemlyb"):  # before the imports: pymbar logs a JAX banner (WARNING) on import
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import alchemlyb  # noqa: F401
        import pymbar  # noqa: F401
    try:  # alchemlyb logs through loguru
        from loguru import logger

        logger.disable("alchemlyb")
    except ImportError:  # pragma: no cover
        pass


def read_xvg(path: Path, temperature: float, state=None, schedule=None,
             samples: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(u_nk, dHdl) from one GROMACS ``dhdl.xvg`` (as alchemlyb parses it), after
    :func:`~.validate.read_xvg` has checked every line (alchemlyb would silently drop a damaged one).

    state: the plan's (coul, vdw) of this window; schedule: the plan's [(coul, vdw)] of all states.
    When given, every sample must be at ``state`` and the energies at exactly the ``schedule``'s states;
    samples: the number of samples of the finished window, when known.
    Raises :class:`~mdi_mlmm.errors.AnalysisError` naming the file and line of any damage."""
    x = validate.read_xvg(path, "GROMACS dH/dλ output of a λ window")
    data, lines = x.data, x.lines
    validate.check_time(path, data[:, 0], lines)
    validate.check_count(path, len(data), samples, lines[-1])
    _quiet_imports()
    from alchemlyb.parsing import gmx

    try:
        u, d = gmx.extract_u_nk(str(path), T=temperature), gmx.extract_dHdl(str(path), T=temperature)
    except Exception as exc:
        raise validate.damaged(path, f"alchemlyb could not parse it ({type(exc).__name__}: {exc})") from exc
    for df, what in ((u, "u_nk"), (d, "dH/dλ")):
        if len(df) != len(data):
            raise validate.damaged(path, f"alchemlyb read {len(df)} {what} rows of {len(data)} data lines")
    levels = [n for n in u.index.names if n != "time"]
    sampled = np.column_stack([u.index.get_level_values(n).to_numpy(dtype=float) for n in levels])
    states_line = next((x.name_lines[j] for j, n in enumerate(x.names) if " to " in n), None)
    # the sampled state is stated once, in the subtitle ("... state 1: (coul-lambda, vdw-lambda) = (1.0000, 0.0000)")
    own_line = x.subtitle_line or lines[0]
    validate.check_lambdas(path, sampled, [own_line] * len(lines), sampled[0] if state is None else state,
                           list(u.columns) if schedule is not None else None, schedule, states_line)
    return u, d


def read_window_frames(u_nk_csv: Path, dhdl_csv: Path, temperature: float, state=None, schedule=None,
                       samples: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(u_nk, dHdl) from the CSV pair the LAMMPS host writes, shaped exactly like alchemlyb's
    GROMACS parser output: MultiIndex (time, coul-lambda, vdw-lambda), columns = state tuples
    (u_nk) or the λ components ``coul``, ``vdw`` (dHdl), values in kT, attrs temperature + energy_unit='kT'.

    Every line is checked (:mod:`.validate`): complete rows of finite numbers, the expected columns,
    increasing times, the same samples in both files, one λ state per window. state: the plan's
    (coul, vdw) of this window; schedule: the plan's [(coul, vdw)] of all states (the u_nk columns
    must be these); samples: the number of samples of the finished window, when known. Raises :class:`~mdi_mlmm.errors.AnalysisError` naming the file and line of any damage."""
    idx = list(WINDOW_INDEX)
    u = validate.read_csv(u_nk_csv, "u_nk of a LAMMPS λ window", required=idx)
    d = validate.read_csv(dhdl_csv, "dH/dλ of a LAMMPS λ window", required=idx + list(DHDL_COLUMNS), exact=True)
    states = []
    for c in u.columns:
        if c in idx:
            continue
        st = parse_state_label(c)
        if st is None or len(st) != 2:
            raise validate.damaged(u_nk_csv, f"column {c!r} is not a λ state '(coul,vdw)'", 1)
        states.append(st)
    if not states:
        raise validate.damaged(u_nk_csv, "no λ state columns '(coul,vdw)'", 1)
    lines = list(range(2, len(u) + 2))
    validate.check_time(u_nk_csv, u["time"].to_numpy(), lines)
    validate.check_time(dhdl_csv, d["time"].to_numpy(), list(range(2, len(d) + 2)))
    if len(u) != len(d):
        short, n, other, m = (dhdl_csv, len(d), u_nk_csv, len(u)) if len(d) < len(u) else (u_nk_csv, len(u), dhdl_csv, len(d))
        raise validate.damaged(short, f"ends after {n} samples, {Path(other).name} has {m} (rows lost)", n + 1)
    dt = np.nonzero(np.abs(u["time"].to_numpy() - d["time"].to_numpy()) > 1e-9)[0]
    if len(dt):
        raise validate.damaged(dhdl_csv, f"time {float(d['time'].iloc[dt[0]])!r} ps, but {Path(u_nk_csv).name} has "
                                         f"{float(u['time'].iloc[dt[0]])!r} ps on that line", int(dt[0]) + 2)
    validate.check_count(u_nk_csv, len(u), samples, lines[-1])
    own = u[idx[1:]].to_numpy()
    validate.check_lambdas(u_nk_csv, own, lines, own[0] if state is None else state, states, schedule, 1)
    validate.check_lambdas(dhdl_csv, d[idx[1:]].to_numpy(), lines, own[0] if state is None else state)
    # the λ values of the index and of the labels are the floats the window wrote (exact decimals,
    # :mod:`mdi_mlmm.protocol.outputs`), so that estimators find each window's own state by value
    u = u.set_index(idx)
    u.columns = states
    d = d.set_index(idx)[list(DHDL_COLUMNS)]
    for df in (u, d):
        df.attrs = {"temperature": float(temperature), "energy_unit": "kT"}
    return u, d


def preprocess(u_nk: pd.DataFrame, dhdl: pd.DataFrame, equil_fraction: float = 0.1):
    """Drop the first ``equil_fraction`` of each window, then decorrelate (alchemlyb, 'dE' method
    for u_nk, the total dH/dλ for dHdl). Returns (u_nk, dHdl, info)."""
    _quiet_imports()
    from alchemlyb.preprocessing import decorrelate_dhdl, decorrelate_u_nk, slicing

    t = u_nk.index.get_level_values("time")
    t0 = t.min() + equil_fraction * (t.max() - t.min())
    u_cut = slicing(u_nk, lower=t0)
    d_cut = slicing(dhdl, lower=t0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            u_dec = decorrelate_u_nk(u_cut, method="dE", remove_burnin=False)
            d_dec = decorrelate_dhdl(d_cut, remove_burnin=False)
        except Exception:  # too few samples to estimate g: keep all
            u_dec, d_dec = u_cut, d_cut
    info = {"samples": int(len(u_nk)), "after_trim": int(len(u_cut)), "uncorrelated_u_nk": int(len(u_dec)),
            "uncorrelated_dhdl": int(len(d_dec)), "trim_time_ps": float(t0)}
    return u_dec, d_dec, info


def estimate(u_nk_list: Sequence[pd.DataFrame], dhdl_list: Sequence[pd.DataFrame],
             temperature: float) -> FreeEnergyEstimates:
    """ΔG_decouple by TI (trapezoid), MBAR and BAR, in kcal/mol, with uncertainties, MBAR's overlap
    matrix and the fitted alchemlyb estimators. An estimator that fails is logged and gives NaN."""
    _quiet_imports()
    from alchemlyb import concat
    from alchemlyb.estimators import TI

    kT = units.kT_kcal(temperature)
    d_all = concat(list(dhdl_list))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ti = TI().fit(d_all)
        ti_dg = Estimate(float(ti.delta_f_.iloc[0, -1]) * kT, float(ti.d_delta_f_.iloc[0, -1]) * kT)
    mbar_dg, bar_dg, overlap, mbar = _mbar_bar(list(u_nk_list), kT)
    return FreeEnergyEstimates(TI=ti_dg, MBAR=mbar_dg, BAR=bar_dg, overlap=overlap, ti=ti, mbar=mbar)


def _mbar_bar(frames: Sequence[pd.DataFrame], kT: float):
    """(MBAR ΔG, BAR ΔG, overlap matrix, fitted MBAR) from the last state to the first of the windows' u_nk frames,
    kcal/mol; the matrix at equal samples per window (:func:`overlap_matrix`); an estimator that fails is logged and
    gives NaN (and None for the matrix and the estimator)."""
    from alchemlyb import concat
    from alchemlyb.estimators import BAR, MBAR

    u_all = concat(list(frames))

    nan = Estimate(float("nan"), float("nan"))
    mbar = overlap = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mbar = MBAR().fit(u_all)
            mbar_dg = Estimate(float(mbar.delta_f_.iloc[0, -1]) * kT, float(mbar.d_delta_f_.iloc[0, -1]) * kT)
        except Exception as exc:
            log.warning("MBAR failed: %s", exc)
            mbar, mbar_dg = None, nan
        try:
            bar = BAR().fit(u_all)
            # alchemlyb gives BAR errors between neighbours only: add them in quadrature
            dd = bar.d_delta_f_.to_numpy()
            err = float(np.sqrt(sum(dd[i, i + 1] ** 2 for i in range(len(dd) - 1))))
            bar_dg = Estimate(float(bar.delta_f_.iloc[0, -1]) * kT, err * kT)
        except Exception as exc:
            log.warning("BAR failed: %s", exc)
            bar_dg = nan
    if mbar is not None:
        overlap = overlap_matrix(frames, mbar)
    return mbar_dg, bar_dg, overlap, mbar


def overlap_matrix(frames: Sequence[pd.DataFrame], mbar=None) -> Optional[list]:
    """MBAR's overlap matrix of the windows' decorrelated u_nk frames (one window per state, in order) at equal
    numbers of samples per window. The matrix depends on the samples per state (O_ij = Σ_n W_ni W_nj N_j), not
    only on how the states' distributions overlap: windows whose uncorrelated samples differ many-fold (a longer
    window, or a shorter correlation time) move their neighbours' overlaps away from what the distributions give
    (the ethanol endpoint legs, 78 – 2251 samples per window: 0.025 – 0.028 from all samples, 0.17 – 0.21 at equal
    numbers). When the numbers differ by more than :data:`UNEQUAL_SAMPLES`, each window is thinned to the smallest
    number, evenly over its time, and MBAR refitted for the matrix alone; otherwise the matrix of ``mbar`` (the fit
    on every sample; None: fitted here). None when the fit fails. ΔG and its σ use every sample in any case."""
    _quiet_imports()
    from alchemlyb import concat
    from alchemlyb.estimators import MBAR

    n = [len(df) for df in frames]
    if max(n) > UNEQUAL_SAMPLES * min(n):
        frames, mbar = [df.iloc[np.unique(np.linspace(0, len(df) - 1, min(n)).round().astype(int))]
                        for df in frames], None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mbar is None:
                mbar = MBAR().fit(concat(list(frames)))
            return np.asarray(mbar.overlap_matrix).tolist()
    except Exception as exc:
        log.warning("MBAR overlap matrix at equal samples per window failed: %s", exc)
        return None


def stage_frames(u_nk_list: Sequence[pd.DataFrame], boundary: int) -> tuple[list, list]:
    """The u_nk frames of the two stages of a decoupling split at state ``boundary`` (b): windows 0..b with their
    columns 0..b, and windows b..N−1 with their columns b..N−1 (a stage-2 window's file holds only those; window
    b, run with the full topology, gives both stages its samples)."""
    n = len(u_nk_list[boundary].columns)
    first = [u.iloc[:, :boundary + 1] for u in u_nk_list[:boundary + 1]]
    second = [u.iloc[:, len(u.columns) - (n - boundary):] for u in u_nk_list[boundary:]]
    return first, second


def estimate_stages(u_nk_list: Sequence[pd.DataFrame], dhdl_list: Sequence[pd.DataFrame], temperature: float,
                    boundary: int) -> FreeEnergyEstimates:
    """ΔG_decouple of a decoupling split at state ``boundary`` (b; :func:`stage_frames`): MBAR and BAR of each
    stage, added, σ in quadrature. Window b's samples enter both stages, so the two stage errors are not
    strictly independent (σ in quadrature neglects that correlation; b is one window of N). TI (trapezoid) runs
    over all windows as unsplit: a stage-2 window's dH/dλ_coul (zero there: its charges are not perturbed) has
    Δλ_coul = 0 on every interval it borders, so it does not enter. ``stages`` holds each stage's estimates
    (``overlap``: its MBAR overlap matrix); the total's ``overlap`` is None."""
    _quiet_imports()
    from alchemlyb import concat
    from alchemlyb.estimators import TI

    kT = units.kT_kcal(temperature)
    stages = []
    for k, frames in enumerate(stage_frames(u_nk_list, boundary)):
        mbar_dg, bar_dg, overlap, mbar = _mbar_bar(frames, kT)
        first = 0 if k == 0 else boundary
        stages.append(FreeEnergyEstimates(TI=Estimate(float("nan"), float("nan")), MBAR=mbar_dg, BAR=bar_dg,
                                          overlap=overlap, mbar=mbar,
                                          states=list(range(first, first + len(frames[0].columns)))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ti = TI().fit(concat(list(dhdl_list)))
    ti_dg = Estimate(float(ti.delta_f_.iloc[0, -1]) * kT, float(ti.d_delta_f_.iloc[0, -1]) * kT)
    total = {k: Estimate(sum(getattr(s, k).value for s in stages), math.sqrt(sum(getattr(s, k).error ** 2
                                                                                  for s in stages)))
             for k in ("MBAR", "BAR")}
    return FreeEnergyEstimates(TI=ti_dg, MBAR=total["MBAR"], BAR=total["BAR"], overlap=None, ti=ti, mbar=None,
                               stages=tuple(stages), boundary=boundary)


def convergence(u_nk_list, temperature: float, num: int = 5, boundary: int | None = None):
    """Forward/backward ΔG (kcal/mol) over growing fractions of the data (MBAR). ``boundary``: a split
    decoupling's boundary state: each stage's (:func:`stage_frames`), added (errors in quadrature)."""
    _quiet_imports()
    from alchemlyb.convergence import forward_backward_convergence

    parts = [list(u_nk_list)] if boundary is None else stage_frames(u_nk_list, boundary)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # bounded solver effort: with poor overlap MBAR would otherwise iterate 10^4 times per point
        dfs = [forward_backward_convergence(p, "MBAR", num=num, maximum_iterations=500) for p in parts]
    df = dfs[0].copy()
    for other in dfs[1:]:
        for c in ("Forward", "Backward"):
            df[c] = df[c] + other[c]
        for c in ("Forward_Error", "Backward_Error"):
            df[c] = np.sqrt(df[c] ** 2 + other[c] ** 2)
    kT = units.kT_kcal(temperature)
    for c in ("Forward", "Forward_Error", "Backward", "Backward_Error"):
        df[c] = df[c] * kT
    df.attrs = {"temperature": temperature, "energy_unit": "kcal/mol"}
    return df
