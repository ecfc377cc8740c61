"""MDI plumbing shared by our engine and our drivers: start-up, TCP_NODELAY, timeouts.

No torch here. Units: none (bytes on a socket).

Latency fix
-----------
MDI 1.4's TCP transport never sets ``TCP_NODELAY``. Every exchange is a few small
writes (a command, a 16-byte header, a payload), so Nagle's algorithm holds the
second write until the peer's delayed ACK fires (~40 ms on Linux) — each
coordinates→forces round trip costs tens of milliseconds of pure waiting.

We fix it on our side of every connection we own, without touching the MDI
library: once MDI has connected, :func:`set_tcp_nodelay` walks this process's
file descriptors, and for every connected TCP socket sets ``TCP_NODELAY``.
Peers we do not own (a foreign driver) still delay their own small writes, but
our replies leave at once.
"""
from __future__ import annotations

import ctypes
import logging
import os
import select
import shlex
import socket
import stat
import sys
import threading
import time

import numpy as np

from ..errors import MDIError, UserInputError

log = logging.getLogger(__name__)


def parse_mdi_options(options: str) -> dict[str, str]:
    """Parse an MDI option string (``-role ENGINE -name ML -method TCP ...``) into a dict.

    Keys are lower-case without the dash. Raises :class:`UserInputError` on a malformed string.
    """
    words = shlex.split(options or "")
    out: dict[str, str] = {}
    i = 0
    while i < len(words):
        w = words[i]
        if not w.startswith("-") or i + 1 >= len(words):
            raise UserInputError(f"malformed MDI options {options!r} near {w!r}; expected '-key value' pairs")
        out[w[1:].lower()] = words[i + 1]
        i += 2
    for key in ("role", "method"):
        if key not in out:
            raise UserInputError(f"MDI options {options!r} lack -{key}")
    if out["method"].upper() == "TCP" and "port" not in out:
        raise UserInputError(f"MDI options {options!r}: -method TCP needs -port")
    if "port" in out and not (out["port"].isdigit() and 1 <= int(out["port"]) <= 65535):
        raise UserInputError(f"MDI options {options!r}: -port must be a TCP port in 1..65535, got {out['port']!r}")
    if out["role"].upper() == "ENGINE" and out["method"].upper() == "TCP" and "hostname" not in out:
        raise UserInputError(f"MDI options {options!r}: a TCP engine needs -hostname")
    return out


def tcp_sockets() -> list[int]:
    """File descriptors of this process's connected TCP sockets (Linux ``/proc/self/fd``)."""
    fds = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # pragma: no cover - non-Linux
        return fds
    for name in names:
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            s = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if s.family in (socket.AF_INET, socket.AF_INET6) and s.type == socket.SOCK_STREAM:
                s.getpeername()  # raises if not connected (e.g. a listening socket)
                fds.append(fd)
        except OSError:
            pass
        finally:
            s.detach()  # never close a descriptor MDI owns
    return fds


def set_tcp_nodelay(enable: bool = True) -> int:
    """Set TCP_NODELAY on every connected TCP socket of this process; return how many."""
    n = 0
    for fd in tcp_sockets():
        s = socket.socket(fileno=fd)
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if enable else 0)
            n += 1
        except OSError as exc:  # pragma: no cover
            log.warning("could not set TCP_NODELAY on fd %d: %s", fd, exc)
        finally:
            s.detach()
    return n


class Watchdog:
    """Ends the process with a clear message if ``arm``-ed work does not finish in time.

    Blocking MDI calls (connect, accept) cannot be interrupted from Python, so the
    only safe exit is ``os._exit`` from a timer thread.
    """

    def __init__(self, seconds: float, message: str, exit_code: int = 3):
        self.seconds, self.message, self.exit_code = seconds, message, exit_code
        self._timer: threading.Timer | None = None

    def _fire(self):
        import sys

        print(f"error: {self.message}", file=sys.stderr, flush=True)
        os._exit(self.exit_code)

    def __enter__(self):
        if self.seconds and self.seconds > 0:
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc):
        if self._timer:
            self._timer.cancel()
        return False


class HotCalls:
    """The MDI calls an engine makes every step, straight into pymdi's C library.

    pymdi wraps each call in Python that rebuilds its ctypes plumbing every time (``argtypes`` reset,
    two ``ctypes.cast`` of the command buffer, ``ndarray.astype`` copy plus ``.ctypes.data_as``): tens of
    µs per step on a loaded 2-core VM, and the reply to the driver's force request is on the critical
    path of every coupled MD step. Here: function pointers of our own with fixed ``argtypes``, one
    command buffer, float64 payloads passed by address. Anything else (ints, text) goes through pymdi.
    ``available`` is False (and every call goes through pymdi) when ``mdi`` is not pymdi over its
    C library (a stand-in, another MDI build).

    spin_us > 0: before blocking for the next command, poll the socket for up to that long (a busy
    wait; the engine's core then never idles between commands). On a VM, waking an idle vCPU takes
    a hypervisor round trip; this is an experiment knob (``MDI_MLMM_ENGINE_SPIN_US``), off by default.
    """

    def __init__(self, mdi, spin_us: float = 0.0):
        self.mdi = mdi
        self._mod = sys.modules.get(f"{getattr(mdi, '__name__', '')}.mdi")
        lib = getattr(self._mod, "mdi", None)
        self.available = isinstance(lib, ctypes.CDLL)
        self._poll = None
        self.spin_s = max(0.0, float(spin_us)) * 1e-6
        if not self.available:
            return
        vp, ci = ctypes.c_void_p, ctypes.c_int
        self._recv_command = lib["MDI_Recv_Command"]   # lib[name]: a new pointer, pymdi's own stay untouched
        self._recv_command.argtypes, self._recv_command.restype = [vp, ci], ci
        self._recv = lib["MDI_Recv"]
        self._recv.argtypes, self._recv.restype = [vp, ci, ci, ci], ci
        self._send = lib["MDI_Send"]
        self._send.argtypes, self._send.restype = [vp, ci, ci, ci], ci
        self._cmd = ctypes.create_string_buffer(int(mdi.MDI_COMMAND_LENGTH) + 1)
        self._cmd_addr = ctypes.addressof(self._cmd)
        self._double = int(mdi.MDI_DOUBLE)

    def watch_socket(self) -> bool:
        """Arm the spin wait on this process's one connected TCP socket; False if not exactly one."""
        fds = tcp_sockets()
        if self.spin_s <= 0 or len(fds) != 1:
            self._poll = None
            return False
        self._poll = select.poll()
        self._poll.register(fds[0], select.POLLIN)
        return True

    def _spin(self):
        poll, clock = self._poll.poll, time.perf_counter
        deadline = clock() + self.spin_s
        while not poll(0) and clock() < deadline:
            pass

    def recv_command(self, comm: int) -> str:
        if not self.available:
            return self.mdi.MDI_Recv_Command(comm)
        if self._poll is not None:
            self._spin()
        if self._recv_command(self._cmd_addr, comm) != 0:
            raise MDIError("MDI_Recv_Command failed")
        cmd = self._cmd.value.decode("utf-8")
        if cmd == "EXIT" and hasattr(self._mod, "delete_code_state"):
            self._mod.delete_code_state(comm)   # what pymdi's MDI_Recv_Command does on EXIT
        return cmd

    def recv_doubles(self, count: int, comm: int):
        """``count`` float64 values into a new array."""
        buf = np.empty(count, dtype=np.float64)
        if not self.available:
            self.mdi.MDI_Recv(count, self.mdi.MDI_DOUBLE, comm, buf=buf)
        elif self._recv(buf.__array_interface__["data"][0], count, self._double, comm) != 0:
            raise MDIError(f"MDI_Recv of {count} doubles failed")
        return buf

    def send_doubles(self, arr, count: int, comm: int):
        """Send ``arr``, a C-contiguous float64 array of ``count`` values."""
        arr = np.ascontiguousarray(arr, dtype=np.float64)   # the same array when it is one already
        if arr.size < count:
            raise MDIError(f"MDI_Send of {count} doubles from an array of {arr.size}")
        if not self.available:
            self.mdi.MDI_Send(arr, count, self.mdi.MDI_DOUBLE, comm)
        elif self._send(arr.__array_interface__["data"][0], count, self._double, comm) != 0:
            raise MDIError(f"MDI_Send of {count} doubles failed")


def import_mdi():
    """Import pymdi with a clear error if it is missing."""
    try:
        import mdi  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        raise MDIError("the MDI library is missing: pip install pymdi") from exc
    return mdi


def check_port_free(port: int, option: str = "", host: str = "") -> None:
    """Raise :class:`UserInputError` ("port N is already in use") unless one could listen on TCP
    ``port`` of ``host`` (default "": every interface, as MDI's driver does). MDI itself only prints
    "Could not bind socket" and carries on, which surfaced later as a lost engine. ``option`` (e.g.
    ``--engine-port``), if given, is named in the message."""
    import errno

    given = f" (given by {option})" if option else ""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as MDI: a TIME_WAIT leftover is no conflict
        try:
            s.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserInputError(f"port {port} is already in use{given}; stop whatever listens there "
                                     "or choose another port") from exc
            raise UserInputError(f"cannot listen on {host or '*'}:{port}{given}: {exc.strerror or exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host`` (for starting a driver + engine pair)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
