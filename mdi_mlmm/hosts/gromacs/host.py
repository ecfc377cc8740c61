"""Run ML/MM molecular dynamics with GROMACS (MDI module) as the MM host.

:func:`run_md` is what ``mdi-mlmm md --host gromacs`` calls: it

1. selects the ML atoms (GROMACS selection syntax, e.g. ``"resname MOL"``) and writes an
   index file with the default groups plus ``ML``;
2. writes the mdp (the package templates ``nve``/``nvt``/``npt`` with ``mdi-active = yes``,
   ``mdi-ml-group = ML``, the requested steps and time step) and runs ``gmx grompp``;
3. starts the engine (``mdi-mlmm engine --model ...``) on a free TCP port and runs
   ``gmx mdrun -ntmpi 1 -mdi "-role DRIVER -name gromacs -method TCP -port PORT"``;
4. reads the energies (pyedr when installed, else ``gmx energy``), E_ML included, and writes
   ``energies.csv`` and ``summary.json`` in the format both hosts share
   (:mod:`mdi_mlmm.protocol.outputs`; kcal/mol, Å, K, bar) next to ``md.edr``/``md.xtc``/``md.log``.

Units: GROMACS units throughout (nm, ps, kJ/mol); ``dt_fs`` is in fs.
The lower-level pieces (:func:`grompp`, :func:`mdrun_mdi`, :func:`read_energies`) are
public for tests, benchmarks and the free-energy workflow.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from ... import processes
from ...errors import HostError, UserInputError
from ...engine.transport import free_port  # noqa: F401  (re-exported for callers)
from ...potentials.registry import is_ml
from .build import require_gmx

log = logging.getLogger(__name__)

ML_GROUP = "ML"
E_ML_TERM = "E_ML"
ENSEMBLES = ("nve", "nvt", "npt")


# ----------------------------------------------------------------------------- small helpers
def run_gmx(cmd: Sequence[str], cwd: Path, what: str, stdin: str | None = None, timeout: float | None = None,
            env: Mapping[str, str] | None = None, show_cwd: bool = False) -> subprocess.CompletedProcess:
    """A gmx command through :func:`mdi_mlmm.processes.run_checked`: a failure is a :class:`HostError`
    with GROMACS's own reason (:func:`gromacs_error`)."""
    log.debug("$ %s", " ".join(map(str, cmd)))
    return processes.run_checked(cmd, what=what, error=HostError, explain=_gmx_reason, cwd=cwd, input=stdin,
                                 timeout=timeout, env=processes.omp_env(cmd, env), show_cwd=show_cwd)



def _gmx_reason(r: subprocess.CompletedProcess) -> str:
    return gromacs_error(r.stderr + r.stdout)


def gromacs_error(text: str) -> str:
    """The 'Fatal error' / 'ERROR' block of GROMACS output, else its last lines."""
    m = re.search(r"(Fatal error:.*?)(?:\n-{20,}|\Z)", text, re.S)
    if m:
        return m.group(1).strip()
    errs = re.findall(r"^ERROR \d+ \[.*?\]:\n(?:.+\n)+", text, re.M)
    if errs:
        return "\n".join(e.strip() for e in errs[:5])
    return "\n".join(text.strip().splitlines()[-25:])


# ----------------------------------------------------------------------------- index / mdp / grompp
def select_ml_atoms(gro: Path, selection: str | None = None, ndx: Path | None = None,
                    group: str | None = None) -> list[int]:
    """0-based ML atom indices: MDAnalysis ``selection`` on ``gro`` (as the LAMMPS host), or ``group`` of ``ndx``."""
    from ...topology.mlregion import select_indices

    atoms = [int(i) for i in select_indices(gro, selection, ndx, group)]
    if not atoms:
        raise UserInputError(f"ML selection {selection or group!r} matches no atoms in {gro}")
    return atoms


def make_index(gmx: Path, gro: Path, selection: str | Sequence[int], ndx: Path, group: str = ML_GROUP) -> list[int]:
    """Write ``ndx`` with GROMACS's default groups plus ``[ group ]``.

    ``selection``: an MDAnalysis selection string (e.g. ``"resname MOL"``) or 0-based atom indices.
    Returns the 0-based atom indices.
    """
    atoms = select_ml_atoms(gro, selection) if isinstance(selection, str) else sorted(int(a) for a in selection)
    run_gmx([gmx, "make_ndx", "-f", gro, "-o", ndx], ndx.parent, "gmx make_ndx", stdin="q\n")
    lines = [f"[ {group} ]"] + [" ".join(str(a + 1) for a in atoms[i:i + 15]) for i in range(0, len(atoms), 15)]
    with open(ndx, "a") as f:
        f.write("\n".join(lines) + "\n")
    return atoms


def gro_has_velocities(gro: Path) -> bool:
    lines = Path(gro).read_text().splitlines()
    return len(lines) > 2 and len(lines[2].rstrip()) >= 68


def mdp_text(ensemble: str, steps: int, dt_fs: float, *, ml_group: str | None = ML_GROUP,
             overrides: Mapping[str, object] | None = None, gen_vel: bool | None = None,
             temperature: float = 298.15) -> str:
    """mdp for an ML/MM run from the package templates (``nve``/``nvt``/``npt``).

    ``ml_group=None`` gives the plain MM mdp (``mdi-active = no``). ML molecules are run
    unconstrained by default (``constraints = none``); waters keep SETTLE.
    """
    from ...prep import mdp as mdp_templates

    ens = ensemble.lower()
    if ens not in ENSEMBLES:
        raise UserInputError(f"ensemble must be one of {', '.join(ENSEMBLES)}, got {ensemble!r}")
    o: dict[str, object] = {"nsteps": int(steps), "dt": dt_fs / 1000.0, "constraints": "none"}
    if ens != "nve":
        o["ref-t"] = temperature
    if gen_vel is not None:
        o.update({"gen-vel": gen_vel, "continuation": not gen_vel})
        if gen_vel:
            o["gen-temp"] = temperature
    if ml_group:
        o.update({"mdi-active": True, "mdi-ml-group": ml_group})
    o.update(dict(overrides or {}))
    return mdp_templates.render(ens, o)


def constraint_mdp(constraints: str) -> dict[str, object]:
    """mdp keys for ``constraints`` (``none`` or ``h-bonds``; :data:`mdi_mlmm.protocol.timestep.CONSTRAINTS`).

    With ``h-bonds`` grompp turns every bond with a hydrogen into a constraint of length b0 (the
    ``[ bonds ]`` parameter) before the MDI module edits the ML molecule; the module keeps constraints
    (grompp's summary: ``Kept: ... 6 Constraint`` for ethanol) and removes only the remaining ML–ML bond
    energy terms, so no X–H bond is counted twice and E_ML is the model's energy of the constrained
    geometry. LINCS with FreeSolv's order 12 and 2 iterations: tight enough for NVE (bench/README.md).
    """
    from ...protocol.timestep import CONSTRAINTS

    if constraints not in CONSTRAINTS:
        raise UserInputError(f"constraints must be one of {', '.join(CONSTRAINTS)}, got {constraints!r}")
    if constraints == "none":
        return {"constraints": "none"}
    return {"constraints": "h-bonds", "constraint-algorithm": "LINCS", "lincs-order": 12, "lincs-iter": 2}


def hmr_topology(top: Path, out_dir: Path, factor: float | None, *, constrained: bool, ml: bool,
                 name: str = "topol_hmr.top", dt_fs: float | None = None, option: str = "--dt",
                 ml_atoms: Sequence[int] | None = None, refuse_fast: bool = True,
                 warning_note: str = "gmx grompp refuses it unless --maxwarn allows its warning") -> Path:
    """The topology a unit runs: ``top`` itself, or with hydrogen masses repartitioned by ``factor``
    (:func:`mdi_mlmm.topology.hmr.repartition`; None: off) written to ``out_dir/name``. Needs the X–H bonds
    ``constrained``; ``ml``: the ML atoms' types must give atomic numbers (the MDI module would otherwise guess
    their elements from the changed masses): those of ``ml_atoms`` (0-based), every edited atom's when None.
    ``dt_fs``: whatever the masses, a flexible bond (the X–H bonds too unless ``constrained``) that oscillates in
    fewer than :data:`~mdi_mlmm.topology.hmr.MIN_STEPS_PER_PERIOD` steps is refused in one line naming ``option``
    (:func:`~mdi_mlmm.topology.hmr.fast_bond_message`; grompp only warns, and the λ windows accept its
    warnings), or with ``refuse_fast=False`` (``md``, whose grompp takes the user's ``--maxwarn``; a unit with
    ``--allow-large-dt``) warned about on stderr, followed by ``warning_note`` in brackets."""
    from ...protocol.timestep import check_mass_repartition
    from ...topology.hmr import fast_bond_message, inline_includes, repartition

    factor = check_mass_repartition(factor, constrained_xh=constrained, host="gromacs")
    run = Path(top) if factor is None else Path(out_dir) / name
    if factor is not None:
        check = (True if ml_atoms is None else list(ml_atoms)) if ml else False
        report = repartition(top, run, factor, check_elements=check)
        log.info("hydrogen masses x %g in %s (%s)", factor, run,
                 ", ".join(f"{m}: {n} H" for m, n in report.molecules.items()))
    problem = dt_fs and run.is_file() and fast_bond_message(
        run.read_text() if factor else inline_includes(run), dt_fs, hbonds_constrained=constrained, option=option,
        source=str(top), factor=factor)   # a missing top: grompp's own error
    if problem and refuse_fast:
        raise UserInputError(problem)
    if problem:
        print(f"warning: {problem} ({warning_note})", file=sys.stderr, flush=True)
    return run


def grompp(gmx: Path, mdp: Path, gro: Path, top: Path, tpr: Path, ndx: Path | None = None,
           maxwarn: int = 0, cwd: Path | None = None, maxwarn_option: str | None = "--maxwarn") -> str:
    """``gmx grompp`` (through :func:`mdi_mlmm.prep.tools.grompp`); returns its output (contains the
    MDI module's summary), also kept in ``NAME.grompp.out`` next to ``tpr``. A rejection raises
    :class:`HostError` with GROMACS's own ERROR/WARNING text and that file's path."""
    from ...prep import tools

    return tools.grompp(gmx, mdp, gro, top, tpr, ndx=ndx, maxwarn=maxwarn, cwd=cwd or tpr.parent,
                        maxwarn_option=maxwarn_option, error=HostError)


def minimize_before_md(gmx: Path, out: Path, top: Path, gro: Path, ndx: Path, freeze_ml: bool, *,
                       maxwarn: int = 0, name: str = "md", ntomp: int | None = None) -> dict:
    """Classical steepest descent (package template ``em``) of ``gro`` in ``out`` before dynamics.

    With ``freeze_ml`` the ``ML`` group of ``ndx`` is frozen: in mechanical embedding the forces on
    the MM atoms are classical whatever the ML model, so this is the ML/MM energy minimized over the
    MM coordinates at the ML region's given geometry (no engine needed); the ML region itself is
    not relaxed. Writes ``NAME_em.*``; returns the record (kJ/mol, kJ/mol/nm, ``gro``: the result).
    """
    from ...prep.minimize import minimize

    r = minimize(top, gro, out, template="em", ndx=ndx, freeze_group=ML_GROUP if freeze_ml else None, gmx=gmx,
                 maxwarn=maxwarn, name=f"{name}_em", ntomp=ntomp or max(1, (os.cpu_count() or 2) - 1),
                 error=HostError)
    return r.as_dict()


# ----------------------------------------------------------------------------- engine + mdrun
def engine_command(model: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The ``mdi-mlmm engine`` command line connecting to ``localhost:port`` (:func:`..driver.engine_command`)."""
    from ..driver import engine_command as command

    return command(model, port, extra=extra)


@contextmanager
def engine_process(model: str, port: int, log_path: Path, extra: Sequence[str] = ()) -> Iterator[subprocess.Popen]:
    """Start ``mdi-mlmm engine`` (it retries connecting until mdrun listens); stop it on exit."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    # a session of its own: a Ctrl-C reaches mdrun, which stops (with a checkpoint) while the engine serves it
    proc = processes.start_logged(engine_command(model, port, extra), log_path, env=env, start_new_session=True,
                                  stdin=None)
    try:
        yield proc
    finally:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        processes.stop([proc], grace=10)


def mdi_driver_options(port: int) -> str:
    return f"-role DRIVER -name gromacs -method TCP -port {port}"


def mdrun_mdi(gmx: Path, tpr: Path, deffnm: str, model: str, *, cwd: Path | None = None, ntomp: int | None = None,
              rerun: Path | None = None, engine_args: Sequence[str] = (), mdrun_args: Sequence[str] = (),
              timeout: float | None = None, port: int | None = None,
              start_engine: bool = True) -> subprocess.CompletedProcess:
    """``gmx mdrun -mdi ...`` with an engine serving ``model``; ``model=None`` runs plain mdrun.

    With ``start_engine=False`` an engine started by the caller must connect to ``port``.
    """
    cwd = cwd or tpr.parent
    ntomp = ntomp or max(1, (os.cpu_count() or 2) - 1)
    cmd = [str(gmx), "mdrun", "-s", str(tpr), "-deffnm", deffnm, "-ntmpi", "1", "-ntomp", str(ntomp),
           "-nb", "cpu", "-pin", "off", *map(str, mdrun_args)]
    if rerun:
        cmd += ["-rerun", str(rerun)]
    if model is None:
        return run_gmx(cmd, cwd, "gmx mdrun", timeout=timeout)
    port = port or free_port()
    cmd += ["-mdi", mdi_driver_options(port)]
    engine_log = cwd / f"{deffnm}.engine.log"
    if not start_engine:
        r = run_gmx(cmd, cwd, "gmx mdrun -mdi", timeout=timeout)
        (cwd / f"{deffnm}.mdrun.out").write_text(r.stdout + r.stderr)
        return r
    with engine_process(model, port, engine_log, engine_args) as eng:
        log.info("mdrun %s with engine %s on port %d", tpr.name, model, port)
        # mdrun first: on SIGTERM it stops at the next step with a checkpoint, while the engine still answers
        r = processes.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=processes.omp_env(cmd))
        if r.returncode != 0:
            # a failed mdrun never sends EXIT: stop the engine now (a hung one too)
            processes.stop([eng], grace=10)
            raise HostError(f"gmx mdrun failed (exit {r.returncode}):\n{gromacs_error(r.stderr + r.stdout)}\n"
                            f"engine {model} (pid {eng.pid}, port {port}), log: {engine_log}")
    (cwd / f"{deffnm}.mdrun.out").write_text(r.stdout + r.stderr)
    return r


# ----------------------------------------------------------------------------- energies
def read_energies(edr: Path, gmx: Path | None = None) -> dict[str, np.ndarray]:
    """All terms of an .edr as arrays (GROMACS units); ``Time`` in ps. Uses pyedr if available."""
    try:
        import pyedr  # type: ignore

        return {k: np.asarray(v) for k, v in pyedr.edr_to_dict(str(edr)).items()}
    except ImportError:
        pass
    gmx = gmx or require_gmx()
    edr = Path(edr)
    probe = processes.run([str(gmx), "energy", "-f", str(edr), "-o", os.devnull], input="\n",
                          capture_output=True, text=True, cwd=edr.parent)
    table = [ln for ln in probe.stderr.splitlines() if re.match(r"^\s*\d+\s+\S+(\s+\d+\s+\S+)*\s*$", ln)]
    numbers = [n for ln in table for n, _ in re.findall(r"(\d+)\s+(\S+)", ln)]
    if not numbers:
        raise HostError(f"gmx energy found no terms in {edr}:\n{gromacs_error(probe.stderr)}")
    xvg = edr.with_suffix(".all.xvg")
    run_gmx([gmx, "energy", "-f", edr, "-o", xvg], edr.parent, "gmx energy", stdin=" ".join(numbers) + "\n\n")
    text = xvg.read_text()
    names = [m for _, m in sorted((int(i), n) for i, n in re.findall(r'^@ s(\d+) legend "(.*)"', text, re.M))]
    data = np.loadtxt([ln for ln in text.splitlines() if ln and ln[0] not in "#@"], ndmin=2)
    out = {"Time": data[:, 0]}
    for i, n in enumerate(names[: data.shape[1] - 1]):
        out[n] = data[:, i + 1]
    return out


def performance_ns_per_day(md_log: Path) -> float | None:
    m = re.search(r"^Performance:\s+([0-9.]+)", Path(md_log).read_text(), re.M)
    return float(m.group(1)) if m else None


def mdrun_wall_seconds(md_log: Path) -> float | None:
    """The dynamics' wall time (s) of md.log's ``Time:`` line (core t, wall t, %), None if absent."""
    m = re.search(r"^\s*Time:\s+[0-9.]+\s+([0-9.]+)", Path(md_log).read_text(), re.M)
    return float(m.group(1)) if m else None


#: .edr terms summed into energies.csv's split columns (those the run has; kJ/mol)
_EDR_VDW = ("LJ (SR)", "LJ-14", "Disper. corr.", "Buck.ham (SR)")
_EDR_COUL = ("Coulomb (SR)", "Coul. recip.", "Coulomb-14", "Coulomb (LR)")
_EDR_BONDED = ("Bond", "G96Bond", "Morse", "Angle", "G96Angle", "U-B", "Proper Dih.", "Ryckaert-Bell.",
               "Improper Dih.", "Per. Imp. Dih.", "CMAP Dih.")


def gro_volume_A3(gro: Path) -> float:
    """The box volume (Å³) of a .gro file's last line (GROMACS boxes are lower triangular)."""
    from ... import units

    v = [float(x) for x in Path(gro).read_text().rstrip().splitlines()[-1].split()]
    return v[0] * v[1] * v[2] * units.NM_TO_ANGSTROM ** 3


def md_energy_columns(energies: Mapping[str, np.ndarray], dt_fs: float, volume_A3: float,
                      nve: bool = False) -> dict[str, np.ndarray]:
    """The :data:`~mdi_mlmm.protocol.outputs.MD_ENERGY_COLUMNS` of ``mdi-mlmm md`` from an .edr's terms
    (:func:`read_energies`, GROMACS units): kJ/mol → kcal/mol, nm³ → Å³, E_ML (0 without the MDI
    module) and E_MM = E_pot − E_ML; E_conserved is E_tot in NVE (``nve``) when the .edr has no
    ``Conserved En.``, and NaN when a thermostatted run has none (the ``sd`` integrator).
    ``volume_A3``: the box volume when the .edr has none (fixed box)."""
    from ... import units

    kcal = units.factor("energy", "kJ/mol", "kcal/mol")
    t = np.asarray(energies["Time"], dtype=float)
    n = len(t)

    def term(name, default=None):
        if name in energies:
            return np.asarray(energies[name], dtype=float)
        if default is None:
            raise HostError(f"the .edr has no {name!r} term")
        return np.full(n, float(default))

    def total(names):
        return sum((term(k) for k in names if k in energies), np.zeros(n))

    e_ml = term(E_ML_TERM, 0.0)
    e_pot = term("Potential")
    e_kin = term("Kinetic En.")
    e_tot = term("Total Energy")
    vol = term("Volume") * units.NM_TO_ANGSTROM ** 3 if "Volume" in energies else np.full(n, float(volume_A3))
    return {
        "step": np.rint(t * 1000.0 / dt_fs), "time_ps": t,
        "E_ML_hartree": e_ml / units.HARTREE_IN_KJ_PER_MOL, "E_ML_kcal_mol": e_ml * kcal,
        "E_MM_kcal_mol": (e_pot - e_ml) * kcal, "E_pot_kcal_mol": e_pot * kcal, "E_kin_kcal_mol": e_kin * kcal,
        # GROMACS's sd integrator reports no conserved energy: NaN there (summary.json: null), never E_tot
        "E_tot_kcal_mol": e_tot * kcal,
        "E_conserved_kcal_mol": term("Conserved En.") * kcal if "Conserved En." in energies else
        (e_tot * kcal if nve else np.full(n, np.nan)),
        "T_K": term("Temperature"), "P_bar": term("Pressure"), "volume_A3": vol,
        "E_vdw_kcal_mol": total(_EDR_VDW) * kcal, "E_coul_kcal_mol": total(_EDR_COUL) * kcal,
        "E_bonded_kcal_mol": total(_EDR_BONDED) * kcal,
    }


# ----------------------------------------------------------------------------- run_md
@dataclass
class MDResult:
    out_dir: Path
    tpr: Path
    edr: Path
    log: Path
    energies: dict[str, np.ndarray] = field(repr=False)
    ns_per_day: float | None
    ml_atoms: list[int] = field(repr=False)
    wall_seconds: float = 0.0
    minimization: dict | None = None   #: :func:`minimize_before_md`'s record, None with minimize=False
    #: ``summary.json`` (:func:`mdi_mlmm.protocol.outputs.md_summary`: the same keys as the LAMMPS host's)
    summary: dict | None = field(default=None, repr=False)

    def __str__(self) -> str:
        e = self.energies
        lines = [f"GROMACS ML/MM run in {self.out_dir}: {len(e.get('Time', []))} energy frames, "
                 f"{self.ns_per_day} ns/day, {self.wall_seconds:.1f} s wall"]
        m = self.minimization
        if m:
            lines.append(f"  minimized first ({m['frozen_group'] or 'nothing'} frozen): Epot {m['epot_initial_kj_mol']} -> "
                         f"{m['epot_kj_mol']:.1f} kJ/mol, Fmax {m['fmax_kj_mol_nm']:.1f} kJ/mol/nm")
        for k in ("E_ML", "Potential", "Total Energy", "Conserved En.", "Temperature", "Pressure"):
            if k in e and len(e[k]):
                lines.append(f"  {k:<14} mean {np.mean(e[k]):14.4f}  sd {np.std(e[k]):10.4f}")
        return "\n".join(lines)

    @property
    def e_ml(self) -> np.ndarray:
        """E_ML (kJ/mol) per energy frame."""
        return self.energies[E_ML_TERM]


def run_md(top, gro, ml_selection: str | None, model: str = "ani2x", steps: int = 1000, dt_fs: float = 0.5,
           ensemble: str = "nvt", out_dir="md_gromacs", *, ndx=None, ml_group: str | None = None,
           temperature: float = 298.15, pressure_bar: float = 1.0, seed: int = 2024, report_every: int = 100,
           energy_every: int = 1, traj_every: int = 100, engine_port: int | None = None,
           engine_args: Sequence[str] = (), mdp_overrides: Mapping[str, object] | None = None,
           ntomp: int | None = None, gmx: Path | None = None, maxwarn: int = 0, timeout: float | None = None,
           progress: bool = True, name: str = "md", minimize: bool = False,
           constraints: str = "none", mass_repartition: float | None = None) -> MDResult:
    """ML/MM MD of ``top``/``gro`` with the ML atoms described by ``model`` (GROMACS host).

    ml_selection: MDAnalysis selection (``"resname MOL"``), or None with ``ndx`` + ``ml_group``;
    model: engine model (``ani2x``, ``mace:PATH``, ``zero``, ...) or ``mm`` for plain MM;
    steps / dt_fs: number and length (fs) of steps; ensemble: nve | nvt | npt (package mdp
    templates; velocities generated at ``temperature`` K with ``seed`` unless ``gro`` has them);
    pressure_bar: npt reference; report_every / energy_every / traj_every: md.log, .edr and
    .xtc intervals in steps (0: none); engine_port: accept an engine you started instead of
    starting one; mdp_overrides: any mdp keys (win over everything else); maxwarn: grompp warnings
    accepted; minimize: classical steepest descent first with the ML atoms frozen
    (:func:`minimize_before_md`; the minimized coordinates have no velocities, so new ones are
    drawn; ``mdi-mlmm md`` does this unless ``--no-minimize``, the default here is off so that
    a given configuration is run as it is); constraints: ``none`` (default: every bond flexible, waters
    SETTLE) or ``h-bonds`` (:func:`constraint_mdp`: every X–H bond, the ML region's too, constrained at the
    force field's b0; the time step may then be 2 fs); mass_repartition: hydrogen mass repartitioning
    factor (:func:`hmr_topology`, needs ``h-bonds``; 3: the usual, 4 fs; None: off): ``topol_hmr.top`` is
    run; a flexible bond under 5 steps of ``dt_fs`` is warned about on stderr (grompp refuses it unless
    ``maxwarn``). Files go to ``out_dir``.
    Returns an :class:`MDResult` (energies in kJ/mol, ``E_ML`` among them).
    """
    t0 = time.monotonic()
    gmx = Path(gmx) if gmx else require_gmx()
    top, gro = Path(top).resolve(), Path(gro).resolve()
    for p in (top, gro):
        if not p.is_file():
            raise UserInputError(f"no such file: {p}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # topologies #include files relative to themselves: bring the folder's itp files along
    for itp in top.parent.glob("*.itp"):
        if not (out / itp.name).exists():
            shutil.copy2(itp, out / itp.name)
    shutil.copy2(top, out / "topol.top")
    shutil.copy2(gro, out / "conf.gro")
    mm_only = not is_ml(model)
    atoms = select_ml_atoms(out / "conf.gro", ml_selection, ndx, ml_group) if (ml_selection or ml_group) else []
    if not atoms and not mm_only:
        raise UserInputError("give the ML atoms: ml_selection, or ndx + ml_group")
    run_top = hmr_topology(out / "topol.top", out, mass_repartition, constrained=constraints == "h-bonds",
                           ml=not mm_only, ml_atoms=atoms, dt_fs=dt_fs, refuse_fast=False)
    index = out / "index.ndx"
    make_index(gmx, out / "conf.gro", atoms, index) if atoms else run_gmx(
        [gmx, "make_ndx", "-f", out / "conf.gro", "-o", index], out, "gmx make_ndx", stdin="q\n")
    o: dict[str, object] = {"nstlog": report_every, "nstenergy": energy_every,
                            "nstcalcenergy": max(1, min(energy_every or 100, 100)),
                            "nstxout-compressed": traj_every, "gen-seed": seed, "ld-seed": seed}
    if ensemble.lower() == "npt":
        o["ref-p"] = pressure_bar
    o.update(constraint_mdp(constraints))
    if energy_every and energy_every % o["nstcalcenergy"]:
        o["nstcalcenergy"] = 1  # nstenergy must be a multiple of nstcalcenergy
    o.update(dict(mdp_overrides or {}))
    start, em = out / "conf.gro", None
    if minimize:
        em = minimize_before_md(gmx, out, run_top, start, index, bool(atoms) and not mm_only,
                                maxwarn=maxwarn, name=name, ntomp=ntomp)
        start = Path(em["gro"])
    mdp = out / f"{name}.mdp"
    mdp.write_text(mdp_text(ensemble, steps, dt_fs, ml_group=None if mm_only else ML_GROUP, overrides=o,
                            gen_vel=not gro_has_velocities(start), temperature=temperature))
    tpr = out / f"{name}.tpr"
    grompp(gmx, mdp, start, run_top, tpr, index, maxwarn=maxwarn, cwd=out)
    if progress:
        print(f"[gromacs] {steps} steps of {dt_fs} fs ({ensemble}), {len(atoms)} ML atoms, model {model}, "
              f"output in {out}", file=sys.stderr, flush=True)
    t_md = time.monotonic()
    mdrun_mdi(gmx, tpr, name, None if mm_only else model, cwd=out, ntomp=ntomp, engine_args=engine_args,
              timeout=timeout, port=engine_port, start_engine=engine_port is None)
    t_end = time.monotonic()
    edr = out / f"{name}.edr"
    energies = read_energies(edr, gmx)
    md_log = out / f"{name}.log"
    res = MDResult(out, tpr, edr, md_log, energies, performance_ns_per_day(md_log), atoms, t_end - t0,
                   minimization=em)
    res.summary = write_md_outputs(res, start, model=model, steps=steps, dt_fs=dt_fs, ensemble=ensemble.lower(),
                                   temperature=temperature, pressure_bar=pressure_bar, engine_port=engine_port,
                                   mdrun_s=t_end - t_md, name=name, traj=bool(traj_every),
                                   mass_repartition=None if run_top == out / "topol.top" else float(mass_repartition))
    return res


def write_md_outputs(res: MDResult, start_gro: Path, *, model: str, steps: int, dt_fs: float, ensemble: str,
                     temperature: float, pressure_bar: float, engine_port: int | None, mdrun_s: float, name: str,
                     traj: bool, mass_repartition: float | None = None) -> dict:
    """``energies.csv`` and ``summary.json`` of ``mdi-mlmm md`` next to GROMACS's own files, in the
    common format of :mod:`mdi_mlmm.protocol.outputs` (the LAMMPS host writes the same). The wall
    time of the dynamics is md.log's (engine start and set-up excluded, as on the LAMMPS host);
    ``ml_calls``/``ml_seconds`` are null (mdrun does not count them). ``mass_repartition``: the hydrogen
    mass factor of the topology run (a key of this host's summary only, when given)."""
    from ...protocol.outputs import md_summary, write_md_energies, write_md_summary

    out = res.out_dir
    columns = md_energy_columns(res.energies, dt_fs, gro_volume_A3(start_gro), nve=ensemble == "nve")
    write_md_energies(out / "energies.csv", columns)
    wall = mdrun_wall_seconds(res.log) or mdrun_s
    n_atoms = int(Path(start_gro).read_text().splitlines()[1].split()[0])
    engine = ("none (plain MM)" if not is_ml(model) else f"user-started, accepted on port {engine_port}"
              if engine_port else f"started here: mdi-mlmm engine --model {model}")
    files = {"energies": out / "energies.csv", "trajectory": out / f"{name}.xtc" if traj else None,
             "topology": start_gro, "log": res.log, "edr": res.edr, "tpr": res.tpr, "summary": out / "summary.json"}
    summary = md_summary(out / "energies.csv", host="gromacs", model=model, ensemble=ensemble, steps=steps,
                         dt_fs=dt_fs, wall_s=wall, setup_s=max(0.0, res.wall_seconds - wall), n_atoms=n_atoms,
                         n_ml_atoms=len(res.ml_atoms), temperature_K=temperature, pressure_bar=pressure_bar,
                         ml_calls=None, ml_seconds=None, engine=engine,
                         files={k: v for k, v in files.items() if v is not None}, minimization=res.minimization,
                         ns_per_day=res.ns_per_day,
                         **({"mass_repartition": mass_repartition} if mass_repartition else {}))
    write_md_summary(out / "summary.json", summary)
    return summary


def mdi_command_line(port: int) -> str:
    """The mdrun arguments for MDI coupling, quoted for a shell."""
    return "-ntmpi 1 -mdi " + shlex.quote(mdi_driver_options(port))
