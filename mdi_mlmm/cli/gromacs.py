"""``mdi-mlmm gromacs``: build the MDI-enabled GROMACS and locate it.

* ``mdi-mlmm gromacs build [--source DIR_OR_TARBALL] [--cache-dir DIR] [--jobs N] [--force]``
* ``mdi-mlmm gromacs path``   -- print the gmx of the current cached build (exit 1 if none)
* ``mdi-mlmm gromacs info``   -- what the current build was made from (JSON)
"""
from __future__ import annotations

import json
import sys

from ._types import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("gromacs", help="build / locate GROMACS with the MDI (ML/MM) module",
                              description="GROMACS 2022.5 with the mdi_mlmm MDI module, built into a cache "
                                          "($MDI_MLMM_CACHE/gromacs, default ~/.cache/mdi_mlmm/gromacs).")
    sub = p.add_subparsers(dest="gromacs_command", metavar="ACTION")

    b = sub.add_parser("build", help="build (or reuse) the MDI-enabled GROMACS")
    b.add_argument("--source", metavar="DIR_OR_TARBALL",
                   help="GROMACS 2022 source tree or tarball (default: Debian's gromacs source package)")
    b.add_argument("--cache-dir", metavar="DIR", help="cache directory (default $MDI_MLMM_CACHE/gromacs)")
    b.add_argument("--jobs", "-j", type=positive_int, default=None, help="parallel compile jobs (default: all cores)")
    b.add_argument("--force", action="store_true", help="rebuild even if a matching cached build exists")
    b.set_defaults(func=_build)

    pa = sub.add_parser("path", help="print the gmx binary of the current cached build")
    pa.add_argument("--cache-dir", metavar="DIR")
    pa.set_defaults(func=_path)

    i = sub.add_parser("info", help="show how the current cached build was made")
    i.add_argument("--cache-dir", metavar="DIR")
    i.set_defaults(func=_info)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _build(args) -> int:
    from ..hosts.gromacs.build import build

    res = build(source=args.source, cache_dir=args.cache_dir, jobs=args.jobs, force=args.force)
    print(res.gmx)
    return 0


def _path(args) -> int:
    from ..hosts.gromacs.build import cache_root, gmx_path

    gmx = gmx_path(args.cache_dir)
    if gmx is None:
        print(f"error: no MDI-enabled GROMACS build in {cache_root(args.cache_dir)}; "
              "run `mdi-mlmm gromacs build`", file=sys.stderr)
        return 1
    print(gmx)
    return 0


def _info(args) -> int:
    from ..hosts.gromacs.build import build_info

    info = build_info(args.cache_dir)
    if info is None:
        print("error: no MDI-enabled GROMACS build", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=1))
    return 0
