"""Typed results of the analysis: a number with its error, the estimators' ΔG, a hydration run's result.

Everything here is plain data (dataclasses, numbers in kcal/mol unless a ``unit`` says otherwise).
:meth:`HydrationResult.to_json` gives exactly the content of ``DIR/analysis/results.json``, and
:meth:`HydrationResult.from_json` reads that file's content back, so a finished run can be inspected
in a notebook without analysing it again::

    from mdi_mlmm import load_result
    r = load_result("runs/ethanol")
    r.dG["MBAR"].value, r.dG["MBAR"].error, r.reorg
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

#: estimators reported for every run, in report order
ESTIMATORS = ("TI", "MBAR", "BAR")
#: estimators whose ΔG is also reported with the reorganization energy added
COMBINED = ("TI", "MBAR")
SIGN = "dG_hyd = -(G_decoupled - G_coupled)"


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error (one σ)."""

    value: float
    error: float
    unit: str = "kcal/mol"

    def to_json(self) -> dict:
        return {"value": self.value, "error": self.error}

    def __str__(self) -> str:
        return f"{self.value:.2f} ± {self.error:.2f} {self.unit}"

    @classmethod
    def from_json(cls, d: dict) -> "Estimate":
        return cls(float(d["value"]), float(d["error"]))


@dataclass(frozen=True)
class MeanEstimate:
    """Mean of a correlated series with its standard error. Units of the input (kcal/mol here)."""

    mean: float
    error: float
    std: float
    n: int
    g: float  # statistical inefficiency (1 = uncorrelated)

    def asdict(self):
        return asdict(self)


@dataclass(frozen=True)
class Reorganization(Estimate):
    """ΔG_reorg = ⟨E_ML⟩_water − ⟨E_ML⟩_gas with the two means it is made of."""

    water: Optional[MeanEstimate] = None
    gas: Optional[MeanEstimate] = None

    def to_json(self) -> dict:
        return {"value": self.value, "error": self.error, "water": self.water.asdict() if self.water else None,
                "gas": self.gas.asdict() if self.gas else None}

    @classmethod
    def from_json(cls, d: dict) -> "Reorganization":
        return cls(float(d["value"]), float(d["error"]), water=MeanEstimate(**d["water"]) if d.get("water") else None,
                   gas=MeanEstimate(**d["gas"]) if d.get("gas") else None)


@dataclass(frozen=True)
class CombinedEstimate(Estimate):
    """ΔG of one estimator plus ΔG_reorg; ``reorg_from``: "gas run" or "λ windows"."""

    reorg_from: str = ""

    def to_json(self) -> dict:
        return {"value": self.value, "error": self.error, "reorg_from": self.reorg_from}

    @classmethod
    def from_json(cls, d: dict) -> "CombinedEstimate":
        return cls(float(d["value"]), float(d["error"]), reorg_from=d.get("reorg_from", ""))


@dataclass(frozen=True)
class FreeEnergyEstimates:
    """ΔG_decouple = G_last − G_0 by TI (trapezoid), MBAR and BAR, kcal/mol (:func:`.free_energy.estimate`).

    ``ti`` and ``mbar`` are the fitted alchemlyb estimators (``mbar`` is None when MBAR failed), for
    alchemlyb's plots and further analysis; ``overlap`` is MBAR's overlap matrix (list of lists) or None,
    at equal samples per window (:func:`.free_energy.overlap_matrix`; ``mbar.overlap_matrix`` is that of every sample).
    A split decoupling (:func:`.free_energy.estimate_stages`): ``stages`` holds each stage's MBAR/BAR
    estimates and overlap (``states``: its λ states), ``boundary`` the state they share; MBAR and BAR here are
    their sums, and ``overlap``/``mbar`` are None."""

    TI: Estimate
    MBAR: Estimate
    BAR: Estimate
    overlap: Optional[list] = None
    ti: Any = field(default=None, repr=False, compare=False)
    mbar: Any = field(default=None, repr=False, compare=False)
    stages: tuple = ()
    boundary: Optional[int] = None
    states: Optional[list] = None

    def by_name(self) -> dict[str, Estimate]:
        return {k: getattr(self, k) for k in ESTIMATORS}

    @property
    def min_neighbour_overlap(self) -> Optional[float]:
        """The smallest overlap of neighbouring states in MBAR's overlap matrix; of a split decoupling the smallest
        of its stages' (None when one is unknown)."""
        if self.stages:
            ovs = [s.min_neighbour_overlap for s in self.stages]
            return None if any(o is None for o in ovs) else float(min(ovs))
        if self.overlap is None:
            return None
        ov = self.overlap
        return float(min(ov[i][i + 1] for i in range(len(ov) - 1)))

    def stages_json(self) -> Optional[list]:
        """The stages of a split decoupling as ``results.json`` records them (None: not split): per stage its
        states and windows, ΔG_hyd's share by MBAR and BAR (kcal/mol, the sign of ΔG_hyd: the stages add up to
        it), its overlap matrix and smallest neighbour overlap."""
        if not self.stages:
            return None
        return [{"states": list(s.states), "windows": list(s.states),
                 **{f"dG_{k}": Estimate(-getattr(s, k).value, getattr(s, k).error).to_json() for k in ("MBAR", "BAR")},
                 "overlap_matrix": s.overlap, "min_neighbour_overlap": s.min_neighbour_overlap} for s in self.stages]


@dataclass
class HydrationResult:
    """The result of a hydration run's analysis (``DIR/analysis/results.json``); kcal/mol.

    ``dG[name]``: ΔG_hyd by ``TI``, ``MBAR`` and ``BAR``; ``reorg_gas`` / ``reorg_windows``:
    ΔG_reorg from the gas run / from the λ = 0 and λ = 1 windows (ML models); ``combined[name]``:
    ΔG_hyd + ΔG_reorg for ``TI`` and ``MBAR``; ``e_ml``: the E_ML series (water, decoupled, gas) the
    reorganization energy was computed from (not written to JSON).

    How the run was made: ``dt_fs`` (the windows' time step, fs), ``protocol`` (the physical model,
    ``default`` or ``freesolv``), ``constraints`` (the solute's X–H bonds in the windows as run: ``none``
    or ``h-bonds``) and ``dtype`` (the ML model's precision; None for plain MM). None in results written
    before they were recorded (unknown). ``split_decoupling``: the windows after the boundary state ran with the
    solute's charges zero and MBAR/BAR are sums over two stages, each in ``stages``
    (:meth:`FreeEnergyEstimates.stages_json`; ``overlap_matrix`` is then None, ``min_neighbour_overlap`` the
    smallest of both stages'). ``mass_repartition``: the hydrogen mass factor of the units' topologies (None:
    the force field's masses, or results written before it was recorded)."""

    run_dir: str
    model: str
    host: str
    temperature_K: float
    windows: int
    ns_per_window: float
    dG: dict[str, Estimate]
    samples: list = field(default_factory=list)
    overlap_matrix: Optional[list] = None
    min_neighbour_overlap: Optional[float] = None
    reorg_windows: Optional[Reorganization] = None
    reorg_gas: Optional[Reorganization] = None
    combined: dict[str, CombinedEstimate] = field(default_factory=dict)
    model_server: Optional[dict] = None
    freesolv: Optional[dict] = None
    molecule: Optional[dict] = None
    plots: Optional[dict] = None
    e_ml: Optional[dict] = field(default=None, repr=False, compare=False)
    units: str = "kcal/mol"
    warnings: list = field(default_factory=list)   # one line each: overlap or sampling cannot support the number
    dt_fs: Optional[float] = None
    protocol: Optional[str] = None
    constraints: Optional[str] = None
    dtype: Optional[str] = None
    split_decoupling: Optional[bool] = None
    stages: Optional[list] = None
    mass_repartition: Optional[float] = None

    @property
    def reorg(self) -> Optional[Reorganization]:
        """The reorganization energy added in :attr:`combined`: from the gas run when there is one."""
        return self.reorg_gas or self.reorg_windows

    @property
    def ml(self) -> bool:
        from ..potentials.registry import is_ml

        return is_ml(self.model)

    def to_json(self) -> dict:
        """The content of ``results.json`` (key order as written)."""
        d: dict = {"run_dir": self.run_dir, "model": self.model, "host": self.host,
                   "temperature_K": self.temperature_K, "units": self.units, "windows": self.windows,
                   "ns_per_window": self.ns_per_window, "samples": self.samples, "sign": SIGN,
                   "dt_fs": self.dt_fs, "protocol": self.protocol, "constraints": self.constraints, "dtype": self.dtype}
        for k in ESTIMATORS:
            d[f"dG_{k}"] = self.dG[k].to_json()
        d["overlap_matrix"] = self.overlap_matrix
        if self.min_neighbour_overlap is not None:
            d["min_neighbour_overlap"] = self.min_neighbour_overlap
        d["split_decoupling"] = self.split_decoupling
        d["mass_repartition"] = self.mass_repartition
        if self.stages:
            d["stages"] = self.stages
        if self.reorg_windows is not None:
            d["dG_reorg_windows"] = self.reorg_windows.to_json()
        if self.reorg_gas is not None:
            d["dG_reorg_gas"] = self.reorg_gas.to_json()
        for k, v in self.combined.items():
            d[f"dG_{k}_plus_reorg"] = v.to_json()
        if self.model_server:
            d["model_server"] = self.model_server
        if self.freesolv is not None:
            d["freesolv"] = self.freesolv
        if self.molecule is not None:
            d["molecule"] = self.molecule
        if self.plots is not None:
            d["plots"] = self.plots
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "HydrationResult":
        """A result from the content of ``results.json``."""
        def reorg(key):
            return Reorganization.from_json(d[key]) if d.get(key) else None

        return cls(run_dir=d["run_dir"], model=d["model"], host=d["host"], temperature_K=d["temperature_K"],
                   windows=d["windows"], ns_per_window=d["ns_per_window"], samples=d.get("samples", []),
                   dG={k: Estimate.from_json(d[f"dG_{k}"]) for k in ESTIMATORS},
                   overlap_matrix=d.get("overlap_matrix"), min_neighbour_overlap=d.get("min_neighbour_overlap"),
                   reorg_windows=reorg("dG_reorg_windows"), reorg_gas=reorg("dG_reorg_gas"),
                   combined={k: CombinedEstimate.from_json(d[f"dG_{k}_plus_reorg"]) for k in COMBINED
                             if f"dG_{k}_plus_reorg" in d},
                   model_server=d.get("model_server"), freesolv=d.get("freesolv"), molecule=d.get("molecule"),
                   plots=d.get("plots"), units=d.get("units", "kcal/mol"), warnings=list(d.get("warnings", [])),
                   dt_fs=d.get("dt_fs"), protocol=d.get("protocol"), constraints=d.get("constraints"),
                   dtype=d.get("dtype"), split_decoupling=d.get("split_decoupling"), stages=d.get("stages"),
                   mass_repartition=d.get("mass_repartition"))

    def __str__(self) -> str:
        from .report import summary_lines

        return "\n".join(summary_lines(self))


def combine(dg: Estimate, reorg: Reorganization, reorg_from: str) -> CombinedEstimate:
    """ΔG + ΔG_reorg, errors added in quadrature."""
    return CombinedEstimate(dg.value + reorg.value, math.hypot(dg.error, reorg.error), reorg_from=reorg_from)
