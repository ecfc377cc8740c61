"""The GROMACS host (``gmx mdrun`` drives; with an ML model, our MDI-enabled build, ``mdi-mlmm gromacs build``).

The host interface of :mod:`mdi_mlmm.hosts.registry`; the work is done in :mod:`.alchemy`
(λ windows, gas leg) and :mod:`.host` (md). Submodules are imported when used.
"""
from __future__ import annotations

#: ``run_md`` keywords only this host has: gmx grompp warnings to accept, the X–H bonds, the hydrogen mass
#: repartitioning factor (None: off)
MD_OPTIONS = {"maxwarn": 0, "constraints": "none", "mass_repartition": None}


def run_window(spec, progress=None) -> dict:
    """One λ window (:class:`~mdi_mlmm.protocol.specs.WindowSpec`): :func:`.alchemy.run_window`."""
    from . import alchemy

    return alchemy.run_window(spec, progress)


def run_gas(spec, progress=None) -> dict:
    """The gas leg (:class:`~mdi_mlmm.protocol.specs.GasSpec`): :func:`.alchemy.run_gas`."""
    from . import alchemy

    return alchemy.run_gas(spec, progress)


def run_leg(spec, progress=None) -> dict:
    """One endpoint-leg window (:class:`~mdi_mlmm.protocol.specs.LegSpec`): :func:`.alchemy.run_leg`."""
    from . import alchemy

    return alchemy.run_leg(spec, progress)


def run_md(top, gro, ml_selection, model, steps, dt_fs, ensemble, out_dir, *, engine_options=(), **options):
    """ML/MM MD: :func:`.host.run_md` (returns its :class:`~.host.MDResult`)."""
    from .host import run_md as md

    return md(top, gro, ml_selection, model, steps, dt_fs, ensemble, out_dir, engine_args=engine_options, **options)


def format_md(result) -> str:
    """The same lines as the LAMMPS host's (:func:`mdi_mlmm.protocol.outputs.format_md_summary`)."""
    from ...protocol.outputs import format_md_summary

    return format_md_summary(result.summary) if result.summary else str(result)
