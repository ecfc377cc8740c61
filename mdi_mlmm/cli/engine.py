"""``mdi-mlmm engine``: serve an ML potential as an MDI engine."""
from __future__ import annotations

import logging

from ..errors import UserInputError
from ..potentials.registry import DEFAULT_DTYPE, DTYPES
from ._types import nonneg_int, positive_float, positive_int

log = logging.getLogger("mdi_mlmm.engine")


def add_model_options(p):
    """Model options shared by every command that builds a potential."""
    p.add_argument("--model", default="ani2x",
                   help="ani2x (default) | ani1x | ani1ccx | mace:PATH | zero | harmonic[:k] | server:INFO.json "
                        "(a running mdi-mlmm model-server)")
    p.add_argument("--model-dir", default=None,
                   help="folder holding the ANI model zoo (*.info files); default: $MDI_MLMM_ANI_DIR, "
                        "then ./shared/models/ani-model-zoo and ../shared/models/ani-model-zoo, ...")
    p.add_argument("--member", type=nonneg_int, default=None, help="use one ensemble member (ANI) instead of all 8")
    p.add_argument("--dtype", choices=DTYPES, default=DEFAULT_DTYPE,
                   help="model precision: float32 (default: the same NVE drift and free energies as float64, "
                        "faster; bench/README.md) or float64")
    p.add_argument("--device", default="cpu",
                   help="where the model runs: cpu (default), cuda, cuda:N, or auto (cuda when available)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch threads for the model (default 1: small ML regions run fastest on one core)")


def register(sub):
    p = sub.add_parser("engine", help="run an ML potential as an MDI engine",
                       description="Serve energies and forces of an ML potential over MDI. "
                                   "Start it the MDI way: mdi-mlmm engine --model ani2x "
                                   "-mdi \"-role ENGINE -name ML -method TCP -port 8021 -hostname localhost\"")
    add_model_options(p)
    p.add_argument("--mdi", "-mdi", dest="mdi", required=True, metavar="OPTIONS",
                   help="MDI options, e.g. \"-role ENGINE -name ML -method TCP -port 8021 -hostname localhost\"")
    p.add_argument("--call-log", metavar="CSV", help="write one line per model call: call number, absolute E_ML")
    p.add_argument("--elements", help="comma-separated element symbols preset for drivers that never send >ELEMENTS")
    p.add_argument("--charges", help="comma-separated MM charges (e) of the ML atoms, answered to <CHARGES")
    p.add_argument("--connect-timeout", type=positive_float, default=120.0,
                   help="give up if no driver accepts the connection within this many seconds (default 120)")
    p.add_argument("--no-tcp-nodelay", action="store_true",
                   help="leave Nagle's algorithm on (only to measure what the latency fix saves)")
    add_mix_options(p)
    p.set_defaults(func=run)


def add_mix_options(p):
    """The λ-mixed solute of the endpoint route: E = λ·E_ML + (1 − λ)·E_MM,intra (potentials/mixed.py)."""
    g = p.add_argument_group("λ-mixed solute (endpoint route)")
    g.add_argument("--mix-lambda", type=float, default=None, metavar="L",
                   help="serve L*E_ML + (1-L)*E_MM,intra of the solute (0: force field, 1: ML); needs --mm-intra-top")
    g.add_argument("--mm-intra-top", metavar="TOP",
                   help="GROMACS topology giving the solute's force field (a gas-phase topol.top, or with "
                        "--mm-intra-molecule a solvated one); its molecule must be the ML region, in order")
    g.add_argument("--mm-intra-molecule", metavar="NAME", default=None,
                   help="the solute's [ moleculetype ] in --mm-intra-top (default: the topology's only molecule)")


def load_from_args(args):
    from ..potentials import load_potential

    lam, top = getattr(args, "mix_lambda", None), getattr(args, "mm_intra_top", None)
    if (lam is None) != (top is None):
        raise UserInputError("--mix-lambda and --mm-intra-top go together")
    if lam is not None:
        from ..potentials.mixed import check_lambda

        check_lambda(lam)  # before a model is loaded
    potential = load_potential(args.model, model_dir=args.model_dir, member=args.member, dtype=args.dtype,
                               threads=args.threads, device=args.device)
    if lam is None:
        return potential
    from ..potentials.mixed import mixed_potential

    return mixed_potential(potential, lam, top, moleculetype=args.mm_intra_molecule)


def run(args) -> int:
    from ..engine.server import MLEngine
    from ..potentials.base import ATOMIC_NUMBER, to_symbols

    potential = load_from_args(args)
    elements = None
    if args.elements:
        elements = [ATOMIC_NUMBER[s] for s in to_symbols(args.elements.split(","))]
        potential.check_elements(to_symbols(args.elements.split(",")))
    charges = None
    if args.charges:
        try:
            charges = [float(x) for x in args.charges.split(",")]
        except ValueError as exc:
            raise UserInputError(f"--charges must be comma-separated numbers: {exc}") from exc
    engine = MLEngine(potential, call_log=args.call_log, elements=elements, charges=charges)
    return engine.serve(args.mdi, connect_timeout=args.connect_timeout, nodelay=not args.no_tcp_nodelay)
