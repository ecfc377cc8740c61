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
from . import free_energy as fe
from .reorg import mean_with_error, read_e_ml, reorganization

log = logging.getLogger(__name__)


def _load_plan(run_dir: Path):
    from ..workflow.plan import PLAN_NAME, Plan

    p = run_dir / PLAN_NAME
    if not p.exists():
        raise AnalysisError(f"{run_dir} is not a hydration run directory (no {PLAN_NAME})")
    return Plan.from_json(json.loads(p.read_text()))


def load_windows(plan, run_dir: Path):
    u_list, d_list, missing = [], [], []
    for w in plan.windows:
        wd = run_dir / w.directory
        if plan.host == "gromacs":
            x = wd / "dhdl.xvg"
            if not x.exists():
                missing.append(w.state)
                continue
            u, d = fe.read_xvg(x, plan.temperature)
        else:
            if not (wd / "u_nk.csv").exists():
                missing.append(w.state)
                continue
            u, d = fe.read_window_frames(wd / "u_nk.csv", wd / "dhdl.csv", plan.temperature)
        u_list.append(u)
        d_list.append(d)
    if missing:
        raise AnalysisError(f"windows {missing} have no output yet: rerun the hydration command to finish them")
    return u_list, d_list


def analyze(run_dir, equil_fraction: float = 0.1, plots: bool = True) -> dict:
    """Analyse a finished (or partly finished, for inspection) hydration run; returns the results dict."""
    run_dir = Path(run_dir).resolve()
    plan = _load_plan(run_dir)
    u_raw, d_raw = load_windows(plan, run_dir)
    u_list, d_list, info = [], [], []
    for u, d in zip(u_raw, d_raw):
        uu, dd, inf = fe.preprocess(u, d, equil_fraction)
        u_list.append(uu)
        d_list.append(dd)
        info.append(inf)
    est = fe.estimate(u_list, d_list, plan.temperature)
    res: dict = {"run_dir": str(run_dir), "model": plan.model, "host": plan.host, "temperature_K": plan.temperature,
                 "units": "kcal/mol", "windows": len(plan.windows), "ns_per_window": plan.steps_per_window * plan.dt_fs * 1e-6,
                 "samples": info, "sign": "dG_hyd = -(G_decoupled - G_coupled)"}
    for k in ("TI", "MBAR", "BAR"):
        v, e = est[k]
        res[f"dG_{k}"] = {"value": -v, "error": e}
    res["overlap_matrix"] = est["overlap"]
    if est["overlap"] is not None:
        ov = np.asarray(est["overlap"])
        res["min_neighbour_overlap"] = float(min(ov[i, i + 1] for i in range(len(ov) - 1)))

    # reorganization energy (ML runs)
    if plan.ml:
        water = read_e_ml(run_dir / plan.windows[0].directory / "e_ml.csv")
        decoupled = read_e_ml(run_dir / plan.windows[-1].directory / "e_ml.csv")
        gas = read_e_ml(run_dir / "gas" / "e_ml.csv")
        if water is not None and decoupled is not None:
            res["dG_reorg_windows"] = reorganization(water, decoupled, equil_fraction)
        if water is not None and gas is not None:
            res["dG_reorg_gas"] = reorganization(water, gas, equil_fraction)
        reorg = res.get("dG_reorg_gas") or res.get("dG_reorg_windows")
        if reorg:
            for k in ("TI", "MBAR"):
                a = res[f"dG_{k}"]
                res[f"dG_{k}_plus_reorg"] = {"value": a["value"] + reorg["value"],
                                             "error": math.hypot(a["error"], reorg["error"]),
                                             "reorg_from": "gas run" if "dG_reorg_gas" in res else "λ windows"}
        res["_series"] = {"water": water, "decoupled": decoupled, "gas": gas}

    server = _model_server_stats(run_dir / "model_server" / "server.log")
    if server:
        res["model_server"] = server

    sysjson = run_dir / "system" / "system.json"
    if sysjson.exists():
        s = json.loads(sysjson.read_text())
        fs = s.get("freesolv") or {}
        res["freesolv"] = {"id": fs.get("id"), "iupac": fs.get("iupac"),
                           "experimental": fs.get("expt_dG_kcal_per_mol"),
                           "experimental_uncertainty": fs.get("expt_uncertainty_kcal_per_mol"),
                           "calculated": fs.get("calc_dG_kcal_per_mol"),
                           "calculated_uncertainty": fs.get("calc_uncertainty_kcal_per_mol")}
        res["molecule"] = {"smiles": s.get("smiles"), "name": s.get("name")}
    out = run_dir / "analysis"
    out.mkdir(exist_ok=True)
    if plots:
        from . import plots as P

        res["plots"] = P.make_all(out, est, u_list, plan, res, d_list)
    series = res.pop("_series", None)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=_jsonable))
    (out / "report.md").write_text(report_markdown(res))
    if series is not None:
        res["_series"] = series
    return res


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


def summary_lines(res: dict) -> list[str]:
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
    fs = res.get("freesolv") or {}
    if fs.get("experimental") is not None:
        lines.append(f"  FreeSolv exp.    {fs['experimental']:.2f} ± {fs.get('experimental_uncertainty') or 0:.2f}")
    if fs.get("calculated") is not None:
        lines.append(f"  FreeSolv GAFF    {fs['calculated']:.2f} ± {fs.get('calculated_uncertainty') or 0:.2f}")
    if res.get("min_neighbour_overlap") is not None:
        lines.append(f"  smallest neighbour overlap {res['min_neighbour_overlap']:.3f}"
                     + ("  (LOW: add windows or sample longer)" if res["min_neighbour_overlap"] < 0.03 else ""))
    return lines


def report_markdown(res: dict) -> str:
    L = ["# Hydration free energy report", ""]
    mol = res.get("molecule") or {}
    L.append(f"Molecule: `{mol.get('smiles')}` {mol.get('name') or ''}  ")
    L.append(f"Model: **{res['model']}**, host: **{res['host']}**, T = {res['temperature_K']} K, "
             f"{res['windows']} λ windows × {res['ns_per_window']:.3g} ns.")
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
    if res["model"].lower() != "mm":
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
                        ("convergence.png", "Forward/backward convergence"), ("e_ml.png", "E_ML distributions")):
        if name in (res.get("plots") or {}):
            L += [f"## {title}", "", f"![{title}]({name})", ""]
    L += ["## Samples per window", "", "| window | samples | after trim | uncorrelated (u_nk) |", "|---|---|---|---|"]
    for k, s in enumerate(res.get("samples", [])):
        L.append(f"| {k} | {s['samples']} | {s['after_trim']} | {s['uncorrelated_u_nk']} |")
    return "\n".join(L) + "\n"
