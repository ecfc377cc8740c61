"""The MM hosts, in one table: a host is a package ``mdi_mlmm/hosts/<name>/`` whose ``__init__``
exposes the same small interface, imported only when the host is used.

A host package provides:

* ``run_window(spec: WindowSpec, progress=None) -> dict`` — one λ window of the decoupling leg
  (:class:`~mdi_mlmm.protocol.specs.WindowSpec`), resumable; writes the window's outputs
  (:mod:`mdi_mlmm.protocol.outputs`, or GROMACS's ``dhdl.xvg``) and ``done.json``, and returns
  the summary it wrote there;
* ``run_gas(spec: GasSpec, progress=None) -> dict`` — the gas leg (``e_ml.csv``, ``done.json``);
* ``run_leg(spec: LegSpec, progress=None) -> dict`` — one window of an endpoint-route leg (the
  engine serves the λ-mixed solute energy; full-precision solute frames every ``sample_every``
  steps; ``done.json`` names ``trajectory``, ``topology`` and the solute ``atoms`` in it);
* ``run_md(top, gro, ml_selection, model, steps, dt_fs, ensemble, out_dir, *, ndx, ml_group,
  temperature, pressure_bar, engine_port, seed, report_every, energy_every, traj_every, progress,
  engine_options, minimize, **MD_OPTIONS)`` — ML/MM molecular dynamics (``mdi-mlmm md``);
* ``MD_OPTIONS`` — the ``run_md`` keywords only this host has, with their defaults;
* ``format_md(result) -> str`` — a few lines on what ``run_md`` returned.

``progress(done, total)`` is called with the steps done (equilibration included). Adding a host
means adding its package and one row to :data:`HOSTS`.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UserInputError

#: host name -> the package that implements it
HOSTS: dict[str, str] = {
    "lammps": "mdi_mlmm.hosts.lammps",
    "gromacs": "mdi_mlmm.hosts.gromacs",
}

#: what every host package provides
INTERFACE = ("run_window", "run_gas", "run_leg", "run_md", "format_md", "MD_OPTIONS")
#: unit kind (:mod:`mdi_mlmm.protocol.specs`) -> the host function that runs it
RUNNERS = {"window": "run_window", "gas": "run_gas", "leg": "run_leg"}


def names() -> list[str]:
    """The host names, in the table's order (the first is the default of ``md`` and ``hydration``)."""
    return list(HOSTS)


def get(name: str) -> ModuleType:
    """The package of host ``name`` (imported now); :class:`UserInputError` for an unknown name."""
    if name not in HOSTS:
        raise UserInputError(f"unknown host {name!r}; choose {' or '.join(HOSTS)}")
    return importlib.import_module(HOSTS[name])
