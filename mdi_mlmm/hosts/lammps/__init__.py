"""The LAMMPS host (LAMMPS Python module; LAMMPS drives, the ML engine answers over MDI).

The host interface of :mod:`mdi_mlmm.hosts.registry`; the work is done in :mod:`.alchemy`
(λ windows, gas leg) and :mod:`.host` (md). Submodules are imported when used.
"""
from __future__ import annotations

#: ``run_md`` keywords of this host (not every host has them): LJ and real-space Coulomb cutoff (Å); the X–H
#: bonds (``none`` or ``h-bonds``, :data:`~mdi_mlmm.protocol.timestep.CONSTRAINTS`)
MD_OPTIONS = {"cutoff_A": 10.0, "constraints": "none"}


def _common(spec) -> dict:
    _no_hmr(spec)
    return dict(sample_every=spec.sample_every, temperature=spec.temperature, seed=spec.seed,
                checkpoint_every=spec.checkpoint_every, engine_model=spec.engine_model,
                engine_options=spec.engine_args, constrain_hbonds=spec.constrain_hbonds)


def _no_hmr(spec) -> None:
    """Refuse (one line) a unit with repartitioned hydrogen masses: a LAMMPS data file has one mass per atom type,
    shared by heavy atoms with different numbers of hydrogens (docs/hosts.md)."""
    from ...protocol.timestep import check_mass_repartition

    check_mass_repartition(getattr(spec, "mass_repartition", None), constrained_xh=spec.constrain_hbonds, host="lammps")


def run_window(spec, progress=None) -> dict:
    """One λ window (:class:`~mdi_mlmm.protocol.specs.WindowSpec`): :func:`.alchemy.run_window`."""
    from . import alchemy
    from ...protocol.physics import check_protocol

    check_protocol(spec.protocol, "lammps")
    return alchemy.run_window(spec.top, spec.gro, spec.ml_indices, spec.model, spec.state, spec.schedule,
                              spec.steps, spec.dt_fs, spec.out_dir, equil_steps=spec.equil_steps,
                              progress=progress, **_common(spec))


def run_gas(spec, progress=None) -> dict:
    """The gas leg (:class:`~mdi_mlmm.protocol.specs.GasSpec`): :func:`.alchemy.run_gas`."""
    from . import alchemy

    return alchemy.run_gas(spec.top, spec.gro, spec.ml_indices, spec.model, spec.steps, spec.dt_fs, spec.out_dir,
                           progress=progress, **_common(spec))


def run_leg(spec, progress=None) -> dict:
    """One endpoint-leg window (:class:`~mdi_mlmm.protocol.specs.LegSpec`): :func:`.alchemy.run_leg`."""
    from . import alchemy

    _no_hmr(spec)
    return alchemy.run_leg(spec, progress)


def run_md(top, gro, ml_selection, model, steps, dt_fs, ensemble, out_dir, **options):
    """ML/MM MD: :func:`.host.run_md` (returns its summary dict)."""
    from .host import run_md as md

    return md(top, gro, ml_selection, model, steps, dt_fs, ensemble, out_dir, **options)


def format_md(summary) -> str:
    from .host import format_summary

    return format_summary(summary)
