"""Classical equilibration of the solvated system before the λ windows (EM → NVT → NPT).

Host-independent: both hosts' windows start from its ``npt.gro``. It runs with the plain MM
topology on Debian's stock ``gmx`` (GROMACS units: nm, ps).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..hosts.gromacs.alchemy import _grompp, stock_gmx
from ..hosts.gromacs.host import run_gmx

log = logging.getLogger(__name__)


def equilibrate(top: Path, gro: Path, ndx: Path, out: Path, *, equil_ps: float, temperature: float,
                seed: int, protocol: str = "default") -> Path:
    """EM → NVT → NPT with the plain MM topology (stock gmx); returns the equilibrated .gro.
    protocol: the physical model (:mod:`mdi_mlmm.protocol.physics`); its NPT volume is the one both hosts'
    NVT windows run at.

    The solute is equilibrated classically (standard practice before switching on the ML
    description); each λ window equilibrates further at its own state.
    """
    from ..prep import mdp
    from ..protocol.physics import gromacs_equilibration_overrides

    out.mkdir(parents=True, exist_ok=True)
    final = out / "npt.gro"
    if (out / "done.json").exists() and final.exists():
        return final
    gmx = stock_gmx()
    nsteps = max(500, int(round(equil_ps / 0.002 / 2)))
    stages = [("em", {}, gro), ("nvt", {"nsteps": nsteps, "gen-seed": seed, "ref-t": temperature,
                                        "gen-temp": temperature}, out / "em.gro"),
              ("npt", {"nsteps": nsteps, "ref-t": temperature}, out / "nvt.gro")]
    for name, ov, start in stages:
        if (out / f"{name}.gro").exists():
            continue
        text = mdp.render(name, {**gromacs_equilibration_overrides(protocol), **ov})
        (out / f"{name}.mdp").write_text(text)
        _grompp(gmx, f"{name}.mdp", start, top, f"{name}.tpr", ndx, out, 1, f"gmx grompp ({name})", ref=start)
        log.info("equilibration: %s", name)
        run_gmx([gmx, "mdrun", "-deffnm", name, "-ntmpi", "1", "-ntomp", str(max(1, os.cpu_count() or 1)), "-nb", "cpu"],
                out, f"gmx mdrun ({name})", show_cwd=True)
    (out / "done.json").write_text(json.dumps({"equil_ps": equil_ps, "gro": str(final)}))
    return final
