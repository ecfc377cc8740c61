"""``--leg-lambdas``: the endpoint legs' λ_intra given as a list, and windows added to a run later.

A leg window stores ΔU = E_ML − E_MM,intra per frame (``delta_u.csv``) and U(λ) = U_0 + λ·ΔU, so the analysis
evaluates every sample at every λ of the plan: a window added later needs no rerun of the others. Checked without
MD: the analysis of a run with a window added later equals that of a fresh run of all its windows; a resume with a
list holding every λ on disk and more runs only the added windows (the real workflow, with the unit runner and the
preparation replaced), each in a new directory, the others keeping theirs (and their seeds); a list that drops or
moves a λ on disk is refused in one line naming the list to give; plans written before the option resume; the
overlap warning names the list that adds the window; the command line refuses bad lists in one line.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mdi_mlmm.errors import UserInputError
from mdi_mlmm.protocol.plan import PLAN_NAME, added_leg_lambdas, check_leg_lambdas, load_or_create, make_plan
from tests.test_endpoint import T, gaussian_leg

from tests.test_leg_end import ETHANOL, SYSTEM
from tests.test_leg_end import _kw as _leg_end_kw


def _kw(**kw):
    """test_leg_end's plan keywords without its leg_windows (exclusive with leg_lambdas), unless given."""
    out = _leg_end_kw(**kw)
    if "leg_windows" not in kw:
        out.pop("leg_windows")
    return out


def _write_window(plan, phase, lam, leg):
    from mdi_mlmm.analysis.delta_u import write_delta_u

    d = plan.path(plan.leg_directory(phase, plan.leg_lambdas.index(lam)))
    d.mkdir(parents=True, exist_ok=True)
    write_delta_u(d / "delta_u.csv", leg.time_ps, leg.e_ml, leg.e_ml - leg.delta_u)


def test_analysis_with_a_window_added_later_equals_a_fresh_analysis_of_all(tmp_path, monkeypatch):
    from mdi_mlmm.analysis import report
    from tests.test_report_warnings import _synthetic_run

    load_windows = report.load_windows   # the MM windows are in the LAMMPS CSV layout (as test_endpoint.py)
    monkeypatch.setattr(report, "load_windows", lambda p, d: load_windows(dataclasses.replace(p, host="lammps"), d))
    every = [0.0, 0.25, 0.5, 1.0]
    data = {ph: dict(zip(every, gaussian_leg(mu, 0.5, every, n=300, seed=len(ph))))
            for ph, mu in (("water", -97010.0), ("gas", -97000.0))}
    kw = dict(host="gromacs", route="endpoint", dt_fs=2.0, leg_ps=0.3, leg_equil_ps=0.03, leg_sample_every=10)

    later = _synthetic_run(tmp_path / "later", **kw)                       # run with 0, 0.5, 1 ...
    for ph in data:
        for lam in later.leg_lambdas:
            _write_window(later, ph, lam, data[ph][lam])
    before = {p.relative_to(later.root): p.read_bytes() for p in later.root.glob("legs/*/*/delta_u.csv")}
    later, resumed = load_or_create(dataclasses.replace(later, leg_lambdas=every,   # ... then add 0.25
                                                        leg_window_ids=list(range(4))))
    assert resumed and later.leg_lambdas == every and later.leg_window_ids == [0, 3, 1, 2]
    assert later.leg_directory("gas", 1) == "legs/gas/03"
    for ph in data:
        _write_window(later, ph, 0.25, data[ph][0.25])
    assert all(later.root.joinpath(p).read_bytes() == b for p, b in before.items())   # the old windows untouched
    report.analyze(later.root, plots=False)

    fresh = _synthetic_run(tmp_path / "fresh", leg_lambdas=every, **kw)    # all four from the start
    assert fresh.leg_window_ids == [0, 1, 2, 3]
    for ph in data:
        for lam in every:
            _write_window(fresh, ph, lam, data[ph][lam])
    report.analyze(fresh.root, plots=False)

    a, b = (json.loads(p.path("analysis", "results.json").read_text()) for p in (later, fresh))
    assert a["legs"]["lambdas"] == b["legs"]["lambdas"] == every
    for ph in ("water", "gas"):
        assert [s["lambda"] for s in a[ph]["samples"]] == every and a[ph]["samples"] == b[ph]["samples"]
        for key in ("dA_MBAR", "dA_BAR"):
            assert a[ph][key] == pytest.approx(b[ph][key], rel=1e-12, abs=1e-12)
        assert np.allclose(a[ph]["overlap_matrix"], b[ph]["overlap_matrix"], atol=1e-12)
    assert a["dG_MBAR"] == pytest.approx(b["dG_MBAR"], rel=1e-12, abs=1e-12)


def _fake_workflow(monkeypatch, ran: list):
    """The endpoint workflow with its unit runner replaced (each unit records its directory and λ and writes
    done.json) and no preparation, model check or ΔU step."""
    from mdi_mlmm.workflow import endpoint, hydration

    def fake_unit(spec):
        out = Path(spec.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        ran.append((str(out.relative_to(out.parents[2])), getattr(spec, "lam", None), spec.seed))
        (out / "done.json").write_text("{}")
        return {}

    monkeypatch.setattr(hydration, "run_in_subprocess", fake_unit)
    monkeypatch.setattr(hydration, "settle_timesteps", lambda plan: plan)
    monkeypatch.setattr(hydration, "prepare_and_equilibrate", lambda plan: (SYSTEM, Path("/r/eq.gro")))
    monkeypatch.setattr(endpoint.registry, "resolve",
                        lambda m: SimpleNamespace(check_files=lambda: SimpleNamespace(check_other_process=lambda: 0)))
    monkeypatch.setattr(endpoint, "compute_delta_u", lambda *a, **k: [])
    return endpoint


def test_a_resume_with_added_lambdas_runs_only_the_added_windows(tmp_path, monkeypatch):
    ran = []
    endpoint = _fake_workflow(monkeypatch, ran)
    out = tmp_path / "run"
    endpoint.run_endpoint(make_plan(out, **_kw()), progress=False, analyze=False)
    legs = sorted(r for r in ran if r[0].startswith("legs"))
    assert [r[:2] for r in legs] == [(f"legs/{ph}/{k:02d}", lam) for ph in ("gas", "water")
                                     for k, lam in enumerate([0.0, 0.5, 1.0])]
    seeds = {r[0]: r[2] for r in legs}

    ran.clear()
    plan = make_plan(out, **_kw(leg_lambdas=[0, 0.25, 0.5, 0.75, 1]))
    endpoint.run_endpoint(plan, progress=False, analyze=False)
    assert sorted(r[:2] for r in ran) == [("legs/gas/03", 0.25), ("legs/gas/04", 0.75), ("legs/water/03", 0.25),
                                          ("legs/water/04", 0.75)]          # no MM window, no old leg window
    assert not set(seeds.values()) & {r[2] for r in ran}
    on_disk = json.loads((out / PLAN_NAME).read_text())
    assert (on_disk["leg_lambdas"], on_disk["leg_window_ids"]) == ([0, 0.25, 0.5, 0.75, 1], [0, 3, 1, 4, 2])
    from mdi_mlmm.workflow.endpoint import leg_specs

    specs = {s.out_dir: s for s in leg_specs(load_or_create(plan)[0], SYSTEM, Path("/r/eq.gro"))}
    for d, seed in seeds.items():                                           # each old window as it was planned
        assert specs[str(out / d)].seed == seed
    assert specs[str(out / "legs/gas/02")].lam == 1.0 and specs[str(out / "legs/gas/02")].steps == 300

    ran.clear()                                                             # the same list again: nothing runs
    endpoint.run_endpoint(make_plan(out, **_kw(leg_lambdas=[0, 0.25, 0.5, 0.75, 1])), progress=False,
                          analyze=False)
    assert ran == []


def test_a_list_that_drops_or_moves_a_lambda_on_disk_is_refused(tmp_path):
    out = tmp_path / "run"
    load_or_create(make_plan(out, **_kw(leg_windows=4)))                   # 0, 1/3, 2/3, 1
    for lams in ([0, 0.5, 1], [0, 0.3, 0.6667, 1], [0, 1 / 3, 0.5, 1]):
        with pytest.raises(UserInputError, match="different settings") as e:
            load_or_create(make_plan(out, **_kw(leg_lambdas=lams)))
        msg = str(e.value)
        assert "\n" not in msg and "leg_lambdas" in msg and "--leg-lambdas 0 0.333333 0.666667 1, to which" in msg
    # λ printed with 6 digits name the windows on disk (the overlap warning prints them so); their values stay
    plan, resumed = load_or_create(make_plan(out, **_kw(leg_lambdas=[0, 0.333333, 0.5, 0.666667, 1])))
    assert resumed and plan.leg_lambdas == [0, 1 / 3, 0.5, 2 / 3, 1] and plan.leg_window_ids == [0, 1, 4, 2, 3]
    with pytest.raises(UserInputError, match=r"--leg-lambdas 0 0.333333 0.5 0.666667 1, to which"):
        load_or_create(make_plan(out, **_kw(leg_windows=4)))               # the added window cannot go either
    with pytest.raises(UserInputError, match="leg_steps"):                  # other settings: refused as before
        load_or_create(make_plan(out, **_kw(leg_lambdas=[0, 1 / 3, 0.5, 0.6, 2 / 3, 1], leg_ps=0.4)))

    # a plan written before the option (no leg_window_ids) resumes as it is, and takes added windows
    old = tmp_path / "old"
    load_or_create(make_plan(old, **_kw()))
    d = json.loads((old / PLAN_NAME).read_text())
    del d["leg_window_ids"]
    (old / PLAN_NAME).write_text(json.dumps(d))
    plan, resumed = load_or_create(make_plan(old, **_kw()))
    assert resumed and plan.leg_lambdas == [0, 0.5, 1] and plan.leg_directory("water", 2) == "legs/water/02"
    plan, _ = load_or_create(make_plan(old, **_kw(leg_lambdas=[0, 0.5, 0.75, 1])))
    assert [plan.leg_directory("gas", k) for k in range(4)] == ["legs/gas/00", "legs/gas/01", "legs/gas/03",
                                                                 "legs/gas/02"]
    assert added_leg_lambdas([0, 0.5, 1], [], [0, 1]) is None
    assert added_leg_lambdas([0, 1 / 3, 1], [], [0, 0.3333330, 0.3333335, 1]) is None   # two λ for one window


def test_a_benchmark_continues_with_added_leg_lambdas(tmp_path):
    from mdi_mlmm.workflow.benchmark import check_settings

    base = {"model": "ani2x", "route": "endpoint", "leg_windows": 3, "leg_ps": 40.0}
    check_settings(tmp_path, base)                                          # started before the option
    check_settings(tmp_path, {**base, "leg_windows": None, "leg_lambdas": [0, 0.25, 0.5, 1]})
    with pytest.raises(UserInputError, match=r"leg_lambdas: \[0.0, 0.25, 0.5, 1.0\] on disk vs \[0.0, 0.5, 1.0\]"):
        check_settings(tmp_path, {**base, "leg_lambdas": None})
    for lams in (None, [0, 0.3, 0.5, 1]):                                   # dropped, moved: the list to give named
        with pytest.raises(UserInputError) as e:
            check_settings(tmp_path, {**base, "leg_windows": None, "leg_lambdas": lams})
        msg = str(e.value)
        assert "\n" not in msg and "(--leg-lambdas 0 0.25 0.5 1, to which λ may be added" in msg, msg
    check_settings(tmp_path, {**base, "leg_windows": None, "leg_lambdas": [0, 0.25, 0.5, 0.75, 1]})


def test_a_benchmark_with_added_leg_lambdas_reruns_its_finished_molecules(shared_dir, tmp_path):
    """A molecule finished before λ were added runs again (its run adds the windows); one finished with them
    all does not (fails before: finished runs were never run again, so they kept the old windows)."""
    from mdi_mlmm.workflow import benchmark as wb

    sel = wb.select(model="ani2x", ids=[ETHANOL])
    calls = []

    def run(cid, model, run_dir, progress, lams=(0.0, 0.5, 1.0)):
        calls.append(cid)
        (Path(run_dir) / "analysis").mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "analysis" / "results.json").write_text(json.dumps(
            {"model": "ani2x", "route": "endpoint", "dG_MBAR": {"value": -4.0, "error": 0.2},
             "legs": {"lambdas": list(lams)}}))

    base = {"model": "ani2x", "route": "endpoint", "leg_windows": 3, "leg_ps": 40.0}
    wb.run_benchmark(tmp_path, sel, run, settings=base, n_bootstrap=10, progress=False)
    assert calls == [ETHANOL]
    wb.run_benchmark(tmp_path, sel, run, settings=base, n_bootstrap=10, progress=False)
    assert calls == [ETHANOL]                                               # finished: not run again
    added = {**base, "leg_windows": None, "leg_lambdas": [0, 1 / 3, 0.5, 1]}
    wb.run_benchmark(tmp_path, sel, lambda *a: run(*a, lams=(0.0, 0.333333, 0.5, 1.0)), settings=added,
                     n_bootstrap=10, progress=False)
    assert calls == [ETHANOL] * 2                                           # the added window: run again
    wb.run_benchmark(tmp_path, sel, run, settings=added, n_bootstrap=10, progress=False)
    assert calls == [ETHANOL] * 2                                           # now finished with every λ


def test_overlap_warning_names_the_list_that_adds_a_window():
    from mdi_mlmm.analysis import endpoint

    leg = endpoint.estimate_leg(gaussian_leg(0.0, 6.0, [0.0, 0.25, 0.5, 1.0], n=400, seed=2), T, "gas")
    warn = [w for w in leg.warnings if "overlap between" in w]
    assert len(warn) == 1
    assert "overlap between λ = 0.5 and 1 is" in warn[0] and \
        "add a window there: --leg-lambdas 0 0.25 0.5 0.75 1 (the finished windows are kept)" in warn[0], warn
    # with 1/3 steps the printed list still names the windows on disk
    thirds = [float(x) for x in np.linspace(0, 1, 4)]
    leg = endpoint.estimate_leg(gaussian_leg(0.0, 9.0, thirds, n=400, seed=2), T, "gas")
    text = [w for w in leg.warnings if "overlap between" in w][0].split("--leg-lambdas ")[1].split(" (")[0]
    assert "0.333333" in text and "0.666667" in text
    lams, ids = added_leg_lambdas(thirds, [], check_leg_lambdas(text.split()))
    assert len(lams) == 5 and [x for x in lams if x in thirds] == thirds and sorted(ids) == [0, 1, 2, 3, 4]


def test_command_line_refuses_bad_leg_lambdas_in_one_line(tmp_path):
    from mdi_mlmm import HydrationFreeEnergy
    from tests.test_cli_errors import assert_one_error, run_cli

    with pytest.raises(UserInputError, match="not both"):                  # the API: one or the other
        HydrationFreeEnergy(freesolv_id=ETHANOL, route="endpoint", leg_windows=3, leg_lambdas=[0, 1])
    h = HydrationFreeEnergy(freesolv_id=ETHANOL, route="endpoint", leg_lambdas=(0, 0.2, 1), leg_ps=0.3,
                            leg_sample_every=10, windows=3, ns_per_window=0.001, sample_every=10)
    assert h.plan(tmp_path).leg_lambdas == [0, 0.2, 1]
    assert HydrationFreeEnergy(freesolv_id=ETHANOL, leg_lambdas=[0, 1]).ignored_settings() == ["--leg-lambdas"]

    hyd = ["hydration", "--freesolv", ETHANOL, "--route", "endpoint", "--out", "never"]
    assert_one_error(run_cli(*hyd, "--leg-lambdas", "0.1", "0.5", "1"), "--leg-lambdas", "start at 0", "end at 1")
    assert_one_error(run_cli(*hyd, "--leg-lambdas", "0", "0.6", "0.5", "1"), "increase strictly", "0.6 then 0.5")
    assert_one_error(run_cli(*hyd, "--leg-lambdas", "0", "0.5"), "end at 1")
    assert_one_error(run_cli(*hyd, "--leg-lambdas", "0", "x", "1"), "--leg-lambdas", "invalid float value")
    assert_one_error(run_cli(*hyd, "--leg-windows", "3", "--leg-lambdas", "0", "1"),
                     "--leg-lambdas", "not allowed with argument --leg-windows")
    assert_one_error(run_cli("benchmark", "freesolv", "--ids", ETHANOL, "--route", "endpoint", "--dry-run",
                             "--leg-windows", "3", "--leg-lambdas", "0", "1"),
                     "not allowed with argument --leg-windows")
    assert_one_error(run_cli("benchmark", "freesolv", "--ids", ETHANOL, "--route", "endpoint", "--dry-run",
                             "--leg-lambdas", "0", "0.5", "0.5", "1"), "increase strictly", "0.5 then 0.5")
