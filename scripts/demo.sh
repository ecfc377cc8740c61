#!/usr/bin/env bash
# The main job on a small default system: the ML/MM (ANI-2x) hydration free energy of ethanol
# (FreeSolv mobley_2310185) by the endpoint route (docs/endpoint.md), GROMACS as the MM host:
#   ΔG_hyd(ML/MM) = ΔG_hyd(MM) + ΔA_MM→ML(water) − ΔA_MM→ML(gas)
# - ΔG_hyd(MM): 20 λ windows × 20 ps (2 fs, X–H constrained), stock GROMACS, TI/MBAR/BAR, FreeSolv's own
#   nonbonded protocol (--protocol freesolv: switched LJ, 1.2 nm Coulomb, dispersion correction, NPT), the
#   one to use next to experiment (the default model has no dispersion correction; docs/hosts.md);
# - the MM→ML legs: 3 λ_intra windows × 40 ps in water and in gas (ANI-2x through MDI, float32), X–H bonds
#   constrained at 2 fs as in the MM part (--constraints h-bonds), so the cycle is exact for one
#   Hamiltonian (docs/endpoint.md). The same protocol as the FreeSolv benchmark in bench/README.md.
# About 20 min on the 2 cores after set-up (20.4 min measured) (the first set-up builds the MDI-enabled GROMACS once:
# 12-45 min on 2 cores, cached afterwards). The report (runs/ethanol_ani2x/analysis/report.md) gives each
# term with σ, the total, ΔG_reorg, the overlap, and warns loudly when overlap or sampling cannot
# support the number. Extra arguments go to `mdi-mlmm hydration` (e.g. --out DIR, --workers K).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${MDI_MLMM_VENV:-$PWD/.venv}
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/mdi-mlmm" hydration --freesolv mobley_2310185 --model ani2x --route endpoint --host gromacs \
    --protocol freesolv --constraints h-bonds \
    --windows 20 --ns-per-window 0.02 --window-equil-ps 2 --equil-ps 10 \
    --leg-windows 3 --leg-ps 40 --leg-sample-every 10 --leg-equil-ps 2 --out runs/ethanol_ani2x "$@"
