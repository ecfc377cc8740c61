"""Python time per MD step inside the MDI engine, without sockets (issue 13, item 1).

Drives :class:`mdi_mlmm.engine.server.MLEngine`'s handlers with an in-process stand-in for pymdi
that hands out the same payloads every step, in the GROMACS host's order per step:
``>CELL`` (only when the cell changed; ``--cell-every-step`` for NPT), ``>COORDS``, ``<ENERGY``,
``<FORCES``. What is left is exactly the engine's Python per step: receiving into arrays, unit
conversion, whole-making, the potential's checks, the reply. ``--profile`` adds a cProfile listing.

    python bench/profile_engine_loop.py --model zero --natoms 9 68 --steps 20000
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time

import numpy as np


class FakeMDI:
    MDI_INT, MDI_DOUBLE, MDI_CHAR, MDI_NAME_LENGTH = 1, 2, 0, 256

    def __init__(self, payload):
        self.payload = payload          # what >CELL / >COORDS receive
        self.sent = 0

    def MDI_Recv(self, count, dtype, comm, buf=None):
        data = self.payload[count]
        if buf is None:
            return data.copy()
        buf[:] = data
        return None

    def MDI_Send(self, data, count, dtype, comm):
        self.sent += count


def run(model, natoms, steps, cell_every_step, profile=False):
    from mdi_mlmm.engine.server import COMMANDS, MLEngine
    from mdi_mlmm.potentials import load_potential

    rng = np.random.default_rng(0)
    box = 30.0 / 0.529177210903
    coords = (rng.random((natoms, 3)) * 3.0 / 0.529177210903 + 5.0).ravel()
    cell = (np.eye(3) * box).ravel()
    eng = MLEngine(load_potential(model), elements=[6] * natoms)
    eng.mdi = FakeMDI({3 * natoms: coords, 9: cell})
    eng.comm = 0
    per_step = ([">CELL"] if cell_every_step else []) + [">COORDS", "<ENERGY", "<FORCES"]
    COMMANDS[">CELL"](eng)
    handlers = [COMMANDS[c] for c in per_step]

    def loop(n):
        for _ in range(n):
            for h in handlers:
                h(eng)

    loop(200)
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    loop(steps)
    if prof:
        prof.disable()
    us = (time.perf_counter() - t0) / steps * 1e6
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(14)
    return us


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="zero")
    ap.add_argument("--natoms", type=int, nargs="+", default=[9, 68])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--cell-every-step", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    out = {}
    for n in args.natoms:
        us = run(args.model, n, args.steps, args.cell_every_step, args.profile)
        out[str(n)] = us
        print(f"{args.model} engine, {n} atoms: {us:.1f} us of Python per step "
              f"({'>CELL ' if args.cell_every_step else ''}>COORDS <ENERGY <FORCES)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"settings": vars(args), "us_per_step": out}, fh, indent=1)


if __name__ == "__main__":
    main()
