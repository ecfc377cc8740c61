"""Machine-learning potentials behind one interface (no MDI here).

``load_potential(spec)`` understands:

* ``ani2x`` (default), ``ani1x``, ``ani1ccx`` — NeuroChem files, see :mod:`.ani`;
* ``mace:/path/to/file.model`` — any MACE model, see :mod:`.mace`;
* ``zero`` — E = 0, F = 0 (benchmarks of coupling overhead);
* ``harmonic[:k]`` — a cheap analytic test potential;
* ``server:INFO.json`` — a model held by ``mdi-mlmm model-server`` (batched), see :mod:`.shared`.
"""
from __future__ import annotations

import os
from typing import Optional

from ..errors import ModelFilesNotFound, UserInputError
from .base import Potential, Result  # noqa: F401

MODEL_CHOICES = "ani2x | ani1x | ani1ccx | mace:PATH | zero | harmonic[:k] | server:INFO.json"

_ANI_NAMES = ("ani2x", "ani-2x", "ani1x", "ani-1x", "ani1ccx", "ani-1ccx")


def parse_model_spec(spec: str) -> tuple[str, object]:
    """Split a model spec into (kind, argument) without loading anything (no torch).

    kind/argument: ``("ani", name)``, ``("mace", path)``, ``("zero", None)``,
    ``("harmonic", k)`` (k > 0, Hartree/Å²), ``("server", info_path)``. A malformed or
    unknown spec raises :class:`UserInputError`, one line that lists the valid models.
    """
    s = (spec or "").strip()
    low = s.lower()
    kind, _, arg = low.partition(":")
    if low in _ANI_NAMES:
        return "ani", low
    if kind == "mace" and s[5:].strip():
        return "mace", s[5:].strip()
    if low == "zero":
        return "zero", None
    if low == "harmonic":
        return "harmonic", 0.01
    if kind == "harmonic":
        try:
            k = float(arg)
        except ValueError:
            k = float("nan")
        if k > 0 and k != float("inf"):
            return "harmonic", k
        raise UserInputError(f"malformed model {spec!r}: the harmonic k must be a number > 0; "
                             f"choose {MODEL_CHOICES}")
    if kind == "server" and s[7:].strip():
        return "server", s[7:].strip()
    if kind in ("mace", "server"):
        raise UserInputError(f"malformed model {spec!r}: {kind}: needs a path; choose {MODEL_CHOICES}")
    raise UserInputError(f"unknown model {spec!r}; choose {MODEL_CHOICES}")


def check_model_spec(spec: str, *, model_dir=None, files: bool = True) -> tuple[str, object]:
    """:func:`parse_model_spec`, and with ``files`` also that the model's files exist (ANI zoo,
    MACE file, server info file) — cheap checks a command runs before starting engines."""
    kind, arg = parse_model_spec(spec)
    if files and kind == "ani":
        from .ani import find_info_file

        find_info_file(arg.replace("-", ""), model_dir)
    elif files and kind in ("mace", "server"):
        from pathlib import Path

        if not Path(arg).expanduser().is_file():
            what = "MACE model file" if kind == "mace" else "model server info file"
            raise ModelFilesNotFound(f"{what} {arg} not found (model {spec!r})")
    return kind, arg


def load_potential(spec: str, *, model_dir=None, member: Optional[int] = None, dtype: str = "float64",
                   threads: Optional[int] = None, device: str = "cpu") -> Potential:
    """Build the potential named by ``spec`` (see module docstring)."""
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    kind, arg = parse_model_spec(spec)
    if kind == "ani":
        from .ani import ANIPotential

        return ANIPotential(arg, model_dir=model_dir, member=member, dtype=dtype, threads=threads,
                            device=device)
    if kind == "mace":
        from .mace import MACEPotential

        return MACEPotential(arg, dtype=dtype, threads=threads, device=device)
    if kind == "zero":
        from .simple import ZeroPotential

        return ZeroPotential()
    if kind == "harmonic":
        from .simple import HarmonicPotential

        return HarmonicPotential(arg)
    from .shared import SharedModelClient

    return SharedModelClient(arg)
