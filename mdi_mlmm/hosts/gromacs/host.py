"""Run ML/MM molecular dynamics with GROMACS (MDI module) as the MM host.

:func:`run_md` is what ``mdi-mlmm md --host gromacs`` calls: it

1. selects the ML atoms (GROMACS selection syntax, e.g. ``"resname MOL"``) and writes an
   index file with the default groups plus ``ML``;
2. writes the mdp (the package templates ``nve``/``nvt``/``npt`` with ``mdi-active = yes``,
   ``mdi-ml-group = ML``, the requested steps and time step) and runs ``gmx grompp``;
3. starts the engine (``mdi-mlmm engine --model ...``) on a free TCP port and runs
   ``gmx mdrun -ntmpi 1 -mdi "-role DRIVER -name gromacs -method TCP -port PORT"``;
4. reads the energies (pyedr when installed, else ``gmx energy``), E_ML included.

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
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from ...errors import HostError, UserInputError
from .build import require_gmx

log = logging.getLogger(__name__)

ML_GROUP = "ML"
E_ML_TERM = "E_ML"
ENSEMBLES = ("nve", "nvt", "npt")


# ----------------------------------------------------------------------------- small helpers
def free_port() -> int:
    """A TCP port that is free right now on localhost."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: Sequence[str], cwd: Path, what: str, stdin: str | None = None, timeout: float | None = None,
         env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    log.debug("$ %s", " ".join(map(str, cmd)))
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, input=stdin, capture_output=True, text=True,
                       timeout=timeout, env=dict(env) if env else None)
    if r.returncode != 0:
        raise HostError(f"{what} failed (exit {r.returncode}):\n{gromacs_error(r.stderr + r.stdout)}")
    return r


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
def make_index(gmx: Path, gro: Path, selection: str, ndx: Path, group: str = ML_GROUP) -> list[int]:
    """Write ``ndx`` with GROMACS's default groups plus ``[ group ]`` = atoms of ``selection``.

    ``selection`` is GROMACS selection syntax (``resname MOL``, ``resnr 1``, ``atomnr 1 to 9``);
    returns the 0-based atom indices.
    """
    workdir = ndx.parent
    sel_ndx = workdir / f".{ndx.stem}_selection.ndx"
    r = subprocess.run([str(gmx), "select", "-s", str(gro), "-select", selection, "-on", str(sel_ndx)],
                       cwd=workdir, capture_output=True, text=True)
    if r.returncode != 0 or not sel_ndx.is_file():
        raise UserInputError(f"ML selection {selection!r} is not valid GROMACS selection syntax:\n"
                             f"{gromacs_error(r.stderr)}")
    atoms = [int(x) - 1 for ln in sel_ndx.read_text().splitlines() if not ln.startswith("[") for x in ln.split()]
    sel_ndx.unlink()
    if not atoms:
        raise UserInputError(f"ML selection {selection!r} matches no atoms in {gro}")
    _run([gmx, "make_ndx", "-f", gro, "-o", ndx], workdir, "gmx make_ndx", stdin="q\n")
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


def grompp(gmx: Path, mdp: Path, gro: Path, top: Path, tpr: Path, ndx: Path | None = None,
           maxwarn: int = 0, cwd: Path | None = None) -> str:
    """``gmx grompp``; returns its output (contains the MDI module's summary)."""
    cwd = cwd or tpr.parent
    cmd = [gmx, "grompp", "-f", mdp, "-c", gro, "-p", top, "-o", tpr, "-po", tpr.with_suffix(".mdout.mdp")]
    if ndx:
        cmd += ["-n", ndx]
    if maxwarn:
        cmd += ["-maxwarn", str(maxwarn)]
    r = _run(cmd, cwd, "gmx grompp")
    return r.stderr + r.stdout


# ----------------------------------------------------------------------------- engine + mdrun
def engine_command(model: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "mdi_mlmm", "engine", "--model", model, *extra,
            "-mdi", f"-role ENGINE -name ML -method TCP -port {port} -hostname localhost"]


@contextmanager
def engine_process(model: str, port: int, log_path: Path, extra: Sequence[str] = ()) -> Iterator[subprocess.Popen]:
    """Start ``mdi-mlmm engine`` (it retries connecting until mdrun listens); stop it on exit."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    with open(log_path, "w") as lf:
        proc = subprocess.Popen(engine_command(model, port, extra), stdout=lf, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            yield proc
        finally:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def mdi_driver_options(port: int) -> str:
    return f"-role DRIVER -name gromacs -method TCP -port {port}"


def mdrun_mdi(gmx: Path, tpr: Path, deffnm: str, model: str, *, cwd: Path | None = None, ntomp: int | None = None,
              rerun: Path | None = None, engine_args: Sequence[str] = (), mdrun_args: Sequence[str] = (),
              timeout: float | None = None, port: int | None = None) -> subprocess.CompletedProcess:
    """``gmx mdrun -mdi ...`` with an engine serving ``model``; ``model=None`` runs plain mdrun."""
    cwd = cwd or tpr.parent
    ntomp = ntomp or max(1, (os.cpu_count() or 2) - 1)
    cmd = [str(gmx), "mdrun", "-s", str(tpr), "-deffnm", deffnm, "-ntmpi", "1", "-ntomp", str(ntomp),
           "-nb", "cpu", "-pin", "off", *map(str, mdrun_args)]
    if rerun:
        cmd += ["-rerun", str(rerun)]
    if model is None:
        return _run(cmd, cwd, "gmx mdrun", timeout=timeout)
    port = port or free_port()
    cmd += ["-mdi", mdi_driver_options(port)]
    engine_log = cwd / f"{deffnm}.engine.log"
    with engine_process(model, port, engine_log, engine_args) as eng:
        log.info("mdrun %s with engine %s on port %d", tpr.name, model, port)
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            # a failed mdrun never sends EXIT: stop the engine now
            if eng.poll() is None:
                os.killpg(eng.pid, signal.SIGTERM)
            raise HostError(f"gmx mdrun failed (exit {r.returncode}):\n{gromacs_error(r.stderr + r.stdout)}\n"
                            f"engine log: {engine_log}")
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
    probe = subprocess.run([str(gmx), "energy", "-f", str(edr), "-o", os.devnull], input="\n",
                           capture_output=True, text=True, cwd=Path(edr).parent)
    names = re.findall(r"\s*\d+\s+(\S[^\n]*?)(?=\s{2,}\d+\s|\s*$)", probe.stderr.split("-----")[-1], re.M)
    names = [n.strip() for n in names if n.strip()]
    xvg = Path(edr).with_suffix(".all.xvg")
    _run([gmx, "energy", "-f", edr, "-o", xvg, "-xvg", "none"], Path(edr).parent, "gmx energy",
         stdin="\n".join(names) + "\n\n")
    data = np.loadtxt(xvg, ndmin=2)
    out = {"Time": data[:, 0]}
    for i, n in enumerate(names[: data.shape[1] - 1]):
        out[n] = data[:, i + 1]
    return out


def performance_ns_per_day(md_log: Path) -> float | None:
    m = re.search(r"^Performance:\s+([0-9.]+)", Path(md_log).read_text(), re.M)
    return float(m.group(1)) if m else None


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

    @property
    def e_ml(self) -> np.ndarray:
        """E_ML (kJ/mol) per energy frame."""
        return self.energies[E_ML_TERM]


def run_md(top, gro, ml_selection: str, model: str = "ani2x", steps: int = 1000, dt_fs: float = 0.5,
           ensemble: str = "nvt", out_dir="md_gromacs", *, temperature: float = 298.15,
           mdp_overrides: Mapping[str, object] | None = None, ntomp: int | None = None,
           engine_args: Sequence[str] = (), gmx: Path | None = None, maxwarn: int = 0,
           timeout: float | None = None, name: str = "md") -> MDResult:
    """ML/MM MD of ``top``/``gro`` with the atoms of ``ml_selection`` described by ``model``.

    steps: MD steps; dt_fs: time step in fs; ensemble: nve | nvt | npt (package mdp templates;
    velocities are generated at ``temperature`` K unless ``gro`` carries them);
    mdp_overrides: extra/overriding mdp keys (e.g. ``{"nstenergy": 1}``); out_dir: created.
    Returns an :class:`MDResult` (energies in kJ/mol, E_ML among them).
    """
    t0 = time.monotonic()
    gmx = Path(gmx) if gmx else require_gmx()
    top, gro = Path(top).resolve(), Path(gro).resolve()
    for p in (top, gro):
        if not p.is_file():
            raise UserInputError(f"no such file: {p}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # topologies #include files relative to themselves: copy the whole folder's itp files
    for itp in top.parent.glob("*.itp"):
        if not (out / itp.name).exists():
            shutil.copy2(itp, out / itp.name)
    shutil.copy2(top, out / "topol.top")
    shutil.copy2(gro, out / "conf.gro")
    ndx = out / "index.ndx"
    atoms = make_index(gmx, out / "conf.gro", ml_selection, ndx)
    has_v = gro_has_velocities(gro)
    mdp = out / f"{name}.mdp"
    mdp.write_text(mdp_text(ensemble, steps, dt_fs, overrides=mdp_overrides, gen_vel=not has_v,
                            temperature=temperature))
    tpr = out / f"{name}.tpr"
    summary = grompp(gmx, mdp, out / "conf.gro", out / "topol.top", tpr, ndx, maxwarn=maxwarn, cwd=out)
    (out / f"{name}.grompp.out").write_text(summary)
    mdrun_mdi(gmx, tpr, name, model, cwd=out, ntomp=ntomp, engine_args=engine_args, timeout=timeout)
    edr = out / f"{name}.edr"
    energies = read_energies(edr, gmx)
    return MDResult(out, tpr, edr, out / f"{name}.log", energies, performance_ns_per_day(out / f"{name}.log"),
                    atoms, time.monotonic() - t0)


def mdi_command_line(port: int) -> str:
    """The mdrun arguments for MDI coupling, quoted for a shell."""
    return "-ntmpi 1 -mdi " + shlex.quote(mdi_driver_options(port))
