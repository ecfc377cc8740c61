"""The FreeSolv benchmark: many hydration runs, one per molecule, then statistics against experiment.

Everything lives in one directory::

    DIR/settings.json               the runs' settings; a rerun with other settings is refused
    DIR/molecules/<id>/ml/          the hydration run of the model (an ML model)
    DIR/molecules/<id>/mm/          the plain-MM hydration run (model ``mm``, or ``with_mm``)
    DIR/molecules/<id>/<run>.error  the last failure of that run, one line (removed once it succeeds)
    DIR/table.csv, table.md         one line per molecule (:mod:`mdi_mlmm.analysis.benchmark`)
    DIR/scatter.png, report.md      computed against experiment; the report with the statistics
    DIR/benchmark.json              statistics and rows as data

Molecules run one after another; the λ windows of each run in parallel on the local pool or the
Dask cluster of its hydration run (``workers``, ``scheduler``), which also gives each molecule its
own progress bar below the bar over the molecules. A run whose ``analysis/results.json`` exists is
finished and never run again, so rerunning the same benchmark continues where it stopped (inside a
molecule too: its hydration run resumes). A molecule whose run fails is recorded with its error
line and the benchmark goes on; the outputs are rewritten after every molecule.

The per-molecule run itself comes from the caller (:class:`mdi_mlmm.api.FreeSolvBenchmark` passes
:class:`~mdi_mlmm.api.HydrationFreeEnergy`), so this module stays below the API.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from .. import files
from .. import progress as progress_display
from ..analysis import benchmark as bench
from ..analysis.results import Estimate
from ..errors import ChargedSystemError, Interrupted, MdiMlmmError, UnsupportedElementError, UserInputError
from ..potentials import registry
from ..prep import freesolv
from ..protocol.plan import (LEG_LAMBDA_TOL, RESOLVED, added_leg_lambdas, leg_lambdas_hint, resolved_settings,
                              settings_as_started)

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
#: run settings that may change between attempts (how to run, not what is computed)
HOW_TO_RUN = ("workers", "scheduler", "shared_model", "device", "checkpoint_every")
#: settings added since a benchmark on disk may have been started, with the value its runs had then
#: (compared as such; other settings only one side knows are not compared). split_decoupling and
#: mass_repartition came with their keys in settings.json and in plan.json at once, and settings.json is
#: rewritten before any run: a settings.json without one only ever planned runs without it, which ran
#: unsplit (Plan's False) and with their hydrogen masses as they are (None: off)
ADDED_SINCE = {"dtype": "float64", "leg_end_ps": None, "split_decoupling": False, "mass_repartition": None,
               "leg_lambdas": None}
#: ``run(freesolv_id, model, run_dir, progress)``: run or resume one hydration run, writing
#: ``run_dir/analysis/results.json``; raises on failure
RunFn = Callable[[str, str, Path, bool], object]


# ------------------------------------------------------------------------------ selection
@dataclass(frozen=True)
class Molecule:
    """A FreeSolv compound as the selection sees it: elements (with H), heavy atoms, net charge (e)."""

    entry: freesolv.FreeSolvEntry
    elements: tuple
    heavy_atoms: int
    net_charge: int

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def smiles(self) -> str:
        return self.entry.smiles


def describe(entry: freesolv.FreeSolvEntry) -> Molecule:
    """The elements, heavy-atom count and net charge of ``entry`` from its SMILES (RDKit, explicit H)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(entry.smiles)
    if mol is None:
        raise UserInputError(f"RDKit cannot parse the SMILES {entry.smiles!r} of {entry.id}")
    mol = Chem.AddHs(mol)
    return Molecule(entry, tuple(sorted({a.GetSymbol() for a in mol.GetAtoms()})), mol.GetNumHeavyAtoms(),
                    int(Chem.GetFormalCharge(mol)))


def parse_elements(text) -> Optional[frozenset]:
    """``"C,H,N,o,cl"`` or an iterable of symbols -> {"C", "H", "N", "O", "Cl"}; None stays None."""
    if text is None:
        return None
    items = text.replace(" ", ",").split(",") if isinstance(text, str) else list(text)
    out = frozenset(s.strip().capitalize() for s in items if s and s.strip())
    if not out:
        raise UserInputError("elements: give at least one element symbol, e.g. C,H,N,O")
    return out


@dataclass(frozen=True)
class Filters:
    """Which molecules may be selected: every element in ``elements`` (H included: list it),
    ``min_heavy_atoms`` ≤ heavy atoms ≤ ``max_heavy_atoms``. None: no limit."""

    elements: Optional[frozenset] = None
    min_heavy_atoms: Optional[int] = None
    max_heavy_atoms: Optional[int] = None

    def reason(self, m: Molecule) -> Optional[str]:
        """Why ``m`` does not pass, or None."""
        if self.elements is not None:
            bad = [e for e in m.elements if e not in self.elements]
            if bad:
                return f"element(s) {' '.join(bad)} outside --elements {','.join(sorted(self.elements))}"
        if self.min_heavy_atoms is not None and m.heavy_atoms < self.min_heavy_atoms:
            return f"{m.heavy_atoms} heavy atoms < --min-heavy-atoms {self.min_heavy_atoms}"
        if self.max_heavy_atoms is not None and m.heavy_atoms > self.max_heavy_atoms:
            return f"{m.heavy_atoms} heavy atoms > --max-heavy-atoms {self.max_heavy_atoms}"
        return None

    def to_json(self) -> dict:
        return {"elements": ",".join(sorted(self.elements)) if self.elements else None,
                "min_heavy_atoms": self.min_heavy_atoms, "max_heavy_atoms": self.max_heavy_atoms}


def model_reason(model: str, m: Molecule) -> Optional[str]:
    """Why ``model`` cannot describe ``m`` (elements, net charge; the model registry's check), or None."""
    try:
        registry.resolve(model).check_solute(m.elements, m.net_charge)
    except (UnsupportedElementError, ChargedSystemError) as exc:
        return str(exc)
    return None


@dataclass
class Selection:
    """The molecules to run, those skipped (``{"id", "smiles", "reason"}``, one line each) and how
    they were chosen (``description``: mode, seed, filters, counts)."""

    molecules: list
    skipped: list = field(default_factory=list)
    description: dict = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.molecules]


def _all_ids() -> list[str]:
    return sorted(freesolv._database(str(freesolv.freesolv_dir() / "database.json")))


def select(*, model: str, ids: Optional[Sequence[str]] = None, subset: Optional[int] = None, all: bool = False,
           seed: int = 0, filters: Filters = Filters()) -> Selection:
    """The molecules of a benchmark: exactly one of ``ids`` (FreeSolv ids, in the given order),
    ``subset`` (N molecules drawn at random, reproducibly for a ``seed``, from those that pass the
    filters and that ``model`` can describe) or ``all`` (every such molecule, by id).

    Given ids that fail the filters or that the model cannot describe (elements, net charge) are
    skipped, each with one logged line (and listed in :attr:`Selection.skipped`); an unknown id is a
    :class:`UserInputError`."""
    if sum([ids is not None, subset is not None, bool(all)]) != 1:
        raise UserInputError("choose the molecules with exactly one of ids, subset or all")
    registry.resolve(model)   # an unknown model fails here, once
    desc = {"model": model, **filters.to_json()}
    if ids is not None:
        ids = list(dict.fromkeys(i.strip() for i in ids if i and i.strip()))
        if not ids:
            raise UserInputError("ids: give at least one FreeSolv id (e.g. mobley_2310185)")
        chosen, skipped = [], []
        for cid in ids:
            m = describe(freesolv.lookup(cid))
            why = filters.reason(m) or model_reason(model, m)
            if why:
                log.warning("skipping %s (%s): %s", m.id, m.smiles, why)
                skipped.append({"id": m.id, "smiles": m.smiles, "reason": why})
            else:
                chosen.append(m)
        desc.update(mode="ids", requested=len(ids), selected=len(chosen), skipped=len(skipped))
        return Selection(chosen, skipped, desc)
    if subset is not None and subset < 1:
        raise UserInputError(f"subset must be at least 1, got {subset}")
    pool, n_filtered, n_model = [], 0, 0
    for cid in _all_ids():
        try:
            m = describe(freesolv.lookup(cid))
        except UserInputError:
            n_filtered += 1
            continue
        if filters.reason(m):
            n_filtered += 1
        elif model_reason(model, m):
            n_model += 1
        else:
            pool.append(m)
    total = len(pool) + n_filtered + n_model
    log.info("%d of %d FreeSolv molecules pass the filters and suit model %s (%d outside the filters, %d that "
             "the model cannot describe)", len(pool), total, model, n_filtered, n_model)
    desc.update(pool=len(pool), database=total, outside_filters=n_filtered, outside_model=n_model)
    if all:
        desc.update(mode="all", selected=len(pool))
        return Selection(pool, [], desc)
    if subset > len(pool):
        log.warning("subset %d is larger than the %d molecules that qualify: taking them all", subset, len(pool))
    k = min(subset, len(pool))
    pick = np.random.default_rng(seed).choice(len(pool), size=k, replace=False) if k else []
    chosen = [pool[i] for i in sorted(int(i) for i in pick)]
    desc.update(mode="subset", subset=subset, seed=seed, selected=len(chosen))
    return Selection(chosen, [], desc)


# ------------------------------------------------------------------------------ runs
def run_labels(model: str, with_mm: bool, route: str = "direct") -> list[tuple[str, str]]:
    """[(run label, model)] for each molecule: ``("mm", "mm")`` for a plain-MM benchmark; else
    ``("ml", model)`` and, with ``with_mm`` on the direct route, ``("mm", "mm")`` (the endpoint
    route computes ΔG_hyd(MM) itself)."""
    if not registry.is_ml(model):
        return [("mm", model)]
    return [("ml", model)] + ([("mm", "mm")] if with_mm and route == "direct" else [])


def molecule_dir(out, cid: str) -> Path:
    return Path(out) / "molecules" / cid


def finished(run_dir) -> bool:
    """Whether a hydration run directory holds its analysis (the run is done)."""
    return (Path(run_dir) / "analysis" / "results.json").is_file()


def _finished_at(run_dir, leg_lambdas) -> bool:
    """:func:`finished`, and (``leg_lambdas`` not None: an endpoint benchmark) its results.json's legs hold every
    λ of ``leg_lambdas``: a run finished before λ were added (``--leg-lambdas``) runs again to add those windows."""
    if not finished(run_dir):
        return False
    if leg_lambdas is None:
        return True
    try:
        have = (json.loads((Path(run_dir) / "analysis" / "results.json").read_text()).get("legs") or {}).get("lambdas")
    except (OSError, ValueError, AttributeError):   # damaged: finished, as before (the table reports it)
        return True
    return have is None or all(any(abs(float(x) - float(y)) <= LEG_LAMBDA_TOL for y in have) for x in leg_lambdas)


def _error_file(out, cid: str, label: str) -> Path:
    return molecule_dir(out, cid) / f"{label}.error"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, MdiMlmmError) else f"{type(exc).__name__}: {text}"


def check_settings(out, settings: dict) -> dict:
    """Write ``out/settings.json``, or refuse when it holds other run settings (those in
    :data:`HOW_TO_RUN` may change): finished runs would otherwise mix two protocols. Settings that
    only one side knows (added to the code since) are not compared. Returns the settings the runs go
    on with: ``settings`` with those of :data:`~mdi_mlmm.protocol.plan.AS_STARTED` not asked for (None) as on
    disk. Settings whose None stands for a value (time steps, windows, ...) are compared as the plan gets them
    (:func:`~mdi_mlmm.protocol.plan.resolved_settings`): ``--windows 20`` continues a benchmark started
    without --windows, as ``mdi-mlmm hydration`` continues a run; ``--leg-lambdas`` holding every leg λ on disk
    and more continues it too (each run adds those windows: :func:`~mdi_mlmm.protocol.plan.load_or_create`)."""
    path = Path(out) / SETTINGS_FILE
    new = as_started(out, settings)
    if path.exists():
        old = _on_disk(path, new)
        keys = sorted((set(old) & set(new)) - set(HOW_TO_RUN))   # a setting added since: its default then
        if not registry.is_ml(new.get("model")):
            keys = [k for k in keys if k != "dtype"]   # plain MM loads no model
        shown = {k: (old.get(k), new.get(k)) for k in keys}
        if any(shown[k][0] != shown[k][1] for k in keys):   # compared as the plan gets them (None: its default)
            r_old, r_new = resolved_settings(old), resolved_settings(new)
            shown.update({k: (r_old[k], r_new[k]) for k in RESOLVED if k in shown})
        if "split_decoupling" in keys and old["split_decoupling"] != new["split_decoupling"]:
            shown["split_decoupling"] = (_split_of(old), _split_of(new))   # None: what make_plan makes of it
        diffs = [k for k in keys if shown[k][0] != shown[k][1]]
        if "leg_lambdas" in diffs and added_leg_lambdas(shown["leg_lambdas"][0], [], shown["leg_lambdas"][1]):
            diffs = [k for k in diffs if k not in ("leg_lambdas", "leg_windows")]   # leg windows added: runs go on
        if diffs:
            listed = ", ".join(f"{k}: {shown[k][0]!r} on disk vs {shown[k][1]!r} now" for k in diffs[:4])
            hint = f" (--dtype {old['dtype']})" if "dtype" in diffs else ""
            if "split_decoupling" in diffs:
                hint += (" (without --no-split-decoupling: it ran split)" if shown["split_decoupling"][0] else
                         " (without split_decoupling=True: it ran unsplit)")
            if "mass_repartition" in diffs:
                factor = shown["mass_repartition"][0]
                hint += (f" (--mass-repartition {factor:g} or without it: its runs repartitioned hydrogen masses)"
                         if factor else " (without --mass-repartition: its runs kept the hydrogen masses)")
            if "leg_lambdas" in diffs and old.get("route") == new.get("route") == "endpoint":
                hint += leg_lambdas_hint(shown["leg_lambdas"][0])
            raise UserInputError(f"{out} holds a benchmark with other settings ({listed}); rerun with the original "
                                 f"options{hint} to continue it, or choose another --out")
    files.write_json(path, new, indent=1)
    return new


def as_started(out, settings: dict) -> dict:
    """``settings`` (a copy) with those of :data:`~mdi_mlmm.protocol.plan.AS_STARTED` not asked for (None) as the
    benchmark in ``out`` was started (its settings.json), so that every molecule's run, new ones too, is made
    alike (:func:`~mdi_mlmm.protocol.plan.settings_as_started`)."""
    new = json.loads(json.dumps(settings))
    path = Path(out) / SETTINGS_FILE
    return settings_as_started(new, _on_disk(path, new) if path.exists() else None)


def _on_disk(path: Path, new: dict) -> dict:
    """settings.json, with the settings added since it was written (and that ``new`` has) as they were then."""
    old = json.loads(path.read_text())
    old.update({k: v for k, v in ADDED_SINCE.items() if k in new and k not in old})
    return old


def _split_of(settings: dict) -> bool:
    """Whether the decoupling windows of runs with these benchmark settings run split."""
    from ..protocol.plan import split_decoupling_of

    return split_decoupling_of(settings.get("split_decoupling"), host=settings.get("host"),
                               route=settings.get("route", "direct"), windows=settings.get("windows"))


def collect_rows(out, molecules: Iterable[Molecule], labels: Sequence[tuple[str, str]],
                 estimator: str = "MBAR") -> list:
    """The table's rows from what is on disk: FreeSolv's values and every finished run's numbers."""
    rows = []
    for m in molecules:
        e = m.entry
        row = bench.Row(id=m.id, smiles=m.smiles, iupac=e.iupac,
                        expt=Estimate(e.expt, e.d_expt if e.d_expt is not None else float("nan"))
                        if e.expt is not None else None)
        if e.calc is not None:
            row.values["gaff"] = Estimate(e.calc, e.d_calc if e.d_calc is not None else float("nan"))
        errors, done = [], 0
        terms = {}
        for label, _model in labels:
            rd = molecule_dir(out, m.id) / label
            if finished(rd):
                done += 1
                t = bench.terms_from_results(json.loads((rd / "analysis" / "results.json").read_text()), estimator)
                terms[label] = t
                row.runs[label] = t["run"]
                row.warnings += [f"{label} run: {w}" for w in t["warnings"]]
            elif _error_file(out, m.id, label).exists():
                errors.append(f"{label} run: {_error_file(out, m.id, label).read_text().strip()}")
        ml = terms.get("ml", {})
        for k in ("ml", "ml_reorg"):
            if ml.get(k) is not None:
                row.values[k] = ml[k]
        mm = (terms.get("mm") or {}).get("mm") or ml.get("mm")
        if mm is not None:
            row.values["mm"] = mm
        row.status = "done" if done == len(labels) else ("failed" if errors else "pending")
        row.error = "; ".join(errors) or None
        rows.append(row)
    return rows


@dataclass
class BenchmarkResult:
    """A benchmark's rows (:class:`mdi_mlmm.analysis.benchmark.Row`), statistics
    (:class:`~mdi_mlmm.analysis.benchmark.ErrorStats`), skipped molecules and output files."""

    out_dir: str
    rows: list
    stats: list
    skipped: list
    files: dict

    @property
    def failed(self) -> list:
        return [r for r in self.rows if r.status == "failed"]

    @property
    def done(self) -> list:
        return [r for r in self.rows if r.status == "done"]

    def __str__(self) -> str:
        lines = [f"FreeSolv benchmark: {len(self.done)} of {len(self.rows)} molecules finished"
                 + (f", {len(self.failed)} failed" if self.failed else "")
                 + (f", {len(self.skipped)} skipped" if self.skipped else "") + " (kcal/mol, 95 % bootstrap CI)"]
        for s in self.stats:
            lines.append(f"  {bench.METHODS.get(s.method, s.method):<18} n={s.n:<3} MAE {s.mae.text()}  "
                         f"RMSE {s.rmse.text()}  R² {s.r2.text()}")
        lines += [f"  failed: {r.id}: {r.error}" for r in self.failed]
        return "\n".join(lines)


def run_benchmark(out, selection: Selection, run: RunFn, *, settings: dict, with_mm: bool = False,
                  estimator: str = "MBAR", n_bootstrap: int = 2000, seed: int = 0,
                  progress: bool = True) -> BenchmarkResult:
    """Run (or continue) the benchmark of ``selection`` in ``out``: for each molecule the runs of
    :func:`run_labels` through ``run`` (skipping finished ones), then the table, plot and report.

    ``settings``: the runs' settings (``model`` among them), kept in ``settings.json``. A failing
    run is recorded (``<run>.error``, the report) and the next molecule starts;
    :class:`~mdi_mlmm.errors.Interrupted` (SIGTERM/SIGINT) stops the benchmark."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = check_settings(out, settings)
    labels = run_labels(settings["model"], with_mm, settings.get("route", "direct"))
    mols = selection.molecules
    report_settings = {**settings, "with_mm": with_mm, "estimator": estimator}

    def write():
        rows = collect_rows(out, mols, labels, estimator)
        w = bench.write_outputs(out, rows, settings=report_settings, selection=selection.description,
                                skipped=selection.skipped, n_bootstrap=n_bootstrap, seed=seed)
        return rows, w

    # on the endpoint route a run finished before leg λ were added runs again (it adds only those windows)
    leg_lambdas = resolved_settings(settings)["leg_lambdas"] if settings.get("route") == "endpoint" else None

    def complete(m):
        return all(_finished_at(molecule_dir(out, m.id) / label, leg_lambdas) for label, _ in labels)

    todo = [m for m in mols if not complete(m)]
    if len(todo) < len(mols):
        log.info("%d of %d molecules already finished: not run again", len(mols) - len(todo), len(mols))
    # a live bar on a terminal (each molecule's own bar below it); in a log, one line per molecule instead
    # (tqdm's nested bars would write cursor movements into the file)
    bar = progress_display.Bar(len(mols), unit="molecule", desc="FreeSolv benchmark",
                               enabled=progress and sys.stderr.isatty())
    n_done, n_failed = len(mols) - len(todo), 0
    try:
        bar.update_to(n_done, f"{n_done}/{len(mols)} molecules done")
        for m in todo:
            bar.update_to(n_done, f"running {m.id} ({m.smiles})")
            log.info("molecule %d of %d: %s (%s)", n_done + n_failed + 1, len(mols), m.id, m.smiles)
            ok = True
            for label, model in labels:
                rd = molecule_dir(out, m.id) / label
                if _finished_at(rd, leg_lambdas):
                    continue
                err = _error_file(out, m.id, label)
                try:
                    run(m.id, model, rd, progress)
                except Interrupted:
                    raise
                except Exception as exc:
                    ok = False
                    line = _one_line(exc)
                    log.debug("%s %s run failed", m.id, label, exc_info=True)
                    log.error("%s (%s): the %s run failed: %s", m.id, m.smiles, label, line)
                    files.write_text(err, line + "\n")
                    continue
                err.unlink(missing_ok=True)
            n_done += ok
            n_failed += not ok
            write()
            bar.update_to(n_done + n_failed, f"{n_done}/{len(mols)} molecules done"
                          + (f", {n_failed} failed" if n_failed else ""))
    finally:
        bar.close()
    rows, w = write()
    return BenchmarkResult(out_dir=str(out), rows=rows, stats=w["stats"], skipped=list(selection.skipped),
                           files=w["files"])
