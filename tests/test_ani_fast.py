"""The fast ANI path (potentials/ani_fast.py) against torchani's own modules on the same files.

Stated tolerances (docs/ani_speed.md): float64 equals the torchani reference to round-off
(|ΔE| < 1e-10 Ha, |ΔF| < 5e-9 Ha/Å: torch's own CELU backward carries ~1e-8 relative error, ours
is the exact derivative); float32 |ΔE| < 2e-6 Ha, |ΔF| < 5e-6 Ha/Å.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm.potentials.ani import ANIPotential

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "ani_reference.json").read_text())["molecules"]


@lru_cache(maxsize=None)
def pot(backend, dtype="float64", member=None):
    return ANIPotential("ani2x", dtype=dtype, backend=backend, member=member)


def imatinib():
    lines = (DATA / "wide_drug/ligand/input.sdf").read_text().splitlines()
    n = int(lines[3][:3])
    sym = [ln[31:34].strip() for ln in lines[4:4 + n]]
    pos = np.array([[float(ln[0:10]), float(ln[10:20]), float(ln[20:30])] for ln in lines[4:4 + n]])
    return sym, pos


def molecule(name):
    if name == "imatinib":
        return imatinib()
    return REF[name]["symbols"], np.array(REF[name]["positions_A"])


def frames(pos, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([pos] + [pos + 0.05 * rng.normal(size=pos.shape) for _ in range(k)])


@pytest.mark.parametrize("name", ["ethanol", "fluorobenzene", "methanethiol", "chloromethane", "imatinib"])
def test_float64_equals_torchani(name):
    sym, pos = molecule(name)
    x = frames(pos)
    ref = pot("torchani").compute_batch(sym, x)
    new = pot("fast").compute_batch(sym, x)
    assert np.abs(new.energy - ref.energy).max() < 1e-10
    assert np.abs(new.forces - ref.forces).max() < 5e-9
    assert np.abs(ref.forces).max() > 1e-2  # the comparison is not between zeros


@pytest.mark.parametrize("name", ["ethanol", "imatinib"])
def test_float32_close_to_torchani_float64(name, record_property):
    sym, pos = molecule(name)
    x = frames(pos)
    ref = pot("torchani").compute_batch(sym, x)
    new = pot("fast", "float32").compute_batch(sym, x)
    de, df = np.abs(new.energy - ref.energy).max(), np.abs(new.forces - ref.forces).max()
    record_property("max_dE_hartree", float(de))
    record_property("max_dF_hartree_per_A", float(df))
    assert de < 2e-6 and df < 5e-6


def test_member_equals_torchani_member():
    sym, pos = molecule("ethanol")
    a, b = pot("fast", member=3).compute(sym, pos), pot("torchani", member=3).compute(sym, pos)
    assert abs(a.energy - b.energy) < 1e-10
    assert np.abs(a.forces - b.forces).max() < 5e-9


def test_finite_difference_forces_drug_sized():
    sym, pos = imatinib()
    p = pot("fast")
    f = p.compute(sym, pos).forces
    h = 1e-4
    rng = np.random.default_rng(2)
    for i in rng.choice(len(sym), 6, replace=False):
        for a in range(3):
            xp, xm = pos.copy(), pos.copy()
            xp[i, a] += h
            xm[i, a] -= h
            e = p.compute_batch(sym, np.stack([xp, xm])).energy
            assert abs(-(e[0] - e[1]) / (2 * h) - f[i, a]) < 1e-6


def test_angular_list_rebuilt_when_atoms_approach():
    """Two waters 8 Å apart (no triple across them in the list), then 2.9 Å apart: the list must grow."""
    sym, w = molecule("water")
    far = np.concatenate([w, w + [8.0, 0.0, 0.0]])
    near = np.concatenate([w, w + [2.9, 0.3, 0.0]])
    p = ANIPotential("ani2x", dtype="float64", backend="fast")   # its own instance: a fresh triple list
    p.compute(sym + sym, far)
    fast = p._fast[tuple(sym + sym)]
    n_before = len(fast._triples[0])
    got = p.compute(sym + sym, near)
    ref = pot("torchani").compute(sym + sym, near)
    assert len(fast._triples[0]) > n_before
    assert abs(got.energy - ref.energy) < 1e-10
    assert np.abs(got.forces - ref.forces).max() < 5e-9


def test_weight_cache_written_read_and_repaired(tmp_path, monkeypatch):
    monkeypatch.setenv("MDI_MLMM_CACHE", str(tmp_path))
    sym, pos = molecule("ethanol")
    e0 = ANIPotential("ani2x", member=0).compute(sym, pos).energy   # parses, writes the cache
    files = list((tmp_path / "ani").glob("ani-2x_8x-*.pt"))
    assert len(files) == 1
    e1 = ANIPotential("ani2x", member=0).compute(sym, pos).energy   # reads it
    assert e1 == e0
    files[0].write_bytes(b"not a torch file")
    e2 = ANIPotential("ani2x", member=0).compute(sym, pos).energy   # damaged: parsed again
    assert e2 == e0 and files[0].stat().st_size > 1000


def test_molecules_alternating_on_one_potential():
    """A model server may see several molecules: each keeps its own kernel and lists."""
    p = ANIPotential("ani2x", dtype="float64", backend="fast")   # float64: compared with torchani at 1e-10
    (s1, x1), (s2, x2) = molecule("ethanol"), molecule("fluorobenzene")
    first = [p.compute(s1, x1), p.compute(s2, x2)]
    again = [p.compute(s1, x1), p.compute(s2, x2)]
    for a, b, (s, x) in zip(first, again, [(s1, x1), (s2, x2)]):
        ref = pot("torchani").compute(s, x)
        assert a.energy == b.energy and abs(a.energy - ref.energy) < 1e-10
