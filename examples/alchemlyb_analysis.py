"""Analyse a hydration run's λ windows yourself, with alchemlyb's own functions.

    python examples/alchemlyb_analysis.py RUN_DIR [--plot overlap.png]

RUN_DIR is a directory written by ``mdi-mlmm hydration --out RUN_DIR`` (or ``HydrationFreeEnergy.run``).
Each window ``RUN_DIR/windows/NN/`` holds:

* GROMACS host: ``dhdl.xvg``, GROMACS's own free-energy output, read by ``alchemlyb.parsing.gmx``;
* LAMMPS host: ``u_nk.csv`` and ``dhdl.csv``, the very DataFrames alchemlyb's GROMACS parser makes
  (index ``time, coul-lambda, vdw-lambda``; u_nk columns are the λ states ``(coul,vdw)``; values in kT),
  read here with pandas.

The script then does what ``mdi-mlmm analyze`` does — drop the first 10 % of each window, decorrelate,
MBAR and TI — and compares with the run's ``analysis/results.json`` when there is one. Windows run from
coupled (state 0) to decoupled, so ΔG_hyd = −ΔG(0 → last).

A split GROMACS run (plan ``split_decoupling``: the windows after the boundary state b = (coul 1, vdw 0) ran
with the solute's charges zero, their files hold the energies at the states b..N−1 only) is estimated as
``mdi-mlmm analyze`` does: MBAR over windows 0..b on the states 0..b, MBAR over windows b..N−1 on the states
b..N−1, added (σ in quadrature); TI over all windows as it is.
"""
import argparse
import json
import logging
import warnings
from pathlib import Path

import pandas as pd
from alchemlyb import concat
from alchemlyb.estimators import MBAR, TI
from alchemlyb.parsing import gmx
from alchemlyb.postprocessors.units import to_kcalmol
from alchemlyb.preprocessing import decorrelate_dhdl, decorrelate_u_nk, slicing
from loguru import logger

# alchemlyb and pymbar are talkative about short runs: keep the output to the numbers
warnings.simplefilter("ignore")
logger.disable("alchemlyb")
logging.getLogger("pymbar").setLevel(logging.ERROR)

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("run_dir")
parser.add_argument("--plot", help="also draw MBAR's overlap matrix (alchemlyb.visualisation) into this PNG")
args = parser.parse_args()
run = Path(args.run_dir)
plan = json.loads((run / "plan.json").read_text())  # the run's settings: host, temperature, windows
T = plan["temperature"]


def read_lammps_csv(path: Path) -> pd.DataFrame:
    """A u_nk.csv / dhdl.csv of a LAMMPS window as the DataFrame alchemlyb expects."""
    df = pd.read_csv(path).set_index(["time", "coul-lambda", "vdw-lambda"])
    if "coul" not in df.columns:  # u_nk: the column labels "(coul,vdw)" are the λ states
        df.columns = [tuple(float(x) for x in c.strip("()").split(",")) for c in df.columns]
    df.attrs = {"temperature": T, "energy_unit": "kT"}  # what alchemlyb's parsers attach
    return df


u_nk, dhdl = [], []
for w in plan["windows"]:
    d = run / w["directory"]
    if plan["host"] == "gromacs":
        u, g = gmx.extract_u_nk(str(d / "dhdl.xvg"), T=T), gmx.extract_dHdl(str(d / "dhdl.xvg"), T=T)
    else:
        u, g = read_lammps_csv(d / "u_nk.csv"), read_lammps_csv(d / "dhdl.csv")
    # drop the first 10 % as equilibration, then keep uncorrelated samples only
    t = u.index.get_level_values("time")
    t0 = t.min() + 0.1 * (t.max() - t.min())
    u, g = slicing(u, lower=t0), slicing(g, lower=t0)
    try:
        u, g = decorrelate_u_nk(u, method="dE", remove_burnin=False), decorrelate_dhdl(g, remove_burnin=False)
    except Exception:  # too few samples to estimate the correlation time: keep them all
        pass
    u_nk.append(u)
    dhdl.append(g)
    print(f"window {w['state']:2d} (coul {w['coul']:.2f}, vdw {w['vdw']:.2f}): {len(u)} uncorrelated samples")

states = [(w["coul"], w["vdw"]) for w in plan["windows"]]
b = states.index((1.0, 0.0)) if plan.get("split_decoupling") else None
if b is None:
    stages = [u_nk]
else:  # stage 1: windows 0..b on the states 0..b; stage 2: windows b..N-1 on the states b..N-1 (window b in both)
    stages = [[u.iloc[:, :b + 1] for u in u_nk[:b + 1]], [u.iloc[:, -(len(states) - b):] for u in u_nk[b:]]]
mbars = [MBAR().fit(concat(frames)) for frames in stages]
ti = TI().fit(concat(dhdl))
dG = {}
for name, ests in (("MBAR", mbars), ("TI", [ti])):
    f = sum(to_kcalmol(e.delta_f_).iloc[0, -1] for e in ests)
    df = sum(to_kcalmol(e.d_delta_f_).iloc[0, -1] ** 2 for e in ests) ** 0.5
    dG[name] = (-f, df)  # ΔG_hyd = −ΔG_decouple
    print(f"ΔG_hyd ({name}) = {dG[name][0]:.2f} ± {dG[name][1]:.2f} kcal/mol"
          + (f" (the sum of {len(ests)} stages)" if len(ests) > 1 else ""))

results = run / "analysis" / "results.json"
if results.exists():
    ours = json.loads(results.read_text())
    for name in dG:
        print(f"mdi-mlmm analyze ({name}): {ours[f'dG_{name}']['value']:.2f} ± {ours[f'dG_{name}']['error']:.2f}")

if args.plot:
    import matplotlib

    matplotlib.use("Agg")
    from alchemlyb.visualisation import plot_mbar_overlap_matrix

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(mbars), figsize=(5 * len(mbars), 5), squeeze=False)
    for ax, mbar in zip(axes[0], mbars):   # a split run: one matrix per stage
        plot_mbar_overlap_matrix(mbar.overlap_matrix, ax=ax)
    fig.savefig(args.plot, dpi=110, bbox_inches="tight")
    print(f"overlap matrix: {args.plot}")
