"""bench/bench_vs_openmm_ml.py (issue 13, item 5): row selection and the ratios of ns/day it reports.

The timing itself needs GROMACS, OpenMM-ML's venv and a quiet machine (the lead runs it); what is checked here
is the arithmetic on given ms/step: ns/day = 86.4·dt/ms, "≥ 5×" at the same time step, "≥ 10× with item 4"
(ours at 2 fs with X–H bonds constrained against OpenMM-ML at 0.5 fs) and the fair 2 fs vs 2 fs ratio.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_vs_openmm_ml.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_vs_openmm_ml", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rows_default_and_errors():
    b = _bench()
    keys = b.parse_rows(b.DEFAULT_ROWS)
    assert {"f64", "omm2", "f64-2fs", "omm2-2fs", "mm"} <= set(keys)
    assert "mm" not in b.parse_rows(b.DEFAULT_ROWS, no_mm=True)
    assert b.parse_rows("omm1, f32-2fs,omm1") == ["omm1", "f32-2fs"]  # order kept, duplicates dropped
    with pytest.raises(SystemExit, match="unknown nope"):
        b.parse_rows("f64,nope")


def test_ratios_of_ns_per_day():
    b = _bench()
    keys = b.parse_rows("f64,omm2,f32-2fs,omm2-2fs,mm")
    ms = {"f64": 5.0, "omm2": 25.0, "f32-2fs": 4.0, "omm2-2fs": 25.0, "mm": 1.0}
    runs = {b.ROWS[k][0]: [{"ms_per_step": v, "wall_s": 1.0}, {"ms_per_step": 3 * v}, {"ms_per_step": v}]
            for k, v in ms.items()}  # the median is the given value
    table, pairs = b.summarize(keys, runs)
    row = {r["key"]: r for r in table}
    assert row["f64"]["ns_per_day"] == pytest.approx(86.4 * 0.5 / 5.0, abs=1e-3)
    assert row["f64"]["speedup_vs_openmm_ml_2threads"] == 5.0
    assert row["f32-2fs"]["ns_per_day"] == pytest.approx(86.4 * 2 / 4.0, abs=1e-3)
    assert row["f32-2fs"]["speedup_vs_openmm_ml_2threads"] == 25.0  # 2 fs / 4 ms vs 0.5 fs / 25 ms
    assert row["f32-2fs"]["speedup_vs_openmm_ml_same_dt"] == 6.25  # vs OpenMM-ML at 2 fs with HBonds
    assert row["f32-2fs"]["constraints"] == "h-bonds" and row["omm2-2fs"]["constraints"] == "HBonds"
    assert "speedup_vs_openmm_ml_same_dt" not in row["mm"]
    got = {(p["ours"], p["theirs"]): (p["ns_per_day_ratio"], p["target"]) for p in pairs}
    assert got == {("ours float64", "OpenMM-ML 2 threads"): (5.0, 5),
                   ("ours float32, 2 fs h-bonds", "OpenMM-ML 2 threads"): (25.0, 10),
                   ("ours float32, 2 fs h-bonds", "OpenMM-ML 2 threads, 2 fs HBonds"): (6.25, 5)}
