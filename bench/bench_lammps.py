#!/usr/bin/env python
"""ns/day of LAMMPS as MM host: pure MM vs MDI-coupled (zero-force engine) vs ANI-2x.

Same system (default: tests/data/lammps_ethanol, ethanol + 676 TIP3P, 2037 atoms),
same settings (NVT, 0.5 fs, 10 Å cutoff, `mdi-mlmm md`'s PPPM defaults — the GROMACS grid rule since
issue 12; the recorded result in bench/README.md ran the old PPPM 1e-6 mesh —, RATTLE water, energies and
thermo every --steps/2 steps, no trajectory), run one after the other, each in its own
process (MDI can be initialised once per process). Prints a table with ratios to pure
MM and writes bench/results_lammps.json.

    python bench/bench_lammps.py [--steps 500] [--models mm,zero,ani2x] [--top T --gro G --ml SEL]

ns/day counts the MD loop only (not conversion, engine start-up or set-up).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "lammps_ethanol"


def run_one(model: str, args, work: Path) -> dict:
    out = work / model.replace(":", "_")
    cmd = [sys.executable, "-m", "mdi_mlmm", "md", "--host", "lammps", "--top", str(args.top), "--gro", str(args.gro),
           "--ml", args.ml, "--model", model, "--steps", str(args.steps), "--dt", "0.5", "--ensemble", "nvt",
           "--out", str(out), "--report-every", str(max(1, args.steps // 2)),
           "--energy-every", str(max(1, args.steps // 2)), "--traj-every", "0", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.time()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{model}: failed\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    s = json.loads((out / "summary.json").read_text())
    s["process_wall_s"] = time.time() - t0
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--models", default="mm,zero,ani2x", help="comma list: mm (pure MM), zero, ani2x, ...")
    ap.add_argument("--top", default=str(DATA / "topol.top"))
    ap.add_argument("--gro", default=str(DATA / "conf.gro"))
    ap.add_argument("--ml", default="resname MOL")
    ap.add_argument("--out", default=str(REPO / "bench" / "results_lammps.json"))
    args = ap.parse_args(argv)

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_lammps_") as tmp:
        for model in args.models.split(","):
            s = run_one(model, args, Path(tmp))
            results[model] = {k: s[k] for k in ("ns_per_day", "ms_per_step", "wall_s", "setup_s", "steps",
                                                "ml_calls", "ml_seconds", "n_atoms", "n_ml_atoms")}
            print(f"  {model:8s} {s['ns_per_day']:8.3f} ns/day  {s['ms_per_step']:8.2f} ms/step", flush=True)
    base = results.get("mm", {}).get("ns_per_day")
    print(f"\nLAMMPS host, {args.steps} steps × 0.5 fs NVT, {next(iter(results.values()))['n_atoms']} atoms")
    print(f"{'model':10s} {'ns/day':>10s} {'ms/step':>10s} {'ML ms/call':>11s} {'vs pure MM':>11s}")
    for m, r in results.items():
        ml_ms = 1000 * r["ml_seconds"] / r["ml_calls"] if r["ml_calls"] else 0.0
        ratio = r["ns_per_day"] / base if base else float("nan")
        r["ratio_to_mm"] = ratio
        r["ml_ms_per_call"] = ml_ms
        print(f"{m:10s} {r['ns_per_day']:10.3f} {r['ms_per_step']:10.2f} {ml_ms:11.2f} {ratio:11.3f}")
    doc = {"benchmark": "bench/bench_lammps.py", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "system": {"top": args.top, "gro": args.gro, "ml": args.ml},
           "settings": "NVT 0.5 fs, lj/cut/coul/long 10 Å, PPPM mesh by the GROMACS grid rule (1.0 Å, order 6), RATTLE TIP3P, 1 MPI rank, engine 1 thread",
           "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(), "python": sys.version.split()[0],
                       "platform": platform.platform()},
           "steps": args.steps, "results": results}
    Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
