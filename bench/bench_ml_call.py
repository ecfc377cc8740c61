"""One ANI-2x energy+forces call: torchani vs our old path vs our fast path, side by side (issue 13, item 2).

Variants (all built from the same NeuroChem files in the ANI model zoo):

* ``torchani``  — torchani's own modules, ``ANI(symbols, aev, nets, sae)`` from ``modules_from_info``:
  what torchani's ``ANI2x()`` builtin model assembles (it cannot download here), member by member;
* ``old``       — our previous default: the same modules with the 8 members fused (``backend="torchani"``);
* ``new``       — ``backend="fast"`` (mdi_mlmm/potentials/ani_fast.py), the default now;

each in float64 and float32, for each thread count asked for (``torch.set_num_threads``). Within one
thread count the variants are interleaved (round robin, ``--calls`` calls each per round, ``--rounds``
rounds) and the median per variant is reported, as wall time and as this process's CPU time (less
sensitive to other jobs on a shared machine); ratios are against torchani float64 at the same thread
count and against the issue's baseline (old float32, 2 threads) when that is measured.

Accuracy: max |ΔE| and max |ΔF| of every variant against torchani float64, over the reference
geometry and ``--frames`` randomly displaced ones (σ = 0.05 Å) of each molecule.

Molecules: ethanol (9 atoms, tests/data/ani_reference.json) and imatinib (68 atoms,
tests/data/wide_drug/ligand/input.sdf).

    python bench/bench_ml_call.py                       # → bench/results_ml_call.json
    python bench/bench_ml_call.py --threads 1 --rounds 10 --out /tmp/x.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HARTREE_KCAL = 627.509474


def molecules():
    ref = json.loads((ROOT / "tests/data/ani_reference.json").read_text())["molecules"]["ethanol"]
    mols = {"ethanol": (ref["symbols"], np.array(ref["positions_A"]))}
    lines = (ROOT / "tests/data/wide_drug/ligand/input.sdf").read_text().splitlines()
    n = int(lines[3][:3])
    sym = [ln[31:34].strip() for ln in lines[4:4 + n]]
    pos = np.array([[float(ln[0:10]), float(ln[10:20]), float(ln[20:30])] for ln in lines[4:4 + n]])
    mols["imatinib"] = (sym, pos)
    return mols


def build(variant, dtype):
    from mdi_mlmm.potentials.ani import ANIPotential

    if variant == "torchani":
        return ANIPotential("ani2x", dtype=dtype, backend="torchani", fused=False)
    if variant == "old":
        return ANIPotential("ani2x", dtype=dtype, backend="torchani", fused=True)
    return ANIPotential("ani2x", dtype=dtype, backend="fast")


def accuracy(pots, mols, frames, seed=1):
    rng = np.random.default_rng(seed)
    out = {}
    for name, (sym, pos) in mols.items():
        geoms = [pos] + [pos + 0.05 * rng.normal(size=pos.shape) for _ in range(frames)]
        refs = [pots[("torchani", "float64")].compute(sym, g) for g in geoms]
        out[name] = {}
        for (variant, dtype), p in pots.items():
            if (variant, dtype) == ("torchani", "float64"):
                continue
            de, df = 0.0, 0.0
            for g, r in zip(geoms, refs):
                x = p.compute(sym, g)
                de = max(de, abs(float(x.energy) - float(r.energy)))
                df = max(df, float(np.abs(x.forces - r.forces).max()))
            out[name][f"{variant}_{dtype}"] = {
                "max_abs_dE_hartree": de, "max_abs_dE_kcal_mol": de * HARTREE_KCAL,
                "max_abs_dF_hartree_per_A": df, "max_abs_dF_kcal_mol_A": df * HARTREE_KCAL,
                "max_abs_F_kcal_mol_A": float(max(np.abs(r.forces).max() for r in refs)) * HARTREE_KCAL}
    return out


def timing(pots, mols, threads, rounds, calls):
    import torch

    res = {}
    for name, (sym, pos) in mols.items():
        res[name] = {}
        for nt in threads:
            torch.set_num_threads(nt)
            wall = {k: [] for k in pots}
            cpu = {k: [] for k in pots}
            for p in pots.values():
                for _ in range(5):
                    p.compute(sym, pos)
            scale = max(1, calls // (4 if len(sym) > 20 else 1))
            for _ in range(rounds):
                for k, p in pots.items():
                    for _ in range(scale):
                        t0, c0 = time.perf_counter(), time.process_time()
                        p.compute(sym, pos)
                        wall[k].append(time.perf_counter() - t0)
                        cpu[k].append(time.process_time() - c0)
            ref = np.median(wall[("torchani", "float64")])
            res[name][f"threads_{nt}"] = {
                f"{v}_{d}": {"ms_wall_median": float(np.median(wall[(v, d)]) * 1e3),
                             "ms_cpu_median": float(np.median(cpu[(v, d)]) * 1e3),
                             "speedup_vs_torchani_float64": float(ref / np.median(wall[(v, d)])),
                             "calls": len(wall[(v, d)])}
                for (v, d) in pots}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=8, help="calls per variant per round (a quarter for imatinib)")
    ap.add_argument("--frames", type=int, default=4, help="displaced geometries for the accuracy check")
    ap.add_argument("--out", default=str(ROOT / "bench/results_ml_call.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    import torch

    mols = molecules()
    pots = {(v, d): build(v, d) for v in ("torchani", "old", "new") for d in ("float64", "float32")}
    load0 = os.getloadavg()
    acc = accuracy(pots, mols, args.frames)
    tim = timing(pots, mols, args.threads, args.rounds, args.calls)
    base = tim["ethanol"].get("threads_2", {}).get("old_float32")
    if base:
        for nt in tim["ethanol"].values():
            for v in nt.values():
                v["speedup_vs_old_float32_2threads"] = base["ms_wall_median"] / v["ms_wall_median"]
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                       "loadavg_start": load0, "loadavg_end": os.getloadavg()},
           "settings": vars(args), "accuracy_vs_torchani_float64": acc, "timing": tim}
    Path(args.out).write_text(json.dumps(out, indent=1))
    for name, per in tim.items():
        for nt, rows in per.items():
            print(f"{name} {nt}:")
            for k, v in rows.items():
                extra = f"  {v['speedup_vs_old_float32_2threads']:.2f}x vs old f32/2thr" \
                    if "speedup_vs_old_float32_2threads" in v else ""
                print(f"  {k:18s} {v['ms_wall_median']:8.2f} ms wall {v['ms_cpu_median']:8.2f} ms cpu  "
                      f"{v['speedup_vs_torchani_float64']:5.2f}x vs torchani f64{extra}")
    for name, rows in acc.items():
        print(f"{name} accuracy vs torchani float64:")
        for k, v in rows.items():
            print(f"  {k:18s} max|dE| {v['max_abs_dE_hartree']:.2e} Ha  max|dF| {v['max_abs_dF_hartree_per_A']:.2e} Ha/A")
    print(f"load average {load0} -> {out['machine']['loadavg_end']}; wrote {args.out}")


if __name__ == "__main__":
    main()
