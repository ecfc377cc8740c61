"""The scripts in examples/ run as a user runs them (own process, tiny settings) and say what they should."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BIN = str(Path(sys.executable).parent)  # mdi-mlmm of this environment, for the shell example
HAVE_GMX = any(Path(p, "gmx").exists() for p in os.environ["PATH"].split(":"))

# ANI-2x ethanol at its minimum (tests/test_workflow.py): -97258.06 kcal/mol
ANI2X_ETHANOL_MIN_KCAL = -97258.06
KJ_PER_KCAL = 4.184


def run_example(args, cwd, timeout, env=None):
    e = dict(os.environ, PATH=BIN + ":" + os.environ["PATH"], PYTHON=sys.executable,
             **(env or {}))
    cmd = [sys.executable, str(EXAMPLES / args[0]), *map(str, args[1:])] if args[0].endswith(".py") else \
        ["bash", str(EXAMPLES / args[0]), *map(str, args[1:])]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return r.stdout


def mdi_gmx():
    from mdi_mlmm.hosts.gromacs.build import gmx_path

    if gmx_path() is None:
        pytest.fail("no MDI-enabled GROMACS build: run `mdi-mlmm gromacs build` first")


def test_every_example_is_tested():
    tested = set(re.findall(r'"([a-z_]+\.(?:py|sh))"', Path(__file__).read_text()))
    scripts = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")}
    assert scripts <= tested, f"examples without a test: {sorted(scripts - tested)}"


_PREPARED: list = []


@pytest.fixture(scope="module", params=["lammps", "gromacs"])
def hydration_run(request, tmp_path_factory):
    """examples/hydration_api.py, plain MM (tiny: 3 windows × 0.2 ps) on each host; (run dir, stdout)."""
    if not HAVE_GMX:
        pytest.skip("needs Debian gromacs (gmx) for preparation/equilibration")
    tmp = tmp_path_factory.mktemp(f"hydration_{request.param}")
    run = tmp / "run"
    if _PREPARED:  # the second host starts from the first one's prepared and equilibrated system (as a resume)
        for d in ("system", "equil"):
            shutil.copytree(_PREPARED[0] / d, run / d)
    out = run_example(["hydration_api.py", run, "--model", "mm", "--host", request.param, "--tiny"], tmp,
                      timeout=1200)
    _PREPARED.append(run)
    return run, out


def test_hydration_through_the_api(hydration_run):
    run, out = hydration_run
    res = json.loads((run / "analysis" / "results.json").read_text())
    mbar = res["dG_MBAR"]
    assert f"ΔG_hyd (MBAR) = {mbar['value']:.2f} ± {mbar['error']:.2f} kcal/mol" in out, out
    assert math.isfinite(mbar["value"]) and res["windows"] == 3 and res["model"] == "mm"
    assert "ΔG MBAR" in out and "FreeSolv exp." in out        # the summary the command line prints
    assert "ΔG_reorg" not in out                             # plain MM: no reorganization term
    assert (run / "analysis" / "report.md").exists() and (run / "analysis" / "dhdl.png").exists()


def test_alchemlyb_reads_our_windows(hydration_run, tmp_path):
    """alchemlyb's own parsers (GROMACS dhdl.xvg) and pandas (LAMMPS csv) give the numbers of mdi-mlmm analyze."""
    run, _ = hydration_run
    out = run_example(["alchemlyb_analysis.py", run, "--plot", tmp_path / "overlap.png"], tmp_path, timeout=600)
    res = json.loads((run / "analysis" / "results.json").read_text())
    for k in ("MBAR", "TI"):
        v = res[f"dG_{k}"]
        assert f"ΔG_hyd ({k}) = {v['value']:.2f} ± {v['error']:.2f} kcal/mol" in out, (k, out)
    assert len(re.findall(r"^window +\d+ ", out, re.M)) == 3
    assert (tmp_path / "overlap.png").stat().st_size > 1000


def test_cross_engine_comparison(tmp_path):
    engines = []
    from mdi_mlmm.hosts.gromacs.build import gmx_path

    if gmx_path() is None:
        engines = ["--engines", "lammps,openmm"]
    out = run_example(["compare_engines.py", "--workdir", tmp_path / "work", *engines], tmp_path, timeout=900)
    assert "cross-engine comparison" in out
    spread = {t: float(r) for t, r in re.findall(r"^(\S+) +spread over .*\(([-+.e\d]+) relative\)$", out, re.M)}
    assert set(spread) == {"E_ML", "E_MM", "E_total"}, out
    assert spread["E_total"] < 1e-5 and spread["E_ML"] < 1e-6, spread


def test_coupled_run_by_hand(tmp_path):
    """Engine and mdrun started separately (two terminals in the script's comments), 20 steps of ANI-2x/MM."""
    mdi_gmx()
    run_example(["coupled_by_hand.sh", tmp_path / "md"], tmp_path, timeout=600, env={"STEPS": "20"})
    d = tmp_path / "md"
    assert "EXIT received after 21 model evaluations" in (d / "engine.log").read_text()
    log = (d / "md.log").read_text()
    names, values = re.search(r"^( +.*E_ML.*)\n(.*)$", log, re.M).groups()  # the first energies of md.log
    cols = [names[i:i + 15].strip() for i in range(0, len(names), 15)]      # GROMACS: 15 characters a column
    e_ml = float(values.split()[cols.index("E_ML")]) / KJ_PER_KCAL
    assert ANI2X_ETHANOL_MIN_KCAL - 1 < e_ml < ANI2X_ETHANOL_MIN_KCAL + 15, e_ml


def test_custom_model_through_the_registry(tmp_path):
    """register_model in this process; python:FILE:FACTORY in an engine of its own (md on LAMMPS)."""
    out = run_example(["custom_model.py", tmp_path / "md", "--steps", "50"], tmp_path, timeout=600)
    assert "springs on ethanol: E = 0 Hartree at the start" in out, out
    s = json.loads((tmp_path / "md" / "summary.json").read_text())
    assert s["model"] == f"python:{EXAMPLES / 'custom_model.py'}:make_potential" and s["steps"] == 50
    assert s["ml_calls"] >= 51 and 0 < s["E_ML_final_hartree"] < 0.05, s   # springs near their rest lengths
