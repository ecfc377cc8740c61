"""Progress: the one module that reports how far a run is.

* :func:`file_writer` / :func:`read_fraction`: a unit of work (a λ window, the gas leg) writes
  ``progress.json`` (steps done / total) at most once a second; the workflow reads it back;
* :class:`Bar`: one bar over many units — a live bar on a terminal, a line every 30 s in a log;
* :class:`MDStatus`: the status line of an MD run (steps, ns/day, total energy, temperature, ETA).

Times in seconds, energies in kcal/mol, temperatures in K.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from . import files

#: the file a unit of work reports its progress in
PROGRESS_FILE = "progress.json"


def file_writer(out_dir, min_interval: float = 1.0) -> Callable[[int, int], None]:
    """``progress(done, total)`` that writes ``out_dir/progress.json`` atomically, at most once per
    ``min_interval`` s (always when ``done >= total``); thread-safe."""
    path = Path(out_dir) / PROGRESS_FILE
    last = [0.0]
    lock = threading.Lock()

    def progress(done: int, total: int):
        with lock:
            now = time.time()
            if now - last[0] < min_interval and done < total:
                return
            last[0] = now
            files.write_json(path, {"done": int(done), "total": int(total), "time": now})

    return progress


def read_fraction(out_dir) -> Optional[float]:
    """The fraction (0..1) ``out_dir/progress.json`` reports; None when there is none (yet)."""
    try:
        p = json.loads((Path(out_dir) / PROGRESS_FILE).read_text())
        return min(1.0, int(p["done"]) / max(1, int(p["total"])))
    except (ValueError, KeyError, TypeError, OSError):
        return None


class Bar:
    """A progress bar over ``total`` units (tqdm): live on a terminal, in a log file one line every
    ``log_every`` s. ``enabled=False`` shows nothing."""

    def __init__(self, total: int, *, desc: str, unit: str = "step", enabled: bool = True, stream=None,
                 log_every: float = 30.0):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            stream = stream or sys.stderr
            tty = hasattr(stream, "isatty") and stream.isatty()
            self.bar = tqdm(total=total, unit=unit, desc=desc, file=stream, dynamic_ncols=tty, smoothing=0.05,
                            mininterval=0.5 if tty else log_every)

    def update_to(self, n: int, postfix: Optional[str] = None):
        """Move to ``n`` units done (never back); ``postfix``: text after the bar."""
        if self.bar is None:
            return
        if postfix is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)  # draws only every mininterval

    def close(self):
        if self.bar is not None:
            self.bar.close()


class MDStatus:
    """The status line of an MD run of ``total_steps`` steps of ``dt_fs`` fs: rewritten in place on a
    terminal, one line per report in a log."""

    def __init__(self, total_steps: int, dt_fs: float, enabled: bool, stream=None):
        self.total = total_steps
        self.dt = dt_fs
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, step: int, etot: float, temp: float, final: bool = False):
        if not self.enabled:
            return
        el = time.perf_counter() - self.t0
        nsday = step * self.dt * 1e-6 / el * 86400 if el > 0 and step > 0 else 0.0
        frac = step / self.total if self.total else 1.0
        bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
        eta = el / frac - el if frac > 0 else float("nan")
        line = (f"[{bar}] {step}/{self.total} steps {step * self.dt / 1000:.3f} ps | {nsday:7.3f} ns/day | "
                f"E_tot {etot:.4f} kcal/mol | T {temp:6.1f} K | ETA {eta:5.0f} s")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
