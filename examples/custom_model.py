"""A model of your own, plugged in through the model registry.

    python examples/custom_model.py [OUT_DIR] [--steps N]

A model is a :class:`mdi_mlmm.potentials.Potential`: it declares the elements it describes and
implements ``_evaluate(symbols, positions, cells)`` for a batch of structures (positions in Å) returning
energies (Hartree) and forces (Hartree/Å). Here: a toy "springs" model that holds every bond of the
molecule at its starting length (E = ½ k Σ (r − r₀)²) — cheap, torch-free, enough to drive dynamics.
Put a neural network there instead and everything else stays the same.

Two ways to use it:

1. in this process: ``register_model("springs", make_potential, elements=...)``, then the name works
   wherever this process loads a model (``load_potential("springs")``);
2. in engines that run in processes of their own (``mdi-mlmm engine``, ``md``, ``hydration`` and its
   windows): the spec ``python:examples/custom_model.py:make_potential`` — the engine imports this file
   and calls ``make_potential`` where the model is loaded.
"""
import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from mdi_mlmm.potentials import Potential, Result


class SpringModel(Potential):
    """Harmonic springs on the bonds found in the first structure seen (pairs closer than 1.7 Å)."""

    name = "springs"
    supported_elements = ("H", "C", "N", "O")
    accepts_charge = True

    def __init__(self, k: float = 0.3):
        self.k = float(k)  # Hartree/Å²
        self.bonds = None  # (pairs (M, 2), r0 (M,)), found at the first call

    def _evaluate(self, symbols, positions, cells) -> Result:
        if self.bonds is None:
            x = positions[0]
            r = np.linalg.norm(x[:, None] - x[None], axis=-1)
            i, j = np.nonzero(np.triu(r < 1.7, k=1))
            self.bonds = (np.stack([i, j], axis=1), r[i, j])
        (pairs, r0), k = self.bonds, self.k
        d = positions[:, pairs[:, 0]] - positions[:, pairs[:, 1]]       # (B, M, 3) Å
        r = np.linalg.norm(d, axis=-1)                                   # (B, M)
        energy = 0.5 * k * ((r - r0) ** 2).sum(axis=1)                   # (B,) Hartree
        g = (k * (r - r0) / r)[..., None] * d                            # dE/d(x_i) of each bond
        forces = np.zeros_like(positions)
        for b in range(positions.shape[0]):
            np.add.at(forces[b], pairs[:, 0], -g[b])
            np.add.at(forces[b], pairs[:, 1], g[b])
        return Result(energy=energy, forces=forces)


def make_potential(k: float = 0.3) -> Potential:
    """The factory the registry calls (for ``register_model`` and for ``python:FILE:make_potential``)."""
    return SpringModel(k)


if __name__ == "__main__":
    from mdi_mlmm import load_potential
    from mdi_mlmm.potentials import register_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="custom_model_md")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    here = Path(__file__).resolve()
    data = here.parent.parent / "tests" / "data" / "lammps_ethanol"   # ethanol (atoms 1-9) in water

    # 1. In this process: register the model under a name and load it like any other.
    register_model("springs", make_potential, elements=["H", "C", "N", "O"],
                   description="harmonic springs on the starting bonds (example)")
    pot = load_potential("springs")
    lines = (data / "conf.gro").read_text().splitlines()[2:11]         # the 9 ethanol atoms
    symbols = [ln[10:15].strip()[0] for ln in lines]
    xyz = np.array([[float(ln[20 + 8 * c: 28 + 8 * c]) for c in range(3)] for ln in lines]) * 10.0  # nm → Å
    e0 = pot.compute(symbols, xyz).energy
    e1 = pot.compute(symbols, xyz + np.random.default_rng(0).normal(scale=0.05, size=xyz.shape)).energy
    print(f"springs on ethanol: E = {float(e0):.3g} Hartree at the start, {float(e1):.3g} Hartree displaced")

    # 2. In an engine of its own: ML/MM dynamics of ethanol in water on LAMMPS, the solute's intramolecular
    #    forces from this model (the engine imports this file), water and solute–water from GAFF/TIP3P.
    spec = f"python:{here}:make_potential"
    cmd = [sys.executable, "-m", "mdi_mlmm", "md", "--host", "lammps", "--top", str(data / "topol.top"),
           "--gro", str(data / "conf.gro"), "--ml", "resname MOL", "--model", spec, "--steps", str(args.steps),
           "--ensemble", "nvt", "--quiet", "--out", args.out]
    print("running:", " ".join(cmd))
    sys.exit(subprocess.run(cmd).returncode)
