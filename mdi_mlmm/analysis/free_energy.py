"""Alchemical free energies with alchemlyb: parsing, trimming, decorrelation, TI / MBAR / BAR.

Inputs are alchemlyb DataFrames: ``u_nk`` (reduced potentials of every sample at every
λ state, in kT) and ``dHdl`` (dU/dλ per λ component, in kT), with the ``temperature`` and
``energy_unit`` attrs alchemlyb sets. GROMACS ``dhdl.xvg`` files are read by alchemlyb
as they are; the LAMMPS host writes the same DataFrames itself (see
:func:`read_window_frames`).

Sign convention: the windows run from state 0 (solute fully coupled to water) to the
last state (decoupled), so the estimators give ΔG_decouple = G_last − G_0 and the
hydration free energy is ΔG_hyd = −ΔG_decouple. Results are kcal/mol.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import units
from ..errors import AnalysisError

log = logging.getLogger(__name__)


def _quiet_imports():
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import alchemlyb  # noqa: F401  (pymbar prints a JAX banner on import)
        import pymbar  # noqa: F401
    for name in ("pymbar", "alchemlyb"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:  # alchemlyb logs through loguru
        from loguru import logger

        logger.disable("alchemlyb")
    except ImportError:  # pragma: no cover
        pass


def read_xvg(path: Path, temperature: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(u_nk, dHdl) from one GROMACS ``dhdl.xvg`` (as alchemlyb parses it)."""
    _quiet_imports()
    from alchemlyb.parsing import gmx

    try:
        return gmx.extract_u_nk(str(path), T=temperature), gmx.extract_dHdl(str(path), T=temperature)
    except Exception as exc:
        raise AnalysisError(f"alchemlyb could not parse {path}: {exc}") from exc


def read_window_frames(u_nk_csv: Path, dhdl_csv: Path, temperature: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(u_nk, dHdl) from the CSV pair the LAMMPS host writes, shaped exactly like alchemlyb's
    GROMACS parser output: MultiIndex (time, coul-lambda, vdw-lambda), columns = state tuples
    (u_nk) or the λ components ``coul``, ``vdw`` (dHdl), values in kT, attrs temperature + energy_unit='kT'."""
    u = pd.read_csv(u_nk_csv)
    d = pd.read_csv(dhdl_csv)
    idx = ["time", "coul-lambda", "vdw-lambda"]
    states = [tuple(float(x) for x in c.strip("()").split(",")) for c in u.columns if c not in idx]
    # λ values in the index are written at full precision; column labels may be shorter: snap
    # each index value to the state value it stands for, so that estimators find their own state
    for j, level in enumerate(("coul-lambda", "vdw-lambda")):
        known = np.array(sorted({st[j] for st in states}))
        for df in (u, d):
            vals = df[level].to_numpy(dtype=float)
            k = np.abs(vals[:, None] - known[None, :]).argmin(axis=1)
            if len(known) and np.max(np.abs(known[k] - vals)) < 1e-5:
                df[level] = known[k]
    u = u.set_index(idx)
    u.columns = states
    d = d.rename(columns={"coul-lambda": "coul", "vdw-lambda": "vdw"}) if "coul" not in d.columns else d
    d = d.set_index(idx)[["coul", "vdw"]]
    for df in (u, d):
        df.attrs = {"temperature": float(temperature), "energy_unit": "kT"}
    return u, d


def write_window_frames(u_nk: pd.DataFrame, dhdl: pd.DataFrame, u_nk_csv: Path, dhdl_csv: Path):
    """Inverse of :func:`read_window_frames` (atomic writes)."""
    u = u_nk.copy()
    u.columns = ["(" + ",".join(repr(float(x)) for x in c) + ")" for c in u.columns]
    d = dhdl.copy()
    for df, path in ((u, Path(u_nk_csv)), (d, Path(dhdl_csv))):
        tmp = path.with_suffix(".tmp")
        df.reset_index().to_csv(tmp, index=False)
        tmp.replace(path)


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


def estimate(u_nk_list: Sequence[pd.DataFrame], dhdl_list: Sequence[pd.DataFrame], temperature: float) -> dict:
    """ΔG_decouple by TI (trapezoid), MBAR and BAR, in kcal/mol, with uncertainties.

    Returns {"TI": (dG, err), "MBAR": ..., "BAR": ..., "overlap": matrix|None, "dhdl_mean": ...}.
    """
    _quiet_imports()
    from alchemlyb import concat
    from alchemlyb.estimators import BAR, MBAR, TI

    kT = units.kT_kcal(temperature)
    u_all = concat(list(u_nk_list))
    d_all = concat(list(dhdl_list))
    out: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ti = TI().fit(d_all)
        out["TI"] = (float(ti.delta_f_.iloc[0, -1]) * kT, float(ti.d_delta_f_.iloc[0, -1]) * kT)
        try:
            mbar = MBAR().fit(u_all)
            out["MBAR"] = (float(mbar.delta_f_.iloc[0, -1]) * kT, float(mbar.d_delta_f_.iloc[0, -1]) * kT)
            out["overlap"] = np.asarray(mbar.overlap_matrix).tolist()
            out["_mbar"] = mbar
        except Exception as exc:
            log.warning("MBAR failed: %s", exc)
            out["MBAR"] = (float("nan"), float("nan"))
            out["overlap"] = None
        try:
            bar = BAR().fit(u_all)
            # alchemlyb gives BAR errors between neighbours only: add them in quadrature
            dd = bar.d_delta_f_.to_numpy()
            err = float(np.sqrt(sum(dd[i, i + 1] ** 2 for i in range(len(dd) - 1))))
            out["BAR"] = (float(bar.delta_f_.iloc[0, -1]) * kT, err * kT)
        except Exception as exc:
            log.warning("BAR failed: %s", exc)
            out["BAR"] = (float("nan"), float("nan"))
    out["_ti"] = ti
    return out


def convergence(u_nk_list, temperature: float, num: int = 5):
    """Forward/backward ΔG (kcal/mol) over growing fractions of the data (MBAR)."""
    _quiet_imports()
    from alchemlyb.convergence import forward_backward_convergence

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # bounded solver effort: with poor overlap MBAR would otherwise iterate 10^4 times per point
        df = forward_backward_convergence(list(u_nk_list), "MBAR", num=num, maximum_iterations=500)
    kT = units.kT_kcal(temperature)
    for c in ("Forward", "Forward_Error", "Backward", "Backward_Error"):
        df[c] = df[c] * kT
    df.attrs = {"temperature": temperature, "energy_unit": "kcal/mol"}
    return df
