"""``mdi-mlmm hydration``: ML/MM (or plain MM) hydration free energy, resumable.

A thin layer over :class:`mdi_mlmm.api.HydrationFreeEnergy`, whose defaults it shows and uses."""
from __future__ import annotations

from ..api import hydration_defaults
from ..hosts import registry as hosts
from ..potentials.registry import DTYPES
from ..protocol.plan import DEFAULT_LEG_WINDOWS
from ..protocol.timestep import CONSTRAINTS
from ._types import (TIMESTEP_HELP, add_mass_repartition, add_timestep_override, int_at_least, nonneg_float,
                     positive_float, positive_int)


def register(sub):
    D = hydration_defaults()
    p = sub.add_parser("hydration", help="hydration free energy: prepare, λ windows, gas run, analysis",
                       description="Decouple the solute's ML–MM (or MM solute–water) nonbonded interactions over "
                                   "λ windows, E_ML on at every λ; report ΔG by TI/MBAR/BAR, the reorganization "
                                   "energy ⟨E_ML⟩_water − ⟨E_ML⟩_gas, and their sum. Rerun the same command to "
                                   "resume after an interruption. " + TIMESTEP_HELP)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--freesolv", dest="freesolv_id", metavar="ID", help="FreeSolv compound id, e.g. mobley_2310185 (ethanol)")
    src.add_argument("--smiles", help="SMILES of the solute")
    p.add_argument("--name", help="a name for a SMILES solute")
    p.add_argument("--model", default=D["model"], help="model (default %(default)s): ani2x | ani1x | ani1ccx | mace:PATH | python:FILE:FACTORY | mm (plain GAFF)")
    p.add_argument("--host", choices=hosts.names(), default=D["host"], help="MM host (default %(default)s)")
    p.add_argument("--windows", type=int_at_least(3, "(coupled, charges off, decoupled)"), default=D["windows"],
                   help="number of λ windows (default: FreeSolv's 20; fewer thins the schedule)")
    p.add_argument("--ns-per-window", type=positive_float, default=D["ns_per_window"], help="production per window, ns (default %(default)s)")
    p.add_argument("--window-equil-ps", type=nonneg_float, default=D["window_equil_ps"], help="equilibration at each λ, ps (default %(default)s)")
    p.add_argument("--equil-ps", type=nonneg_float, default=D["equil_ps"], help="NVT and NPT equilibration of the system, ps each (default %(default)s)")
    p.add_argument("--gas-ns", type=positive_float, default=D["gas_ns"], help="gas-phase ML run, ns (default: --ns-per-window)")
    p.add_argument("--dt", dest="dt_fs", type=positive_float, default=D["dt_fs"],
                   help="time step, fs (default 1; 2 with --constraints h-bonds, for --model mm with --protocol "
                        "freesolv, which constrains h-bonds, and for the endpoint route's MM windows; 4 with "
                        "--mass-repartition; a default is lowered to keep 5 steps in the solute's fastest "
                        "flexible bond, e.g. 3 fs for a nitrile at 4; limits below)")
    p.add_argument("--constraints", choices=CONSTRAINTS, default=D["constraints"],
                   help="the solute's X-H bonds: none (default: flexible, 1 fs) or h-bonds: constrained at the force "
                        "field's b0, the ML region's included, 2 fs (the direct route's windows and gas run, the "
                        "endpoint route's legs; either host)")
    add_timestep_override(p)
    add_mass_repartition(p, D["mass_repartition"])
    p.add_argument("--no-split-decoupling", dest="split_decoupling", action="store_const", const=False,
                   default=D["split_decoupling"],
                   help="GROMACS: run every decoupling window with the full topology (two PME grids per step). By "
                        "default the windows after the charges are off run with the solute's charges zero (one "
                        "PME grid; the same energies) and the analysis adds the two stages (docs/gromacs.md)")
    p.add_argument("--checkpoint-every", type=positive_int, default=D["checkpoint_every"],
                   help="steps between checkpoints of a running window (default %(default)s)")
    p.add_argument("--sample-every", type=positive_int, default=D["sample_every"], help="steps between energy samples (default %(default)s)")
    p.add_argument("--temperature", type=positive_float, default=D["temperature"], help="K (default %(default)s)")
    p.add_argument("--forcefield", choices=["gaff", "gaff2"], default=D["forcefield"], help="solute force field (default %(default)s, "
                   "as FreeSolv)")
    p.add_argument("--workers", type=positive_int, default=D["workers"], help="windows run at once on this machine (default: cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="Dask distributed scheduler (tcp://host:8786) to run the "
                   "windows on; workers must share the file system")
    p.add_argument("--no-shared-model", dest="shared_model", action="store_false",
                   help="give every ML window its own model in its own engine, instead of one batching model server "
                        "shared by the windows that run at once on this machine (the default)")
    p.add_argument("--device", default=D["device"],
                   help="where the ML model runs: cpu (default), cuda, cuda:N or auto; with the shared model server "
                        "one GPU serves every window")
    p.add_argument("--dtype", choices=DTYPES, default=D["dtype"],
                   help="the ML model's precision in every engine of the run (windows, gas run, endpoint legs, "
                        "the shared model server): float32 (default; the same ΔG as float64 to 1e-5 kcal/mol, "
                        "bench/README.md) or float64")
    p.add_argument("--seed", type=positive_int, default=D["seed"], help="random seed (default %(default)s)")
    p.add_argument("--protocol", choices=["default", "freesolv"], default=D["protocol"],
                   help="physical model (default %(default)s: the same on both hosts, docs/hosts.md; freesolv: "
                        "FreeSolv's GROMACS settings, switched LJ + 1.2 nm Coulomb + dispersion correction + NPT "
                        "windows, h-bonds for --model mm, GROMACS only; the endpoint route's water legs take its "
                        "nonbonded settings; use it next to experiment)")
    e = p.add_argument_group("route", "how the ML/MM hydration free energy is reached (docs/endpoint.md)")
    e.add_argument("--route", choices=["direct", "endpoint"], default=D["route"],
                   help="direct (default): E_ML on in every λ window; endpoint: the plain-MM decoupling on GROMACS "
                        "(--windows, --ns-per-window, --dt; 2 fs with h-bond constraints) plus MM→ML legs in water "
                        "and in gas on --host: ΔG(ML/MM) = ΔG(MM) + ΔA(water) − ΔA(gas)")
    lw = e.add_mutually_exclusive_group()
    lw.add_argument("--leg-windows", type=int_at_least(2, "(λ = 0 and 1)"), default=D["leg_windows"],
                    help=f"endpoint legs: evenly spaced λ_intra windows from 0 to 1 (default {DEFAULT_LEG_WINDOWS})")
    lw.add_argument("--leg-lambdas", nargs="+", type=float, metavar="λ", default=D["leg_lambdas"],
                    help="endpoint legs: the λ_intra windows, from 0 to 1, increasing (instead of --leg-windows). "
                         "On a resume, λ may be added to those of the run (every one of them given): only the added "
                         "windows run, the analysis takes all (the overlap warning names such a list)")
    e.add_argument("--leg-ps", type=positive_float, default=D["leg_ps"],
                   help="endpoint legs: production per window, ps (default %(default)s)")
    e.add_argument("--leg-end-ps", type=positive_float, default=D["leg_end_ps"], metavar="PS",
                   help="endpoint legs: production of the λ_intra = 1 window of both legs (water and gas), ps, at "
                        "least --leg-ps (default: --leg-ps). Its samples give ΔG_reorg = ⟨E_ML⟩_water − "
                        "⟨E_ML⟩_gas too, which needs ~1 ns where the other windows do with 20-40 ps")
    e.add_argument("--leg-dt", dest="leg_dt_fs", type=positive_float, default=D["leg_dt_fs"],
                   help="endpoint legs: time step, fs (default 1; 2 with --constraints h-bonds, 4 with "
                        "--mass-repartition too, lowered as --dt's; limits below)")
    e.add_argument("--leg-equil-ps", type=nonneg_float, default=D["leg_equil_ps"],
                   help="endpoint legs: equilibration at each λ_intra, ps (default %(default)s)")
    e.add_argument("--leg-sample-every", type=positive_int, default=D["leg_sample_every"],
                   help="endpoint legs: steps between saved full-precision frames (ΔU samples; default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="run directory (created; rerun with the same options to resume)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import HydrationFreeEnergy

    calc = HydrationFreeEnergy(**{k: getattr(args, k) for k in hydration_defaults()})
    res = calc.run(args.out, progress=not args.no_progress)
    print(res)
    print(f"report: {res.run_dir}/analysis/report.md")
    return 0
