"""Machine-learning potentials behind one interface (no MDI here).

``load_potential(spec)`` builds the potential a model spec names; which specs exist (``ani2x``,
``mace:PATH``, ``zero``, ``harmonic[:k]``, ``server:INFO.json``, ``python:FILE.py:FACTORY``, ``mm``
and models added with :func:`register_model`) is the business of the one registry,
:mod:`.registry`, which loads no ML library until a model is loaded.
"""
from __future__ import annotations

from typing import Optional

from .base import Potential, Result  # noqa: F401
from .registry import DEFAULT_DTYPE, DTYPES, ModelSpec, is_ml, register_model, resolve, unregister_model  # noqa: F401


def check_model_spec(spec: str, *, model_dir=None, files: bool = True) -> ModelSpec:
    """Resolve ``spec`` and, with ``files``, check that the model's files exist (ANI zoo, MACE file,
    server info file, ``python:`` file) — cheap checks a command runs before starting engines."""
    m = resolve(spec)
    return m.check_files(model_dir) if files else m


def load_potential(spec: str, *, model_dir=None, member: Optional[int] = None, dtype: str = DEFAULT_DTYPE,
                   threads: Optional[int] = None, device: str = "cpu") -> Potential:
    """Build the potential named by ``spec`` (see :mod:`.registry`); dtype: ``float32`` (default,
    :data:`~.registry.DEFAULT_DTYPE`) or ``float64``."""
    return resolve(spec).load(model_dir=model_dir, member=member, dtype=dtype, threads=threads, device=device)
