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
