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
import time
from pathlib import Path

from .. import processes, progress
from ..errors import MdiMlmmError, WorkflowError
from ..hosts import registry as hosts
from ..protocol.specs import UnitSpec, unit_from_json

#: between SIGTERM and SIGKILL of a unit process (s): it stops mdrun and then its engine first
UNIT_GRACE_S = 2 * processes.GRACE_S + 10
#: a file in a unit's directory that asks its runner to stop it (how a stopped workflow reaches Dask workers)
STOP_NAME = "stop.request"


def execute(spec: UnitSpec) -> dict:
    """Run the unit described by ``spec`` in this process, on its host (:mod:`mdi_mlmm.hosts.registry`)."""
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = getattr(hosts.get(spec.host), hosts.RUNNERS[spec.kind])
    return run(spec, progress.file_writer(out))


def run_in_subprocess(spec: UnitSpec) -> dict:
    """Run ``spec`` in a fresh Python process; raise :class:`WorkflowError` with its last lines on failure.

    Module-level (picklable) so a Dask worker can run it too.
    """
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / "spec.json"
    spec_file.write_text(json.dumps(spec.to_json(), indent=1))
    done = out / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    env = dict(os.environ, OMP_NUM_THREADS="1")
    stop_file = out / STOP_NAME   # removed by the workflow before it submits its units (clear_stop)
    if stop_file.exists():
        raise WorkflowError(f"{spec.describe()} not started: the workflow was stopped")
    stopped = False
    with open(out / "task.log", "a") as log:
        proc = processes.start([sys.executable, "-m", "mdi_mlmm.workflow.task", str(spec_file)], stdout=log,
                               stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL, grace=UNIT_GRACE_S)
        try:
            while True:
                try:
                    proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    if stop_file.exists():   # the workflow was stopped (it cannot signal a Dask worker's child)
                        stopped = True
                        processes.stop([proc], grace=UNIT_GRACE_S)
                        break
        except BaseException:
            processes.stop([proc])
            raise
        finally:
            if proc.poll() is not None:
                processes.forget(proc)
    if stopped:
        raise WorkflowError(f"{spec.describe()} stopped on request (its checkpoint is kept; rerun to resume)")
    if proc.returncode != 0 or not done.exists():
        tail = [ln for ln in (out / "task.log").read_text(errors="replace").splitlines() if ln.strip()][-3:]
        raise WorkflowError(f"{spec.describe()} failed (exit {proc.returncode}); "
                            f"see {out / 'task.log'}: {' | '.join(tail)}")
    return json.loads(done.read_text())


def clear_stop(spec: UnitSpec):
    """Remove a stop request left by an earlier, stopped attempt (before the unit is submitted again)."""
    (Path(spec.out_dir) / STOP_NAME).unlink(missing_ok=True)


def request_stop(spec: UnitSpec):
    """Ask the unit's runner (:func:`run_in_subprocess`, wherever it runs: a Dask worker on another
    machine sharing the file system) to stop its unit process, which stops mdrun/LAMMPS with a
    checkpoint and then its engine. The runner checks every second."""
    out = Path(spec.out_dir)
    if not (out / "done.json").exists():   # a unit not started yet must not start either
        out.mkdir(parents=True, exist_ok=True)
        (out / STOP_NAME).write_text(str(time.time()))


def main(argv=None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    try:
        spec = unit_from_json(json.loads(Path(argv[0]).read_text()))
        with processes.stop_on_signals():
            execute(spec)
    except MdiMlmmError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
