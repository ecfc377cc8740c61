"""Driver side of MDI for our Python hosts: listen, accept the engine, exchange data.

Units at this API: positions/cells in Å, energies in Hartree, forces in Hartree/Å
(conversion to MDI's atomic units happens in :mod:`mdi_mlmm.units`).

MDI can be initialised once per process, so a process holds at most one
:class:`EngineConnection`.

A hung engine (alive but not answering, e.g. ``kill -STOP``) is not waited for forever:
every receive is watched, and one that takes longer than the reply limit (default
:data:`REPLY_TIMEOUT_S`, env ``MDI_MLMM_REPLY_TIMEOUT`` in s, 0 = no limit) ends the
connection — our own engine is killed, a foreign one's socket is shut — and raises
:class:`~mdi_mlmm.errors.EngineTimeout` naming the engine (name, pid, port).

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

from .. import processes, units
from ..engine.transport import Watchdog, check_port_free, free_port, import_mdi, set_tcp_nodelay, tcp_sockets
from ..errors import EngineReportedError, EngineTimeout, Interrupted, MDIError, PeerDisconnected, UserInputError

log = logging.getLogger("mdi_mlmm.driver")

ERROR_LENGTH = 1024  # must match engine.server.ERROR_LENGTH
_INITIALISED = False

#: default longest wait for one engine reply (s); env MDI_MLMM_REPLY_TIMEOUT overrides, 0 = no limit
REPLY_TIMEOUT_S = 300.0


def reply_timeout() -> float:
    """The reply limit in s: ``$MDI_MLMM_REPLY_TIMEOUT`` if set, else :data:`REPLY_TIMEOUT_S`; 0 = none."""
    text = os.environ.get("MDI_MLMM_REPLY_TIMEOUT", "").strip()
    if not text:
        return REPLY_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise UserInputError(f"MDI_MLMM_REPLY_TIMEOUT={text!r}: need seconds >= 0 (0 = no limit)")
    return value


class _ReplyWatch:
    """Watches the receive in progress (one thread per connection, armed per receive).

    ``arm(what)``/``disarm()`` cost an attribute write each; the thread wakes a few times a
    second. When a receive outlasts ``seconds`` it calls ``on_timeout(what)`` once.
    """

    def __init__(self, seconds: float, on_timeout):
        self.seconds = float(seconds)
        self.on_timeout = on_timeout
        self.fired: Optional[str] = None
        self._armed: Optional[tuple[str, float]] = None
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    def arm(self, what: str):
        if self.seconds <= 0 or self._closed:
            return
        self._armed = (what, time.monotonic() + self.seconds)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mdi-reply-watch", daemon=True)
            self._thread.start()

    def disarm(self):
        self._armed = None

    def close(self):
        self._closed = True
        self._armed = None

    def _loop(self):
        tick = min(0.5, max(0.02, self.seconds / 10))
        while not self._closed:
            time.sleep(tick)
            armed = self._armed
            if armed is not None and time.monotonic() > armed[1]:
                self.fired = armed[0]
                self._closed = True
                self.on_timeout(armed[0])
                return


class EngineConnection:
    """An accepted MDI connection to an engine.

    engine_proc: the engine's ``subprocess.Popen`` when we started it (its death is
    then reported with the tail of its log); port, engine_name: for messages;
    reply_timeout_s: longest wait for one reply (default :func:`reply_timeout`; 0 = no limit).
    """

    def __init__(self, comm, engine_proc: Optional[subprocess.Popen] = None, engine_log: Optional[Path] = None,
                 nodelay: bool = True, *, port: Optional[int] = None, engine_name: str = "ML",
                 reply_timeout_s: Optional[float] = None):
        self.mdi = import_mdi()
        self.comm = comm
        self.engine_proc = engine_proc
        self.engine_log = engine_log
        self.port = port
        self.engine_name = engine_name
        self.natoms = None
        self.closed = False
        self._sockets = tcp_sockets()   # the connection's socket(s): shut if a foreign engine hangs
        self.nodelay_sockets = set_tcp_nodelay() if nodelay else 0
        self._watch = _ReplyWatch(reply_timeout() if reply_timeout_s is None else reply_timeout_s, self._abort_hung)
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
        return cls(comm, engine_proc=engine_proc, engine_log=engine_log, nodelay=nodelay, port=port)

    def supports(self, command: str) -> bool:
        """Whether the engine registered ``command``."""
        self._watch.arm(f"the check for {command}")
        try:
            return bool(self.mdi.MDI_Check_Command_Exists("@DEFAULT", command, self.comm))
        except Exception as exc:
            self._raise_dead(f"checking engine support for {command}", exc)
        finally:
            self._watch.disarm()

    def require(self, commands: Sequence[str]):
        missing = [c for c in commands if not self.supports(c)]
        if missing:
            raise MDIError(f"the MDI engine does not support {' '.join(missing)}")

    def setup(self, atomic_numbers: Sequence[int], total_charge: Optional[float] = None):
        """Send ``>NATOMS`` and ``>ELEMENTS`` (and ``>TOTCHARGE`` if given)."""
        z = np.asarray(atomic_numbers, dtype=np.int32)
        self.require([">NATOMS", ">ELEMENTS", ">COORDS", "<ENERGY", "<FORCES"])
        self.natoms = len(z)
        # one round trip per step instead of two when the engine has it (an mdi_mlmm extension)
        self._energy_forces = self.supports("<ENERGY_FORCES")
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
        if getattr(self, "_energy_forces", False):
            self._cmd("<ENERGY_FORCES")
            ef = self._recv(1 + 3 * self.natoms, mdi.MDI_DOUBLE, "<ENERGY_FORCES")
            e, f = ef[:1], ef[1:]
        else:
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
            self._watch.arm("<ERROR")
            try:
                msg = self.mdi.MDI_Recv(ERROR_LENGTH, self.mdi.MDI_CHAR, self.comm).strip("\0 ")
            except Exception as exc:
                self._raise_dead("<ERROR", exc)
            finally:
                self._watch.disarm()
        if msg or default:
            raise EngineReportedError(f"ML engine: {msg or default}")

    def close(self, timeout: float = 10.0):
        """Send EXIT and wait for a locally started engine to finish."""
        if self.closed:
            return
        self.closed = True
        self._watch.close()
        if self._watch.fired is None:
            try:
                self.mdi.MDI_Send_Command("EXIT", self.comm)
            except Exception:
                pass
        if self.engine_proc is not None:
            try:
                self.engine_proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            processes.stop([self.engine_proc], grace=0)   # reaps it; kills it if still there

    def describe_engine(self) -> str:
        """``MDI engine ML (pid 123, port 4567)``: what messages call the engine."""
        bits = ([f"pid {self.engine_proc.pid}"] if self.engine_proc is not None else []) + \
            ([f"port {self.port}"] if self.port else [])
        return f"MDI engine {self.engine_name}" + (f" ({', '.join(bits)})" if bits else "")

    def _abort_hung(self, what: str):
        """Watch thread: the engine did not answer ``what`` in time. Kill our engine (or shut a
        foreign engine's socket) so the blocked receive fails; :meth:`_raise_dead` then raises
        :class:`EngineTimeout`. Should the receive still not return, end the process."""
        log.error("%s did not answer %s within %g s: ending the connection", self.describe_engine(), what,
                  self._watch.seconds)
        if self.engine_proc is not None:
            processes.stop([self.engine_proc], grace=0)
        import socket

        for fd in self._sockets:
            try:
                s = socket.socket(fileno=fd)
            except OSError:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                s.detach()
        time.sleep(15.0)   # the receive normally fails at once; if it is stuck in C for good:
        if not self.closed:
            print(f"error: {self._timeout_message(what)}", file=sys.stderr, flush=True)
            os._exit(3)

    def _timeout_message(self, what: str) -> str:
        return (f"{self.describe_engine()} did not answer {what} within {self._watch.seconds:g} s "
                f"(hung or stopped?) and was cut off; MDI_MLMM_REPLY_TIMEOUT=SECONDS sets the limit (0: none)")

    # ------------------------------------------------------------- wire
    def _raise_dead(self, what: str, exc):
        if isinstance(exc, Interrupted):   # SIGTERM/SIGINT arrived during the exchange: not the engine's fault
            raise exc
        if self._watch.fired is not None:
            self.closed = True
            if self.engine_proc is not None:   # being killed by the watch thread: gone when we report it
                try:
                    self.engine_proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            raise EngineTimeout(self._timeout_message(self._watch.fired)) from exc
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
        self._watch.arm(what)
        try:
            self.mdi.MDI_Recv(count, dtype, self.comm, buf=buf)
        except Exception as exc:
            self._raise_dead(what, exc)
        finally:
            self._watch.disarm()
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
    log.info("starting engine: %s", " ".join(shlex.quote(c) for c in cmd))
    proc = processes.start_logged(cmd, log_path)
    t0 = time.time()
    conn = EngineConnection.listen(port, engine_proc=proc, engine_log=log_path, accept_timeout=accept_timeout)
    log.info("engine connected after %.1f s", time.time() - t0)
    return conn
