"""Checked reading of every file ``mdi-mlmm analyze`` uses: one place that refuses damaged data.

The analysis must never estimate from a file that was cut short, holds NaN/inf or text where
numbers belong, lacks a column, or samples a λ state other than the plan's. Every reader in
:mod:`mdi_mlmm.analysis` goes through the functions here, which raise
:class:`~mdi_mlmm.errors.AnalysisError` naming the file and the 1-based line (and column) at fault:

* :func:`read_lines`: the file exists, is not empty, is text, and its last line is complete
  (every writer ends each line with a newline, so a missing one means the file was cut short);
* :func:`numeric_rows`: each data line has the expected number of fields, all finite numbers;
* :func:`read_csv`: a CSV with a header (required columns present, names unique) → DataFrame;
* :func:`read_xvg`: a GROMACS ``.xvg`` (``#`` comments, ``@`` directives, whitespace columns);
* :func:`read_json`: a JSON object with the required keys;
* :func:`check_time`: sample times strictly increasing; :func:`check_count`: a finished window's sample count;
* :func:`check_lambdas`: a window's u_nk/dH/dλ frames sample the plan's state and know the plan's states.

No units are converted here: values come back as written.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..errors import AnalysisError

#: tolerance on λ values: GROMACS writes them with 4 decimals (1/3 → 0.3333)
LAMBDA_TOL = 1e-4


def damaged(path, message: str, line: int | None = None) -> AnalysisError:
    """The one error for a damaged input: ``PATH: line N: message; refusing to analyse damaged data``."""
    where = f"{path}: line {line}: " if line is not None else f"{path}: "
    return AnalysisError(f"{where}{message}; refusing to analyse damaged data")


def read_lines(path, what: str, line_end: bool = True) -> list[str]:
    """The lines of text file ``path`` (without line ends; line k+1 of the file is item k).

    ``what`` says what the file is, for the message when it is missing. Refuses a missing,
    empty or non-text file and, with ``line_end`` (table files, whose writers end every line),
    one whose last line has no line end (cut short)."""
    p = Path(path)
    if not p.is_file():
        raise AnalysisError(f"{p}: missing ({what}): rerun the command that makes it, or restore the file")
    raw = p.read_bytes()
    if not raw.strip():
        raise damaged(p, f"empty file ({what})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise damaged(p, f"not text (undecodable byte {raw[exc.start]:#04x})", line) from None
    lines = text.split("\n")
    if lines[-1] != "" and line_end:
        raise damaged(p, f"incomplete last line {lines[-1][-40:]!r} (no line end: the file was cut short)",
                      len(lines))
    if lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def numeric_rows(path, rows: Sequence[tuple[int, str]], names: Sequence[str], sep: str | None) -> np.ndarray:
    """(n, len(names)) float array from data lines ``rows`` = [(line number, text)], split on ``sep``
    (None: whitespace). Refuses a line with another number of fields, a non-numeric or empty
    field, NaN or ±inf, and no rows at all."""
    ncol = len(names)
    if not rows:
        raise damaged(path, "no data rows")
    out = np.empty((len(rows), ncol))
    for i, (lineno, text) in enumerate(rows):
        fields = text.split(sep)
        if len(fields) != ncol:
            raise damaged(path, f"{len(fields)} fields, expected {ncol}: short or damaged row", lineno)
        try:
            out[i] = [float(f) for f in fields]
        except ValueError:
            for j, f in enumerate(fields):
                try:
                    float(f)
                except ValueError:
                    what = "empty value" if not f.strip() else f"non-numeric value {f.strip()[:30]!r}"
                    raise damaged(path, f"{_column(names, j)}: {what}", lineno) from None
    bad = ~np.isfinite(out)
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise damaged(path, f"{_column(names, j)}: value {float(out[i, j])!r} is not a finite number", rows[i][0])
    return out


def read_csv(path, what: str, required: Iterable[str] = (), exact: bool = False) -> pd.DataFrame:
    """A numeric CSV with one header line → DataFrame (float columns named as in the header).

    ``required`` columns must be present (``exact``: and no others, in that order)."""
    lines = read_lines(path, what)
    header = next(csv.reader([lines[0]]))
    names = [h.strip() for h in header]
    required = list(required)
    if exact and names != required:
        raise damaged(path, f"columns {_list(names)}, expected {_list(required)}", 1)
    missing = [c for c in required if c not in names]
    if missing:
        raise damaged(path, f"missing column(s) {_list(missing)} (header: {_list(names)})", 1)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup or any(not n for n in names):
        raise damaged(path, f"bad header: {'duplicate column(s) ' + _list(dup) if dup else 'empty column name'}", 1)
    rows = [(k + 2, ln) for k, ln in enumerate(lines[1:])]
    return pd.DataFrame(numeric_rows(path, rows, names, ","), columns=names)


class Xvg(NamedTuple):
    """A checked GROMACS ``.xvg``; line numbers are 1-based lines of the file."""

    names: list[str]          #: column names: the x axis label, then the ``@ sN legend`` strings
    data: np.ndarray          #: (n, len(names)) finite numbers
    lines: list[int]          #: the line of each data row
    name_lines: list[int]     #: the line naming each column
    subtitle_line: int | None  #: the ``@ subtitle`` line (GROMACS states the sampled λ state there)


def read_xvg(path, what: str) -> Xvg:
    """A GROMACS ``.xvg`` (``#`` comments, ``@`` directives, whitespace-separated numbers), every line checked."""
    lines = read_lines(path, what)
    legends: dict[int, str] = {}
    legend_line: dict[int, int] = {}
    xaxis, xaxis_line, subtitle_line = "time", 1, None
    rows = []
    for k, ln in enumerate(lines, start=1):
        s = ln.strip()
        if s.startswith("#"):
            continue
        if s.startswith("@"):
            parts = s[1:].split(None, 2)
            if len(parts) == 3 and parts[0].startswith("s") and parts[0][1:].isdigit() and parts[1] == "legend":
                legends[int(parts[0][1:])] = parts[2].strip('"')
                legend_line[int(parts[0][1:])] = k
            elif len(parts) >= 2 and parts[0] == "xaxis" and parts[1] == "label":
                xaxis, xaxis_line = s.split("label", 1)[1].strip().strip('"') or xaxis, k
            elif parts and parts[0] == "subtitle":
                subtitle_line = k
            continue
        if rows or s:  # a blank line is damage once data has started
            rows.append((k, ln))
    if not legends:
        raise damaged(path, "no '@ sN legend' lines: not a GROMACS xvg with named columns")
    if sorted(legends) != list(range(len(legends))):
        raise damaged(path, f"legend numbers {sorted(legends)} are not 0..{len(legends) - 1}")
    names = [xaxis] + [legends[i] for i in range(len(legends))]
    name_lines = [xaxis_line] + [legend_line[i] for i in range(len(legends))]
    return Xvg(names, numeric_rows(path, rows, names, None), [k for k, _ in rows], name_lines, subtitle_line)


def read_json(path, what: str, required: Iterable[str] = ()) -> dict:
    """A JSON object with the ``required`` keys."""
    text = "\n".join(read_lines(path, what, line_end=False))  # json.dumps ends without one
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise damaged(path, f"invalid JSON at column {exc.colno}: {exc.msg}", exc.lineno) from None
    if not isinstance(d, dict):
        raise damaged(path, f"a JSON {type(d).__name__}, expected an object")
    missing = [k for k in required if k not in d]
    if missing:
        raise damaged(path, f"missing key(s) {_list(missing)}")
    return d


def check_time(path, time: np.ndarray, lines: Sequence[int]):
    """Sample times (ps, (n,)) must increase strictly; ``lines[i]`` is the file line of sample i."""
    t = np.asarray(time, dtype=float)
    back = np.nonzero(np.diff(t) <= 0)[0]
    if len(back):
        i = int(back[0]) + 1
        raise damaged(path, f"time {float(t[i])!r} ps does not follow {float(t[i - 1])!r} ps of the line before "
                            "(repeated or reordered rows)", lines[i])


def check_count(path, n: int, expected: int | None, last_line: int):
    """A finished window's file must hold ``expected`` samples (None: not known, not checked);
    ``last_line`` is the file line of its last sample."""
    if expected is not None and n != expected:
        raise damaged(path, f"{n} samples, but the finished window has {expected} "
                            f"({'rows lost' if n < expected else 'extra rows'})", last_line)


def check_lambdas(path, sampled: np.ndarray, lines: Sequence[int], state: Sequence[float],
                  states: Sequence[Sequence[float]] | None = None, schedule: Sequence[Sequence[float]] | None = None,
                  states_line: int | None = None):
    """One window's λ bookkeeping against the plan.

    sampled: (n, k) λ values of each sample (coul, vdw); ``lines[i]`` its file line; every row
    must equal ``state`` (the plan's (coul, vdw) of this window). states: the λ states the file
    evaluates energies at (u_nk columns, file line ``states_line``); they must be ``schedule``: the plan's
    states of this window, all of the schedule's or, in a split decoupling, the stage-2 states of a window
    after the boundary (:func:`mdi_mlmm.protocol.schedule.window_states`), and no others."""
    sampled = np.asarray(sampled, dtype=float).reshape(len(lines), -1)
    off = np.nonzero(np.any(np.abs(sampled - np.asarray(state, dtype=float)) > LAMBDA_TOL, axis=1))[0]
    if len(off):
        i = int(off[0])
        raise damaged(path, f"sampled λ state {_tuple(sampled[i])} is not this window's {_tuple(state)} "
                            "in the plan", lines[i])
    if states is not None and schedule is not None:
        a = np.asarray([tuple(s) for s in states], dtype=float).reshape(len(states), -1)
        b = np.asarray([tuple(s) for s in schedule], dtype=float).reshape(len(schedule), -1)
        if a.shape != b.shape or np.any(np.abs(a - b) > LAMBDA_TOL):
            raise damaged(path, f"energies at λ states {', '.join(_tuple(s) for s in a)}, but the plan's states "
                                f"of this window are {', '.join(_tuple(s) for s in b)} (inconsistent λ states between windows)",
                          states_line)


def _column(names, j: int) -> str:
    return f'column {j + 1} "{names[j]}"'


def _list(names) -> str:
    return ", ".join(repr(n) for n in names)


def _tuple(v) -> str:
    return "(" + ", ".join(f"{float(x):g}" for x in v) + ")"
