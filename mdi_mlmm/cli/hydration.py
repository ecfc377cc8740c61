"""``mdi-mlmm hydration``: ML/MM (or plain MM) hydration free energy, resumable."""
from __future__ import annotations

from ._types import (TIMESTEP_HELP, add_timestep_override, check_timestep, int_at_least, nonneg_float,
                     positive_float, positive_int)


def register(sub):
    p = sub.add_parser("hydration", help="hydration free energy: prepare, λ windows, gas run, analysis",
                       description="Decouple the solute's ML–MM (or MM solute–water) nonbonded interactions over "
                                   "λ windows, E_ML on at every λ; report ΔG by TI/MBAR/BAR, the reorganization "
                                   "energy ⟨E_ML⟩_water − ⟨E_ML⟩_gas, and their sum. Rerun the same command to "
                                   "resume after an interruption. " + TIMESTEP_HELP)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--freesolv", metavar="ID", help="FreeSolv compound id, e.g. mobley_2310185 (ethanol)")
    src.add_argument("--smiles", help="SMILES of the solute")
    p.add_argument("--name", help="a name for a SMILES solute")
    p.add_argument("--model", default="ani2x", help="ani2x (default) | ani1x | ani1ccx | mace:PATH | mm (plain GAFF)")
    p.add_argument("--host", choices=["lammps", "gromacs"], default="lammps", help="MM host (default lammps)")
    p.add_argument("--windows", type=int_at_least(3, "(coupled, charges off, decoupled)"), default=None,
                   help="number of λ windows (default: FreeSolv's 20; fewer thins the schedule)")
    p.add_argument("--ns-per-window", type=positive_float, default=0.2, help="production per window, ns (default 0.2)")
    p.add_argument("--window-equil-ps", type=nonneg_float, default=10.0, help="equilibration at each λ, ps (default 10)")
    p.add_argument("--equil-ps", type=nonneg_float, default=20.0, help="NVT and NPT equilibration of the system, ps each")
    p.add_argument("--gas-ns", type=positive_float, default=None, help="gas-phase ML run, ns (default: --ns-per-window)")
    p.add_argument("--dt", type=positive_float, default=None,
                   help="time step, fs (default 1; 2 for --model mm on GROMACS, which constrains h-bonds; "
                        "limits below)")
    add_timestep_override(p)
    p.add_argument("--checkpoint-every", type=positive_int, default=1000,
                   help="steps between checkpoints of a running window (default 1000)")
    p.add_argument("--sample-every", type=positive_int, default=100, help="steps between energy samples (default 100)")
    p.add_argument("--temperature", type=positive_float, default=298.15, help="K (default 298.15)")
    p.add_argument("--forcefield", choices=["gaff", "gaff2"], default="gaff", help="solute force field (default gaff, "
                   "as FreeSolv)")
    p.add_argument("--workers", type=positive_int, default=None, help="windows run at once on this machine (default: cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask distributed scheduler (tcp://host:8786) to run the "
                   "windows on; workers must share the file system")
    p.add_argument("--no-shared-model", dest="shared_model", action="store_false",
                   help="give every ML window its own model in its own engine, instead of one batching model server "
                        "shared by the windows that run at once on this machine (the default)")
    p.add_argument("--device", default="cpu",
                   help="where the ML model runs: cpu (default), cuda, cuda:N or auto; with the shared model server "
                        "one GPU serves every window")
    p.add_argument("--seed", type=positive_int, default=2025)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="run directory (created; rerun with the same options to resume)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from ..potentials.registry import is_ml

    ml = is_ml(args.model)
    constrained = not ml and args.host == "gromacs"  # GROMACS MM windows constrain h-bonds; nothing else does
    dt = args.dt or (2.0 if constrained else 1.0)
    check_timestep(dt, constrained_xh=constrained, allow_large=args.allow_large_dt)
    if ml:
        from ..potentials import check_model_spec

        check_model_spec(args.model)  # a bad spec or missing ANI files fail now, not in a window's engine

    from ..analysis.report import summary_lines
    from ..workflow.hydration import run_hydration
    from ..protocol.plan import make_plan
    plan = make_plan(args.out, model=args.model, host=args.host, smiles=args.smiles, freesolv_id=args.freesolv,
                     name=args.name, windows=args.windows, ns_per_window=args.ns_per_window, dt_fs=dt,
                     temperature=args.temperature, sample_every=args.sample_every,
                     gas_ns=args.gas_ns if args.gas_ns is not None else args.ns_per_window, equil_ps=args.equil_ps,
                     window_equil_ps=args.window_equil_ps, workers=args.workers or (os.cpu_count() or 1),
                     scheduler=args.scheduler, forcefield=args.forcefield, seed=args.seed,
                     checkpoint_every=args.checkpoint_every, shared_model=args.shared_model,
                     device=args.device)
    res = run_hydration(plan, progress=not args.no_progress)
    print("\n".join(summary_lines(res)))
    print(f"report: {plan.out}/analysis/report.md")
    return 0
