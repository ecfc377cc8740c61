"""A benchmark against FreeSolv's experimental hydration free energies: statistics, table, plot, report.

Plain data in, files out; nothing here runs a simulation (:mod:`mdi_mlmm.workflow.benchmark` does).
Free energies in kcal/mol.

* :func:`terms_from_results`: the numbers the table needs from one run's ``analysis/results.json``
  (direct route: ΔG and ΔG + ΔG_reorg; endpoint route: also its ΔG_hyd(MM) term);
* :func:`error_stats`: MAE, RMSE, mean signed error and R² (the squared Pearson correlation)
  against experiment, each with a bootstrap confidence interval (molecules resampled with
  replacement; percentile interval; deterministic for a given seed);
* :func:`write_outputs`: ``table.csv``, ``table.md``, ``scatter.png``, ``report.md`` and
  ``benchmark.json`` (statistics and rows) in the benchmark directory.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import files
from ..errors import Interrupted
from .results import Estimate

log = logging.getLogger(__name__)

#: the computed columns, in table order: key -> label
METHODS = {
    "gaff": "FreeSolv GAFF",
    "mm": "our MM",
    "ml": "ML/MM ΔG",
    "ml_reorg": "ML/MM ΔG + reorg",
}
#: files written by :func:`write_outputs`
OUTPUTS = {"csv": "table.csv", "markdown": "table.md", "plot": "scatter.png", "report": "report.md",
           "json": "benchmark.json"}
#: the band drawn around y = x in the scatter plot (kcal/mol)
BAND = 1.0
#: a direct run's smallest neighbour overlap below this is listed as a warning (as its own report does)
MIN_OVERLAP = 0.03


@dataclass
class Row:
    """One molecule: FreeSolv's data and our numbers (None where not run or not available).

    status: ``done`` (every run of the molecule finished), ``failed`` (``error`` says why: one line
    per failed run), ``pending`` (not run yet)."""

    id: str
    smiles: str
    iupac: str = ""
    expt: Optional[Estimate] = None
    values: dict = field(default_factory=dict)   # METHODS key -> Estimate
    status: str = "pending"
    error: Optional[str] = None
    warnings: list = field(default_factory=list)   # the runs' warnings (overlap, sampling), one line each
    runs: dict = field(default_factory=dict)       # run label -> how it was made (:func:`run_settings_text`)

    def to_json(self) -> dict:
        return {"id": self.id, "smiles": self.smiles, "iupac": self.iupac,
                "expt": self.expt.to_json() if self.expt else None,
                **{k: (self.values[k].to_json() if self.values.get(k) else None) for k in METHODS},
                "status": self.status, "error": self.error, "warnings": list(self.warnings), "runs": dict(self.runs)}


@dataclass(frozen=True)
class Interval:
    """A statistic with its bootstrap confidence interval [low, high]."""

    value: float
    low: float
    high: float

    def to_json(self) -> dict:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}

    def text(self, digits: int = 2) -> str:
        if not math.isfinite(self.value):
            return "n/a"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class ErrorStats:
    """Errors of one method against experiment over ``n`` molecules (kcal/mol; R² unitless).

    mse: mean signed error (computed − experiment)."""

    method: str
    n: int
    mae: Interval
    rmse: Interval
    mse: Interval
    r2: Interval
    confidence: float
    n_bootstrap: int

    def to_json(self) -> dict:
        return {"method": self.method, "label": METHODS.get(self.method, self.method), "n": self.n,
                "MAE": self.mae.to_json(), "RMSE": self.rmse.to_json(), "MSE": self.mse.to_json(),
                "R2": self.r2.to_json(), "confidence": self.confidence, "n_bootstrap": self.n_bootstrap}


# ------------------------------------------------------------------------------ statistics
def _r2(calc: np.ndarray, expt: np.ndarray) -> np.ndarray:
    """Squared Pearson correlation along the last axis (NaN where either side has no spread)."""
    dc = calc - calc.mean(axis=-1, keepdims=True)
    de = expt - expt.mean(axis=-1, keepdims=True)
    num = (dc * de).sum(axis=-1) ** 2
    den = (dc ** 2).sum(axis=-1) * (de ** 2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _stats(calc: np.ndarray, expt: np.ndarray) -> dict:
    err = calc - expt
    return {"mae": np.abs(err).mean(axis=-1), "rmse": np.sqrt((err ** 2).mean(axis=-1)),
            "mse": err.mean(axis=-1), "r2": _r2(calc, expt)}


def error_stats(calc: Sequence[float], expt: Sequence[float], *, method: str = "", n_bootstrap: int = 2000,
                seed: int = 0, confidence: float = 0.95) -> ErrorStats:
    """MAE, RMSE, mean signed error and R² of ``calc`` against ``expt`` with bootstrap intervals.

    The bootstrap draws ``n_bootstrap`` sets of the molecules with replacement (numpy's default_rng
    with ``seed``: the same inputs and seed give the same intervals) and takes the percentile
    interval of each statistic. R² (squared Pearson r) needs at least 3 molecules; resamples whose
    values have no spread are left out of its interval."""
    c = np.asarray(calc, dtype=float)
    e = np.asarray(expt, dtype=float)
    if c.shape != e.shape or c.ndim != 1:
        raise ValueError(f"calc and expt must be 1-d and of the same length, got {c.shape} and {e.shape}")
    n = len(c)
    nan = Interval(math.nan, math.nan, math.nan)
    if n == 0:
        return ErrorStats(method, 0, nan, nan, nan, nan, confidence, n_bootstrap)
    point = _stats(c, e)
    if n < 3:
        point["r2"] = math.nan
    lo_q, hi_q = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    boot = None
    if n >= 2 and n_bootstrap > 0:
        idx = np.random.default_rng(seed).integers(0, n, size=(int(n_bootstrap), n))
        boot = _stats(c[idx], e[idx])

    def interval(key):
        v = float(point[key])
        if boot is None or not math.isfinite(v):
            return Interval(v, math.nan, math.nan)
        b = boot[key][np.isfinite(boot[key])]
        if len(b) == 0:
            return Interval(v, math.nan, math.nan)
        return Interval(v, float(np.percentile(b, lo_q)), float(np.percentile(b, hi_q)))

    return ErrorStats(method, n, interval("mae"), interval("rmse"), interval("mse"), interval("r2"),
                      confidence, int(n_bootstrap))


def method_stats(rows: Sequence[Row], *, n_bootstrap: int = 2000, seed: int = 0,
                 confidence: float = 0.95) -> list[ErrorStats]:
    """:func:`error_stats` of every method that has a value on the finished molecules (status
    ``done``), each over those of them it has a value for (FreeSolv GAFF therefore on the same
    molecules as ours)."""
    done = [r for r in rows if r.status == "done" and r.expt is not None]
    out = []
    for key in METHODS:
        have = [r for r in done if r.values.get(key) is not None and math.isfinite(r.values[key].value)]
        if not have:
            continue
        out.append(error_stats([r.values[key].value for r in have], [r.expt.value for r in have], method=key,
                               n_bootstrap=n_bootstrap, seed=seed, confidence=confidence))
    return out


# ------------------------------------------------------------------------------ a run's numbers
def _estimate(d) -> Optional[Estimate]:
    if not isinstance(d, dict) or d.get("value") is None:
        return None
    err = d.get("error")
    return Estimate(float(d["value"]), float(err) if err is not None else math.nan)


def run_settings_text(res: dict) -> str:
    """How a run was made, from its ``results.json`` content: the physical model, the solute's X–H bonds,
    the time step(s), the ML model's precision (``unknown`` where a results.json written before they were
    recorded does not say)."""
    def fs(v):
        return "unknown" if v is None else f"{v:g} fs"

    parts = [f"protocol {res.get('protocol') or 'unknown'}"]
    if res.get("route") == "endpoint":
        legs = res.get("legs") or {}
        parts += [f"legs X–H {legs.get('constraints') or 'none'} at {fs(legs.get('dt_fs'))}",
                  f"MM windows X–H h-bonds at {fs(legs.get('mm_dt_fs'))}"]
        end, ps = legs.get("ps_lambda1"), legs.get("ps_per_window")
        if end is not None and ps is not None and abs(end - ps) > 1e-9:   # --leg-end-ps
            parts.append(f"legs {ps:g} ps, λ = 1 {end:g} ps")
    else:
        parts.append(f"X–H {res.get('constraints') or 'unknown'} at {fs(res.get('dt_fs'))}")
    if res.get("model") != "mm":
        parts.append(f"ML precision {res.get('dtype') or 'unknown'}")
    return ", ".join(parts)


def terms_from_results(res: dict, estimator: str = "MBAR") -> dict:
    """{``ml``, ``ml_reorg``, ``mm``: Estimate or None; ``warnings``: [str]; ``run``: how the run was made
    (:func:`run_settings_text`)} from a run's ``results.json`` content.

    A plain-MM run (model ``mm``) gives ``mm`` = its ΔG; an ML run gives ``ml`` = ΔG and
    ``ml_reorg`` = ΔG + ΔG_reorg of ``estimator``, and ``mm`` = the endpoint route's ΔG_hyd(MM)
    term (``dG_MM``, at the top level or under ``endpoint``) when it has one. ``warnings``: the
    run's own (endpoint route) and, on the direct route, a smallest neighbour overlap below
    :data:`MIN_OVERLAP`."""
    key = f"dG_{estimator}"
    out = {"ml": None, "ml_reorg": None, "mm": None, "warnings": [str(w) for w in res.get("warnings") or []],
           "run": run_settings_text(res)}
    ov = res.get("min_neighbour_overlap")
    if res.get("route", "direct") == "direct" and ov is not None and ov < MIN_OVERLAP:
        out["warnings"].append(f"smallest neighbour overlap {ov:.3f} (< {MIN_OVERLAP}): add windows or sample longer")
    if res.get("model") == "mm":
        out["mm"] = _estimate(res.get(key))
        return out
    out["ml"] = _estimate(res.get(key))
    out["ml_reorg"] = _estimate(res.get(f"{key}_plus_reorg"))
    for holder in (res, res.get("endpoint") if isinstance(res.get("endpoint"), dict) else {}):
        if holder.get("dG_MM") is not None:
            out["mm"] = _estimate(holder["dG_MM"])
            break
    return out


# ------------------------------------------------------------------------------ outputs
def _pm(e: Optional[Estimate]) -> str:
    if e is None:
        return ""
    if not math.isfinite(e.error):
        return f"{e.value:.2f}"
    return f"{e.value:.2f} ± {e.error:.2f}"


def table_csv(rows: Sequence[Row]) -> str:
    """One line per molecule: id, SMILES, name, experiment and each method, each with σ (kcal/mol)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["expt"] + list(METHODS)
    w.writerow(["id", "smiles", "iupac"] + [x for k in cols for x in (f"{k}_kcal_mol", f"{k}_sigma")]
               + ["status", "error"])
    for r in rows:
        vals = []
        for k in cols:
            e = r.expt if k == "expt" else r.values.get(k)
            vals += ["", ""] if e is None else [f"{e.value:.4f}", "" if not math.isfinite(e.error) else f"{e.error:.4f}"]
        w.writerow([r.id, r.smiles, r.iupac] + vals + [r.status, r.error or ""])
    return buf.getvalue()


def _columns(rows: Sequence[Row]) -> list[str]:
    """The methods with a value for at least one molecule (FreeSolv GAFF always)."""
    return [k for k in METHODS if k == "gaff" or any(r.values.get(k) is not None for r in rows)]


def table_markdown(rows: Sequence[Row]) -> str:
    cols = _columns(rows)
    head = ["id", "SMILES", "experiment"] + [METHODS[k] for k in cols] + ["status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.id, f"`{r.smiles}`", _pm(r.expt)] + [_pm(r.values.get(k)) for k in cols] + [r.status]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def stats_markdown(stats: Sequence[ErrorStats]) -> str:
    if not stats:
        return "No finished molecule yet: no statistics.\n"
    conf = f"{100 * stats[0].confidence:.0f} %"
    lines = [f"| method | n | MAE [{conf} CI] | RMSE [{conf} CI] | R² [{conf} CI] | mean signed error [{conf} CI] |",
             "|---|---|---|---|---|---|"]
    for s in stats:
        lines.append(f"| {METHODS.get(s.method, s.method)} | {s.n} | {s.mae.text()} | {s.rmse.text()} | "
                     f"{s.r2.text()} | {s.mse.text()} |")
    return "\n".join(lines) + "\n"


def scatter_plot(path: Path, rows: Sequence[Row], stats: Sequence[ErrorStats] = ()) -> Optional[Path]:
    """Computed against experimental ΔG_hyd (kcal/mol) for every method of the finished molecules,
    with σ error bars on both axes, the line y = x and a ±1 kcal/mol band. None when there is no point."""
    done = [r for r in rows if r.status == "done" and r.expt is not None]
    cols = [k for k in _columns(done) if any(r.values.get(k) is not None for r in done)]
    if not done or not cols:
        return None
    from .plots import _plt

    plt = _plt()
    mae = {s.method: s.mae.value for s in stats}
    fig, ax = plt.subplots(figsize=(5.5, 5.2))
    style = {"gaff": ("s", "tab:gray"), "mm": ("^", "tab:blue"), "ml": ("o", "tab:orange"),
             "ml_reorg": ("D", "tab:red")}
    allv = []
    for k in cols:
        pts = [(r.expt, r.values[k]) for r in done if r.values.get(k) is not None]
        x = np.array([p[0].value for p in pts])
        y = np.array([p[1].value for p in pts])
        xe = np.nan_to_num(np.array([p[0].error for p in pts]))
        ye = np.nan_to_num(np.array([p[1].error for p in pts]))
        allv += list(x) + list(y)
        label = METHODS[k] + (f" (MAE {mae[k]:.2f})" if k in mae and math.isfinite(mae[k]) else "")
        m, c = style.get(k, ("o", None))
        ax.errorbar(x, y, xerr=xe, yerr=ye, fmt=m, color=c, ms=5, capsize=2, lw=0.8, label=label, alpha=0.85)
    lo, hi = min(allv) - 1.5, max(allv) + 1.5
    line = np.array([lo, hi])
    ax.fill_between(line, line - BAND, line + BAND, color="0.85", zorder=0, label=f"±{BAND:g} kcal/mol")
    ax.plot(line, line, "k-", lw=0.8, zorder=1, label="y = x")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("experimental ΔG$_{hyd}$ (kcal/mol)")
    ax.set_ylabel("computed ΔG$_{hyd}$ (kcal/mol)")
    ax.set_title(f"FreeSolv hydration free energies ({len(done)} molecules)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    files.write_with(path, lambda fh: fig.savefig(fh, format="png", dpi=130))
    plt.close(fig)
    return Path(path)


def report_markdown(rows: Sequence[Row], stats: Sequence[ErrorStats], *, settings: dict, selection: dict,
                    skipped: Sequence = (), plot: Optional[str] = None) -> str:
    """The benchmark's report: settings, selection, statistics, the scatter plot, the table, and
    every skipped, failed or pending molecule with its reason."""
    done = [r for r in rows if r.status == "done"]
    failed = [r for r in rows if r.status == "failed"]
    pending = [r for r in rows if r.status == "pending"]
    out = ["# FreeSolv hydration free-energy benchmark", "",
           f"{len(done)} of {len(rows)} selected molecules finished"
           + (f", {len(failed)} failed" if failed else "") + (f", {len(pending)} not run yet" if pending else "")
           + (f"; {len(skipped)} skipped" if skipped else "") + ". Free energies in kcal/mol; σ is one standard "
           "error. Experiment and FreeSolv GAFF (GAFF/AM1-BCC/TIP3P) from FreeSolv v0.52.", ""]
    if pending or failed:
        out += ["**Incomplete**: the statistics cover the finished molecules only; rerun the same command to "
                "continue.", ""]
    out += ["## Settings", ""] + [f"- {k}: `{v}`" for k, v in settings.items()] + [""]
    ran: dict = {}
    for r in rows:
        for label, text in r.runs.items():
            ran[(label, text)] = ran.get((label, text), 0) + 1
    if ran:
        out += ["As the finished runs' results.json record them:", ""]
        out += [f"- {label} runs: {text} ({n} run{'s' if n > 1 else ''})" for (label, text), n in sorted(ran.items())]
        out += [""]
    out += ["## Selection", ""] + [f"- {k}: `{v}`" for k, v in selection.items()] + [""]
    conf = f"{100 * stats[0].confidence:.0f} %" if stats else "95 %"
    nb = stats[0].n_bootstrap if stats else 0
    out += ["## Statistics against experiment", "",
            f"Over the finished molecules; each method over those of them it has a value for. {conf} confidence "
            f"intervals from {nb} bootstrap resamples of the molecules (percentile). R²: squared Pearson "
            "correlation; mean signed error: computed − experiment.", "", stats_markdown(stats)]
    if plot:
        out += [f"![computed against experiment]({plot})", ""]
    out += ["## Molecules", "", table_markdown(rows)]
    if skipped:
        out += ["## Skipped", ""] + [f"- {s['id']} (`{s['smiles']}`): {s['reason']}" for s in skipped] + [""]
    warned = [r for r in rows if r.warnings]
    if warned:
        out += ["## Warnings", "", "The runs' own warnings: these numbers may not be supported by the sampling.", ""]
        out += [f"- {r.id}: {w}" for r in warned for w in r.warnings] + [""]
    if failed:
        out += ["## Failed", "", "Rerun the same command to retry them.", ""]
        out += [f"- {r.id} (`{r.smiles}`): {r.error}" for r in failed] + [""]
    if pending:
        out += ["## Not run yet", "", ", ".join(r.id for r in pending), ""]
    return "\n".join(out)


def _finite(o):
    """``o`` with NaN/inf floats as None (strict JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def write_outputs(out_dir, rows: Sequence[Row], *, settings: dict, selection: dict, skipped: Sequence = (),
                  n_bootstrap: int = 2000, seed: int = 0, confidence: float = 0.95, plot: bool = True) -> dict:
    """Write the table (CSV and markdown), the scatter plot, the report and ``benchmark.json`` into
    ``out_dir``; returns {"stats": [ErrorStats], "files": {kind: path}}."""
    out_dir = Path(out_dir)
    stats = method_stats(rows, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)
    paths = {k: out_dir / v for k, v in OUTPUTS.items()}
    files.write_text(paths["csv"], table_csv(rows))
    files.write_text(paths["markdown"], table_markdown(rows))
    png = None
    if plot:
        try:
            png = scatter_plot(paths["plot"], rows, stats)
        except Interrupted:
            raise
        except Exception as exc:  # a plot must not cost the table
            log.warning("no scatter plot: %s", exc)
    if png is None:
        paths.pop("plot")
    files.write_text(paths["report"], report_markdown(rows, stats, settings=settings, selection=selection,
                                                      skipped=skipped, plot=OUTPUTS["plot"] if png else None))
    files.write_json(paths["json"], _finite({"units": "kcal/mol", "settings": settings, "selection": selection,
                                     "statistics": [s.to_json() for s in stats],
                                     "molecules": [r.to_json() for r in rows], "skipped": list(skipped)}), indent=1)
    return {"stats": stats, "files": {k: str(p) for k, p in paths.items()}}
