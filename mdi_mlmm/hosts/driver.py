"""Driver side of MDI for our Python hosts: listen, accept the engine, exchange data.

Units at this API: positions/cells in Å, energies in Hartree, forces in Hartree/Å
(conversion to MDI's atomic units happens in :mod:`mdi_mlmm.units`).

MDI can be initialised once per process, so a process holds at most one
:class:`EngineConnection`.

Typical use::

    conn = EngineConnection.listen(port)              # or start_local_engine(...)
    conn.setup(atomic_numbers)                        # >NATOMS, >ELEMENTS
    e_Ha, f_Ha_per_A = conn.compute(pos_A, cell_A)    # >CELL, >COORDS, <ENERGY, <FORCES
    conn.close()                                      # EXIT
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import units
from ..engine.transport import Watchdog, check_port_free, free_port, import_mdi, set_tcp_nodelay
from ..errors import EngineReportedError, MDIError, PeerDisconnected

log = logging.getLogger("mdi_mlmm.driver")

ERROR_LENGTH = 1024  # must match engine.server.ERROR_LENGTH
_INITIALISED = False


class EngineConnection:
    """An accepted MDI connection to an engine.

    engine_proc: the engine's ``subprocess.Popen`` when we started it (its death is
    then reported with the tail of its log).
    """

    def __init__(self, comm, engine_proc: Optional[subprocess.Popen] = None, engine_log: Optional[Path] = None,
                 nodelay: bool = True):
        self.mdi = import_mdi()
        self.comm = comm
        self.engine_proc = engine_proc
        self.engine_log = engine_log
        self.natoms = None
        self.closed = False
        self.nodelay_sockets = set_tcp_nodelay() if nodelay else 0
        self._has_error_cmd = self.supports("<ERROR")
        self._cell_sent = None

    # ----------------------------------------------------------- set-up
    @classmethod
    def listen(cls, port: int, *, name: str = "driver", accept_timeout: float = 120.0,
               engine_proc: Optional[subprocess.Popen] = None, engine_log: Optional[Path] = None,
               nodelay: bool = True) -> "EngineConnection":
        """Initialise MDI as a TCP driver on ``port`` and wait for one engine."""
        global _INITIALISED
        mdi = import_mdi()
        if _INITIALISED:
            raise MDIError("MDI is already initialised in this process (one engine connection per process)")
        check_port_free(port)
        mdi.MDI_Init(f"-role DRIVER -name {name} -method TCP -port {int(port)}")
        _INITIALISED = True
        stop = threading.Event()
        if engine_proc is not None:
            # While accept() blocks, watch the engine: if it dies, say so and stop.
            def watch():
                while not stop.wait(0.2):
                    if engine_proc.poll() is not None:
                        print(f"error: the ML engine exited (code {engine_proc.returncode}) before connecting"
                              f"{_log_tail(engine_log)}", file=sys.stderr, flush=True)
                        os._exit(3)

            threading.Thread(target=watch, daemon=True).start()
        try:
            with Watchdog(accept_timeout, f"no MDI engine connected on port {port} within {accept_timeout:g} s"):
                comm = mdi.MDI_Accept_Communicator()
        finally:
            stop.set()
        if comm == getattr(mdi, "MDI_COMM_NULL", 0):  # MDI could not bind (it only prints so) or accept
            raise MDIError(f"MDI could not listen on port {port} (already in use?)")
        return cls(comm, engine_proc=engine_proc, engine_log=engine_log, nodelay=nodelay)

    def supports(self, command: str) -> bool:
        """Whether the engine registered ``command``."""
        try:
            return bool(self.mdi.MDI_Check_Command_Exists("@DEFAULT", command, self.comm))
        except Exception as exc:
            self._raise_dead(f"checking engine support for {command}", exc)

    def require(self, commands: Sequence[str]):
        missing = [c for c in commands if not self.supports(c)]
        if missing:
            raise MDIError(f"the MDI engine does not support {' '.join(missing)}")

    def setup(self, atomic_numbers: Sequence[int], total_charge: Optional[float] = None):
        """Send ``>NATOMS`` and ``>ELEMENTS`` (and ``>TOTCHARGE`` if given)."""
        z = np.asarray(atomic_numbers, dtype=np.int32)
        self.require([">NATOMS", ">ELEMENTS", ">COORDS", "<ENERGY", "<FORCES"])
        self.natoms = len(z)
        self._cmd(">NATOMS")
        self._send(np.array([self.natoms], dtype=np.int32), 1, self.mdi.MDI_INT, ">NATOMS")
        self._cmd(">ELEMENTS")
        self._send(z, self.natoms, self.mdi.MDI_INT, ">ELEMENTS")
        if total_charge is not None:
            self._cmd(">TOTCHARGE")
            self._send(np.array([float(total_charge)]), 1, self.mdi.MDI_DOUBLE, ">TOTCHARGE")
        self.check_error()

    # ---------------------------------------------------------- per step
    def compute(self, positions_A: np.ndarray, cell_A: Optional[np.ndarray] = None) -> tuple[float, np.ndarray]:
        """Energy (Hartree) and forces (N, 3) Hartree/Å for ML positions (N, 3) Å.

        ``cell_A`` (3, 3) rows a, b, c lets the engine make the molecule whole; it is
        sent only when it changed.
        """
        mdi = self.mdi
        if cell_A is not None:
            cell = np.asarray(cell_A, dtype=np.float64).reshape(3, 3)
            if self._cell_sent is None or not np.array_equal(cell, self._cell_sent):
                self._cmd(">CELL")
                self._send(units.cell_to_mdi(cell), 9, mdi.MDI_DOUBLE, ">CELL")
                self._cell_sent = cell.copy()
        self._cmd(">COORDS")
        self._send(units.coords_to_mdi(positions_A), 3 * self.natoms, mdi.MDI_DOUBLE, ">COORDS")
        self._cmd("<ENERGY")
        e = self._recv(1, mdi.MDI_DOUBLE, "<ENERGY")
        self._cmd("<FORCES")
        f = self._recv(3 * self.natoms, mdi.MDI_DOUBLE, "<FORCES")
        if not (np.isfinite(e[0]) and np.all(np.isfinite(f))):
            self.check_error(default="the engine returned NaN/inf energy or forces")
        return float(e[0]), units.forces_from_mdi(f)

    def check_error(self, default: Optional[str] = None):
        """Ask the engine for its last error; raise :class:`EngineReportedError` if there is one."""
        msg = ""
        if self._has_error_cmd:
            self._cmd("<ERROR")
            try:
                msg = self.mdi.MDI_Recv(ERROR_LENGTH, self.mdi.MDI_CHAR, self.comm).strip("\0 ")
            except Exception as exc:
                self._raise_dead("<ERROR", exc)
        if msg or default:
            raise EngineReportedError(f"ML engine: {msg or default}")

    def close(self, timeout: float = 10.0):
        """Send EXIT and wait for a locally started engine to finish."""
        if self.closed:
            return
        self.closed = True
        try:
            self.mdi.MDI_Send_Command("EXIT", self.comm)
        except Exception:
            pass
        if self.engine_proc is not None:
            try:
                self.engine_proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.engine_proc.kill()

    # ------------------------------------------------------------- wire
    def _raise_dead(self, what: str, exc):
        code = self.engine_proc.poll() if self.engine_proc is not None else None
        if self.engine_proc is not None and code is None:
            try:
                code = self.engine_proc.wait(2)
            except subprocess.TimeoutExpired:
                code = None
        state = f" (engine exit code {code})" if code is not None else ""
        raise PeerDisconnected(f"lost the ML engine during {what}{state}{_log_tail(self.engine_log)}") from exc

    def _cmd(self, c: str):
        try:
            self.mdi.MDI_Send_Command(c, self.comm)
        except Exception as exc:
            self._raise_dead(c, exc)

    def _send(self, arr, count, dtype, what):
        try:
            self.mdi.MDI_Send(arr, count, dtype, self.comm)
        except Exception as exc:
            self._raise_dead(what, exc)

    def _recv(self, count, dtype, what):
        buf = np.zeros(count, dtype=np.float64 if dtype == self.mdi.MDI_DOUBLE else np.int32)
        try:
            self.mdi.MDI_Recv(count, dtype, self.comm, buf=buf)
        except Exception as exc:
            self._raise_dead(what, exc)
        return buf


def _log_tail(path: Optional[Path], n: int = 5) -> str:
    if not path or not Path(path).exists():
        return ""
    lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    errs = [ln for ln in lines if "error" in ln.lower()] or lines
    return ("; engine log (" + str(path) + "): " + " | ".join(errs[-n:])) if errs else ""


def engine_command(model: str, port: int, *, name: str = "ML", extra: Sequence[str] = ()) -> list[str]:
    """The command line that starts ``mdi-mlmm engine`` connecting to ``localhost:port``."""
    mdi_opts = f"-role ENGINE -name {name} -method TCP -port {int(port)} -hostname localhost"
    return [sys.executable, "-m", "mdi_mlmm", "engine", "--model", model, *extra, "-mdi", mdi_opts]


def start_local_engine(model: str, *, port: Optional[int] = None, log_path: Optional[Path] = None,
                       extra: Sequence[str] = (), accept_timeout: float = 180.0) -> EngineConnection:
    """Start ``mdi-mlmm engine`` as a subprocess and accept its connection.

    model: e.g. ``ani2x``, ``mace:/path/x.model``, ``zero``; extra: further engine
    options (``--model-dir``, ``--call-log FILE``...). The engine's output goes to ``log_path``.
    """
    port = port or free_port()
    cmd = engine_command(model, port, extra=extra)
    log_fh = open(log_path, "w") if log_path else subprocess.DEVNULL
    log.info("starting engine: %s", " ".join(shlex.quote(c) for c in cmd))
    proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    t0 = time.time()
    conn = EngineConnection.listen(port, engine_proc=proc, engine_log=log_path, accept_timeout=accept_timeout)
    log.info("engine connected after %.1f s", time.time() - t0)
    return conn
