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
from pathlib import Path

from .. import processes, progress
from ..errors import MdiMlmmError, WorkflowError
from ..hosts import registry as hosts
from ..protocol.specs import UnitSpec, unit_from_json

#: between SIGTERM and SIGKILL of a unit process (s): it stops mdrun and then its engine first
UNIT_GRACE_S = 2 * processes.GRACE_S + 10


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
    with open(out / "task.log", "a") as log:
        r = processes.run([sys.executable, "-m", "mdi_mlmm.workflow.task", str(spec_file)], stdout=log,
                          stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL, grace=UNIT_GRACE_S)
    if r.returncode != 0 or not done.exists():
        tail = [ln for ln in (out / "task.log").read_text(errors="replace").splitlines() if ln.strip()][-3:]
        raise WorkflowError(f"{spec.describe()} failed (exit {r.returncode}); "
                            f"see {out / 'task.log'}: {' | '.join(tail)}")
    return json.loads(done.read_text())


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
