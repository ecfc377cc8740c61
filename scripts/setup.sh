#!/usr/bin/env bash
# Set up everything mdi_mlmm needs on a fresh Debian bookworm machine (idempotent).
#   - a project virtual environment, .venv (or $MDI_MLMM_VENV), created here and used for
#     everything: nothing depends on what happens to be installed globally
#   - Python packages in it (torch 2.13.0 CPU first: any other torch spec pulls GBs of CUDA)
#   - Debian gromacs (stock gmx for preparation and reference energies) and build tools
#   - the MDI-enabled GROMACS build, cached in $MDI_MLMM_CACHE/gromacs (~/.cache/mdi_mlmm)
# Options: --no-gromacs-build  skip the MDI GROMACS build (LAMMPS host and everything else still work)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_GMX=1
for a in "$@"; do [ "$a" = "--no-gromacs-build" ] && BUILD_GMX=0; done
BASE_PY=${PYTHON:-python3}
VENV=${MDI_MLMM_VENV:-$PWD/.venv}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
T0=$(date +%s)

echo "== [1/4] Python environment $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$BASE_PY" -m venv "$VENV"
fi
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
# this machine's pip config names local index folders that may not exist: drop pip's warning about each
pip_q() { "$PY" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  pip_q torch==2.13.0
fi
pip_q -e ".[all]"

echo "== [2/4] Debian packages (gromacs, build tools)"
need=""
for p in gromacs cmake g++ make libfftw3-dev ccache dpkg-dev iproute2; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ ! -f /etc/apt/sources.list.d/debian-src.sources ]; then
  $SUDO tee /etc/apt/sources.list.d/debian-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  need="$need _update"
fi
if [ -n "$need" ]; then
  $SUDO apt-get update -qq
  pkgs=$(echo "$need" | tr ' ' '\n' | grep -v '^_update$' | grep -v '^$' || true)
  [ -n "$pkgs" ] && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $pkgs >/dev/null
fi

echo "== [3/4] ANI model files"
"$PY" - <<'PYEOF'
from mdi_mlmm.potentials.ani import find_info_file
print("ANI-2x parameters:", find_info_file("ani2x"))
PYEOF

echo "== [4/4] MDI-enabled GROMACS (cached; rebuilt only when its inputs change)"
if [ "$BUILD_GMX" = 1 ]; then
  "$VENV/bin/mdi-mlmm" gromacs build
else
  echo "skipped (--no-gromacs-build)"
fi
echo "== set-up done in $(( $(date +%s) - T0 )) s; environment: $VENV (source $VENV/bin/activate)"
