"""Classical energy minimization (steepest descent) of a GROMACS system with ``gmx mdrun``.

:func:`minimize` is the one place this package minimizes with GROMACS: ``mdi-mlmm prepare``
(the solvated box with template ``em``, the gas-phase molecule with ``gas_em``) and
``mdi-mlmm md --host gromacs`` (template ``em`` with the ML atoms frozen) call it.

Units: GROMACS's (kJ/mol, kJ/mol/nm, nm).
"""
from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from ..errors import ExternalToolError, MdiMlmmError
from . import mdp, tools

log = logging.getLogger(__name__)


@dataclass
class MinimizationResult:
    """Outcome of one steepest-descent minimization (kJ/mol, kJ/mol/nm)."""

    gro: Path                     #: the minimized coordinates (nm)
    converged: bool               #: Fmax < emtol reached
    steps: int | None             #: steps GROMACS reports
    emtol_kj_mol_nm: float        #: requested Fmax
    epot_initial_kj_mol: float | None   #: potential energy of the input coordinates
    epot_kj_mol: float            #: final potential energy
    fmax_kj_mol_nm: float         #: final largest force (norm, over the atoms that may move)
    fmax_atom: int | None         #: 1-based atom number of that force (GROMACS numbering)
    template: str                 #: mdp template used
    frozen_group: str | None      #: index group held fixed (``freezegrps``), if any

    def as_dict(self) -> dict:
        d = asdict(self)
        d["gro"] = str(self.gro)
        return d


_END = re.compile(r"^(?:Steepest Descents|Polak-Ribiere|Low-Memory BFGS)\s+(converged|did not converge)(.*)$", re.M)
_EPOT = re.compile(r"^Potential Energy\s*=\s*(\S+)", re.M)
_FMAX = re.compile(r"^Maximum force\s*=\s*(\S+)\s+on atom\s+(\d+)", re.M)


def _first_potential(md_log: str) -> float | None:
    """``Potential`` of the first energy block of an mdrun log (kJ/mol): the input's energy."""
    m = re.search(r"^\s+Energies \(kJ/mol\)\n((?:.*\n){1,20}?)\s*\n", md_log, re.M)
    if not m:
        return None
    rows = m.group(1).splitlines()
    for names, values in zip(rows[0::2], rows[1::2]):
        heads = [names[i:i + 15].strip() for i in range(0, len(names), 15)]
        nums = values.split()
        if "Potential" in heads and len(nums) == len(heads):
            try:
                return float(nums[heads.index("Potential")])
            except ValueError:
                return None
    return None


def parse_em_output(output: str, md_log: str = "") -> dict:
    """Result lines of ``gmx mdrun`` minimization output → converged, steps, Epot, Fmax (GROMACS units)."""
    end, epot, fmax = _END.search(output), _EPOT.search(output), _FMAX.search(output)
    if not (epot and fmax):
        raise ExternalToolError(f"gmx mdrun (minimization) printed no final energy:\n{output[-2000:]}")
    steps = re.search(r"in (\d+) steps", end.group(2)) if end else None
    return {"converged": bool(end) and end.group(1) == "converged" and "machine precision" not in end.group(2),
            "steps": int(steps.group(1)) if steps else None,
            "epot_kj_mol": float(epot.group(1)), "fmax_kj_mol_nm": float(fmax.group(1)),
            "fmax_atom": int(fmax.group(2)), "epot_initial_kj_mol": _first_potential(md_log)}


def minimize(top: Path, gro: Path, workdir: Path, *, template: str = "em", ndx: Path | None = None,
             freeze_group: str | None = None, gmx: str | Path = "gmx", maxwarn: int = 0,
             overrides: Mapping[str, object] | None = None, name: str = "em", ntomp: int = 1,
             maxwarn_option: str | None = "--maxwarn", error: type[MdiMlmmError] = ExternalToolError,
             timeout: float = 1800.0, reprod: bool = True, ref: Path | None = None) -> MinimizationResult:
    """Steepest descent of ``top``/``gro`` with mdp ``template`` (``em``, ``gas_em``) in ``workdir``.

    ``freeze_group`` (a group of ``ndx``) is held fixed (``freezegrps``, all three dimensions).
    ``overrides``: further mdp keys. Files: ``NAME.mdp``, ``NAME.tpr``, ``NAME.grompp.out``,
    ``NAME.log``, ``NAME.mdrun.out`` and the result ``NAME.gro`` (no velocities). ``ntomp=1`` with
    ``reprod`` (``mdrun -reprod``: FFT plans not chosen by timing; without it two runs of 1000s of
    steps end in different minima) makes the result reproducible. ``ref``: grompp's ``-r`` (reference
    coordinates of position restraints, e.g. with ``define = -DPOSRES``). Failures raise ``error`` with GROMACS's own reason.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    o: dict[str, object] = dict(overrides or {})
    if freeze_group:
        if ndx is None:
            raise ValueError("freeze_group needs ndx")
        o.update({"freezegrps": freeze_group, "freezedim": "Y Y Y"})
    mdp_path = mdp.write(template, workdir / f"{name}.mdp", o)
    emtol = float(mdp.parse(mdp_path.read_text()).get("emtol", "10"))
    tools.grompp(gmx, mdp_path, Path(gro).resolve(), Path(top).resolve(), workdir / f"{name}.tpr",
                 ndx=Path(ndx).resolve() if ndx else None, ref=Path(ref).resolve() if ref else None,
                 maxwarn=maxwarn, cwd=workdir,
                 what=f"gmx grompp ({template} minimization)", maxwarn_option=maxwarn_option, error=error,
                 timeout=timeout)
    code, out = tools._execute([str(gmx), "-quiet", "mdrun", "-deffnm", name, "-ntmpi", "1", "-ntomp", str(ntomp),
                                "-nb", "cpu", "-pin", "off", *(["-reprod"] if reprod else [])], workdir, None, timeout,
                               error)
    (workdir / f"{name}.mdrun.out").write_text(out)
    if code != 0:
        raise error(f"gmx mdrun (minimization) failed (exit {code}): {tools.gromacs_reason(out, 0, None)} "
                    f"(full output: {workdir / f'{name}.mdrun.out'})")
    md_log = (workdir / f"{name}.log").read_text() if (workdir / f"{name}.log").is_file() else ""
    r = parse_em_output(out, md_log)
    res = MinimizationResult(gro=workdir / f"{name}.gro", emtol_kj_mol_nm=emtol, template=template,
                             frozen_group=freeze_group, **r)
    log.info("minimized (%s%s): Epot %s -> %.1f kJ/mol, Fmax %.1f kJ/mol/nm in %s steps%s", template,
             f", {freeze_group} frozen" if freeze_group else "",
             f"{res.epot_initial_kj_mol:.1f}" if res.epot_initial_kj_mol is not None else "?", res.epot_kj_mol,
             res.fmax_kj_mol_nm, res.steps, "" if res.converged else f" (not converged to Fmax < {emtol:g})")
    return res
