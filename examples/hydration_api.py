"""Hydration free energy of ethanol through the Python API.

    python examples/hydration_api.py runs/ethanol                 # ANI-2x/MM on LAMMPS, the defaults
    python examples/hydration_api.py runs/ethanol_mm --model mm   # plain GAFF, compare with FreeSolv

The defaults are those of ``mdi-mlmm hydration`` (20 λ windows × 0.2 ns; hours on a laptop). The
options below only exist so that the test suite can run this script in a minute (``--tiny``).
Interrupt it at any time and run it again: finished windows are kept and the rest resume.
"""
import argparse

from mdi_mlmm import HydrationFreeEnergy

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("out", help="run directory")
parser.add_argument("--model", default="ani2x", help="ani2x, ani1ccx, mace:PATH, mm, ... (default ani2x)")
parser.add_argument("--host", default="lammps", help="lammps or gromacs (default lammps)")
parser.add_argument("--tiny", action="store_true", help="3 windows of 0.2 ps: plumbing only, not a result")
args = parser.parse_args()

# Tiny settings shorten every stage; leave them out for a real calculation.
tiny = dict(windows=3, ns_per_window=0.0002, window_equil_ps=0.05, equil_ps=1, sample_every=10, workers=2) \
    if args.tiny else {}

# 1. Say what to compute. The solute is FreeSolv's ethanol (or smiles="CCO", name="ethanol").
calc = HydrationFreeEnergy(freesolv_id="mobley_2310185", model=args.model, host=args.host, **tiny)

# 2. Run it: prepare (GAFF, TIP3P), equilibrate, λ windows (+ a gas-phase run for ML models), analyse.
#    Everything goes into one directory; args.out/analysis holds results.json, report.md and plots.
calc.run(args.out, progress=False)

# 3. Read the result (kcal/mol). dG holds each estimator's ΔG_hyd; reorg is ⟨E_ML⟩_water − ⟨E_ML⟩_gas,
#    combined their sum (ML models only).
r = calc.result
print(f"ΔG_hyd (MBAR) = {r.dG['MBAR'].value:.2f} ± {r.dG['MBAR'].error:.2f} kcal/mol")
print(f"ΔG_hyd (TI)   = {r.dG['TI']}")
if r.reorg is not None:
    print(f"ΔG_reorg      = {r.reorg}")
    print(f"ΔG_hyd + ΔG_reorg (MBAR) = {r.combined['MBAR']}")
if r.freesolv and r.freesolv.get("experimental") is not None:
    print(f"experiment (FreeSolv)    = {r.freesolv['experimental']:.2f} kcal/mol")
print()
print(r)  # the summary the command line prints
