"""The FreeSolv benchmark: selection and filters, statistics against hand-computed values, the
outputs and failures, and a tiny end-to-end run (2 molecules, plain MM on GROMACS) that resumes
without redoing anything."""
from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm.analysis import benchmark as bench
from mdi_mlmm.analysis.results import Estimate
from mdi_mlmm.errors import UserInputError, WorkflowError
from mdi_mlmm.workflow import benchmark as wb

ETHANOL, METHANOL, BROMOMETHANE = "mobley_2310185", "mobley_1636752", "mobley_8983100"


@pytest.fixture
def freesolv_data(shared_dir):
    return shared_dir


# ------------------------------------------------------------------------------ selection
def test_ids_keep_their_order_and_unsupported_elements_are_skipped_with_one_line(freesolv_data, caplog):
    with caplog.at_level(logging.WARNING, logger="mdi_mlmm.workflow.benchmark"):
        sel = wb.select(model="ani2x", ids=[METHANOL, BROMOMETHANE, ETHANOL, METHANOL])
    assert sel.ids == [METHANOL, ETHANOL]                      # given order, duplicate dropped
    assert [s["id"] for s in sel.skipped] == [BROMOMETHANE]
    assert "Br" in sel.skipped[0]["reason"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and BROMOMETHANE in lines[0] and "\n" not in lines[0]
    # plain MM describes bromine: nothing skipped
    assert wb.select(model="mm", ids=[BROMOMETHANE]).ids == [BROMOMETHANE]


def test_unknown_id_and_no_choice_are_one_line_errors(freesolv_data):
    with pytest.raises(UserInputError, match="unknown FreeSolv id"):
        wb.select(model="mm", ids=["mobley_0"])
    with pytest.raises(UserInputError, match="exactly one"):
        wb.select(model="mm", ids=[ETHANOL], subset=3)
    with pytest.raises(UserInputError, match="exactly one"):
        wb.select(model="mm")


def test_element_and_size_filters(freesolv_data):
    sel = wb.select(model="mm", all=True, filters=wb.Filters(wb.parse_elements("c, h"), None, 2))
    # FreeSolv's hydrocarbons with at most 2 heavy atoms: methane, ethane, ethene
    assert {m.smiles for m in sel.molecules} == {"C", "CC", "C=C"}
    assert sel.description["pool"] == 3 and sel.description["database"] == 642
    sel = wb.select(model="mm", ids=[ETHANOL, METHANOL], filters=wb.Filters(None, 3, None))
    assert sel.ids == [ETHANOL] and "2 heavy atoms < --min-heavy-atoms 3" in sel.skipped[0]["reason"]


def test_subset_is_reproducible_with_its_seed_and_respects_filters_and_model(freesolv_data):
    f = wb.Filters(wb.parse_elements("C,H,N,O,F,Cl,S,Br"), None, 8)
    a = wb.select(model="ani2x", subset=6, seed=11, filters=f)
    b = wb.select(model="ani2x", subset=6, seed=11, filters=f)
    c = wb.select(model="ani2x", subset=6, seed=12, filters=f)
    assert a.ids == b.ids and len(a.ids) == 6 and a.ids != c.ids
    for m in a.molecules + c.molecules:
        assert set(m.elements) <= set("C H N O F Cl S".split()) and m.heavy_atoms <= 8   # Br: not for ani2x
    assert a.description["outside_model"] > 0 and a.skipped == []   # a draw skips silently, counted
    # more than qualify: all of them
    assert len(wb.select(model="mm", subset=50, filters=wb.Filters(frozenset("CH"), None, 2)).ids) == 3


def test_an_ion_is_skipped_for_ani_but_not_for_mm(tmp_path, monkeypatch, caplog):
    """A FreeSolv-format database with an ion (FreeSolv itself has none) through the real loader."""
    db = {ETHANOL: {"smiles": "CCO", "iupac": "ethanol", "expt": -5.0, "d_expt": 0.6, "calc": -3.394,
                    "d_calc": 0.02},
          "mobley_1": {"smiles": "[NH4+]", "iupac": "ammonium", "expt": -80.0, "d_expt": 1.0, "calc": -79.0,
                       "d_calc": 0.1}}
    (tmp_path / "freesolv").mkdir()
    (tmp_path / "freesolv" / "database.json").write_text(json.dumps(db))
    monkeypatch.setenv("MDI_MLMM_SHARED", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="mdi_mlmm.workflow.benchmark"):
        sel = wb.select(model="ani2x", ids=["mobley_1", ETHANOL])
    assert sel.ids == [ETHANOL] and "net charge +1" in sel.skipped[0]["reason"]
    assert len(caplog.records) == 1
    assert wb.select(model="mm", ids=["mobley_1"]).ids == ["mobley_1"]
    assert wb.select(model="ani2x", all=True).description["outside_model"] == 1


# ------------------------------------------------------------------------------ statistics
def test_statistics_against_hand_computed_values():
    calc, expt = [1.0, 2.0, 3.0, 5.0], [1.0, 1.0, 4.0, 4.0]
    s = bench.error_stats(calc, expt, n_bootstrap=3000, seed=7)
    # errors 0, 1, -1, 1: MAE 3/4, RMSE sqrt(3/4), mean signed 1/4; Pearson r² = 7.5² / (8.75 · 9) = 5/7
    assert s.n == 4
    assert s.mae.value == pytest.approx(0.75, abs=1e-12)
    assert s.rmse.value == pytest.approx(math.sqrt(0.75), abs=1e-12)
    assert s.mse.value == pytest.approx(0.25, abs=1e-12)
    assert s.r2.value == pytest.approx(5 / 7, abs=1e-12)
    for iv in (s.mae, s.rmse, s.mse, s.r2):
        assert iv.low <= iv.value <= iv.high and iv.low < iv.high
    assert 0 <= s.mae.low and s.mae.high <= 1.0      # |error| is at most 1 in every resample
    assert bench.error_stats(calc, expt, n_bootstrap=3000, seed=7) == s     # deterministic with the seed
    # on 20 continuous values the intervals move with the seed, the point estimates do not
    rng = np.random.default_rng(0)
    x = rng.normal(-4, 3, 20)
    y = x + rng.normal(0.5, 1.0, 20)
    a, b = bench.error_stats(y, x, seed=1), bench.error_stats(y, x, seed=2)
    assert a == bench.error_stats(y, x, seed=1) and a.mae.value == b.mae.value and a.mae.low != b.mae.low
    assert a.mae.value == pytest.approx(np.mean(np.abs(y - x))) and a.r2.value == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2)
    for iv in (a.mae, a.rmse, a.mse, a.r2):
        assert iv.low < iv.value < iv.high
    # a perfect method: all zero, R² = 1
    p = bench.error_stats([1.0, 2.0, 4.0], [1.0, 2.0, 4.0], seed=1)
    assert (p.mae.value, p.mae.high, p.r2.value) == (0.0, 0.0, pytest.approx(1.0))
    # R² needs 3 molecules; no molecule, no statistics
    assert math.isnan(bench.error_stats([1.0, 2.0], [0.0, 3.0]).r2.value)
    assert bench.error_stats([], []).n == 0


def test_statistics_are_over_the_finished_molecules_gaff_included():
    def row(i, status, expt, gaff, mm=None):
        r = bench.Row(id=f"m{i}", smiles="C", expt=Estimate(expt, 0.6), status=status)
        r.values["gaff"] = Estimate(gaff, 0.02)
        if mm is not None:
            r.values["mm"] = Estimate(mm, 0.1)
        return r

    rows = [row(0, "done", -5.0, -3.0, -4.0), row(1, "done", -1.0, 0.0, -1.5), row(2, "done", 2.0, 2.5, 2.0),
            row(3, "failed", -9.0, 9.0), row(4, "pending", -9.0, 9.0)]
    st = {s.method: s for s in bench.method_stats(rows, n_bootstrap=200, seed=0)}
    assert set(st) == {"gaff", "mm"} and st["gaff"].n == 3 and st["mm"].n == 3
    assert st["gaff"].mae.value == pytest.approx((2.0 + 1.0 + 0.5) / 3)     # rows 3 and 4 left out
    assert st["mm"].mae.value == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_terms_from_results_direct_mm_and_endpoint():
    ml = {"model": "ani2x", "dG_MBAR": {"value": -4.0, "error": 0.2}, "dG_TI": {"value": -4.1, "error": 0.3},
          "dG_MBAR_plus_reorg": {"value": -2.5, "error": 0.3}}
    t = bench.terms_from_results(ml, "MBAR")
    assert (t["ml"].value, t["ml_reorg"].value, t["mm"]) == (-4.0, -2.5, None)
    assert bench.terms_from_results(ml, "TI")["ml"].value == -4.1
    mm = bench.terms_from_results({"model": "mm", "dG_MBAR": {"value": -3.0, "error": 0.1}})
    assert (mm["mm"].value, mm["ml"]) == (-3.0, None)
    ep = bench.terms_from_results(dict(ml, route="endpoint", dG_MM={"value": -3.3, "error": 0.1},
                                       warnings=["water leg: overlap 0.01"]))
    assert ep["mm"].value == -3.3 and ep["ml"].value == -4.0 and ep["warnings"] == ["water leg: overlap 0.01"]
    # how each run was made, from the fields results.json records
    how = dict(ml, protocol="default", constraints="none", dt_fs=1.0, dtype="float32")
    assert bench.terms_from_results(how)["run"] == "protocol default, X–H none at 1 fs, ML precision float32"
    assert bench.terms_from_results(dict(how, route="endpoint", legs={"dt_fs": 2.0, "mm_dt_fs": 2.0,
                                                                      "constraints": "h-bonds"}))["run"] == \
        "protocol default, legs X–H h-bonds at 2 fs, MM windows X–H h-bonds at 2 fs, ML precision float32"
    assert bench.terms_from_results(ml)["run"] == "protocol unknown, X–H unknown at unknown, ML precision unknown"
    # a direct run whose neighbouring windows barely overlap is flagged
    assert "overlap 0.001" in bench.terms_from_results(dict(ml, min_neighbour_overlap=0.001))["warnings"][0]
    assert bench.terms_from_results(dict(ml, min_neighbour_overlap=0.2))["warnings"] == []


# ------------------------------------------------------------------------------ the run loop
def _fake_results(run_dir: Path, value: float, **how):
    """A finished run: the results.json a plain-MM hydration run writes (the keys the table reads; ``how``:
    how it was made, as results.json records it since it does)."""
    (run_dir / "analysis").mkdir(parents=True)
    (run_dir / "analysis" / "results.json").write_text(json.dumps(
        {"model": "mm", "dG_TI": {"value": value, "error": 0.3}, "dG_MBAR": {"value": value, "error": 0.2},
         "dG_BAR": {"value": value, "error": 0.2}, **how}))


def test_a_failing_molecule_is_listed_with_its_error_and_retried_on_rerun(freesolv_data, tmp_path):
    sel = wb.select(model="mm", ids=[ETHANOL, METHANOL, "mobley_9055303"])
    calls = []

    def run(cid, model, run_dir, progress):
        calls.append(cid)
        if cid == METHANOL:
            raise WorkflowError("1 unit(s) failed; rerun the same command to retry them: window 02 exploded")
        _fake_results(Path(run_dir), -4.0)

    settings = {"model": "mm", "host": "gromacs", "workers": 1}
    res = wb.run_benchmark(tmp_path, sel, run, settings=settings, n_bootstrap=100, progress=False)
    assert calls == [ETHANOL, METHANOL, "mobley_9055303"]
    assert [r.status for r in res.rows] == ["done", "failed", "done"]
    assert "window 02 exploded" in res.rows[1].error
    report = (tmp_path / "report.md").read_text()
    assert "## Failed" in report and "window 02 exploded" in report and "**Incomplete**" in report
    table = (tmp_path / "table.csv").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith(METHANOL) and "failed" in table[2]
    assert res.stats[0].method == "gaff" and res.stats[0].n == 2           # GAFF on the finished molecules
    assert (tmp_path / "molecules" / METHANOL / "mm.error").exists()

    # another protocol in the same directory is refused; how to run may change
    with pytest.raises(UserInputError, match="other settings"):
        wb.run_benchmark(tmp_path, sel, run, settings=dict(settings, host="lammps"), progress=False)
    calls.clear()

    def run_ok(cid, model, run_dir, progress):
        calls.append(cid)
        _fake_results(Path(run_dir), -5.5, dt_fs=2.0, protocol="freesolv", constraints="h-bonds", dtype=None)

    res = wb.run_benchmark(tmp_path, sel, run_ok, settings=dict(settings, workers=4), n_bootstrap=100, progress=False)
    assert calls == [METHANOL]                                               # only the failed one again
    assert [r.status for r in res.rows] == ["done"] * 3 and not res.failed
    assert not (tmp_path / "molecules" / METHANOL / "mm.error").exists()
    report = (tmp_path / "report.md").read_text()
    assert "## Failed" not in report
    # the settings block says how each run was made, as its results.json records it (older ones: unknown)
    assert "- mm runs: protocol freesolv, X–H h-bonds at 2 fs (1 run)" in report
    assert "- mm runs: protocol unknown, X–H unknown at unknown (2 runs)" in report
    assert res.rows[1].runs == {"mm": "protocol freesolv, X–H h-bonds at 2 fs"}
    assert (tmp_path / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_labels():
    assert wb.run_labels("mm", True) == [("mm", "mm")]
    assert wb.run_labels("ani2x", False) == [("ml", "ani2x")]
    assert wb.run_labels("ani2x", True) == [("ml", "ani2x"), ("mm", "mm")]
    assert wb.run_labels("ani2x", True, "endpoint") == [("ml", "ani2x")]     # the route has its MM term


def test_api_refuses_unknown_settings_and_estimators(freesolv_data):
    from mdi_mlmm.api import FreeSolvBenchmark, hydration_defaults

    with pytest.raises(UserInputError, match="unknown setting"):
        FreeSolvBenchmark(ids=[ETHANOL], nsperwindow=1)
    with pytest.raises(UserInputError, match="estimator"):
        FreeSolvBenchmark(ids=[ETHANOL], estimator="FEP")
    with pytest.raises(UserInputError, match="unknown host"):
        FreeSolvBenchmark(ids=[ETHANOL], host="amber")
    b = FreeSolvBenchmark(ids=[ETHANOL], md_seed=5, ns_per_window=0.5)
    d = hydration_defaults()
    assert b.settings["seed"] == 5 and b.settings["ns_per_window"] == 0.5
    assert all(b.settings[k] == d[k] for k in b.settings if k not in ("seed", "ns_per_window"))
    assert FreeSolvBenchmark(ids=[ETHANOL], route="endpoint").settings["route"] == "endpoint"
    with pytest.raises(UserInputError, match="MBAR and BAR"):
        FreeSolvBenchmark(ids=[ETHANOL], route="endpoint", estimator="TI")


# ------------------------------------------------------------------------------ resume: split decoupling
def _planning_runs(monkeypatch, attr: str = "split_decoupling"):
    """Each molecule's hydration run only plans (plan.json: written or resumed, as a real run does first) and
    fails, so it stays unfinished; returns [(id, ``attr`` of the plan, resumed)]."""
    from mdi_mlmm.api import HydrationFreeEnergy
    from mdi_mlmm.protocol.plan import load_or_create

    seen = []

    def run(self, out, *, progress=True):
        plan, resumed = load_or_create(self.plan(out))
        seen.append((self.freesolv_id, getattr(plan, attr), resumed))
        raise WorkflowError("planned only")

    monkeypatch.setattr(HydrationFreeEnergy, "run", run)
    return seen


def _bench(ids, **kw):
    from mdi_mlmm.api import FreeSolvBenchmark

    settings = dict(model="mm", host="gromacs", windows=4, ns_per_window=0.001, sample_every=10, workers=1,
                    bootstrap=10)
    return FreeSolvBenchmark(ids=ids, **dict(settings, **kw))


def _stored(out, key: str = "split_decoupling"):
    return json.loads((out / wb.SETTINGS_FILE).read_text())[key]


def test_a_benchmark_started_unsplit_goes_on_unsplit_without_the_option(freesolv_data, tmp_path, monkeypatch):
    """As ``mdi-mlmm hydration``: --no-split-decoupling not given again on a rerun = as the benchmark started
    (its molecules planned so far and those it adds); only the other value asked for is refused, in one line."""
    seen = _planning_runs(monkeypatch)
    out = tmp_path / "b"
    _bench([ETHANOL], split_decoupling=False).run(out, progress=False)
    assert seen == [(ETHANOL, False, False)] and _stored(out) is False
    seen.clear()
    _bench([ETHANOL, METHANOL]).run(out, progress=False)                  # no option: goes on unsplit
    assert seen == [(ETHANOL, False, True), (METHANOL, False, False)] and _stored(out) is False
    with pytest.raises(UserInputError) as e:
        _bench([ETHANOL], split_decoupling=True).run(out, progress=False)
    msg = str(e.value)
    assert "split_decoupling: False on disk vs True now" in msg and "without split_decoupling=True" in msg
    assert "\n" not in msg


def test_a_benchmark_from_before_the_option_goes_on_as_its_runs_were_planned(freesolv_data, tmp_path, monkeypatch):
    """settings.json and plan.json without split_decoupling (both written before the option): the planned
    runs ran unsplit; a rerun without the option keeps them so and plans the molecules it adds alike, and
    --no-split-decoupling is what they ran with, so it is accepted too."""
    from mdi_mlmm.protocol.plan import PLAN_NAME

    seen = _planning_runs(monkeypatch)
    out = tmp_path / "b"
    _bench([ETHANOL], split_decoupling=False).run(out, progress=False)
    for p in (out / wb.SETTINGS_FILE, out / "molecules" / ETHANOL / "mm" / PLAN_NAME):
        d = json.loads(p.read_text())
        del d["split_decoupling"]
        p.write_text(json.dumps(d))
    seen.clear()
    _bench([ETHANOL, METHANOL]).run(out, progress=False)
    assert seen == [(ETHANOL, False, True), (METHANOL, False, False)] and _stored(out) is False
    d = json.loads((out / wb.SETTINGS_FILE).read_text())
    del d["split_decoupling"]
    (out / wb.SETTINGS_FILE).write_text(json.dumps(d))
    _bench([ETHANOL], split_decoupling=False).run(out, progress=False)


def test_the_benchmark_settings_check_compares_what_split_decoupling_makes(tmp_path):
    """A benchmark started without the option (split on GROMACS, unsplit on LAMMPS) accepts the value it ran
    with when asked for, and refuses the other one in one line that names --no-split-decoupling."""
    s = {"model": "mm", "host": "gromacs", "windows": None, "route": "direct", "split_decoupling": None}
    wb.check_settings(tmp_path, s)
    assert wb.check_settings(tmp_path, dict(s, split_decoupling=True))["split_decoupling"] is True
    assert wb.check_settings(tmp_path, s)["split_decoupling"] is True                   # kept, not asked
    with pytest.raises(UserInputError, match=r"split_decoupling: True on disk vs False now.*without "
                                             r"--no-split-decoupling: it ran split") as e:
        wb.check_settings(tmp_path, dict(s, split_decoupling=False))
    assert "\n" not in str(e.value)
    wb.check_settings(tmp_path / "lammps", dict(s, host="lammps"))
    wb.check_settings(tmp_path / "lammps", dict(s, host="lammps", split_decoupling=False))


# ------------------------------------------------------------------------------ resume: HMR, defaults
def test_a_benchmark_started_with_hmr_goes_on_with_it_without_the_option(freesolv_data, tmp_path, monkeypatch):
    """--mass-repartition not given again on a rerun = as the benchmark started (the molecules it planned and
    those it adds, at its default 4 fs); an asked other value (1: off) is refused in one line naming the option."""
    seen = _planning_runs(monkeypatch, "mass_repartition")
    out = tmp_path / "b"
    _bench([ETHANOL], constraints="h-bonds", mass_repartition=3.0).run(out, progress=False)
    assert seen == [(ETHANOL, 3.0, False)] and _stored(out, "mass_repartition") == 3.0
    seen.clear()
    _bench([ETHANOL, METHANOL], constraints="h-bonds").run(out, progress=False)
    assert seen == [(ETHANOL, 3.0, True), (METHANOL, 3.0, False)] and _stored(out, "mass_repartition") == 3.0
    _bench([ETHANOL], constraints="h-bonds", dt_fs=4.0).run(out, progress=False)   # the 4 fs it ran with
    for other in (1, 2.0):
        with pytest.raises(UserInputError) as e:
            _bench([ETHANOL], constraints="h-bonds", mass_repartition=other).run(out, progress=False)
        msg = str(e.value)
        assert "mass_repartition: 3.0 on disk vs" in msg and "--mass-repartition 3 or without it" in msg
        assert "\n" not in msg


def test_hmr_off_is_none_or_1_and_a_benchmark_from_before_the_option_ran_without(freesolv_data, tmp_path,
                                                                                  monkeypatch):
    """A benchmark started without HMR continues with --mass-repartition 1 (off too) and without it; one whose
    settings.json and plan.json were written before the option ran without HMR, so HMR asked now is refused."""
    from mdi_mlmm.protocol.plan import PLAN_NAME

    seen = _planning_runs(monkeypatch, "mass_repartition")
    out = tmp_path / "b"
    _bench([ETHANOL], constraints="h-bonds").run(out, progress=False)
    _bench([ETHANOL], constraints="h-bonds", mass_repartition=1).run(out, progress=False)
    _bench([ETHANOL], constraints="h-bonds").run(out, progress=False)
    assert seen == [(ETHANOL, None, False)] + [(ETHANOL, None, True)] * 2
    for p in (out / wb.SETTINGS_FILE, out / "molecules" / ETHANOL / "mm" / PLAN_NAME):
        d = json.loads(p.read_text())
        del d["mass_repartition"]
        p.write_text(json.dumps(d))
    with pytest.raises(UserInputError, match=r"mass_repartition: None on disk vs 3.0 now.*without "
                                             r"--mass-repartition: its runs kept the hydrogen masses") as e:
        _bench([ETHANOL, METHANOL], constraints="h-bonds", mass_repartition=3.0).run(out, progress=False)
    assert "\n" not in str(e.value)
    seen.clear()
    _bench([ETHANOL, METHANOL], constraints="h-bonds").run(out, progress=False)
    assert seen == [(ETHANOL, None, True), (METHANOL, None, False)]


def test_a_resume_may_ask_for_what_the_defaults_made(freesolv_data, tmp_path, monkeypatch):
    """As ``mdi-mlmm hydration``: a benchmark started without --windows, --dt, --gas-ns continues when they are
    asked for as the values the plan gave them (20 windows, 1 fs flexible, ns per window); other values are
    refused, each named as the plan gets it."""
    seen = _planning_runs(monkeypatch, "steps_per_window")
    out = tmp_path / "b"
    _bench([ETHANOL], windows=None).run(out, progress=False)
    _bench([ETHANOL], windows=20, dt_fs=1.0, gas_ns=0.001).run(out, progress=False)
    _bench([ETHANOL], windows=None).run(out, progress=False)   # and back (settings.json now holds the values)
    assert seen == [(ETHANOL, 1000, False), (ETHANOL, 1000, True), (ETHANOL, 1000, True)]
    for kw, shown in ((dict(windows=12), "windows: 20 on disk vs 12 now"),
                      (dict(windows=None, dt_fs=0.5), "dt_fs: 1.0 on disk vs 0.5 now"),
                      (dict(windows=None, gas_ns=0.002), "gas_ns: 0.001 on disk vs 0.002 now")):
        with pytest.raises(UserInputError, match=shown):
            _bench([ETHANOL], **kw).run(out, progress=False)


def test_the_settings_check_resolves_the_time_steps_and_the_legs_as_the_plan_does(tmp_path):
    """The endpoint route's settings (those FreeSolvBenchmark keeps): --leg-dt, --leg-end-ps and --dt asked as
    what None made of them (2 fs with h-bonds, 4 fs with HMR, leg_ps) continue the benchmark; others are refused."""
    from mdi_mlmm.api import FreeSolvBenchmark

    def settings(**kw):
        return FreeSolvBenchmark(ids=[ETHANOL], model="ani2x", host="gromacs", route="endpoint", **kw).settings

    wb.check_settings(tmp_path / "a", settings())
    wb.check_settings(tmp_path / "a", settings(dt_fs=2.0, leg_dt_fs=1.0, leg_end_ps=20.0))
    with pytest.raises(UserInputError, match="leg_end_ps: 20.0 on disk vs 40.0 now"):
        wb.check_settings(tmp_path / "a", settings(leg_end_ps=40.0))
    wb.check_settings(tmp_path / "b", settings(constraints="h-bonds", mass_repartition=3.0))
    wb.check_settings(tmp_path / "b", settings(constraints="h-bonds", dt_fs=4.0, leg_dt_fs=4.0))
    with pytest.raises(UserInputError, match="leg_dt_fs: 4.0 on disk vs 2.0 now"):
        wb.check_settings(tmp_path / "b", settings(constraints="h-bonds", leg_dt_fs=2.0))


# ------------------------------------------------------------------------------ end to end
def _has_gmx() -> bool:
    return any(Path(p, "gmx").exists() for p in os.environ["PATH"].split(":"))


@pytest.mark.skipif(not _has_gmx(), reason="needs Debian gromacs (gmx) for preparation and the MM windows")
def test_two_molecules_end_to_end_and_resume_redoes_nothing(freesolv_data, tmp_path):
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "mdi_mlmm", "benchmark", "freesolv", "--ids", f"{ETHANOL},{METHANOL}",
           "--model", "mm", "--host", "gromacs", "--windows", "3", "--ns-per-window", "0.0004", "--equil-ps", "1",
           "--window-equil-ps", "0.1", "--sample-every", "10", "--workers", "2", "--bootstrap", "500",
           "--no-progress", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "FreeSolv benchmark: 2 of 2 molecules finished" in r.stdout
    results = sorted(out.glob("molecules/*/mm/analysis/results.json"))
    assert [p.parts[-4] for p in results] == sorted([ETHANOL, METHANOL])
    for name in ("table.csv", "table.md", "report.md", "benchmark.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "benchmark.json").read_text())
    rows = {m["id"]: m for m in data["molecules"]}
    for cid in (ETHANOL, METHANOL):
        res = json.loads((out / "molecules" / cid / "mm" / "analysis" / "results.json").read_text())
        assert rows[cid]["status"] == "done" and rows[cid]["mm"]["value"] == res["dG_MBAR"]["value"]
        assert rows[cid]["expt"]["value"] == res["freesolv"]["experimental"]
        assert rows[cid]["gaff"]["value"] == res["freesolv"]["calculated"]
    stats = {s["method"]: s for s in data["statistics"]}
    assert set(stats) == {"gaff", "mm"} and stats["mm"]["n"] == 2
    mae = np.mean([abs(rows[c]["mm"]["value"] - rows[c]["expt"]["value"]) for c in rows])
    assert stats["mm"]["MAE"]["value"] == pytest.approx(mae)
    report = (out / "report.md").read_text()
    assert "MAE" in report and "scatter.png" in report and METHANOL in report

    before = {p: p.stat().st_mtime_ns for p in out.glob("molecules/**/*") if p.is_file()}
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 of 2 molecules already finished" in r.stderr
    after = {p: p.stat().st_mtime_ns for p in out.glob("molecules/**/*") if p.is_file()}
    assert after == before                                              # no run touched again
    print(f"rerun took {time.time() - t0:.1f} s")


def test_a_stop_signal_during_a_plot_is_not_swallowed(monkeypatch, tmp_path):
    """SIGTERM arriving in a slow plot (alchemlyb's convergence plot took minutes on a tiny bromomethane
    run) must stop the run, not be logged as a failed plot: the hydration analysis's plots and ours."""
    from types import SimpleNamespace

    from mdi_mlmm.analysis import plots
    from mdi_mlmm.errors import Interrupted

    def stopped(*a, **k):
        raise Interrupted(15)

    monkeypatch.setattr(plots, "dhdl_plot", stopped)
    est = SimpleNamespace(ti=None, mbar=None, min_neighbour_overlap=0.0)
    with pytest.raises(Interrupted):
        plots.make_all(tmp_path, est, [], [], SimpleNamespace(temperature=298.15))
    monkeypatch.setattr(bench, "scatter_plot", stopped)
    row = bench.Row(id="m", smiles="C", expt=Estimate(-1.0, 0.6), status="done", values={"gaff": Estimate(0.0, 0.1)})
    with pytest.raises(Interrupted):
        bench.write_outputs(tmp_path, [row], settings={}, selection={})
    monkeypatch.setattr(bench, "scatter_plot", lambda *a, **k: 1 / 0)      # any other failure: no plot, still a table
    assert "plot" not in bench.write_outputs(tmp_path, [row], settings={}, selection={})["files"]
    assert (tmp_path / "table.csv").exists()
