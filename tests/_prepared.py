"""One prepared and classically equilibrated system per test session, shared by the tests that run
whole hydration commands on the same molecule (suite time, issue 11).

Preparing ethanol (FreeSolv mobley_2310185: AmberTools, solvation, minimization) and equilibrating
it (EM, NVT, NPT) costs each hydration test the same tens of seconds. A run directory that already
holds ``system/`` and ``equil/done.json`` is resumed by the workflow, which then skips both steps
(what ``hydration`` does on a rerun), so tests about signals, resumption, hosts or analysis start
from a copy of the first finished preparation. Tests that check the preparation itself do not use
this. The copy is keyed on the equilibration length; everything else that shapes these two steps
(molecule, force field, box, temperature, seed) is the same in every caller.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

FREESOLV_ID = "mobley_2310185"
_RUNS: list[Path] = []


def _equil_ps(run: Path) -> float | None:
    try:
        return float(json.loads((run / "equil" / "done.json").read_text())["equil_ps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(run: Path) -> None:
    """Offer ``run``'s preparation to later tests (once its equilibration has finished)."""
    if (run / "system" / "system.json").is_file() and _equil_ps(run) is not None and run not in _RUNS:
        _RUNS.append(run)


def seed(out: Path, equil_ps: float = 1.0) -> bool:
    """Start the (new) run directory ``out`` from an earlier run's ``system/`` and ``equil/`` with
    the same equilibration length; False (nothing copied) when there is none yet."""
    for run in _RUNS:
        if (run / "system" / "system.json").is_file() and _equil_ps(run) == float(equil_ps):
            out.mkdir(parents=True, exist_ok=True)
            for part in ("system", "equil"):
                shutil.copytree(run / part, out / part)
            return True
    return False
