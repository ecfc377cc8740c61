"""Reorganization energy ΔG_reorg = ⟨E_ML⟩_water − ⟨E_ML⟩_gas with autocorrelation-aware errors.

E_ML series are absolute ML energies (kcal/mol) sampled along a trajectory. The standard
error of a mean uses the statistical inefficiency g (pymbar's timeseries): σ_mean = s·√(g/N).
"""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from ..errors import AnalysisError
from ..protocol.outputs import E_ML_HEADER
from . import validate
from .results import MeanEstimate, Reorganization  # noqa: F401  (MeanEstimate: re-exported)


def read_e_ml(path) -> np.ndarray:
    """The E_ML column (kcal/mol, (n,)) of a file written by :func:`~mdi_mlmm.protocol.outputs.write_e_ml`.

    Raises :class:`AnalysisError` naming the file (and line) if it is missing, empty, cut short, has
    other columns than ``time_ps,e_ml_kcal_mol``, or holds a non-numeric, NaN or inf value or a time
    that does not increase."""
    df = validate.read_csv(path, "E_ML series", required=E_ML_HEADER.split(","), exact=True)
    validate.check_time(path, df["time_ps"].to_numpy(), range(2, len(df) + 2))
    return df["e_ml_kcal_mol"].to_numpy()


def statistical_inefficiency(x: np.ndarray) -> float:
    from .free_energy import _quiet_imports

    _quiet_imports()   # pymbar's import banner (the logger levels set before it is imported)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pymbar import timeseries

        try:
            return float(max(1.0, timeseries.statistical_inefficiency(np.asarray(x, dtype=float))))
        except Exception:
            return 1.0


def mean_with_error(series, equil_fraction: float = 0.1) -> MeanEstimate:
    """Mean and its standard error of ``series`` after dropping the first ``equil_fraction``."""
    x = np.asarray(series, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 4:
        raise AnalysisError(f"need at least 4 E_ML samples for a mean with an error, got {len(x)}")
    x = x[int(equil_fraction * len(x)):]
    g = statistical_inefficiency(x)
    s = float(np.std(x, ddof=1))
    return MeanEstimate(mean=float(np.mean(x)), error=s * float(np.sqrt(g / len(x))), std=s, n=len(x), g=g)


def reorganization(water, gas, equil_fraction: float = 0.1) -> Reorganization:
    """ΔG_reorg (kcal/mol) = ⟨E_ML⟩_water − ⟨E_ML⟩_gas, errors added in quadrature."""
    w = mean_with_error(water, equil_fraction)
    g = mean_with_error(gas, equil_fraction)
    return Reorganization(w.mean - g.mean, float(np.hypot(w.error, g.error)), water=w, gas=g)
