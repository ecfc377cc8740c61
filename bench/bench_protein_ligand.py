#!/usr/bin/env python
"""ns/day of ML/MM (ligand in ANI-2x) against pure MM on the same protein–ligand complex (issue 16).

Interleaved short runs of `md --host gromacs` (the same mdrun settings: one OpenMP thread,
same mdp, same start; only the ligand's model differs), after one warm-up pair that is not
counted; prints the mean ns/day (GROMACS's md.log performance: the MD loop, ML calls
included, without grompp and engine start-up) of each and the ratio MM / ML/MM.

    python bench/bench_protein_ligand.py --prepared runs/t4l_xylene [--steps 300] [--reps 3] \
        [--dt 2 --constraints h-bonds] [--json bench/results_protein_ligand.json]

--prepared: an `mdi-mlmm prepare --protein ... --ligand ...` output (solvated/topol.top,
conf.gro, index.ndx with the ML group). The machine's load average is recorded before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mdi_mlmm.hosts.gromacs import host  # noqa: E402


def one(prep: Path, model: str, steps: int, dt: float, constraints: str, ensemble: str, out: Path,
        ntomp: int) -> dict:
    sys_ = json.loads((prep / "system.json").read_text())
    s = sys_["solvated"]
    res = host.run_md(prep / s["top"], prep / s["gro"], None, model=model, steps=steps, dt_fs=dt,
                      ensemble=ensemble, out_dir=out, ndx=prep / s["ndx"], ml_group=sys_["ml_group"],
                      energy_every=100, report_every=steps, traj_every=0, ntomp=ntomp, progress=False,
                      constraints=constraints)
    sm = res.summary
    return {"model": model, "steps": steps, "ns_per_day": sm["ns_per_day"], "ms_per_step": sm["ms_per_step"],
            "T_mean_K": sm["T_mean_K"], "wall_s": sm["wall_s"], "setup_s": sm["setup_s"],
            "n_atoms": sm["n_atoms"], "n_ml_atoms": sm["n_ml_atoms"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", required=True, help="mdi-mlmm prepare --protein/--ligand output folder")
    ap.add_argument("--model", default="ani2x")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup-steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dt", type=float, default=2.0)
    ap.add_argument("--constraints", default="h-bonds", choices=["none", "h-bonds"])
    ap.add_argument("--ensemble", default="nvt")
    ap.add_argument("--ntomp", type=int, default=1, help="mdrun OpenMP threads (the engine uses 1 torch thread)")
    ap.add_argument("--workdir")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    prep = Path(a.prepared).resolve()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_pl_"))
    load0 = os.getloadavg()
    t0 = time.time()
    for m in (a.model, "mm"):  # warm-up: file cache, torch import, model files
        one(prep, m, a.warmup_steps, a.dt, a.constraints, a.ensemble, work / f"warm_{m}", a.ntomp)
    runs = []
    for r in range(a.reps):
        order = (a.model, "mm") if r % 2 == 0 else ("mm", a.model)
        for m in order:
            row = one(prep, m, a.steps, a.dt, a.constraints, a.ensemble, work / f"{r}_{m}", a.ntomp)
            row["rep"] = r
            runs.append(row)
            print(f"rep {r} {m:>6}: {row['ns_per_day']:.3f} ns/day ({row['ms_per_step']:.1f} ms/step), "
                  f"<T> {row['T_mean_K']:.0f} K", flush=True)
    load1 = os.getloadavg()
    mean = {m: statistics.mean(x["ns_per_day"] for x in runs if x["model"] == m) for m in (a.model, "mm")}
    ratio = mean["mm"] / mean[a.model]
    print(f"{runs[0]['n_atoms']} atoms ({runs[0]['n_ml_atoms'] or 18} ML), {a.steps} steps × {a.dt} fs "
          f"({a.constraints}, {a.ensemble}), mdrun -ntomp {a.ntomp}, {a.reps} interleaved pairs")
    print(f"ML/MM ({a.model}): {mean[a.model]:.3f} ns/day   MM: {mean['mm']:.3f} ns/day   "
          f"MM / ML/MM = {ratio:.2f}x   (load average {load0[0]:.1f} before, {load1[0]:.1f} after, "
          f"{os.cpu_count()} cores)")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "system": str(prep), "model": a.model, "steps": a.steps, "dt_fs": a.dt, "constraints": a.constraints,
            "ensemble": a.ensemble, "ntomp": a.ntomp, "reps": a.reps, "runs": runs, "mean_ns_per_day": mean,
            "ratio_mm_over_mlmm": ratio, "loadavg_before": load0, "loadavg_after": load1,
            "cpu_count": os.cpu_count(), "wall_s": time.time() - t0}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
