"""Typed specs of the units of a hydration run: one λ window (:class:`WindowSpec`), the gas
leg (:class:`GasSpec`) or one window of an endpoint-route leg (:class:`LegSpec`). The workflow builds them from the plan, writes each to its unit's
``spec.json`` (:meth:`UnitSpec.to_json`) and the unit's process reads it back
(:func:`unit_from_json`); a host runs it (:mod:`mdi_mlmm.hosts.registry`).

Units: fs (dt), K (temperature); steps and intervals are MD steps; atom indices 0-based.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar, Optional, Union

from ..errors import WorkflowError


@dataclass(kw_only=True)
class UnitSpec:
    """What every unit needs. host: a name in :mod:`mdi_mlmm.hosts.registry`; model: the model spec
    (``mm`` for the classical baseline); engine_model: what the engine loads when it is not ``model``
    itself (``server:INFO.json`` for the shared model server); engine_args: extra ``mdi-mlmm engine``
    options; top/gro: the GROMACS system, ndx: its index file (with the ML group; the GROMACS host
    needs it); ml_indices: the solute (ML) atoms; constrain_hbonds: constrain every X–H bond at its
    force-field length b0, the ML region's included (GROMACS ``constraints = h-bonds``; LAMMPS ``fix rattle``
    on the X–H bond types)."""

    kind: ClassVar[str] = ""
    host: str
    model: str
    out_dir: str
    top: str
    gro: str
    ml_indices: list
    steps: int
    dt_fs: float
    temperature: float
    sample_every: int
    seed: int
    ndx: Optional[str] = None
    checkpoint_every: int = 1000
    engine_args: list = field(default_factory=lambda: ["--threads", "1"])
    engine_model: Optional[str] = None
    #: the endpoint route's MM windows, MM windows of protocol freesolv, every unit of a plan with
    #: constraints h-bonds (ML windows, gas run, endpoint legs)
    constrain_hbonds: bool = False
    #: hydrogen mass repartitioning factor of the unit's topology (:mod:`mdi_mlmm.topology.hmr`; GROMACS host,
    #: with ``constrain_hbonds``), None: the topology's own masses
    mass_repartition: Optional[float] = None
    #: ``--allow-large-dt``: a flexible bond under 5 steps of ``dt_fs`` is warned about in the unit's log instead
    #: of refused (GROMACS host)
    allow_large_dt: bool = False

    @property
    def engine(self) -> str:
        """What the unit's engine loads: the shared model server when the workflow started one."""
        return self.engine_model or self.model

    @property
    def total_steps(self) -> int:
        """Steps the unit runs, equilibration included (its progress counts these)."""
        return int(self.steps) + int(getattr(self, "equil_steps", 0))

    def to_json(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def describe(self) -> str:
        return self.kind


@dataclass(kw_only=True)
class WindowSpec(UnitSpec):
    """One λ window: ``state`` indexes ``schedule`` [(coul λ, vdw λ)] (state 0 coupled); ``equil_steps``
    unsampled steps at this state come before the ``steps`` of production."""

    kind: ClassVar[str] = "window"
    state: int
    schedule: list
    equil_steps: int = 0
    #: the physical model (:data:`~mdi_mlmm.protocol.physics.PROTOCOLS`; ``freesolv``: GROMACS only)
    protocol: str = "default"
    #: a split decoupling's boundary state b (:attr:`~mdi_mlmm.protocol.plan.Plan.split_decoupling`; None: not
    #: split): a GROMACS window after it runs with the solute's charges zero and energies at states b..N−1 only
    stage_boundary: Optional[int] = None

    def __post_init__(self):
        self.schedule = [(float(c), float(v)) for c, v in self.schedule]

    def describe(self) -> str:
        return f"window {self.state}"


@dataclass(kw_only=True)
class GasSpec(UnitSpec):
    """The gas leg: the solute alone (ML models only), E_ML sampled every ``sample_every`` steps."""

    kind: ClassVar[str] = "gas"


@dataclass(kw_only=True)
class LegSpec(UnitSpec):
    """One window of an endpoint-route leg (docs/endpoint.md): the fully coupled solute in water
    (``phase = "water"``, the solvated system) or the solute alone (``"gas"``), sampled with
    U_λ = U_rest + U_solute–rest + (1 − λ)·E_MM,intra + λ·E_ML at ``lam`` (the engine serves the
    mixed solute energy: :attr:`mixed_engine_args`). ``equil_steps`` unsampled steps, then ``steps``
    of production writing full-precision frames every ``sample_every`` steps (GROMACS ``prod.trr``,
    LAMMPS ``solute.dcd``); ``done.json`` names the trajectory, its topology and the solute atoms in it.
    mm_intra_top: the topology whose solute gives E_MM,intra (the gas one); mm_intra_molecule: the
    solute's moleculetype when that topology holds more than one."""

    kind: ClassVar[str] = "leg"
    phase: str
    lam: float
    mm_intra_top: str
    mm_intra_molecule: Optional[str] = None
    equil_steps: int = 0
    #: the physical model of the water phase's nonbonded terms, that of the MM decoupling's coupled state
    #: (:data:`~mdi_mlmm.protocol.physics.PROTOCOLS`; ``freesolv``: GROMACS only)
    protocol: str = "default"

    def __post_init__(self):
        if self.phase not in ("water", "gas"):
            raise WorkflowError(f"unknown leg phase {self.phase!r} (water or gas)")
        self.lam = float(self.lam)

    @property
    def mixed_engine_args(self) -> list:
        """``engine_args`` plus the engine options that make it serve λ·E_ML + (1 − λ)·E_MM,intra."""
        extra = ["--mix-lambda", repr(self.lam), "--mm-intra-top", str(self.mm_intra_top)]
        if self.mm_intra_molecule:
            extra += ["--mm-intra-molecule", str(self.mm_intra_molecule)]
        return list(self.engine_args) + extra

    def describe(self) -> str:
        return f"{self.phase} leg λ = {self.lam:g}"


_KINDS = {c.kind: c for c in (WindowSpec, GasSpec, LegSpec)}


def unit_from_json(d: dict) -> Union[WindowSpec, GasSpec, LegSpec]:
    """The spec :meth:`UnitSpec.to_json` wrote."""
    cls = _KINDS.get(d.get("kind"))
    if cls is None:
        raise WorkflowError(f"unknown unit kind {d.get('kind')!r} (expected {' or '.join(_KINDS)})")
    return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})
