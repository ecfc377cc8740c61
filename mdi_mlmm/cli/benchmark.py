"""``mdi-mlmm benchmark freesolv``: hydration free energies of many FreeSolv molecules against experiment.

A thin layer over :class:`mdi_mlmm.api.FreeSolvBenchmark`. The per-molecule protocol options are
those of ``mdi-mlmm hydration`` (taken from its parser, with its defaults, which are the API's);
its ``--seed`` is ``--md-seed`` here, ``--seed`` being the draw's and the bootstrap's."""
from __future__ import annotations

import argparse

from ._types import TIMESTEP_HELP, nonneg_int, positive_int

#: hydration options that are not per-molecule protocol options (the benchmark sets them itself)
_NOT_PROTOCOL = {"freesolv_id", "smiles", "name", "seed", "out", "no_progress", "help"}


def _hydration_options() -> list:
    """The actions of ``mdi-mlmm hydration``'s protocol options (model, host, windows, ...)."""
    from ..api import hydration_defaults
    from . import hydration

    subs = argparse.ArgumentParser(add_help=False).add_subparsers()
    hydration.register(subs)
    hp = subs.choices["hydration"]
    keys = set(hydration_defaults()) - _NOT_PROTOCOL
    for n, g in enumerate(hp._mutually_exclusive_groups):
        for a in g._group_actions:
            a._exclusive_group = n   # register() groups them again
    return [a for a in hp._actions if a.dest in keys]


def register(sub):
    from ..api import hydration_defaults

    p = sub.add_parser("benchmark", help="benchmarks against experiment (FreeSolv hydration free energies)",
                       description="Benchmarks against experiment.")
    kinds = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    f = kinds.add_parser("freesolv", help="hydration free energies of FreeSolv molecules against experiment",
                         description="Run the hydration free energy of each selected FreeSolv molecule (one "
                                     "`mdi-mlmm hydration` run each, in OUT/molecules/ID/), then write a table "
                                     "(CSV, markdown), MAE/RMSE/R² against experiment with bootstrap 95 % "
                                     "confidence intervals (FreeSolv's GAFF values on the same molecules too), a "
                                     "scatter plot and a report into OUT. Molecules the model cannot describe "
                                     "(elements, net charge) are skipped with one line each; a failed molecule is "
                                     "listed with its error. Rerun the same command to continue. " + TIMESTEP_HELP)
    sel = f.add_argument_group("molecules")
    which = sel.add_mutually_exclusive_group(required=True)
    which.add_argument("--ids", nargs="+", metavar="ID", help="FreeSolv ids (space or comma separated)")
    which.add_argument("--subset", type=positive_int, metavar="N",
                       help="N molecules drawn at random (see --seed) from those that pass the filters and suit "
                            "the model")
    which.add_argument("--all", action="store_true", help="every molecule that passes the filters and suits the model")
    sel.add_argument("--seed", type=nonneg_int, default=0,
                     help="seed of the --subset draw and of the bootstrap (default %(default)s)")
    sel.add_argument("--elements", metavar="C,H,N,...",
                     help="only molecules made of these elements (list H too), e.g. C,H,N,O,F,Cl,S")
    sel.add_argument("--min-heavy-atoms", type=positive_int, metavar="N", help="only molecules with at least N heavy atoms")
    sel.add_argument("--max-heavy-atoms", type=positive_int, metavar="N", help="only molecules with at most N heavy atoms")
    sel.add_argument("--dry-run", action="store_true", help="print the selection (and what is skipped) and stop")

    proto = f.add_argument_group("per-molecule protocol (as mdi-mlmm hydration)")
    copied = _hydration_options()
    exclusive = {}   # hydration's mutually exclusive options (--leg-windows | --leg-lambdas) stay exclusive
    for a in copied:
        group = getattr(a, "_exclusive_group", None)
        if group is not None and group not in exclusive:
            exclusive[group] = proto.add_mutually_exclusive_group()
        (exclusive[group] if group is not None else proto)._add_action(a)
    proto.add_argument("--md-seed", type=positive_int, default=hydration_defaults()["seed"],
                       help="random seed of the runs (hydration's --seed; default %(default)s)")
    f.add_argument("--with-mm", action="store_true",
                   help="with an ML model: also run each molecule's plain-MM hydration (model mm) for the 'our MM' "
                        "column")
    f.add_argument("--estimator", choices=["TI", "MBAR", "BAR"], default="MBAR",
                   help="the ΔG estimator tabulated (default %(default)s)")
    f.add_argument("--bootstrap", type=positive_int, default=2000,
                   help="bootstrap resamples per confidence interval (default %(default)s)")
    f.add_argument("--no-progress", action="store_true", help="no progress bars")
    f.add_argument("--out", help="benchmark directory (created; rerun with the same options to continue)")
    f.set_defaults(func=run, _protocol=[a.dest for a in copied])


def _ids(values):
    return None if values is None else [x for v in values for x in v.split(",") if x.strip()]


def run(args) -> int:
    from ..api import FreeSolvBenchmark
    from ..errors import UserInputError

    settings = {k: getattr(args, k) for k in args._protocol}
    bench = FreeSolvBenchmark(ids=_ids(args.ids), subset=args.subset, all=args.all, seed=args.seed,
                              elements=args.elements, min_heavy_atoms=args.min_heavy_atoms,
                              max_heavy_atoms=args.max_heavy_atoms, with_mm=args.with_mm, estimator=args.estimator,
                              bootstrap=args.bootstrap, md_seed=args.md_seed, **settings)
    if args.dry_run:
        sel = bench.select()
        for m in sel.molecules:
            print(f"{m.id}\t{m.smiles}\t{m.heavy_atoms} heavy atoms\texpt {m.entry.expt}\tGAFF {m.entry.calc}")
        print(f"{len(sel.molecules)} molecule(s) selected, {len(sel.skipped)} skipped")
        return 0
    if not args.out:
        raise UserInputError("benchmark freesolv: --out DIR is required (except with --dry-run)")
    res = bench.run(args.out, progress=not args.no_progress)
    print(res)
    print(f"report: {res.files['report']}")
    return 0 if not res.failed else 1
