"""Child processes that do not outlive us: the one helper to start, wait for and stop them.

Every child is registered here. Children stay in our process group unless asked otherwise
(``start_new_session=True``), so ``kill -KILL -PGID`` still reaches all of them. With
:func:`stop_on_signals` active, SIGTERM/SIGINT become :class:`~mdi_mlmm.errors.Interrupted`
in the main thread; on the way out every registered child still running is stopped:

1. SIGTERM to the child (to its process group if it leads one): ``gmx mdrun`` writes a
   checkpoint and exits, our own Python children (window tasks, engines, the model server)
   run their cleanup, which stops *their* children the same way;
2. after ``grace`` seconds, SIGKILL to the child (its group) and to every process that was
   below it (collected from ``/proc`` before the first signal, so grandchildren in
   sessions of their own are not orphaned either).

A second signal during that cleanup shortens every remaining grace period to nothing.
Times in seconds.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Mapping, Optional, Sequence

from .errors import Interrupted, MdiMlmmError

#: how long a child gets between SIGTERM and SIGKILL (s); env ``MDI_MLMM_STOP_GRACE``
GRACE_S = float(os.environ.get("MDI_MLMM_STOP_GRACE", "20"))

_children: set = set()
_lock = threading.Lock()
_stopping = threading.Event()   # a signal arrived: start nothing new
_hurry = threading.Event()      # a second signal arrived: no more grace
_signalled = [0]                # the stop signal's number
_in_stop = [0]                  # the main thread is inside stop(): a signal does not interrupt it
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_in_start = [False]             # the main thread is inside start(): a signal is deferred ...
_deferred: list = []            # ... to here, and raised once the child is registered


def start(cmd: Sequence, *, grace: Optional[float] = None, stop_order: int = 0, **popen_kw) -> subprocess.Popen:
    """``subprocess.Popen(cmd, **popen_kw)``, registered for :func:`stop_all`.

    grace: what :func:`stop` gives this child between SIGTERM and SIGKILL unless told otherwise
    (a child that stops children of its own needs more than they do); stop_order: :func:`stop_all`
    stops children of a higher order only once those of lower orders have ended (a server the
    others need while they stop: 1).

    Raises :class:`Interrupted` instead of starting anything once a stop signal has arrived.
    """
    # a signal arriving between the fork and the registration must not lose the child: the
    # handler defers to the end of this block (blocking the signals instead would be inherited)
    main = threading.current_thread() is threading.main_thread()
    if main:
        _in_start[0] = True
    try:
        with _lock:
            if _stopping.is_set():
                raise Interrupted(signal.SIGTERM, "not starting a new process: stopping on a signal")
            proc = subprocess.Popen([str(c) for c in cmd], **popen_kw)
            proc.stop_grace = GRACE_S if grace is None else float(grace)
            proc.stop_order = int(stop_order)
            _children.add(proc)
    finally:
        if main:
            _in_start[0] = False
    if main and _deferred:
        raise Interrupted(_deferred.pop())
    return proc


def run(cmd: Sequence, *, input=None, capture_output: bool = False, timeout: Optional[float] = None,
        grace: Optional[float] = None, **popen_kw) -> subprocess.CompletedProcess:
    """Like ``subprocess.run`` (``input``, ``capture_output``, ``text``, ``cwd``, ``env``, ``timeout``...),
    but the child is registered and, if the wait is cut short (timeout, :class:`Interrupted`, any
    exception), it is stopped with :func:`stop` (SIGTERM first) before the exception goes on."""
    if input is not None:
        popen_kw["stdin"] = subprocess.PIPE
    if capture_output:
        popen_kw["stdout"] = popen_kw["stderr"] = subprocess.PIPE
    proc = start(cmd, grace=grace, **popen_kw)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException:
        stop([proc])
        raise
    finally:
        if proc.poll() is not None:   # else (a stop cut short) stop_all still sees it
            forget(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def start_logged(cmd: Sequence, log_path=None, *, append: bool = False, **popen_kw) -> subprocess.Popen:
    """:func:`start` a long-lived child (an ML engine, a model server) with stdout and stderr in
    ``log_path`` (discarded when None) and stdin closed; other keywords as for :func:`start`."""
    popen_kw.setdefault("stdin", subprocess.DEVNULL)
    if log_path is None:
        return start(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **popen_kw)
    with open(log_path, "a" if append else "w") as fh:   # the child keeps its own descriptor
        return start(cmd, stdout=fh, stderr=subprocess.STDOUT, **popen_kw)


def _tail(r: subprocess.CompletedProcess, n: int = 25) -> str:
    return "\n".join(((r.stdout or "") + (r.stderr or "")).strip().splitlines()[-n:]) or "(no output)"


def run_checked(cmd: Sequence, *, what: Optional[str] = None, error: type = MdiMlmmError,
                explain: Optional[Callable[[subprocess.CompletedProcess], str]] = None, cwd=None, input=None,
                timeout: Optional[float] = None, env=None, show_cwd: bool = False,
                **popen_kw) -> subprocess.CompletedProcess:
    """:func:`run` with text output captured; a non-zero exit raises ``error`` (a typed
    :class:`~mdi_mlmm.errors.MdiMlmmError`) as ``WHAT failed (exit N)[ in CWD]:`` and the reason,
    ``explain(completed)`` (default: the last 25 lines of output). what: default the command line."""
    cmd = [str(c) for c in cmd]
    r = run(cmd, cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout,
            env=dict(env) if env else None, **popen_kw)
    if r.returncode != 0:
        where = f" in {cwd}" if show_cwd else ""
        raise error(f"{what or ' '.join(cmd)} failed (exit {r.returncode}){where}:\n{(explain or _tail)(r)}")
    return r


def omp_env(cmd: Sequence, env: Optional[Mapping[str, str]] = None) -> Optional[dict]:
    """The environment for a command with ``-ntomp N`` (gmx mdrun): OMP_NUM_THREADS = N, since mdrun
    refuses to run when a different OMP_NUM_THREADS is exported (batch systems and many shells do).
    Other commands get ``env`` unchanged (None: inherit)."""
    args = [str(c) for c in cmd]
    if "-ntomp" not in args[:-1]:
        return dict(env) if env is not None else None
    out = dict(os.environ if env is None else env)
    out["OMP_NUM_THREADS"] = args[args.index("-ntomp") + 1]
    return out


def forget(proc: subprocess.Popen):
    """Drop ``proc`` from the registry (it has ended, or its owner stops it)."""
    with _lock:
        _children.discard(proc)


def children() -> list:
    """Registered children that are still running."""
    with _lock:
        return [p for p in _children if p.poll() is None]


def _start_time(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (Linux ``/proc``): {pid: start time}, for a later safe kill."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    parent[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out: dict[int, str] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in out:
                st = _start_time(c)
                if st is not None:
                    out[c] = st
                    todo.append(c)
    return out


def _signal_group(proc: subprocess.Popen, sig: int):
    if proc.poll() is not None:
        return
    try:
        if os.getpgid(proc.pid) == proc.pid:   # its own group: reach whatever it started without us
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_listed(tree: dict[int, str]):
    for pid, st in tree.items():
        if _start_time(pid) == st:   # the same process, not a new one that got its pid
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def stop(procs: Iterable[subprocess.Popen], grace: Optional[float] = None):
    """Stop ``procs`` together: SIGTERM (to each one's group), wait up to ``grace`` s
    (default: each one's own, see :func:`start`, else :data:`GRACE_S`), then SIGKILL each
    one's group and everything that was below it. Processes below that are still alive once
    their parent ended are killed too. Returns once every one of ``procs`` has been reaped."""
    procs = [p for p in procs if p is not None]
    with shielded():   # no Interrupted from a signal handler in the middle of this
        _stop(procs, grace)


@contextmanager
def shielded():
    """A block (of stopping work) that a stop signal does not interrupt: in the main thread the
    signal handler returns instead of raising; a further signal only sets :func:`hurrying`."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        _in_stop[0] += 1
    try:
        yield
    finally:
        if main:
            _in_stop[0] -= 1


def hurrying() -> bool:
    """Whether a second stop signal asked to skip the remaining grace periods."""
    return _hurry.is_set()


def _stop(procs, grace):
    trees = {p: descendants(p.pid) for p in procs if p.poll() is None}
    for p in trees:
        _signal_group(p, signal.SIGTERM)
        _signal_group(p, signal.SIGCONT)   # a stopped (hung) process gets its SIGTERM only when continued
    t0 = time.monotonic()
    for p in trees:
        g = grace if grace is not None else getattr(p, "stop_grace", GRACE_S)
        while p.poll() is None and time.monotonic() < t0 + g and not _hurry.is_set():
            try:
                p.wait(0.1)
            except subprocess.TimeoutExpired:
                pass
        if p.poll() is None:
            trees[p].update(descendants(p.pid))
            _signal_group(p, signal.SIGKILL)
            p.wait()
    for p, tree in trees.items():
        # a well-behaved child stopped its own children; whatever is left was orphaned
        _kill_listed(tree)
    for p in procs:
        if p.poll() is None:
            p.wait()
        forget(p)


def stop_all(grace: Optional[float] = None):
    """:func:`stop` every registered child that is still running, lowest ``stop_order`` first."""
    running = children()
    for order in sorted({p.stop_order for p in running}):
        stop([p for p in running if p.stop_order == order], grace)


def stopping() -> bool:
    """Whether a stop signal has arrived (under :func:`stop_on_signals`)."""
    return _stopping.is_set()


@contextmanager
def stop_on_signals(signals: Sequence[int] = _SIGNALS, grace: Optional[float] = None):
    """Within the block, SIGTERM/SIGINT raise :class:`Interrupted` in the main thread and no new
    child starts. On leaving the block, every registered child still running is stopped
    (:func:`stop_all`). Outside the main thread this only does the stopping on exit.

    An exception raised by a signal handler can be swallowed on its way (inside a C callback
    such as LAMMPS's ``fix external``, ctypes prints and drops it), so until it reaches this
    block the signal is re-sent to the main thread every 2 s (it does not interrupt a
    :func:`stop` in progress); once the block is cleaning up, further signals only cut the
    remaining grace periods short. An error that the signal
    caused on its way (a receive cut short...) is reported as the :class:`Interrupted` it is.
    """
    main = threading.current_thread() is threading.main_thread()
    old = {}
    cleaning = threading.Event()
    resender: list = []      # the thread that re-sends the signal
    in_flight = [0]          # re-sent signals not handled yet

    def resend(signum):
        while not cleaning.wait(2.0):
            in_flight[0] += 1
            signal.pthread_kill(threading.main_thread().ident, signum)

    def handler(signum, frame):
        ours = in_flight[0] > 0
        if ours:
            in_flight[0] -= 1
        if cleaning.is_set() or _in_stop[0]:
            if not ours:
                _hurry.set()
            return
        if not _stopping.is_set():
            _stopping.set()
            _signalled[0] = signum
            resender.append(threading.Thread(target=resend, args=(signum,), name="stop-signal", daemon=True))
            resender[0].start()
        if _in_start[0]:   # inside start(): it raises once the child is registered
            _deferred.append(_signalled[0])
            return
        raise Interrupted(_signalled[0])

    if main:
        for s in signals:
            old[s] = signal.signal(s, handler)
    try:
        yield
    except Exception as exc:
        cleaning.set()
        if _signalled[0] and not isinstance(exc, Interrupted):
            raise Interrupted(_signalled[0]) from exc
        raise
    finally:
        cleaning.set()
        try:
            stop_all(grace)
        finally:
            for t in resender:
                t.join()
            for s, h in old.items():
                signal.signal(s, h)
            _stopping.clear()
            _hurry.clear()
            _signalled[0] = 0
