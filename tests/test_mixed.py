"""The λ-mixed solute potential (potentials/mixed.py), directly and served by the MDI engine."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm import units
from mdi_mlmm.errors import UserInputError
from mdi_mlmm.potentials import load_potential
from mdi_mlmm.potentials.mixed import MixedPotential, mixed_potential
from mdi_mlmm.potentials.mm_intra import MMIntra

HERE = Path(__file__).parent
TOP = HERE / "data" / "lammps_ethanol" / "topol.top"   # ethanol (MOL: C C O H H H H H H) in water
SYMBOLS = ["C", "C", "O"] + ["H"] * 6
KCAL_TO_HA = 1.0 / units.HARTREE_IN_KCAL_PER_MOL


@pytest.fixture(scope="module")
def mm():
    return MMIntra.from_gromacs(TOP, moleculetype="MOL")


def _ethanol(seed=0):
    from tests.drivers.scenarios import ETHANOL

    rng = np.random.default_rng(seed)
    return ETHANOL[1] + rng.uniform(-0.05, 0.05, ETHANOL[1].shape)


@pytest.mark.parametrize("lam", [0.0, 0.25, 1.0])
def test_mixing(mm, lam):
    ml = load_potential("harmonic:0.02")
    mix = MixedPotential(ml, mm, lam)
    pos = np.stack([_ethanol(s) for s in range(3)])
    r = mix.compute_batch(SYMBOLS, pos)
    rm = ml.compute_batch(SYMBOLS, pos)
    e_mm, f_mm = mm.energy_forces(pos)
    assert r.energy.shape == (3,) and r.forces.shape == (3, 9, 3)
    np.testing.assert_allclose(r.energy, lam * rm.energy + (1 - lam) * e_mm * KCAL_TO_HA, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.forces, lam * rm.forces + (1 - lam) * f_mm * KCAL_TO_HA, rtol=0, atol=1e-12)
    one = mix.compute(SYMBOLS, pos[1])
    assert one.energy.shape == () and abs(float(one.energy) - r.energy[1]) < 1e-14
    e_ml, e_mm2 = mix.components(SYMBOLS, pos)
    np.testing.assert_allclose(e_ml, rm.energy * units.HARTREE_IN_KCAL_PER_MOL, rtol=1e-14)
    np.testing.assert_allclose(e_mm2, e_mm, rtol=1e-14)


def test_refusals(mm):
    ml = load_potential("harmonic")
    with pytest.raises(UserInputError, match="from 0 \\(MM\\) to 1 \\(ML\\)"):
        mixed_potential(ml, 1.5, TOP, moleculetype="MOL")
    mix = MixedPotential(ml, mm, 0.5)
    with pytest.raises(UserInputError, match="not the molecule of the MM"):
        mix.compute(["C", "O", "C"] + ["H"] * 6, _ethanol())
    with pytest.raises(UserInputError, match="not the molecule of the MM"):
        mix.compute(["O", "H", "H"], np.zeros((3, 3)))
    ani = load_potential("ani2x")
    with pytest.raises(UserInputError, match="cannot describe"):
        MixedPotential(ani, mm, 0.5).compute(["C", "C", "Br"] + ["H"] * 6, _ethanol())


def test_engine_serves_the_mixed_state(tmp_path, mm):
    """``mdi-mlmm engine --mix-lambda`` over MDI (TCP, engine in its own process, as the hosts run it)."""
    code = (
        "import numpy as np, json, sys\n"
        "from mdi_mlmm.hosts.driver import start_local_engine\n"
        "c = start_local_engine('harmonic:0.02', log_path=sys.argv[1], extra=['--mix-lambda', '0.3', "
        "'--mm-intra-top', sys.argv[2], '--mm-intra-molecule', 'MOL'])\n"
        "c.setup([6, 6, 8, 1, 1, 1, 1, 1, 1])\n"
        "pos = np.array(json.loads(sys.argv[3]))\n"
        "e, f = c.compute(pos + 11.0, np.eye(3) * 25)\n"   # shifted: a rigid move changes nothing
        "c.close()\n"
        "print(json.dumps({'e': e, 'f': f.tolist(), 'rc': c.engine_proc.returncode}))\n"
    )
    pos = _ethanol(7)
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "eng.log"), str(TOP), json.dumps(pos.tolist())],
                       capture_output=True, text=True, cwd=HERE.parent, timeout=180)
    assert r.returncode == 0, r.stderr + (tmp_path / "eng.log").read_text()
    out = json.loads(r.stdout.strip().splitlines()[-1])
    ref = MixedPotential(load_potential("harmonic:0.02"), mm, 0.3).compute(SYMBOLS, pos)
    assert abs(out["e"] - float(ref.energy)) < 1e-10
    np.testing.assert_allclose(out["f"], ref.forces, atol=1e-10)
    assert out["rc"] == 0


def test_engine_options_go_together():
    r = subprocess.run([sys.executable, "-m", "mdi_mlmm", "engine", "--model", "zero", "--mix-lambda", "0.5",
                        "-mdi", "-role ENGINE -name ML -method TCP -port 1 -hostname localhost"],
                       capture_output=True, text=True, cwd=HERE.parent, timeout=60)
    assert r.returncode != 0 and "--mix-lambda and --mm-intra-top go together" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_model_server_client_is_mixed_and_batched(tmp_path, mm):
    """The shared model server's client as the ML part (the endpoint route uses the batching server)."""
    from mdi_mlmm.potentials.shared import start_server_process, stop_server_process

    info = tmp_path / "server.json"
    proc = start_server_process("harmonic:0.02", info, tmp_path / "server.log")
    try:
        client = load_potential(f"server:{info}")
        mix = MixedPotential(client, mm, 0.6)
        pos = np.stack([_ethanol(s) for s in range(4)])
        r = mix.compute_batch(SYMBOLS, pos)
        ref = MixedPotential(load_potential("harmonic:0.02"), mm, 0.6).compute_batch(SYMBOLS, pos)
        np.testing.assert_allclose(r.energy, ref.energy, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r.forces, ref.forces, rtol=0, atol=1e-12)
        client.close()
    finally:
        stop_server_process(proc)
