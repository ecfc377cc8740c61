"""``mdi-mlmm prepare``: FreeSolv id or SMILES → solvated and gas-phase GROMACS inputs with an ML region;
or ``--protein PDB --ligand SDF`` → a solvated, equilibrated protein–ligand system with the ligand as the
ML region (:func:`mdi_mlmm.prep.complex.prepare_complex`, docs/protein_ligand.md)."""
from __future__ import annotations

import argparse

from ._types import nonneg_int, positive_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="build solvated and gas-phase GROMACS inputs (GAFF/AM1-BCC, TIP3P) with an ML group",
        description="Parametrize a molecule with AmberTools (GAFF or GAFF2, AM1-BCC), solvate it in a cubic "
                    "TIP3P box and write GROMACS topologies, coordinates, index files (group ML) and "
                    "system.json. See docs/prepare.md. With --protein PDB --ligand SDF: fix the protein "
                    "(pdbfixer, pH 7), Amber ff14SB + GAFF2/AM1-BCC ligand, TIP3P, neutralizing ions, ML group = "
                    "the ligand, minimized and equilibrated with restraints; see docs/protein_ligand.md.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--freesolv", metavar="ID", help="FreeSolv compound id, e.g. mobley_2310185 (ethanol)")
    src.add_argument("--smiles", metavar="SMILES", help="molecule as SMILES, e.g. CCO")
    src.add_argument("--protein", metavar="PDB", help="protein (or complex) PDB; with --ligand: a protein-ligand "
                     "system (heterogens and waters in the PDB are dropped)")
    p.add_argument("--ligand", metavar="SDF", help="with --protein: the ligand, SDF with explicit hydrogens, in the "
                   "protein's frame (in its pocket); it becomes the ML group")
    p.add_argument("--name", help="label for the system (default: the FreeSolv id, else the canonical SMILES)")
    p.add_argument("--forcefield", choices=["gaff", "gaff2"], default="gaff",
                   help="GAFF version (default gaff, as FreeSolv; gaff2 relies on merging repeated parmchk2 runs)")
    p.add_argument("--source", choices=["amber", "freesolv"], default="amber",
                   help="amber: parametrize with AmberTools (default); freesolv: use FreeSolv's own GAFF topology")
    p.add_argument("--charges", choices=["am1bcc", "freesolv"], default="am1bcc",
                   help="am1bcc: compute AM1-BCC with sqm (default); freesolv: keep FreeSolv's charges")
    p.add_argument("--box-padding", type=positive_float, default=None, metavar="NM",
                   help="minimum solute-to-box-face distance of the water box, nm (default 1.2; 1.0 with --protein)")
    p.add_argument("--gas-padding", type=positive_float, default=2.5, metavar="NM",
                   help="padding of the gas-phase box, nm (default 2.5)")
    p.add_argument("--model", default="ani2x",
                   help="ML model for the solute: ani2x (default), ani1x, ani1ccx, mm, mace:PATH; "
                        "decides which elements and net charges are allowed")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (must not exist, or be empty)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the gmx grompp check")
    p.add_argument("--no-minimize", dest="minimize", action="store_false",
                   help="write the coordinates as built (no steepest-descent minimization of the solvated and "
                        "gas systems; freshly solvated boxes then have clashes worth thousands of kJ/mol)")
    p.add_argument("--tool-timeout", type=positive_float, default=None, metavar="S",
                   help="time limit for each external tool run (antechamber/sqm, tleap, gmx), seconds "
                        "(default 3600; AM1-BCC of a 70-atom drug takes ~20 min on 2 busy cores); also "
                        "$MDI_MLMM_TOOL_TIMEOUT")
    p.add_argument("--maxwarn", type=nonneg_int, default=0, metavar="N",
                   help="gmx grompp warnings to accept (default 0; one more is always accepted for a charged "
                        "solute with PME)")
    c = p.add_argument_group("protein-ligand options (with --protein/--ligand)")
    c.add_argument("--ph", type=float, default=7.0, help="pH for the protonation of the protein (default 7)")
    c.add_argument("--box", choices=["cubic", "rectangular"], default="cubic",
                   help="water box shape (default cubic; rectangular saves water for an elongated protein)")
    c.add_argument("--pocket-cutoff", type=positive_float, default=4.0, metavar="A",
                   help="the ligand must have a heavy atom within this distance of a protein heavy atom, Å "
                        "(default 4)")
    c.add_argument("--em-steps", type=positive_int, default=5000, metavar="N",
                   help="steepest-descent steps at most (default 5000)")
    c.add_argument("--nvt-steps", type=nonneg_int, default=5000, metavar="N",
                   help="restrained NVT equilibration, 2 fs steps (default 5000 = 10 ps; 0 skips)")
    c.add_argument("--npt-steps", type=nonneg_int, default=5000, metavar="N",
                   help="restrained NPT equilibration, 2 fs steps (default 5000 = 10 ps; 0 skips)")
    c.add_argument("--temperature", type=positive_float, default=298.15, help="K (default 298.15)")
    c.add_argument("--threads", type=positive_int, default=None, help="gmx mdrun OpenMP threads (default: up to 4)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    import os

    from ..prep.system import prepare_system
    from ..prep.tools import TIMEOUT_ENV

    if args.tool_timeout is not None:
        os.environ[TIMEOUT_ENV] = repr(float(args.tool_timeout))
    if args.protein is not None or args.ligand is not None:
        return _complex(args)
    info = prepare_system(
        args.out, smiles=args.smiles, freesolv_id=args.freesolv, name=args.name, forcefield=args.forcefield,
        source=args.source, charges=args.charges,
        box_padding_nm=args.box_padding if args.box_padding is not None else 1.2,
        gas_padding_nm=args.gas_padding, model=args.model, overwrite=args.force, check=args.check,
        minimize=args.minimize, maxwarn=args.maxwarn)
    fs = info.get("freesolv") or {}
    extra = f", FreeSolv expt {fs['expt_dG_kcal_per_mol']} kcal/mol" if fs.get("expt_dG_kcal_per_mol") is not None else ""
    print(f"{args.out}: {info['name']} ({info['smiles']}), {info['n_atoms']} atoms, net charge "
          f"{info['net_charge']:+d}, {info['solvated']['n_waters']} waters{extra}")
    return 0


def _complex(args: argparse.Namespace) -> int:
    from ..errors import UserInputError
    from ..prep.complex import DEFAULT_BOX_PADDING_NM, prepare_complex

    if args.protein is None or args.ligand is None:
        raise UserInputError("--protein and --ligand go together (a protein PDB and a ligand SDF)")
    info = prepare_complex(
        args.out, protein=args.protein, ligand=args.ligand, name=args.name, model=args.model, ph=args.ph,
        box_padding_nm=args.box_padding if args.box_padding is not None else DEFAULT_BOX_PADDING_NM,
        pocket_cutoff_a=args.pocket_cutoff, em_steps=args.em_steps, nvt_steps=args.nvt_steps,
        npt_steps=args.npt_steps, temperature_k=args.temperature, box=args.box, overwrite=args.force,
        maxwarn=args.maxwarn, threads=args.threads)
    s, lig = info["solvated"], info["ligand"]
    print(f"{args.out}: {info['name']}: {info['protein']['n_residues_built']} residues + ligand {lig['smiles']} "
          f"({lig['n_atoms']} atoms, ML group {info['ml_group']}), {s['n_waters']} waters, "
          f"{s['n_counter_ions']} {s['counter_ion'] or 'ions'}, {info['n_atoms']} atoms; "
          f"{s['top']} {s['gro']} {s['ndx']}")
    return 0
