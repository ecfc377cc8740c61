"""MM baseline: our workflow with the plain GAFF topology vs FreeSolv's calculated GAFF values.

Runs ``mdi-mlmm hydration --model mm --host gromacs --protocol freesolv`` (stock Debian gmx, FreeSolv's
20-state schedule and own settings: sd integrator, PME 1.2 nm, LJ switched 0.9-1.0 nm with dispersion
correction, NPT, h-bond constraints, 2 fs) for a few small FreeSolv
molecules and compares ΔG (MBAR, TI) with FreeSolv's GAFF value, within the combined
uncertainty. FreeSolv's own runs were 5 ns per window; the default here is shorter, so the
statistical error is larger, and our AM1-BCC charges come from AmberTools 26's sqm, not
FreeSolv's OpenEye charges (docs/prepare.md: ≤ 0.004 e per atom).

Usage: python bench/bench_mm_baseline.py [--ids mobley_2310185 mobley_1636752 mobley_2008055] [--ns 0.1] [--out bench/mm_runs]
Writes bench/results_mm_baseline.json and prints a table. Reruns resume.
"""
import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", nargs="+", default=["mobley_2310185", "mobley_1636752", "mobley_2008055"])  # ethanol, methanol, ethane
    ap.add_argument("--ns", type=float, default=0.1, help="production per window, ns")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "mm_runs"))
    a = ap.parse_args()
    rows = []
    for fid in a.ids:
        out = Path(a.out) / fid
        t0 = time.time()
        cmd = [sys.executable, "-m", "mdi_mlmm", "hydration", "--freesolv", fid, "--model", "mm", "--host", "gromacs",
               "--protocol", "freesolv",
               "--ns-per-window", str(a.ns), "--equil-ps", "100", "--window-equil-ps", "20", "--workers",
               str(a.workers), "--no-progress", "--out", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{fid}: failed\n{r.stderr[-2000:]}")
            continue
        res = json.loads((out / "analysis" / "results.json").read_text())
        fs = res["freesolv"]
        row = {"id": fid, "name": fs.get("iupac"), "ns_per_window": a.ns, "windows": res["windows"],
               "wall_s": time.time() - t0, "MBAR": res["dG_MBAR"], "TI": res["dG_TI"],
               "freesolv_gaff": fs["calculated"], "freesolv_gaff_err": fs["calculated_uncertainty"],
               "experiment": fs["experimental"]}
        comb = math.hypot(row["MBAR"]["error"], row["freesolv_gaff_err"] or 0)
        row["MBAR_minus_gaff"] = row["MBAR"]["value"] - row["freesolv_gaff"]
        row["within_2sigma"] = abs(row["MBAR_minus_gaff"]) <= 2 * comb
        rows.append(row)
        print(f"{fid:16s} {row['name'] or '':12s} MBAR {row['MBAR']['value']:6.2f} ± {row['MBAR']['error']:.2f}  "
              f"TI {row['TI']['value']:6.2f} ± {row['TI']['error']:.2f}  FreeSolv GAFF {row['freesolv_gaff']:6.2f} ± "
              f"{row['freesolv_gaff_err']:.2f}  diff {row['MBAR_minus_gaff']:+.2f} "
              f"({'within' if row['within_2sigma'] else 'OUTSIDE'} 2σ combined)  {row['wall_s'] / 60:.0f} min")
    path = ROOT / "bench" / "results_mm_baseline.json"
    old = json.loads(path.read_text()) if path.exists() else []
    merged = {r["id"]: r for r in old}
    merged.update({r["id"]: r for r in rows})  # a rerun of a molecule replaces its row
    path.write_text(json.dumps(list(merged.values()), indent=1))


if __name__ == "__main__":
    main()
