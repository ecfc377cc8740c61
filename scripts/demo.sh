#!/usr/bin/env bash
# The main job on a small default system: the ML/MM (ANI-2x) hydration free energy of ethanol
# (FreeSolv mobley_2310185) by the endpoint route (docs/endpoint.md), GROMACS as the MM host:
#   ΔG_hyd(ML/MM) = ΔG_hyd(MM) + ΔA_MM→ML(water) − ΔA_MM→ML(gas)
# - ΔG_hyd(MM): 20 λ windows × 20 ps (2 fs, X–H constrained), stock GROMACS, TI/MBAR/BAR;
# - the MM→ML legs: 3 λ_intra windows × 20 ps (1 fs, ANI-2x through MDI) in water and in gas.
# About 15 min on 2 idle cores after set-up (the first set-up builds the MDI-enabled GROMACS once:
# 30-45 min on 2 cores, cached afterwards). The report (runs/ethanol_ani2x/analysis/report.md) gives each
# term with σ, the total, ΔG_reorg, the overlap, and warns loudly when overlap or sampling cannot
# support the number. Extra arguments go to `mdi-mlmm hydration` (e.g. --out DIR, --workers K).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${MDI_MLMM_VENV:-$PWD/.venv}
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/mdi-mlmm" hydration --freesolv mobley_2310185 --model ani2x --route endpoint --host gromacs \
    --windows 20 --ns-per-window 0.02 --window-equil-ps 2 --equil-ps 10 \
    --leg-windows 3 --leg-ps 20 --leg-equil-ps 2 --out runs/ethanol_ani2x "$@"
