"""bench/bench_cross_host_dg.py (issue 12, items 5 and 6): the command line's plan with ``--dry-run``, and the
table built from run directories laid out as the script lays them out (DIR/ID/gromacs, DIR/ID/lammps).

The finished runs are those of tests/test_compare_dg.py (plan, results and ``done.json`` from the real
writers); what is checked is the plumbing — the numbers in the table are compare_dg's own, the σ target is
applied per estimator and host, unfinished molecules are listed as pending — not a stored snapshot.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from mdi_mlmm import compare_dg
from tests.test_compare_dg import make_run

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "bench_cross_host_dg.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cross_host_dg", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _script(shared_dir, *args):
    env = dict(os.environ, MDI_MLMM_SHARED=str(shared_dir))
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, shared_dir):
    out = tmp_path / "bench"
    p = _script(shared_dir, "--model", "mm", "--ids", "mobley_2310185", "mobley_525934", "--out", out, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "ethanol" in p.stdout and "methanethiol" in p.stdout
    # the defaults: 0.2 ns, 20 ps, 2 fs with X–H constrained on both hosts, the one physical model of both
    assert "20 windows × (10000 + 100000 steps) at 2 fs, X–H bonds constrained" in p.stdout
    cmds = [ln.split() for ln in p.stdout.splitlines() if ln.strip().startswith("mdi-mlmm hydration")]
    # molecule by molecule, GROMACS before LAMMPS, each into DIR/ID/HOST with the same protocol
    assert [(c[c.index("--freesolv") + 1], c[c.index("--host") + 1], c[-1]) for c in cmds] == [
        (fid, host, str(out / fid / host)) for fid in ("mobley_2310185", "mobley_525934") for host in ("gromacs", "lammps")]
    assert len({" ".join(c[c.index("--model"):-2]) for c in cmds}) == 1
    assert "--ns-per-window 0.2" in " ".join(cmds[0]) and "--model mm" in " ".join(cmds[0])
    assert "--protocol default" in " ".join(cmds[0]) and "--constraints h-bonds" in " ".join(cmds[0])
    # no finished window to time yet: the reference rates of one MM window
    assert p.stdout.count("reference rate") == 2 and "cost in all" in p.stdout
    assert not out.exists()

    p = _script(shared_dir, "--model", "mm", "--ids", "mobley_2310185", "--out", out, "--constraints", "none",
                "--dry-run")                                              # the flexible protocol of before: 1 fs
    assert p.returncode == 0, p.stderr
    assert "20 windows × (20000 + 200000 steps) at 1 fs, X–H bonds flexible" in p.stdout
    assert "--constraints none" in p.stdout and "--dt" not in p.stdout

    p = _script(shared_dir, "--ids", "mobley_0", "--out", out, "--dry-run")
    assert p.returncode == 2 and p.stderr.strip().splitlines() == ["error: unknown FreeSolv id 'mobley_0'"]


def test_table_from_finished_and_pending_runs(tmp_path, shared_dir, monkeypatch):
    monkeypatch.setenv("MDI_MLMM_SHARED", str(shared_dir))
    b = _bench()
    eth, mesh, ace = "mobley_2310185", "mobley_525934", "mobley_3867265"
    g = make_run(tmp_path / eth / "gromacs", host="gromacs", name=eth,
                 dG={"TI": (-4.00, 0.10), "MBAR": (-4.10, 0.10), "BAR": (-4.10, 0.10)})
    l_ = make_run(tmp_path / eth / "lammps", host="lammps", name=eth,
                  dG={"TI": (-4.22, 0.20), "MBAR": (-4.66, 0.12), "BAR": (-4.10, 0.12)})
    make_run(tmp_path / mesh / "gromacs", host="gromacs", smiles="CS", name=mesh)      # LAMMPS not started
    make_run(tmp_path / ace / "gromacs", host="gromacs", smiles="CC(=O)C", name=ace)
    make_run(tmp_path / ace / "lammps", host="lammps", smiles="CC(=O)C", name=ace, finished=False)
    for s in (60.0, 90.0):
        b._log_segment(tmp_path, eth, "gromacs", {"wall_s": s, "rc": 0})

    rows = b.collect(tmp_path, [eth, mesh, ace], "mm")
    assert [m["status"] for m in rows] == ["done", "pending", "pending"]
    ref = compare_dg(g, l_).to_json()
    assert rows[0]["comparison"]["rows"] == ref["rows"] and rows[0]["all_agree"] is ref["all_agree"]
    assert rows[0]["runs"]["gromacs"]["wall_s"] == 150.0 and rows[0]["runs"]["lammps"]["wall_s"] is None
    assert rows[0]["runs"]["lammps"]["sigma_target_met"] == {"TI": False, "MBAR": True, "BAR": True}
    assert rows[0]["runs"]["gromacs"]["settings"]["windows"] == 3
    assert rows[2]["runs"]["lammps"]["windows_done"] == 2 and not rows[2]["runs"]["lammps"]["finished"]
    json.dumps(rows, allow_nan=False)

    table = b.markdown(rows).splitlines()
    assert len(table) == 2 + 3 + 2
    cells = {ln.split("|")[2].strip(): [c.strip() for c in ln.split("|")[1:-1]] for ln in table[2:5]}
    for r in ref["rows"]:
        c = cells[r["estimator"]]
        assert c[4] == f"{r['ddG']['value']:.2f} ± {r['ddG']['error']:.2f}"
        assert c[6] == ("yes" if r["agree_within_2sigma"] else "**NO**")
    assert cells["TI"][0] == "ethanol (mobley_2310185)" and cells["TI"][8] == "2 min / —"
    assert [cells[e][7] for e in ("TI", "MBAR", "BAR")] == ["no", "yes", "yes"]       # σ_L(TI) = 0.20 > 0.15
    assert "methanethiol (mobley_525934) | pending: GROMACS finished, LAMMPS not started" in table[5]
    assert "acetone (mobley_3867265) | pending: GROMACS finished, LAMMPS 2/3 windows" in table[6]
