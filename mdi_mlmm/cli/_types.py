"""Argument types and checks shared by every subcommand.

Each ``type=`` function turns a command-line string into a number or refuses it with
:class:`argparse.ArgumentTypeError`; argparse then names the option, and
:class:`~mdi_mlmm.cli.main.Parser` prints that as one ``error:`` line (exit status 2).
Non-finite floats (``nan``, ``inf``) are refused everywhere.

:func:`check_timestep` (from :mod:`mdi_mlmm.protocol.timestep`) is the one time-step policy of the MD commands (``md``,
``hydration``); :data:`TIMESTEP_HELP` explains it in their ``--help``.
"""
from __future__ import annotations

import argparse
import math

# the time-step policy lives in the protocol (the Python API applies it too); re-exported for the commands
from ..protocol.timestep import DT_LIMITS_CONSTRAINED, DT_LIMITS_FLEXIBLE, check_timestep  # noqa: F401



def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {text}")
    return value


def nonneg_int(text: str) -> int:
    """An integer ≥ 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def int_at_least(lowest: int, why: str = ""):
    """A type: an integer ≥ ``lowest``; ``why`` is appended to the refusal."""
    def parse(text: str) -> int:
        value = _int(text)
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}{' ' + why if why else ''}, got {text}")
        return value
    parse.__name__ = f"int_at_least_{lowest}"
    return parse


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def nonneg_float(text: str) -> float:
    """A finite number ≥ 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 0 and < 1, got {text}")
    return value


def open_fraction(text: str) -> float:
    """A number in (0, 1)."""
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be > 0 and < 1, got {text}")
    return value


def port(text: str) -> int:
    """A TCP port, 1..65535."""
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port in 1..65535, got {text}")
    return value


def port_or_any(text: str) -> int:
    """A TCP port, 1..65535, or 0 for any free port."""
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port in 1..65535 (or 0: any free port), got {text}")
    return value


# ------------------------------------------------------------------ time step
TIMESTEP_HELP = (
    "Time-step limits: the fastest motion is the X-H bond stretch (about 3000-3700 1/cm, a period of 9-11 fs), "
    "and velocity Verlet needs about 10 steps per period to conserve energy. With flexible X-H bonds (the "
    "default of `md` and of the ML/MM hydration windows) above 1 fs a warning is printed and above 2 fs the run "
    "is refused. With X-H bonds constrained (`md --constraints h-bonds`, the ML region's "
    "included; `hydration --constraints h-bonds`, its --leg-dt too; either host; hydration --model mm --protocol "
    "freesolv and the endpoint route's MM windows: h-bonds) the fastest motions left are bends near 1600 1/cm "
    "(about 20 fs): warning above 2 fs, "
    "refused above 4 fs. With hydrogen masses repartitioned too (--mass-repartition, GROMACS host): warning "
    "above 4 fs, refused above 5 fs. --allow-large-dt runs anyway (for tests and experiments).")


#: the help of ``--mass-repartition`` (``md``, ``hydration``)
MASS_REPARTITION_HELP = (
    "hydrogen mass repartitioning (HMR), GROMACS host, with --constraints h-bonds: every hydrogen outside rigid "
    "water weighs FACTOR x its mass (no FACTOR: 3, 1.008 -> 3.024 amu), taken from its bonded heavy atom (each "
    "molecule keeps its mass; waters untouched), written into a copy of the topology (topol_hmr.top); allows a "
    "4 fs time step. Off by default (1: off). Averages and free energies do not depend on the masses; "
    "docs/gromacs.md says what has been checked")


def add_mass_repartition(p, default=None) -> None:
    """Add ``--mass-repartition [FACTOR]`` (:data:`MASS_REPARTITION_HELP`)."""
    p.add_argument("--mass-repartition", type=positive_float, nargs="?", const=3.0, default=default,
                   metavar="FACTOR", help=MASS_REPARTITION_HELP)


def add_timestep_override(p) -> None:
    """Add ``--allow-large-dt`` (see :func:`check_timestep`)."""
    p.add_argument("--allow-large-dt", action="store_true",
                   help="run with a time step above the safe limit (see the time-step limits below); hydration on "
                        "GROMACS: also one under 5 steps of the solute's fastest flexible bond (a warning instead "
                        "of the refusal)")
