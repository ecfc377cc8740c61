"""ΔG of two finished hydration runs of the same molecule, side by side (``mdi-mlmm compare-dg``).

Typical use: the same molecule and model on the two hosts (``--host gromacs`` / ``--host lammps``),
or the same host with two models or settings. For every estimator both runs report — TI, MBAR, BAR
and, for ML models, the same plus the reorganization energy (``dG_X_plus_reorg``) — it gives each
run's ΔG_hyd ± σ, ΔΔG = ΔG_A − ΔG_B with σ = √(σ_A² + σ_B²) (independent runs), and whether
|ΔΔG| ≤ 2σ. An estimator whose ΔG or σ is not a finite number (a failed BAR σ, say) has no verdict.

Refused with one line (:class:`~mdi_mlmm.errors.UserInputError` /
:class:`~mdi_mlmm.errors.AnalysisError`): runs of different molecules (SMILES, compared canonically
when RDKit is there, else the FreeSolv id or name) or temperatures, a run that has not finished
(a λ window, the gas run or an endpoint leg without ``done.json``), a run without an analysis
(``mdi-mlmm analyze``), and a damaged ``results.json`` or ``plan.json``. kcal/mol throughout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import AnalysisError, UserInputError
from . import validate
from .results import Estimate

#: estimators in report order; each also "+ reorg" where a run has it
ESTIMATOR_ORDER = ("TI", "MBAR", "BAR")
#: |ΔΔG| within this many combined σ counts as agreement
AGREE_SIGMAS = 2.0


@dataclass(frozen=True)
class RunSummary:
    """What identifies one run in the comparison."""

    run_dir: str
    host: str
    model: str
    route: str
    molecule: str            #: name (FreeSolv id) and SMILES, for display
    smiles: Optional[str]
    temperature_K: float
    warnings: tuple = ()     #: the run's own analysis warnings (poor overlap, ...)

    def to_json(self) -> dict:
        return {"run_dir": self.run_dir, "host": self.host, "model": self.model, "route": self.route,
                "molecule": self.molecule, "smiles": self.smiles, "temperature_K": self.temperature_K,
                "warnings": list(self.warnings)}


@dataclass(frozen=True)
class Row:
    """One estimator: each run's ΔG_hyd, ΔΔG = A − B with the combined σ, and the 2σ verdict
    (None when a value or σ is missing or not finite)."""

    estimator: str
    a: Optional[Estimate]
    b: Optional[Estimate]
    ddG: Optional[Estimate]
    n_sigma: Optional[float]
    agree: Optional[bool]

    def to_json(self) -> dict:
        def est(e):
            return e.to_json() if e is not None else None

        return {"estimator": self.estimator, "A": est(self.a), "B": est(self.b), "ddG": est(self.ddG),
                "n_sigma": self.n_sigma, "agree_within_2sigma": self.agree}


@dataclass
class DGComparison:
    """The result of :func:`compare_dg`; ``table()`` for people, ``to_json()`` for programs."""

    a: RunSummary
    b: RunSummary
    rows: list[Row] = field(default_factory=list)

    @property
    def agree(self) -> Optional[bool]:
        """True when every estimator with a verdict agrees, False when one does not, None if none has one."""
        verdicts = [r.agree for r in self.rows if r.agree is not None]
        return None if not verdicts else all(verdicts)

    def to_json(self) -> dict:
        """Plain data for strict JSON: a value or σ that is not finite is None."""
        return _strict({"A": self.a.to_json(), "B": self.b.to_json(), "units": "kcal/mol", "ddG": "A - B",
                        "agree_sigmas": AGREE_SIGMAS, "rows": [r.to_json() for r in self.rows],
                        "all_agree": self.agree})

    def table(self) -> str:
        def label(s: RunSummary) -> str:
            return f"{s.host}, {s.model}, {s.route} route: {s.run_dir}"

        def pm(e: Optional[Estimate]) -> str:
            if e is None:
                return "—"
            err = f"{e.error:.2f}" if math.isfinite(e.error) else "n/a"
            return f"{e.value:8.2f} ± {err}" if math.isfinite(e.value) else "n/a"

        lines = [f"ΔG_hyd of {self.a.molecule} at {self.a.temperature_K:g} K (kcal/mol)",
                 f"  A: {label(self.a)}", f"  B: {label(self.b)}", "",
                 f"  {'estimator':<13}{'A':>17}{'B':>17}{'ΔΔG = A − B':>19}{'|ΔΔG|/σ':>10}  within 2σ"]
        for r in self.rows:
            verdict = "—" if r.agree is None else ("yes" if r.agree else "NO")
            ns = "—" if r.n_sigma is None else f"{r.n_sigma:.1f}"
            lines.append(f"  {r.estimator:<13}{pm(r.a):>17}{pm(r.b):>17}{pm(r.ddG):>19}{ns:>10}  {verdict}")
        overall = {True: "the runs agree within 2σ for every estimator",
                   False: "the runs DISAGREE beyond 2σ for: "
                          + ", ".join(r.estimator for r in self.rows if r.agree is False),
                   None: "no estimator has a ΔG and a σ in both runs: no verdict"}[self.agree]
        lines += ["", overall]
        if self.a.model != self.b.model:
            lines.append(f"  note: different models ({self.a.model}, {self.b.model}): ΔΔG includes the model's effect")
        for tag, s in (("A", self.a), ("B", self.b)):
            lines += [f"  warning ({tag}): {w}" for w in s.warnings]
        return "\n".join(lines)


def _strict(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _strict(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x) for x in v]
    return v


def _estimates(d: dict, path: Path) -> dict[str, Estimate]:
    """``{"TI": Estimate, "TI + reorg": ..., ...}`` of a results.json content (keys dG_X, dG_X_plus_reorg)."""
    out = {}
    for name in ESTIMATOR_ORDER:
        for key, label in ((f"dG_{name}", name), (f"dG_{name}_plus_reorg", f"{name} + reorg")):
            if key not in d:
                continue
            v = d[key]
            try:
                out[label] = Estimate(float(v["value"]), float(v["error"]) if v.get("error") is not None
                                      else math.nan)
            except (TypeError, KeyError, ValueError):
                raise validate.damaged(path, f"{key} is {v!r}, not a value with an error") from None
    if not out:
        raise validate.damaged(path, "no ΔG of any estimator (dG_TI, dG_MBAR, dG_BAR)")
    return out


def _unfinished(run_dir: Path, plan) -> list[str]:
    """The directories of the plan's simulations that have no ``done.json`` (relative to ``run_dir``)."""
    dirs = [str(w.directory) for w in plan.windows]
    if plan.route == "endpoint":
        dirs += [plan.leg_directory(phase, k) for phase in ("water", "gas") for k in range(len(plan.leg_lambdas))]
    elif plan.ml and plan.gas_steps > 0:
        dirs.append("gas")
    return [d for d in dirs if not (run_dir / d / "done.json").is_file()]


def _canonical(smiles: Optional[str]) -> Optional[str]:
    if not smiles:
        return None
    try:
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")
        mol = Chem.MolFromSmiles(smiles)
        return Chem.MolToSmiles(mol) if mol is not None else smiles
    except ImportError:  # pragma: no cover - rdkit is in the prep extra
        return smiles


def load_run(run_dir) -> tuple[RunSummary, dict[str, Estimate], dict]:
    """One finished, analysed run: its summary, its estimates and the identity used to match runs."""
    from ..protocol.plan import PLAN_NAME, Plan

    run_dir = Path(run_dir).resolve()
    plan_path = run_dir / PLAN_NAME
    if not plan_path.is_file():
        raise UserInputError(f"{run_dir} is not a hydration run directory (no {PLAN_NAME})")
    try:
        plan = Plan.from_json(validate.read_json(plan_path, "plan of the hydration run"))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise validate.damaged(plan_path, f"malformed plan ({type(exc).__name__}: {exc})") from None
    todo = _unfinished(run_dir, plan)
    if todo:
        raise UserInputError(f"{run_dir} is not finished: {len(todo)} simulation(s) without done.json "
                             f"({', '.join(todo[:3])}{', ...' if len(todo) > 3 else ''}); rerun `mdi-mlmm hydration` "
                             "with the same --out to finish it, then `mdi-mlmm analyze`")
    res_path = run_dir / "analysis" / "results.json"
    if not res_path.is_file():
        raise UserInputError(f"{run_dir} has no analysis yet ({res_path} missing): run `mdi-mlmm analyze {run_dir}`")
    d = validate.read_json(res_path, "results of the analysis", ("model", "host", "temperature_K"))
    est = _estimates(d, res_path)
    mol = d.get("molecule") or {}
    smiles = mol.get("smiles") or plan.smiles
    name = mol.get("name") or plan.name or plan.freesolv_id
    try:
        temperature = float(d["temperature_K"])
    except (TypeError, ValueError):
        raise validate.damaged(res_path, f"temperature_K {d['temperature_K']!r} is not a number") from None
    summary = RunSummary(run_dir=str(run_dir), host=str(d["host"]), model=str(d["model"]),
                         route=str(d.get("route", plan.route)),
                         molecule=" ".join(x for x in (name, f"({smiles})" if smiles else None) if x) or "?",
                         smiles=smiles, temperature_K=temperature, warnings=tuple(d.get("warnings") or ()))
    ident = {"smiles": _canonical(smiles), "freesolv_id": plan.freesolv_id, "name": name}
    return summary, est, ident


def _same_molecule(ia: dict, ib: dict) -> Optional[bool]:
    for key in ("smiles", "freesolv_id", "name"):
        if ia.get(key) and ib.get(key):
            return ia[key] == ib[key]
    return None


def _row(name: str, a: Optional[Estimate], b: Optional[Estimate]) -> Row:
    if a is None or b is None or not (math.isfinite(a.value) and math.isfinite(b.value)):
        return Row(name, a, b, None, None, None)
    sigma = math.hypot(a.error, b.error)
    dd = Estimate(a.value - b.value, sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        return Row(name, a, b, dd, None, None)
    ns = abs(dd.value) / sigma
    return Row(name, a, b, dd, ns, ns <= AGREE_SIGMAS)


def compare_dg(run_a, run_b) -> DGComparison:
    """Compare the ΔG_hyd of two finished, analysed hydration runs of the same molecule (module docstring)."""
    sa, ea, ia = load_run(run_a)
    sb, eb, ib = load_run(run_b)
    same = _same_molecule(ia, ib)
    if same is None:
        raise UserInputError(f"cannot tell whether {sa.run_dir} and {sb.run_dir} are the same molecule "
                             "(neither SMILES nor name recorded)")
    if not same:
        raise UserInputError(f"different molecules: {sa.molecule} in {sa.run_dir}, {sb.molecule} in {sb.run_dir}; "
                             "ΔG is compared for runs of the same molecule only")
    if abs(sa.temperature_K - sb.temperature_K) > 1e-6:
        raise UserInputError(f"different temperatures: {sa.temperature_K:g} K ({sa.run_dir}) and "
                             f"{sb.temperature_K:g} K ({sb.run_dir}); ΔG_hyd depends on T")
    names = [n for n in ea if n in eb] + [n for n in ea if n not in eb] + [n for n in eb if n not in ea]
    order = {f"{e}{s}": k for k, (s, e) in enumerate((s, e) for s in ("", " + reorg") for e in ESTIMATOR_ORDER)}
    names.sort(key=lambda n: order.get(n, len(order)))
    return DGComparison(sa, sb, [_row(n, ea.get(n), eb.get(n)) for n in names])
