"""MDI overhead per coordinates→forces exchange, with and without the TCP_NODELAY fix.

A 20-atom region, the zero-force engine (so only communication is timed), a real
TCP connection on loopback between two processes. Each exchange is what our hosts
do every MD step: >COORDS (60 doubles), <ENERGY, <FORCES (60 doubles).

Runs both settings side by side in one run and writes bench/results_mdi_latency.json.
Usage: python bench/bench_mdi_latency.py [--reps 200]
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mdi_mlmm.engine.transport import free_port  # noqa: E402


def measure(nodelay: bool, reps: int) -> float:
    port = free_port()
    out = Path(f"/tmp/mdi_latency_{port}.json")
    drv = subprocess.Popen([sys.executable, str(ROOT / "tests/drivers/scenarios.py"), "latency", "--port",
                            str(port), "--out", str(out), "--nodelay", "yes" if nodelay else "no",
                            "--reps", str(reps)], cwd=ROOT)
    time.sleep(0.3)
    eng_cmd = [sys.executable, "-m", "mdi_mlmm", "engine", "--model", "zero",
               *([] if nodelay else ["--no-tcp-nodelay"]),
               "-mdi", f"-role ENGINE -name ML -method TCP -port {port} -hostname localhost"]
    eng = subprocess.Popen(eng_cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while drv.poll() is None:
        if eng.poll() not in (None, 0):
            drv.kill()
            raise SystemExit(f"engine failed (exit {eng.returncode}): {' '.join(eng_cmd)}")
        time.sleep(0.05)
    eng.wait(60)
    ms = json.loads(out.read_text())["ms_per_exchange"]
    out.unlink()
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    a = ap.parse_args()
    with_fix = measure(True, a.reps)
    without = measure(False, max(20, a.reps // 10))  # each exchange is ~40 ms slower: fewer reps
    res = {"atoms": 20, "reps": a.reps, "ms_per_exchange_with_nodelay": with_fix,
           "ms_per_exchange_without_nodelay": without, "speedup": without / with_fix}
    print(f"MDI exchange (20 atoms, zero engine, loopback TCP):")
    print(f"  with TCP_NODELAY    : {with_fix:8.3f} ms")
    print(f"  without (MDI as is) : {without:8.3f} ms")
    print(f"  ratio               : {without / with_fix:8.1f}x")
    (ROOT / "bench/results_mdi_latency.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
