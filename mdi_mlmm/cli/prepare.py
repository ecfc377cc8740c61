"""``mdi-mlmm prepare``: FreeSolv id or SMILES → solvated and gas-phase GROMACS inputs with an ML region."""
from __future__ import annotations

import argparse

from ._types import nonneg_int, positive_float


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="build solvated and gas-phase GROMACS inputs (GAFF/AM1-BCC, TIP3P) with an ML group",
        description="Parametrize a molecule with AmberTools (GAFF or GAFF2, AM1-BCC), solvate it in a cubic "
                    "TIP3P box and write GROMACS topologies, coordinates, index files (group ML) and "
                    "system.json. See docs/prepare.md.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--freesolv", metavar="ID", help="FreeSolv compound id, e.g. mobley_2310185 (ethanol)")
    src.add_argument("--smiles", metavar="SMILES", help="molecule as SMILES, e.g. CCO")
    p.add_argument("--name", help="label for the system (default: the FreeSolv id, else the canonical SMILES)")
    p.add_argument("--forcefield", choices=["gaff", "gaff2"], default="gaff",
                   help="GAFF version (default gaff, as FreeSolv; gaff2 relies on merging repeated parmchk2 runs)")
    p.add_argument("--source", choices=["amber", "freesolv"], default="amber",
                   help="amber: parametrize with AmberTools (default); freesolv: use FreeSolv's own GAFF topology")
    p.add_argument("--charges", choices=["am1bcc", "freesolv"], default="am1bcc",
                   help="am1bcc: compute AM1-BCC with sqm (default); freesolv: keep FreeSolv's charges")
    p.add_argument("--box-padding", type=positive_float, default=1.2, metavar="NM",
                   help="minimum solute-to-box-face distance of the cubic water box, nm (default 1.2)")
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
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    import os

    from ..prep.system import prepare_system
    from ..prep.tools import TIMEOUT_ENV

    if args.tool_timeout is not None:
        os.environ[TIMEOUT_ENV] = repr(float(args.tool_timeout))
    info = prepare_system(
        args.out, smiles=args.smiles, freesolv_id=args.freesolv, name=args.name, forcefield=args.forcefield,
        source=args.source, charges=args.charges, box_padding_nm=args.box_padding,
        gas_padding_nm=args.gas_padding, model=args.model, overwrite=args.force, check=args.check,
        minimize=args.minimize, maxwarn=args.maxwarn)
    fs = info.get("freesolv") or {}
    extra = f", FreeSolv expt {fs['expt_dG_kcal_per_mol']} kcal/mol" if fs.get("expt_dG_kcal_per_mol") is not None else ""
    print(f"{args.out}: {info['name']} ({info['smiles']}), {info['n_atoms']} atoms, net charge "
          f"{info['net_charge']:+d}, {info['solvated']['n_waters']} waters{extra}")
    return 0
