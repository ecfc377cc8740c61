#!/usr/bin/env python
"""Side by side: our GROMACS ML/MM host vs OpenMM-ML (openmmml) on the same system and time step.

    .venv/bin/python bench/bench_vs_openmm_ml.py [--steps 3000] [--rounds 2] [--rows f64,omm2,...]
                                                 [--venv bench/.venv_openmmml]

Run it with the project's Python (it drives our side through bench/bench_gromacs.py). OpenMM-ML runs in a
venv of its own, which the script creates on first use (reused afterwards):
``pip install torch==2.13.0`` first (the local CPU wheel), then ``openmm openmmml torchani``.

System: FreeSolv ethanol in TIP3P (~2100 atoms) as bench/bench_gromacs.py builds it
(tests/test_gromacs_host.build_system), ethanol (``resname MOL``) in ANI-2x (8 members), mechanical
embedding, the rest GAFF/TIP3P. Both sides: PME with r_c 1.0 nm (same Ewald splitting, ewald-rtol 1e-6, and
the same grid), LJ switched 0.9-1.0 nm with dispersion correction, rigid water, ethanol unconstrained,
0.5 fs, Langevin at 298.15 K with friction 0.5/ps (GROMACS sd, tau-t 2 ps; OpenMM LangevinMiddleIntegrator),
centre-of-mass motion removed every 100 steps. The ``-2fs`` rows (issue 13 item 4): the same at 2 fs with every
X–H bond constrained, ethanol's too (GROMACS ``constraints = h-bonds``, LINCS order 12, 2 iterations, as
``run_md(constraints="h-bonds")``; OpenMM ``constraints=HBonds`` with ``createMixedSystem(removeConstraints=False)``,
the integrator's default tolerance 1e-5).

* ours: ``gmx mdrun -ntomp 1`` + the ANI-2x engine on 1 torch thread (two cores), ML coordinates sent early
  (ML and MM at the same time; the default), engine in float64 and in float32; ms/step from md.log.
* OpenMM-ML 1.8: ``MLPotential('ani2x').createMixedSystem`` (its ANI path is a ``PythonForce`` around
  torchani, float32), OpenMM CPU platform with 2 threads and with 1 (torch gets the same number of threads);
  ms/step timed around ``integrator.step(N)`` after a warm-up.

Rows (``--rows``, a comma list, run in that order every round): f64 / f32 ours float64 / float32, omm2 / omm1
OpenMM-ML on 2 / 1 threads, each also as ``-2fs``; mm / omm-mm both MM engines alone. Default
``f64,omm2,f32,f64-2fs,omm2-2fs,f32-2fs,mm,omm-mm`` (interleaved ours, theirs, ...) for ``--rounds`` rounds: about
11 minutes on 2 quiet cores (per round ~1.5 min for each OpenMM-ML ML/MM row, ~0.5 min for each of ours). The
table gives the median ms/step and ns/day per row and ratios of ns/day: to OpenMM-ML (2 threads) at 0.5 fs (the
issue's "≥ 5× on the same time step" for the 0.5 fs rows, "≥ 10× with item 4" for ours at 2 fs with h-bonds) and
to OpenMM-ML at the row's own time step and constraints (2 fs vs 2 fs: same time step, fair).

Patched in OpenMM-ML (stated in the results): torchani cannot download ``ani2x_state_dict.pt`` here, so
``torchani.models.ANI2x`` is replaced by torchani's own NeuroChem loader on the local ani-model-zoo files
(the same 8-member ANI-2x we use); and openmmml 1.8's ``_computeANI`` returns forces in kJ/mol/Å to a
``PythonForce`` that expects kJ/mol/nm (10× too small). The script measures that factor (central
finite differences of OpenMM-ML's own ANI energy along its force) and, when it finds 0.1, wraps
``_computeANI`` to multiply the forces by 10, then measures again. Correctness: OpenMM-ML's ANI energy
and forces on one geometry (after the patch) against ours (mdi_mlmm's ani2x, float64 and float32).

Writes bench/results_vs_openmm_ml.json (``--json``: rows, table, ``item5_ratios``) and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()
DEFAULT_VENV = REPO / "bench" / ".venv_openmmml"
ZOO = REPO.parent / "shared" / "models" / "ani-model-zoo"
TEMPERATURE, FRICTION_PER_PS, DT_FS, CUTOFF_NM, SWITCH_NM, EWALD_RTOL = 298.15, 0.5, 0.5, 1.0, 0.9, 1e-6
DT_LONG_FS = 2.0  # issue 13 item 4: 2 fs with X–H bonds constrained (both sides)
KJ_PER_HARTREE = 2625.4996394798254  # CODATA 2018, as mdi_mlmm.units (the worker cannot import mdi_mlmm)


# ============================================================================ OpenMM-ML worker (own venv)
def _patch_torchani(zoo: Path) -> str:
    """torchani.models.ANI2x without a download: torchani's NeuroChem loader on the local files."""
    import torchani
    from torchani.neurochem import load_model_from_info_file

    data = Path(tempfile.mkdtemp(prefix="torchani_data_"))
    (data / "Neurochem").symlink_to(zoo.resolve(), target_is_directory=True)
    os.environ["TORCHANI_DATA_DIR"] = str(data)  # NeurochemInfo resolves the .info's paths under it

    def ani2x(model_index=None, periodic_table_index=True, **_):
        model = load_model_from_info_file(data / "Neurochem" / "ani-2x_8x.info", model_index,
                                          periodic_table_index=periodic_table_index)
        model.requires_grad_(False)
        return model

    torchani.models.ANI2x = ani2x
    return f"torchani.models.ANI2x -> torchani.neurochem.load_model_from_info_file({zoo}/ani-2x_8x.info)"


_FORCE_SCALE = [1.0]


def _wrap_compute_ani() -> None:
    """Route openmmml's ANI PythonForce callback through a wrapper whose force factor we can set."""
    from openmmml.models import anipotential

    original = anipotential._computeANI

    def compute(state, **kw):
        energy, forces = original(state, **kw)
        return energy, forces * _FORCE_SCALE[0] if _FORCE_SCALE[0] != 1.0 else forces

    anipotential._computeANI = compute


def _gromacs_topfile(top: Path, box_nm):
    """GromacsTopFile as GROMACS reads it: OpenMM predefines FLEXIBLE, GROMACS does not (SETTLE water)."""
    from openmm.app.gromacstopfile import GromacsTopFile

    class _Top(GromacsTopFile):
        _started = False

        def _processFile(self, file):  # noqa: N802
            if not self._started:
                self._started = True
                self._defines.pop("FLEXIBLE", None)
            super()._processFile(file)

    return _Top(str(top), periodicBoxVectors=box_nm)


def _openmm_system(a, with_ml: bool):
    import openmm
    import openmm.app as app
    import openmm.unit as u
    from scipy.optimize import brentq
    from scipy.special import erfc

    gro = app.GromacsGroFile(a.gro)
    top = _gromacs_topfile(Path(a.top), gro.getPeriodicBoxVectors())
    system = top.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=CUTOFF_NM * u.nanometer,
                              switchDistance=SWITCH_NM * u.nanometer, constraints=app.HBonds if a.hbonds else None,
                              rigidWater=True, removeCMMotion=True)
    alpha = brentq(lambda x: erfc(x) - EWALD_RTOL, 1.0, 6.0) / CUTOFF_NM  # GROMACS's ewald-rtol → β (1/nm)
    for f in system.getForces():
        if isinstance(f, openmm.NonbondedForce):
            f.setPMEParameters(alpha, *a.pme_grid)
            f.setUseDispersionCorrection(True)
            f.setUseSwitchingFunction(True)
            f.setSwitchingDistance(SWITCH_NM)
        if isinstance(f, openmm.CMMotionRemover):
            f.setFrequency(100)
    ml = [at.index for at in top.topology.atoms() if at.residue.name == a.ml_resname]
    if with_ml:
        from openmmml import MLPotential

        # removeConstraints=False with HBonds: the ML region's X–H bonds stay constrained (as GROMACS h-bonds)
        system = MLPotential("ani2x").createMixedSystem(top.topology, system, ml, forceGroup=1,
                                                        removeConstraints=not a.hbonds)
    return top.topology, system, gro.getPositions(), ml


def _context(system, positions, threads: int, dt_fs: float = DT_FS):
    import openmm
    import openmm.unit as u

    integ = openmm.LangevinMiddleIntegrator(TEMPERATURE * u.kelvin, FRICTION_PER_PS / u.picosecond,
                                           dt_fs * u.femtosecond)
    integ.setRandomNumberSeed(1993)
    plat = openmm.Platform.getPlatformByName("CPU")
    ctx = openmm.Context(system, integ, plat, {"Threads": str(threads)})
    ctx.setPositions(positions)
    ctx.setVelocitiesToTemperature(TEMPERATURE * u.kelvin, 1993)
    return ctx, integ


def _ml_state(ctx, ml):
    import numpy as np
    import openmm.unit as u

    st = ctx.getState(getEnergy=True, getForces=True, groups={1})
    return (st.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole),
            st.getForces(asNumpy=True).value_in_unit(u.kilojoule_per_mole / u.nanometer)[ml].astype(np.float64))


def _force_unit_factor(ctx, positions, ml, h_nm: float = 1e-3) -> float:
    """(finite-difference slope of OpenMM-ML's ANI energy along its own force) / |force|: 1 if consistent."""
    import numpy as np
    import openmm.unit as u

    pos0 = np.array(positions.value_in_unit(u.nanometer))
    _, f = _ml_state(ctx, ml)
    d = f / np.linalg.norm(f)
    e = []
    for s in (+1, -1):
        p = pos0.copy()
        p[ml] += s * h_nm * d
        ctx.setPositions(p * u.nanometer)
        e.append(_ml_state(ctx, ml)[0])
    ctx.setPositions(pos0 * u.nanometer)
    slope = -(e[0] - e[1]) / (2 * h_nm)  # kJ/mol/nm along d
    return float(np.sum(f * d) / slope)


def worker(a) -> int:
    import numpy as np
    import openmm
    import torch

    torch.set_num_threads(a.threads)
    out: dict = {"threads": a.threads, "torch_threads": torch.get_num_threads()}
    if a.mode in ("check", "md"):
        out["patch_torchani"] = _patch_torchani(Path(a.zoo))
        _wrap_compute_ani()
    topology, system, positions, ml = _openmm_system(a, with_ml=a.mode != "mm")
    ctx, integ = _context(system, positions, a.threads, a.dt_fs)
    out["dt_fs"], out["constraints"] = a.dt_fs, "HBonds" if a.hbonds else "none"
    out["n_constraints"], out["constraint_tolerance"] = system.getNumConstraints(), integ.getConstraintTolerance()
    if a.mode in ("check", "md"):
        factor = _force_unit_factor(ctx, positions, ml)
        forces_unpatched = _ml_state(ctx, ml)[1]
        out["force_factor_unpatched"] = factor
        out["force_unit_bug"] = bool(abs(factor - 0.1) < 0.02)
        if out["force_unit_bug"]:
            _FORCE_SCALE[0] = 10.0
            out["patch_forces"] = ("openmmml.models.anipotential._computeANI wrapped: forces × 10 "
                                   "(kJ/mol/Å returned to a PythonForce that expects kJ/mol/nm)")
        elif abs(factor - 1.0) > 0.02:
            raise SystemExit(f"OpenMM-ML's ANI forces are {factor:.3f}× the finite-difference slope: neither "
                             "1 nor the known 0.1; not patching, not benchmarking")
        out["force_factor_patched"] = _force_unit_factor(ctx, positions, ml)
    if a.mode == "check":
        import openmm.unit as u

        e, f = _ml_state(ctx, ml)
        pos = np.array(positions.value_in_unit(u.angstrom))[ml]
        # the same torchani model straight, float64 (the model OpenMM-ML builds, without its float32 callback)
        import torchani

        model = torchani.models.ANI2x(periodic_table_index=True).double()
        z = torch.tensor([[at.element.atomic_number for at in topology.atoms()][i] for i in ml])[None]
        x = torch.tensor(pos, dtype=torch.float64)[None].requires_grad_(True)
        e64 = model((z, x)).energies.sum()
        (g,) = torch.autograd.grad(e64, x)
        np.savez(a.out_npz, energy_kj=e, forces_kj_nm=f, forces_unpatched=forces_unpatched, positions_A=pos, z=z[0].numpy(),
                 torchani64_energy_Ha=e64.item(), torchani64_forces_Ha_A=-g[0].numpy())
    if a.mode in ("md", "mm"):
        integ.step(a.warmup)
        t0 = time.perf_counter()
        integ.step(a.steps)
        ctx.getState(getEnergy=True)  # make sure every step is done
        out["ms_per_step"] = 1000 * (time.perf_counter() - t0) / a.steps
        out["steps"], out["warmup"] = a.steps, a.warmup
    out["natoms"], out["n_ml"] = system.getNumParticles(), len(ml)
    Path(a.out_json).write_text(json.dumps(out, indent=1))
    return 0


# ============================================================================ driver (project venv)
def ensure_venv(venv: Path, python: str) -> Path:
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import openmmml, torchani, openmm"],
                                      capture_output=True).returncode == 0:
        return py
    print(f"creating {venv} (torch==2.13.0 first: the local CPU wheel; then openmm, openmmml, torchani)", flush=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True)  # any other spec pulls CUDA wheels (GBs)
    subprocess.run(pip + ["torch==2.13.0", "openmm", "openmmml", "torchani"], check=True)
    return py


def venv_versions(py: Path) -> dict:
    code = ("import json, importlib.metadata as m; print(json.dumps({k: m.version(k) for k in "
            "('openmm', 'openmmml', 'torchani', 'torch', 'numpy')}))")
    return json.loads(subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout)


def pme_grid(md_log: Path | None, box_nm: float) -> list[int]:
    import re

    if md_log and md_log.exists():
        t = md_log.read_text()
        got = [re.search(rf"^\s*fourier-n{c}\s*=\s*(\d+)", t, re.M) for c in "xyz"]
        if all(got):
            return [int(m.group(1)) for m in got]
    n = int(-(-box_nm // 0.12))
    return [n, n, n]


def run_theirs(py: Path, mode: str, threads: int, a, system: dict, work: Path, tag: str,
               dt_fs: float = DT_FS, hbonds: bool = False) -> dict:
    out = work / f"openmm_{tag}.json"
    cmd = [str(py), str(HERE), "--worker", mode, "--threads", str(threads), "--top", str(system["top"]),
           "--gro", str(system["gro"]), "--pme-grid", *map(str, system["pme_grid"]), "--zoo", str(a.zoo),
           "--steps", str(a.steps if mode == "md" else a.mm_steps), "--warmup", str(a.warmup),
           "--dt-fs", str(dt_fs), *(["--hbonds"] if hbonds else []),
           "--out-json", str(out), "--out-npz", str(work / "openmm_ml_check.npz")]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TORCHANI_NO_WARN_EXTENSIONS": "1"})
    if r.returncode != 0:
        raise SystemExit(f"OpenMM-ML worker ({mode}, {threads} threads) failed:\n{r.stderr[-3000:]}")
    res = json.loads(out.read_text())
    res["wall_s"] = round(time.monotonic() - t0, 1)
    return res


def run_ours(model: str, dtype: str, a, system: dict, work: Path, tag: str, steps: int | None = None,
             dt_fs: float = DT_FS, hbonds: bool = False) -> dict:
    d = work / f"gmx_{tag}"
    j = d / "result.json"
    steps = steps or (a.steps if model != "stock" else a.mm_steps)
    cmd = [sys.executable, str(REPO / "bench" / "bench_gromacs.py"), "--models", model, "--steps", str(steps),
           "--ntomp", "1", "--engine-threads", "1", "--engine-dtype", dtype,
           "--dt", str(dt_fs), "--constraints", "h-bonds" if hbonds else "none",
           "--top", str(system["top"]), "--gro", str(system["gro"]), "--workdir", str(d), "--json", str(j)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench_gromacs.py ({model}, {dtype}) failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    row = json.loads(j.read_text())["rows"][0]
    row["md_log"] = str(d / model / "md.log")
    row["dt_fs"], row["constraints"] = dt_fs, "h-bonds" if hbonds else "none"
    return row


def check_correctness(npz: Path) -> dict:
    """OpenMM-ML's ANI energy/forces (patched) vs mdi_mlmm's ani2x on the same geometry."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from mdi_mlmm import units
    from mdi_mlmm.potentials import load_potential

    ref = np.load(npz)
    ha, ha_a_to_kj_nm = units.HARTREE_IN_KJ_PER_MOL, units.HARTREE_IN_KJ_PER_MOL * units.NM_TO_ANGSTROM
    out = {"n_atoms": int(len(ref["z"]))}
    for dtype in ("float64", "float32"):
        pot = load_potential("ani2x", dtype=dtype, threads=1)
        r = pot.compute([int(z) for z in ref["z"]], ref["positions_A"])
        de = float(r.energy) * ha - float(ref["energy_kj"])
        df = r.forces * ha_a_to_kj_nm - ref["forces_kj_nm"]
        out[f"openmm_ml_vs_ours_{dtype}"] = {
            "dE_kj_mol": de, "dE_rel": abs(de) / abs(float(ref["energy_kj"])),
            "max_dF_kj_mol_nm": float(np.abs(df).max()),
            "max_dF_rel": float(np.abs(df).max() / np.abs(ref["forces_kj_nm"]).max())}
        if dtype == "float64":
            ours = r.forces * ha_a_to_kj_nm  # least-squares factor of OpenMM-ML's unpatched forces on ours
            out["unpatched_forces_over_ours"] = float(np.sum(ref["forces_unpatched"] * ours) / np.sum(ours * ours))
            out["torchani_float64_vs_ours_float64"] = {
                "dE_Ha": float(r.energy) - float(ref["torchani64_energy_Ha"]),
                "max_dF_Ha_A": float(np.abs(r.forces - ref["torchani64_forces_Ha_A"]).max())}
    out["openmm_ml_energy_kj_mol"] = float(ref["energy_kj"])
    out["max_abs_force_kj_mol_nm"] = float(np.abs(ref["forces_kj_nm"]).max())
    return out


def build_system(work: Path, shared: Path) -> dict:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    from mdi_mlmm.hosts.gromacs.build import require_gmx
    from test_gromacs_host import build_system as build

    top, gro = build(work / "system", require_gmx(), shared)
    lines = gro.read_text().splitlines()
    return {"top": top, "gro": gro, "natoms": int(lines[1]), "box_nm": [float(x) for x in lines[-1].split()[:3]]}


# rows: key -> (name, side, options); options of "ours": (model, dtype, dt_fs, hbonds),
# of "theirs" (OpenMM-ML's worker): (mode, threads, dt_fs, hbonds)
ROWS = {
    "f64": ("ours float64", "ours", ("ani2x", "float64", DT_FS, False)),
    "omm2": ("OpenMM-ML 2 threads", "theirs", ("md", 2, DT_FS, False)),
    "f32": ("ours float32", "ours", ("ani2x", "float32", DT_FS, False)),
    "omm1": ("OpenMM-ML 1 thread", "theirs", ("md", 1, DT_FS, False)),
    "f64-2fs": ("ours float64, 2 fs h-bonds", "ours", ("ani2x", "float64", DT_LONG_FS, True)),
    "omm2-2fs": ("OpenMM-ML 2 threads, 2 fs HBonds", "theirs", ("md", 2, DT_LONG_FS, True)),
    "f32-2fs": ("ours float32, 2 fs h-bonds", "ours", ("ani2x", "float32", DT_LONG_FS, True)),
    "omm1-2fs": ("OpenMM-ML 1 thread, 2 fs HBonds", "theirs", ("md", 1, DT_LONG_FS, True)),
    "mm": ("GROMACS MM alone (-ntomp 1)", "ours", ("stock", "float64", DT_FS, False)),
    "omm-mm": ("OpenMM MM alone, 2 threads", "theirs", ("mm", 2, DT_FS, False)),
}
DEFAULT_ROWS = "f64,omm2,f32,f64-2fs,omm2-2fs,f32-2fs,mm,omm-mm"
MM_ROWS = ("mm", "omm-mm")


def parse_rows(spec: str, no_mm: bool = False) -> list[str]:
    keys = [k.strip() for k in spec.split(",") if k.strip()]
    bad = [k for k in keys if k not in ROWS]
    if bad or not keys:
        raise SystemExit(f"--rows: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(ROWS)}")
    return [k for k in dict.fromkeys(keys) if not (no_mm and k in MM_ROWS)]


def row_runner(key: str, a, py: Path, system: dict, work: Path):
    _, side, (what, how, dt_fs, hbonds) = ROWS[key]
    if side == "ours":
        return lambda i: run_ours(what, how, a, system, work, f"{key}_{i}", dt_fs=dt_fs, hbonds=hbonds)
    return lambda i: run_theirs(py, what, how, a, system, work, f"{key}_{i}", dt_fs=dt_fs, hbonds=hbonds)


def _x(v) -> str:
    return f"{v:.2f}×" if v is not None else "-"


def summarize(keys: list[str], runs: dict[str, list]) -> tuple[list[dict], list[dict]]:
    """Median ms/step and ns/day per row; ratios of ns/day to OpenMM-ML at the base time step (the issue's
    "≥ 5× on the same time step" and "≥ 10× with item 4") and at the row's own time step and constraints."""
    med = {k: statistics.median(r["ms_per_step"] for r in runs[ROWS[k][0]]) for k in keys if runs[ROWS[k][0]]}
    nsday = {k: 86400 * ROWS[k][2][2] * 1e-6 / (ms * 1e-3) for k, ms in med.items()}
    ml_theirs = {k for k in med if ROWS[k][1] == "theirs" and ROWS[k][2][0] == "md"}

    def same_dt_ref(k):  # OpenMM-ML (2 threads first) at k's time step and constraints
        for c in sorted(ml_theirs, key=lambda c: -ROWS[c][2][1]):
            if ROWS[c][2][2:] == ROWS[k][2][2:]:
                return c
        return None

    table = []
    for k, ms in med.items():
        name, side, (_, _, dt_fs, hbonds) = ROWS[k]
        row = {"key": k, "run": name, "dt_fs": dt_fs,
               "constraints": ("h-bonds" if side == "ours" else "HBonds") if hbonds else "none",
               "ms_per_step": round(ms, 3), "ns_per_day": round(nsday[k], 3),
               "all_ms_per_step": [round(r["ms_per_step"], 3) for r in runs[name]],
               "all_wall_s": [r.get("wall_s") for r in runs[name]]}  # each run's wall time, start-up included
        for ref, field in (("omm2", "speedup_vs_openmm_ml_2threads"), ("omm1", "speedup_vs_openmm_ml_1thread")):
            if ref in med:  # ns/day ratio to OpenMM-ML at the base time step
                row[field] = round(nsday[k] / nsday[ref], 2)
        ref = same_dt_ref(k)
        if ref and ROWS[k][2][0] not in ("mm", "stock"):
            row["speedup_vs_openmm_ml_same_dt"] = round(nsday[k] / nsday[ref], 2)
            row["same_dt_reference"] = ROWS[ref][0]
        table.append(row)
    item5 = []
    for k in med:
        name, side, (model, _, dt_fs, hbonds) = ROWS[k]
        if side != "ours" or model == "stock":
            continue
        for t in sorted(ml_theirs, key=list(ROWS).index):
            t_dt, t_hb = ROWS[t][2][2:]
            same = (t_dt, t_hb) == (dt_fs, hbonds)
            if not (same or t_dt == DT_FS and not t_hb):
                continue
            target = 5 if same else 10 if hbonds and dt_fs == DT_LONG_FS else None  # "≥ 10× with item 4"
            item5.append({"ours": name, "theirs": ROWS[t][0], "ns_per_day_ratio": round(nsday[k] / nsday[t], 2),
                          "same_time_step": same, "target": target})
    return table, item5


def driver(a) -> int:
    t_start = time.monotonic()
    keys = parse_rows(a.rows, a.no_mm)  # before anything slow: a typo fails at once
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_vs_openmm_ml_"))
    work.mkdir(parents=True, exist_ok=True)
    py = ensure_venv(Path(a.venv), a.python)
    versions = venv_versions(py)
    system = build_system(work, Path(a.shared))
    print(f"system: {system['natoms']} atoms, box {system['box_nm']} nm; work dir {work}", flush=True)

    # correctness first: the patch, and OpenMM-ML's ANI vs ours on one geometry
    ours_first = run_ours("stock", "float64", a, system, work, "probe", steps=100)
    system["pme_grid"] = pme_grid(Path(ours_first["md_log"]), system["box_nm"][0])  # GROMACS's grid, OpenMM too
    check = run_theirs(py, "check", 1, a, system, work, "check")
    correctness = check_correctness(work / "openmm_ml_check.npz")
    print(f"OpenMM-ML ANI forces / finite differences: {check['force_factor_unpatched']:.4f} unpatched, "
          f"{check['force_factor_patched']:.4f} patched; unpatched / ours (float64): "
          f"{correctness['unpatched_forces_over_ours']:.6f}", flush=True)
    for k in ("openmm_ml_vs_ours_float64", "openmm_ml_vs_ours_float32"):
        c = correctness[k]
        print(f"{k}: dE {c['dE_kj_mol']:+.3e} kJ/mol ({c['dE_rel']:.1e} rel.), max |dF| "
              f"{c['max_dF_kj_mol_nm']:.2e} kJ/mol/nm ({c['max_dF_rel']:.1e} of max |F|)", flush=True)

    variants = [(ROWS[k][0], row_runner(k, a, py, system, work)) for k in keys]
    runs: dict[str, list] = {name: [] for name, _ in variants}
    loads = [os.getloadavg()]
    for i in range(a.rounds):
        for name, fn in variants:
            r = fn(i)
            runs[name].append(r)
            print(f"round {i + 1}: {name:<36} {r['ms_per_step']:8.3f} ms/step  (load {os.getloadavg()[0]:.2f})",
                  flush=True)
        loads.append(os.getloadavg())
    table, item5 = summarize(keys, runs)
    print(f"\n{system['natoms']} atoms (ethanol ANI-2x), {a.steps} steps per ML/MM run, {a.rounds} rounds, "
          f"median ms per MD step; ratios of ns/day")
    base = f"vs OpenMM-ML 2thr {DT_FS:g} fs"
    print(f"{'run':<36}{'dt fs':>6}{'ms/step':>10}{'ns/day':>9}{base:>26}{'vs OpenMM-ML same dt':>22}")
    for row in table:
        print(f"{row['run']:<36}{row['dt_fs']:>6g}{row['ms_per_step']:>10.3f}{row['ns_per_day']:>9.2f}"
              f"{_x(row.get('speedup_vs_openmm_ml_2threads')):>26}{_x(row.get('speedup_vs_openmm_ml_same_dt')):>22}")
    for p in item5:
        target = f"  (issue target ≥ {p['target']}×)" if p.get("target") else ""
        print(f"{p['ours']} / {p['theirs']}: {p['ns_per_day_ratio']:.2f}× ns/day{target}")
    import re

    m = re.search(r"GROMACS version:\s*(\S+)", Path(ours_first["md_log"]).read_text())
    gmx_version = m.group(1) if m else None
    import torch

    result = {
        "command": " ".join([os.path.relpath(sys.executable, REPO), "bench/bench_vs_openmm_ml.py", *sys.argv[1:]]),
        "system": {"natoms": system["natoms"], "n_ml": check["n_ml"], "box_nm": system["box_nm"],
                   "pme_grid": system["pme_grid"], "dt_fs": DT_FS, "dt_long_fs": DT_LONG_FS,
                   "constraints_long": "X–H bonds constrained, ML region's too (GROMACS h-bonds LINCS order 12 "
                                       "iter 2; OpenMM HBonds, removeConstraints=False, tolerance 1e-5)",
                   "cutoff_nm": CUTOFF_NM,
                   "thermostat": f"Langevin {TEMPERATURE} K, friction {FRICTION_PER_PS}/ps"},
        "steps": a.steps, "warmup_openmm": a.warmup, "rounds": a.rounds,
        "versions": {"openmm_ml_venv": versions, "ours_torch": torch.__version__, "gromacs": gmx_version,
                     "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "patched": {"torchani": check["patch_torchani"], "forces": check.get("patch_forces"),
                    "force_factor_unpatched": check["force_factor_unpatched"],
                    "force_factor_patched": check["force_factor_patched"]},
        "correctness": correctness, "loadavg": loads, "rows": keys, "table": table, "item5_ratios": item5,
        "total_wall_s": round(time.monotonic() - t_start, 1),
    }
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {a.json}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=(
        "Runtime with the defaults: about 11 min on 2 quiet cores plus ~1 min of set-up (each OpenMM-ML ML/MM row "
        "~1.5 min per round, each of ours ~0.5 min). Smoke test: --steps 20 --mm-steps 20 --warmup 5 --rounds 1."))
    ap.add_argument("--steps", type=int, default=3000, help="timed MD steps per ML/MM run (default 3000)")
    ap.add_argument("--mm-steps", type=int, default=2000, help="timed steps of the MM-alone runs (default 2000)")
    ap.add_argument("--warmup", type=int, default=100, help="OpenMM steps before timing (default 100)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of interleaved runs (default 2)")
    ap.add_argument("--rows", default=DEFAULT_ROWS,
                    help=f"comma list of rows, run in this order every round (default {DEFAULT_ROWS}); from: "
                         + "; ".join(f"{k} = {v[0]}" for k, v in ROWS.items()))
    ap.add_argument("--no-mm", action="store_true", help="skip the MM-alone runs (mm, omm-mm)")
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="OpenMM-ML's venv (created if missing)")
    ap.add_argument("--python", default=getattr(sys, "_base_executable", sys.executable),
                    help="interpreter that creates the venv (Python 3.11: the local torch wheel is cp311)")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--zoo", default=str(ZOO), help="NeuroChem ani-model-zoo folder (ani-2x_8x.info)")
    ap.add_argument("--workdir")
    ap.add_argument("--json", default=str(REPO / "bench" / "results_vs_openmm_ml.json"))
    # worker options (run inside OpenMM-ML's venv)
    ap.add_argument("--worker", choices=["check", "md", "mm"], help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--top", help=argparse.SUPPRESS)
    ap.add_argument("--gro", help=argparse.SUPPRESS)
    ap.add_argument("--ml-resname", default="MOL", help=argparse.SUPPRESS)
    ap.add_argument("--pme-grid", type=int, nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--dt-fs", type=float, default=DT_FS, help=argparse.SUPPRESS)
    ap.add_argument("--hbonds", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out-json", help=argparse.SUPPRESS)
    ap.add_argument("--out-npz", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        a.mode = a.worker
        return worker(a)
    return driver(a)


if __name__ == "__main__":
    raise SystemExit(main())
