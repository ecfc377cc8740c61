"""``mdi-mlmm analyze`` refuses damaged run directories (issue 11).

Real tiny hydration runs (ethanol, 3 λ windows) are made once per module: plain MM on LAMMPS,
plain MM on GROMACS (stock gmx, reusing the LAMMPS run's prepared system and equilibration)
and ANI-2x on LAMMPS (E_ML series of the windows and the gas run). Each test copies one run,
damages one file the way a crash or a full disk does (last row cut mid-line, NaN, a dropped
column, a deleted or empty file, rows lost, another λ state) and runs the real CLI: it must exit
non-zero with one ``error:`` line that names the file and the line, and write no results.json.
An intact copy must analyse exactly as the readers' plain parsers read it.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests import _prepared

pytestmark = pytest.mark.skipif(not any(Path(p, "gmx").exists() for p in os.environ["PATH"].split(":")),
                                reason="needs Debian gromacs (gmx) for preparation/equilibration")

HYDRATION = ["--freesolv", "mobley_2310185", "--windows", "3", "--equil-ps", "1", "--window-equil-ps", "0.05",
             "--sample-every", "10", "--workers", "2", "--no-progress"]


def mdi_mlmm(*args, timeout=1500):
    return subprocess.run([sys.executable, "-m", "mdi_mlmm", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def hydration(out: Path, *args, reuse: Path | None = None) -> Path:
    """A finished tiny hydration run in ``out``; ``reuse``: a run whose prepared system and
    equilibration to start from (the workflow skips both when they are there)."""
    if reuse is not None:
        out.mkdir(parents=True)
        for part in ("system", "equil"):
            shutil.copytree(reuse / part, out / part)
    else:
        _prepared.seed(out)      # an earlier module's preparation, if any
    r = mdi_mlmm("hydration", *HYDRATION, *args, "--out", out)
    _prepared.remember(out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "analysis" / "results.json").exists()
    return out


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def lammps_mm(runs_dir):
    return hydration(runs_dir / "lammps_mm", "--model", "mm", "--host", "lammps", "--ns-per-window", "0.0003")


@pytest.fixture(scope="module")
def gromacs_mm(runs_dir, lammps_mm):
    return hydration(runs_dir / "gromacs_mm", "--model", "mm", "--host", "gromacs", "--ns-per-window", "0.0006",
                     reuse=lammps_mm)


@pytest.fixture(scope="module")
def lammps_ml(runs_dir, lammps_mm):
    return hydration(runs_dir / "lammps_ml", "--model", "ani2x", "--host", "lammps", "--ns-per-window", "0.0002",
                     "--gas-ns", "0.0002", reuse=lammps_mm)


def copy_run(src: Path, dst: Path) -> Path:
    """The run's outputs without its analysis (and without the bulky restart/trajectory files)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("analysis", "lammps", "*.cpt", "*.xtc", "*.trr",
                                                            "*.npz", "*.edr", "*.tpr"))
    return dst


# --- ways of damaging a file; each returns the 1-based line the error must name (None: no line) ---

def line_count(path: Path) -> int:
    return path.read_text().count("\n")


def cut_last_line(path: Path) -> int:
    """Cut the file 9 bytes before its end: the last row loses its end (as a crash mid-write leaves it)."""
    n = line_count(path)
    path.write_bytes(path.read_bytes()[:-9])
    return n


def data_lines(path: Path) -> list[int]:
    """1-based line numbers of the data rows (CSV: after the header; xvg: not # or @)."""
    lines = path.read_text().splitlines()
    if path.suffix == ".xvg":
        return [k + 1 for k, ln in enumerate(lines) if ln and ln[0] not in "#@"]
    return list(range(2, len(lines) + 1))


def set_field(path: Path, row: int, col: int, value: str) -> int:
    """Put ``value`` in field ``col`` of data row ``row`` (0-based); returns its file line."""
    lines = path.read_text().split("\n")
    k = data_lines(path)[row] - 1
    sep = None if path.suffix == ".xvg" else ","
    fields = lines[k].split(sep)
    fields[col] = value
    lines[k] = (" " if sep is None else sep).join(fields)
    path.write_text("\n".join(lines))
    return k + 1


def drop_last_field(path: Path, row: int) -> int:
    """Data row ``row`` (0-based) loses its last field (a row written only in part); returns its line."""
    lines = path.read_text().split("\n")
    k = data_lines(path)[row] - 1
    sep = None if path.suffix == ".xvg" else ","
    fields = lines[k].split(sep)
    lines[k] = (" " if sep is None else sep).join(fields[:-1])
    path.write_text("\n".join(lines))
    return k + 1


def drop_column(path: Path, name: str) -> int:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    j = rows[0].index(name)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([r[:j] + r[j + 1:] for r in rows])
    path.write_text(buf.getvalue())
    return 1


def drop_last_row(path: Path) -> int:
    """Remove the last row whole (a cut at a line end): the file looks complete but is short."""
    lines = path.read_text().split("\n")
    path.write_text("\n".join(lines[:-2]) + "\n")
    return line_count(path)


def replace_text(old: str, new: str):
    def damage(path: Path):
        text = path.read_text()
        assert old in text, (old, path)
        path.write_text(text.replace(old, new, 1))
        lines = text.split("\n")
        return next(k + 1 for k, ln in enumerate(lines) if old in ln)
    return damage


def no_line(damage):
    """The same damage, for errors that have no line to name (a lost JSON key, a cut JSON text)."""
    def damage_(path: Path):
        damage(path)
    return damage_


def delete(path: Path):
    path.unlink()


def empty(path: Path):
    path.write_text("")


def header_only(path: Path):
    path.write_text(path.read_text().split("\n")[0] + "\n")


# (run, file, damage, what the message says besides the file and line)
CASES = {
    # LAMMPS window CSVs
    "unk_last_row_cut": ("lammps_mm", "windows/01/u_nk.csv", cut_last_line, "cut short"),
    "dhdl_last_row_cut": ("lammps_mm", "windows/02/dhdl.csv", cut_last_line, "cut short"),
    "unk_nan": ("lammps_mm", "windows/01/u_nk.csv", lambda p: set_field(p, 9, 4, "nan"), "not a finite number"),
    "dhdl_inf": ("lammps_mm", "windows/00/dhdl.csv", lambda p: set_field(p, 3, 3, "-inf"), "not a finite number"),
    "dhdl_blank_value": ("lammps_mm", "windows/01/dhdl.csv", lambda p: set_field(p, 12, 4, ""), "empty value"),
    "unk_text_value": ("lammps_mm", "windows/02/u_nk.csv", lambda p: set_field(p, 5, 3, "1.2.3"), "non-numeric"),
    "unk_short_row": ("lammps_mm", "windows/00/u_nk.csv", lambda p: drop_last_field(p, 7), "fields, expected"),
    "dhdl_column_dropped": ("lammps_mm", "windows/01/dhdl.csv", lambda p: drop_column(p, "vdw"), "expected"),
    "unk_state_column_dropped": ("lammps_mm", "windows/01/u_nk.csv", lambda p: drop_column(p, "(1.0,1.0)"),
                                 "inconsistent λ states"),
    "unk_other_state": ("lammps_mm", "windows/02/u_nk.csv", replace_text('"(1.0,0.0)"', '"(1.0,0.5)"'),
                        "inconsistent λ states"),
    "unk_sampled_elsewhere": ("lammps_mm", "windows/01/u_nk.csv", lambda p: set_field(p, 10, 1, "0.5"),
                              "not this window's"),
    "dhdl_rows_lost": ("lammps_mm", "windows/01/dhdl.csv", drop_last_row, "rows lost"),
    "both_rows_lost": ("lammps_mm", "windows/02/u_nk.csv",
                       lambda p: (drop_last_row(p.with_name("dhdl.csv")), drop_last_row(p))[1], "rows lost"),
    "time_repeated": ("lammps_mm", "windows/00/u_nk.csv", lambda p: set_field(p, 6, 0, "0.04"), "does not follow"),
    "dhdl_missing": ("lammps_mm", "windows/02/dhdl.csv", delete, "missing"),
    "unk_missing": ("lammps_mm", "windows/00/u_nk.csv", delete, "missing"),
    "unk_empty": ("lammps_mm", "windows/01/u_nk.csv", empty, "empty file"),
    "dhdl_header_only": ("lammps_mm", "windows/01/dhdl.csv", header_only, "no data rows"),
    # plan / system json
    "plan_cut": ("lammps_mm", "plan.json", no_line(cut_last_line), "invalid JSON"),
    "plan_key_lost": ("lammps_mm", "plan.json", no_line(replace_text('"temperature"', '"temp"')), "missing key"),
    "plan_windows_off_schedule": ("lammps_mm", "plan.json", no_line(replace_text('"vdw": 1.0', '"vdw": 0.5')),
                                  "schedule"),
    "system_json_cut": ("lammps_mm", "system/system.json", no_line(cut_last_line), "invalid JSON"),
    # GROMACS dhdl.xvg
    "xvg_last_row_cut": ("gromacs_mm", "windows/01/dhdl.xvg", cut_last_line, "cut short"),
    "xvg_nan": ("gromacs_mm", "windows/00/dhdl.xvg", lambda p: set_field(p, 8, 2, "nan"), "not a finite number"),
    "xvg_text_value": ("gromacs_mm", "windows/02/dhdl.xvg", lambda p: set_field(p, 4, 3, "-"), "non-numeric"),
    "xvg_short_row": ("gromacs_mm", "windows/01/dhdl.xvg", lambda p: drop_last_field(p, 11), "fields, expected"),
    # window 1 (the boundary of the split decoupling) evaluates every state; window 2 the stage-2 states only
    "xvg_other_state": ("gromacs_mm", "windows/01/dhdl.xvg", replace_text("to (0.0000, 0.0000)", "to (0.0000, 0.1000)"),
                        "inconsistent λ states"),
    "xvg_stage2_other_state": ("gromacs_mm", "windows/02/dhdl.xvg",
                               replace_text("to (1.0000, 0.0000)", "to (0.0000, 0.0000)"), "inconsistent λ states"),
    "xvg_sampled_elsewhere": ("gromacs_mm", "windows/01/dhdl.xvg",
                              replace_text("= (1.0000, 0.0000)", "= (0.5000, 0.0000)"), "not this window's"),
    "xvg_rows_lost": ("gromacs_mm", "windows/00/dhdl.xvg", drop_last_row, "rows lost"),
    "xvg_missing": ("gromacs_mm", "windows/02/dhdl.xvg", delete, "missing"),
    "xvg_empty": ("gromacs_mm", "windows/00/dhdl.xvg", empty, "empty file"),
    # E_ML series (ML run)
    "gas_e_ml_cut": ("lammps_ml", "gas/e_ml.csv", cut_last_line, "cut short"),
    "window_e_ml_nan": ("lammps_ml", "windows/00/e_ml.csv", lambda p: set_field(p, 5, 1, "nan"), "not a finite"),
    "window_e_ml_missing": ("lammps_ml", "windows/02/e_ml.csv", delete, "missing"),
    "gas_e_ml_missing": ("lammps_ml", "gas/e_ml.csv", delete, "missing"),
    "gas_e_ml_column_dropped": ("lammps_ml", "gas/e_ml.csv", lambda p: drop_column(p, "time_ps"), "expected"),
    "ml_unk_last_row_cut": ("lammps_ml", "windows/01/u_nk.csv", cut_last_line, "cut short"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_file_is_named_and_refused(case, request, tmp_path):
    run, rel, damage, phrase = CASES[case]
    d = copy_run(request.getfixturevalue(run), tmp_path / "run")
    path = d / rel
    line = damage(path)
    r = mdi_mlmm("analyze", d, "--no-plots", timeout=600)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode != 0 and len(errors) == 1, (r.returncode, r.stderr[-2000:])
    msg = errors[0]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert str(path) in msg, msg
    if line is not None:
        assert f"{path}: line {line}: " in msg, (line, msg)
    assert phrase in msg, msg
    assert not (d / "analysis" / "results.json").exists()


def test_intact_runs_analyse_as_before(lammps_mm, gromacs_mm, tmp_path):
    """An undamaged copy analyses to the run's own numbers; the checked readers hand alchemlyb exactly
    what pandas' CSV parser and alchemlyb's xvg parser read from the files."""
    from mdi_mlmm.analysis import free_energy as fe

    for run in (lammps_mm, gromacs_mm):
        d = copy_run(run, tmp_path / run.name)
        r = mdi_mlmm("analyze", d, "--no-plots", timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        old = json.loads((run / "analysis" / "results.json").read_text())
        new = json.loads((d / "analysis" / "results.json").read_text())
        for k in ("dG_TI", "dG_MBAR", "dG_BAR"):
            assert new[k] == old[k] or all(math.isnan(new[k][e]) == math.isnan(old[k][e]) and
                                           (math.isnan(new[k][e]) or new[k][e] == old[k][e])
                                           for e in ("value", "error")), (k, new[k], old[k])
        assert math.isfinite(new["dG_TI"]["value"]) and new["samples"] == old["samples"]
    plan = json.loads((lammps_mm / "plan.json").read_text())
    for w in plan["windows"]:
        wd = lammps_mm / w["directory"]
        u, d = fe.read_window_frames(wd / "u_nk.csv", wd / "dhdl.csv", 298.15, (w["coul"], w["vdw"]), plan["schedule"],
                                     plan["steps_per_window"] // plan["sample_every"] + 1)
        assert np.array_equal(u.to_numpy(), pd.read_csv(wd / "u_nk.csv").iloc[:, 3:].to_numpy())
        assert np.array_equal(d.to_numpy(), pd.read_csv(wd / "dhdl.csv")[["coul", "vdw"]].to_numpy())
    from alchemlyb.parsing import gmx

    for w in json.loads((gromacs_mm / "plan.json").read_text())["windows"]:
        x = gromacs_mm / w["directory"] / "dhdl.xvg"
        u, d = fe.read_xvg(x, 298.15, (w["coul"], w["vdw"]))
        pd.testing.assert_frame_equal(u, gmx.extract_u_nk(str(x), T=298.15))
        pd.testing.assert_frame_equal(d, gmx.extract_dHdl(str(x), T=298.15))


def test_intact_ml_run_reports_reorganization(lammps_ml, tmp_path):
    d = copy_run(lammps_ml, tmp_path / "run")
    r = mdi_mlmm("analyze", d, "--no-plots", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((d / "analysis" / "results.json").read_text())
    assert math.isfinite(res["dG_reorg_gas"]["value"]) and math.isfinite(res["dG_reorg_windows"]["value"])
