#!/usr/bin/env python
"""The free-energy effect of running ANI-2x in float32 instead of float64, measured by free-energy
perturbation over frames of an ML/MM trajectory (issue 13, item 2: "choose the default precision on
evidence").

For each frame x: ΔE(x) = E_float32(x) − E_float64(x) of the ML solute (same coordinates, fast path);
ΔA(64→32) = −kT ln⟨exp(−ΔE/kT)⟩ over the float64 trajectory (Zwanzig). A hydration free energy changes
by ΔA_water − ΔA_gas; both are bounded by max |ΔE|. Units: kcal/mol.

    python bench/precision_fep.py --top T --traj md.xtc [--gro conf.gro] [--ml "resname MOL"] [--frames 400]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KT = 0.0019872043 * 298.15   # kcal/mol


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", required=True), ap.add_argument("--gro", required=True)
    ap.add_argument("--traj", required=True, help="trajectory (xtc/trr/dcd) of a float64 run")
    ap.add_argument("--ml", default="resname MOL")
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import MDAnalysis as mda

    from mdi_mlmm import units
    from mdi_mlmm.potentials import load_potential
    from mdi_mlmm.topology.pbc import make_whole

    u = mda.Universe(a.gro, a.traj)
    sel = u.select_atoms(a.ml)
    sym = [e if e else n[0] for e, n in zip(getattr(sel, "elements", [""] * len(sel)), sel.names)]
    p64, p32 = load_potential("ani2x", dtype="float64"), load_potential("ani2x", dtype="float32")
    step = max(1, len(u.trajectory) // a.frames)
    de, e64s = [], []
    for ts in u.trajectory[::step]:
        x = make_whole(sel.positions.astype(np.float64), np.diag(ts.dimensions[:3]).astype(np.float64))
        e64 = float(p64.compute(sym, x).energy) * units.HARTREE_IN_KCAL_PER_MOL
        e32 = float(p32.compute(sym, x).energy) * units.HARTREE_IN_KCAL_PER_MOL
        de.append(e32 - e64)
        e64s.append(e64)
    de = np.array(de)
    dA = -KT * np.log(np.mean(np.exp(-(de - de.mean()) / KT))) + de.mean()
    out = {"frames": len(de), "atoms": len(sel), "mean_dE": de.mean(), "std_dE": de.std(), "max_abs_dE": np.abs(de).max(),
           "dA_64_to_32": dA, "E64_std": float(np.std(e64s)), "units": "kcal/mol"}
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
