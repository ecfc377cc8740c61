"""One model server, several clients: batched evaluations equal direct ones, and failures are clear."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm.errors import PeerDisconnected, UserInputError
from mdi_mlmm.potentials import load_potential
from mdi_mlmm.potentials.shared import start_server_process, stop_server_process

HERE = Path(__file__).parent
SYMBOLS = ["C", "C", "O"] + ["H"] * 6


@lru_cache(maxsize=None)
def ani2x():
    return load_potential("ani2x", dtype="float64")


def ethanol(seed):
    from tests.drivers.scenarios import ETHANOL

    rng = np.random.default_rng(seed)
    return np.asarray(ETHANOL[1]) + rng.normal(0.0, 0.03, (9, 3))


@pytest.fixture
def server(tmp_path):
    info = tmp_path / "server.json"
    proc = start_server_process("ani2x", info, tmp_path / "server.log", extra=("--max-wait-ms", "200", "--dtype", "float64"))
    yield proc, info
    stop_server_process(proc)


def test_clients_are_batched_and_agree_with_direct_calls(server):
    """Three clients in step: one model call of 3 structures per round, numbers as the direct model's."""
    proc, info = server
    clients = [load_potential(f"server:{info}") for _ in range(3)]
    assert clients[0].supported_elements == ani2x().supported_elements
    barrier = threading.Barrier(3)
    results: dict = {}

    def work(k):
        for step in range(4):
            barrier.wait()
            x = ethanol(10 * k + step)
            results[(k, step)] = (x, clients[k].compute(SYMBOLS, x))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 12
    worst = 0.0
    for x, r in results.values():
        ref = ani2x().compute(SYMBOLS, x)
        worst = max(worst, abs(r.energy - ref.energy), float(np.abs(r.forces - ref.forces).max()))
    print(f"max |batched - direct| = {worst:.2e} Ha (Ha/Å)")
    assert worst < 1e-10
    stats = clients[0].server_stats()
    print("server stats:", stats)
    assert stats["structures"] == 12
    assert stats["batch_sizes"].get("3", 0) >= 3   # rounds are batched (a straggler may split one round)
    # a batch of several structures from one client works too
    xs = np.stack([ethanol(100), ethanol(101)])
    rb = clients[1].compute_batch(SYMBOLS, xs)
    assert rb.energy.shape == (2,) and rb.forces.shape == (2, 9, 3)
    assert abs(rb.energy[1] - ani2x().compute(SYMBOLS, xs[1]).energy) < 1e-10


def test_engine_over_mdi_with_server_model(server, tmp_path):
    """The MDI engine started with --model server:INFO answers exactly what the model does."""
    _, info = server
    code = (
        "import numpy as np, json, sys\n"
        "from mdi_mlmm.hosts.driver import start_local_engine\n"
        "from tests.drivers.scenarios import ETHANOL\n"
        "c = start_local_engine('server:' + sys.argv[2], log_path=sys.argv[1])\n"
        "c.setup(ETHANOL[0])\n"
        "e, f = c.compute(ETHANOL[1], np.eye(3) * 25)\n"
        "c.close()\n"
        "print(json.dumps({'e': e, 'f': f.tolist(), 'rc': c.engine_proc.returncode}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "eng.log"), str(info)], capture_output=True,
                       text=True, cwd=HERE.parent, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    from tests.drivers.scenarios import ETHANOL

    ref = ani2x().compute(SYMBOLS, ETHANOL[1])
    assert abs(out["e"] - ref.energy) < 1e-10 and out["rc"] == 0
    np.testing.assert_allclose(out["f"], ref.forces, atol=1e-10)


def test_dead_server_ends_the_run_clearly(server, tmp_path):
    """Server killed mid-run: the engine exits (code 4) naming the model server; the driver says so."""
    proc, info = server
    code = (
        "import numpy as np, os, signal, sys, time\n"
        "from mdi_mlmm.hosts.driver import start_local_engine\n"
        "from mdi_mlmm.errors import PeerDisconnected\n"
        "from tests.drivers.scenarios import ETHANOL\n"
        "c = start_local_engine('server:' + sys.argv[2], log_path=sys.argv[1])\n"
        "c.setup(ETHANOL[0])\n"
        "c.compute(ETHANOL[1], None)\n"
        "os.kill(int(sys.argv[3]), signal.SIGKILL); time.sleep(0.5)\n"
        "t = time.time()\n"
        "try:\n"
        "    c.compute(ETHANOL[1], None)\n"
        "except PeerDisconnected as e:\n"
        "    print('CAUGHT', round(time.time() - t, 2), e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "eng.log"), str(info), str(proc.pid)],
                       capture_output=True, text=True, cwd=HERE.parent, timeout=60)
    assert "CAUGHT" in r.stdout, r.stdout + r.stderr
    assert float(r.stdout.split("CAUGHT")[1].split()[0]) < 5
    assert "model server" in (tmp_path / "eng.log").read_text()
    assert "exit code 4" in r.stdout


def test_client_errors_are_one_line(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        load_potential(f"server:{tmp_path / 'nope.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(UserInputError, match="not a model server info file"):
        load_potential(f"server:{bad}")


def test_server_exits_with_its_parent(tmp_path):
    """A server started with --exit-with-parent does not outlive a killed workflow."""
    info = tmp_path / "s.json"
    code = ("import sys, time\n"
            "from mdi_mlmm.potentials.shared import start_server_process\n"
            "p = start_server_process('zero', sys.argv[1], sys.argv[2])\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code, str(info), str(tmp_path / "s.log")],
                              stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
    pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    t0 = time.time()
    while time.time() - t0 < 10:
        try:  # gone, or a zombie nobody reaps (PID 1 in a container may not)
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                break
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("model server outlived its parent by 10 s")
    with pytest.raises(PeerDisconnected):
        info.write_text(json.dumps({"address": ["127.0.0.1", 1], "authkey": "00"}))
        from mdi_mlmm.potentials.shared import SharedModelClient

        SharedModelClient(info, connect_timeout=0.5)


def _in_step(potential, xs, tmp_path, **server_kw):
    """An in-process server for ``potential``; one client per structure in ``xs``, all asking at once."""
    from mdi_mlmm.potentials.shared import ModelServer, SharedModelClient

    srv = ModelServer(potential, **server_kw)
    info = srv.write_info(tmp_path / "s.json")
    assert (info.stat().st_mode & 0o777) == 0o600
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    clients = [SharedModelClient(info) for _ in xs]
    barrier = threading.Barrier(len(xs))
    out = {}

    def work(k):
        barrier.wait()
        out[k] = clients[k].compute(["O", "H", "H"], xs[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    srv.stop()
    th.join(5)
    assert len(out) == len(xs)
    worst = 0.0
    for k, r in out.items():
        ref = potential.compute(["O", "H", "H"], xs[k])
        worst = max(worst, abs(r.energy - ref.energy), float(np.abs(r.forces - ref.forces).max()))
    return worst, srv.stats_dict()


WATERS = [np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]) + 0.02 * k for k in range(3)]


def test_max_batch_splits_a_round(tmp_path):
    """Three clients in step with --max-batch 2 → one call of 2 and one of 1 (harmonic model)."""
    worst, stats = _in_step(load_potential("harmonic"), WATERS, tmp_path, max_batch=2, max_wait_ms=300)
    assert worst < 1e-15 and stats["batch_sizes"] == {"1": 1, "2": 1}


def test_mace_through_the_server(tmp_path):
    """The test-only MACE model batched by the server equals the direct call."""
    mace = load_potential(f"mace:{HERE / 'data' / 'mace_test_small.model'}", dtype="float64")
    worst, stats = _in_step(mace, WATERS, tmp_path, max_wait_ms=300)
    assert worst < 1e-12 and stats["batch_sizes"] == {"3": 1}
