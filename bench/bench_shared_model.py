#!/usr/bin/env python
"""What batching the ML calls of several λ windows into one model call buys.

1. Model alone: ANI-2x (8-member ensemble, float64, 1 torch thread) on ethanol, one call of
   B structures for B = 1, 2, 4, 8, 16: ms per call and the speed-up per structure over B
   separate calls (B · t(1) / t(B)).
2. Workflow: K LAMMPS λ windows (tests/data/lammps_ethanol, ethanol + 676 TIP3P, states of a
   3-state schedule, ``--steps`` MD steps each, no equilibration) run at once on a local pool,
   (a) each window with its own engine and model ("separate", ``--no-shared-model``) and
   (b) all engines sharing one batching model server ("shared", the default). The two modes
   alternate ``--repeats`` times in one run; the ratio of their wall times is the result.

    python bench/bench_shared_model.py [--windows 2] [--steps 300] [--repeats 2]

Writes bench/results_shared_model.json. On a shared CPU the model and the K MM processes
compete for cores, so the workflow ratio is a lower bound for what a GPU model server gives.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "tests" / "data" / "lammps_ethanol"


def bench_model(reps: int) -> dict:
    import torch

    from mdi_mlmm.potentials import load_potential
    from tests.drivers.scenarios import ETHANOL

    torch.set_num_threads(1)
    pot = load_potential("ani2x", threads=1)
    sym = ["C", "C", "O"] + ["H"] * 6
    rng = np.random.default_rng(0)
    out = {}
    for b in (1, 2, 4, 8, 16):
        x = np.asarray(ETHANOL[1])[None] + rng.normal(0, 0.02, (b, 9, 3))
        pot.compute_batch(sym, x)  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            pot.compute_batch(sym, x)
            times.append(time.perf_counter() - t0)
        out[str(b)] = {"ms_per_call": 1e3 * statistics.median(times)}
    t1 = out["1"]["ms_per_call"]
    for b, r in out.items():
        r["speedup_per_structure"] = int(b) * t1 / r["ms_per_call"]
    return out


def bench_workflow(k: int, steps: int, repeats: int, work: Path) -> dict:
    from mdi_mlmm.potentials.shared import start_server_process, stop_server_process
    from mdi_mlmm.topology.mlregion import select_indices
    from mdi_mlmm.protocol.specs import WindowSpec
    from mdi_mlmm.workflow.hydration import run_units

    ml = [int(i) for i in select_indices(DATA / "conf.gro", "resname MOL")]
    sched = [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]]

    def specs(tag):
        return [WindowSpec(host="lammps", model="ani2x", state=w % 3, schedule=sched, steps=steps,
                           equil_steps=0, dt_fs=1.0, temperature=298.15, sample_every=50, checkpoint_every=10 * steps,
                           ml_indices=ml, top=str(DATA / "topol.top"), gro=str(DATA / "conf.gro"), seed=10 + w,
                           out_dir=str(work / tag / f"w{w}")) for w in range(k)]

    walls: dict = {"separate": [], "shared": []}
    stats = []
    for rep in range(repeats):
        order = ("separate", "shared") if rep % 2 == 0 else ("shared", "separate")
        for mode in order:
            tag = f"{mode}{rep}"
            sp = specs(tag)
            server = None
            t0 = time.perf_counter()
            if mode == "shared":
                info = work / tag / "server.json"
                server = start_server_process("ani2x", info, work / tag / "server.log", extra=("--threads", "1"))
                for s in sp:
                    s.engine_model = f"server:{info}"
            try:
                run_units(sp, workers=k, progress=False)
            finally:
                if server is not None:
                    stop_server_process(server)
            walls[mode].append(time.perf_counter() - t0)
            if server is not None:
                stats.append(json.loads((work / tag / "server.log").read_text().strip().splitlines()[-1]))
            print(f"  {mode:8s} repeat {rep}: {walls[mode][-1]:.1f} s", flush=True)
    sep, sh = statistics.median(walls["separate"]), statistics.median(walls["shared"])
    return {"windows": k, "steps": steps, "wall_s": walls, "median_separate_s": sep, "median_shared_s": sh,
            "speedup_shared_over_separate": sep / sh, "server_stats": stats}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model-reps", type=int, default=30)
    ap.add_argument("--skip-workflow", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "results_shared_model.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    res = {"benchmark": "bench/bench_shared_model.py", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    print("ANI-2x, ethanol, one call of B structures (1 thread):")
    res["model"] = bench_model(args.model_reps)
    for b, r in res["model"].items():
        print(f"  B={b:>2}: {r['ms_per_call']:7.2f} ms/call, {r['speedup_per_structure']:.2f}x per structure")
    if not args.skip_workflow:
        work = Path(tempfile.mkdtemp(prefix="bench_shared_"))
        try:
            print(f"{args.windows} LAMMPS λ windows x {args.steps} steps at once, separate engines vs shared server:")
            res["workflow"] = bench_workflow(args.windows, args.steps, args.repeats, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        w = res["workflow"]
        print(f"  separate {w['median_separate_s']:.1f} s, shared {w['median_shared_s']:.1f} s: "
              f"shared is {w['speedup_shared_over_separate']:.2f}x")
    res["machine"]["load_average_at_end"] = list(os.getloadavg())
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
