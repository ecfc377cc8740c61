"""Cross-engine check: one configuration's ML/MM energy terms and forces from GROMACS, LAMMPS and OpenMM.

    python examples/compare_engines.py                      # ethanol in water (tests/data), ANI-2x
    python examples/compare_engines.py --top T --gro G --ml "resname MOL" --model mace:my.model

The same as ``mdi-mlmm compare`` (see docs/compare.md), from Python: each engine evaluates
E = E_ML + E_MM (with the ML–ML classical terms removed) and the forces of the same coordinates, with
matched settings (PME/Ewald with one β, the same cut-off, plain LJ cut-off, no dispersion correction).
Agreement to float precision says the coupling (which atoms are ML, which MM terms are removed, units,
force signs) is the same in every host. GROMACS takes part when our MDI-enabled build exists
(``mdi-mlmm gromacs build``); OpenMM is the independent reference.
"""
import argparse
from pathlib import Path

from mdi_mlmm.hosts.compare import Settings, compare

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "lammps_ethanol"

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--top", default=DATA / "topol.top", help="GROMACS topology (default: ethanol in water)")
parser.add_argument("--gro", default=DATA / "conf.gro", help="coordinates with the box")
parser.add_argument("--ml", default="resname MOL", help="MDAnalysis selection of the ML atoms (default resname MOL)")
parser.add_argument("--model", default="ani2x")
parser.add_argument("--engines", default=None, help="comma list of gromacs,lammps,openmm (default: all usable here)")
parser.add_argument("--workdir", default=None, help="keep the engines' files here")
args = parser.parse_args()

cmp = compare(args.top, args.gro, args.ml, model=args.model,
              engines=args.engines.split(",") if args.engines else None,
              settings=Settings(cutoff_nm=1.0), workdir=args.workdir)

# The table mdi-mlmm compare prints: every term per engine (kJ/mol and kcal/mol) and the force differences.
print(cmp.table())

# The numbers themselves, for a script's own checks: the spread of each term over the engines ...
for term in ("E_ML", "E_MM", "E_total"):
    d, rel = cmp.spread(term)
    print(f"{term:8s} spread over {', '.join(cmp.engines())}: {d:.3g} kJ/mol ({rel:.1e} relative)")
# ... and the largest force difference of each pair of engines
for pair, f in cmp.force_diffs().items():
    print(f"forces {pair}: max |ΔF| {f['max_all']:.3g} kJ/mol/nm (ML atoms {f['max_ml']:.3g})")
