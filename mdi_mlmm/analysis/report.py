"""``mdi-mlmm analyze DIR``: free energies, reorganization energy, plots, report, JSON.

Reads the plan and the per-window outputs of a hydration run directory:

* GROMACS windows: ``windows/NN/dhdl.xvg`` (parsed by alchemlyb as is);
* LAMMPS windows: ``windows/NN/u_nk.csv`` + ``dhdl.csv`` (alchemlyb-shaped DataFrames);
* ML runs: ``windows/NN/e_ml.csv`` and ``gas/e_ml.csv`` (absolute E_ML, kcal/mol).

Writes ``DIR/analysis/results.json`` (every number), ``report.md`` and PNG plots.
All free energies are kcal/mol at the plan's temperature.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from ..errors import AnalysisError
from ..potentials.registry import is_ml
from . import free_energy as fe
from . import validate
from .reorg import read_e_ml, reorganization
from .results import COMBINED, Estimate, HydrationResult, combine

log = logging.getLogger(__name__)


#: plan.json keys the analysis uses
_PLAN_KEYS = ("model", "host", "windows", "schedule", "temperature", "steps_per_window", "dt_fs", "sample_every")


def _load_plan(run_dir: Path):
    """The run's plan, checked: readable JSON with the keys the analysis uses, a known host, a positive
    finite temperature, positive step counts, and windows that are the schedule's states in order."""
    from ..protocol.plan import PLAN_NAME, Plan

    p = run_dir / PLAN_NAME
    if not p.exists():
        raise AnalysisError(f"{run_dir} is not a hydration run directory (no {PLAN_NAME})")
    d = validate.read_json(p, "plan of the hydration run", _PLAN_KEYS)
    try:
        plan = Plan.from_json(d)
        sched = [tuple(float(x) for x in s) for s in plan.schedule]
        wins = [(int(w.state), float(w.coul), float(w.vdw), str(w.directory)) for w in plan.windows]
        temperature = float(plan.temperature)
        counts = [int(plan.steps_per_window), int(plan.sample_every)]
        plan.gas_steps = int(plan.gas_steps)
        if not isinstance(plan.model, str):
            raise TypeError(f"model {plan.model!r} is not a name")
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise validate.damaged(p, f"malformed plan ({type(exc).__name__}: {exc})") from None
    if plan.host not in ("lammps", "gromacs"):
        raise validate.damaged(p, f"unknown host {plan.host!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise validate.damaged(p, f"temperature {plan.temperature!r} K is not a positive number")
    if min(counts) <= 0 or counts != [plan.steps_per_window, plan.sample_every]:
        raise validate.damaged(p, f"steps_per_window {plan.steps_per_window!r} and sample_every {plan.sample_every!r} "
                                  "must be positive whole numbers")
    if len(wins) < 2 or any(len(s) != 2 for s in sched) or \
            [(k, *sched[k]) for k in range(len(sched))] != [w[:3] for w in wins]:
        raise validate.damaged(p, f"windows {[w[:3] for w in wins]} are not the schedule's states {sched} in order")
    # the split decides which states each window's file must hold and how it is estimated: a value make_plan
    # would not have written is damage (a string "false" would read as true)
    from ..protocol.schedule import stage_boundary

    split = plan.split_decoupling
    if not isinstance(split, bool):
        raise validate.damaged(p, f"split_decoupling {split!r} is neither true nor false")
    if split and (stage_boundary(sched) is None or (plan.host != "gromacs" and plan.route != "endpoint")):
        raise validate.damaged(p, "split_decoupling is true, but the decoupling windows cannot have run split "
                                  f"(host {plan.host}, route {plan.route}, schedule {sched})")
    return plan


def load_windows(plan, run_dir: Path):
    """Per-window (u_nk, dHdl) frames, every file checked (:mod:`.validate`) against the plan's λ states
    (of a split decoupling's window after the boundary: the stage-2 states, :func:`~mdi_mlmm.protocol.schedule.
    window_states`) and, for a finished window (done.json), the plan's number of samples (one at step 0 and
    every ``sample_every`` steps)."""
    from ..protocol.schedule import window_states

    u_list, d_list, missing = [], [], []
    boundary = plan.stage_boundary if plan.host == "gromacs" else None   # LAMMPS windows evaluate every state
    n_samples = plan.steps_per_window // plan.sample_every + 1 if plan.steps_per_window % plan.sample_every == 0 \
        else None
    for w in plan.windows:
        wd = run_dir / w.directory
        first = wd / ("dhdl.xvg" if plan.host == "gromacs" else "u_nk.csv")
        finished = (wd / "done.json").exists()
        if not first.exists() and not finished:
            missing.append((w.state, first))
            continue
        n = n_samples if finished else None
        if plan.host == "gromacs":
            states = [plan.schedule[k] for k in window_states(plan.schedule, w.state, boundary)]
            u, d = fe.read_xvg(first, plan.temperature, (w.coul, w.vdw), states, n)
        else:
            u, d = fe.read_window_frames(first, wd / "dhdl.csv", plan.temperature, (w.coul, w.vdw), plan.schedule, n)
        u_list.append(u)
        d_list.append(d)
    if missing:
        raise AnalysisError(f"windows {[k for k, _ in missing]} have no output yet ({missing[0][1]} missing): "
                            "rerun the hydration command to finish them")
    return u_list, d_list



def freesolv_lines(res: dict, width: int) -> list[str]:
    """The summary's FreeSolv lines (experiment, FreeSolv's GAFF value), labels padded to ``width``."""
    fs = res.get("freesolv") or {}
    out = []
    for key, label in (("experimental", "FreeSolv exp."), ("calculated", "FreeSolv GAFF")):
        if fs.get(key) is not None:
            out.append(f"  {label:<{width}}{fs[key]:.2f} ± {fs.get(key + '_uncertainty') or 0:.2f}")
    return out


def read_system(run_dir: Path):
    """system/system.json of a run, checked, or None (optional: it only names the molecule and
    FreeSolv's figures)."""
    sysjson = Path(run_dir) / "system" / "system.json"
    return validate.read_json(sysjson, "description of the prepared system") if sysjson.exists() else None


def estimate_windows(u_raw, d_raw, equil_fraction: float, temperature: float, boundary: int | None = None):
    """The λ windows' estimates (TI, MBAR, BAR of decoupling) from their raw u_nk/dH/dλ frames,
    each window's equilibration cut and decorrelated first; returns (estimates, per-window info,
    the processed u_nk and dH/dλ frames). ``boundary``: a split decoupling's boundary state (the plan's
    :attr:`~mdi_mlmm.protocol.plan.Plan.stage_boundary`): MBAR and BAR per stage, added
    (:func:`.free_energy.estimate_stages`)."""
    u_list, d_list, info = [], [], []
    for u, d in zip(u_raw, d_raw):
        uu, dd, inf = fe.preprocess(u, d, equil_fraction)
        u_list.append(uu)
        d_list.append(dd)
        info.append(inf)
    est = fe.estimate(u_list, d_list, temperature) if boundary is None else \
        fe.estimate_stages(u_list, d_list, temperature, boundary)
    return est, info, u_list, d_list


def analyze(run_dir, equil_fraction: float = 0.1, plots: bool = True) -> HydrationResult:
    """Analyse a finished (or partly finished, for inspection) hydration run: writes
    ``analysis/results.json``, ``report.md`` and (with ``plots``) the PNG plots; returns the result."""
    run_dir = Path(run_dir).resolve()
    plan = _load_plan(run_dir)
    if plan.route == "endpoint":
        from .endpoint_report import analyze_endpoint

        return analyze_endpoint(run_dir, plan, equil_fraction, plots)
    u_raw, d_raw = load_windows(plan, run_dir)
    # every other input is read (and checked) too before anything is estimated
    e_ml = None
    if plan.ml:  # every ML window writes e_ml.csv, the gas run does when the plan has one
        e_ml = {"water": read_e_ml(run_dir / plan.windows[0].directory / "e_ml.csv"),
                "decoupled": read_e_ml(run_dir / plan.windows[-1].directory / "e_ml.csv"),
                "gas": read_e_ml(run_dir / "gas" / "e_ml.csv") if plan.gas_steps > 0 else None}
    system = read_system(run_dir)
    est, info, u_list, d_list = estimate_windows(u_raw, d_raw, equil_fraction, plan.temperature, plan.stage_boundary)
    # the windows run coupled → decoupled: ΔG_hyd = −ΔG_decouple
    res = HydrationResult(run_dir=str(run_dir), model=plan.model, host=plan.host, temperature_K=plan.temperature,
                          windows=len(plan.windows), ns_per_window=plan.steps_per_window * plan.dt_fs * 1e-6,
                          samples=info, dG={k: Estimate(-e.value, e.error) for k, e in est.by_name().items()},
                          overlap_matrix=est.overlap, min_neighbour_overlap=est.min_neighbour_overlap,
                          stages=est.stages_json(), **run_settings(plan))

    # reorganization energy (ML runs)
    if e_ml is not None:
        water, decoupled, gas = e_ml["water"], e_ml["decoupled"], e_ml["gas"]
        res.reorg_windows = reorganization(water, decoupled, equil_fraction)
        if gas is not None:
            res.reorg_gas = reorganization(water, gas, equil_fraction)
        source = "gas run" if res.reorg_gas is not None else "λ windows"
        res.combined = {k: combine(res.dG[k], res.reorg, source) for k in COMBINED}
        res.e_ml = e_ml

    res.model_server = _model_server_stats(run_dir / "model_server" / "server.log")
    res.warnings = direct_warnings(res)
    for w in res.warnings:
        log.warning("%s", w)

    if system is not None:
        s = system
        fs = s.get("freesolv") or {}
        res.freesolv = {"id": fs.get("id"), "iupac": fs.get("iupac"),
                        "experimental": fs.get("expt_dG_kcal_per_mol"),
                        "experimental_uncertainty": fs.get("expt_uncertainty_kcal_per_mol"),
                        "calculated": fs.get("calc_dG_kcal_per_mol"),
                        "calculated_uncertainty": fs.get("calc_uncertainty_kcal_per_mol")}
        res.molecule = {"smiles": s.get("smiles"), "name": s.get("name")}
    out = run_dir / "analysis"
    out.mkdir(exist_ok=True)
    if plots:
        from . import plots as P

        res.plots = P.make_all(out, est, u_list, d_list, plan, e_ml=e_ml)
    (out / "results.json").write_text(json.dumps(res.to_json(), indent=1, default=_jsonable))
    (out / "report.md").write_text(report_markdown(res))
    return res


def load_result(run_dir) -> HydrationResult:
    """The result of an analysed run, read back from ``DIR/analysis/results.json`` (no analysis)."""
    p = Path(run_dir) / "analysis" / "results.json"
    if not p.exists():
        raise AnalysisError(f"{run_dir} has no analysis yet ({p} missing): run `mdi-mlmm analyze {run_dir}`")
    d = validate.read_json(p, "results of the analysis")
    if d.get("route") == "endpoint":
        from .endpoint_report import EndpointRunResult

        return EndpointRunResult.from_json(d)
    return HydrationResult.from_json(d)


#: a smallest neighbour overlap below this gets a warning (alchemlyb's and the literature's rule of thumb)
MIN_OVERLAP = 0.03
#: fewer uncorrelated u_nk samples than this in a window gets a warning
MIN_SAMPLES = 20


def direct_warnings(res: HydrationResult) -> list[str]:
    """One line per reason the direct route's number cannot be trusted as it stands: poor overlap
    between neighbouring windows, too few uncorrelated samples, estimators that disagree beyond
    their combined 2σ, an estimator that failed."""
    out = []
    ov = res.min_neighbour_overlap
    if ov is None or not math.isfinite(ov):
        out.append("no overlap matrix (MBAR failed): the windows' overlap is unknown")
    elif ov < MIN_OVERLAP:
        out.append(f"smallest neighbour overlap {ov:.3f} (< {MIN_OVERLAP}): MBAR/BAR and their σ cannot be trusted; "
                   "add windows or sample longer")
    few = [k for k, s in enumerate(res.samples) if (s.get("uncorrelated_u_nk") or 0) < MIN_SAMPLES]
    if few:
        out.append(f"fewer than {MIN_SAMPLES} uncorrelated samples in windows {few}: σ is not reliable; sample longer")
    for k, e in res.dG.items():
        if not (math.isfinite(e.value) and math.isfinite(e.error)):
            out.append(f"ΔG by {k} is not a number: the estimator failed")
    ti, mbar = res.dG.get("TI"), res.dG.get("MBAR")
    if ti and mbar and all(map(math.isfinite, (ti.value, ti.error, mbar.value, mbar.error))):
        sig = math.hypot(ti.error, mbar.error)
        if abs(ti.value - mbar.value) > 2 * sig:
            out.append(f"TI and MBAR differ by {abs(ti.value - mbar.value):.2f} kcal/mol (> 2σ = {2 * sig:.2f}): "
                       "the λ schedule is too coarse or the windows are not converged")
    return out


def _model_server_stats(log_file: Path):
    """Totals of the statistics lines a shared model server prints when it stops (one per session of a
    resumed run; JSON lines of its log), or None."""
    if not log_file.exists():
        return None
    tot: dict = {"structures": 0, "model_calls": 0, "model_s": 0.0, "clients": 0, "batch_sizes": {}, "sessions": 0}
    for line in log_file.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
            for k in ("structures", "model_calls", "model_s", "clients"):
                tot[k] += d[k]
            for b, n in d["batch_sizes"].items():
                tot["batch_sizes"][b] = tot["batch_sizes"].get(b, 0) + n
            tot["sessions"] += 1
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    if not tot["sessions"]:
        return None
    tot["mean_batch"] = tot["structures"] / max(1, tot["model_calls"])
    return tot


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _pm(d):
    return f"{d['value']:.2f} ± {d['error']:.2f}" if d else "—"


def run_settings(plan) -> dict:
    """How the λ windows of ``plan`` were run, as :class:`HydrationResult` records it: time step (fs),
    physical model, the solute's X–H bonds as run, the ML model's precision (None for plain MM), the hydrogen
    mass factor (None: off)."""
    return {"dt_fs": plan.dt_fs, "protocol": plan.protocol, "constraints": plan.windows_constraints,
            "dtype": plan.dtype if plan.ml else None, "split_decoupling": bool(plan.split_decoupling),
            "mass_repartition": plan.mass_repartition}


def bonds_text(constraints) -> str:
    """``constraints`` (none | h-bonds | None: not recorded) in words."""
    return {"h-bonds": "X–H constrained", "none": "flexible"}.get(constraints, "X–H treatment unknown")


def precision_text(res: dict) -> str:
    """", ML precision **float32**" for an ML model (``unknown`` when the result does not record it), else ""."""
    return f", ML precision **{res.get('dtype') or 'unknown'}**" if is_ml(res["model"]) else ""


def summary_lines(result: HydrationResult) -> list[str]:
    """The summary the commands print: ΔG by each estimator, the reorganization energy, FreeSolv's figures."""
    res = result.to_json()
    lines = [f"Hydration free energy ({res['model']} on {res['host']}, {res['windows']} λ windows, "
             f"{res['ns_per_window']:.3g} ns each; kcal/mol)"]
    lines.append(f"  ΔG TI            {_pm(res['dG_TI'])}")
    lines.append(f"  ΔG MBAR          {_pm(res['dG_MBAR'])}")
    lines.append(f"  ΔG BAR           {_pm(res['dG_BAR'])}")
    if "dG_reorg_gas" in res or "dG_reorg_windows" in res:
        if "dG_reorg_gas" in res:
            lines.append(f"  ΔG_reorg (gas)   {_pm(res['dG_reorg_gas'])}   ⟨E_ML⟩_water − ⟨E_ML⟩_gas run")
        if "dG_reorg_windows" in res:
            lines.append(f"  ΔG_reorg (λ)     {_pm(res['dG_reorg_windows'])}   ⟨E_ML⟩_λ=0 − ⟨E_ML⟩_λ=1")
        for k in ("TI", "MBAR"):
            if f"dG_{k}_plus_reorg" in res:
                lines.append(f"  ΔG {k} + reorg   {_pm(res[f'dG_{k}_plus_reorg'])}")
    lines += freesolv_lines(res, 17)
    lines += [f"  {x}" for x in stage_lines(res)]
    if res.get("min_neighbour_overlap") is not None:
        lines.append(f"  smallest neighbour overlap {res['min_neighbour_overlap']:.3f}"
                     + ("  (LOW: add windows or sample longer)" if res["min_neighbour_overlap"] < MIN_OVERLAP else ""))
    if res.get("warnings"):
        lines.append(f"  !!! {len(res['warnings'])} WARNING(S): the number is not supported as it stands !!!")
        lines += [f"  WARNING: {w}" for w in res["warnings"]]
    return lines


def stage_lines(res: dict) -> list[str]:
    """The lines on a split decoupling's two stages (results.json's ``stages``; none when not split)."""
    st = res.get("stages") or []
    out = []
    for k, s in enumerate(st):
        what = "charges off" if k == 0 else "Lennard-Jones, one PME grid"
        ov = s.get("min_neighbour_overlap")
        out.append(f"stage {k + 1} ({what}, states {s['states'][0]}–{s['states'][-1]}): MBAR {_pm(s['dG_MBAR'])}, "
                   f"BAR {_pm(s['dG_BAR'])}, smallest neighbour overlap {'n/a' if ov is None else f'{ov:.3f}'}")
    return out


def report_markdown(result: HydrationResult) -> str:
    """``report.md``: the numbers, the plots, the samples per window."""
    res = result.to_json()
    L = ["# Hydration free energy report", ""]
    mol = res.get("molecule") or {}
    L.append(f"Molecule: `{mol.get('smiles')}` {mol.get('name') or ''}  ")
    dt = "" if res.get("dt_fs") is None else f" at {res['dt_fs']:g} fs"
    L.append(f"Model: **{res['model']}**{precision_text(res)}, host: **{res['host']}**, protocol: "
             f"**{res.get('protocol') or 'unknown'}**, solute {bonds_text(res.get('constraints'))}"
             + (f" (hydrogen masses × {res['mass_repartition']:g})" if res.get("mass_repartition") else "") + ", "
             f"T = {res['temperature_K']} K, {res['windows']} λ windows × {res['ns_per_window']:.3g} ns{dt}.")
    if res.get("warnings"):
        L += ["", "## ⚠ WARNINGS: overlap or sampling cannot support the number", ""]
        L += [f"- **{w}**" for w in res["warnings"]]
    L += ["", "| quantity | kcal/mol |", "|---|---|"]
    for k, label in (("dG_TI", "ΔG (TI, trapezoid)"), ("dG_MBAR", "ΔG (MBAR)"), ("dG_BAR", "ΔG (BAR)"),
                     ("dG_reorg_gas", "ΔG_reorg = ⟨E_ML⟩_water − ⟨E_ML⟩_gas (gas run)"),
                     ("dG_reorg_windows", "ΔG_reorg from λ = 0 vs λ = 1 windows"),
                     ("dG_TI_plus_reorg", "ΔG (TI) + ΔG_reorg"), ("dG_MBAR_plus_reorg", "ΔG (MBAR) + ΔG_reorg")):
        if k in res:
            L.append(f"| {label} | {_pm(res[k])} |")
    fs = res.get("freesolv") or {}
    if fs.get("experimental") is not None:
        L.append(f"| FreeSolv experiment | {fs['experimental']:.2f} ± {fs.get('experimental_uncertainty') or 0:.2f} |")
    if fs.get("calculated") is not None:
        L.append(f"| FreeSolv GAFF (calculated) | {fs['calculated']:.2f} ± {fs.get('calculated_uncertainty') or 0:.2f} |")
    if res.get("stages"):
        b = res["stages"][1]["states"][0]
        L += ["", f"Split decoupling: the windows after state {b} ran with the solute's charges zero (one PME grid); "
              f"MBAR and BAR are the sums of the two stages (window {b} belongs to both; σ in quadrature), TI runs "
              "over all windows.", ""] + [f"- {x}" for x in stage_lines(res)]
    if is_ml(res["model"]):
        L += ["", "With E_ML on at every λ, the TI/MBAR result is already the full ML/MM hydration free energy "
              "(the decoupled end samples the gas-phase ensemble); the reorganization term of Wang et al. "
              "(JCTC 2025, 21, 6979) is reported separately and added, so either convention can be used."]
    else:
        L += ["", "Plain MM (GAFF) run: solute–water interactions decoupled, intramolecular terms at full strength "
              "(couple-intramol = no), directly comparable with FreeSolv's calculated value."]
    ms = res.get("model_server")
    if ms:
        L += ["", f"ML evaluations: one shared model server answered {ms['structures']} structures in "
              f"{ms['model_calls']} batched model calls (mean batch {ms['mean_batch']:.2f}; "
              f"{ms['model_s']:.0f} s in the model)."]
    L.append("")
    for name, title in (("dhdl.png", "dH/dλ"), ("overlap.png", "MBAR overlap matrix"),
                        ("overlap_stage1.png", "MBAR overlap matrix, stage 1 (charges)"),
                        ("overlap_stage2.png", "MBAR overlap matrix, stage 2 (Lennard-Jones)"),
                        ("convergence.png", "Forward/backward convergence"), ("e_ml.png", "E_ML distributions")):
        if name in (res.get("plots") or {}):
            L += [f"## {title}", "", f"![{title}]({name})", ""]
    L += ["## Samples per window", "", "| window | samples | after trim | uncorrelated (u_nk) |", "|---|---|---|---|"]
    for k, s in enumerate(res.get("samples", [])):
        L.append(f"| {k} | {s['samples']} | {s['after_trim']} | {s['uncorrelated_u_nk']} |")
    return "\n".join(L) + "\n"
