"""The MDI engine over real TCP sockets, with drivers in other processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm.engine.transport import free_port
from mdi_mlmm.potentials import load_potential
from mdi_mlmm.topology.pbc import make_whole

HERE = Path(__file__).parent
SCEN = HERE / "drivers" / "scenarios.py"
BOHR = 0.529177210903
SYM = {1: "H", 6: "C", 8: "O"}


@lru_cache(maxsize=None)
def ani2x():
    return load_potential("ani2x", dtype="float64")


def start_engine(port, *extra, model="ani2x"):
    cmd = [sys.executable, "-m", "mdi_mlmm", "engine", "--model", model, "--dtype", "float64", *extra,
           "-mdi", f"-role ENGINE -name ML -method TCP -port {port} -hostname localhost"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_pair(tmp_path, scenario, *engine_extra, model="ani2x", driver_extra=(), timeout=120):
    port = free_port()
    out = tmp_path / f"{scenario}.json"
    drv = subprocess.Popen([sys.executable, str(SCEN), scenario, "--port", str(port), "--out", str(out),
                            *driver_extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.3)
    eng = start_engine(port, *engine_extra, model=model)
    t0 = time.time()
    while drv.poll() is None and time.time() - t0 < timeout:
        if eng.poll() is not None and time.time() - t0 > 5:
            break  # engine gone: do not wait for a driver that would block forever
        time.sleep(0.1)
    if drv.poll() is None:
        time.sleep(3)
        drv.kill()
    d_out, _ = drv.communicate(timeout=timeout)
    e_out, _ = eng.communicate(timeout=timeout)
    result = json.loads(out.read_text()) if out.exists() else None
    return result, drv.returncode, d_out, eng.returncode, e_out


def direct(z, pos_A, cell_A=None):
    whole = make_whole(np.asarray(pos_A), cell_A)
    r = ani2x().compute([SYM[int(v)] for v in z], whole)
    return r.energy, r.forces * BOHR, whole  # forces in Hartree/Bohr as on the wire


def test_roundtrip_equals_direct_call(tmp_path):
    res, drc, dout, erc, eout = run_pair(tmp_path, "roundtrip", "--call-log", str(tmp_path / "calls.csv"))
    assert drc == 0 and erc == 0, dout + eout
    assert res["name"] == "ML"
    from tests.drivers.scenarios import ETHANOL, WATER  # noqa: E402
    for label, (z, _) in {"water": WATER, "ethanol": ETHANOL}.items():
        r = res[label]
        e, f, _ = direct(z, np.array(r["sent_A"]), np.eye(3) * 20.0)
        print(f"ANI-2x {label} from the engine: {r['energy']:.10f} Ha (direct {e:.10f})")
        assert abs(r["energy"] - e) <= 1e-10
        np.testing.assert_allclose(np.array(r["forces"]).reshape(-1, 3), f, atol=1e-10)
        assert r["natoms"] == len(z) and r["elements"] == list(z)
        # <ENERGY_FORCES (one round trip): exactly <ENERGY then <FORCES, from the same evaluation
        assert r["has_energy_forces"] and r["energy_forces"] == [r["energy"], *r["forces"]]
        np.testing.assert_allclose(r["coords_back_A"], np.array(r["sent_A"]).ravel(), atol=1e-12)
        np.testing.assert_allclose(np.array(r["cell_bohr"]).reshape(3, 3), np.eye(3) * 20 / BOHR, rtol=1e-14)
    calls = (tmp_path / "calls.csv").read_text().splitlines()
    assert calls[0].startswith("call,natoms,energy_hartree") and len(calls) == 3
    assert abs(float(calls[2].split(",")[2]) - res["ethanol"]["energy"]) < 1e-12


def test_wrapped_molecule_is_made_whole(tmp_path):
    """The ethanol sent above straddles the box corner; the energy is that of the intact molecule."""
    from tests.drivers.scenarios import ETHANOL
    z, pos = ETHANOL
    e_intact = ani2x().compute([SYM[int(v)] for v in z], pos).energy
    wrapped = np.mod(pos - pos.mean(0), 20.0)
    e, _, _ = direct(z, wrapped, np.eye(3) * 20.0)
    assert abs(e - e_intact) < 1e-9


def test_lammps_fix_mdi_qm_sequence(tmp_path):
    res, drc, dout, erc, eout = run_pair(tmp_path, "fix_mdi_qm")
    assert drc == 0 and erc == 0, dout + eout
    assert all(res["checks"][c] for c in (">NATOMS", ">CELL_DISPL", ">ELEMENTS", "<STRESS", "<PE", "<KE_ELEC"))
    assert res["checks"][">TYPES"] is False  # elements are sent instead
    from tests.drivers.scenarios import ETHANOL
    z, _ = ETHANOL
    box = res["box_A"]
    for st in res["steps"]:
        e, f, whole = direct(z, np.array(st["sent_A"]), np.eye(3) * box)
        assert abs(st["energy"] - e) <= 1e-10
        np.testing.assert_allclose(np.array(st["forces"]).reshape(-1, 3), f, atol=1e-10)
        # stress = Σ r⊗f / V in Hartree/Bohr^3 with whole-molecule coordinates
        vir = np.einsum("ia,ib->ab", whole / BOHR, f)
        np.testing.assert_allclose(np.array(st["stress"]).reshape(3, 3), vir / (box / BOHR) ** 3, atol=1e-14)


def test_lammps_fix_mdi_qmmm_potential_sequence(tmp_path):
    charges = [-0.1, 0.1, -0.6, 0.05, 0.05, 0.05, 0.03, 0.03, 0.39]
    res, drc, dout, erc, eout = run_pair(tmp_path, "fix_mdi_qmmm_potential",
                                         "--charges=" + ",".join(map(str, charges)))
    assert drc == 0 and erc == 0, dout + eout
    chk = res["checks"]
    assert chk[">POTENTIAL_AT_NUCLEI"] and chk["<CHARGES"]
    # direct mode (engine-side point-charge electrostatics) is deliberately not offered,
    # so LAMMPS stops with "direct mode not supported" instead of silently dropping ML–MM Coulomb
    assert not any(chk[c] for c in (">NLATTICE", ">CLATTICE", ">LATTICE", "<LATTICE_FORCES"))
    from tests.drivers.scenarios import ETHANOL
    e, f, _ = direct(ETHANOL[0], np.array(res["sent_A"]), np.eye(3) * res["box_A"])
    assert abs(res["energy"] - e) <= 1e-10
    np.testing.assert_allclose(res["charges"], charges)


def test_bad_values_reported_and_session_survives(tmp_path):
    res, drc, dout, erc, eout = run_pair(tmp_path, "bad_values")
    assert drc == 0 and erc == 0, dout + eout
    assert res["e_nan"] == "nan" and "NaN" in res["msg_nan"]
    assert np.isfinite(res["e_ok"]) and res["msg_ok"] == ""
    assert res["e_br"] == "nan" and "Br0" in res["msg_br"] and "supports only H C N O S F Cl" in res["msg_br"]
    assert "cannot take a net charge" in res["msg_charge"]
    assert "NaN/inf" in eout and "Br0" in eout  # clear log lines on the engine side


def test_wrong_length_ends_session_clearly(tmp_path):
    t0 = time.time()
    res, drc, dout, erc, eout = run_pair(tmp_path, "wrong_length", timeout=60)
    assert erc == 3
    assert "expected 9 values" in eout and ">COORDS" in eout
    assert res["driver_saw"].startswith("error")
    assert time.time() - t0 < 30


def test_unknown_command_ends_session_clearly(tmp_path):
    res, drc, dout, erc, eout = run_pair(tmp_path, "unknown_command", timeout=60)
    assert res["exists"] is False
    assert erc == 3 and "unknown MDI command '<FOO'" in eout
    assert res["driver_saw"].startswith("error")


def test_dead_driver_ends_engine_within_seconds(tmp_path):
    port = free_port()
    drv = subprocess.Popen([sys.executable, str(SCEN), "die", "--port", str(port), "--out", str(tmp_path / "x")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.3)
    eng = start_engine(port)
    line = ""
    while "READY" not in line:
        line = drv.stdout.readline()
        assert line or drv.poll() is None
    drv.send_signal(signal.SIGKILL)
    t0 = time.time()
    out, _ = eng.communicate(timeout=30)
    assert time.time() - t0 < 5
    assert eng.returncode == 4 and "disconnected without sending EXIT" in out
    # nothing left listening or connected on that port
    ss = subprocess.run(["ss", "-tan"], capture_output=True, text=True).stdout if _has_ss() else ""
    assert f":{port} " not in ss or "ESTAB" not in "".join(ln for ln in ss.splitlines() if f":{port} " in ln)


def _has_ss():
    from shutil import which
    return which("ss") is not None


def test_no_driver_gives_up_with_clear_message():
    port = free_port()
    t0 = time.time()
    eng = start_engine(port, "--connect-timeout", "3", model="zero")
    out, _ = eng.communicate(timeout=30)
    assert eng.returncode != 0 and "no MDI driver accepted the connection" in out
    assert time.time() - t0 < 15


def test_cli_errors_are_one_line():
    r = subprocess.run([sys.executable, "-m", "mdi_mlmm", "engine", "--model", "ani3x", "-mdi",
                        "-role ENGINE -name ML -method TCP -port 1 -hostname localhost"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: unknown model") and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "mdi_mlmm", "engine", "--model", "zero", "-mdi", "-role ENGINE"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "lack -method" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "mdi_mlmm", "engine", "--model", "ani2x", "--elements", "C,Br",
                        "-mdi", "-role ENGINE -name ML -method TCP -port 1 -hostname localhost"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Br1" in r.stderr and len(r.stderr.strip().splitlines()) == 1



def _run_driver_code(code: str, tmp_path) -> dict:
    """Run ``code`` (a driver script that prints one JSON line last) in a fresh Python process with the
    engine log at tmp_path/eng.log; return that JSON."""
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "eng.log")], capture_output=True, text=True,
                       cwd=HERE.parent, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])

def test_python_driver_client_against_engine(tmp_path):
    """mdi_mlmm.hosts.driver (used by our hosts) against the engine, in a fresh process."""
    code = (
        "import numpy as np, json, sys\n"
        "from mdi_mlmm.hosts.driver import start_local_engine\n"
        "from tests.drivers.scenarios import ETHANOL\n"
        "c = start_local_engine('ani2x', log_path=sys.argv[1], extra=['--dtype', 'float64'])\n"
        "c.setup(ETHANOL[0])\n"
        "e, f = c.compute(ETHANOL[1], np.eye(3) * 25)\n"
        "c.close()\n"
        "print(json.dumps({'e': e, 'f': f.tolist(), 'nodelay': c.nodelay_sockets, 'rc': c.engine_proc.returncode}))\n"
    )
    out = _run_driver_code(code, tmp_path)
    from tests.drivers.scenarios import ETHANOL
    ref = ani2x().compute(["C", "C", "O"] + ["H"] * 6, ETHANOL[1])
    assert abs(out["e"] - ref.energy) < 1e-10
    np.testing.assert_allclose(out["f"], ref.forces, atol=1e-10)
    assert out["nodelay"] >= 1 and out["rc"] == 0


def test_python_driver_reports_dead_engine(tmp_path):
    code = (
        "import numpy as np, os, signal, sys, time\n"
        "from mdi_mlmm.hosts.driver import start_local_engine\n"
        "from mdi_mlmm.errors import PeerDisconnected\n"
        "c = start_local_engine('zero', log_path=sys.argv[1])\n"
        "c.setup([8, 1, 1])\n"
        "c.compute(np.eye(3), None)\n"
        "os.kill(c.engine_proc.pid, signal.SIGKILL); time.sleep(0.5)\n"
        "t = time.time()\n"
        "try:\n"
        "    c.compute(np.eye(3), None)\n"
        "except PeerDisconnected as e:\n"
        "    print('CAUGHT', round(time.time() - t, 2), e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "eng.log")], capture_output=True, text=True,
                       cwd=HERE.parent, timeout=60)
    assert "CAUGHT" in r.stdout, r.stdout + r.stderr
    assert "lost the ML engine" in r.stdout and "exit code -9" in r.stdout
    assert float(r.stdout.split("CAUGHT")[1].split()[0]) < 5


def test_engine_spinning_for_commands_answers_the_same(tmp_path):
    """MDI_MLMM_ENGINE_SPIN_US: the engine polls its socket before blocking for each command (the
    per-step calls go straight into the MDI C library, engine.transport.HotCalls); the answers are
    those of the model called directly, and the engine says it spins."""
    code = (
        "import numpy as np, json, os, sys\n"
        "os.environ['MDI_MLMM_ENGINE_SPIN_US'] = '500'\n"
        "from mdi_mlmm.hosts.driver import start_local_engine\n"
        "from tests.drivers.scenarios import ETHANOL\n"
        "c = start_local_engine('harmonic:0.5', log_path=sys.argv[1])\n"
        "c.setup(ETHANOL[0])\n"
        "out = [c.compute(ETHANOL[1] + 0.01 * k, np.eye(3) * 25) for k in range(3)]\n"
        "c.close()\n"
        "print(json.dumps({'ef': [[e, f.tolist()] for e, f in out], 'rc': c.engine_proc.returncode}))\n"
    )
    out = _run_driver_code(code, tmp_path)
    assert out["rc"] == 0
    from tests.drivers.scenarios import ETHANOL
    pot = load_potential("harmonic:0.5")
    for k, (e, f) in enumerate(out["ef"]):
        ref = pot.compute(["C", "C", "O"] + ["H"] * 6, ETHANOL[1] + 0.01 * k)
        assert abs(e - ref.energy) < 1e-12
        np.testing.assert_allclose(f, ref.forces, atol=1e-12)
    assert "spinning up to 500 us for each next command: on" in (tmp_path / "eng.log").read_text()


def test_hot_calls_fall_back_to_the_module_given():
    """A stand-in for pymdi (no C library under it): HotCalls hands every call to it. Over pymdi
    itself it calls the C library."""
    from mdi_mlmm.engine.transport import HotCalls, import_mdi

    assert HotCalls(import_mdi()).available

    class StandIn:
        MDI_DOUBLE, MDI_COMMAND_LENGTH = 2, 256
        sent = []

        def MDI_Recv_Command(self, comm):
            return "<ENERGY_FORCES"

        def MDI_Recv(self, count, dtype, comm, buf=None):
            buf[:] = np.arange(count)

        def MDI_Send(self, arr, count, dtype, comm):
            self.sent.append(arr[:count].tolist())

    m = StandIn()
    hot = HotCalls(m)
    assert not hot.available
    assert hot.recv_command(0) == "<ENERGY_FORCES"
    assert hot.recv_doubles(3, 0).tolist() == [0.0, 1.0, 2.0]
    hot.send_doubles([1, 2], 2, 0)
    assert m.sent == [[1.0, 2.0]]
