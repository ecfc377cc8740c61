"""``mdi-mlmm demo``: start an engine and drive it with a small built-in driver.

Shows the whole MDI path (engine process, TCP, unit conversion) on water and ethanol
and prints their energies; a smoke test of an installation.
"""
from __future__ import annotations

import time

from ._types import positive_int


def register(sub):
    p = sub.add_parser("demo", help="engine + built-in driver on water and ethanol (installation check)")
    p.add_argument("--model", default="ani2x", help="model spec (default ani2x)")
    p.add_argument("--steps", type=positive_int, default=100, help="coordinate→force exchanges to time (default 100)")
    p.set_defaults(func=run)


WATER = ([8, 1, 1], [[0, 0, 0], [0.9572, 0, 0], [-0.2399872, 0.9266272, 0]])
ETHANOL = ([6, 6, 8, 1, 1, 1, 1, 1, 1],
           [[-0.0472, -0.5736, 0.0], [1.2160, 0.2785, 0.0], [2.3584, -0.5761, 0.0],
            [-0.0727, -1.2286, 0.8861], [-0.0727, -1.2286, -0.8861], [-0.9377, 0.0553, 0.0],
            [1.2305, 0.9350, 0.8866], [1.2305, 0.9350, -0.8866], [3.1665, -0.0411, 0.0]])


def run(args) -> int:
    import numpy as np

    from .. import units
    from ..hosts.driver import start_local_engine
    from ..potentials import check_model_spec

    check_model_spec(args.model)  # here, not as an engine that dies without a word
    conn = start_local_engine(args.model)
    try:
        for label, (z, pos) in (("water", WATER), ("ethanol", ETHANOL)):
            conn.setup(z)
            pos = np.array(pos)
            e, f = conn.compute(pos, np.eye(3) * 30.0)
            t0 = time.perf_counter()
            for k in range(args.steps):
                conn.compute(pos + 1e-4 * k, np.eye(3) * 30.0)
            ms = (time.perf_counter() - t0) / max(args.steps, 1) * 1e3
            print(f"{label:8s} E_ML = {e:.10f} Ha = {e * units.HARTREE_IN_KCAL_PER_MOL:.4f} kcal/mol; "
                  f"max |F| = {np.abs(f).max() * units.HARTREE_IN_KCAL_PER_MOL:.3f} kcal/mol/Å; "
                  f"{ms:.2f} ms per MDI step")
    finally:
        conn.close()
    return 0
