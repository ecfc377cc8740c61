"""``mdi-mlmm compare-dg``: ΔG_hyd of two finished hydration runs of the same molecule, side by side."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare-dg", help="ΔG of two finished hydration runs of one molecule (e.g. GROMACS vs LAMMPS): ΔΔG, 2σ test",
        description="Compare two finished, analysed `mdi-mlmm hydration` runs of the same molecule: each estimator's "
                    "ΔG_hyd ± σ (TI, MBAR, BAR and, for ML models, each + the reorganization energy), ΔΔG = A − B "
                    "with σ = sqrt(σ_A² + σ_B²), and whether |ΔΔG| ≤ 2σ. Runs of different molecules or "
                    "temperatures, unfinished runs and damaged results are refused. Exit status 0 whatever the "
                    "verdict. See docs/compare.md.")
    p.add_argument("run_a", metavar="RUN_A", help="first hydration run directory (its --out)")
    p.add_argument("run_b", metavar="RUN_B", help="second hydration run directory")
    p.add_argument("--json", nargs="?", const="-", metavar="OUT",
                   help="write all numbers as JSON to OUT (also prints the table), or to stdout instead of the "
                        "table with --json alone")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from ..api import compare_dg

    cmp = compare_dg(args.run_a, args.run_b)
    text = json.dumps(cmp.to_json(), indent=1)
    if args.json == "-":
        print(text)
        return 0
    print(cmp.table())
    if args.json:
        from ..files import write_text

        write_text(args.json, text + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
