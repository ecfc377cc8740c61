"""The direct route's report warns loudly when overlap or sampling cannot support the number."""
import math

from mdi_mlmm.analysis.report import MIN_OVERLAP, direct_warnings, report_markdown, summary_lines
from mdi_mlmm.analysis.results import Estimate, HydrationResult


def _result(overlap=0.2, uncorrelated=(200, 150, 300), ti=(-5.0, 0.2), mbar=(-5.1, 0.2)):
    return HydrationResult(run_dir="/r", model="mm", host="gromacs", temperature_K=298.15, windows=len(uncorrelated),
                           ns_per_window=0.1, dG={"TI": Estimate(*ti), "MBAR": Estimate(*mbar), "BAR": Estimate(*mbar)},
                           samples=[{"samples": 1000, "after_trim": 900, "uncorrelated_u_nk": n} for n in uncorrelated],
                           min_neighbour_overlap=overlap)


def test_a_sound_run_has_no_warnings():
    assert direct_warnings(_result()) == []


def test_each_reason_is_named():
    assert "overlap 0.010" in " ".join(direct_warnings(_result(overlap=0.01)))
    assert MIN_OVERLAP > 0.01
    w = direct_warnings(_result(uncorrelated=(200, 7, 300, 3)))
    assert len(w) == 1 and "windows [1, 3]" in w[0]
    w = direct_warnings(_result(ti=(-4.0, 0.1), mbar=(-5.0, 0.1)))
    assert len(w) == 1 and "TI and MBAR differ by 1.00" in w[0]
    w = direct_warnings(_result(mbar=(math.nan, math.nan), overlap=math.nan))
    assert any("MBAR is not a number" in x for x in w) and any("overlap is unknown" in x for x in w)


def test_warnings_are_loud_in_summary_and_report_and_survive_json():
    r = _result(overlap=0.0)
    r.warnings = direct_warnings(r)
    back = HydrationResult.from_json(r.to_json())
    assert back.warnings == r.warnings and back.warnings
    assert any("WARNING(S)" in line for line in summary_lines(back))
    assert "⚠ WARNINGS" in report_markdown(back)
    assert "WARNING" not in "\n".join(summary_lines(_result()))
