"""λ windows and the gas-phase run on the GROMACS host.

* Plain MM (``model = mm``): Debian's stock ``gmx``, FreeSolv's λ schedule, the run's physical model
  (``protocol``: :mod:`mdi_mlmm.protocol.physics`).
* ML/MM: the MDI-enabled ``gmx`` (``mdi-mlmm gromacs build``) with ``mdi-active = yes``;
  GROMACS's free-energy code decouples the ML–MM nonbonded terms (couple-moltype),
  E_ML stays on at every λ.

Each window is resumable: mdrun writes checkpoints (``-cpt``) and a rerun continues
with ``-cpi state.cpt -append``; ``done.json`` marks a finished window. Every gmx runs
through :mod:`mdi_mlmm.processes` (SIGTERM: mdrun stops with a checkpoint, nothing is
orphaned). While mdrun runs, the step it has reached is read from its log every few
seconds and reported through ``progress(done, total)``.
GROMACS units inside (nm, ps, kJ/mol); the CSVs we write are kcal/mol.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ... import files, units
from ...errors import HostError
from ...potentials.registry import is_ml
from ...protocol.outputs import write_e_ml
from ...protocol.specs import GasSpec, LegSpec, WindowSpec

log = logging.getLogger(__name__)


def stock_gmx() -> str:
    gmx = shutil.which("gmx") or shutil.which("gmx_d")
    if not gmx:
        raise HostError("GROMACS (gmx) not found: apt-get install gromacs")
    return gmx


def _grompp(gmx, mdp, gro, top, tpr, ndx, out, maxwarn: int, what: str, ref=None) -> str:
    """gmx grompp in ``out`` through the package's one grompp helper (GROMACS's own reason in the
    error, full output in ``TPR-NAME.grompp.out``)."""
    from ...prep import tools

    return tools.grompp(gmx, mdp, gro, top, tpr, ndx=ndx, ref=ref, maxwarn=maxwarn, cwd=out, what=what,
                        maxwarn_option=None, error=HostError)


_LOG_STEP = re.compile(rb"^ +Step +Time *\r?\n +(\d+) ", re.M)


def log_step(log: Path) -> int | None:
    """The last step whose energies mdrun's ``log`` reports (from its last 64 kB); None if none yet."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 65536))
            tail = fh.read()
    except OSError:
        return None
    steps = _LOG_STEP.findall(tail)
    return int(steps[-1]) if steps else None


@contextmanager
def follow_log(log: Path, progress, offset: int, total: int, every_s: float = 2.0):
    """While the block runs (an mdrun writing ``log``), call ``progress(offset + step, total)``
    every ``every_s`` s with the last step the log reports. ``progress`` None: nothing."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def loop():
        while not stop.wait(every_s):
            step = log_step(log)
            if step is not None:
                progress(min(total, offset + step), total)

    t = threading.Thread(target=loop, name="mdrun-progress", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def _nstlog(steps: int, sample_every: int) -> int:
    """Log energies often enough for a moving progress bar (~100 times a run, at least every
    1000 steps), on sample steps (a multiple of nstcalcenergy)."""
    return int(sample_every) * max(1, min(1000, int(steps) // 100) // int(sample_every))


def _ntomp() -> int:
    return max(1, int(os.environ.get("MDI_MLMM_THREADS_PER_WINDOW", "1")))


def split_fep_overrides(state: int, schedule, boundary) -> dict:
    """The free-energy block of window ``state``: the full topology with energies at every state of
    ``schedule``, or, for a window after a split decoupling's ``boundary`` state (None: not split), the
    solute's charges zero in both topology states (``couple-lambda0 = vdw``: GROMACS perturbs no charge and
    computes one PME grid, not two) with the λ arrays and ``init-lambda-state`` restricted to the stage-2
    states boundary..N−1, whose energies (coul λ = 1) are exactly those of the full topology."""
    from ...prep import mdp
    from ...protocol.schedule import window_states

    states = window_states(schedule, state, boundary)
    sub = [tuple(schedule[k]) for k in states]
    if states.start and any(float(c) != 1.0 for c, _ in sub):
        raise HostError(f"window {state}: the states after boundary {boundary} have charges on: not a split decoupling")
    ov = mdp.fep_overrides(int(state) - states.start, schedule=sub)
    if states.start:
        ov["couple-lambda0"] = "vdw"
    return ov


def _lambda_mdp(state: int, schedule, steps: int, dt_fs: float, sample_every: int, temperature: float, seed: int,
                ml: bool, equil: bool, protocol: str = "default", constrain_hbonds: bool = False,
                boundary: int | None = None) -> str:
    """mdp of one stage of a λ window: template ``lambda`` (the default physical model, NVT, flexible solute)
    with ``protocol``'s overrides (:mod:`mdi_mlmm.protocol.physics`); ``constrain_hbonds``: h-bonds (an ML
    window: :func:`.host.constraint_mdp`, the ML region's X–H bonds included); ``boundary``: a split
    decoupling's boundary state (:func:`split_fep_overrides`)."""
    from ...prep import mdp
    from ...protocol.physics import gromacs_window_overrides

    ov = split_fep_overrides(state, schedule, boundary)
    ov.update(gromacs_window_overrides(protocol))
    if constrain_hbonds and not ml:
        ov["constraints"] = "h-bonds"
    ov.update({"nsteps": steps, "dt": dt_fs / 1000.0, "nstdhdl": sample_every,
               "nstcalcenergy": sample_every, "nstenergy": sample_every, "ref-t": temperature, "ld-seed": seed,
               "gen-vel": "no", "continuation": "no" if equil else "yes", "nstlog": _nstlog(steps, sample_every)})
    if ml:
        from ..driver import reply_timeout

        from .host import constraint_mdp

        # flexible ML solute (water keeps SETTLE): 1 fs resolves its C-H/O-H vibrations; or its X-H bonds
        # constrained at b0 (2 fs). A hung engine ends the run after the reply limit.
        ov.update({**constraint_mdp("h-bonds" if constrain_hbonds else "none"), "mdi-active": "yes",
                   "mdi-ml-group": "ML", "mdi-reply-timeout": reply_timeout()})
    return mdp.render("lambda", ov)


def run_window(spec: WindowSpec, progress=None) -> dict:
    """One λ window (``spec``: :class:`~mdi_mlmm.protocol.specs.WindowSpec`). Writes dhdl.xvg
    (alchemlyb reads it as is), e_ml.csv (ML runs) and done.json."""
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = out / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    ml = is_ml(spec.model)
    if ml:
        from .build import require_gmx

        gmx = str(require_gmx())
    else:
        gmx = stock_gmx()
    t0 = time.time()
    gro = Path(spec.gro)
    n_eq = max(0, int(spec.equil_steps))
    total = n_eq + int(spec.steps)
    # short equilibration at this λ (not analysed), then production
    for stage, nsteps, start in (("eq", n_eq, gro), ("prod", int(spec.steps), out / "eq.gro")):
        offset = 0 if stage == "eq" else n_eq
        if nsteps <= 0:
            if stage == "eq":
                shutil.copy2(gro, out / "eq.gro")
            continue
        if (out / f"{stage}.gro").exists():
            continue
        mdp_text = _lambda_mdp(spec.state, spec.schedule, nsteps, spec.dt_fs, spec.sample_every,
                               spec.temperature, spec.seed + (0 if stage == "prod" else 7919), ml,
                               equil=stage == "eq", protocol=spec.protocol, constrain_hbonds=spec.constrain_hbonds,
                               boundary=spec.stage_boundary)
        (out / f"{stage}.mdp").write_text(mdp_text)
        if not (out / f"{stage}.tpr").exists():
            _grompp(gmx, f"{stage}.mdp", start, _unit_top(spec, out, ml), f"{stage}.tpr", spec.ndx, out, 2,
                    f"gmx grompp (window {spec.state} {stage})")
        args = ["-cpt", "0.5", "-dhdl", f"{stage}.dhdl.xvg"]
        if (out / f"{stage}.cpt").exists():
            args += ["-cpi", f"{stage}.cpt", "-append"]
        with follow_log(out / f"{stage}.log", progress, offset, total):
            if ml:
                from .host import mdrun_mdi

                mdrun_mdi(Path(gmx), out / f"{stage}.tpr", stage, spec.engine, cwd=out, ntomp=_ntomp(),
                          mdrun_args=args, engine_args=spec.engine_args)
            else:
                from .host import run_gmx

                run_gmx([gmx, "mdrun", "-deffnm", stage, "-ntmpi", "1", "-ntomp", str(_ntomp()), "-nb", "cpu",
                         "-pin", "off", *args], out, f"gmx mdrun (window {spec.state} {stage})", show_cwd=True)
        if progress:
            progress(offset + nsteps, total)
    shutil.copy2(out / "prod.dhdl.xvg", out / "dhdl.xvg")
    res = {"state": spec.state, "steps": spec.steps, "wall_s": time.time() - t0, "dhdl": str(out / "dhdl.xvg")}
    if ml:
        res["e_ml"] = str(_write_e_ml(out / "prod.edr", out / "e_ml.csv"))
    files.write_text(done, json.dumps(res, indent=1))   # whole or absent: a resume trusts it
    return res


def _write_e_ml(edr: Path, csv: Path) -> Path:
    from .host import E_ML_TERM, read_energies

    e = read_energies(edr)
    if E_ML_TERM not in e:
        raise HostError(f"{edr} has no {E_ML_TERM} term: was mdi-active on?")
    return write_e_ml(csv, e["Time"], np.asarray(e[E_ML_TERM]) * units.KJ_PER_MOL_TO_KCAL_PER_MOL)


def run_gas(spec: GasSpec, progress=None) -> dict:
    """Gas-phase ML run (the solute alone, E_ML only) with the MDI gmx; writes e_ml.csv. X–H bonds
    flexible, or constrained at b0 with ``spec.constrain_hbonds``."""
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = out / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    from ..driver import reply_timeout
    from .build import require_gmx
    from .host import mdrun_mdi
    from ...prep import mdp

    gmx = require_gmx()
    ov = {"nsteps": spec.steps, "dt": spec.dt_fs / 1000.0, "nstenergy": spec.sample_every,
          "nstcalcenergy": spec.sample_every, "ref-t": spec.temperature, "gen-temp": spec.temperature,
          "gen-seed": spec.seed, "ld-seed": spec.seed, **_constraints(spec), "mdi-active": "yes",
          "mdi-ml-group": "ML", "mdi-reply-timeout": reply_timeout(),
          "nstlog": _nstlog(spec.steps, spec.sample_every)}
    (out / "gas.mdp").write_text(mdp.render("gas", ov))
    t0 = time.time()
    if not (out / "gas.tpr").exists():
        _grompp(gmx, "gas.mdp", spec.gro, _unit_top(spec, out, True), "gas.tpr", spec.ndx, out, 2,
                "gmx grompp (gas)")
    args = ["-cpt", "0.5"] + (["-cpi", "gas.cpt", "-append"] if (out / "gas.cpt").exists() else [])
    with follow_log(out / "gas.log", progress, 0, int(spec.steps)):
        mdrun_mdi(Path(gmx), out / "gas.tpr", "gas", spec.engine, cwd=out, ntomp=1, mdrun_args=args,
                  engine_args=spec.engine_args)
    res = {"steps": spec.steps, "wall_s": time.time() - t0, "e_ml": str(_write_e_ml(out / "gas.edr", out / "e_ml.csv"))}
    files.write_text(done, json.dumps(res, indent=1))   # whole or absent: a resume trusts it
    if progress:
        progress(spec.steps, spec.steps)
    return res


def _unit_top(spec, out: Path, ml: bool) -> str:
    """The topology a unit's grompp reads: ``spec.top``, or its copy ``out/topol_hmr.top`` with the hydrogen
    masses repartitioned (``spec.mass_repartition``; the ML atoms' types checked: :func:`.host.hmr_topology`,
    which also refuses, with or without HMR, a flexible bond too fast for the unit's time step: grompp only
    warns, and the units accept its warnings; ``spec.allow_large_dt``: warned about instead)."""
    from .host import hmr_topology

    return str(hmr_topology(Path(spec.top), out, spec.mass_repartition, constrained=spec.constrain_hbonds, ml=ml,
                            ml_atoms=spec.ml_indices, dt_fs=spec.dt_fs,
                            option="--leg-dt" if isinstance(spec, LegSpec) else "--dt",
                            refuse_fast=not spec.allow_large_dt, warning_note="--allow-large-dt: run anyway"))


def _constraints(spec) -> dict:
    """mdp keys of a unit's X–H bonds: flexible, or constrained (h-bonds, :func:`.host.constraint_mdp`)."""
    from .host import constraint_mdp

    return constraint_mdp("h-bonds" if spec.constrain_hbonds else "none")


def _leg_mdp(spec: LegSpec, stage: str, nsteps: int, fresh: bool) -> str:
    """mdp of one stage (``eq``: unsampled; ``prod``: frames every ``sample_every`` steps in a .trr)
    of an endpoint-leg window: water = the solvated system at full coupling, NVT at the equilibrated
    volume (template ``npt`` without its barostat), as the λ windows and the LAMMPS legs (docs/hosts.md); gas = the solute alone (template ``gas``). The
    solute flexible, or with ``spec.constrain_hbonds`` its X–H bonds constrained at b0 in every window (U_λ
    is then the same function on the constrained manifold; docs/endpoint.md); the ML group's energy comes
    from the λ-mixed engine."""
    from ..driver import reply_timeout
    from ...prep import mdp

    se = int(spec.sample_every)
    seed = int(spec.seed) + (0 if stage == "prod" else 7919)
    ov = {"nsteps": nsteps, "dt": spec.dt_fs / 1000.0, "nstcalcenergy": se, "nstenergy": se,
          "nstlog": _nstlog(nsteps, se), "nstxout": se if stage == "prod" else 0, "nstvout": 0, "nstfout": 0,
          "nstxout-compressed": 0, "ref-t": spec.temperature, "ld-seed": seed, **_constraints(spec),
          "mdi-active": "yes", "mdi-ml-group": "ML", "mdi-reply-timeout": reply_timeout()}
    if spec.phase == "water":   # starts from the equilibrated system (its velocities)
        from ...protocol.physics import gromacs_equilibration_overrides

        # the solute–water and water–water nonbonded terms of the MM decoupling's coupled state (its protocol)
        ov = {**gromacs_equilibration_overrides(spec.protocol), **ov}
        ov.update({"pcoupl": "no", "gen-vel": "no", "continuation": "no" if fresh else "yes"})
        return mdp.render("npt", ov)
    ov.update({"gen-vel": "yes" if fresh else "no", "gen-temp": spec.temperature, "gen-seed": seed,
               "continuation": "no" if fresh else "yes"})
    return mdp.render("gas", ov)


def run_leg(spec: LegSpec, progress=None) -> dict:
    """One window of an endpoint-route leg (``spec``: :class:`~mdi_mlmm.protocol.specs.LegSpec`) with
    the MDI gmx: ``equil_steps`` at λ (``eq``), then ``steps`` of production (``prod``) writing
    ``prod.trr`` every ``sample_every`` steps (full precision: ΔU needs it); resumable per stage
    from its checkpoint. done.json: trajectory, topology (the start .gro), atoms (the solute)."""
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = out / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    from .build import require_gmx
    from .host import mdrun_mdi

    gmx = str(require_gmx())
    t0 = time.time()
    n_eq = max(0, int(spec.equil_steps))
    total = n_eq + int(spec.steps)
    for stage, nsteps, start in (("eq", n_eq, Path(spec.gro)), ("prod", int(spec.steps), out / "eq.gro")):
        offset = 0 if stage == "eq" else n_eq
        if nsteps <= 0:
            if stage == "eq":
                shutil.copy2(spec.gro, out / "eq.gro")
            continue
        if (out / f"{stage}.gro").exists():
            continue
        (out / f"{stage}.mdp").write_text(_leg_mdp(spec, stage, nsteps, fresh=stage == "eq" or n_eq == 0))
        if not (out / f"{stage}.tpr").exists():
            _grompp(gmx, f"{stage}.mdp", start, _unit_top(spec, out, True), f"{stage}.tpr", spec.ndx, out, 2,
                    f"gmx grompp ({spec.describe()} {stage})")
        args = ["-cpt", "0.5"] + (["-cpi", f"{stage}.cpt", "-append"] if (out / f"{stage}.cpt").exists() else [])
        with follow_log(out / f"{stage}.log", progress, offset, total):
            mdrun_mdi(Path(gmx), out / f"{stage}.tpr", stage, spec.engine, cwd=out, ntomp=_ntomp(),
                      mdrun_args=args, engine_args=spec.mixed_engine_args)
        if progress:
            progress(offset + nsteps, total)
    res = {"host": "gromacs", "kind": "leg", "phase": spec.phase, "lambda": spec.lam, "steps": spec.steps,
           "equil_steps": n_eq, "dt_fs": spec.dt_fs, "sample_every": spec.sample_every, "wall_s": time.time() - t0,
           "trajectory": str(out / "prod.trr"), "topology": str(out / "eq.gro"),
           "atoms": [int(i) for i in spec.ml_indices]}
    files.write_text(done, json.dumps(res, indent=1))   # whole or absent: a resume trusts it
    return res
