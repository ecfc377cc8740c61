"""Engine start-up (issue 13 item 5, "Engine start-up ≤ 3 s"): launch → ready, CPU and wall.

What is timed, for each kind of engine, ``--repeats`` times:

* **ready**: from launching ``python -m mdi_mlmm engine ... -mdi "-role ENGINE ..."`` (what the hosts
  run) until the engine has connected to the MDI driver and answered its first command (``<NAME``);
  the engine loads its model before it connects, so this is the start-up a host waits for;
* **first E/F**: until the first ``>COORDS <ENERGY <FORCES`` (ethanol) is answered (adds building
  the molecule's kernel, TorchScript, and for a forwarding engine the model server's first call);
* CPU seconds of the engine process (user + system, from ``/proc/PID/stat`` at those moments, so
  they are the engine's alone whatever else the machine runs) beside the wall seconds.

Kinds: ``ani2x`` with an empty weight cache (``cold``: the NeuroChem files are parsed), with the
cache filled (``warm``: the usual start), an engine forwarding to a model server
(``server:INFO.json``: what the hydration workflow's windows run) and the ``zero`` model (the
floor: Python, NumPy, the CLI and pymdi). The model server's own start-up (launch → info file
written) is timed once per run. A phase breakdown (``--phases``: CPU of each import and step in
one process) says where the time goes.

The cache used is a fresh temporary ``MDI_MLMM_CACHE`` (the user's is not touched). Results are
printed and written to bench/results_engine_startup.json.

Usage: python bench/bench_engine_startup.py [--repeats 5] [--dtype float32] [--skip-server]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TICK = os.sysconf("SC_CLK_TCK")
ETHANOL_Z = [6, 6, 8, 1, 1, 1, 1, 1, 1]
ETHANOL_A = [[-0.0472, -0.5736, 0.0], [1.2160, 0.2785, 0.0], [2.3584, -0.5761, 0.0],
             [-0.0727, -1.2286, 0.8861], [-0.0727, -1.2286, -0.8861], [-0.9377, 0.0553, 0.0],
             [1.2305, 0.9350, 0.8866], [1.2305, 0.9350, -0.8866], [3.1665, -0.0411, 0.0]]


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# ------------------------------------------------------------------ the driver (its own process)
def driver(port: int) -> int:
    """Listen on ``port``, print ``listening``, read the engine's pid and launch time (monotonic) from
    stdin, then time <NAME and two energy/force calls; print one JSON line."""
    import mdi
    import numpy as np

    from mdi_mlmm.engine.transport import set_tcp_nodelay

    mdi.MDI_Init(f"-role DRIVER -name startup -method TCP -port {port}")
    print("listening", flush=True)
    pid, t_launch = sys.stdin.readline().split()
    pid, t_launch = int(pid), float(t_launch)
    comm = mdi.MDI_Accept_Communicator()
    set_tcp_nodelay()
    out = {"connected_s": time.monotonic() - t_launch}
    mdi.MDI_Send_Command("<NAME", comm)
    mdi.MDI_Recv(mdi.MDI_NAME_LENGTH, mdi.MDI_CHAR, comm)
    out["ready_s"], out["ready_cpu_s"] = time.monotonic() - t_launch, cpu_of(pid)
    z = np.array(ETHANOL_Z, dtype=np.int32)
    mdi.MDI_Send_Command(">NATOMS", comm)
    mdi.MDI_Send(np.array([len(z)], dtype=np.int32), 1, mdi.MDI_INT, comm)
    mdi.MDI_Send_Command(">ELEMENTS", comm)
    mdi.MDI_Send(z, len(z), mdi.MDI_INT, comm)
    pos = np.array(ETHANOL_A) / 0.529177210903
    for k, label in ((0, "first"), (1, "second")):
        t0 = time.monotonic()
        mdi.MDI_Send_Command(">COORDS", comm)
        mdi.MDI_Send(np.ascontiguousarray(pos + 0.01 * k).ravel(), 3 * len(z), mdi.MDI_DOUBLE, comm)
        e = np.zeros(1)
        f = np.zeros(3 * len(z))
        mdi.MDI_Send_Command("<ENERGY", comm)
        mdi.MDI_Recv(1, mdi.MDI_DOUBLE, comm, buf=e)
        mdi.MDI_Send_Command("<FORCES", comm)
        mdi.MDI_Recv(3 * len(z), mdi.MDI_DOUBLE, comm, buf=f)
        out[f"{label}_call_s"] = time.monotonic() - t0
        if k == 0:
            out["first_ef_s"], out["first_ef_cpu_s"] = time.monotonic() - t_launch, cpu_of(pid)
        out[f"{label}_energy"] = float(e[0])
    mdi.MDI_Send_Command("EXIT", comm)
    print(json.dumps(out), flush=True)
    return 0


# ------------------------------------------------------------------ one timed start
def one_start(model: str, env: dict, extra=()) -> dict:
    from mdi_mlmm.engine.transport import free_port

    port = free_port()
    drv = subprocess.Popen([sys.executable, __file__, "--driver", str(port)], cwd=ROOT, env=env,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if drv.stdout.readline().strip() != "listening":
        raise SystemExit("the driver did not start")
    cmd = [sys.executable, "-m", "mdi_mlmm", "engine", "--model", model, *extra,
           "-mdi", f"-role ENGINE -name ML -method TCP -port {port} -hostname localhost"]
    t_launch = time.monotonic()
    eng = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    drv.stdin.write(f"{eng.pid} {t_launch!r}\n")
    drv.stdin.flush()
    line = drv.stdout.readline()
    _, status, ru = os.wait4(eng.pid, 0)
    eng.returncode = os.waitstatus_to_exitcode(status)
    drv.wait(30)
    if not line.strip() or eng.returncode:
        raise SystemExit(f"engine failed (exit {eng.returncode}): {' '.join(cmd)}\n{eng.stderr.read()[-2000:]}")
    out = json.loads(line)
    out["total_cpu_s"] = ru.ru_utime + ru.ru_stime
    out["max_rss_mb"] = ru.ru_maxrss / 1024
    return out


def start_server(env: dict, info: Path, dtype: str):
    """Start a model server; its launch → info-file wall and its CPU at that moment."""
    cmd = [sys.executable, "-m", "mdi_mlmm", "model-server", "--model", "ani2x", "--dtype", dtype,
           "--info", str(info), "--max-wait-ms", "1"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not info.exists():
        if proc.poll() is not None:
            raise SystemExit(f"model server failed (exit {proc.returncode})")
        time.sleep(0.01)
    return proc, {"ready_s": time.monotonic() - t0, "ready_cpu_s": cpu_of(proc.pid)}


# ------------------------------------------------------------------ phases, in one process
def phases(dtype: str) -> int:
    """CPU seconds of each step of an ANI engine's start, in this process; one JSON line."""
    out = {}

    def step(name, fn):
        c, t = time.process_time(), time.perf_counter()
        r = fn()
        out[name] = {"cpu_s": time.process_time() - c, "wall_s": time.perf_counter() - t}
        return r

    step("import numpy", lambda: __import__("numpy"))
    step("CLI parser (mdi_mlmm.cli.main)", lambda: __import__("mdi_mlmm.cli.main", fromlist=["x"]).build_parser())
    step("import torch", lambda: __import__("torch"))
    from mdi_mlmm.potentials import load_potential

    pot = step("load ani2x (weight cache)", lambda: load_potential("ani2x", dtype=dtype, threads=1))
    step("import mdi (pymdi)", lambda: __import__("mdi"))
    import numpy as np

    sym = ["C", "C", "O", "H", "H", "H", "H", "H", "H"]
    x = np.array(ETHANOL_A)
    step("first E/F (kernel build + TorchScript)", lambda: pot.compute(sym, x))
    step("second E/F (TorchScript optimisation)", lambda: pot.compute(sym, x + 0.01))
    step("third E/F", lambda: pot.compute(sym, x + 0.02))
    out["torchani imported"] = "torchani" in sys.modules
    print(json.dumps(out), flush=True)
    return 0


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--skip-server", action="store_true", help="skip the forwarding engine (no model server)")
    ap.add_argument("--driver", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--phases", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.driver:
        return driver(a.driver)
    if a.phases:
        return phases(a.dtype)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    tmp = Path(tempfile.mkdtemp(prefix="bench_engine_startup_"))
    env = dict(os.environ, MDI_MLMM_CACHE=str(tmp / "cache"), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    dt = ["--dtype", a.dtype, "--threads", "1"]
    runs: dict[str, list] = {"ani2x cold cache": [], "ani2x warm cache": [], "zero model": []}
    for r in range(a.repeats):       # cold and warm alternate so that both see the same load
        cold = dict(env, MDI_MLMM_CACHE=str(tmp / f"cold{r}"))
        runs["ani2x cold cache"].append(one_start("ani2x", cold, dt))
        if r == 0:
            one_start("ani2x", env, dt)   # fills the warm cache (not counted)
        runs["ani2x warm cache"].append(one_start("ani2x", env, dt))
        runs["zero model"].append(one_start("zero", env))
    server = None
    if not a.skip_server:
        info = tmp / "server.json"
        proc, server = start_server(env, info, a.dtype)
        try:
            runs["forwarding engine (server:INFO)"] = [one_start(f"server:{info}", env) for _ in range(a.repeats)]
        finally:
            proc.terminate()
            proc.wait(30)
    ph = subprocess.run([sys.executable, __file__, "--phases", "--dtype", a.dtype], cwd=ROOT, env=env,
                        capture_output=True, text=True, check=True)
    breakdown = json.loads(ph.stdout.strip().splitlines()[-1])
    energies = {k: sorted({round(x["first_energy"], 12) for x in v}) for k, v in runs.items()}
    summary = {}
    for k, v in runs.items():
        summary[k] = {m: med([x[m] for x in v]) for m in
                      ("ready_s", "ready_cpu_s", "first_ef_s", "first_ef_cpu_s", "total_cpu_s", "max_rss_mb")}
    res = {"repeats": a.repeats, "dtype": a.dtype, "load_average_1min": load, "medians": summary,
           "model_server_start": server, "phases_cpu_s": breakdown, "first_energy_by_kind": energies, "runs": runs}
    print(f"engine start-up, ethanol, {a.dtype}, 1 thread, median of {a.repeats} (load average {load:.2f}):")
    print(f"  {'kind':34s} {'ready wall':>10s} {'ready CPU':>10s} {'1st E/F wall':>12s} {'1st E/F CPU':>12s}")
    for k, s in summary.items():
        print(f"  {k:34s} {s['ready_s']:9.2f}s {s['ready_cpu_s']:9.2f}s {s['first_ef_s']:11.2f}s "
              f"{s['first_ef_cpu_s']:11.2f}s")
    if server:
        print(f"  model server (launch → info file): {server['ready_s']:.2f} s wall, "
              f"{server['ready_cpu_s']:.2f} s CPU")
    w, c = summary["ani2x warm cache"], summary["ani2x cold cache"]
    print(f"  cold / warm ready CPU: {c['ready_cpu_s'] / w['ready_cpu_s']:.1f}x")
    print("phases of a warm ANI-2x start (CPU s, one process):")
    for k, v in breakdown.items():
        if isinstance(v, dict):
            print(f"  {k:42s} {v['cpu_s']:6.3f}")
    print(f"  torchani imported with a warm cache: {breakdown['torchani imported']}")
    (ROOT / "bench/results_engine_startup.json").write_text(json.dumps(res, indent=1))
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
