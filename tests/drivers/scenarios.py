"""A stand-alone MDI driver that replays command sequences against our engine.

Run as its own process (MDI can be initialised once per process):
    python tests/drivers/scenarios.py SCENARIO --port P --out result.json

It listens on P, accepts one engine, plays SCENARIO and writes what it received
(atomic units, as on the wire) to result.json. The sequences of ``fix_mdi_qm`` and
``fix_mdi_qmmm_potential`` follow what LAMMPS' fix mdi/qm and fix mdi/qmmm
(potential mode) send: command checks, >NATOMS, >CELL_DISPL, >CELL, >ELEMENTS,
then per step >COORDS [>POTENTIAL_AT_NUCLEI] <PE <KE_ELEC <FORCES [<CHARGES] <STRESS.
"""
import argparse
import json
import sys
import time

import mdi
import numpy as np

ANG = 1.0 / 0.529177210903

WATER = (np.array([8, 1, 1]), np.array([[0, 0, 0], [0.9572, 0, 0], [-0.2399872, 0.9266272, 0]]))
ETHANOL = (np.array([6, 6, 8, 1, 1, 1, 1, 1, 1]),
           np.array([[-0.0472, -0.5736, 0.0], [1.2160, 0.2785, 0.0], [2.3584, -0.5761, 0.0],
                     [-0.0727, -1.2286, 0.8861], [-0.0727, -1.2286, -0.8861], [-0.9377, 0.0553, 0.0],
                     [1.2305, 0.9350, 0.8866], [1.2305, 0.9350, -0.8866], [3.1665, -0.0411, 0.0]]))


def cmd(c, comm):
    mdi.MDI_Send_Command(c, comm)


def send(arr, dtype, comm):
    arr = np.ascontiguousarray(arr, dtype=np.int32 if dtype == mdi.MDI_INT else np.float64).ravel()
    mdi.MDI_Send(arr, len(arr), dtype, comm)


def recv(n, dtype, comm):
    if dtype == mdi.MDI_CHAR:
        return mdi.MDI_Recv(n, dtype, comm)
    buf = np.zeros(n, dtype=np.int32 if dtype == mdi.MDI_INT else np.float64)
    mdi.MDI_Recv(n, dtype, comm, buf=buf)
    return buf


def exists(c, comm):
    return bool(mdi.MDI_Check_Command_Exists("@DEFAULT", c, comm))


def setup(comm, z, cell_bohr=None, displ_bohr=None):
    cmd(">NATOMS", comm); send([len(z)], mdi.MDI_INT, comm)
    if cell_bohr is not None:
        if displ_bohr is not None:
            cmd(">CELL_DISPL", comm); send(displ_bohr, mdi.MDI_DOUBLE, comm)
        cmd(">CELL", comm); send(cell_bohr, mdi.MDI_DOUBLE, comm)
    cmd(">ELEMENTS", comm); send(z, mdi.MDI_INT, comm)


def energy_forces(comm, n, use_pe=False):
    if use_pe:
        cmd("<PE", comm); e = recv(1, mdi.MDI_DOUBLE, comm)[0]
        cmd("<KE_ELEC", comm); e += recv(1, mdi.MDI_DOUBLE, comm)[0]
    else:
        cmd("<ENERGY", comm); e = recv(1, mdi.MDI_DOUBLE, comm)[0]
    cmd("<FORCES", comm); f = recv(3 * n, mdi.MDI_DOUBLE, comm)
    return float(e), f.tolist()


def err(comm):
    cmd("<ERROR", comm)
    return recv(1024, mdi.MDI_CHAR, comm).strip("\0 ")


def wrapped(pos_A, box_A):
    """Positions shifted so the molecule straddles the box corner, then wrapped into [0, L)."""
    return np.mod(pos_A - pos_A.mean(0), box_A)


def scenario_roundtrip(comm, out):
    box = 20.0
    res = {"name": recv(mdi.MDI_NAME_LENGTH, mdi.MDI_CHAR, comm) if (cmd("<NAME", comm) or True) else None}
    for label, (z, pos) in {"water": WATER, "ethanol": ETHANOL}.items():
        setup(comm, z, cell_bohr=(np.eye(3) * box * ANG).ravel())
        w = wrapped(pos, box)
        cmd(">COORDS", comm); send(w * ANG, mdi.MDI_DOUBLE, comm)
        e, f = energy_forces(comm, len(z))
        # the mdi_mlmm extension: both in one reply (from the same evaluation)
        has_ef = exists("<ENERGY_FORCES", comm)
        cmd("<ENERGY_FORCES", comm); ef = recv(1 + 3 * len(z), mdi.MDI_DOUBLE, comm)
        cmd("<NATOMS", comm); nat = int(recv(1, mdi.MDI_INT, comm)[0])
        cmd("<ELEMENTS", comm); el = recv(len(z), mdi.MDI_INT, comm).tolist()
        cmd("<COORDS", comm); back = recv(3 * len(z), mdi.MDI_DOUBLE, comm)
        cmd("<CELL", comm); cell = recv(9, mdi.MDI_DOUBLE, comm)
        res[label] = {"energy": e, "forces": f, "natoms": nat, "elements": el, "has_energy_forces": has_ef,
                      "energy_forces": ef.tolist(),
                      "coords_back_A": (back / ANG).tolist(), "sent_A": w.tolist(), "cell_bohr": cell.tolist()}
    out.update(res)


def scenario_fix_mdi_qm(comm, out):
    checks = {c: exists(c, comm) for c in (">NATOMS", ">CELL_DISPL", ">ELEMENTS", ">TYPES", "<STRESS", "<PE",
                                           "<KE_ELEC")}
    box = 18.0
    z, pos = ETHANOL
    setup(comm, z, cell_bohr=(np.eye(3) * box * ANG).ravel(), displ_bohr=np.zeros(3))
    steps = []
    for k in range(3):
        x = wrapped(pos + 0.01 * k, box)
        cmd(">COORDS", comm); send(x * ANG, mdi.MDI_DOUBLE, comm)
        e, f = energy_forces(comm, len(z), use_pe=checks["<PE"] and checks["<KE_ELEC"])
        cmd("<STRESS", comm); s = recv(9, mdi.MDI_DOUBLE, comm)
        steps.append({"energy": e, "forces": f, "stress": s.tolist(), "sent_A": x.tolist()})
    out.update({"checks": checks, "steps": steps, "box_A": box})


def scenario_fix_mdi_qmmm_potential(comm, out):
    checks = {c: exists(c, comm) for c in (">NATOMS", ">CELL_DISPL", ">ELEMENTS", ">TYPES", "<STRESS", "<PE",
                                           "<KE_ELEC", ">POTENTIAL_AT_NUCLEI", "<CHARGES", ">NLATTICE",
                                           ">CLATTICE", ">LATTICE", "<LATTICE_FORCES")}
    box = 18.0
    z, pos = ETHANOL
    setup(comm, z, cell_bohr=(np.eye(3) * box * ANG).ravel(), displ_bohr=np.zeros(3))
    x = wrapped(pos, box)
    cmd(">COORDS", comm); send(x * ANG, mdi.MDI_DOUBLE, comm)
    cmd(">POTENTIAL_AT_NUCLEI", comm); send(np.linspace(-0.01, 0.01, len(z)), mdi.MDI_DOUBLE, comm)
    e, f = energy_forces(comm, len(z), use_pe=True)
    cmd("<CHARGES", comm); q = recv(len(z), mdi.MDI_DOUBLE, comm)
    cmd("<STRESS", comm); s = recv(9, mdi.MDI_DOUBLE, comm)
    out.update({"checks": checks, "energy": e, "forces": f, "charges": q.tolist(), "stress": s.tolist(),
                "sent_A": x.tolist(), "box_A": box})


def scenario_bad_values(comm, out):
    z, pos = WATER
    setup(comm, z)
    cmd(">COORDS", comm); send(np.full(9, np.nan), mdi.MDI_DOUBLE, comm)
    e_nan, _ = energy_forces(comm, 3)
    msg_nan = err(comm)
    cmd(">COORDS", comm); send(pos * ANG, mdi.MDI_DOUBLE, comm)
    e_ok, _ = energy_forces(comm, 3)
    msg_ok = err(comm)
    setup(comm, np.array([35, 6, 1, 1, 1]))  # Br: outside ANI-2x
    cmd(">COORDS", comm); send(np.arange(15, dtype=float), mdi.MDI_DOUBLE, comm)
    e_br, _ = energy_forces(comm, 5)
    msg_br = err(comm)
    cmd(">TOTCHARGE", comm); send([1.0], mdi.MDI_DOUBLE, comm)
    msg_q = err(comm)
    out.update({"e_nan": str(e_nan), "msg_nan": msg_nan, "e_ok": e_ok, "msg_ok": msg_ok,
                "e_br": str(e_br), "msg_br": msg_br, "msg_charge": msg_q})


def scenario_wrong_length(comm, out):
    z, pos = WATER
    setup(comm, z)
    cmd(">COORDS", comm); send((pos * ANG).ravel()[:6], mdi.MDI_DOUBLE, comm)  # 6 values, engine expects 9
    out["sent"] = True
    try:
        cmd("<ENERGY", comm)
        recv(1, mdi.MDI_DOUBLE, comm)
        out["driver_saw"] = "reply"
    except Exception as exc:
        out["driver_saw"] = f"error: {exc}"


def scenario_unknown_command(comm, out):
    out["exists"] = exists("<FOO", comm)
    cmd("<FOO", comm)
    try:
        cmd("<NATOMS", comm)
        recv(1, mdi.MDI_INT, comm)
        out["driver_saw"] = "reply"
    except Exception as exc:
        out["driver_saw"] = f"error: {exc}"


def scenario_die(comm, out):
    z, pos = WATER
    setup(comm, z)
    cmd(">COORDS", comm); send(pos * ANG, mdi.MDI_DOUBLE, comm)
    energy_forces(comm, 3)
    print("READY", flush=True)
    time.sleep(600)  # the test kills us here


def scenario_latency(comm, out):
    """Per-exchange cost: >COORDS, <ENERGY, <FORCES for a 20-atom region, N times."""
    n, reps = 20, int(out.pop("reps", 200))
    z = np.ones(n, dtype=int)
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 8, size=(n, 3))
    setup(comm, z)
    for _ in range(10):
        cmd(">COORDS", comm); send(pos * ANG, mdi.MDI_DOUBLE, comm); energy_forces(comm, n)
    t0 = time.perf_counter()
    for k in range(reps):
        cmd(">COORDS", comm); send(pos * ANG, mdi.MDI_DOUBLE, comm); energy_forces(comm, n)
    out["ms_per_exchange"] = (time.perf_counter() - t0) / reps * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--nodelay", choices=["yes", "no"], default="yes")
    ap.add_argument("--reps", type=int, default=200)
    a = ap.parse_args()
    mdi.MDI_Init(f"-role DRIVER -name replay -method TCP -port {a.port}")
    comm = mdi.MDI_Accept_Communicator()
    if a.nodelay == "yes":
        from mdi_mlmm.engine.transport import set_tcp_nodelay
        set_tcp_nodelay()
    out = {"reps": a.reps}
    globals()[f"scenario_{a.scenario}"](comm, out)
    if a.scenario not in ("wrong_length", "unknown_command"):
        cmd("EXIT", comm)
    with open(a.out, "w") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
