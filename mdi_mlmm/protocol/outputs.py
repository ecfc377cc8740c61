"""The files a λ window and the gas leg write: formats and writers, low in the tree.

Hosts write these files; the analysis reads them back (:func:`mdi_mlmm.analysis.free_energy.read_window_frames`,
:func:`mdi_mlmm.analysis.reorg.read_e_ml`).

* ``e_ml.csv``: ``time_ps,e_ml_kcal_mol`` — the absolute ML energy (kcal/mol) of the sampled
  configurations (both hosts, ML models only).
* ``u_nk.csv`` and ``dhdl.csv`` (the LAMMPS windows; GROMACS writes its own ``dhdl.xvg``): the
  DataFrames alchemlyb's GROMACS parser makes, one row per sample, in kT. Columns ``time`` (ps),
  ``coul-lambda``, ``vdw-lambda`` (the sampled state), then ``u_nk.csv``: one column per λ state,
  labelled ``(coul,vdw)``; ``dhdl.csv``: ``coul``, ``vdw``. Every λ value — in the index columns
  and in the labels — is written as the shortest decimal that reads back as the same float
  (``repr``), so reading gives back exactly the λ values that were written.

All writes are atomic (temporary file, then rename).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

E_ML_HEADER = "time_ps,e_ml_kcal_mol"
#: index columns of u_nk.csv and dhdl.csv (alchemlyb's names)
WINDOW_INDEX = ("time", "coul-lambda", "vdw-lambda")
#: dH/dλ columns, named like alchemlyb's GROMACS parser names them
DHDL_COLUMNS = ("coul", "vdw")


def state_label(state: Sequence[float]) -> str:
    """The u_nk.csv column label of λ state (coul, vdw): ``(c,v)`` with floats that read back exactly."""
    return "(" + ",".join(repr(float(x)) for x in state) + ")"


def parse_state_label(label: str) -> Optional[tuple[float, ...]]:
    """The λ state of a :func:`state_label` (a tuple of floats), or None if ``label`` is not one."""
    text = label.strip()
    if not (text.startswith("(") and text.endswith(")")):
        return None
    try:
        return tuple(float(x) for x in text[1:-1].split(","))
    except ValueError:
        return None


def _replace(path: Path, write) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_e_ml(path, time_ps, e_kcal) -> Path:
    """Write an E_ML series (time in ps, absolute E_ML in kcal/mol; two (n,) arrays) as ``e_ml.csv``."""
    path = Path(path)
    t = np.asarray(time_ps, dtype=float).ravel()
    e = np.asarray(e_kcal, dtype=float).ravel()
    rows = "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(t, e))
    return _replace(path, lambda tmp: tmp.write_text(E_ML_HEADER + "\n" + rows))


def write_window_frames(u_nk, dhdl, u_nk_csv, dhdl_csv) -> None:
    """Write one window's (u_nk, dHdl) DataFrames (alchemlyb layout: index :data:`WINDOW_INDEX`,
    u_nk columns = λ state tuples, dHdl columns :data:`DHDL_COLUMNS`) as ``u_nk.csv``/``dhdl.csv``."""
    u = u_nk.copy()
    u.columns = [state_label(c) for c in u.columns]
    for df, path in ((u, Path(u_nk_csv)), (dhdl, Path(dhdl_csv))):
        _replace(path, lambda tmp: df.reset_index().to_csv(tmp, index=False))
