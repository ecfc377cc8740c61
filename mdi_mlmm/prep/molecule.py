"""The solute: RDKit molecule from SMILES or FreeSolv SDF.

Which models can describe it is the model registry's business (:mod:`mdi_mlmm.potentials.registry`).

Coordinates are Å. Hydrogens are always explicit; atom order is the order of
the RDKit molecule (for FreeSolv ids: FreeSolv's own order, so that our
topologies line up atom by atom with FreeSolv's).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError

log = logging.getLogger(__name__)

#: Fixed seed for the RDKit ETKDG conformer: the same SMILES always gives the same input geometry.
CONFORMER_SEED = 20240611


@dataclass
class Solute:
    """An all-atom solute with one 3D conformer (Å)."""

    mol: object  # rdkit.Chem.Mol with explicit hydrogens and one conformer
    smiles: str  # canonical RDKit SMILES (no explicit hydrogens)
    input_smiles: str | None

    @property
    def elements(self) -> list[str]:
        return [a.GetSymbol() for a in self.mol.GetAtoms()]

    @property
    def net_charge(self) -> int:
        """Sum of formal charges (e)."""
        return sum(a.GetFormalCharge() for a in self.mol.GetAtoms())

    def write_sdf(self, path: Path) -> Path:
        """Write an MDL molfile (antechamber's ``-fi sdf`` input; bonds and charges explicit)."""
        from rdkit import Chem

        Chem.MolToMolFile(self.mol, str(path), kekulize=True)
        return Path(path)


def _parse_smiles(smiles: str):
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles) if smiles and smiles.strip() else None
    if mol is None:
        raise UserInputError(f"RDKit cannot parse SMILES {smiles!r}")
    if len(Chem.GetMolFrags(mol)) > 1:
        raise UserInputError(f"SMILES {smiles!r} has several disconnected fragments; give one molecule")
    return mol


def from_smiles(smiles: str, seed: int = CONFORMER_SEED) -> Solute:
    """Solute from SMILES: explicit hydrogens, ETKDGv3 conformer with a fixed ``seed``, MMFF94-relaxed."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(_parse_smiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    params.numThreads = 1  # threading does not change results, but keep it simple and reproducible
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise UserInputError(f"RDKit could not build 3D coordinates for {smiles!r}")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    else:
        AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    return Solute(mol=mol, smiles=Chem.MolToSmiles(Chem.RemoveHs(mol)), input_smiles=smiles)


def from_sdf(path: Path, smiles: str | None = None) -> Solute:
    """Solute from an SDF/molfile with explicit hydrogens (FreeSolv's), keeping its atom order and geometry."""
    from rdkit import Chem

    mol = Chem.MolFromMolFile(str(path), removeHs=False, sanitize=True)
    if mol is None:
        raise UserInputError(f"RDKit cannot read {path}")
    if smiles:
        # FreeSolv SDFs carry no formal charges for charged species; take them from the SMILES
        ref = _parse_smiles(smiles)
        if sum(a.GetFormalCharge() for a in ref.GetAtoms()) != sum(a.GetFormalCharge() for a in mol.GetAtoms()):
            log.warning("formal charges of %s differ from its SMILES %s", path, smiles)
    return Solute(mol=mol, smiles=Chem.MolToSmiles(Chem.RemoveHs(mol)), input_smiles=smiles)
