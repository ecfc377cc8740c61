"""The hosts are plug-ins in one table (mdi_mlmm/hosts/registry.py) with one interface, and the
units they run are typed specs that survive their spec.json."""
from __future__ import annotations

import json

import pytest

from mdi_mlmm.errors import UserInputError, WorkflowError
from mdi_mlmm.hosts import registry
from mdi_mlmm.protocol.specs import GasSpec, WindowSpec, unit_from_json

COMMON = dict(model="ani2x", out_dir="w", top="topol.top", gro="conf.gro", ndx="index.ndx", ml_indices=[0, 1, 2],
              steps=100, dt_fs=1.0, temperature=298.15, sample_every=10, seed=3)


@pytest.mark.parametrize("name", registry.names())
def test_every_host_has_the_interface(name):
    host = registry.get(name)
    missing = [a for a in registry.INTERFACE if not hasattr(host, a)]
    assert not missing, f"hosts/{name}/__init__.py lacks {missing}"
    assert host.__name__ == f"mdi_mlmm.hosts.{name}"


def test_unknown_host_is_refused_in_one_line():
    with pytest.raises(UserInputError, match="unknown host 'openmm'; choose lammps or gromacs"):
        registry.get("openmm")


def test_unit_specs_round_trip_through_json():
    w = WindowSpec(host="gromacs", state=1, schedule=[[0, 0], [1, 1 / 3], [1, 1]], equil_steps=20, **COMMON)
    g = GasSpec(host="lammps", engine_model="server:x.json", **COMMON)
    for spec in (w, g):
        back = unit_from_json(json.loads(json.dumps(spec.to_json())))
        assert back == spec and type(back) is type(spec)
    assert w.schedule[1] == (1.0, 1 / 3) and w.total_steps == 120 and w.engine == "ani2x"
    assert g.total_steps == 100 and g.engine == "server:x.json"
    with pytest.raises(WorkflowError, match="unknown unit kind"):
        unit_from_json({"kind": "nope"})
