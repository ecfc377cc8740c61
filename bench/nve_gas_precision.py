"""Gas-phase NVE with ANI-2x alone: float32 vs float64 of the fast path (issue 13, item 2: the precision default).

Velocity Verlet in GROMACS units (nm, ps, amu, kJ/mol), same start for both precisions (positions of
the molecule, Maxwell-Boltzmann velocities at 300 K with a fixed seed, no net momentum); reports the
drift (linear fit) and the standard deviation of the total energy, and the largest E_tot difference
between the two trajectories' first 100 steps (where they have not yet diverged chaotically).

    python bench/nve_gas_precision.py --steps 4000 --dt 0.5 --molecules ethanol imatinib
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_ml_call import molecules  # noqa: E402

MASS = {"H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "F": 18.998, "S": 32.06, "Cl": 35.45}


def nve(pot, sym, pos_A, steps, dt_fs, seed=7, temp=300.0):
    from mdi_mlmm import units

    kb = units.BOLTZMANN_KJ_PER_MOL_K
    conv = units.HARTREE_IN_KJ_PER_MOL * 10.0          # Ha/Å -> kJ/mol/nm
    m = np.array([MASS[s] for s in sym])[:, None]
    rng = np.random.default_rng(seed)
    v = rng.normal(size=pos_A.shape) * np.sqrt(kb * temp / m)
    v -= (m * v).sum(0) / m.sum()
    x = pos_A / 10.0
    dt = dt_fs / 1000.0

    def force(x):
        r = pot.compute(sym, x * 10.0)
        return float(r.energy) * units.HARTREE_IN_KJ_PER_MOL, r.forces * conv

    e, f = force(x)
    etot = []
    t0 = time.perf_counter()
    for _ in range(steps):
        v += 0.5 * dt * f / m
        x += dt * v
        e, f = force(x)
        v += 0.5 * dt * f / m
        etot.append(e + 0.5 * float((m * v * v).sum()))
    wall = time.perf_counter() - t0
    etot = np.array(etot) / units.KCAL_IN_KJ                     # kcal/mol
    t = np.arange(1, steps + 1) * dt                             # ps
    slope, icpt = np.polyfit(t, etot, 1)
    return {"drift_kcal_mol_ps": float(slope), "sigma_kcal_mol": float(etot.std()),
            "sigma_detrended_kcal_mol": float((etot - (slope * t + icpt)).std()),
            "ms_per_step": wall / steps * 1e3, "etot_first_100": etot[:100].tolist()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--dt", type=float, default=0.5, help="fs")
    ap.add_argument("--molecules", nargs="+", default=["ethanol", "imatinib"])
    ap.add_argument("--out", default=str(ROOT / "bench/results_nve_gas_precision.json"))
    args = ap.parse_args(argv)
    import torch

    from mdi_mlmm.potentials.ani import ANIPotential

    torch.set_num_threads(1)
    mols = molecules()
    out = {"settings": vars(args), "results": {}}
    for name in args.molecules:
        sym, pos = mols[name]
        res = {d: nve(ANIPotential("ani2x", dtype=d), sym, pos, args.steps, args.dt) for d in ("float64", "float32")}
        early = np.abs(np.array(res["float32"].pop("etot_first_100")) - np.array(res["float64"].pop("etot_first_100")))
        res["max_abs_dEtot_first_100_steps_kcal_mol"] = float(early.max())
        out["results"][name] = res
        for d in ("float64", "float32"):
            r = res[d]
            print(f"{name} {d}: drift {r['drift_kcal_mol_ps']:+.2e} kcal/mol/ps, sigma {r['sigma_kcal_mol']:.2e}, "
                  f"detrended {r['sigma_detrended_kcal_mol']:.2e} kcal/mol, {r['ms_per_step']:.1f} ms/step")
        print(f"{name}: max |E_tot(f32) - E_tot(f64)| over the first 100 steps {early.max():.2e} kcal/mol")
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
