"""The plan of a hydration free-energy run, written to ``DIR/plan.json`` before anything runs.

Rerunning the same command reads the plan back and continues; a command whose
settings differ from the plan on disk is refused (one clear line) rather than mixing
two protocols in one directory.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import __version__, files
from ..errors import UserInputError
from ..potentials.registry import DEFAULT_DTYPE, check_dtype, is_ml
from .schedule import decoupling_schedule, stage_boundary

log = logging.getLogger(__name__)

PLAN_NAME = "plan.json"
#: settings that define the physics; a resume must match them exactly
KEY_FIELDS = ("smiles", "freesolv_id", "model", "dtype", "host", "forcefield", "schedule", "steps_per_window",
              "dt_fs", "temperature", "sample_every", "gas_steps", "equil_ps", "window_equil_steps",
              "box_padding_nm", "route", "leg_lambdas", "leg_steps", "leg_equil_steps", "leg_dt_fs",
              "leg_sample_every", "protocol", "constraints", "leg_end_steps", "split_decoupling", "mass_repartition")
#: the endpoint legs' evenly spaced λ_intra windows when neither ``leg_windows`` nor ``leg_lambdas`` is given
DEFAULT_LEG_WINDOWS = 3
#: the routes to the ML/MM hydration free energy: ``direct`` (E_ML on in every λ window of the
#: decoupling) and ``endpoint`` (MM decoupling + MM→ML legs in water and in gas; docs/endpoint.md)
ROUTES = ("direct", "endpoint")
#: :class:`Plan` fields of one attempt, not written to plan.json: how the time steps were asked for, and the
#: arguments the plan was made with (:func:`replan`)
ATTEMPT_FIELDS = ("dt_default", "leg_dt_default", "allow_large_dt", "made_with")


@dataclass
class Window:
    state: int
    coul: float
    vdw: float
    directory: str


@dataclass
class Plan:
    out: str
    model: str
    host: str
    smiles: Optional[str] = None
    freesolv_id: Optional[str] = None
    name: Optional[str] = None
    forcefield: str = "gaff"
    box_padding_nm: float = 1.2
    schedule: list = field(default_factory=list)          # [(coul, vdw)], state 0 = coupled
    windows: list = field(default_factory=list)           # [Window]
    steps_per_window: int = 0
    window_equil_steps: int = 0
    dt_fs: float = 1.0
    temperature: float = 298.15
    sample_every: int = 100
    gas_steps: int = 0
    equil_ps: float = 20.0
    workers: int = 1
    scheduler: Optional[str] = None
    seed: int = 2025
    checkpoint_every: int = 1000
    #: ML windows running at once on this machine share one batching model server
    shared_model: bool = True
    #: where the ML model runs (cpu, cuda, cuda:N, auto)
    device: str = "cpu"
    #: the ML model's precision (``float32`` or ``float64``) in every engine of the run (windows, gas run,
    #: endpoint legs, the shared model server) and in the legs' ΔU; plans written before the option ran
    #: float64 and read so
    dtype: str = DEFAULT_DTYPE
    #: ``direct`` or ``endpoint`` (:data:`ROUTES`). On the endpoint route the λ windows above are the
    #: plain-MM decoupling (GROMACS, h-bond constraints) and the legs run at ``leg_lambdas``
    route: str = "direct"
    leg_lambdas: list = field(default_factory=list)
    #: the directory number NN (``legs/PHASE/NN``) of each leg window, in the order of ``leg_lambdas``: windows
    #: added to a run later (``--leg-lambdas`` with more λ, :func:`load_or_create`) take the next numbers, so a
    #: window keeps its directory (and its seed); plans written before read as 0 .. K−1 (:meth:`leg_directory`)
    leg_window_ids: list = field(default_factory=list)
    leg_steps: int = 0
    #: production steps of the legs' λ_intra = 1 windows (water and gas), ``leg_steps`` or more: they also give
    #: ⟨E_ML⟩ of ΔG_reorg, which needs the longest sampling (``--leg-end-ps``); plans written before the option
    #: read as ``leg_steps``
    leg_end_steps: int = 0
    leg_equil_steps: int = 0
    leg_dt_fs: float = 1.0
    leg_sample_every: int = 0
    #: the physical model (:mod:`mdi_mlmm.protocol.physics`): ``default`` (the same on both hosts) or
    #: ``freesolv`` (FreeSolv's GROMACS settings)
    protocol: str = "default"
    #: the solute's X–H bonds (:data:`~mdi_mlmm.protocol.timestep.CONSTRAINTS`) in the direct route's windows
    #: and gas run and in the endpoint route's legs: ``none`` (flexible, the default; plans written before the
    #: option read so) or ``h-bonds`` (constrained at b0, the ML region's included; either host). The
    #: endpoint route's MM windows, and MM windows of protocol ``freesolv``, constrain them in any case
    constraints: str = "none"
    #: the GROMACS λ windows after the schedule's boundary state b (charges off, LJ untouched) run with the
    #: solute's charges zero in both topology states (one PME grid) and energies at the states b..N−1 only, and
    #: the analysis estimates the two stages (0..b, b..N−1) apart and adds them (docs/gromacs.md). On by default
    #: for a GROMACS decoupling whose schedule has that shape (``--no-split-decoupling``: off); plans written
    #: before the option ran every window with the full topology and read so (False)
    split_decoupling: bool = False
    #: hydrogen mass repartitioning (:mod:`mdi_mlmm.topology.hmr`): the factor of every hydrogen's mass outside
    #: rigid water in every GROMACS unit's topology (windows, gas run, endpoint legs; needs h-bonds), None: off
    #: (plans written before the option read so)
    mass_repartition: Optional[float] = None
    version: str = __version__
    # -- this attempt's, not in plan.json (:data:`ATTEMPT_FIELDS`; a resume keeps the new plan's allow_large_dt) --
    #: ``dt_fs`` / ``leg_dt_fs`` were not given (their defaults): lowered for the solute's fastest flexible bond
    #: once its topology is there (:func:`mdi_mlmm.workflow.hydration.settle_timesteps`); a given one is refused
    dt_default: bool = field(default=False, compare=False)
    leg_dt_default: bool = field(default=False, compare=False)
    #: ``--allow-large-dt``: a time step under 5 steps of the solute's fastest flexible bond is warned about
    #: instead of refused (settle_timesteps and every GROMACS unit)
    allow_large_dt: bool = field(default=False, compare=False)
    #: the :func:`make_plan` arguments this plan was made with (:func:`replan`); empty for a plan read back
    made_with: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def ml(self) -> bool:
        return is_ml(self.model)

    @property
    def windows_constraints(self) -> str:
        """The solute's X–H bonds in the λ windows as run: ``h-bonds`` with the plan's constraints h-bonds, for
        an MM solute with protocol ``freesolv`` (FreeSolv's protocol constrains them) and on the endpoint route
        (its windows are the plain-MM decoupling), else ``none``."""
        constrained = windows_constrained(model=self.model, route=self.route, constraints=self.constraints,
                                          protocol=self.protocol)
        return "h-bonds" if constrained else "none"

    @property
    def stage_boundary(self) -> Optional[int]:
        """The boundary state b between the two stages of a split decoupling (:attr:`split_decoupling`), or None
        when the windows are not split."""
        return stage_boundary(self.schedule) if self.split_decoupling else None

    @property
    def root(self) -> Path:
        return Path(self.out)

    def path(self, *parts) -> Path:
        return self.root.joinpath(*parts)

    def leg_window_id(self, k: int) -> int:
        """The directory number of leg window ``k`` (index into ``leg_lambdas``; :attr:`leg_window_ids`)."""
        return int(self.leg_window_ids[k]) if self.leg_window_ids else k

    def leg_directory(self, phase: str, k: int) -> str:
        """The directory (relative to the run) of window ``k`` (index into ``leg_lambdas``) of leg ``phase``."""
        return f"legs/{phase}/{self.leg_window_id(k):02d}"

    def leg_window_steps(self, k: int) -> int:
        """Production steps of leg window ``k`` (index into ``leg_lambdas``): ``leg_end_steps`` for the last
        (λ_intra = 1), ``leg_steps`` for the others."""
        return self.leg_end_steps if k == len(self.leg_lambdas) - 1 else self.leg_steps

    def engine_options(self) -> list:
        """The ``mdi-mlmm engine`` / ``model-server`` options of every engine of the run: one torch thread,
        the plan's device and precision."""
        return ["--threads", "1", "--device", self.device, "--dtype", self.dtype]

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ATTEMPT_FIELDS:
            del d[k]
        d["units"] = {"dt": "fs", "temperature": "K", "box_padding": "nm", "energies": "kcal/mol"}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Plan":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k not in ATTEMPT_FIELDS}
        # plans written before the protocol existed: GROMACS ran FreeSolv's settings, LAMMPS today's default
        d.setdefault("protocol", "freesolv" if d.get("host") == "gromacs" else "default")
        d.setdefault("dtype", "float64")   # plans written before float32 became the default ran float64
        d.setdefault("leg_end_steps", d.get("leg_steps", 0))   # before --leg-end-ps: λ = 1 as long as the others
        d.setdefault("leg_window_ids", list(range(len(d.get("leg_lambdas") or []))))   # before --leg-lambdas
        d["windows"] = [Window(**w) for w in d.get("windows", [])]
        d["schedule"] = [tuple(x) for x in d.get("schedule", [])]
        return cls(**d)

    def write(self):
        self.root.mkdir(parents=True, exist_ok=True)
        files.write_json(self.path(PLAN_NAME), self.to_json(), indent=1)


def make_plan(out, *, model: str, host: str, smiles=None, freesolv_id=None, name=None, windows: Optional[int] = None,
              ns_per_window: float, dt_fs: float, temperature: float, sample_every: int, gas_ns: float,
              equil_ps: float, window_equil_ps: float, workers: int, scheduler=None, forcefield: str = "gaff",
              box_padding_nm: float = 1.2, seed: int = 2025, checkpoint_every: int = 1000, dtype: str = DEFAULT_DTYPE,
              shared_model: bool = True, device: str = "cpu", route: str = "direct",
              leg_windows: Optional[int] = None,
              leg_ps: float = 20.0, leg_equil_ps: float = 2.0, leg_dt_fs: float = 1.0,
              leg_sample_every: int = 20, protocol: str = "default", constraints: str = "none",
              leg_end_ps: Optional[float] = None, leg_lambdas: Optional[Sequence[float]] = None,
              split_decoupling: Optional[bool] = None,
              mass_repartition: Optional[float] = None, dt_default: bool = False, leg_dt_default: bool = False,
              allow_large_dt: bool = False) -> Plan:
    """A plan from command-line settings. windows: None or 20 = FreeSolv's 20 states; another N = about N/4
    evenly spaced Coulomb states then evenly spaced soft-core LJ states. route ``endpoint``: the windows
    are the plain-MM decoupling, and each leg has ``leg_windows`` (None: :data:`DEFAULT_LEG_WINDOWS`) evenly
    spaced λ_intra from 0 to 1 with
    ``leg_ps`` of production (after ``leg_equil_ps``) at ``leg_dt_fs``, sampled every ``leg_sample_every``
    steps, except the λ_intra = 1 window of each leg: ``leg_end_ps`` (None: ``leg_ps``; not shorter), whose
    samples also give ΔG_reorg; ``leg_lambdas`` (not None): the legs' λ_intra instead of ``leg_windows`` evenly
    spaced ones (:func:`check_leg_lambdas`; a resume may add λ to those on disk: :func:`load_or_create`); the leg
    settings are ignored on the direct route. protocol: the physical model
    (:data:`~mdi_mlmm.protocol.physics.PROTOCOLS`; ``freesolv`` on the GROMACS host only). constraints:
    ``none`` or ``h-bonds`` (:func:`check_constraints`). split_decoupling: run the GROMACS windows after the
    schedule's boundary state with the solute's charges zero (one PME grid; :attr:`Plan.split_decoupling`); None:
    wherever the decoupling runs on GROMACS (host gromacs, or the endpoint route's MM part) and the schedule
    has the "decharge, then decouple" shape; True where it cannot is refused. mass_repartition: the hydrogen mass
    factor (:attr:`Plan.mass_repartition`; 1: off). Both not given (None): as the run in ``out`` started (its
    plan.json; :func:`settings_as_started`), else split where possible and no repartitioning. dt_default,
    leg_dt_default, allow_large_dt: how the time steps were asked for (:attr:`Plan.dt_default`, not in
    plan.json)."""
    made = dict(locals())   # the arguments: replan() makes the plan again with other time steps
    from .physics import check_protocol
    from .timestep import mass_factor

    check_protocol(protocol, host)
    check_constraints(constraints, host)
    if route not in ROUTES:
        raise UserInputError(f"unknown route {route!r}; choose {' or '.join(ROUTES)}")
    sched = decoupling_schedule(windows)
    steps = int(round(ns_per_window * 1e6 / dt_fs))
    if steps < 10 * sample_every:
        raise UserInputError(f"{ns_per_window} ns per window at {dt_fs} fs is {steps} steps: fewer than 10 samples "
                             f"at --sample-every {sample_every}")
    legs = {}
    if route == "endpoint":
        if not is_ml(model):
            raise UserInputError("the endpoint route goes from MM to an ML model: give an ML --model (not mm)")
        if leg_lambdas is not None:
            lams = check_leg_lambdas(leg_lambdas, leg_windows)
        elif leg_windows is not None and leg_windows < 2:
            raise UserInputError("an endpoint leg needs at least 2 λ windows (0 and 1)")
        else:
            lams = [float(x) for x in np.linspace(0.0, 1.0, int(leg_windows or DEFAULT_LEG_WINDOWS))]
        leg_steps = int(round(leg_ps * 1e3 / leg_dt_fs))
        if leg_steps < 10 * leg_sample_every:
            raise UserInputError(f"{leg_ps} ps per leg window at {leg_dt_fs} fs is {leg_steps} steps: fewer than 10 "
                                 f"samples at --leg-sample-every {leg_sample_every}")
        if leg_end_ps is not None and leg_end_ps < leg_ps:
            raise UserInputError(f"--leg-end-ps {leg_end_ps:g} is shorter than --leg-ps {leg_ps:g}: it lengthens the "
                                 "λ_intra = 1 windows, whose samples give ΔG_reorg too (the term that needs the "
                                 "longest sampling); give at least --leg-ps, or leave it out")
        leg_end_steps = leg_steps if leg_end_ps is None else int(round(leg_end_ps * 1e3 / leg_dt_fs))
        legs = dict(route=route, leg_lambdas=lams, leg_window_ids=list(range(len(lams))),
                    leg_steps=leg_steps, leg_end_steps=max(leg_steps, leg_end_steps),
                    leg_equil_steps=int(round(leg_equil_ps * 1e3 / leg_dt_fs)),
                    leg_dt_fs=float(leg_dt_fs), leg_sample_every=int(leg_sample_every))
    # split_decoupling, mass_repartition not given (None): as the run in out started (settings_as_started)
    started = settings_as_started(dict(split_decoupling=split_decoupling, mass_repartition=mass_repartition),
                                  started_settings(out))
    try:
        split = _split_decoupling(started["split_decoupling"], host, route, sched)
    except UserInputError:
        if split_decoupling is not None:
            raise
        # as started, impossible now: another host, route or schedule, which load_or_create refuses (naming those)
        split = bool(started["split_decoupling"])
    ws = [Window(state=k, coul=float(c), vdw=float(v), directory=f"windows/{k:02d}") for k, (c, v) in enumerate(sched)]
    plan = Plan(out=str(Path(out).resolve()), model=model, host=host, smiles=smiles, freesolv_id=freesolv_id, name=name,
                forcefield=forcefield, box_padding_nm=box_padding_nm, schedule=[tuple(s) for s in sched], windows=ws,
                steps_per_window=steps, window_equil_steps=int(round(window_equil_ps * 1e3 / dt_fs)), dt_fs=dt_fs,
                temperature=temperature, sample_every=sample_every, dtype=check_dtype(dtype),
                gas_steps=int(round(gas_ns * 1e6 / dt_fs)) if is_ml(model) and route == "direct" else 0,
                equil_ps=equil_ps, workers=workers, scheduler=scheduler, seed=seed, checkpoint_every=checkpoint_every,
                shared_model=shared_model, device=device, protocol=protocol, constraints=constraints,
                split_decoupling=split, mass_repartition=mass_factor(started["mass_repartition"]),
                dt_default=dt_default, leg_dt_default=leg_dt_default, allow_large_dt=allow_large_dt, made_with=made,
                **legs)
    return plan


def replan(plan: Plan, **changes) -> Plan:
    """``plan`` made again by :func:`make_plan` from the settings it was made with (:attr:`Plan.made_with`), but
    ``changes`` (the time steps ``dt_fs``, ``leg_dt_fs``: the step counts follow)."""
    if not plan.made_with:
        raise ValueError("replan: the plan was read back from plan.json, not made by make_plan")
    return make_plan(**{**plan.made_with, **changes})


def windows_constrained(*, model: str, route: str = "direct", constraints: str = "none",
                        protocol: str = "default") -> bool:
    """Whether the λ windows constrain the solute's X–H bonds: with constraints ``h-bonds``, on the endpoint route
    (its windows are the plain-MM decoupling) and for an MM solute with protocol ``freesolv``."""
    return constraints == "h-bonds" or route == "endpoint" or (not is_ml(model) and protocol == "freesolv")


#: the run settings whose None stands for a value that :func:`resolved_settings` works out (and ``leg_windows``,
#: which ``leg_lambdas`` given overrides)
RESOLVED = ("windows", "dt_fs", "leg_dt_fs", "gas_ns", "leg_end_ps", "mass_repartition", "leg_lambdas",
            "leg_windows")


def resolved_settings(settings: dict) -> dict:
    """``settings`` of a hydration run (the fields of :class:`~mdi_mlmm.api.HydrationFreeEnergy`; a benchmark's
    settings.json) with those of :data:`RESOLVED` as the plan gets them: ``windows`` the number of λ states (None:
    FreeSolv's 20), ``dt_fs`` and ``leg_dt_fs`` (None: :func:`~.timestep.default_dt_fs` of the windows' and the legs'
    constraints and the hydrogen mass factor), ``gas_ns`` (None: ``ns_per_window``), ``leg_end_ps`` (None:
    ``leg_ps``), ``mass_repartition`` (None or 1: None, off), ``leg_lambdas`` (None: ``leg_windows`` evenly spaced
    from 0 to 1) and ``leg_windows`` (their number). A setting ``settings`` lacks takes its default.
    Nothing is checked (:meth:`~mdi_mlmm.api.HydrationFreeEnergy.plan` does)."""
    from .timestep import default_dt_fs, mass_factor

    s = dict(settings)
    hmr = mass_factor(s.get("mass_repartition"))
    constraints = s.get("constraints", "none")
    windows_xh = windows_constrained(model=s.get("model", "mm"), route=s.get("route", "direct"),
                                     constraints=constraints, protocol=s.get("protocol", "default"))
    s.update(windows=len(decoupling_schedule(s.get("windows"))), mass_repartition=hmr,
             dt_fs=s.get("dt_fs") or default_dt_fs(windows_xh, hmr),
             leg_dt_fs=s.get("leg_dt_fs") or default_dt_fs(constraints == "h-bonds", hmr))
    if s.get("gas_ns") is None and "ns_per_window" in s:
        s["gas_ns"] = s["ns_per_window"]
    if s.get("leg_end_ps") is None and "leg_ps" in s:
        s["leg_end_ps"] = s["leg_ps"]
    lams = s.get("leg_lambdas")
    n = int(s.get("leg_windows") or DEFAULT_LEG_WINDOWS)
    s["leg_lambdas"] = [float(x) for x in lams] if lams is not None else [float(x) for x in np.linspace(0.0, 1.0, n)]
    s["leg_windows"] = len(s["leg_lambdas"])
    return s


def _split_decoupling(requested: Optional[bool], host: str, route: str, schedule) -> bool:
    """Whether the plan's windows run split (:attr:`Plan.split_decoupling`): ``requested`` (None: wherever
    possible); True where the decoupling does not run on GROMACS or the schedule has no boundary is refused."""
    on_gromacs = host == "gromacs" or route == "endpoint"   # the endpoint route's MM decoupling runs on GROMACS
    possible = on_gromacs and stage_boundary(schedule) is not None
    if requested and not possible:
        raise UserInputError("split_decoupling: the decoupling windows split in two stages only on GROMACS "
                             "(host gromacs or the endpoint route) with a schedule that switches the charges off "
                             "before the Lennard-Jones terms" if not on_gromacs else
                             "split_decoupling: this λ schedule does not switch the charges fully off before the "
                             "Lennard-Jones terms, so it cannot be split in two stages")
    return possible if requested is None else bool(requested)


def split_decoupling_of(requested: Optional[bool], *, host: str, route: str = "direct",
                        windows: Optional[int] = None) -> bool:
    """:attr:`Plan.split_decoupling` of a plan that :func:`make_plan` makes with these settings (the
    benchmark compares what a ``settings.json`` meant with what is asked now)."""
    return _split_decoupling(requested, host, route, decoupling_schedule(windows))


def check_constraints(constraints: str, host: str) -> None:
    """Refuse (one line) an unknown X–H treatment. Both hosts constrain ``h-bonds`` (the ML region's included:
    GROMACS ``constraints = h-bonds``, LAMMPS ``fix rattle`` on the X–H bond types); ``host`` is kept for a
    host that could not."""
    from .timestep import CONSTRAINTS

    if constraints not in CONSTRAINTS:
        raise UserInputError(f"unknown constraints {constraints!r}; choose {' or '.join(CONSTRAINTS)}")


#: two λ_intra closer than this are the same leg window (a λ printed with 6 digits, as the overlap warning's
#: --leg-lambdas list gives 1/3, names the window at 1/3)
LEG_LAMBDA_TOL = 1e-6


def check_leg_lambdas(values: Sequence[float], leg_windows: Optional[int] = None) -> list:
    """``--leg-lambdas``: the legs' λ_intra as floats, refused in one line unless they run from 0 to 1, strictly
    increasing (at least 2), and with ``leg_windows`` given too (not None)."""
    if leg_windows is not None:
        raise UserInputError("give the legs' windows as --leg-windows (leg_windows) or as --leg-lambdas "
                             "(leg_lambdas), not both")
    try:
        lam = [float(x) for x in values]
    except (TypeError, ValueError):
        raise UserInputError(f"--leg-lambdas: not numbers: {' '.join(str(x) for x in values)}") from None
    text = " ".join(f"{x:g}" for x in lam)
    if len(lam) < 2 or not all(np.isfinite(lam)):
        raise UserInputError(f"--leg-lambdas {text}: give at least 2 finite λ_intra, from 0 to 1")
    if lam[0] != 0.0 or lam[-1] != 1.0:
        raise UserInputError(f"--leg-lambdas {text}: the list must start at 0 (MM) and end at 1 (ML)")
    bad = [f"{a:g} then {b:g}" for a, b in zip(lam, lam[1:]) if b <= a]
    if bad:
        raise UserInputError(f"--leg-lambdas {text}: λ_intra must increase strictly ({bad[0]})")
    return lam


def added_leg_lambdas(old: Sequence[float], old_ids: Sequence[int], new: Sequence[float]) -> Optional[tuple]:
    """The legs of a run whose windows are at ``old`` (directory numbers ``old_ids``) when asked for ``new``
    (increasing): (λ, directory numbers) with every λ of ``old`` as it is (the same value and directory, a λ of
    ``new`` within :data:`LEG_LAMBDA_TOL` being that one) and those only ``new`` has added with the next
    numbers; None when ``new`` lacks a λ of ``old`` (a finished window would be dropped or moved)."""
    ids = list(old_ids) or list(range(len(old)))
    lams, out_ids, nxt, used = [], [], max(ids, default=-1) + 1, set()
    for x in new:
        k = next((i for i, y in enumerate(old) if abs(float(x) - float(y)) <= LEG_LAMBDA_TOL), None)
        if k is None:
            lams.append(float(x))
            out_ids.append(nxt)
            nxt += 1
        elif k in used:   # two λ asked for name one window
            return None
        else:
            used.add(k)
            lams.append(float(old[k]))
            out_ids.append(int(ids[k]))
    return (lams, out_ids) if len(used) == len(old) else None


def leg_lambdas_hint(on_disk: Sequence[float]) -> str:
    """The part of a refusal of other leg λ (a run's :func:`load_or_create`, a benchmark's
    :func:`~mdi_mlmm.workflow.benchmark.check_settings`) that names the ``--leg-lambdas`` list to give: those on
    disk, to which λ may be added (:func:`added_leg_lambdas`)."""
    return (f" (--leg-lambdas {' '.join(f'{x:g}' for x in on_disk)}, to which λ may be added; a "
            "window on disk cannot be dropped or moved)")


def load_or_create(new: Plan) -> tuple[Plan, bool]:
    """The plan on disk if it matches ``new`` (resume), else write ``new``. Returns (plan, resumed). The legs'
    λ_intra of ``new`` may hold every λ on disk and more (:func:`added_leg_lambdas`): the plan then takes the
    added windows (in new directories) and keeps the others."""
    p = new.path(PLAN_NAME)
    if not p.exists():
        new.write()
        return new, False
    old = Plan.from_json(json.loads(p.read_text()))
    added = None
    if old.route == new.route == "endpoint" and _norm(old.leg_lambdas) != _norm(new.leg_lambdas):
        added = added_leg_lambdas(old.leg_lambdas, old.leg_window_ids, new.leg_lambdas)
    # the settings of AS_STARTED not given are as on disk already (make_plan): a difference was asked for
    diffs = [k for k in KEY_FIELDS if _norm(getattr(old, k)) != _norm(getattr(new, k))
             and (k != "dtype" or new.ml)   # a plain-MM run loads no model: its dtype does not matter
             and (k != "leg_lambdas" or added is None)]
    if diffs:
        listed = ", ".join(f"{k}: {getattr(old, k)!r} on disk vs {getattr(new, k)!r} now" for k in diffs[:4])
        hint = "" if "dtype" not in diffs else (f" (--dtype {old.dtype}" + (
            "; runs started before float32 became the default ran float64" if old.dtype == "float64" else "") + ")")
        if "leg_end_steps" in diffs and "leg_steps" not in diffs:
            hint += (" (no --leg-end-ps" if old.leg_end_steps == old.leg_steps else
                     f" (--leg-end-ps {old.leg_end_steps * old.leg_dt_fs / 1000.0:g}") + ")"
        if "mass_repartition" in diffs:
            hint += f" (--mass-repartition {old.mass_repartition or 1:g})"
        if "split_decoupling" in diffs:
            hint += (" (no split_decoupling=True: it ran unsplit" if not old.split_decoupling else
                     " (--no-split-decoupling not given: it ran split") + ")"
        if "leg_lambdas" in diffs and old.route == new.route == "endpoint":
            hint += leg_lambdas_hint(old.leg_lambdas)
        raise UserInputError(f"{new.out} holds a run with different settings ({listed}); "
                             f"rerun with the original options{hint} to resume, or choose another --out")
    # how to run may change between attempts
    old.workers, old.scheduler, old.checkpoint_every = new.workers, new.scheduler, new.checkpoint_every
    old.shared_model, old.device, old.allow_large_dt = new.shared_model, new.device, new.allow_large_dt
    if added is not None and len(added[0]) > len(old.leg_lambdas):
        log.info("leg windows added at λ = %s (the %d on disk are kept)", ", ".join(
            f"{x:g}" for x in added[0] if min(abs(x - y) for y in old.leg_lambdas) > 0), len(old.leg_lambdas))
        old.leg_lambdas, old.leg_window_ids = added
    old.write()
    return old, True


#: the run settings whose None means "not given: as the run started": a resume without them goes on with the value
#: it started with (a hydration run's plan.json, a benchmark's settings.json; its molecules added since too), and
#: only a value given that differs is refused
AS_STARTED = ("split_decoupling", "mass_repartition")


def settings_as_started(given: dict, started: Optional[dict]) -> dict:
    """``given`` (a copy) with its settings of :data:`AS_STARTED` that are None (not given) as in ``started``, the
    settings the run started with (None: a fresh start). The one mechanism of "not given on a resume: as
    started": :func:`make_plan` with :func:`started_settings` (plan.json), so also
    :meth:`~mdi_mlmm.api.HydrationFreeEnergy.plan`, which needs the hydrogen mass factor for its default time
    step first; a benchmark with its settings.json (:func:`~mdi_mlmm.workflow.benchmark.as_started`)."""
    new = dict(given)
    if started:
        new.update({k: started[k] for k in AS_STARTED if k in new and new[k] is None and started.get(k) is not None})
    return new


def started_settings(out) -> Optional[dict]:
    """The settings of :data:`AS_STARTED` in the plan.json of run directory ``out`` as a plan reads them (one
    written before an option: its value then, :meth:`Plan.from_json`: unsplit, masses kept), None when there is
    none or it cannot be read (:func:`load_or_create` says why)."""
    p = Path(out) / PLAN_NAME
    if not p.is_file():
        return None
    try:
        plan = Plan.from_json(json.loads(p.read_text()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None   # a damaged plan.json: load_or_create says so
    return {k: getattr(plan, k) for k in AS_STARTED}


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float):
        return round(v, 10)
    return v
