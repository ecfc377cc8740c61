"""One model process serving many clients, with their evaluations batched (no MDI here).

A λ-window run has one MDI engine per window. Loading the model in every engine wastes
memory, and evaluating one small molecule per model call wastes most of a GPU. With a
model server the engines hold no model: each forwards its structure to the server
(:class:`SharedModelClient`, model spec ``server:INFO.json``), and the server evaluates
all structures that are waiting in **one** ``compute_batch`` call.

Batching rule: a batch is evaluated as soon as every connected client has a request
waiting, or ``max_wait_ms`` after the first request of the batch arrived, whichever
comes first. Clients evaluate one structure at a time, so λ windows fall into step:
every MD step of all running windows becomes one model call. The wait must exceed the
clients' differences in MM time per step (else each request goes alone); a client that
does no ML for a while (start-up) delays the others by at most ``max_wait_ms`` per step. Requests for different molecules (element
lists) or with/without a cell go to separate model calls within the same round.

Wire: :mod:`multiprocessing.connection` over TCP with an HMAC-authenticated handshake;
the address and the random key are in the server's info file (mode 0600), which is
what clients are given. Units are those of :class:`~.base.Potential`: Å, Hartree,
Hartree/Å.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import threading
import time
from collections import Counter
from multiprocessing.connection import Client, Listener, wait
from pathlib import Path
from typing import Optional

import numpy as np

from .. import files
from ..errors import MdiMlmmError, ModelError, PeerDisconnected, UserInputError
from .base import Potential, Result

log = logging.getLogger("mdi_mlmm.model_server")


class ModelServer:
    """Serve ``potential`` to :class:`SharedModelClient` connections, batching their calls.

    host/port: where to listen (port 0: any free port); max_wait_ms: the longest a request
    waits for others to join its batch; max_batch: most structures per model call.
    """

    def __init__(self, potential: Potential, *, host: str = "127.0.0.1", port: int = 0,
                 max_wait_ms: float = 100.0, max_batch: int = 64):
        self.potential = potential
        self.max_wait = max(0.0, float(max_wait_ms)) / 1e3
        self.max_batch = max(1, int(max_batch))
        self._key = secrets.token_bytes(32)
        try:
            self.listener = Listener((host, int(port)), family="AF_INET", authkey=self._key)
        except OSError as exc:
            raise UserInputError(f"model server cannot listen on {host}:{port}: {exc}") from exc
        self.address = self.listener.address
        self._new: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.stats = {"requests": 0, "structures": 0, "model_calls": 0, "model_s": 0.0,
                      "batch_sizes": Counter(), "clients": 0}

    # ------------------------------------------------------------------ setup
    def write_info(self, path) -> Path:
        """Write the address and key clients need (JSON, mode 0600, atomic); returns the path."""
        return files.write_json(path, {"address": list(self.address), "authkey": self._key.hex(), "pid": os.getpid(),
                                       "model": self.potential.describe()}, perms=0o600)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn = self.listener.accept()
            except Exception as exc:  # a client that fails the handshake must not stop the server
                if self._stop.is_set():
                    return
                log.warning("rejected a connection: %s", exc)
                continue
            with self._lock:
                self._new.append(conn)

    def stop(self, *_):
        self._stop.set()

    # ------------------------------------------------------------------- loop
    def serve_forever(self, *, parent_pid: Optional[int] = None, report_every_s: float = 60.0) -> dict:
        """Answer clients until :meth:`stop` (or SIGTERM/SIGINT, or ``parent_pid`` exits); returns stats."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        threading.Thread(target=self._accept_loop, name="accept", daemon=True).start()
        log.info("model server on %s:%d serving %s (max wait %.1f ms, max batch %d)", *self.address,
                 self.potential.describe(), self.max_wait * 1e3, self.max_batch)
        conns: list = []
        pending: list = []          # (conn, symbols, positions (B,N,3), cells or None)
        first_at = 0.0
        last_report = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                if self._new:
                    conns += self._new
                    self.stats["clients"] += len(self._new)
                    self._new.clear()
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("parent process %d is gone: stopping", parent_pid)
                break
            waiting = {id(p[0]) for p in pending}
            idle = [c for c in conns if id(c) not in waiting]
            if pending:
                timeout = max(0.0, first_at + self.max_wait - time.monotonic())
            else:
                timeout = 0.05
            ready = wait(idle, timeout=timeout) if idle else (time.sleep(timeout) or [])
            for c in ready:
                try:
                    msg = c.recv()
                except (EOFError, OSError):
                    conns.remove(c)
                    c.close()
                    continue
                req = self._handle(c, msg)
                if req is not None:
                    if not pending:
                        first_at = time.monotonic()
                    pending.append(req)
            if pending:
                nstruct = sum(len(p[2]) for p in pending)
                everyone = len(pending) >= len(conns)
                if everyone or nstruct >= self.max_batch or time.monotonic() - first_at >= self.max_wait:
                    self._run(pending)
                    pending = []
            if time.monotonic() - last_report > report_every_s:
                last_report = time.monotonic()
                log.info("%s", self.summary())
        for c in conns:
            c.close()
        self.listener.close()
        log.info("stopping: %s", self.summary())
        return self.stats

    def _handle(self, conn, msg):
        """Answer a non-compute message now; return a compute request to batch, or None."""
        try:
            kind = msg[0]
            if kind == "compute":
                _, symbols, positions, cells = msg
                return conn, tuple(symbols), np.asarray(positions, dtype=np.float64), cells
            if kind == "hello":
                p = self.potential
                conn.send(("ok", {"name": p.name, "supported_elements": list(p.supported_elements),
                                  "accepts_charge": bool(getattr(p, "accepts_charge", False)),
                                  "describe": p.describe()}))
            elif kind == "stats":
                conn.send(("ok", self.stats_dict()))
            else:
                conn.send(("error", "UserInputError", f"unknown request {kind!r}"))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("bad request dropped: %s", exc)
        return None

    def _run(self, pending):
        """Evaluate pending requests: one model call per (molecule, periodic?) group."""
        groups: dict = {}
        for req in pending:
            groups.setdefault((req[1], req[3] is None), []).append(req)
        self.stats["requests"] += len(pending)
        chunks = []
        for (symbols, _), reqs in groups.items():
            chunk: list = []
            for r in reqs:  # at most max_batch structures per call (a larger single request goes alone)
                if chunk and sum(len(c[2]) for c in chunk) + len(r[2]) > self.max_batch:
                    chunks.append((symbols, chunk))
                    chunk = []
                chunk.append(r)
            chunks.append((symbols, chunk))
        for symbols, reqs in chunks:
            pos = np.concatenate([r[2] for r in reqs])
            cells = None if reqs[0][3] is None else np.concatenate([np.asarray(r[3], float) for r in reqs])
            t0 = time.perf_counter()
            try:
                res = self.potential.compute_batch(list(symbols), pos, cells)
                replies = []
                k = 0
                for r in reqs:
                    b = len(r[2])
                    replies.append(("ok", res.energy[k:k + b], res.forces[k:k + b]))
                    k += b
            except MdiMlmmError as exc:
                if len(reqs) > 1:   # find out whose structure it was: evaluate one by one
                    self.stats["requests"] -= len(reqs)
                    for r in reqs:
                        self._run([r])
                    continue
                replies = [("error", type(exc).__name__, str(exc))]
            self.stats["model_s"] += time.perf_counter() - t0
            self.stats["model_calls"] += 1
            self.stats["structures"] += len(pos)
            self.stats["batch_sizes"][len(pos)] += 1
            for r, reply in zip(reqs, replies):
                try:
                    r[0].send(reply)
                except OSError:
                    pass  # that client is gone; its connection is dropped on the next read

    def stats_dict(self) -> dict:
        s = dict(self.stats)
        s["batch_sizes"] = {str(k): v for k, v in sorted(self.stats["batch_sizes"].items())}
        s["mean_batch"] = self.stats["structures"] / max(1, self.stats["model_calls"])
        return s

    def summary(self) -> str:
        s = self.stats_dict()
        return (f"{s['structures']} structures in {s['model_calls']} model calls (mean batch {s['mean_batch']:.2f}), "
                f"{s['model_s']:.1f} s in the model, {s['clients']} client connections so far")


class SharedModelClient(Potential):
    """A :class:`~.base.Potential` whose evaluations run in a :class:`ModelServer`.

    info_file: the JSON the server wrote (``mdi-mlmm model-server --info FILE``).
    A server that goes away raises :class:`~mdi_mlmm.errors.PeerDisconnected`.
    """

    def __init__(self, info_file, connect_timeout: float = 30.0):
        self.info_file = Path(info_file)
        try:
            info = json.loads(self.info_file.read_text())
            host, port = info["address"]
            key = bytes.fromhex(info["authkey"])
        except FileNotFoundError as exc:
            raise UserInputError(f"model server info file {self.info_file} not found "
                                 f"(start one with: mdi-mlmm model-server --info {self.info_file})") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"{self.info_file} is not a model server info file: {exc}") from exc
        self.where = f"{host}:{port}"
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.conn = Client((host, int(port)), family="AF_INET", authkey=key)
                break
            except ConnectionRefusedError as exc:
                if time.monotonic() > deadline:
                    raise PeerDisconnected(f"no model server answers at {self.where} ({self.info_file})") from exc
                time.sleep(0.2)
            except Exception as exc:  # AuthenticationError and friends
                raise ModelError(f"could not connect to the model server at {self.where}: {exc}") from exc
        hello = self._ask(("hello",))
        self.name = f"{hello['name']}@server"
        self.supported_elements = tuple(hello["supported_elements"])
        self.accepts_charge = hello["accepts_charge"]
        self._describe = hello["describe"]

    def _ask(self, msg):
        try:
            self.conn.send(msg)
            reply = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise PeerDisconnected(f"the model server at {self.where} went away ({self.info_file})") from exc
        if reply[0] == "error":
            raise ModelError(f"model server: {reply[2]}")
        return reply[1] if len(reply) == 2 else reply[1:]

    def _evaluate(self, symbols, positions, cells) -> Result:
        energy, forces = self._ask(("compute", list(symbols), positions, cells))
        return Result(energy=np.asarray(energy, dtype=np.float64), forces=np.asarray(forces, dtype=np.float64))

    def server_stats(self) -> dict:
        return self._ask(("stats",))

    def close(self):
        self.conn.close()

    def describe(self) -> str:
        return f"{self._describe} via the model server at {self.where}"


def start_server_process(model: str, info_file, log_file, *, extra=(), timeout: float = 300.0):
    """Start ``mdi-mlmm model-server`` as a child process; return it once its info file exists.

    The child exits when this process does (``--exit-with-parent``) and is registered with
    :mod:`mdi_mlmm.processes` (stopped on SIGTERM/SIGINT after its clients). Raises
    :class:`ModelError` with the end of its log if it dies or is not ready in ``timeout`` s.
    """
    import sys

    info_file, log_file = Path(info_file), Path(log_file)
    info_file.unlink(missing_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mdi_mlmm", "model-server", "--model", model, "--info", str(info_file),
           "--exit-with-parent", *extra]
    from .. import processes

    # stopped after the processes that use it (stop_order 1) when we stop on a signal
    proc = processes.start_logged(cmd, log_file, append=True, stop_order=1)
    deadline = time.monotonic() + timeout
    while not info_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            processes.stop([proc], grace=0)
            tail = " | ".join(ln for ln in log_file.read_text(errors="replace").splitlines()[-3:] if ln.strip())
            raise ModelError(f"the model server did not start (see {log_file}): {tail}")
        time.sleep(0.1)
    return proc


def stop_server_process(proc, timeout: float = 10.0):
    """SIGTERM, then SIGKILL after ``timeout`` s (:func:`mdi_mlmm.processes.stop`)."""
    from .. import processes

    if proc is not None:
        processes.stop([proc], grace=timeout)
