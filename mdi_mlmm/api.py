"""The public Python API: hydration free energies, their analysis, and ML potentials.

Everything here is re-exported by the package (``from mdi_mlmm import HydrationFreeEnergy``), lazily:
``import mdi_mlmm`` loads neither torch nor alchemlyb. The command line (``mdi-mlmm hydration``,
``mdi-mlmm analyze``) is a thin layer over this module and takes its defaults from here.

A hydration free energy::

    from mdi_mlmm import HydrationFreeEnergy

    calc = HydrationFreeEnergy(freesolv_id="mobley_2310185", model="ani2x", host="lammps")
    calc.run("runs/ethanol")                 # rerun to resume after an interruption
    r = calc.result
    print(r.dG["MBAR"].value, r.dG["MBAR"].error, r.reorg.value)

Analysing (again) a run directory, or reading an analysed one back::

    from mdi_mlmm import analyze, load_result
    r = analyze("runs/ethanol", equil_fraction=0.2)
    r = load_result("runs/ethanol")          # results.json, no new analysis

See ``docs/api.md``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Optional, Sequence

from .errors import UserInputError
from .hosts import registry as _hosts
from .potentials.registry import DEFAULT_DTYPE, check_dtype

_log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from .analysis.compare_dg import DGComparison
    from .analysis.results import HydrationResult
    from .potentials.base import Potential
    from .protocol.plan import Plan

__all__ = ["HydrationFreeEnergy", "FreeSolvBenchmark", "analyze", "load_result", "load_potential", "DEFAULT_EQUIL_FRACTION",
           "hydration_defaults", "analyze_md", "mmgbsa", "compare_dg"]

#: fraction of each window dropped as equilibration before decorrelation (analysis)
DEFAULT_EQUIL_FRACTION = 0.1


@dataclass
class HydrationFreeEnergy:
    """A hydration free-energy calculation: the solute's ML–MM (or, with ``model="mm"``, MM solute–water)
    nonbonded interactions are switched off over λ windows with E_ML on at every λ; the result holds ΔG by
    TI/MBAR/BAR, the reorganization energy ⟨E_ML⟩_water − ⟨E_ML⟩_gas and their sum (kcal/mol).

    The solute: ``freesolv_id`` (e.g. ``"mobley_2310185"``, ethanol) or ``smiles`` (with an optional
    ``name``). The defaults are those of ``mdi-mlmm hydration`` (which reads them from here):

    protocol: the physical model (docs/hosts.md): ``default`` is the same on both hosts (LJ cut at 1.0 nm
    and shifted, no dispersion correction, Ewald 1.0 nm, NVT windows at the equilibrated volume, flexible
    solute, rigid water); ``freesolv`` is FreeSolv's GROMACS protocol (switched LJ, dispersion correction,
    NPT windows, h-bond constraints on an MM solute; GROMACS host only), for comparisons with FreeSolv.

    model: ``ani2x`` | ``ani1x`` | ``ani1ccx`` | ``mace:PATH`` | ``python:FILE:FACTORY`` | ``mm`` (plain GAFF)
    or a name added with :func:`mdi_mlmm.potentials.register_model`; host: ``lammps`` or ``gromacs`` (the
    host table, :mod:`mdi_mlmm.hosts.registry`);
    windows: number of λ windows (None: FreeSolv's 20; fewer thins the schedule; at least 3);
    ns_per_window: production per window (ns); window_equil_ps: equilibration at each λ (ps);
    equil_ps: NVT and NPT equilibration of the system (ps each); gas_ns: gas-phase ML run (ns; None:
    ``ns_per_window``); dt_fs: time step (fs; None: 1, or 2 for ``mm`` with protocol ``freesolv``, which
    constrains h-bonds, or 4 with ``mass_repartition``; a default is lowered per molecule below 5 steps of its
    fastest flexible bond; larger steps than the safe limit need ``allow_large_dt``); sample_every: steps between energy
    samples; checkpoint_every: steps between checkpoints of a running window; temperature (K);
    dtype: the ML model's precision in every engine of the run, ``float32`` (default) or ``float64``
    (bench/README.md, "Which precision by default");
    forcefield: ``gaff`` or ``gaff2``; workers: windows run at once here (None: the number of cores);
    scheduler: a Dask distributed scheduler address to run the windows on; shared_model: ML windows running
    at once share one batching model server; device: where the ML model runs (cpu, cuda, cuda:N, auto);
    seed: random seed; constraints: the solute's X–H bonds, ``none`` (flexible, default) or ``h-bonds``
    (constrained at the force field's b0, the ML region's included; either host): the windows and gas
    run of the direct route, the legs of the endpoint route (``dt_fs`` / ``leg_dt_fs`` None: 2 fs).

    route: ``direct`` (above) or ``endpoint`` (docs/endpoint.md): ΔG_hyd(ML/MM) = ΔG_hyd(MM) +
    ΔA_MM→ML(water) − ΔA_MM→ML(gas). The λ windows are then the plain-MM decoupling on GROMACS (``dt_fs``
    None: 2 fs, h-bond constraints; ``windows``, ``ns_per_window``, ``window_equil_ps``, ``sample_every``
    apply to it) and each leg switches the solute's intramolecular energy from the force field's to the
    model's over ``leg_windows`` (None: 3) evenly spaced λ from 0 to 1 (or at ``leg_lambdas``: from 0 to 1,
    increasing; not with ``leg_windows``; a resume may add λ to those of the run, which runs only the added
    windows) on ``host``:
    ``leg_ps`` of production after ``leg_equil_ps`` per window at ``leg_dt_fs`` (None: 1 fs flexible, 2 fs with
    ``constraints="h-bonds"``, which makes the cycle exact for the constrained Hamiltonians), full-precision
    frames every ``leg_sample_every`` steps; ``leg_end_ps``: the production of the λ_intra = 1 window of both
    legs (None: ``leg_ps``; at least ``leg_ps``): its samples give ⟨E_ML⟩ of ΔG_reorg, which needs ~1 ns where the
    other windows do with 20–40 ps; ``gas_ns`` is not used. The result is an
    :class:`~mdi_mlmm.analysis.endpoint_report.EndpointRunResult`.

    split_decoupling: the GROMACS decoupling windows after the boundary state (charges off, LJ untouched) run
    with the solute's charges zero, so GROMACS computes one PME grid instead of two, and only the (exact)
    energies of the LJ states; the analysis estimates the two stages apart and adds them (docs/gromacs.md).
    None (default): wherever the decoupling runs on GROMACS (host ``gromacs``; the endpoint route's MM part)
    and the schedule switches the charges off first (every schedule made here); False: every window with the
    full topology (``--no-split-decoupling``); a run resumes as it started (runs started before the option
    ran unsplit).

    mass_repartition: hydrogen mass repartitioning (HMR, :mod:`mdi_mlmm.topology.hmr`; GROMACS host; needs
    ``constraints="h-bonds"``): every hydrogen outside rigid water weighs ``mass_repartition`` × its mass (3:
    the usual, 1.008 → 3.024 amu), taken from its bonded heavy atom, in every GROMACS unit's topology (the
    direct route's windows and gas run, the endpoint route's MM windows and legs); ``dt_fs`` / ``leg_dt_fs``
    None then mean 4 fs. ΔG does not depend on the masses (docs/gromacs.md says what has been checked).
    None (default): off for a new run, as started for a resumed one; 1: off. A ``dt_fs`` / ``leg_dt_fs`` not
    given is lowered, for the GROMACS units, to the largest multiple of 0.5 fs that keeps 5 steps in the
    solute's fastest flexible bond once its topology is prepared (at 4 fs with HMR: a nitrile, alkyne or =CH2
    alkene gets 3.5 or 3 fs; plan.json and results.json record it); one given too large is refused.

    :meth:`run` writes everything into one directory and sets :attr:`result`; rerunning it with the same
    settings resumes an interrupted run.
    """

    smiles: Optional[str] = None
    freesolv_id: Optional[str] = None
    name: Optional[str] = None
    model: str = "ani2x"
    host: str = _hosts.names()[0]  # the host table's first: lammps
    windows: Optional[int] = None
    ns_per_window: float = 0.2
    window_equil_ps: float = 10.0
    equil_ps: float = 20.0
    gas_ns: Optional[float] = None
    dt_fs: Optional[float] = None
    allow_large_dt: bool = False
    sample_every: int = 100
    checkpoint_every: int = 1000
    temperature: float = 298.15
    forcefield: str = "gaff"
    workers: Optional[int] = None
    scheduler: Optional[str] = None
    shared_model: bool = True
    device: str = "cpu"
    dtype: str = DEFAULT_DTYPE
    seed: int = 2025
    protocol: str = "default"
    route: str = "direct"
    leg_windows: Optional[int] = None
    leg_lambdas: Optional[Sequence[float]] = None
    leg_ps: float = 20.0
    leg_equil_ps: float = 2.0
    leg_sample_every: int = 20
    constraints: str = "none"
    leg_dt_fs: Optional[float] = None
    leg_end_ps: Optional[float] = None
    split_decoupling: Optional[bool] = None
    mass_repartition: Optional[float] = None
    #: the analysis of the last :meth:`run`
    result: Optional["HydrationResult"] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if (self.smiles is None) == (self.freesolv_id is None):
            raise UserInputError("give the solute as smiles= or as freesolv_id= (one of them)")
        if self.host not in _hosts.names():
            raise UserInputError(f"unknown host {self.host!r}; choose {' or '.join(_hosts.names())}")
        check_dtype(self.dtype)
        from .protocol.plan import ROUTES

        if self.route not in ROUTES:
            raise UserInputError(f"unknown route {self.route!r}; choose {' or '.join(ROUTES)}")
        from .protocol.physics import check_protocol

        check_protocol(self.protocol, self.host)
        from .protocol.plan import check_constraints

        check_constraints(self.constraints, self.host)
        self._hmr()
        if self.windows is not None and self.windows < 3:
            raise UserInputError("windows must be at least 3 (coupled, charges off, decoupled)")
        if self.leg_lambdas is not None:
            from .protocol.plan import check_leg_lambdas

            self.leg_lambdas = check_leg_lambdas(self.leg_lambdas, self.leg_windows)
        for name in self.ignored_settings():
            _log.warning("%s is ignored on the %s route", name, self.route)

    #: settings only one route reads: route -> the fields the *other* route ignores
    _ROUTE_ONLY = {"endpoint": ("leg_windows", "leg_lambdas", "leg_ps", "leg_equil_ps", "leg_sample_every", "leg_dt_fs",
                                "leg_end_ps"),
                   "direct": ("gas_ns",)}

    def ignored_settings(self) -> list[str]:
        """The settings given away from their defaults that this run's route does not read (the direct
        route has no legs; the endpoint route has no gas run), named as options (``--leg-ps``)."""
        defaults = {f.name: f.default for f in fields(self)}
        other = "endpoint" if self.route == "direct" else "direct"
        return ["--" + n.replace("_fs", "").replace("_", "-") for n in self._ROUTE_ONLY[other]
                if getattr(self, n) != defaults[n]]

    @property
    def constrained(self) -> bool:
        """Whether the windows constrain X–H bonds: with ``constraints="h-bonds"``, the GROMACS MM windows of
        protocol ``freesolv`` and the endpoint route's MM windows (h-bonds); otherwise not."""
        from .protocol.plan import windows_constrained

        return windows_constrained(model=self.model, route=self.route, constraints=self.constraints,
                                   protocol=self.protocol)

    def _as_started(self, out=None) -> dict:
        """The settings of :data:`~mdi_mlmm.protocol.plan.AS_STARTED` (``split_decoupling``, ``mass_repartition``)
        as given, those not given (None) as the run in directory ``out`` started (its plan.json; None: as given)."""
        from .protocol.plan import AS_STARTED, settings_as_started, started_settings

        return settings_as_started({k: getattr(self, k) for k in AS_STARTED},
                                   None if out is None else started_settings(out))

    def _hmr(self, started: Optional[dict] = None) -> Optional[float]:
        """The hydrogen mass factor of the run (None: off), checked (one line: not GROMACS, X–H bonds not
        constrained): ``mass_repartition``, or that of ``started`` (:meth:`_as_started`)."""
        from .protocol.timestep import check_mass_repartition

        factor = (started or self._as_started())["mass_repartition"]
        constrained = self.legs_constrained if self.route == "endpoint" else self.constrained
        return check_mass_repartition(factor, constrained_xh=constrained, host=self.host)

    def _resolved(self, hmr: Optional[float]) -> dict:
        """The settings as the plan gets them (:func:`~mdi_mlmm.protocol.plan.resolved_settings`: time steps,
        windows, gas run, ...), with the hydrogen mass factor ``hmr``."""
        from .protocol.plan import resolved_settings

        return resolved_settings({**{f.name: getattr(self, f.name) for f in fields(self) if f.init},
                                  "mass_repartition": hmr})

    @property
    def timestep_fs(self) -> float:
        """The time step used: ``dt_fs``, or 1 fs (2 fs with constrained h-bonds, 4 fs with repartitioned
        hydrogen masses too; a run lowers this default for a solute bond too fast for it: plan.json says)."""
        return self._resolved(self._hmr())["dt_fs"]

    @property
    def legs_constrained(self) -> bool:
        """Whether the endpoint route's legs constrain X–H bonds (``constraints="h-bonds"``)."""
        return self.constraints == "h-bonds"

    @property
    def leg_timestep_fs(self) -> float:
        """The endpoint legs' time step: ``leg_dt_fs``, or 1 fs (2 fs with constrained h-bonds, 4 fs with
        repartitioned hydrogen masses too; lowered as :attr:`timestep_fs`)."""
        return self._resolved(self._hmr())["leg_dt_fs"]

    def plan(self, out) -> "Plan":
        """The plan of the run in directory ``out`` (nothing is written or started). Checks the model
        (spec and files) and the time step first."""
        from .potentials.registry import resolve
        from .protocol.plan import make_plan
        from .protocol.timestep import check_timestep

        hmr = self._hmr(self._as_started(out))   # not given: as the run in out started (make_plan does the same)
        r = self._resolved(hmr)   # the one place where None settings get their values (the benchmark's check too)
        dt, leg_dt = r["dt_fs"], r["leg_dt_fs"]
        check_timestep(dt, constrained_xh=self.constrained, allow_large=self.allow_large_dt, hmr=bool(hmr))
        if self.route == "endpoint":
            check_timestep(leg_dt, constrained_xh=self.legs_constrained, allow_large=self.allow_large_dt,
                           option="--leg-dt", hmr=bool(hmr))
        spec = resolve(self.model)
        if spec.ml:
            spec.check_files()  # a bad spec or missing model files fail now, not in a window's engine
        plan = make_plan(out, model=self.model, host=self.host, smiles=self.smiles, freesolv_id=self.freesolv_id,
                         name=self.name, windows=self.windows, ns_per_window=self.ns_per_window, dt_fs=dt,
                         temperature=self.temperature, sample_every=self.sample_every,
                         gas_ns=r["gas_ns"],
                         equil_ps=self.equil_ps, window_equil_ps=self.window_equil_ps,
                         workers=self.workers or (os.cpu_count() or 1), scheduler=self.scheduler,
                         forcefield=self.forcefield, seed=self.seed, checkpoint_every=self.checkpoint_every,
                         shared_model=self.shared_model, device=self.device, dtype=self.dtype, route=self.route,
                         leg_windows=self.leg_windows, leg_lambdas=self.leg_lambdas, leg_ps=self.leg_ps,
                         leg_equil_ps=self.leg_equil_ps,
                         leg_sample_every=self.leg_sample_every, protocol=self.protocol,
                         leg_dt_fs=leg_dt, constraints=self.constraints, leg_end_ps=r["leg_end_ps"],
                         split_decoupling=self.split_decoupling, mass_repartition=self.mass_repartition,
                         # a time step not asked for is lowered for the solute's fastest bond once its topology is
                         # there (workflow.hydration.settle_timesteps)
                         dt_default=self.dt_fs is None, leg_dt_default=self.leg_dt_fs is None,
                         allow_large_dt=self.allow_large_dt)
        return plan

    def run(self, out, *, progress: bool = True) -> "HydrationResult":
        """Run (or resume) the calculation in directory ``out`` — prepare, equilibrate, λ windows, gas run,
        analysis (``out/analysis``: results.json, report.md, plots) — and return :attr:`result`.

        SIGTERM/SIGINT stop every child process and raise :class:`~mdi_mlmm.errors.Interrupted`; running
        again resumes. ``progress``: one progress bar on stderr."""
        if self.route == "endpoint":
            from .workflow.endpoint import run_endpoint as run_hydration
        else:
            from .workflow.hydration import run_hydration

        self.result = run_hydration(self.plan(out), progress=progress)
        return self.result


def hydration_defaults() -> dict:
    """{setting: default} of :class:`HydrationFreeEnergy` (the command line shows and uses these)."""
    return {f.name: f.default for f in fields(HydrationFreeEnergy) if f.init}


class FreeSolvBenchmark:
    """Hydration free energies of many FreeSolv molecules against experiment (``mdi-mlmm benchmark
    freesolv``): one :class:`HydrationFreeEnergy` run per molecule, then a table, MAE/RMSE/R² with
    bootstrap confidence intervals (FreeSolv's GAFF values on the same molecules too), a scatter plot
    and a report. See ``docs/benchmark.md``.

    The molecules: exactly one of ``ids`` (FreeSolv ids), ``subset`` (N drawn with ``seed``) or
    ``all=True``, with the filters ``elements`` (``"C,H,N,O"`` or a list; H must be listed),
    ``min_heavy_atoms``, ``max_heavy_atoms``; molecules the model cannot describe (elements, net
    charge) are skipped. ``with_mm``: an ML benchmark also runs the plain-MM (``model="mm"``)
    hydration of each molecule; ``estimator``: the ΔG tabulated (TI, MBAR, BAR); ``bootstrap``:
    resamples per interval (``seed`` makes them reproducible). Every other keyword is a setting of
    :class:`HydrationFreeEnergy` with its default (``md_seed``: its ``seed``)::

        bench = FreeSolvBenchmark(subset=10, seed=1, elements="C,H,N,O,F,Cl,S", max_heavy_atoms=10,
                                  model="ani2x", host="gromacs", with_mm=True, ns_per_window=0.2)
        bench.run("runs/bench")          # rerun to continue
        print(bench.result)              # statistics; bench.result.rows: the table
    """

    def __init__(self, *, ids=None, subset: Optional[int] = None, all: bool = False, seed: int = 0,
                 elements=None, min_heavy_atoms: Optional[int] = None, max_heavy_atoms: Optional[int] = None,
                 with_mm: bool = False, estimator: str = "MBAR", bootstrap: int = 2000,
                 md_seed: Optional[int] = None, **settings):
        from .analysis.results import ESTIMATORS
        from .workflow.benchmark import Filters, parse_elements

        own = {"smiles", "freesolv_id", "name", "seed"}
        unknown = sorted(set(settings) - (set(hydration_defaults()) - own))
        if unknown:
            raise UserInputError(f"unknown setting(s) {', '.join(unknown)} (HydrationFreeEnergy has "
                                 f"{', '.join(sorted(set(hydration_defaults()) - own))}; md_seed: its seed)")
        if md_seed is not None:
            settings["seed"] = md_seed
        proto = HydrationFreeEnergy(smiles="C", **settings)   # the same checks as a single run
        #: every run setting of the molecules' HydrationFreeEnergy runs (defaults filled in)
        self.settings = {k: getattr(proto, k) for k in hydration_defaults() if k not in own - {"seed"}}
        if estimator not in ESTIMATORS:
            raise UserInputError(f"unknown estimator {estimator!r}; choose {', '.join(ESTIMATORS)}")
        if self.settings.get("route", "direct") != "direct" and estimator == "TI":
            raise UserInputError("the endpoint route reports MBAR and BAR: choose --estimator MBAR or BAR")
        self.ids, self.subset, self.all, self.seed = ids, subset, all, int(seed)
        self.filters = Filters(parse_elements(elements), min_heavy_atoms, max_heavy_atoms)
        self.with_mm, self.estimator, self.bootstrap = bool(with_mm), estimator, int(bootstrap)
        self._selection = None
        #: the :class:`~mdi_mlmm.workflow.benchmark.BenchmarkResult` of the last :meth:`run`
        self.result = None

    def select(self):
        """The molecules (:class:`~mdi_mlmm.workflow.benchmark.Selection`: ``molecules``, ``skipped``
        with one reason each); nothing runs."""
        from .workflow.benchmark import select

        if self._selection is None:
            self._selection = select(model=self.settings["model"], ids=self.ids, subset=self.subset, all=self.all,
                                     seed=self.seed, filters=self.filters)
        return self._selection

    def _calc(self, freesolv_id: str, model: str, settings: Optional[dict] = None) -> HydrationFreeEnergy:
        s = dict(settings or self.settings, model=model)
        if model != self.settings["model"] and "route" in s:
            s["route"] = hydration_defaults()["route"]   # the extra MM run: the default route
        return HydrationFreeEnergy(freesolv_id=freesolv_id, **s)

    def run(self, out, *, progress: bool = True):
        """Run (or continue) the benchmark in directory ``out`` (``out/molecules/<id>/``: one hydration run
        per molecule and model; ``out/report.md``, ``table.csv``, ``table.md``, ``scatter.png``) and
        return :attr:`result`. ``progress``: a bar over the molecules and one within each."""
        from pathlib import Path

        from .workflow.benchmark import as_started, molecule_dir, run_benchmark, run_labels

        sel = self.select()
        route = self.settings.get("route", "direct")
        settings = as_started(out, self.settings)   # split_decoupling, mass_repartition not given: as started
        for label, model in run_labels(self.settings["model"], self.with_mm, route) if sel.molecules else ():
            m = sel.molecules[0].id   # time step, samples per window, model files: checked before any run
            self._calc(m, model, settings).plan(molecule_dir(out, m) / label)

        def run_one(freesolv_id, model, run_dir, show):
            self._calc(freesolv_id, model, settings).run(Path(run_dir), progress=show)

        self.result = run_benchmark(out, sel, run_one, settings=settings, with_mm=self.with_mm,
                                    estimator=self.estimator, n_bootstrap=self.bootstrap, seed=self.seed,
                                    progress=progress)
        return self.result


def analyze(run_dir, *, equil_fraction: float = DEFAULT_EQUIL_FRACTION, plots: bool = True) -> "HydrationResult":
    """Analyse (again) a hydration run directory: TI/MBAR/BAR, reorganization energy, plots; writes
    ``run_dir/analysis/results.json`` and ``report.md`` and returns the result. ``equil_fraction``: the
    fraction of each window dropped as equilibration before decorrelation."""
    from .analysis.report import analyze as _analyze

    return _analyze(run_dir, equil_fraction=equil_fraction, plots=plots)


def load_result(run_dir) -> "HydrationResult":
    """The result of an analysed run directory, read from ``analysis/results.json`` (no new analysis)."""
    from .analysis.report import load_result as _load

    return _load(run_dir)


def compare_dg(run_a, run_b) -> "DGComparison":
    """ΔG_hyd of two finished, analysed hydration runs of the same molecule side by side (``mdi-mlmm
    compare-dg``, docs/compare.md): each estimator's ΔG ± σ in both runs (TI, MBAR, BAR and, for ML
    models, each + the reorganization energy), ΔΔG = A − B with σ = √(σ_A² + σ_B²), and whether
    |ΔΔG| ≤ 2σ. Refuses (one line) runs of different molecules or temperatures, unfinished runs, runs
    without an analysis and damaged results. Returns a :class:`~mdi_mlmm.analysis.compare_dg.DGComparison`
    (``.rows``, ``.agree``, ``.table()``, ``.to_json()``)."""
    from .analysis.compare_dg import compare_dg as _compare

    return _compare(run_a, run_b)


def load_potential(spec: str, **options) -> "Potential":
    """The ML potential named by ``spec`` (``ani2x``, ``mace:PATH``, ``python:FILE:FACTORY``, a registered
    name, ...), loaded in this process: ``potential.compute(elements, positions, cell=None)`` (positions and
    cell in Å) gives a result with ``energy`` (Hartree) and ``forces`` (Hartree/Å). options: ``model_dir``,
    ``member``, ``dtype`` (``float32``, the default, or ``float64``), ``threads``, ``device``."""
    from .potentials import load_potential as _load

    return _load(spec, **options)


def analyze_md(runs, out, *, pdb=None, protein: str = "protein", ligand: Optional[str] = None,
               backbone: str = "backbone", bfactor_atoms: str = "name CA", start: Optional[int] = None,
               stop: Optional[int] = None, step: Optional[int] = None):
    """Stability of protein–ligand MD runs (``mdi-mlmm analyze-md``, docs/analyze_md.md): backbone RMSD,
    ligand RMSD in the backbone fit, per-residue B-factors 8π²/3·RMSF² (Pearson r against ``pdb``'s), runs
    side by side. ``runs``: dicts ``{"topology": ..., "trajectories": [...], "label": ...}`` (the first two
    are compared); selections in MDAnalysis syntax (``ligand`` None: ``resname MOL LIG UNL`` when present).
    Writes summary.json, report.md, rmsd.png, bfactors.png, rmsd.csv, bfactors.csv into ``out`` and
    returns a :class:`~mdi_mlmm.analysis.md.MDAnalysisReport`."""
    from .analysis.md import analyze_md as _analyze_md

    return _analyze_md(runs, out, pdb=pdb, protein=protein, ligand=ligand, backbone=backbone,
                       bfactor_atoms=bfactor_atoms, start=start, stop=stop, step=step)


def mmgbsa(runs, out, *, complex_prmtop, receptor_prmtop, ligand_prmtop, gb: str = "OBC2", salt_molar: float = 0.0,
           complex_selection: Optional[str] = None, ligand: str = "resname MOL", start: Optional[int] = None,
           stop: Optional[int] = None, step: Optional[int] = None, n_blocks: int = 5, platform: str = "CPU"):
    """Single-trajectory MM-GBSA over the frames of one or more runs (``mdi-mlmm mmgbsa``, docs/analyze_md.md):
    ΔE_bind = E(complex) − E(receptor) − E(ligand) per frame (kcal/mol) with OpenMM's ``gb`` implicit solvent
    and ACE surface term, no cutoff, from the dry Amber topologies; mean ± SEM by ``n_blocks`` block
    averaging. ``runs`` as for :func:`analyze_md`. The complex atoms (``complex_selection``, default the
    first atoms) are checked by name against ``complex_prmtop``. Writes mmgbsa.json, mmgbsa.md,
    mmgbsa_frames.csv, mmgbsa.png and returns a :class:`~mdi_mlmm.analysis.mmgbsa.MMGBSAReport`."""
    from .analysis.mmgbsa import mmgbsa as _mmgbsa

    return _mmgbsa(runs, out, complex_prmtop=complex_prmtop, receptor_prmtop=receptor_prmtop,
                   ligand_prmtop=ligand_prmtop, gb=gb, salt_molar=salt_molar, platform=platform,
                   complex_selection=complex_selection, ligand=ligand, start=start, stop=stop, step=step,
                   n_blocks=n_blocks)
