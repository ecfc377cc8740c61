"""Shared pytest fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared data directory (FreeSolv, model files): ``$MDI_MLMM_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("MDI_MLMM_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data directory {path} not found (set MDI_MLMM_SHARED)")
    return path


@pytest.fixture(scope="session")
def ani():
    """ANI-2x in float64 (the exactness tests' precision); skipped where the model files are missing, a
    failure under CI (``$CI`` set), where they must be there."""
    from mdi_mlmm.potentials import load_potential

    try:
        return load_potential("ani2x", dtype="float64")
    except Exception as exc:  # model files / torchani missing
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but ANI-2x cannot be loaded: {exc}")
        pytest.skip(f"ANI-2x unavailable: {exc}")


@pytest.fixture(scope="session")
def stock_gmx() -> Path:
    """The stock (Debian) ``gmx`` on PATH, which the set-up installs; skipped where it is missing, a failure
    under CI (``$CI`` set)."""
    import shutil

    gmx = shutil.which("gmx")
    if gmx is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but the stock gmx is not on PATH")
        pytest.skip("no stock gmx on PATH")
    return Path(gmx)
