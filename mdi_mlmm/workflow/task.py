"""Run one unit of a hydration workflow (a λ window or the gas-phase run) in its own process.

MDI can be initialised only once per process, so every unit runs as
``python -m mdi_mlmm.workflow.task SPEC.json``, whether the pool is local threads or a
Dask cluster (whose workers must see the same file system). The unit writes
``progress.json`` (steps done/total) while it runs and ``done.json`` when finished.

SIGTERM/SIGINT to a unit process stops its children (``gmx mdrun`` first, which writes a
checkpoint, then the engine) before it exits with 128 + the signal number; the unit then
resumes from its checkpoint when it is run again (:mod:`mdi_mlmm.processes`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from .. import files, processes
from ..errors import MdiMlmmError, WorkflowError

#: between SIGTERM and SIGKILL of a unit process (s): it stops mdrun and then its engine first
UNIT_GRACE_S = 2 * processes.GRACE_S + 10


def _progress_writer(out_dir: Path):
    """``progress(done, total)`` that writes progress.json at most once a second (thread-safe)."""
    path = out_dir / "progress.json"
    last = [0.0]
    lock = threading.Lock()

    def progress(done: int, total: int):
        with lock:
            now = time.time()
            if now - last[0] < 1.0 and done < total:
                return
            last[0] = now
            files.write_json(path, {"done": int(done), "total": int(total), "time": now})

    return progress


def execute(spec: dict) -> dict:
    """Run the unit described by ``spec`` in this process."""
    out = Path(spec["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    prog = _progress_writer(out)
    host, kind = spec["host"], spec["kind"]
    if host == "gromacs":
        from ..hosts.gromacs import alchemy as gw

        return gw.run_window(spec, prog) if kind == "window" else gw.run_gas(spec, prog)
    if host == "lammps":
        from ..hosts.lammps import alchemy

        common = dict(sample_every=spec["sample_every"], temperature=spec["temperature"], seed=spec["seed"],
                      checkpoint_every=spec.get("checkpoint_every", 1000), engine_model=spec.get("engine_model"),
                      engine_options=spec.get("engine_args", ("--threads", "1")))
        if kind == "window":
            return alchemy.run_window(spec["top"], spec["gro"], spec["ml_indices"], spec["model"], spec["state"],
                                      [tuple(s) for s in spec["schedule"]], spec["steps"], spec["dt_fs"], out,
                                      equil_steps=spec.get("equil_steps", 0),
                                      progress=prog, **common)
        return alchemy.run_gas(spec["top"], spec["gro"], spec["ml_indices"], spec["model"], spec["steps"],
                               spec["dt_fs"], out, **common)
    raise WorkflowError(f"unknown host {host!r}")


def run_in_subprocess(spec: dict) -> dict:
    """Run ``spec`` in a fresh Python process; raise :class:`WorkflowError` with its last lines on failure.

    Module-level (picklable) so a Dask worker can run it too.
    """
    out = Path(spec["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / "spec.json"
    spec_file.write_text(json.dumps(spec, indent=1))
    done = out / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(out / "task.log", "a") as log:
        r = processes.run([sys.executable, "-m", "mdi_mlmm.workflow.task", str(spec_file)], stdout=log,
                          stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL, grace=UNIT_GRACE_S)
    if r.returncode != 0 or not done.exists():
        tail = [ln for ln in (out / "task.log").read_text(errors="replace").splitlines() if ln.strip()][-3:]
        raise WorkflowError(f"{spec['kind']} {spec.get('state', '')} failed (exit {r.returncode}); "
                            f"see {out / 'task.log'}: {' | '.join(tail)}")
    return json.loads(done.read_text())


def main(argv=None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    try:
        with processes.stop_on_signals():
            execute(spec)
    except MdiMlmmError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
