"""A tiny protein–ligand system for the MD-analysis and MM-GBSA tests, built in a second with tleap from
tests/data/pl_tiny (a hexapeptide with charged termini and a benzene "ligand" MOL stacked on it): the dry Amber topologies
of complex, receptor and ligand (mbondi2 radii) and the solvated system as GROMACS conf.gro/topol.top
(ParmEd), atoms in the order of ``mdi-mlmm prepare``'s output (protein, ligand, water)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "pl_tiny"
N_LIGAND = 12


def build(out: Path) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in ("leap.in", "benz.mol2"):
        shutil.copy(DATA / f, out / f)
    tleap = Path(sys.executable).parent / "tleap"
    subprocess.run([str(tleap if tleap.exists() else "tleap"), "-f", "leap.in"], cwd=out, check=True,
                   capture_output=True)
    import parmed

    s = parmed.load_file(str(out / "solvated.prmtop"), str(out / "solvated.inpcrd"))
    s.save(str(out / "conf.gro"), overwrite=True)
    s.save(str(out / "topol.top"), overwrite=True)
    return {k: out / f"{k}.prmtop" for k in ("complex", "receptor", "ligand")} | {
        "inpcrd": out / "complex.inpcrd", "gro": out / "conf.gro", "top": out / "topol.top", "dir": out}
