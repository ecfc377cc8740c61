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

from ..errors import UserInputError
from .base import Potential, Result  # noqa: F401

MODEL_CHOICES = "ani2x | ani1x | ani1ccx | mace:PATH | zero | harmonic[:k] | server:INFO.json"


def load_potential(spec: str, *, model_dir=None, member: Optional[int] = None, dtype: str = "float64",
                   threads: Optional[int] = None, device: str = "cpu") -> Potential:
    """Build the potential named by ``spec`` (see module docstring)."""
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    s = (spec or "").strip()
    low = s.lower()
    if low in ("ani2x", "ani-2x", "ani1x", "ani-1x", "ani1ccx", "ani-1ccx"):
        from .ani import ANIPotential

        return ANIPotential(low, model_dir=model_dir, member=member, dtype=dtype, threads=threads,
                            device=device)
    if low.startswith("mace:"):
        from .mace import MACEPotential

        return MACEPotential(s[5:], dtype=dtype, threads=threads, device=device)
    if low == "zero":
        from .simple import ZeroPotential

        return ZeroPotential()
    if low.startswith("harmonic"):
        from .simple import HarmonicPotential

        k = float(low.split(":", 1)[1]) if ":" in low else 0.01
        return HarmonicPotential(k)
    if low.startswith("server:"):
        from .shared import SharedModelClient

        return SharedModelClient(s[7:])
    raise UserInputError(f"unknown model {spec!r}; choose {MODEL_CHOICES}")
