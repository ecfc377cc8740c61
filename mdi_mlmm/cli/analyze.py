"""``mdi-mlmm analyze DIR``: (re)analyse a hydration run directory (a thin layer over :func:`mdi_mlmm.api.analyze`)."""
from __future__ import annotations

from ..api import DEFAULT_EQUIL_FRACTION
from ._types import fraction


def register(sub):
    p = sub.add_parser("analyze", help="analyse a hydration run: TI/MBAR/BAR, reorganization energy, plots, report")
    p.add_argument("run_dir", help="directory given to mdi-mlmm hydration --out")
    p.add_argument("--equil-fraction", type=fraction, default=DEFAULT_EQUIL_FRACTION,
                   help="fraction of each window dropped as equilibration before decorrelation (default %(default)s)")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import analyze

    res = analyze(args.run_dir, equil_fraction=args.equil_fraction, plots=not args.no_plots)
    print(res)
    print(f"report: {res.run_dir}/analysis/report.md")
    return 0
