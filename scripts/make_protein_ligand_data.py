"""Derive tests/data/protein_ligand/{complex.pdb,ligand.sdf} from the openmmtools files beside them.

Sources (MIT licence, LICENSE.openmmtools): openmmtools 0.27.0, openmmtools/data/T4-lysozyme-L99A-implicit/
receptor.pdb (T4 lysozyme L99A, Amber-protonated, 162 residues) and ligand.tripos.mol2 (p-xylene in the
L99A pocket). complex.pdb is the receptor's heavy atoms (chain A, element columns; hydrogens dropped, as
in a crystal structure, so that the fixer must add them) followed by the ligand's heavy atoms as HETATM
MOL; ligand.sdf is the ligand with its hydrogens and bond orders (RDKit from the Tripos mol2).

    .venv/bin/python scripts/make_protein_ligand_data.py
"""
from pathlib import Path

from rdkit import Chem

HERE = Path(__file__).resolve().parent.parent / "tests" / "data" / "protein_ligand"


def main() -> None:
    lig = Chem.MolFromMol2File(str(HERE / "openmmtools_ligand.tripos.mol2"), removeHs=False)
    lig.SetProp("_Name", "p-xylene (T4 lysozyme L99A ligand, openmmtools)")
    Chem.MolToMolFile(lig, str(HERE / "ligand.sdf"))
    lines, serial = [], 0
    for ln in (HERE / "openmmtools_receptor.pdb").read_text().splitlines():
        if not ln.startswith("ATOM"):
            continue
        name = ln[12:16].strip()
        element = "H" if name.lstrip("0123456789").startswith("H") else name.lstrip("0123456789")[0]
        if element == "H":
            continue
        serial += 1
        lines.append(f"{ln[:6]}{serial:5d}{ln[11:21]}A{ln[22:54]}  1.00  0.00          {element:>2s}")
    serial += 1
    lines.append(f"TER   {serial:5d}      {lines[-1][17:26]}")
    conf = lig.GetConformer()
    for a in lig.GetAtoms():
        if a.GetSymbol() == "H":
            continue
        serial += 1
        p = conf.GetAtomPosition(a.GetIdx())
        name = f"{a.GetSymbol()}{a.GetIdx() + 1}"
        lines.append(f"HETATM{serial:5d} {name:<4s} MOL B   1    {p.x:8.3f}{p.y:8.3f}{p.z:8.3f}  1.00  0.00"
                     f"          {a.GetSymbol():>2s}")
    lines += ["END"]
    (HERE / "complex.pdb").write_text(
        "REMARK   T4 lysozyme L99A + p-xylene, heavy atoms; from openmmtools (MIT), see README.md\n"
        + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
