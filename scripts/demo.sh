#!/usr/bin/env bash
# The main job on a small default system: ML/MM (ANI-2x) hydration free energy of ethanol
# with LAMMPS as the MM host. Short windows: this demonstrates the pipeline end to end
# (minutes on 2 CPU cores); real numbers need 20 windows x >= 0.5 ns (see docs/hydration.md).
# Extra arguments go to `mdi-mlmm hydration` (e.g. --out DIR, --workers K).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-gromacs-build
VENV=${MDI_MLMM_VENV:-$PWD/.venv}
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/mdi-mlmm" hydration --freesolv mobley_2310185 --model ani2x --host lammps \
    --windows 5 --ns-per-window 0.002 --window-equil-ps 0.5 --equil-ps 5 --out runs/ethanol_ani2x "$@"
