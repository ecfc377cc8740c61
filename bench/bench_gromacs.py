#!/usr/bin/env python
"""ns/day of GROMACS as MM host: stock MM vs MDI-coupled (zero-force engine) vs ANI-2x.

Same system, same mdp (NVT, 0.5 fs, package template with mdi options added for the
coupled runs), run side by side; prints a table with ratios to stock MM. ``--dt 2 --constraints h-bonds``:
2 fs with every X–H bond constrained, the ML region's too (:func:`mdi_mlmm.hosts.gromacs.host.constraint_mdp`).

    python bench/bench_gromacs.py [--steps 1000] [--ntomp 1] [--top T --gro G --ml "resname MOL"]

Without --top/--gro it builds the test system (FreeSolv ethanol in a 2.8 nm TIP3P box,
~2100 atoms) from ../shared/freesolv. Needs `mdi-mlmm gromacs build` first.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from mdi_mlmm.hosts.gromacs import host  # noqa: E402
from mdi_mlmm.hosts.gromacs.build import require_gmx  # noqa: E402

FAST = {"rcoulomb": 1.0, "rvdw": 1.0, "rvdw-switch": 0.9, "fourierspacing": 0.12, "pme-order": 4,
        "nstcalcenergy": 100, "nstenergy": 100, "nstlog": 1000}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--ntomp", type=int, default=1, help="OpenMP threads of mdrun (default 1; the engine uses 1)")
    ap.add_argument("--top"), ap.add_argument("--gro")
    ap.add_argument("--ml", default="resname MOL", help="ML selection (default 'resname MOL')")
    ap.add_argument("--models", default="stock,harmonic:0.5,ani2x,ani2x-seq",
                    help="comma list of: stock, zero, ani2x, ...; NAME-seq: the same model with the ML coordinates "
                         "sent only when GROMACS asks for the ML forces (no overlap of ML and MM work)")
    ap.add_argument("--engine-threads", type=int, default=1, help="torch threads of the engine (default 1)")
    ap.add_argument("--engine-dtype", choices=["float64", "float32"], default="float64", help="model precision")
    ap.add_argument("--dt", type=float, default=0.5, help="time step in fs (default 0.5)")
    ap.add_argument("--constraints", choices=["none", "h-bonds"], default="none",
                    help="none (default: flexible, waters SETTLE) or h-bonds (every X–H bond, ML region's too)")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)

    gmx = require_gmx()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_gromacs_"))
    work.mkdir(parents=True, exist_ok=True)
    if a.top and a.gro:
        top, gro = Path(a.top).resolve(), Path(a.gro).resolve()
    else:
        from test_gromacs_host import build_system

        top, gro = build_system(work / "system", gmx, Path(a.shared))
    natoms = int(gro.read_text().splitlines()[1])

    rows = []
    for model in a.models.split(","):
        d = work / model
        d.mkdir(exist_ok=True)
        for itp in top.parent.glob("*.itp"):
            (d / itp.name).write_bytes(itp.read_bytes())
        (d / "topol.top").write_text(top.read_text())
        atoms = host.make_index(gmx, gro, a.ml, d / "index.ndx")
        coupled = model != "stock"
        seq = model.endswith("-seq")
        engine_model = model[:-4] if seq else model
        os.environ["MDI_MLMM_GMX_EARLY_COORDS"] = "0" if seq else "1"
        (d / "md.mdp").write_text(host.mdp_text("nvt", a.steps, a.dt, ml_group="ML" if coupled else None,
                                                gen_vel=True, overrides={**FAST, **host.constraint_mdp(a.constraints)}))
        host.grompp(gmx, d / "md.mdp", gro, d / "topol.top", d / "md.tpr", d / "index.ndx")
        t0 = time.monotonic()
        calls = d / "engine_calls.csv"
        host.mdrun_mdi(gmx, d / "md.tpr", "md", engine_model if coupled else None, cwd=d, ntomp=a.ntomp,
                       engine_args=["--threads", str(a.engine_threads), "--dtype", a.engine_dtype,
                                    "--call-log", str(calls)])
        wall = time.monotonic() - t0
        nsday = host.performance_ns_per_day(d / "md.log")
        ml_ms = None
        if coupled and calls.exists():   # the model's own time per call, measured inside the engine
            import numpy as np
            ms = np.loadtxt(calls, delimiter=",", skiprows=1, usecols=4, ndmin=1)
            ml_ms = round(float(np.median(ms[len(ms) // 10:])), 3) if len(ms) else None
        rows.append({"run": model if coupled else "stock MM", "ns_per_day": nsday, "wall_s": round(wall, 1),
                     "ms_per_step": round(1000 * 86400 * a.dt * 1e-6 / nsday, 3) if nsday else None,
                     "ml_ms_per_call": ml_ms})
        print(f"  {rows[-1]['run']:<10} {nsday:8.3f} ns/day  ({wall:.1f} s wall incl. start-up)", flush=True)

    base = rows[0]["ns_per_day"] if rows and rows[0]["run"] == "stock MM" else None
    print(f"\nGROMACS host, {natoms} atoms ({len(atoms)} ML), {a.steps} steps of {a.dt} fs (constraints "
          f"{a.constraints}), mdrun -ntomp {a.ntomp}")
    print(f"{'run':<12}{'ns/day':>10}{'ms/step':>10}{'vs stock':>10}{'ML ms':>8}{'step/max(ML,MM)':>17}")
    t_mm = rows[0]["ms_per_step"] if base else None
    for r in rows:
        ratio = f"{r['ns_per_day'] / base:.3f}" if base and r["ns_per_day"] else "-"
        r["ratio_to_stock"] = float(ratio) if ratio != "-" else None
        over = "-"
        if t_mm and r.get("ml_ms_per_call") and r["ms_per_step"]:
            # 1.0: ML and MM fully overlapped; (ML + MM) / max(ML, MM): one after the other
            r["step_over_max_ml_mm"] = round(r["ms_per_step"] / max(t_mm, r["ml_ms_per_call"]), 3)
            over = f"{r['step_over_max_ml_mm']:.3f}"
        ml = f"{r['ml_ms_per_call']:.2f}" if r.get("ml_ms_per_call") else "-"
        print(f"{r['run']:<12}{r['ns_per_day']:>10.3f}{r['ms_per_step']:>10.3f}{ratio:>10}{ml:>8}{over:>17}")
    zero = next((r for r in rows if r["run"].split(":")[0] in ("zero", "harmonic")), None)
    if t_mm and zero:
        print(f"coupling overhead ({zero['run']} engine - stock): {zero['ms_per_step'] - t_mm:.3f} ms per step")
    if a.json:
        Path(a.json).write_text(json.dumps({"natoms": natoms, "steps": a.steps, "ntomp": a.ntomp,
                                            "engine_threads": a.engine_threads, "engine_dtype": a.engine_dtype,
                                            "dt_fs": a.dt, "constraints": a.constraints,
                                            "loadavg": os.getloadavg(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
