"""float32 is the ML models' default precision everywhere a model is loaded (issue 13, item 2), float64 is
an option, and runs made before the switch (float64) are not resumed in float32 by accident."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mdi_mlmm.errors import UserInputError
from mdi_mlmm.potentials.registry import DEFAULT_DTYPE

HERE = Path(__file__).parent
REPO = HERE.parent


def test_the_default_is_float32_in_every_command_and_in_the_api():
    from mdi_mlmm import HydrationFreeEnergy
    from mdi_mlmm.cli.main import build_parser

    assert DEFAULT_DTYPE == "float32"
    p = build_parser()
    for argv in (["engine", "--model", "ani2x", "-mdi", "x"], ["model-server", "--info", "s.json"],
                 ["md", "--top", "t", "--gro", "g", "--ml", "resname MOL", "--steps", "1", "--out", "o"],
                 ["hydration", "--smiles", "CCO", "--out", "o"],
                 ["benchmark", "freesolv", "--ids", "mobley_2310185", "--out", "o"]):
        assert p.parse_args(argv).dtype == "float32", argv
        assert p.parse_args(argv + ["--dtype", "float64"]).dtype == "float64", argv
    assert HydrationFreeEnergy(smiles="CCO").dtype == "float32"
    with pytest.raises(UserInputError, match="dtype must be float32 or float64, got 'half'"):
        HydrationFreeEnergy(smiles="CCO", dtype="half")


def _system(root: Path) -> dict:
    files = {"top": "topol.top", "gro": "conf.gro", "ndx": "index.ndx"}
    return {"root": str(root), "solvated": dict(files), "gas": dict(files), "ml_atoms": list(range(9))}


@pytest.mark.parametrize("dtype", [None, "float64"])
def test_every_engine_of_a_hydration_run_gets_the_plans_dtype(tmp_path, monkeypatch, dtype):
    """Windows, gas run, endpoint legs and the shared model server all run the plan's precision."""
    from mdi_mlmm import HydrationFreeEnergy
    from mdi_mlmm.potentials import shared
    from mdi_mlmm.workflow import endpoint, hydration

    want = dtype or "float32"
    kw = {} if dtype is None else {"dtype": dtype}
    direct = HydrationFreeEnergy(smiles="CCO", model="ani2x", windows=3, workers=2, **kw).plan(tmp_path / "d")
    ends = HydrationFreeEnergy(smiles="CCO", model="ani2x", host="gromacs", route="endpoint", windows=3,
                               workers=2, **kw).plan(tmp_path / "e")
    assert direct.dtype == ends.dtype == want
    system = _system(tmp_path)
    specs = hydration.unit_specs(direct, system, tmp_path / "eq.gro") + endpoint.leg_specs(ends, system,
                                                                                          tmp_path / "eq.gro")
    assert {type(s).__name__ for s in specs} == {"WindowSpec", "GasSpec", "LegSpec"}
    for s in specs:
        i = s.engine_args.index("--dtype")
        assert s.engine_args[i + 1] == want, s
    seen = {}

    def fake_server(model, info, log, *, extra=()):
        seen["extra"] = extra
        return SimpleNamespace(pid=0)

    monkeypatch.setattr(shared, "start_server_process", fake_server)
    hydration.start_model_server(direct, specs[:2])
    assert list(seen["extra"])[list(seen["extra"]).index("--dtype") + 1] == want


def _old_plan(tmp_path, model="ani2x"):
    """A plan.json as a run started before the switch left it: no dtype key (it ran float64)."""
    from mdi_mlmm import HydrationFreeEnergy
    from mdi_mlmm.protocol.plan import PLAN_NAME, Plan

    plan = HydrationFreeEnergy(smiles="CCO", model=model, windows=3, workers=1, dtype="float64").plan(tmp_path)
    plan.write()
    d = json.loads((tmp_path / PLAN_NAME).read_text())
    del d["dtype"]
    (tmp_path / PLAN_NAME).write_text(json.dumps(d))
    assert Plan.from_json(d).dtype == "float64"


def test_an_old_float64_run_is_not_resumed_in_float32(tmp_path):
    from mdi_mlmm import HydrationFreeEnergy
    from mdi_mlmm.protocol.plan import load_or_create

    _old_plan(tmp_path)
    with pytest.raises(UserInputError) as e:
        load_or_create(HydrationFreeEnergy(smiles="CCO", model="ani2x", windows=3, workers=1).plan(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "dtype: 'float64' on disk vs 'float32' now" in msg and "--dtype float64" in msg
    plan, resumed = load_or_create(HydrationFreeEnergy(smiles="CCO", model="ani2x", windows=3, workers=1,
                                                       dtype="float64").plan(tmp_path))
    assert resumed and plan.dtype == "float64" and "float64" in plan.engine_options()
    # a plain-MM run loads no model: its dtype does not matter
    _old_plan(tmp_path / "mm", model="mm")
    assert load_or_create(HydrationFreeEnergy(smiles="CCO", model="mm", windows=3, workers=1).plan(tmp_path / "mm"))[1]


def test_an_old_float64_benchmark_is_not_continued_in_float32(tmp_path):
    from mdi_mlmm.workflow.benchmark import SETTINGS_FILE, check_settings

    old = {"model": "ani2x", "host": "gromacs", "windows": 20}
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(old))
    with pytest.raises(UserInputError, match=r"dtype: 'float64' on disk vs 'float32' now.*--dtype float64"):
        check_settings(tmp_path, dict(old, dtype="float32"))
    check_settings(tmp_path, dict(old, dtype="float64"))
    (tmp_path / "mm").mkdir()
    (tmp_path / "mm" / SETTINGS_FILE).write_text(json.dumps(dict(old, model="mm")))
    check_settings(tmp_path / "mm", dict(old, model="mm", dtype="float32"))


def test_an_engine_process_runs_float32_by_default(tmp_path):
    """A real engine process started the way the hosts start it: its log names float32, and it answers what
    an in-process float32 ANI-2x gives (float32 is within 2e-6 Ha of float64: docs/ani_speed.md)."""
    from mdi_mlmm.potentials import load_potential
    from tests.drivers.scenarios import ETHANOL

    code = ("import numpy as np, json, sys\n"
            "from mdi_mlmm.hosts.driver import start_local_engine\n"
            "from tests.drivers.scenarios import ETHANOL\n"
            "c = start_local_engine('ani2x', log_path=sys.argv[1])\n"
            "c.setup(ETHANOL[0])\n"
            "e, f = c.compute(ETHANOL[1], np.eye(3) * 25)\n"
            "c.close()\n"
            "print(json.dumps({'e': e, 'f': f.tolist()}))\n")
    log = tmp_path / "engine.log"
    r = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "float32" in log.read_text() and "float64" not in log.read_text()
    out = json.loads(r.stdout.strip().splitlines()[-1])
    sym = ["C", "C", "O"] + ["H"] * 6
    p32 = load_potential("ani2x")
    assert "float32" in p32.describe()
    ref = p32.compute(sym, ETHANOL[1])
    assert abs(out["e"] - float(ref.energy)) < 1e-6
    assert np.abs(np.asarray(out["f"]) - ref.forces).max() < 1e-5
    e64 = float(load_potential("ani2x", dtype="float64").compute(sym, ETHANOL[1]).energy)
    assert abs(out["e"] - e64) < 2e-6


def test_mace_runs_float32_by_default():
    """MACE follows the one default; its float32 energy and forces stay close to float64 (test-only model)."""
    from mdi_mlmm.potentials import load_potential

    spec = f"mace:{HERE / 'data' / 'mace_test_small.model'}"
    p32, p64 = load_potential(spec), load_potential(spec, dtype="float64")
    assert "float32" in p32.describe() and "float64" in p64.describe()
    x = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    r32, r64 = p32.compute(["O", "H", "H"], x), p64.compute(["O", "H", "H"], x)
    assert abs(float(r32.energy) - float(r64.energy)) < 1e-6 * max(1.0, abs(float(r64.energy)))
    assert np.abs(r32.forces - r64.forces).max() < 1e-5
