"""FreeSolv v0.52 database access (``<shared>/freesolv``).

The shared directory is ``$MDI_MLMM_SHARED`` if set, otherwise ``../shared``
next to the source checkout or the current directory. Energies are kcal/mol,
exactly as FreeSolv gives them.
"""
from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UserInputError

_ID = re.compile(r"^mobley_\d+$")


def shared_dir() -> Path:
    """Directory with project-wide data (``freesolv/``, ``models/``).

    ``$MDI_MLMM_SHARED`` wins; else the first existing of ``<repo>/../shared``,
    ``./../shared`` and ``./shared``.
    """
    env = os.environ.get("MDI_MLMM_SHARED")
    if env:
        return Path(env).expanduser().resolve()
    repo = Path(__file__).resolve().parents[2]
    for cand in (repo.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"):
        if (cand / "freesolv").is_dir():
            return cand.resolve()
    return (repo.parent / "shared").resolve()


def freesolv_dir() -> Path:
    """``<shared>/freesolv``; :class:`UserInputError` if it is absent."""
    d = shared_dir() / "freesolv"
    if not (d / "database.json").is_file():
        raise UserInputError(f"FreeSolv database not found at {d} (set MDI_MLMM_SHARED to the shared directory)")
    return d


@dataclass(frozen=True)
class FreeSolvEntry:
    """One FreeSolv compound. Free energies in kcal/mol (hydration: gas → water)."""

    id: str
    smiles: str
    iupac: str
    expt: float | None
    d_expt: float | None
    calc: float | None
    d_calc: float | None
    expt_reference: str | None = None
    calc_reference: str | None = None

    def as_dict(self) -> dict:
        """JSON-ready dict; keys carry the unit."""
        d = asdict(self)
        return {
            "id": d["id"], "smiles": d["smiles"], "iupac": d["iupac"],
            "expt_dG_kcal_per_mol": d["expt"], "expt_uncertainty_kcal_per_mol": d["d_expt"],
            "calc_dG_kcal_per_mol": d["calc"], "calc_uncertainty_kcal_per_mol": d["d_calc"],
            "expt_reference": d["expt_reference"], "calc_reference": d["calc_reference"],
            "calc_method": "GAFF/AM1-BCC/TIP3P, GROMACS (FreeSolv v0.52)",
        }


@lru_cache(maxsize=None)
def _database(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def _num(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def lookup(compound_id: str) -> FreeSolvEntry:
    """The FreeSolv entry ``compound_id`` (e.g. ``mobley_2310185``); :class:`UserInputError` if unknown."""
    db = _database(str(freesolv_dir() / "database.json"))
    if compound_id not in db:
        hint = "" if _ID.match(compound_id) else " (ids look like mobley_2310185)"
        raise UserInputError(f"unknown FreeSolv id {compound_id!r}{hint}")
    e = db[compound_id]
    return FreeSolvEntry(
        id=compound_id, smiles=e["smiles"], iupac=e.get("iupac", ""),
        expt=_num(e.get("expt")), d_expt=_num(e.get("d_expt")),
        calc=_num(e.get("calc")), d_calc=_num(e.get("d_calc")),
        expt_reference=e.get("expt_reference"), calc_reference=e.get("calc_reference"),
    )


def find_by_smiles(smiles: str) -> FreeSolvEntry | None:
    """The FreeSolv entry whose SMILES is the same molecule (canonical RDKit comparison), or None."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    key = Chem.MolToSmiles(mol)
    for cid, cano in _canonical_index().items():
        if cano == key:
            return lookup(cid)
    return None


@lru_cache(maxsize=1)
def _canonical_index() -> dict[str, str]:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    out = {}
    for cid, e in _database(str(freesolv_dir() / "database.json")).items():
        m = Chem.MolFromSmiles(e["smiles"])
        if m is not None:
            out[cid] = Chem.MolToSmiles(m)
    return out


_ARCHIVES = {
    "sdf": ("sdffiles.tar.gz", "sdffiles/{id}.sdf"),
    "mol2": ("mol2files_gaff.tar.gz", "mol2files_gaff/{id}.mol2"),
    "top": ("gromacs.tar.gz", "gromacs/{id}.top"),
    "gro": ("gromacs.tar.gz", "gromacs/{id}.gro"),
}


def extract(compound_id: str, kind: str, dest_dir: Path) -> Path:
    """Copy FreeSolv's ``kind`` file (sdf, mol2 [GAFF types, AM1-BCC charges], top, gro) into ``dest_dir``.

    Returns the written path ``dest_dir/<id>.<kind>``.
    """
    lookup(compound_id)
    archive, member = _ARCHIVES[kind]
    member = member.format(id=compound_id)
    dest = Path(dest_dir) / f"{compound_id}.{kind}"
    with tarfile.open(freesolv_dir() / archive) as tar:
        try:
            data = tar.extractfile(member)
        except KeyError:
            data = None
        if data is None:
            raise UserInputError(f"FreeSolv archive {archive} has no {member}")
        dest.write_bytes(data.read())
    return dest
