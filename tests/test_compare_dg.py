"""``mdi-mlmm compare-dg`` / ``mdi_mlmm.compare_dg``: ΔG of two finished hydration runs (issue 12 item 4).

The run directories are made with the real writers (``protocol.plan.make_plan`` → plan.json, a
``HydrationResult`` → analysis/results.json, ``done.json`` per window as the workflow writes them), with
ΔG values chosen so that ΔΔG, its σ and the 2σ verdict are known exactly.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mdi_mlmm import compare_dg
from mdi_mlmm.analysis.results import CombinedEstimate, Estimate, HydrationResult, Reorganization
from mdi_mlmm.errors import AnalysisError, UserInputError
from mdi_mlmm.protocol.plan import make_plan

REPO = Path(__file__).resolve().parents[1]


def make_run(d: Path, *, host="gromacs", model="mm", smiles="CCO", name="mobley_2310185", temperature=298.15,
             dG=None, reorg=None, finished=True) -> Path:
    """A finished, analysed direct-route run in ``d``: dG {estimator: (value, σ)}; reorg (value, σ) for ML."""
    plan = make_plan(d, model=model, host=host, smiles=smiles, name=name, windows=3, ns_per_window=0.001,
                     dt_fs=1.0, temperature=temperature, sample_every=10, gas_ns=0.001 if reorg else 0.0,
                     equil_ps=1.0, window_equil_ps=0.1, workers=1)
    plan.write()
    dirs = [w.directory for w in plan.windows] + (["gas"] if reorg else [])
    for k, sub in enumerate(dirs):
        (d / sub).mkdir(parents=True, exist_ok=True)
        if finished or k < len(dirs) - 1:       # an unfinished run: the last one has no done.json
            (d / sub / "done.json").write_text("{}")
    dG = dG or {"TI": (-4.0, 0.1), "MBAR": (-4.1, 0.1), "BAR": (-4.1, 0.1)}
    est = {k: Estimate(*v) for k, v in dG.items()}
    res = HydrationResult(run_dir=str(d), model=model, host=host, temperature_K=temperature, windows=3,
                          ns_per_window=0.001, dG=est, molecule={"smiles": smiles, "name": name})
    if reorg:
        res.reorg_gas = Reorganization(*reorg)
        res.combined = {k: CombinedEstimate(est[k].value + reorg[0], math.hypot(est[k].error, reorg[1]),
                                            reorg_from="gas run") for k in ("TI", "MBAR")}
    (d / "analysis").mkdir()
    (d / "analysis" / "results.json").write_text(json.dumps(res.to_json(), indent=1))
    return d


def _cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "mdi_mlmm", "compare-dg", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)


def test_agreeing_and_disagreeing_estimators(tmp_path):
    a = make_run(tmp_path / "gmx", host="gromacs", dG={"TI": (-4.00, 0.10), "MBAR": (-4.10, 0.10),
                                                       "BAR": (-4.10, 0.10)})
    # TI 1.0σ apart, MBAR 2.5σ apart (σ = √(0.1² + 0.2²) = 0.2236), BAR exactly as A
    b = make_run(tmp_path / "lmp", host="lammps", dG={"TI": (-4.2236068, 0.20), "MBAR": (-4.659017, 0.20),
                                                      "BAR": (-4.10, 0.20)})
    cmp = compare_dg(a, b)
    rows = {r.estimator: r for r in cmp.rows}
    assert list(rows) == ["TI", "MBAR", "BAR"]
    assert rows["TI"].ddG.value == pytest.approx(0.2236068, abs=1e-6)
    assert rows["TI"].ddG.error == pytest.approx(math.sqrt(0.05), rel=1e-9)
    assert rows["TI"].n_sigma == pytest.approx(1.0, abs=1e-6) and rows["TI"].agree is True
    assert rows["MBAR"].n_sigma == pytest.approx(2.5, abs=1e-5) and rows["MBAR"].agree is False
    assert rows["BAR"].ddG.value == pytest.approx(0.0) and rows["BAR"].agree is True
    assert cmp.agree is False
    assert cmp.a.host == "gromacs" and cmp.b.host == "lammps" and cmp.a.smiles == "CCO"
    table = cmp.table()
    assert "DISAGREE beyond 2σ for: MBAR" in table
    line = next(ln for ln in table.splitlines() if ln.strip().startswith("MBAR"))
    assert "NO" in line and "0.56 ± 0.22" in line and "2.5" in line

    # the CLI: the same table, and --json alone gives the numbers on stdout (strict JSON)
    p = _cli(a, b)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == table
    p = _cli(a, b, "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert d["all_agree"] is False and d["ddG"] == "A - B"
    assert [r["estimator"] for r in d["rows"]] == ["TI", "MBAR", "BAR"]
    assert d["rows"][1]["agree_within_2sigma"] is False
    assert d["rows"][1]["ddG"]["value"] == pytest.approx(0.559017, abs=1e-6)
    out = tmp_path / "cmp.json"
    p = _cli(a, b, "--json", out)
    assert p.returncode == 0 and p.stdout.strip() == table and json.loads(out.read_text()) == d


def test_ml_runs_have_reorg_rows_and_nan_sigma_has_no_verdict(tmp_path):
    a = make_run(tmp_path / "a", model="ani2x", host="gromacs", reorg=(-0.5, 0.05),
                 dG={"TI": (-5.0, 0.1), "MBAR": (-5.0, 0.1), "BAR": (-5.0, math.nan)})
    b = make_run(tmp_path / "b", model="ani2x", host="lammps", reorg=(-0.3, 0.05),
                 dG={"TI": (-5.1, 0.1), "MBAR": (-5.0, 0.1), "BAR": (-5.0, 0.1)})
    cmp = compare_dg(a, b)
    rows = {r.estimator: r for r in cmp.rows}
    assert list(rows) == ["TI", "MBAR", "BAR", "TI + reorg", "MBAR + reorg"]
    assert rows["TI + reorg"].ddG.value == pytest.approx((-5.5) - (-5.4))
    assert rows["MBAR + reorg"].ddG.value == pytest.approx(-0.2)
    assert rows["BAR"].agree is None and rows["BAR"].n_sigma is None      # σ of A is NaN: no verdict
    assert cmp.agree is True
    assert json.loads(json.dumps(cmp.to_json(), allow_nan=False))["rows"][2]["A"]["error"] is None


def test_same_molecule_written_differently_is_accepted(tmp_path):
    a = make_run(tmp_path / "a", smiles="CCO")
    b = make_run(tmp_path / "b", smiles="OCC")     # the same ethanol (canonical SMILES)
    assert compare_dg(a, b).agree is True


@pytest.mark.parametrize("case", ["molecule", "temperature", "unfinished", "no_analysis", "damaged", "not_a_run"])
def test_refusals_are_one_line(tmp_path, case):
    a = make_run(tmp_path / "a")
    if case == "molecule":
        b = make_run(tmp_path / "b", smiles="CCCO", name="mobley_1")
        expect, err = "different molecules", UserInputError
    elif case == "temperature":
        b = make_run(tmp_path / "b", temperature=310.0)
        expect, err = "different temperatures", UserInputError
    elif case == "unfinished":
        b = make_run(tmp_path / "b", finished=False)
        expect, err = "is not finished: 1 simulation(s) without done.json (windows/02)", UserInputError
    elif case == "no_analysis":
        b = make_run(tmp_path / "b")
        (b / "analysis" / "results.json").unlink()
        expect, err = "has no analysis yet", UserInputError
    elif case == "damaged":
        b = make_run(tmp_path / "b")
        p = b / "analysis" / "results.json"
        p.write_text(p.read_text()[: len(p.read_text()) // 2])          # cut short
        expect, err = "refusing to analyse damaged data", AnalysisError
    else:
        b = tmp_path / "empty"
        b.mkdir()
        expect, err = "is not a hydration run directory", UserInputError
    with pytest.raises(err, match=None) as ei:
        compare_dg(a, b)
    assert expect in str(ei.value)
    p = _cli(a, b)
    assert p.returncode != 0 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], p.stderr
