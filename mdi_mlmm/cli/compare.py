"""``mdi-mlmm compare``: one configuration's ML/MM energy terms and forces from GROMACS, LAMMPS and OpenMM."""
from __future__ import annotations

import argparse
import logging

from ..errors import UserInputError
from ._types import open_fraction, positive_float


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="cross-engine check: energy terms and forces of one configuration (GROMACS, LAMMPS, OpenMM)",
        description="Evaluate E = E_ML + E_MM (ML-ML classical terms removed) and the forces of ONE configuration "
                    "with the GROMACS host (MDI module + engine), the LAMMPS host and OpenMM, with matched "
                    "settings (PME/Ewald, same cutoff and beta, plain LJ cut-off, no dispersion correction), and "
                    "print the terms (kJ/mol, kcal/mol) and force differences. See docs/compare.md.")
    p.add_argument("--top", required=True, help="GROMACS topology (.top)")
    p.add_argument("--gro", required=True, help="GROMACS coordinates (.gro) with the box")
    p.add_argument("--ml", metavar="SELECTION", help="MDAnalysis selection of the ML atoms, e.g. \"resname MOL\"")
    p.add_argument("--ndx", help="GROMACS index file holding the ML group")
    p.add_argument("--ml-group", help="index group of the ML atoms (with --ndx)")
    p.add_argument("--model", default="ani2x", help="ML potential (default ani2x; also mace:PATH, zero, ...)")
    p.add_argument("--engines", default=None,
                   help="comma list of gromacs,lammps,openmm (default: all usable here; GROMACS is skipped with a "
                        "note when there is no MDI-enabled build)")
    p.add_argument("--cutoff", type=positive_float, default=1.0, help="real-space cutoff, nm (default 1.0)")
    p.add_argument("--ewald-rtol", type=open_fraction, default=1e-6, help="erfc(beta r_c), fixes beta everywhere (default 1e-6)")
    p.add_argument("--production", action="store_true",
                   help="each host's own default production settings instead of the matched ones (GROMACS and LAMMPS "
                        "only; --cutoff/--ewald-rtol are then not used; --model mm: plain MM, no ML region; "
                        "docs/hosts.md)")
    p.add_argument("--json", metavar="OUT", help="also write all numbers to this JSON file")
    p.add_argument("--workdir", help="keep the engines' files here (default: a temporary directory)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    plain_mm = args.production and args.model == "mm"
    if not plain_mm and (args.ml is None) == (args.ml_group is None):
        raise UserInputError("give the ML region with --ml \"SELECTION\" or with --ndx FILE --ml-group NAME")
    if args.ml_group and not args.ndx:
        raise UserInputError("--ml-group needs --ndx FILE")
    if not args.verbose:  # MDAnalysis logs attribute guessing and optional-module notes at INFO/WARNING
        logging.getLogger("MDAnalysis").setLevel(logging.ERROR)
    from ..hosts.compare import Settings, compare, parse_engines, write_json

    cmp = compare(args.top, args.gro, args.ml, ndx=args.ndx, ml_group=args.ml_group, model=args.model,
                  engines=parse_engines(args.engines),
                  settings=Settings(cutoff_nm=args.cutoff, ewald_rtol=args.ewald_rtol, production=args.production),
                  workdir=args.workdir)
    print(cmp.table())
    if args.json:
        write_json(cmp, args.json)
        print(f"wrote {args.json}")
    return 0
