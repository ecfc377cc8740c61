"""``mdi-mlmm analyze-md``: protein/ligand RMSD, B-factors from RMSF, ML/MM against classical runs
(a thin layer over :func:`mdi_mlmm.api.analyze_md`; docs/analyze_md.md)."""
from __future__ import annotations

from ._types import positive_int


def add_run_options(p) -> None:
    """Options naming the run(s) shared by ``analyze-md`` and ``mmgbsa``."""
    p.add_argument("--run", metavar="DIR", help="output directory of mdi-mlmm md (md.tpr + md.xtc of GROMACS, "
                                                "topology.gro + traj.dcd of LAMMPS) instead of --top/--traj")
    p.add_argument("--top", help="topology of the run: .tpr, .gro, .pdb, .prmtop, LAMMPS data, ...")
    p.add_argument("--traj", nargs="+", help="trajectory file(s) of the run: .xtc, .trr, .dcd, ...")
    p.add_argument("--label", default="ML/MM", help="name of the run in tables and plots (default %(default)s)")
    p.add_argument("--reference-run", nargs="+", metavar=("TOP", "TRAJ"),
                   help="a second run of the same system (e.g. classical MM): its topology then trajectory file(s), "
                        "or its mdi-mlmm md directory")
    p.add_argument("--reference-label", default="MM", help="name of the reference run (default %(default)s)")
    p.add_argument("--start", type=int, default=None, help="first frame (Python slice; default: the first)")
    p.add_argument("--stop", type=int, default=None, help="frame to stop before (default: the end)")
    p.add_argument("--step", type=positive_int, default=None, help="every STEP-th frame (default 1)")
    p.add_argument("--out", required=True, help="directory for the report, JSON, CSV and PNG files")


def runs_of(args) -> list:
    from ..errors import UserInputError

    from ..analysis.trajectory import md_run_files

    if args.run and (args.top or args.traj):
        raise UserInputError("give the run as --run DIR or as --top TOP --traj TRAJ, not both")
    if args.run:
        top, traj = md_run_files(args.run)
    elif args.top and args.traj:
        top, traj = args.top, args.traj
    else:
        raise UserInputError("give the run as --top TOP --traj TRAJ (or --run DIR)")
    runs = [{"topology": top, "trajectories": traj, "label": args.label}]
    if args.reference_run:
        ref = args.reference_run
        if len(ref) == 1:
            top, traj = md_run_files(ref[0])
        else:
            top, traj = ref[0], ref[1:]
        runs.append({"topology": top, "trajectories": traj, "label": args.reference_label})
    return runs


def register(sub):
    p = sub.add_parser("analyze-md", help="MD stability: protein backbone and ligand RMSD, B-factors from RMSF "
                                          "(Pearson r against a PDB), ML/MM next to a classical run",
                       description="Analyse protein–ligand MD output with MDAnalysis: backbone RMSD, ligand RMSD in "
                                   "the backbone fit, per-residue B-factors 8π²/3·RMSF² with the Pearson r against a "
                                   "PDB's B-factors, and a second (classical) run side by side. Molecules are made "
                                   "whole and the ligand put next to the protein across periodic boundaries. Writes "
                                   "summary.json, report.md, rmsd.png, bfactors.png and CSV tables. See "
                                   "docs/analyze_md.md.")
    add_run_options(p)
    p.add_argument("--protein", default="protein", help="MDAnalysis selection of the protein (default %(default)s)")
    p.add_argument("--ligand", default=None,
                   help="MDAnalysis selection of the ligand (default: resname MOL LIG UNL when present); its "
                        "hydrogens are left out of the RMSD")
    p.add_argument("--backbone", default="backbone", help="atoms fitted, within the protein (default %(default)s)")
    p.add_argument("--bfactor-atoms", default="name CA",
                   help="atoms of each residue whose RMSF gives its B-factor (default %(default)s)")
    p.add_argument("--pdb", help="PDB with crystal B-factors to correlate with (residues matched in order)")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    if not args.verbose:  # MDAnalysis logs optional-module notes (netCDF4, ...) at WARNING
        logging.getLogger("MDAnalysis").setLevel(logging.ERROR)
    from ..api import analyze_md

    rep = analyze_md(runs_of(args), args.out, pdb=args.pdb, protein=args.protein, ligand=args.ligand,
                     backbone=args.backbone, bfactor_atoms=args.bfactor_atoms, start=args.start, stop=args.stop,
                     step=args.step)
    print(rep)
    print(f"report: {rep.files['report']}")
    return 0
