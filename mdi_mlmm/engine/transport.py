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

import logging
import os
import shlex
import socket
import stat
import threading

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
