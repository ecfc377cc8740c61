#!/usr/bin/env bash
# A hand-launched ML/MM run, the way MDI codes are coupled: the ML engine and GROMACS are two separate
# programs that find each other over TCP. Normally you start them in two terminals:
#
#   terminal 1 (the ML engine, an MDI *engine*; it waits for the driver and then answers its requests):
#       mdi-mlmm engine --model ani2x -mdi "-role ENGINE -name ML -method TCP -port 8021 -hostname localhost"
#
#   terminal 2 (GROMACS, the MDI *driver*; our MDI-enabled build, see `mdi-mlmm gromacs build`):
#       gmx mdrun -s md.tpr -deffnm md -ntmpi 1 -mdi "-role DRIVER -name gromacs -method TCP -port 8021"
#
# This script does both in one terminal: it starts the engine in the background (terminal 1), then
# mdrun in the foreground (terminal 2), and waits for both. `mdi-mlmm md --host gromacs` does the same
# for you (free port, engine log, clean stop); this is what happens underneath.
#
# usage: examples/coupled_by_hand.sh [WORKDIR]
#   environment: STEPS (default 200), MODEL (default ani2x), PORT (default: a free one),
#                TOP, GRO, NDX (default: the ethanol-in-water system in tests/data/lammps_ethanol;
#                NDX must hold an index group ML with the atoms of the ML region)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="$HERE/../tests/data/lammps_ethanol"
WORK="${1:-coupled_by_hand}"
STEPS="${STEPS:-200}"
MODEL="${MODEL:-ani2x}"
TOP="$(realpath "${TOP:-$DATA/topol.top}")"
GRO="$(realpath "${GRO:-$DATA/conf.gro}")"
NDX="$(realpath "${NDX:-$DATA/index.ndx}")"
PYTHON="${PYTHON:-python}"
PORT="${PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}"

# Our MDI-enabled gmx (built once with `mdi-mlmm gromacs build`; `mdi-mlmm gromacs path` prints it).
GMX="$(mdi-mlmm gromacs path)" || { echo "no MDI-enabled GROMACS: run 'mdi-mlmm gromacs build' first" >&2; exit 1; }

mkdir -p "$WORK"
cd "$WORK"

# 1. The run input: plain GROMACS settings plus the two MDI lines. The ML region (index group ML) gets
#    its energy and forces from the engine; GROMACS drops the ML-ML classical terms (mechanical embedding).
cat > md.mdp <<MDP
integrator               = md-vv          ; velocity Verlet, NVE
dt                       = 0.0005         ; ps (0.5 fs: the ML region's X-H bonds are not constrained)
nsteps                   = $STEPS
nstcalcenergy            = 1
nstenergy                = 10
nstlog                   = 10
cutoff-scheme            = Verlet
pbc                      = xyz
coulombtype              = PME
rcoulomb                 = 1.2
vdwtype                  = Cut-off
vdw-modifier             = Potential-switch
rvdw-switch              = 0.9
rvdw                     = 1.0
DispCorr                 = EnerPres
tcoupl                   = no
pcoupl                   = no
gen-vel                  = yes
gen-temp                 = 298.15
gen-seed                 = 2025
continuation             = no
constraints              = none           ; waters keep SETTLE (from the topology)
mdi-active               = yes            ; our GROMACS MDI module: ask an engine for the ML region
mdi-ml-group             = ML             ; ... made of the atoms of this index group
MDP
"$GMX" grompp -f md.mdp -c "$GRO" -p "$TOP" -n "$NDX" -o md.tpr -quiet > grompp.out 2>&1 \
    || { tail -20 grompp.out >&2; exit 1; }

# 2. Terminal 1: the engine. It keeps trying to connect until mdrun listens (up to --connect-timeout s).
mdi-mlmm engine --model "$MODEL" --threads 1 \
    -mdi "-role ENGINE -name ML -method TCP -port $PORT -hostname localhost" > engine.log 2>&1 &
ENGINE=$!
trap 'kill $ENGINE 2>/dev/null || true' EXIT

# 3. Terminal 2: mdrun as the MDI driver. It sends coordinates every step and adds E_ML and the ML forces.
"$GMX" mdrun -s md.tpr -deffnm md -ntmpi 1 -ntomp 1 -nb cpu -pin off \
    -mdi "-role DRIVER -name gromacs -method TCP -port $PORT" > mdrun.out 2>&1 \
    || { tail -20 mdrun.out >&2; tail -5 engine.log >&2; exit 1; }

# mdrun sends EXIT at the end; the engine then stops by itself.
wait $ENGINE
trap - EXIT
echo "done: $STEPS steps; energies in $PWD/md.edr (E_ML is its own term), log md.log, engine log engine.log"
