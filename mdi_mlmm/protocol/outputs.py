"""The files a λ window, the gas leg and ``mdi-mlmm md`` write: formats and writers, low in the tree.

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

* ``energies.csv`` and ``summary.json`` of ``mdi-mlmm md``, the same on every host:
  :data:`MD_ENERGY_COLUMNS` (names and units), :func:`md_summary` (:data:`MD_SUMMARY_KEYS`),
  :func:`write_md_summary` (strict JSON: non-finite numbers are null), :func:`format_md_summary`.

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


# ----------------------------------------------------------------------------- `mdi-mlmm md`, both hosts
#: ``energies.csv`` of ``mdi-mlmm md``, the same on every host: (column, unit and meaning). One row
#: every ``--energy-every`` steps. The LAMMPS host streams it during the run (``fix print``, from
#: :data:`MD_ENERGY_COLUMNS` through its own expressions); the GROMACS host converts its ``.edr``
#: after the run with :func:`write_md_energies`. E_pot, E_ML, E_MM, E_kin, E_tot, T, P and V mean
#: the same on both; the E_vdw / E_coul / E_bonded split follows each engine's own bookkeeping
#: (where 1-4 pairs and dispersion corrections are booked).
MD_ENERGY_COLUMNS = (
    ("step", "MD step"),
    ("time_ps", "ps"),
    ("E_ML_hartree", "Hartree: the ML model's energy of the ML region (0 for plain MM)"),
    ("E_ML_kcal_mol", "kcal/mol: the same"),
    ("E_MM_kcal_mol", "kcal/mol: E_pot - E_ML, everything classical"),
    ("E_pot_kcal_mol", "kcal/mol: potential energy, E_ML included"),
    ("E_kin_kcal_mol", "kcal/mol"),
    ("E_tot_kcal_mol", "kcal/mol: E_pot + E_kin"),
    ("E_conserved_kcal_mol", "kcal/mol: E_tot plus the thermostat/barostat energy (= E_tot in NVE); nan where "
                             "the engine has none (GROMACS's Langevin `sd` integrator)"),
    ("T_K", "K"),
    ("P_bar", "bar"),
    ("volume_A3", "Å^3"),
    ("E_vdw_kcal_mol", "kcal/mol: Lennard-Jones (dispersion correction included where used)"),
    ("E_coul_kcal_mol", "kcal/mol: Coulomb, real + reciprocal space"),
    ("E_bonded_kcal_mol", "kcal/mol: bonds, angles, dihedrals, impropers"),
)
MD_ENERGY_HEADER = ",".join(c for c, _ in MD_ENERGY_COLUMNS)


def write_md_energies(path, columns) -> Path:
    """Write ``energies.csv`` (:data:`MD_ENERGY_COLUMNS`, in that order) from ``columns``:
    {name: (n,) array}; every column must be there."""
    path = Path(path)
    missing = [c for c, _ in MD_ENERGY_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"energies.csv needs the columns {missing}")
    data = np.column_stack([np.asarray(columns[c], dtype=float).ravel() for c, _ in MD_ENERGY_COLUMNS])
    rows = "".join(",".join(f"{v:.10g}" if c else str(int(round(v))) for c, v in enumerate(r)) + "\n"
                   for r in data)
    return _replace(path, lambda tmp: tmp.write_text(MD_ENERGY_HEADER + "\n" + rows))


def read_md_energies(path) -> dict:
    """``energies.csv`` → {column: (n,) float array} (a header-only file gives empty arrays)."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    header = lines[0].lstrip("# ").split(",")
    data = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]]) if len(lines) > 1 else \
        np.zeros((0, len(header)))
    return {h: data[:, k] for k, h in enumerate(header)}


def _finite(x) -> Optional[float]:
    """``x`` as a float, or None (JSON null) if it is not finite."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _drift(t_ps, e) -> Optional[float]:
    """Slope (per ps) of a linear fit, or None with fewer than 3 points or non-finite values."""
    t, e = np.asarray(t_ps, dtype=float), np.asarray(e, dtype=float)
    if len(t) < 3 or np.ptp(t) == 0 or not (np.all(np.isfinite(t)) and np.all(np.isfinite(e))):
        return None
    return _finite(np.polyfit(t, e, 1)[0])


def md_summary(energies_csv, *, host: str, model: str, ensemble: str, steps: int, dt_fs: float, wall_s: float,
               setup_s: float, n_atoms: int, n_ml_atoms: int, temperature_K: float, pressure_bar: float,
               ml_calls: Optional[int], ml_seconds: Optional[float], engine: str, files: dict,
               minimization: Optional[dict] = None, ns_per_day: Optional[float] = None, **extra) -> dict:
    """The ``summary.json`` of ``mdi-mlmm md``, the same keys on every host, from its ``energies.csv``.

    ``wall_s``: the dynamics only (``setup_s``: everything before it); ``ns_per_day`` defaults to the
    one ``wall_s`` gives. Statistics over the rows of energies.csv: ⟨E_tot⟩, σ(E_tot), drift of E_tot
    and of E_conserved (kcal/mol/ps, linear fit), ⟨T⟩, σ(T), ⟨P⟩, ⟨V⟩, final E_ML and E_MM. A value
    that is not finite (NaN, a blown-up run) or cannot be had (ml_calls on the GROMACS host) is null.
    ``extra``: host-specific keys, added as they are.
    """
    e = read_md_energies(energies_csv)
    t = e.get("time_ps", np.zeros(0))
    if ns_per_day is None:
        ns_per_day = steps * dt_fs * 1e-6 / wall_s * 86400 if wall_s > 0 and steps else None
    s = {
        "host": host, "model": model, "ensemble": ensemble, "steps": int(steps), "dt_fs": float(dt_fs),
        "simulated_ps": steps * dt_fs / 1000.0, "wall_s": _finite(wall_s), "setup_s": _finite(setup_s),
        "ns_per_day": _finite(ns_per_day), "ms_per_step": _finite(1000 * wall_s / steps) if steps else None,
        "n_atoms": int(n_atoms), "n_ml_atoms": int(n_ml_atoms), "temperature_target_K": float(temperature_K),
        "pressure_target_bar": float(pressure_bar) if ensemble == "npt" else None,
        "ml_calls": ml_calls, "ml_seconds": _finite(ml_seconds) if ml_seconds is not None else None,
        "rows": int(len(t)),
    }
    stats = {"E_tot_mean_kcal_mol": None, "E_tot_std_kcal_mol": None, "E_tot_drift_kcal_mol_per_ps": None,
             "E_conserved_drift_kcal_mol_per_ps": None, "E_conserved_std_kcal_mol": None,
             "E_pot_mean_kcal_mol": None, "E_ML_final_hartree": None, "E_MM_final_kcal_mol": None,
             "T_mean_K": None, "T_std_K": None, "P_mean_bar": None, "volume_mean_A3": None}
    if len(t):
        etot, econ = e["E_tot_kcal_mol"], e["E_conserved_kcal_mol"]  # econ: nan where the engine has none
        stats.update({
            "E_tot_mean_kcal_mol": _finite(etot.mean()), "E_tot_std_kcal_mol": _finite(etot.std()),
            "E_tot_drift_kcal_mol_per_ps": _drift(t, etot), "E_conserved_drift_kcal_mol_per_ps": _drift(t, econ),
            "E_conserved_std_kcal_mol": _finite(econ.std()), "E_pot_mean_kcal_mol": _finite(e["E_pot_kcal_mol"].mean()),
            "E_ML_final_hartree": _finite(e["E_ML_hartree"][-1]), "E_MM_final_kcal_mol": _finite(e["E_MM_kcal_mol"][-1]),
            "T_mean_K": _finite(e["T_K"].mean()), "T_std_K": _finite(e["T_K"].std()),
            "P_mean_bar": _finite(e["P_bar"].mean()), "volume_mean_A3": _finite(e["volume_A3"].mean()),
        })
    s.update(stats)
    s.update({"engine": engine, "minimization": minimization, "files": {k: str(v) for k, v in files.items()}})
    s.update(extra)
    return s


#: the keys every host's ``summary.json`` has (:func:`md_summary`)
MD_SUMMARY_KEYS = ("host", "model", "ensemble", "steps", "dt_fs", "simulated_ps", "wall_s", "setup_s", "ns_per_day",
                   "ms_per_step", "n_atoms", "n_ml_atoms", "temperature_target_K", "pressure_target_bar", "ml_calls",
                   "ml_seconds", "rows", "E_tot_mean_kcal_mol", "E_tot_std_kcal_mol", "E_tot_drift_kcal_mol_per_ps",
                   "E_conserved_drift_kcal_mol_per_ps", "E_conserved_std_kcal_mol", "E_pot_mean_kcal_mol",
                   "E_ML_final_hartree", "E_MM_final_kcal_mol", "T_mean_K", "T_std_K", "P_mean_bar", "volume_mean_A3",
                   "engine", "minimization", "files")


def write_md_summary(path, summary: dict) -> Path:
    """Write ``summary.json`` (strict JSON: a non-finite float is written as null)."""
    import json

    def clean(v):
        if isinstance(v, float):
            return _finite(v)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    text = json.dumps(clean(summary), indent=1, allow_nan=False)
    return _replace(Path(path), lambda tmp: tmp.write_text(text))


def format_md_summary(s: dict) -> str:
    """A few human-readable lines of an ``md`` summary (:func:`md_summary`)."""
    def num(key, fmt):
        v = s.get(key)
        return "n/a" if v is None else format(v, fmt)

    lines = [f"{s['host']} {s['ensemble'].upper()} with {s['model']}: {s['steps']} steps × {s['dt_fs']} fs = "
             f"{s['simulated_ps']:.3f} ps in {num('wall_s', '.1f')} s ({num('ns_per_day', '.3f')} ns/day, "
             f"{s['n_atoms']} atoms, {s['n_ml_atoms']} ML)"]
    if s.get("rows"):
        conserved = "" if s.get("E_conserved_drift_kcal_mol_per_ps") is None else \
            f" (conserved: {num('E_conserved_drift_kcal_mol_per_ps', '.4g')})"
        lines.append(f"E_tot {num('E_tot_mean_kcal_mol', '.4f')} ± {num('E_tot_std_kcal_mol', '.4f')} kcal/mol, "
                     f"drift {num('E_tot_drift_kcal_mol_per_ps', '.4g')} kcal/mol/ps{conserved}, "
                     f"<T> {num('T_mean_K', '.1f')} K, "
                     f"<P> {num('P_mean_bar', '.0f')} bar, final E_ML {num('E_ML_final_hartree', '.8f')} Ha")
    lines.append(f"outputs: {Path(s['files']['energies']).parent}")
    return "\n".join(lines)
