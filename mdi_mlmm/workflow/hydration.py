"""The hydration free-energy workflow: prepare → equilibrate → λ windows (+ gas run) → analysis.

Everything lives in one directory (``--out DIR``)::

    DIR/system/            mdi-mlmm prepare output (system.json, solvated/, gas/)
    DIR/plan.json          written once the system is prepared (a time step not given is lowered for the
                           solute's fastest bond: settle_timesteps), before anything runs; a rerun resumes from it
    DIR/equil/             EM → NVT → NPT (plain MM, stock gmx)
    DIR/windows/NN/        one λ window each (progress.json while running, done.json when finished)
    DIR/gas/               gas-phase ML run (ML models)
    DIR/analysis/          results.json, report.md, plots

Windows run in parallel on a local pool (``workers``) or on a Dask distributed cluster
(``scheduler`` address; workers must share the file system). Each unit runs in its own
Python process (:mod:`.task`), so a killed run loses at most the steps since the unit's
last checkpoint and a rerun skips finished units. With an ML model on a local pool running
two or more units at once, the units' engines share one model server (``DIR/model_server/``,
:mod:`mdi_mlmm.potentials.shared`) that loads the model once and evaluates the structures of
all running windows in one batched model call.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import processes
from .. import progress as progress_display
from ..errors import UserInputError, WorkflowError
from ..potentials import registry
from ..protocol.plan import PLAN_NAME, Plan, load_or_create, replan
from ..protocol.specs import GasSpec, UnitSpec, WindowSpec
from .task import run_in_subprocess

log = logging.getLogger(__name__)


def _prepare(plan: Plan) -> dict:
    from ..prep.system import load_system, prepare_system

    sysdir = plan.path("system")
    if (sysdir / "system.json").exists():
        return load_system(sysdir)
    log.info("preparing the system in %s", sysdir)
    prepare_system(sysdir, smiles=plan.smiles, freesolv_id=plan.freesolv_id, name=plan.name,
                   forcefield=plan.forcefield, box_padding_nm=plan.box_padding_nm,
                   model=plan.model if plan.ml else "mm")
    return load_system(sysdir)


#: unit outputs that show a unit of the run has started (settle_timesteps: a stored plan may then not be remade)
_STARTED = ("progress.json", "done.json")
_UNIT_DIRS = ("windows", "gas", "legs")


def _any_unit_started(plan: Plan) -> bool:
    """Whether any unit of the run under ``plan.out`` has left progress.json or done.json (walks the unit dirs)."""
    return any(True for d in _UNIT_DIRS for n in _STARTED for _ in plan.path(d).rglob(n))


def settle_timesteps(plan: Plan) -> Plan:
    """``plan`` with its time steps as the prepared solute allows, before plan.json is written or compared
    (the run's ``system/`` is prepared first if it is not there). For the units that run on GROMACS (whose
    grompp only warns), a time step not asked for (:attr:`~mdi_mlmm.protocol.plan.Plan.dt_default`,
    ``leg_dt_default``) is lowered, when the solute's fastest flexible bond as the
    unit runs it (its X–H constraints, its hydrogen masses) oscillates in fewer than
    :data:`~mdi_mlmm.topology.hmr.MIN_STEPS_PER_PERIOD` steps, to the largest multiple of 0.5 fs that keeps them
    (:func:`~mdi_mlmm.topology.hmr.largest_dt_fs`; one log line); one asked for is refused in the line every unit
    would refuse it with (with :attr:`~mdi_mlmm.protocol.plan.Plan.allow_large_dt`: warned about on stderr, and
    the units warn too). A resume finds the same topology, so the same time step as plan.json; a plan.json at
    the unlowered time step (written before this check; every unit refused it) is remade if no unit has
    started. A plan.json without a prepared system is left as it is (its units check)."""
    from ..topology.hmr import MIN_STEPS_PER_PERIOD, fast_bond_message, fastest_bond, largest_dt_fs, text_as_run

    stored = plan.path(PLAN_NAME)
    units = (("dt_fs", "--dt", plan.host == "gromacs" or plan.route == "endpoint",   # endpoint: MM windows on GROMACS
              plan.windows_constraints == "h-bonds", plan.dt_default),
             ("leg_dt_fs", "--leg-dt", plan.route == "endpoint" and plan.host == "gromacs",
              plan.constraints == "h-bonds", plan.leg_dt_default))
    units = [u for u in units if u[2]]
    if not units or (stored.is_file() and not plan.path("system", "system.json").is_file()):
        return plan
    fresh = not stored.is_file() and not plan.path("system", "system.json").is_file()
    system = _prepare(plan)
    top = Path(system["root"]) / system["solvated"]["top"]
    text = text_as_run(top, plan.mass_repartition)
    changes = {}
    for key, option, _, constrained, default in units:
        dt, fast = getattr(plan, key), fastest_bond(text, hbonds_constrained=constrained)
        if fast is None or fast[0] >= MIN_STEPS_PER_PERIOD * dt:
            continue
        if not default:
            message = fast_bond_message(text, dt, hbonds_constrained=constrained, option=option, source=str(top),
                                        factor=plan.mass_repartition)
            if plan.allow_large_dt:
                print(f"warning: {message} (--allow-large-dt: run anyway)", file=sys.stderr, flush=True)
                continue
            if fresh:   # no system/ without its plan.json: a rerun with other inputs would take it unchecked
                shutil.rmtree(plan.path("system"), ignore_errors=True)
            raise UserInputError(message)
        changes[key] = largest_dt_fs(fast[0])
        log.info("%s not given: %g fs instead of %g fs: the bond %s of %s%s oscillates in %.1f fs (at least %d "
                 "steps per period)", option, changes[key], dt, fast[2], fast[1],
                 f" (hydrogen masses x {plan.mass_repartition:g})" if plan.mass_repartition else "", fast[0],
                 MIN_STEPS_PER_PERIOD)
    if not changes:
        return plan
    new = replan(plan, **changes)
    if stored.is_file():
        try:
            old = json.loads(stored.read_text())
        except (OSError, ValueError):
            return new   # load_or_create says what is wrong with it
        if all(old.get(k) == getattr(plan, k) for k in changes) and not _any_unit_started(plan):
            load_or_create(plan)   # the other settings as on disk (else refused as usual)
            log.info("%s: remade at the lowered time step (no unit had run at %s)", stored,
                     ", ".join(f"{getattr(plan, k):g} fs" for k in changes))
            new.write()
    return new


def prepare_and_equilibrate(plan: Plan) -> tuple[dict, Path]:
    """The prepared system (resumed if there) and its classically equilibrated coordinates, which
    every route's units start from: (system description, equilibrated .gro)."""
    from .equilibrate import equilibrate

    system = _prepare(plan)
    root = Path(system["root"])
    solv = system["solvated"]
    gro_eq = equilibrate(root / solv["top"], root / solv["gro"], root / solv["ndx"], plan.path("equil"),
                         equil_ps=plan.equil_ps, temperature=plan.temperature, seed=plan.seed,
                         protocol=plan.protocol)
    return system, gro_eq


def unit_specs(plan: Plan, system: dict, gro_eq: Path, *, constrain_hbonds: bool | None = None) -> list[UnitSpec]:
    """The plan's λ windows (and gas leg) as typed unit specs. constrain_hbonds: constrain the solute's
    X–H bonds in the windows (None: with the plan's constraints h-bonds, and for an MM solute with protocol
    freesolv); the gas leg follows the plan's constraints."""
    if constrain_hbonds is None:
        constrain_hbonds = plan.windows_constraints == "h-bonds"
    root = Path(system["root"])
    solv, gas = system["solvated"], system["gas"]
    common = dict(host=plan.host, model=plan.model, dt_fs=plan.dt_fs, temperature=plan.temperature,
                  sample_every=plan.sample_every, ml_indices=list(system["ml_atoms"]),
                  checkpoint_every=plan.checkpoint_every, engine_args=plan.engine_options(),
                  mass_repartition=plan.mass_repartition, allow_large_dt=plan.allow_large_dt)
    specs = []
    for w in plan.windows:
        specs.append(WindowSpec(**common, state=w.state, schedule=plan.schedule,
                                steps=plan.steps_per_window, equil_steps=plan.window_equil_steps,
                                top=str(root / solv["top"]), gro=str(gro_eq), ndx=str(root / solv["ndx"]),
                                out_dir=str(plan.path(w.directory)), seed=plan.seed + 101 * w.state,
                                protocol=plan.protocol, constrain_hbonds=bool(constrain_hbonds),
                                stage_boundary=plan.stage_boundary))
    if plan.ml and plan.gas_steps > 0:
        specs.append(GasSpec(**common, steps=plan.gas_steps, top=str(root / gas["top"]),
                             gro=str(root / gas["gro"]), ndx=str(root / gas["ndx"]), out_dir=str(plan.path("gas")),
                             seed=plan.seed + 7, constrain_hbonds=plan.constraints == "h-bonds"))
    return specs


class _Progress:
    """One bar over all units (steps done / total), fed by their progress.json files."""

    def __init__(self, specs, enabled=True):
        self.specs = specs
        self.total = sum(self._size(s) for s in specs)
        # on a terminal: a live bar; in a log file: one line every 30 s
        self.bar = progress_display.Bar(self.total, unit="step", desc="λ windows + gas", enabled=enabled)

    @staticmethod
    def _size(spec) -> int:
        return spec.total_steps

    def done_steps(self):
        """Steps done over all units; a unit's own progress.json counts as the fraction it reports."""
        n = 0.0
        for s in self.specs:
            out = Path(s.out_dir)
            if (out / "done.json").exists():
                n += self._size(s)
            else:
                n += self._size(s) * (progress_display.read_fraction(out) or 0.0)
        return int(n)

    def update(self, finished: int, failed: int):
        if self.bar.bar is not None:
            self.bar.update_to(self.done_steps(), f"{finished}/{len(self.specs)} units done"
                               + (f", {failed} failed" if failed else ""))

    def close(self):
        self.bar.close()


def run_units(specs: list[UnitSpec], workers: int = 1, scheduler: str | None = None, progress: bool = True) -> list:
    """Run units in parallel; returns their results. Failures are collected, then raised together."""
    todo = [s for s in specs if not (Path(s.out_dir) / "done.json").exists()]
    if len(todo) < len(specs):
        log.info("%d of %d units already finished: skipped", len(specs) - len(todo), len(specs))
    from .task import clear_stop

    for s in todo:
        clear_stop(s)
    bar = _Progress(specs, progress)
    errors: list[str] = []

    def wait(futs):  # concurrent.futures and dask futures both have done()/result()
        pending = list(futs)
        while pending:
            for f in [f for f in pending if f.done()]:
                pending.remove(f)
                try:
                    f.result()
                except Exception as exc:
                    errors.append(str(exc))
            bar.update(len(specs) - len(pending), len(errors))
            time.sleep(1.0)

    try:
        if scheduler:
            from dask.distributed import Client

            with Client(scheduler) as client:
                futs = [client.submit(run_in_subprocess, s, pure=False,
                                      key=f"mdi-mlmm-{Path(s.out_dir).name}-{time.time()}") for s in todo]
                try:
                    wait(futs)
                except BaseException:   # Interrupted: the workers' unit processes are not our children
                    with processes.shielded():
                        _stop_dask_units(futs, todo)
                    raise
        else:
            with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
                futs = [pool.submit(run_in_subprocess, s) for s in todo]
                try:
                    wait(futs)
                except BaseException:   # Interrupted (SIGTERM/SIGINT): start no more units, stop the running ones
                    for f in futs:
                        f.cancel()
                    processes.stop_all()
                    raise
        bar.update(len(specs), len(errors))
    finally:
        bar.close()
    if errors:
        raise WorkflowError(f"{len(errors)} unit(s) failed; rerun the same command to retry them: " + " || ".join(errors[:3]))
    return [json.loads((Path(s.out_dir) / "done.json").read_text()) for s in specs]


def _stop_dask_units(futs, specs, timeout: float | None = None):
    """Stop units running on Dask workers: cancel what has not started, ask each running unit's
    runner to stop its unit process (a request file in the unit's directory; the runner checks
    every second), and wait until they have ended (each leaves its checkpoint)."""
    from .task import UNIT_GRACE_S, request_stop

    for s in specs:
        request_stop(s)   # queued units see it before they start, running ones within a second
    deadline = time.time() + (timeout if timeout is not None else UNIT_GRACE_S + 15)
    while time.time() < deadline and any(f.status == "pending" for f in futs) and not processes.hurrying():
        time.sleep(0.5)
    left = [f for f in futs if f.status == "pending"]
    if left:
        log.warning("%d Dask unit(s) still running after the stop request: %s", len(left),
                    ", ".join(f.key for f in left[:3]))
        for f in left:
            f.cancel()


def _use_model_server(plan: Plan, specs: list[UnitSpec]) -> bool:
    todo = [s for s in specs if not (Path(s.out_dir) / "done.json").exists()]
    return plan.ml and plan.shared_model and not plan.scheduler and min(int(plan.workers), len(todo)) >= 2


def start_model_server(plan: Plan, specs: list[UnitSpec]):
    """Start the shared model server and point every spec's engine at it; returns the process."""
    from ..potentials.shared import start_server_process

    info = plan.path("model_server", "server.json")
    proc = start_server_process(plan.model, info, plan.path("model_server", "server.log"),
                                extra=plan.engine_options())
    for s in specs:
        s.engine_model = f"server:{info}"
    log.info("model server for %s started (pid %d, %s); the windows' engines share it", plan.model, proc.pid, info)
    return proc


def run_hydration(plan: Plan, *, progress: bool = True, analyze: bool = True):
    """Run (or resume) the whole workflow for ``plan``; returns the analysis
    (:class:`~mdi_mlmm.analysis.results.HydrationResult`), or None with ``analyze=False``.

    SIGTERM/SIGINT (a batch scheduler's ``kill``, Ctrl-C) stop every child — unit processes
    first (each stops its mdrun/engine, leaving its checkpoint), then the model server — and
    raise :class:`~mdi_mlmm.errors.Interrupted`; rerunning the same command resumes.
    """
    with processes.stop_on_signals():
        return _run_hydration(plan, progress=progress, analyze=analyze)


def _run_hydration(plan: Plan, *, progress: bool, analyze: bool):
    registry.resolve(plan.model).check_files().check_other_process()   # fail now, not in a window
    plan, resumed = load_or_create(settle_timesteps(plan))
    log.info("%s hydration run in %s (%d windows, model %s, host %s)", "resuming" if resumed else "starting",
             plan.out, len(plan.windows), plan.model, plan.host)
    system, gro_eq = prepare_and_equilibrate(plan)
    specs = unit_specs(plan, system, gro_eq)
    server = start_model_server(plan, specs) if _use_model_server(plan, specs) else None
    try:
        run_units(specs, workers=plan.workers, scheduler=plan.scheduler, progress=progress)
    finally:
        if server is not None:
            from ..potentials.shared import stop_server_process

            stop_server_process(server)
            log.info("model server stopped; its statistics are in %s", plan.path("model_server", "server.log"))
    if not analyze:
        return None
    from ..analysis.report import analyze as do_analyze

    return do_analyze(plan.out)
