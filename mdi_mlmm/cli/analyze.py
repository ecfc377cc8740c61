"""``mdi-mlmm analyze DIR``: (re)analyse a hydration run directory."""
from __future__ import annotations

from ._types import fraction


def register(sub):
    p = sub.add_parser("analyze", help="analyse a hydration run: TI/MBAR/BAR, reorganization energy, plots, report")
    p.add_argument("run_dir", help="directory given to mdi-mlmm hydration --out")
    p.add_argument("--equil-fraction", type=fraction, default=0.1,
                   help="fraction of each window dropped as equilibration before decorrelation (default 0.1)")
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.report import analyze, summary_lines

    res = analyze(args.run_dir, equil_fraction=args.equil_fraction, plots=not args.no_plots)
    print("\n".join(summary_lines(res)))
    print(f"report: {res['run_dir']}/analysis/report.md")
    return 0
