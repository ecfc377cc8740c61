"""The endpoint route (docs/endpoint.md): the ML/MM hydration free energy from the MM one,

    ΔG_hyd(ML/MM) = ΔG_hyd(MM) + ΔA_MM→ML(water) − ΔA_MM→ML(gas)

Steps, all in one run directory and resumable like the direct route (:mod:`.hydration`)::

    DIR/plan.json            route = endpoint; the leg settings are key fields (a changed protocol is refused)
    DIR/system/, DIR/equil/  prepare and equilibrate (as the direct route)
    DIR/windows/NN/          the plain-MM decoupling: stock gmx, 2 fs, h-bond constraints (dhdl.xvg)
    DIR/legs/water/NN/       λ_intra windows of the solvated, fully coupled solute (ML engine serves
                             λ·E_ML + (1 − λ)·E_MM,intra); full-precision frames; flexible at 1 fs, or
                             with the plan's constraints h-bonds X–H constrained as in the MM part (2 fs);
                             the last (λ_intra = 1) runs --leg-end-ps when given (longer: ΔG_reorg)
    DIR/legs/gas/NN/         the same for the solute alone (NN numbers the windows in the order they were
                             planned: windows added later with --leg-lambdas take the next numbers)
    DIR/legs/*/NN/delta_u.csv  ΔU = E_ML − E_MM,intra at every frame (its own step, after the windows)
    DIR/analysis/            results.json, report.md, plots (:mod:`mdi_mlmm.analysis.endpoint_report`)

The MM windows and the leg windows are units of one :func:`.hydration.run_units` call (local pool or
Dask, one progress bar); ML leg windows running at once on this machine share one batching model
server. The MM part always runs on GROMACS (FreeSolv's λ schedule, 2 fs, h-bond constraints; the plan's
protocol, whose nonbonded settings the water legs take too); the legs on the plan's host.
E_MM,intra comes from the gas topology in both legs (the solute's own force-field terms).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from .. import processes
from .. import progress as progress_display
from ..errors import WorkflowError
from ..potentials import registry
from ..protocol.plan import Plan, load_or_create
from ..protocol.specs import LegSpec, UnitSpec
from .hydration import run_units, start_model_server, unit_specs

log = logging.getLogger(__name__)

PHASES = ("water", "gas")
DELTA_U_NAME = "delta_u.csv"
#: the host of the MM decoupling on the endpoint route (stock gmx, h-bond constraints)
MM_HOST = "gromacs"


def mm_plan(plan: Plan) -> Plan:
    """The plain-MM decoupling of an endpoint plan, as a direct-route plan (its windows, on GROMACS)."""
    return dataclasses.replace(plan, model="mm", host=MM_HOST, route="direct", gas_steps=0)


def leg_specs(plan: Plan, system: dict, gro_eq: Path) -> list[LegSpec]:
    """The water and gas leg windows of an endpoint plan as typed unit specs (X–H bonds constrained with
    the plan's constraints h-bonds; the λ_intra = 1 windows run the plan's ``leg_end_steps``)."""
    root = Path(system["root"])
    solv, gas = system["solvated"], system["gas"]
    common = dict(host=plan.host, model=plan.model, dt_fs=plan.leg_dt_fs, temperature=plan.temperature,
                  sample_every=plan.leg_sample_every, ml_indices=list(system["ml_atoms"]),
                  checkpoint_every=plan.checkpoint_every, equil_steps=plan.leg_equil_steps,
                  engine_args=plan.engine_options(), mm_intra_top=str(root / gas["top"]),
                  constrain_hbonds=plan.constraints == "h-bonds", protocol=plan.protocol,
                  mass_repartition=plan.mass_repartition, allow_large_dt=plan.allow_large_dt)
    files = {"water": (root / solv["top"], gro_eq, root / solv["ndx"]),
             "gas": (root / gas["top"], root / gas["gro"], root / gas["ndx"])}
    specs = []
    for p, phase in enumerate(PHASES):
        top, gro, ndx = files[phase]
        for k, lam in enumerate(plan.leg_lambdas):
            n = plan.leg_window_id(k)   # its directory number: a window added later leaves the others' alone
            specs.append(LegSpec(**common, phase=phase, lam=lam, steps=plan.leg_window_steps(k), top=str(top),
                                 gro=str(gro), ndx=str(ndx),
                                 out_dir=str(plan.path(plan.leg_directory(phase, k))),
                                 seed=plan.seed + 1009 + 101 * n + 53 * p))
    return specs


def run_endpoint(plan: Plan, *, progress: bool = True, analyze: bool = True):
    """Run (or resume) the endpoint route for ``plan`` (``plan.route == "endpoint"``); returns the
    analysis (:class:`~mdi_mlmm.analysis.endpoint_report.EndpointRunResult`), or None with ``analyze=False``.
    SIGTERM/SIGINT stop every child and raise :class:`~mdi_mlmm.errors.Interrupted`; rerun to resume."""
    with processes.stop_on_signals():
        return _run_endpoint(plan, progress=progress, analyze=analyze)


def _run_endpoint(plan: Plan, *, progress: bool, analyze: bool):
    from .hydration import prepare_and_equilibrate, settle_timesteps

    if plan.route != "endpoint":
        raise WorkflowError(f"plan of route {plan.route!r} given to the endpoint workflow")
    registry.resolve(plan.model).check_files().check_other_process()
    plan, resumed = load_or_create(settle_timesteps(plan))
    log.info("%s endpoint run in %s (%d MM windows, legs at λ = %s, model %s, host %s)",
             "resuming" if resumed else "starting", plan.out, len(plan.windows),
             ", ".join(f"{x:g}" for x in plan.leg_lambdas), plan.model, plan.host)
    system, gro_eq = prepare_and_equilibrate(plan)
    legs = leg_specs(plan, system, gro_eq)
    mm = unit_specs(mm_plan(plan), system, gro_eq, constrain_hbonds=True)  # at the plan's 2 fs
    todo_legs = [s for s in legs if not (Path(s.out_dir) / "done.json").exists()]
    use_server = plan.shared_model and not plan.scheduler and min(int(plan.workers), len(todo_legs)) >= 2
    server = start_model_server(plan, todo_legs) if use_server else None
    try:
        # the long ML legs first (the longest, λ_intra = 1 with --leg-end-ps, at the head): the MM windows fill
        # the pool behind them
        run_units(sorted(legs, key=lambda s: -s.steps) + list(mm), workers=plan.workers, scheduler=plan.scheduler,
                  progress=progress)
    finally:
        if server is not None:
            from ..potentials.shared import stop_server_process

            stop_server_process(server)
    compute_delta_u(plan, system, legs, progress=progress)
    if not analyze:
        return None
    from ..analysis.report import analyze as do_analyze

    return do_analyze(plan.out)


def compute_delta_u(plan: Plan, system: dict, legs: list[UnitSpec], *, progress: bool = True) -> list[Path]:
    """ΔU = E_ML − E_MM,intra over every finished leg window's frames into its ``delta_u.csv``
    (:func:`mdi_mlmm.analysis.delta_u.window_delta_u`); windows that have one are skipped (resumable:
    each file is written whole or not at all). One ML model in this process, batched calls."""
    todo = [Path(s.out_dir) for s in legs
            if (Path(s.out_dir) / "done.json").exists() and not (Path(s.out_dir) / DELTA_U_NAME).exists()]
    paths = [Path(s.out_dir) / DELTA_U_NAME for s in legs]
    if not todo:
        return paths
    from ..analysis.delta_u import window_delta_u
    from ..potentials import load_potential
    from ..potentials.mm_intra import MMIntra
    from ..topology.gromacs import load_gromacs
    from ..topology.mlregion import region_bonds

    root = Path(system["root"])
    gas = system["gas"]
    mm = MMIntra.from_gromacs(str(root / gas["top"]))
    structure = load_gromacs(root / gas["top"], root / gas["gro"])
    bonds = region_bonds(structure, list(range(len(structure.atoms))))
    threads = max(1, min(int(plan.workers), os.cpu_count() or 1))
    potential = load_potential(plan.model, threads=threads, device=plan.device, dtype=plan.dtype)
    bar = progress_display.Bar(len(todo), unit="window", desc="ΔU over the leg frames", enabled=progress)
    try:
        for k, d in enumerate(todo):
            done = json.loads((d / "done.json").read_text())
            window_delta_u(done["topology"], done["trajectory"], d / DELTA_U_NAME, potential=potential, mm=mm,
                           atoms=done["atoms"], bonds=bonds)
            log.info("ΔU of %s written", d)
            bar.update_to(k + 1, f"{k + 1}/{len(todo)} windows")
    finally:
        bar.close()
    return paths
