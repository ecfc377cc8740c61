"""The endpoint route's free energies: ΔA_{MM→ML} legs by MBAR and BAR, and the cycle.

    ΔG_hyd(ML/MM) = ΔG_hyd(MM) + ΔA_{MM→ML}(water) − ΔA_{MM→ML}(gas)

Each leg samples U_λ = U_0 + λ·ΔU with ΔU = E_ML − E_MM,intra of the solute at λ_0 = 0 < ... <
λ_K = 1 (:mod:`mdi_mlmm.potentials.mixed`). The reduced potential of any sample x at state k is
u_k(x) = β·(U_0(x) + λ_k·ΔU(x)); the common β·U_0(x) cancels in every estimator, so the u_nk
DataFrames hold β·λ_k·(ΔU(x) − C), in alchemlyb's format (index ``time``, :data:`LAMBDA_LEVEL`;
one column per λ_k; attrs ``temperature``, ``energy_unit = 'kT'``). C, a constant of the leg (the
median ΔU of all its samples; ΔU carries the models' absolute energies, ~10⁵ kcal/mol), keeps
the numbers small; it adds exactly (λ_K − λ_0)·C = C to ΔA and is added back.

Each window's first ``equil_fraction`` of time is dropped, then samples are decorrelated
(alchemlyb, ``dE`` method: u_{k+1} − u_k ∝ ΔU). ⟨E_ML⟩ at λ = 1 comes from the same trimmed
window with an autocorrelation-aware error (:func:`.reorg.mean_with_error`); the reorganization
energy ⟨E_ML⟩_water − ⟨E_ML⟩_gas is shown separately and added, as on the direct route.

Units: kcal/mol (energies, ΔA, ΔG), ps, K. Inputs: :class:`WindowSamples` or the
``delta_u.csv`` files of :mod:`.delta_u` (:func:`read_leg`).
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from .. import units
from ..errors import AnalysisError
from .results import CombinedEstimate, Estimate, MeanEstimate, Reorganization, combine

log = logging.getLogger(__name__)

#: the λ level of the u_nk index (alchemlyb groups samples by the non-time levels)
LAMBDA_LEVEL = "ml-lambda"
#: a smallest neighbour overlap below this gets a warning (alchemlyb's and the literature's rule of thumb)
MIN_OVERLAP = 0.03
#: fewer uncorrelated samples than this in a window gets a warning
MIN_SAMPLES = 20
#: MBAR on the first and on the second half of the samples differing by more than this many
#: combined σ gets a warning (the windows have not sampled long enough for the σ to hold)
HALVES_SIGMA = 2.0
ESTIMATORS = ("MBAR", "BAR")


@dataclass(frozen=True)
class WindowSamples:
    """The samples of one window at ``lam``: times (ps), ΔU = E_ML − E_MM,intra and E_ML (kcal/mol), (F,)."""

    lam: float
    time_ps: np.ndarray
    delta_u: np.ndarray
    e_ml: Optional[np.ndarray] = None


@dataclass(frozen=True)
class LegEstimate:
    """ΔA_{MM→ML} of one phase (``water`` or ``gas``), kcal/mol.

    dA[name]: MBAR and BAR (BAR's σ: its neighbour errors in quadrature); overlap: MBAR's overlap
    matrix at equal samples per window (:func:`.free_energy.overlap_matrix`);
    e_ml: ⟨E_ML⟩ at λ = 1 (None without a λ = 1 window or E_ML); samples: per window
    (λ, frames, after trimming, uncorrelated); offset: C (kcal/mol); halves: MBAR's ΔA from the
    first and from the second half of every window's samples (a convergence check; None when too
    few samples); warnings: one line each."""

    phase: str
    lambdas: tuple
    temperature_K: float
    dA: dict
    overlap: Optional[list]
    min_neighbour_overlap: Optional[float]
    e_ml: Optional[MeanEstimate]
    samples: list
    offset: float
    halves: Optional[tuple] = None
    warnings: list = field(default_factory=list)
    mbar: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        return {"phase": self.phase, "lambdas": list(self.lambdas), "temperature_K": self.temperature_K,
                **{f"dA_{k}": v.to_json() for k, v in self.dA.items()}, "overlap_matrix": self.overlap,
                "min_neighbour_overlap": self.min_neighbour_overlap,
                "e_ml_lambda1": self.e_ml.asdict() if self.e_ml else None, "samples": self.samples,
                "offset_kcal_mol": self.offset,
                "dA_MBAR_halves": [h.to_json() for h in self.halves] if self.halves else None,
                "warnings": list(self.warnings)}


@dataclass(frozen=True)
class EndpointResult:
    """The cycle, kcal/mol: dG[name] = dG_mm + water.dA[name] − gas.dA[name] (σ in quadrature);
    reorg = ⟨E_ML⟩_water − ⟨E_ML⟩_gas at λ = 1; combined[name] = dG[name] + reorg."""

    dG_mm: Estimate
    water: LegEstimate
    gas: LegEstimate
    dG: dict
    reorg: Optional[Reorganization]
    combined: dict
    warnings: list = field(default_factory=list)

    def to_json(self) -> dict:
        d = {"route": "endpoint", "units": "kcal/mol", "cycle": "dG_ML/MM = dG_MM + dA_water - dA_gas",
             "dG_MM": self.dG_mm.to_json(), "water": self.water.to_json(), "gas": self.gas.to_json()}
        for k, v in self.dG.items():
            d[f"dG_{k}"] = v.to_json()
        if self.reorg is not None:
            d["dG_reorg"] = self.reorg.to_json()
        for k, v in self.combined.items():
            d[f"dG_{k}_plus_reorg"] = v.to_json()
        d["warnings"] = list(self.warnings)
        return d

    def __str__(self) -> str:
        lines = ["Hydration free energy by the endpoint route (kcal/mol)",
                 f"  ΔG_hyd(MM)            {self.dG_mm}"]
        for leg in (self.water, self.gas):
            ov = leg.min_neighbour_overlap
            ov_text = "n/a" if ov is None else f"{ov:.3f}"
            lines.append(f"  ΔA_MM→ML({leg.phase:<5})     {leg.dA['MBAR']} (MBAR; BAR {leg.dA['BAR']}; "
                         f"min neighbour overlap {ov_text})")
        for k, v in self.dG.items():
            lines.append(f"  ΔG_hyd(ML/MM) {k:<7} {v}")
        if self.reorg is not None:
            lines.append(f"  ΔG_reorg              {self.reorg}")
            for k, v in self.combined.items():
                lines.append(f"  ΔG {k} + ΔG_reorg    {v}")
        lines += [f"  WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ u_nk
def check_lambdas(lambdas: Sequence[float]) -> tuple:
    lam = tuple(float(x) for x in lambdas)
    if len(lam) < 2 or lam[0] != 0.0 or lam[-1] != 1.0 or any(b <= a for a, b in zip(lam, lam[1:])):
        raise AnalysisError(f"an endpoint leg needs increasing λ from 0 to 1 (at least 2 windows), got {list(lam)}")
    return lam


def u_nk_frames(windows: Sequence[WindowSamples], temperature: float, offset: float = 0.0) -> list[pd.DataFrame]:
    """One alchemlyb u_nk DataFrame per window: u_k = β·λ_k·(ΔU − offset) in kT, index (time, λ)."""
    lam = check_lambdas([w.lam for w in windows])
    beta = 1.0 / units.kT_kcal(temperature)
    lam_arr = np.asarray(lam)
    out = []
    for w in windows:
        du = np.asarray(w.delta_u, dtype=float) - offset
        t = np.asarray(w.time_ps, dtype=float)
        if len(du) != len(t) or not np.all(np.isfinite(du)):
            raise AnalysisError(f"window λ = {w.lam}: ΔU and times differ in length, or ΔU has NaN/inf")
        idx = pd.MultiIndex.from_arrays([t, np.full(len(t), float(w.lam))], names=["time", LAMBDA_LEVEL])
        df = pd.DataFrame(beta * du[:, None] * lam_arr[None, :], index=idx, columns=list(lam))
        df.attrs = {"temperature": float(temperature), "energy_unit": "kT"}
        out.append(df)
    return out


def _trim(df: pd.DataFrame, equil_fraction: float) -> pd.DataFrame:
    t = df.index.get_level_values("time").to_numpy()
    if len(t) == 0:
        return df
    t0 = t.min() + equil_fraction * (t.max() - t.min())
    return df[t >= t0 - 1e-12]


def _decorrelate(df: pd.DataFrame) -> pd.DataFrame:
    from .free_energy import _quiet_imports

    _quiet_imports()
    from alchemlyb.preprocessing import decorrelate_u_nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return decorrelate_u_nk(df, method="dE", remove_burnin=False)
        except Exception:  # too few samples to estimate g: keep all
            return df


# ------------------------------------------------------------------------------------ legs
def estimate_leg(windows: Sequence[WindowSamples], temperature: float, phase: str,
                 equil_fraction: float = 0.1, decorrelate: bool = True,
                 offset: Optional[float] = None) -> LegEstimate:
    """ΔA_{MM→ML} (kcal/mol) of one leg from its windows (λ from 0 to 1, increasing).

    offset: C (kcal/mol) subtracted from ΔU and added back to ΔA; None: the median ΔU of the leg."""
    from .free_energy import _quiet_imports, overlap_matrix

    windows = sorted(windows, key=lambda w: w.lam)
    lam = check_lambdas([w.lam for w in windows])
    kT = units.kT_kcal(temperature)
    if offset is None:
        offset = float(np.median(np.concatenate([np.asarray(w.delta_u, dtype=float) for w in windows])))
    offset = float(offset)
    frames = u_nk_frames(windows, temperature, offset)
    used, samples = [], []
    for w, df in zip(windows, frames):
        cut = _trim(df, equil_fraction)
        dec = _decorrelate(cut) if decorrelate else cut
        used.append(dec)
        samples.append({"lambda": w.lam, "frames": int(len(df)), "after_trim": int(len(cut)),
                        "uncorrelated": int(len(dec))})
    _quiet_imports()
    from alchemlyb import concat
    from alchemlyb.estimators import BAR, MBAR

    u_all = concat(used)
    nan = Estimate(float("nan"), float("nan"))
    mbar = overlap = None
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mbar = MBAR().fit(u_all)
            dA_mbar = Estimate(float(mbar.delta_f_.iloc[0, -1]) * kT + offset, float(mbar.d_delta_f_.iloc[0, -1]) * kT)
        except Exception as exc:
            log.warning("MBAR failed on the %s leg: %s", phase, exc)
            notes.append(f"{phase} leg: MBAR failed ({exc})")
            mbar, dA_mbar = None, nan
        try:
            bar = BAR().fit(u_all)
            dd = bar.d_delta_f_.to_numpy()
            err = float(np.sqrt(sum(dd[i, i + 1] ** 2 for i in range(len(dd) - 1))))
            dA_bar = Estimate(float(bar.delta_f_.iloc[0, -1]) * kT + offset, err * kT)
        except Exception as exc:
            log.warning("BAR failed on the %s leg: %s", phase, exc)
            notes.append(f"{phase} leg: BAR failed ({exc})")
            dA_bar = nan
    if mbar is not None:   # at equal samples per window: their numbers differ with window length and correlation time
        overlap = overlap_matrix(used, mbar)
    min_ov = float(min(overlap[i][i + 1] for i in range(len(overlap) - 1))) if overlap else None
    if min_ov is not None and min_ov < MIN_OVERLAP:
        k = int(np.argmin([overlap[i][i + 1] for i in range(len(overlap) - 1)]))
        more = lam[:k + 1] + ((lam[k] + lam[k + 1]) / 2,) + lam[k + 1:]
        notes.append(f"{phase} leg: overlap between λ = {lam[k]:g} and {lam[k + 1]:g} is {min_ov:.3f} "
                     f"(< {MIN_OVERLAP}): ΔA and its σ cannot be trusted; add a window there: --leg-lambdas "
                     f"{' '.join(f'{x:g}' for x in more)} (the finished windows are kept), or sample longer")
    few = [s["lambda"] for s in samples if s["uncorrelated"] < MIN_SAMPLES]
    if few:
        notes.append(f"{phase} leg: fewer than {MIN_SAMPLES} uncorrelated samples at λ = "
                     f"{', '.join(f'{x:g}' for x in few)}: sample longer")
    halves = _halves(used, kT, offset)
    if halves is not None and not np.isnan(dA_mbar.value):
        (a, b), s = halves, math.hypot(halves[0].error, halves[1].error)
        if abs(a.value - b.value) > HALVES_SIGMA * s:
            notes.append(f"{phase} leg: ΔA from the first and the second half of the samples differ by "
                         f"{abs(a.value - b.value):.2f} kcal/mol ({abs(a.value - b.value) / s:.1f} σ): the windows are "
                         f"too short for the σ of {dA_mbar.error:.2f} to hold; sample longer")
    e_ml = None
    last = windows[-1]
    if last.e_ml is not None:
        from .reorg import mean_with_error

        e_ml = mean_with_error(np.asarray(last.e_ml, dtype=float), equil_fraction)
    return LegEstimate(phase=phase, lambdas=lam, temperature_K=float(temperature),
                       dA={"MBAR": dA_mbar, "BAR": dA_bar}, overlap=overlap, min_neighbour_overlap=min_ov,
                       e_ml=e_ml, samples=samples, offset=offset, halves=halves, warnings=notes, mbar=mbar)


def _halves(used: Sequence[pd.DataFrame], kT: float, offset: float) -> Optional[tuple]:
    """MBAR's ΔA (kcal/mol) from the first and from the second half (by time) of each window's samples."""
    from alchemlyb import concat
    from alchemlyb.estimators import MBAR

    if min(len(df) for df in used) < 2 * 5:
        return None
    out = []
    for part in (0, 1):
        pieces = []
        for df in used:
            h = len(df) // 2
            pieces.append(df.iloc[:h] if part == 0 else df.iloc[h:])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = MBAR().fit(concat(pieces))
            out.append(Estimate(float(m.delta_f_.iloc[0, -1]) * kT + offset, float(m.d_delta_f_.iloc[0, -1]) * kT))
        except Exception:
            return None
    return tuple(out)


def read_leg(paths: Sequence, lambdas: Sequence[float]) -> list[WindowSamples]:
    """The :class:`WindowSamples` of a leg from its windows' ``delta_u.csv`` files (:mod:`.delta_u`)."""
    from .delta_u import read_delta_u

    if len(paths) != len(lambdas):
        raise AnalysisError(f"{len(paths)} ΔU files for {len(lambdas)} λ values")
    out = []
    for p, lam in zip(paths, lambdas):
        d = read_delta_u(p)
        out.append(WindowSamples(float(lam), d["time_ps"], d["delta_u"], d["e_ml"]))
    return out


def cycle(dG_mm: Estimate, water: LegEstimate, gas: LegEstimate) -> EndpointResult:
    """ΔG_hyd(ML/MM) = ΔG_hyd(MM) + ΔA_water − ΔA_gas for each estimator (σ in quadrature), the
    reorganization energy ⟨E_ML⟩_water − ⟨E_ML⟩_gas at λ = 1 and ΔG + ΔG_reorg."""
    if abs(water.temperature_K - gas.temperature_K) > 1e-6:
        raise AnalysisError(f"the legs ran at different temperatures ({water.temperature_K} K, {gas.temperature_K} K)")
    dG = {}
    for k in ESTIMATORS:
        w, g = water.dA[k], gas.dA[k]
        dG[k] = Estimate(dG_mm.value + w.value - g.value, math.sqrt(dG_mm.error ** 2 + w.error ** 2 + g.error ** 2))
    reorg = None
    combined: dict[str, CombinedEstimate] = {}
    if water.e_ml is not None and gas.e_ml is not None:
        reorg = Reorganization(water.e_ml.mean - gas.e_ml.mean, math.hypot(water.e_ml.error, gas.e_ml.error),
                               water=water.e_ml, gas=gas.e_ml)
        combined = {k: combine(v, reorg, "λ = 1 windows of the legs") for k, v in dG.items()}
    return EndpointResult(dG_mm=dG_mm, water=water, gas=gas, dG=dG, reorg=reorg, combined=combined,
                          warnings=list(water.warnings) + list(gas.warnings))
