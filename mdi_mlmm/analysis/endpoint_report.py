"""Analysis of an endpoint-route run directory (docs/endpoint.md): ΔG_hyd(MM) from the plain-MM
decoupling windows (alchemlyb TI/MBAR/BAR; MBAR enters the cycle), ΔA_MM→ML of the water and gas legs
from their ``delta_u.csv`` files (MBAR/BAR, :mod:`.endpoint`), the cycle, the reorganization
energy ⟨E_ML⟩_water − ⟨E_ML⟩_gas at λ_intra = 1 shown separately and added, overlap and sampling
diagnostics, and loud warnings when they cannot support the number.

Writes ``DIR/analysis/results.json`` (:meth:`EndpointRunResult.to_json`), ``report.md`` and plots
(the MM part's dH/dλ, overlap and convergence; each leg's MBAR overlap matrix). kcal/mol, K, ps.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import AnalysisError
from . import report
from .results import Estimate, Reorganization

log = logging.getLogger(__name__)

PHASES = ("water", "gas")
#: leg windows shorter than this (ps) get a warning: 5-ps windows were seen to underestimate σ (docs/endpoint.md)
MIN_LEG_PS = 20.0
#: the MM decoupling's smallest neighbour overlap below this gets a warning
MIN_MM_OVERLAP = 0.03
#: a σ of ΔG_reorg (kcal/mol) above this gets a warning suggesting longer λ_intra = 1 windows (``--leg-end-ps``)
MAX_REORG_SIGMA = 0.3


@dataclass
class EndpointRunResult:
    """The analysis of an endpoint-route run (``DIR/analysis/results.json``), kcal/mol.

    dG[name]: ΔG_hyd(ML/MM) = ΔG_hyd(MM) + ΔA_water − ΔA_gas by ``MBAR`` and ``BAR`` (the legs'
    estimator; ΔG_hyd(MM) is the MM decoupling's MBAR); reorg: ⟨E_ML⟩_water − ⟨E_ML⟩_gas at λ = 1;
    combined[name]: dG + reorg; dG_mm: the MM decoupling by TI, MBAR and BAR; warnings: one line each
    (overlap or sampling that cannot support the number). How the run was made: ``protocol`` (the physical
    model), ``constraints`` (the legs' X–H bonds; the MM decoupling constrains them in any case), ``dtype``
    (the ML model's precision); None in results written before they were recorded. The time steps are in
    ``data["legs"]`` (``dt_fs``, ``mm_dt_fs``). ``data`` is the whole results.json content."""

    run_dir: str
    model: str
    host: str
    temperature_K: float
    dG: dict
    dG_mm: dict
    reorg: Optional[Reorganization] = None
    combined: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    freesolv: Optional[dict] = None
    molecule: Optional[dict] = None
    data: dict = field(default_factory=dict, repr=False)
    endpoint: Any = field(default=None, repr=False, compare=False)
    route: str = "endpoint"
    units: str = "kcal/mol"
    protocol: Optional[str] = None
    constraints: Optional[str] = None
    dtype: Optional[str] = None

    def to_json(self) -> dict:
        return self.data

    @classmethod
    def from_json(cls, d: dict) -> "EndpointRunResult":
        mm = d["mm"]
        return cls(run_dir=d["run_dir"], model=d["model"], host=d["host"], temperature_K=d["temperature_K"],
                   dG={k: Estimate.from_json(d[f"dG_{k}"]) for k in ("MBAR", "BAR")},
                   dG_mm={k: Estimate.from_json(mm[f"dG_{k}"]) for k in ("TI", "MBAR", "BAR")},
                   reorg=Reorganization.from_json(d["dG_reorg"]) if d.get("dG_reorg") else None,
                   combined={k: Estimate.from_json(d[f"dG_{k}_plus_reorg"]) for k in ("MBAR", "BAR")
                             if f"dG_{k}_plus_reorg" in d},
                   warnings=list(d.get("warnings", [])), freesolv=d.get("freesolv"), molecule=d.get("molecule"),
                   data=d, protocol=d.get("protocol"), constraints=d.get("constraints"), dtype=d.get("dtype"))

    def __str__(self) -> str:
        return "\n".join(summary_lines(self.data))


def _pm(d) -> str:
    return f"{d['value']:.2f} ± {d['error']:.2f}" if d else "—"


def _leg_lengths(legs: dict) -> str:
    """``3 λ × 40 ps`` or, with longer λ_intra = 1 windows, ``3 λ × 40 ps (λ = 1: 1000 ps)`` (results written
    before ``ps_lambda1`` was recorded: every window ``ps_per_window``)."""
    ps, end = legs["ps_per_window"], legs.get("ps_lambda1", legs["ps_per_window"])
    return f"{len(legs['lambdas'])} λ × {ps:g} ps" + (f" (λ = 1: {end:g} ps)" if abs(end - ps) > 1e-9 else "")


def summary_lines(res: dict) -> list[str]:
    """What the commands print: each term with σ, the total, the reorganization energy, warnings."""
    legs = res["legs"]
    L = [f"Hydration free energy by the endpoint route ({res['model']}; legs on {res['host']}, "
         f"{_leg_lengths(legs)}; MM part {res['mm']['windows']} windows × "
         f"{res['mm']['ns_per_window']:.3g} ns on gromacs; kcal/mol)",
         f"  ΔG_hyd(MM)  MBAR     {_pm(res['dG_MM'])}   (TI {_pm(res['mm']['dG_TI'])})"]
    for ph in PHASES:
        leg = res[ph]
        ov = leg.get("min_neighbour_overlap")
        L.append(f"  ΔA_MM→ML({ph:<5}) MBAR {_pm(leg['dA_MBAR'])}   (BAR {_pm(leg['dA_BAR'])}; "
                 f"min overlap {'n/a' if ov is None else f'{ov:.3f}'})")
    L.append(f"  ΔG_hyd(ML/MM) MBAR   {_pm(res['dG_MBAR'])}   (BAR {_pm(res['dG_BAR'])})")
    if res.get("dG_reorg"):
        L.append(f"  ΔG_reorg             {_pm(res['dG_reorg'])}   ⟨E_ML⟩_water − ⟨E_ML⟩_gas at λ = 1")
        L.append(f"  ΔG MBAR + reorg      {_pm(res.get('dG_MBAR_plus_reorg'))}")
    L += report.freesolv_lines(res, 21)
    if res.get("warnings"):
        L.append(f"  !!! {len(res['warnings'])} WARNING(S): the number is not supported as it stands !!!")
        L += [f"  WARNING: {w}" for w in res["warnings"]]
    return L


def _leg_bonds(legs: dict) -> str:
    """How the legs treated the solute's X–H bonds (results written before the option: flexible)."""
    return "X–H constrained" if legs.get("constraints") == "h-bonds" else "flexible"


def _end_text(legs: dict) -> str:
    """The λ_intra = 1 windows' length for report.md: always stated (ΔG_reorg rests on them)."""
    end = legs.get("ps_lambda1", legs["ps_per_window"])
    same = abs(end - legs["ps_per_window"]) <= 1e-9
    return f" (λ = 1: {f'{end:g} ps as the others' if same else f'**{end:g} ps**, --leg-end-ps'}; ΔG_reorg's samples)"


def report_markdown(res: dict) -> str:
    """``report.md`` of an endpoint run."""
    legs = res["legs"]
    mol = res.get("molecule") or {}
    L = ["# Hydration free energy report (endpoint route)", ""]
    if res.get("warnings"):
        L += ["## ⚠ WARNINGS: overlap or sampling cannot support the number", ""]
        L += [f"- **{w}**" for w in res["warnings"]]
        L.append("")
    L += [f"Molecule: `{mol.get('smiles')}` {mol.get('name') or ''}  ",
          f"Model: **{res['model']}**{report.precision_text(res)}, protocol: **{res.get('protocol') or 'unknown'}**; "
          f"legs on **{res['host']}** ({len(legs['lambdas'])} λ_intra windows "
          f"{', '.join(f'{x:g}' for x in legs['lambdas'])} × {legs['ps_per_window']:g} ps"
          f"{_end_text(legs)} after "
          f"{legs['equil_ps']:g} ps, {legs['dt_fs']:g} fs, {_leg_bonds(legs)}, frames every {legs['sample_every']} "
          "steps); "
          f"MM decoupling on gromacs ({res['mm']['windows']} windows × {res['mm']['ns_per_window']:.3g} ns, "
          f"{legs['mm_dt_fs']:g} fs, h-bond constraints); T = {res['temperature_K']} K.", "",
          "ΔG_hyd(ML/MM) = ΔG_hyd(MM) + ΔA_MM→ML(water) − ΔA_MM→ML(gas)", "",
          "| term | kcal/mol |", "|---|---|",
          f"| ΔG_hyd(MM) (MBAR; used in the cycle) | {_pm(res['dG_MM'])} |",
          f"| ΔG_hyd(MM) (TI / BAR) | {_pm(res['mm']['dG_TI'])} / {_pm(res['mm']['dG_BAR'])} |"]
    for ph in PHASES:
        leg = res[ph]
        L.append(f"| ΔA_MM→ML({ph}) (MBAR / BAR) | {_pm(leg['dA_MBAR'])} / {_pm(leg['dA_BAR'])} |")
    L += [f"| **ΔG_hyd(ML/MM)** (MBAR) | **{_pm(res['dG_MBAR'])}** |",
          f"| ΔG_hyd(ML/MM) (BAR) | {_pm(res['dG_BAR'])} |"]
    if res.get("dG_reorg"):
        L += [f"| ΔG_reorg = ⟨E_ML⟩_water − ⟨E_ML⟩_gas (λ = 1 windows) | {_pm(res['dG_reorg'])} |",
              f"| ΔG_hyd(ML/MM) (MBAR) + ΔG_reorg | {_pm(res.get('dG_MBAR_plus_reorg'))} |"]
    fs = res.get("freesolv") or {}
    if fs.get("experimental") is not None:
        L.append(f"| FreeSolv experiment | {fs['experimental']:.2f} ± {fs.get('experimental_uncertainty') or 0:.2f} |")
    if fs.get("calculated") is not None:
        L.append(f"| FreeSolv GAFF (calculated) | {fs['calculated']:.2f} ± "
                 f"{fs.get('calculated_uncertainty') or 0:.2f} |")
    L += ["", "The ΔA legs carry the absolute ML energy (it cancels between them). ΔG_hyd(ML/MM) is already the full "
          "ML/MM hydration free energy; the reorganization term is shown separately and added, as on the direct "
          "route. " + ("The MM part and the legs run with X–H bonds constrained: the cycle is exact for the constrained "
                       "ML/MM Hamiltonian (docs/endpoint.md)." if legs.get("constraints") == "h-bonds" else
                       "The MM part runs with h-bond constraints, the legs without (docs/endpoint.md, constraints)."),
          "",
          "## Overlap and samples", "",
          "| part | smallest neighbour overlap | windows: uncorrelated samples |", "|---|---|---|"]
    ov = res["mm"].get("min_neighbour_overlap")
    L.append(f"| MM decoupling | {'n/a' if ov is None else f'{ov:.3f}'} | "
             f"{', '.join(str(s['uncorrelated_u_nk']) for s in res['mm'].get('samples', []))} |")
    for ph in PHASES:
        leg = res[ph]
        ov = leg.get("min_neighbour_overlap")
        L.append(f"| {ph} leg | {'n/a' if ov is None else f'{ov:.3f}'} | "
                 f"{', '.join(str(s['uncorrelated']) for s in leg['samples'])} |")
    if res["mm"].get("stages"):   # a split MM decoupling: MBAR/BAR per stage, added (docs/gromacs.md)
        L += ["", "MM decoupling split in two stages (MBAR and BAR added):"] + \
            [f"- {x}" for x in report.stage_lines(res["mm"])]
    for ph in PHASES:
        h = res[ph].get("dA_MBAR_halves")
        if h:
            L.append(f"\n{ph} leg, MBAR on the first / second half of each window: {_pm(h[0])} / {_pm(h[1])}")
    L.append("")
    for name, title in (("dhdl.png", "MM decoupling: dH/dλ"), ("overlap.png", "MM decoupling: MBAR overlap"),
                        ("overlap_stage1.png", "MM decoupling: MBAR overlap, stage 1 (charges)"),
                        ("overlap_stage2.png", "MM decoupling: MBAR overlap, stage 2 (Lennard-Jones)"),
                        ("convergence.png", "MM decoupling: forward/backward convergence"),
                        ("overlap_water.png", "water leg: MBAR overlap"), ("overlap_gas.png", "gas leg: MBAR overlap")):
        if name in (res.get("plots") or {}):
            L += [f"## {title}", "", f"![{title}]({name})", ""]
    return "\n".join(L) + "\n"


def analyze_endpoint(run_dir: Path, plan, equil_fraction: float = 0.1, plots: bool = True) -> EndpointRunResult:
    """Analyse an endpoint-route run directory (``plan``: its checked plan); writes results.json,
    report.md and the plots in ``run_dir/analysis``."""
    from .endpoint import cycle, estimate_leg, read_leg

    run_dir = Path(run_dir).resolve()
    # the MM decoupling: a direct-route plan of model mm on gromacs over the same windows
    mm = dataclasses.replace(plan, model="mm", host="gromacs", route="direct", gas_steps=0)
    u_raw, d_raw = report.load_windows(mm, run_dir)
    legs_in = {}
    for ph in PHASES:
        paths = [run_dir / plan.leg_directory(ph, k) / "delta_u.csv" for k in range(len(plan.leg_lambdas))]
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise AnalysisError(f"the {ph} leg has no ΔU yet ({missing[0]} missing): rerun the hydration command "
                                "to finish it")
        legs_in[ph] = read_leg(paths, plan.leg_lambdas)
    system = report.read_system(run_dir)
    est, info, u_list, d_list = report.estimate_windows(u_raw, d_raw, equil_fraction, plan.temperature,
                                                        mm.stage_boundary)
    dG_mm = {k: Estimate(-e.value, e.error) for k, e in est.by_name().items()}
    water = estimate_leg(legs_in["water"], plan.temperature, "water", equil_fraction)
    gas = estimate_leg(legs_in["gas"], plan.temperature, "gas", equil_fraction)
    result = cycle(dG_mm["MBAR"], water, gas)

    warnings = list(result.warnings)
    ov = est.min_neighbour_overlap
    if ov is not None and ov < MIN_MM_OVERLAP:
        warnings.append(f"MM decoupling: smallest neighbour overlap {ov:.3f} (< {MIN_MM_OVERLAP}): ΔG_hyd(MM) and "
                        "its σ cannot be trusted; use more windows (FreeSolv's 20) or longer ones")
    few = [k for k, s in enumerate(info) if s["uncorrelated_u_nk"] < 20]
    if few:
        warnings.append(f"MM decoupling: fewer than 20 uncorrelated samples in windows {few}: sample longer")
    leg_ps = plan.leg_steps * plan.leg_dt_fs / 1000.0
    if leg_ps < MIN_LEG_PS:
        warnings.append(f"legs: {leg_ps:g} ps per window is short (< {MIN_LEG_PS:g} ps): the σ of ΔA is "
                        "underestimated at this length (docs/endpoint.md); sample longer")
    end_ps = plan.leg_end_steps * plan.leg_dt_fs / 1000.0
    if result.reorg is not None and result.reorg.error > MAX_REORG_SIGMA:
        need = 10 * math.ceil(end_ps * (result.reorg.error / MAX_REORG_SIGMA) ** 2 / 10)
        warnings.append(f"ΔG_reorg: σ {result.reorg.error:.2f} kcal/mol (> {MAX_REORG_SIGMA:g}) from {end_ps:g} ps at "
                        f"λ_intra = 1: lengthen those windows alone with --leg-end-ps (σ falls as 1/√time: about "
                        f"{need:g} ps for σ {MAX_REORG_SIGMA:g}, 9× that for 0.1; docs/endpoint.md)")
    for k in ("MBAR", "BAR"):
        if not math.isfinite(result.dG[k].value):
            warnings.append(f"ΔG_hyd(ML/MM) by {k} is not a number: an estimator failed")
    for w in warnings:
        log.warning("%s", w)

    mm_res = report.HydrationResult(run_dir=str(run_dir), model="mm", host="gromacs", temperature_K=plan.temperature,
                                    windows=len(plan.windows), ns_per_window=plan.steps_per_window * plan.dt_fs * 1e-6,
                                    samples=info, dG=dG_mm, overlap_matrix=est.overlap,
                                    min_neighbour_overlap=est.min_neighbour_overlap, stages=est.stages_json(),
                                    **{**report.run_settings(plan), "dtype": None})
    d = {"route": "endpoint", "run_dir": str(run_dir), "model": plan.model, "host": plan.host,
         "temperature_K": plan.temperature, "units": "kcal/mol", "protocol": plan.protocol,
         "constraints": plan.constraints, "dtype": plan.dtype, "mass_repartition": plan.mass_repartition,
         "legs": {"lambdas": list(plan.leg_lambdas), "ps_per_window": leg_ps, "ps_lambda1": end_ps,
                  "equil_ps": plan.leg_equil_steps * plan.leg_dt_fs / 1000.0, "dt_fs": plan.leg_dt_fs,
                  "sample_every": plan.leg_sample_every, "mm_dt_fs": plan.dt_fs,
                  "constraints": plan.constraints},
         "mm": mm_res.to_json()}
    d.update(result.to_json())
    d["warnings"] = warnings
    d["model_server"] = report._model_server_stats(run_dir / "model_server" / "server.log")
    freesolv = molecule = None
    if system is not None:
        fs = system.get("freesolv") or {}
        freesolv = {"id": fs.get("id"), "iupac": fs.get("iupac"), "experimental": fs.get("expt_dG_kcal_per_mol"),
                    "experimental_uncertainty": fs.get("expt_uncertainty_kcal_per_mol"),
                    "calculated": fs.get("calc_dG_kcal_per_mol"),
                    "calculated_uncertainty": fs.get("calc_uncertainty_kcal_per_mol")}
        molecule = {"smiles": system.get("smiles"), "name": system.get("name")}
        d["freesolv"], d["molecule"] = freesolv, molecule
    out = run_dir / "analysis"
    out.mkdir(exist_ok=True)
    if plots:
        from . import plots as P

        made = P.make_all(out, est, u_list, d_list, mm)
        for leg in (water, gas):
            if leg.mbar is not None and leg.overlap is not None:
                try:   # the overlap the report gives (at equal samples per window)
                    P.overlap_plot(out / f"overlap_{leg.phase}.png", leg.overlap)
                    made[f"overlap_{leg.phase}.png"] = f"MBAR overlap matrix of the {leg.phase} leg"
                except Exception as exc:  # a plot never fails the analysis
                    log.warning("overlap plot of the %s leg failed: %s", leg.phase, exc)
        d["plots"] = made
    (out / "results.json").write_text(json.dumps(d, indent=1, default=report._jsonable))
    d = json.loads((out / "results.json").read_text())
    (out / "report.md").write_text(report_markdown(d))
    res = EndpointRunResult.from_json(d)
    res.endpoint = result
    return res
