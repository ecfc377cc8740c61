#!/usr/bin/env python
"""ns/day of GROMACS as MM host: stock MM vs MDI-coupled (zero-force engine) vs ANI-2x.

Same system, same mdp (NVT, 0.5 fs, package template with mdi options added for the
coupled runs), run side by side; prints a table with ratios to stock MM. ``--dt 2 --constraints h-bonds``:
2 fs with every X–H bond constrained, the ML region's too (:func:`mdi_mlmm.hosts.gromacs.host.constraint_mdp`).

    python bench/bench_gromacs.py [--steps 1000] [--ntomp 1] [--top T --gro G --ml "resname MOL"]

Without --top/--gro it builds the test system (FreeSolv ethanol in a 2.8 nm TIP3P box,
~2100 atoms) from ../shared/freesolv. Needs `mdi-mlmm gromacs build` first.

Noise. On a small shared VM one (stock, coupled) pair moves by ±0.1 ms per step, as much as the
coupling overhead itself. ``--repeats N`` runs the models N times, interleaved (block i runs them in
the given order, block i + 1 in reverse), each from the same tpr, and reports the per-block
differences with a median and a 95 % confidence interval (order statistics: distribution-free;
bootstrap as a cross-check). ``--pin`` puts mdrun on one core and the engine on another (CPU
affinity, inherited by their threads), stock runs on mdrun's core too. ``--reset-step N`` restarts
GROMACS's performance counters at step N, after the warm-up (the first model calls).

Knobs for finding where the overhead goes, none on by default: ``--engine-spin-us`` (the engine polls
its socket instead of sleeping between commands, ``MDI_MLMM_ENGINE_SPIN_US``), ``--keep-cores-awake``
(a SCHED_IDLE busy loop on every core, so no vCPU halts: any real work preempts it at once; the
difference it makes is the cost of waking an idle vCPU), ``--omp-wait-policy`` (OMP_WAIT_POLICY
of mdrun; matters only with --ntomp > 1: with one OpenMP thread nothing spins).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from math import comb
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from mdi_mlmm import processes  # noqa: E402
from mdi_mlmm.engine.transport import free_port  # noqa: E402
from mdi_mlmm.hosts.gromacs import host  # noqa: E402
from mdi_mlmm.hosts.gromacs.build import require_gmx  # noqa: E402

FAST = {"rcoulomb": 1.0, "rvdw": 1.0, "rvdw-switch": 0.9, "fourierspacing": 0.12, "pme-order": 4,
        "nstcalcenergy": 100, "nstenergy": 100, "nstlog": 1000}
TARGET_OVERHEAD_MS = 0.2        # issue 13, item 1
TARGET_OVERLAP = 1.15           # issue 13, item 3: step <= 1.15 max(t_ML, t_MM) + overhead
CHEAP = ("zero", "harmonic")    # engines whose model costs ~nothing: coupled - stock = coupling overhead
WAIT_RE = re.compile(r"MDI ML/MM: (\d+) engine evaluations, ([\d.]+) s waiting for the engine \(([\d.]+) ms per "
                     r"evaluation\); (\d+) with coordinates sent")


# ----------------------------------------------------------------------------- statistics
def median_ci(values, level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> dict:
    """Median of ``values`` with two confidence intervals for it.

    order: [x_(k), x_(n+1-k)] with the largest k whose coverage 1 - 2 P(Bin(n, 1/2) <= k - 1) is still
    >= ``level`` (distribution-free; with n <= 5 not reachable: k = 1 and the coverage it has);
    bootstrap: percentile interval of the medians of ``n_boot`` resamples (fixed seed)."""
    x = np.sort(np.asarray([v for v in values if v is not None], dtype=float))
    n = len(x)
    if n == 0:
        return {"n": 0}
    out = {"n": n, "median": round(float(np.median(x)), 4), "min": round(float(x[0]), 4),
           "max": round(float(x[-1]), 4)}
    if n < 2:
        return out
    cover = lambda k: 1 - 2 * sum(comb(n, i) for i in range(k)) / 2 ** n  # noqa: E731
    k = 1
    while k + 1 <= n // 2 and cover(k + 1) >= level:
        k += 1
    out["ci_order"] = [round(float(x[k - 1]), 4), round(float(x[n - k]), 4)]
    out["ci_order_coverage"] = round(cover(k), 4)
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, n, size=(n_boot, n))], axis=1)
    lo, hi = np.percentile(meds, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    out["ci_bootstrap"] = [round(float(lo), 4), round(float(hi), 4)]
    return out


def fmt_ci(s: dict) -> str:
    if not s.get("n"):
        return "-"
    if "ci_order" not in s:
        return f"{s['median']:.3f} (n=1)"
    lo, hi = s["ci_order"]
    blo, bhi = s["ci_bootstrap"]
    return (f"{s['median']:.3f}  CI [{lo:.3f}, {hi:.3f}] ({100 * s['ci_order_coverage']:.1f} %, order stat.), "
            f"bootstrap [{blo:.3f}, {bhi:.3f}], n={s['n']}")


# ----------------------------------------------------------------------------- running
@contextlib.contextmanager
def affinity(cpus):
    """This process (and so the children it starts meanwhile) on ``cpus``; None: leave as is."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def cores_awake(enabled: bool):
    """A SCHED_IDLE busy loop pinned to every core while the block runs (no vCPU ever halts)."""
    procs = []
    if enabled:
        code = ("import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])}); "
                "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True: pass")
        for cpu in sorted(os.sched_getaffinity(0)):
            procs.append(processes.start([sys.executable, "-c", code, str(cpu)], stdin=subprocess.DEVNULL))
    try:
        yield
    finally:
        processes.stop(procs, grace=2)


def prepare(model: str, work: Path, top: Path, gro: Path, gmx, a) -> dict:
    """The run directory and tpr of one model (shared by all its repeats)."""
    d = work / model
    d.mkdir(exist_ok=True)
    for itp in top.parent.glob("*.itp"):
        (d / itp.name).write_bytes(itp.read_bytes())
    (d / "topol.top").write_text(top.read_text())
    atoms = host.make_index(gmx, gro, a.ml, d / "index.ndx")
    coupled = model != "stock"
    seq = model.endswith("-seq")
    (d / "md.mdp").write_text(host.mdp_text("nvt", a.steps, a.dt, ml_group="ML" if coupled else None,
                                            gen_vel=True, overrides={**FAST, **host.constraint_mdp(a.constraints)}))
    host.grompp(gmx, d / "md.mdp", gro, d / "topol.top", d / "md.tpr", d / "index.ndx")
    return {"model": model, "dir": d, "coupled": coupled, "seq": seq, "engine_model": model[:-4] if seq else model,
            "natoms_ml": len(atoms)}


def run_once(p: dict, block: int, gmx, a) -> dict:
    d, model = p["dir"], p["model"]
    deffnm = f"md{block}" if block else "md"   # block 0: the names of a single run (md.log)
    os.environ["MDI_MLMM_GMX_EARLY_COORDS"] = "0" if p["seq"] else "1"
    calls = d / (f"engine_calls{block}.csv" if block else "engine_calls.csv")
    engine_args = ["--threads", str(a.engine_threads), "--dtype", a.engine_dtype, "--call-log", str(calls)]
    mdrun_args = ["-resetstep", str(a.reset_step)] if a.reset_step > 0 else []
    mdrun_cpus = {a.mdrun_cpu} if a.pin else None
    t0 = time.monotonic()
    if not p["coupled"]:
        with affinity(mdrun_cpus):
            host.mdrun_mdi(gmx, d / "md.tpr", deffnm, None, cwd=d, ntomp=a.ntomp, mdrun_args=mdrun_args)
    elif not a.pin:
        host.mdrun_mdi(gmx, d / "md.tpr", deffnm, p["engine_model"], cwd=d, ntomp=a.ntomp, engine_args=engine_args,
                       mdrun_args=mdrun_args)
    else:   # the engine started here, so that it can be put on its own core before it starts working
        port = free_port()
        with host.engine_process(p["engine_model"], port, d / f"{deffnm}.engine.log", engine_args) as eng:
            os.sched_setaffinity(eng.pid, {a.engine_cpu})
            with affinity(mdrun_cpus):
                host.mdrun_mdi(gmx, d / "md.tpr", deffnm, p["engine_model"], cwd=d, ntomp=a.ntomp, port=port,
                               start_engine=False, mdrun_args=mdrun_args)
    wall = time.monotonic() - t0
    nsday = host.performance_ns_per_day(d / f"{deffnm}.log")
    row = {"run": model if p["coupled"] else "stock MM", "block": block, "ns_per_day": nsday, "wall_s": round(wall, 1),
           "ms_per_step": round(1000 * 86400 * a.dt * 1e-6 / nsday, 4) if nsday else None, "ml_ms_per_call": None}
    if p["coupled"] and calls.exists():   # the model's own time per call, measured inside the engine
        ms = np.loadtxt(calls, delimiter=",", skiprows=1, usecols=4, ndmin=1)
        row["ml_ms_per_call"] = round(float(np.median(ms[len(ms) // 10:])), 4) if len(ms) else None
    m = WAIT_RE.search((d / f"{deffnm}.log").read_text(errors="replace")) if p["coupled"] else None
    if m:   # GROMACS's own count: time inside the module's engine calls (early send + reply wait)
        row["gmx_engine_ms_per_eval"], row["early_evaluations"] = float(m.group(3)), int(m.group(4))
    return row


def block_order(models, block: int):
    return list(models) if block % 2 == 0 else list(reversed(models))


# ----------------------------------------------------------------------------- summary
def summarize(rows, models, a) -> dict:
    """Medians per run and the per-block paired differences with confidence intervals."""
    by = {}
    for r in rows:
        by.setdefault(r["run"], {})[r["block"]] = r
    names = [("stock MM" if m == "stock" else m) for m in models]
    blocks = sorted({r["block"] for r in rows})
    out = {"per_run": {}, "paired": {}}
    for name in names:
        rs = [by.get(name, {}).get(b) for b in blocks]
        out["per_run"][name] = {
            "ms_per_step": median_ci([r["ms_per_step"] for r in rs if r]),
            "ml_ms_per_call": median_ci([r["ml_ms_per_call"] for r in rs if r and r["ml_ms_per_call"]]),
        }
    stock = by.get("stock MM", {})
    cheap = next((n for n in names if n.split(":")[0] in CHEAP), None)
    ovh = {}
    if stock and cheap:
        ovh = {b: by[cheap][b]["ms_per_step"] - stock[b]["ms_per_step"] for b in blocks
               if b in by[cheap] and b in stock and by[cheap][b]["ms_per_step"] and stock[b]["ms_per_step"]}
        s = median_ci(list(ovh.values()))
        s["target_ms"] = TARGET_OVERHEAD_MS
        s["pairs"] = [round(v, 4) for v in ovh.values()]
        out["paired"][f"overhead ({cheap} - stock)"] = s
    for name in names:
        if name == "stock MM" or name == cheap or not stock:
            continue
        rs = by.get(name, {})
        ratio, margin = [], []
        for b in blocks:
            r, s0 = rs.get(b), stock.get(b)
            if not (r and s0 and r["ml_ms_per_call"] and r["ms_per_step"] and s0["ms_per_step"]):
                continue
            bound = max(r["ml_ms_per_call"], s0["ms_per_step"])
            ratio.append(r["ms_per_step"] / bound)
            if b in ovh:
                # item 3: step - (1.15 max(t_ML, t_MM) + overhead of the same block); <= 0 meets it
                margin.append(r["ms_per_step"] - (TARGET_OVERLAP * bound + ovh[b]))
        if ratio:
            out["paired"][f"{name}: step / max(t_ML, t_MM)"] = median_ci(ratio)
        if margin:
            s = median_ci(margin)
            s["pairs"] = [round(v, 4) for v in margin]
            out["paired"][f"{name}: step - (1.15 max(t_ML, t_MM) + overhead)"] = s
        if not name.endswith("-seq") and f"{name}-seq" in by:
            diff = [rs[b]["ms_per_step"] - by[f"{name}-seq"][b]["ms_per_step"] for b in blocks
                    if b in rs and b in by[f"{name}-seq"]]
            out["paired"][f"{name} - {name}-seq"] = median_ci(diff)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--ntomp", type=int, default=1, help="OpenMP threads of mdrun (default 1; the engine uses 1)")
    ap.add_argument("--top"), ap.add_argument("--gro")
    ap.add_argument("--ml", default="resname MOL", help="ML selection (default 'resname MOL')")
    ap.add_argument("--models", default="stock,harmonic:0.5,ani2x,ani2x-seq",
                    help="comma list of: stock, zero, ani2x, ...; NAME-seq: the same model with the ML coordinates "
                         "sent only when GROMACS asks for the ML forces (no overlap of ML and MM work)")
    ap.add_argument("--engine-threads", type=int, default=1, help="torch threads of the engine (default 1)")
    ap.add_argument("--engine-dtype", choices=["float64", "float32"], default="float64", help="model precision")
    ap.add_argument("--dt", type=float, default=0.5, help="time step in fs (default 0.5)")
    ap.add_argument("--constraints", choices=["none", "h-bonds"], default="none",
                    help="none (default: flexible, waters SETTLE) or h-bonds (every X–H bond, ML region's too)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="blocks of all models, interleaved (odd blocks in reverse order); >1: medians and 95 %% "
                         "CIs of the per-block differences")
    ap.add_argument("--reset-step", type=int, default=0,
                    help="mdrun -resetstep: ns/day counted from this step on, after the warm-up "
                         "(default 0: from the start, as single runs always did)")
    ap.add_argument("--pin", action="store_true", help="mdrun on --mdrun-cpu, the engine on --engine-cpu")
    ap.add_argument("--mdrun-cpu", type=int, default=0)
    ap.add_argument("--engine-cpu", type=int, default=1)
    ap.add_argument("--engine-spin-us", type=float, default=0,
                    help="the engine busy-polls its socket this long before sleeping for a command (default 0)")
    ap.add_argument("--keep-cores-awake", action="store_true",
                    help="a SCHED_IDLE busy loop on every core during the runs (measures vCPU wake-up cost)")
    ap.add_argument("--omp-wait-policy", choices=["passive", "active"], default=None,
                    help="OMP_WAIT_POLICY for mdrun (only matters with --ntomp > 1)")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)
    if a.pin:
        cpus = os.sched_getaffinity(0)
        if a.mdrun_cpu not in cpus or a.engine_cpu not in cpus or a.mdrun_cpu == a.engine_cpu:
            ap.error(f"--pin needs two different CPUs of {sorted(cpus)} (--mdrun-cpu, --engine-cpu)")
        if a.ntomp != 1:
            ap.error("--pin puts mdrun on one core: use --ntomp 1")
    if a.engine_spin_us:
        os.environ["MDI_MLMM_ENGINE_SPIN_US"] = str(a.engine_spin_us)
    if a.omp_wait_policy:
        os.environ["OMP_WAIT_POLICY"] = a.omp_wait_policy.upper()

    gmx = require_gmx()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_gromacs_"))
    work.mkdir(parents=True, exist_ok=True)
    if a.top and a.gro:
        top, gro = Path(a.top).resolve(), Path(a.gro).resolve()
    else:
        from test_gromacs_host import build_system

        top, gro = build_system(work / "system", gmx, Path(a.shared))
    natoms = int(gro.read_text().splitlines()[1])

    models = a.models.split(",")
    prepared = {m: prepare(m, work, top, gro, gmx, a) for m in models}
    rows = []
    with cores_awake(a.keep_cores_awake):
        for block in range(a.repeats):
            for model in block_order(models, block):
                r = run_once(prepared[model], block, gmx, a)
                rows.append(r)
                ml = f", model {r['ml_ms_per_call']:.3f} ms/call" if r["ml_ms_per_call"] else ""
                print(f"  [{block + 1}/{a.repeats}] {r['run']:<14} {r['ms_per_step']:8.4f} ms/step "
                      f"({r['wall_s']:.1f} s wall{ml})", flush=True)

    for r in rows:   # per row, against the stock run of the same block
        s0 = next((x for x in rows if x["run"] == "stock MM" and x["block"] == r["block"]), None)
        if s0 and s0["ns_per_day"] and r["ns_per_day"]:
            r["ratio_to_stock"] = round(r["ns_per_day"] / s0["ns_per_day"], 4)
            if r["ml_ms_per_call"]:   # 1.0: ML and MM fully overlapped; (ML + MM) / max(ML, MM): one after the other
                r["step_over_max_ml_mm"] = round(r["ms_per_step"] / max(s0["ms_per_step"], r["ml_ms_per_call"]), 4)
    nml = next((p["natoms_ml"] for p in prepared.values() if p["coupled"]), 0)
    summary = summarize(rows, models, a)
    print(f"\nGROMACS host, {natoms} atoms ({nml} ML), {a.steps} steps of {a.dt} fs (constraints {a.constraints}, "
          f"counted from step {a.reset_step}), mdrun -ntomp {a.ntomp}, engine {a.engine_dtype}, "
          f"{a.repeats} block(s){', pinned' if a.pin else ''}")
    base = summary["per_run"].get("stock MM", {}).get("ms_per_step", {}).get("median")
    print(f"{'run':<16}{'ms/step (median)':>18}{'vs stock':>10}{'ML ms':>8}   min–max")
    for name, s in summary["per_run"].items():
        st, ml = s["ms_per_step"], s["ml_ms_per_call"]
        if not st.get("n"):
            continue
        ratio = f"{base / st['median']:.3f}" if base else "-"
        mls = f"{ml['median']:.3f}" if ml.get("n") else "-"
        print(f"{name:<16}{st['median']:>18.4f}{ratio:>10}{mls:>8}   {st['min']:.4f}–{st['max']:.4f}")
    if summary["paired"]:
        print("\nper-block differences (ms per step; ratios without unit), median and 95 % CI:")
        for name, s in summary["paired"].items():
            print(f"  {name}: {fmt_ci(s)}")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "natoms": natoms, "steps": a.steps, "reset_step": a.reset_step, "ntomp": a.ntomp,
            "engine_threads": a.engine_threads, "engine_dtype": a.engine_dtype, "dt_fs": a.dt,
            "constraints": a.constraints, "repeats": a.repeats, "pinned": a.pin,
            "cpus": {"mdrun": a.mdrun_cpu, "engine": a.engine_cpu} if a.pin else None,
            "engine_spin_us": a.engine_spin_us, "keep_cores_awake": a.keep_cores_awake,
            "omp_wait_policy": a.omp_wait_policy, "loadavg": os.getloadavg(),
            "summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
