"""``mdi-mlmm mmgbsa``: MM-GBSA binding energies over the frames of one or two runs (OpenMM implicit solvent;
a thin layer over :func:`mdi_mlmm.api.mmgbsa`; docs/analyze_md.md)."""
from __future__ import annotations

from ._types import nonneg_float, positive_int


def register(sub):
    from .analyze_md import add_run_options

    p = sub.add_parser("mmgbsa", help="MM-GBSA binding energy over trajectory frames (OpenMM GB, dry Amber topologies)",
                       description="Single-trajectory MM-GBSA: ΔE_bind = E(complex) − E(receptor) − E(ligand) per "
                                   "frame with OpenMM's generalized-Born implicit solvent (OBC2 = Amber igb=5 by "
                                   "default) and ACE surface term, no cutoff, from the dry Amber topologies of "
                                   "mdi-mlmm prepare; mean ± SEM (block averaging); a second run (--reference-run) "
                                   "side by side. The trajectory's complex atoms are checked against the prmtop by "
                                   "name. No entropy term. See docs/analyze_md.md.")
    add_run_options(p)
    p.add_argument("--prepared", metavar="DIR",
                   help="output directory of mdi-mlmm prepare: its amber/{complex,receptor,ligand}.prmtop")
    p.add_argument("--complex-prmtop", help="dry complex topology (default DIR/amber/complex.prmtop)")
    p.add_argument("--receptor-prmtop", help="dry receptor topology (default DIR/amber/receptor.prmtop)")
    p.add_argument("--ligand-prmtop", help="dry ligand topology (default DIR/amber/ligand.prmtop)")
    p.add_argument("--complex", default=None, help="MDAnalysis selection of the complex atoms in the trajectory "
                                                   "(default: its first atoms, as many as the complex prmtop has)")
    p.add_argument("--ligand", default="resname MOL", help="selection of the ligand within the complex "
                                                           "(default %(default)s)")
    p.add_argument("--gb", default="OBC2", help="GB model: OBC2 (igb=5, default), OBC1 (igb=2), GBn2 (igb=8), "
                                               "GBn (igb=7), HCT (igb=1)")
    p.add_argument("--salt", type=nonneg_float, default=0.0, help="salt concentration, M (default 0)")
    p.add_argument("--blocks", type=positive_int, default=5, help="blocks for the SEM (default %(default)s)")
    p.add_argument("--platform", default="CPU", help="OpenMM platform (default CPU; Reference, CUDA, ...)")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    if not args.verbose:  # MDAnalysis logs optional-module notes (netCDF4, ...) at WARNING
        logging.getLogger("MDAnalysis").setLevel(logging.ERROR)
    import os

    from ..api import mmgbsa
    from ..errors import UserInputError
    from .analyze_md import runs_of

    tops = {}
    for part in ("complex", "receptor", "ligand"):
        given = getattr(args, f"{part}_prmtop")
        if given is None and args.prepared:
            given = os.path.join(args.prepared, "amber", f"{part}.prmtop")
        if given is None:
            raise UserInputError(f"give --{part}-prmtop or --prepared DIR")
        tops[f"{part}_prmtop"] = given
    rep = mmgbsa(runs_of(args), args.out, gb=args.gb, salt_molar=args.salt, platform=args.platform,
                 complex_selection=args.complex, ligand=args.ligand, start=args.start, stop=args.stop,
                 step=args.step, n_blocks=args.blocks, **tops)
    print(rep)
    print(f"report: {rep.files['report']}")
    return 0
