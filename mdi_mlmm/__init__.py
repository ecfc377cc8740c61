"""mdi_mlmm: ML/MM simulation and hydration free energies over the MolSSI Driver Interface.

The public Python API (:mod:`mdi_mlmm.api`) is importable from here; it is loaded on first use, so
``import mdi_mlmm`` stays light (no torch, no alchemlyb)::

    from mdi_mlmm import HydrationFreeEnergy, analyze, load_result, load_potential
"""
__version__ = "0.1.0"

#: name -> module that defines it (imported when first asked for; PEP 562)
_LAZY = {
    "HydrationFreeEnergy": "mdi_mlmm.api",
    "analyze": "mdi_mlmm.api",
    "load_result": "mdi_mlmm.api",
    "load_potential": "mdi_mlmm.api",
    "hydration_defaults": "mdi_mlmm.api",
    "FreeSolvBenchmark": "mdi_mlmm.api",
    "analyze_md": "mdi_mlmm.api",
    "mmgbsa": "mdi_mlmm.api",
    "compare_dg": "mdi_mlmm.api",
    "HydrationResult": "mdi_mlmm.analysis.results",
    "Estimate": "mdi_mlmm.analysis.results",
    "register_model": "mdi_mlmm.potentials.registry",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mdi_mlmm' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
