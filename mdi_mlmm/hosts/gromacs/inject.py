"""Hook the mdi_mlmm GROMACS module (``gromacs_module/``) into a GROMACS 2022 source tree.

Upstream GROMACS has no MDI support. Rather than shipping patch files (which would
contain GROMACS source lines), this step

1. copies our own module sources into ``src/gromacs/applied_forces/mdi/``, and
2. makes a handful of *anchored* edits: it finds an exact anchor line in a GROMACS
   file and inserts our own lines after it (or, for two lines, replaces it).
   Every edit is listed in :data:`EDITS` with the reason for it. A missing anchor
   stops with a clear :class:`~mdi_mlmm.errors.BuildError` naming file and anchor.

The step is idempotent: each edited file's pristine content is kept next to it as
``<file>.mdi_mlmm.orig``; re-injecting starts from that copy, and a file is only
rewritten when its content changes (so ``make`` recompiles only what changed).

The edits (GROMACS 2022.x):

* ``src/gromacs/applied_forces/CMakeLists.txt``: ``add_subdirectory(mdi)``.
* ``src/gromacs/mdrun/mdmodules.cpp``: own the module next to QM/MM and forward
  the same calls to it (mdp options, mdp transform/output, force providers,
  pre-processing and simulation-setup notifications).
* ``src/programs/mdrun/mdrun.cpp``: consume ``-mdi "<MDI options>"`` from argv
  before GROMACS parses it; document it in ``gmx mdrun -h``.
* ``src/gromacs/mdlib/sim_util.cpp``: at the start of ``do_force`` (coordinates final, before
  any MM force work) hand this step's coordinates to the module, which sends the ML atoms'
  coordinates to the engine at once; the engine evaluates the model while GROMACS computes
  the MM forces, and the force provider only collects energy and forces
  (``MDI_MLMM_GMX_EARLY_COORDS=0`` turns this off, for comparison).
* ``src/gromacs/topology/ifunc.cpp``: relabel the (otherwise unused in this build)
  ``F_EQM`` energy term from "Quantum En." to "E_ML", so the ML energy appears as
  ``E_ML`` in the .edr (gmx energy, panedr/pyedr).
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import BuildError

#: where our module lives inside the GROMACS tree
MODULE_SUBDIR = "src/gromacs/applied_forces/mdi"
MARK = "mdi_mlmm"
ORIG_SUFFIX = ".mdi_mlmm.orig"


def module_source_dir() -> Path:
    """``gromacs_module/`` of this checkout (repo root), or the copy installed as package data."""
    here = Path(__file__).resolve()
    for cand in (here.parents[3] / "gromacs_module", here.parent / "gromacs_module"):
        if (cand / "CMakeLists.txt").is_file():
            return cand
    raise BuildError(f"cannot find the gromacs_module/ sources (looked in {here.parents[3]})")


@dataclass
class Edit:
    """Insert ``lines`` after the line whose stripped text equals ``anchor``.

    With ``replace=True`` the anchor line itself is replaced by ``lines``.
    ``count`` anchors must exist (exactly), otherwise the edit fails.
    """

    path: str
    anchor: str
    lines: list[str]
    why: str
    replace: bool = False
    count: int = 1
    indent_like_anchor: bool = True


def _mdmodules(anchor: str, ours: str, why: str) -> Edit:
    return Edit("src/gromacs/mdrun/mdmodules.cpp", anchor, [f"{ours} // {MARK}"], why)


EDITS: list[Edit] = [
    Edit("src/gromacs/applied_forces/CMakeLists.txt", "add_subdirectory(qmmm)",
         [f"add_subdirectory(mdi) # {MARK}: ML/MM through MDI"], "build our module"),
    _mdmodules('#include "gromacs/applied_forces/qmmm/qmmm.h"',
               '#include "gromacs/applied_forces/mdi/mdimodule.h"', "declare the module"),
    _mdmodules("std::unique_ptr<IMDModule>      qmmm_;",
               "std::unique_ptr<IMDModule>      mdi_ = MdiModuleInfo::create();", "own the module"),
    _mdmodules("qmmm_->mdpOptionProvider()->initMdpOptions(&appliedForcesOptions);",
               "mdi_->mdpOptionProvider()->initMdpOptions(&appliedForcesOptions);", "mdp options"),
    _mdmodules("impl_->qmmm_->mdpOptionProvider()->initMdpTransform(appliedForcesScope.rules());",
               "impl_->mdi_->mdpOptionProvider()->initMdpTransform(appliedForcesScope.rules());",
               "mdp key transform"),
    _mdmodules("impl_->qmmm_->mdpOptionProvider()->buildMdpOutput(builder);",
               "impl_->mdi_->mdpOptionProvider()->buildMdpOutput(builder);", "mdout.mdp"),
    _mdmodules("impl_->qmmm_->initForceProviders(impl_->forceProviders_.get());",
               "impl_->mdi_->initForceProviders(impl_->forceProviders_.get());", "force provider"),
    _mdmodules("impl_->qmmm_->subscribeToPreProcessingNotifications(&impl_->notifiers_);",
               "impl_->mdi_->subscribeToPreProcessingNotifications(&impl_->notifiers_);",
               "grompp-time processing"),
    _mdmodules("impl_->qmmm_->subscribeToSimulationSetupNotifications(&impl_->notifiers_);",
               "impl_->mdi_->subscribeToSimulationSetupNotifications(&impl_->notifiers_);",
               "mdrun setup"),
    Edit("src/programs/mdrun/mdrun.cpp", '#include "gromacs/mdrun/simulationcontext.h"',
         [f'#include "gromacs/applied_forces/mdi/mdimodule.h" // {MARK}'], "declare -mdi handling"),
    Edit("src/programs/mdrun/mdrun.cpp", "auto mdModules = std::make_unique<MDModules>();",
         [f'gmx::mdiConsumeCommandLineOption(&argc, argv); // {MARK}: -mdi "<MDI options>"'],
         "take -mdi out of argv before GROMACS parses the options"),
    Edit("src/programs/mdrun/mdrun.cpp", '"pulling is used."',
         ['"pulling is used.",',
          f'"[PAR]", // {MARK}',
          '"With [TT]-mdi \\"<MDI options>\\"[tt] (mdi_mlmm build) mdrun is an MDI driver, e.g.",',
          '"[TT]-mdi \\"-role DRIVER -name gromacs -method TCP -port 8021\\"[tt]: an MDI engine",',
          '"computes energy and forces of the [TT]mdi-ml-group[tt] atoms of a tpr made with",',
          '"[TT]mdi-active = yes[tt]. Use [TT]-ntmpi 1[tt]."'],
         "document -mdi in gmx mdrun -h", replace=True),
    Edit("src/gromacs/gmxpreprocess/grompp.cpp", '#include "gromacs/utility/snprintf.h"',
         [f'#include "gromacs/applied_forces/mdi/mdimodule.h" // {MARK}'], "grompp-time ML hooks"),
    Edit("src/gromacs/gmxpreprocess/grompp.cpp",
         "if (jAtom != iAtom && !(useFep && PERTURBED(atoms.atom[jAtom])))",
         ["if (jAtom != iAtom && !(useFep && PERTURBED(atoms.atom[jAtom]))",
          f"    && !gmx::mdiIsMlPair(moleculeOffset + iAtom, moleculeOffset + jAtom)) // {MARK}"],
         "ML-ML exclusions may reach beyond the cut-off: the module corrects them at any distance",
         replace=True),
    Edit("src/gromacs/gmxpreprocess/grompp.cpp",
         "checkExclusionDistances(sys, *ir, state.x, state.box, logger, wi);",
         [f"gmx::mdiSetGromppElectrostatics(sys, *ir, state.x, state.box, wi); // {MARK}"],
         "electrostatics settings into the tpr; ML region checks"),
    Edit("src/gromacs/gmxlib/nonbonded/nb_free_energy.cpp", '#include "nb_softcore.h"',
         [f'#include "gromacs/applied_forces/mdi/mdimodule.h" // {MARK}'], "free-energy kernel hook"),
    Edit("src/gromacs/gmxlib/nonbonded/nb_free_energy.cpp", "maxAllowedCutoffSquared,",
         [f"gmx::mdiFepExcludedPairCutoffSquared(maxAllowedCutoffSquared, ic.rcoulomb), // {MARK}"],
         "with an ML region the module corrects excluded ML-ML pairs beyond rcoulomb; the kernel "
         "stops at rcoulomb (as nbnxm does), so no pair is corrected twice or missed beyond rlist",
         replace=True),
    Edit("src/gromacs/mdlib/sim_util.cpp", '#include "gromacs/mdlib/force.h"',
         [f'#include "gromacs/applied_forces/mdi/mdimodule.h" // {MARK}'], "do_force hook"),
    Edit("src/gromacs/mdlib/sim_util.cpp",
         "nbnxn_atomdata_copy_shiftvec(stepWork.haveDynamicBox, fr->shift_vec, nbv->nbat.get());",
         [f"if (stepWork.computeForces) // {MARK}: ML coordinates out before the MM work",
          "{",
          "    gmx::mdiEarlyCoordinates(x.unpaddedArrayRef(), box);",
          "}"],
         "send the ML coordinates at the start of do_force, so the engine evaluates the model while "
         "GROMACS computes the MM forces (the force provider collects the result later in the step)"),
    Edit("src/gromacs/topology/ifunc.cpp", 'def_nofc("EQM", "Quantum En."),',
         [f'def_nofc("EQM", "E_ML"), // {MARK}: ML energy from the MDI module'],
         "name the ML energy term E_ML", replace=True),
]


def _apply_edits(text: str, edits: list[Edit], path: str) -> str:
    lines = text.splitlines(keepends=True)
    for e in edits:
        hits = [i for i, ln in enumerate(lines) if ln.strip() == e.anchor]
        if len(hits) != e.count:
            raise BuildError(
                f"cannot hook the MDI module into GROMACS: anchor line {e.anchor!r} found "
                f"{len(hits)} times in {path} (expected {e.count}); this GROMACS version is not "
                f"supported by mdi_mlmm/hosts/gromacs/inject.py ({e.why})")
        for i in reversed(hits):
            anchor_line = lines[i]
            indent = anchor_line[: len(anchor_line) - len(anchor_line.lstrip())] if e.indent_like_anchor else ""
            new = [indent + ln + "\n" for ln in e.lines]
            if e.replace:
                lines[i:i + 1] = new
            else:
                lines[i + 1:i + 1] = new
    return "".join(lines)


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def module_files(src: Path | None = None) -> list[Path]:
    src = src or module_source_dir()
    return sorted(p for p in src.iterdir() if p.is_file() and p.suffix in {".cpp", ".h", ".txt"})


def module_hash(src: Path | None = None) -> str:
    """sha256 over our module sources and this file (which defines the edits)."""
    h = hashlib.sha256()
    for p in module_files(src) + [Path(__file__)]:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def inject(tree: str | Path, src: Path | None = None) -> list[str]:
    """Copy the module into GROMACS source ``tree`` and apply :data:`EDITS`.

    Returns the relative paths of files that changed (empty when already up to date).
    """
    tree = Path(tree)
    if not (tree / "src" / "gromacs" / "mdrun" / "mdmodules.cpp").is_file():
        raise BuildError(f"{tree} does not look like a GROMACS source tree (no src/gromacs/mdrun/mdmodules.cpp)")
    changed: list[str] = []

    # 1. our sources
    src = src or module_source_dir()
    dest = tree / MODULE_SUBDIR
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in module_files(src)}
    for p in module_files(src):
        if _write_if_changed(dest / p.name, p.read_bytes()):
            changed.append(f"{MODULE_SUBDIR}/{p.name}")
    for old in dest.iterdir():
        if old.name not in wanted:
            old.unlink()
            changed.append(f"{MODULE_SUBDIR}/{old.name} (removed)")

    # 2. anchored edits, always starting from the pristine file
    by_file: dict[str, list[Edit]] = {}
    for e in EDITS:
        by_file.setdefault(e.path, []).append(e)
    for rel, edits in by_file.items():
        target = tree / rel
        orig = target.with_name(target.name + ORIG_SUFFIX)
        if not target.is_file():
            raise BuildError(f"cannot hook the MDI module into GROMACS: {rel} is missing")
        if not orig.is_file():
            current = target.read_text()
            if MARK in current:
                raise BuildError(f"{rel} was modified for mdi_mlmm but its pristine copy {orig.name} is gone; "
                                 "start from a fresh GROMACS source tree")
            shutil.copy2(target, orig)
        pristine = orig.read_text()
        new = _apply_edits(pristine, edits, rel)
        if _write_if_changed(target, new.encode()):
            changed.append(rel)
    return changed


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - manual use
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", help="GROMACS 2022 source tree")
    a = ap.parse_args(argv)
    for c in inject(a.tree):
        print("changed", c)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
