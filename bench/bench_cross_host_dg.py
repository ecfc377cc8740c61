#!/usr/bin/env python
"""Cross-host ΔG_hyd (issue 12, items 5 and 6): the same FreeSolv molecules, model and protocol on the
GROMACS and the LAMMPS host, compared with ``compare-dg`` (:func:`mdi_mlmm.compare_dg`).

For each molecule, one after the other, both hosts before the next molecule::

    mdi-mlmm hydration --freesolv ID --host gromacs --model MODEL <protocol> --out DIR/ID/gromacs
    mdi-mlmm hydration --freesolv ID --host lammps  --model MODEL <protocol> --out DIR/ID/lammps

then, for each molecule whose two runs are finished and analysed, each estimator's ΔG ± σ on each host,
ΔΔG = ΔG_GROMACS − ΔG_LAMMPS with σ = √(σ_G² + σ_L²), |ΔΔG|/σ and the 2σ verdict (``compare_dg``), each
run's wall time and whether its σ ≤ 0.15 kcal/mol (item 5's target). Prints the markdown table for
bench/README.md ("Cross-host ΔG"); ``--write-results`` also writes bench/results_cross_host_dg_MODEL.json.
Molecules not finished are listed as pending.

    python bench/bench_cross_host_dg.py --model mm --dry-run          # plan, commands, cost estimate
    nohup python bench/bench_cross_host_dg.py --model mm --ns-per-window 0.15 --write-results > cross_host_mm.log 2>&1 &
    python bench/bench_cross_host_dg.py --model mm --no-run            # table of what is finished so far

**Resumable.** Rerun the same command (another session, after a kill): a run with ``analysis/results.json``
and every window done is not started again, an unfinished one is resumed by ``mdi-mlmm hydration`` itself
(the plan in its directory refuses other settings). SIGTERM/SIGINT are passed on to the running hydration
(in a session of its own, so it gets each signal once), which stops its windows at their last checkpoint;
stop the script with SIGTERM, not SIGKILL, which would leave that hydration running on its own. The wall time of every segment is appended to
``DIR/ID/bench_wall.json``; a run's wall time is their sum (it excludes time outside this script).

**One starting point for both hosts.** The LAMMPS run starts from a copy of the GROMACS run's ``system/``
(the same topology, AM1-BCC charges and box) and ``equil/`` (the same equilibrated coordinates, hence the
same volume for both hosts' NVT windows): runs that prepared and equilibrated separately would sit at two
NPT snapshot volumes about 1 % apart (V ≈ 21 nm³), i.e. a pressure difference of ~200 bar and, through the
solute's partial molar volume (~55 cm³/mol), a rough estimate of up to ~0.25 kcal/mol of ΔΔG that is not the
hosts' doing. The
workflow resumes a directory that holds both (it skips preparation and equilibration: tests/_prepared.py does
the same); the copy is made atomically before the LAMMPS run first starts. ``--independent-setup`` lets each
host prepare and equilibrate its own. The LAMMPS wall time therefore excludes preparation and equilibration.

**Constraints and time step: X–H bonds constrained, 2 fs, on both hosts** (``--constraints h-bonds``, the
default; issue 12 item 1, "same constraints"): every X–H bond of the solute at the force field's b0 (GROMACS
``constraints = h-bonds``, LAMMPS ``fix rattle`` on the X–H bond types), rigid water, 2 fs: half the steps of
the flexible 1 fs protocol for the same sampled time. The constraints change no energy function of the λ
states (tests/test_lammps_constraints.py::test_mm_window_constraints_change_no_dU: the same ΔU row on the same
coordinates). ``--constraints none`` goes back to the flexible solute at 1 fs. Both runs get ``--protocol
default``, the one physical model of both hosts (docs/hosts.md: PME/PPPM at the same grid, LJ shifted at 1 nm,
no dispersion correction, Langevin NVT windows); FreeSolv's protocol runs on GROMACS only.

**Default length (item 5: σ ≤ 0.15 kcal/mol on each host).** FreeSolv's 20 windows, 0.2 ns of production
per window (``mdi-mlmm hydration``'s own default), 20 ps unsampled per window, 100 ps NVT + 100 ps NPT for
the system. Measured σ of GROMACS MM hydration (samples every 100 steps): bench/results_mm_baseline.json, 0.05
ns per window, σ_MBAR 0.22 (ethanol), 0.19 (methanol), 0.17 (ethane); the FreeSolv benchmark's MM ΔG
(runs/bench_freesolv_s6, 0.02 ns per window at 2 fs with h-bonds) 0.31 (ethanol), 0.24 (methanethiol), 0.26
(methylamine), 0.31 (chloroform), 0.36 (pyridine). Once samples are decorrelated σ ∝ 1/√t, and the two
ethanol values agree with it: σ·√(t/ns) = 0.049 and 0.044. σ ≤ 0.15 then needs t ≥ (σ·√t / 0.15)²: 0.107 ns
(ethanol, the larger value), 0.05 (methanethiol), 0.115 (pyridine); acetone (not measured) is expected near
ethanol. The 0.2 ns default predicts σ ≈ 0.11 (ethanol); **0.15 ns** (``--ns-per-window 0.15``) is the
shortest with a ~15 % margin (ethanol 0.11–0.13) for acetone and for the LAMMPS host's Langevin thermostat
(1 ps damping vs GROMACS's sd with τ_T = 2 ps), which changes the correlation times, not the ensemble; 0.11 ns
would reach 0.15 with no margin. With σ_G ≈ σ_L ≈ 0.13, σ_combined ≈ 0.18 and the 2σ test resolves ΔΔG of
~0.37 kcal/mol (0.2 ns: ~0.3), under the ~0.5 kcal/mol mean-field estimate of the old Hamiltonian mismatch
(issue 12). Item 6 (``--model ani2x``) uses the same length by default on one molecule (ethanol); the results file records the length used.

**Cost.** ``--dry-run`` prints an estimate only from a measured rate: the finished λ windows of runs of the
same host and model under ``--out`` (earlier segments of this benchmark) and under ``--rate-from`` (other
hydration run directories); without any, for ``--model mm``, :data:`REFERENCE_RATES`. Per window, GROMACS:
its ``done.json`` wall time per step (equilibration + production); LAMMPS: its loop time per MD step plus its
sampling time per energy sample (the λ evaluations, which scale with the number of samples, not steps);
resumed windows and windows of fewer than 10 000 steps (grompp and start-up dominate those) are not used; the
median over windows. The estimate is ceil(windows / workers) × that window time (+ the gas run of ML models at
its own measured rate per step), and leaves out preparation, equilibration and analysis (minutes). Rates
measured on a loaded machine or with other settings (PPPM mesh, sampling interval) carry over only roughly.
:data:`REFERENCE_RATES` (one MM window, ethanol + 676 TIP3P, 2 fs, X–H constrained, one thread; measured
2026-12-02 under ``nice -n 5`` on the 2-core machine while a long benchmark ran, load average 2–6, where a
window got ~13 % of a core: so CPU time per step, which is what a window takes on a quiet machine with a
core of its own): LAMMPS 22.9 ms/step + 93 ms/sample, GROMACS 3.9 ms/step (flexible at 1 fs: LAMMPS 22.6,
GROMACS 3.7 ms/step, so 2 fs halves the cost per ns). Wall time on that machine: LAMMPS 176 ms/step, GROMACS
30 ms/step.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HOSTS = ("gromacs", "lammps")
SIGMA_TARGET = 0.15  # kcal/mol, issue 12 item 5
#: ethanol, methanethiol, acetone: small, neutral, C/H/O/S, in FreeSolv (item 5 wants >= 3)
DEFAULT_IDS = {"mm": ["mobley_2310185", "mobley_525934", "mobley_3867265"], "ani2x": ["mobley_2310185"]}
WALL_LEDGER = "bench_wall.json"
#: windows shorter than this (equilibration + production steps) give no rate: start-up dominates them
MIN_RATE_STEPS = 10_000

#: the protocol options passed to `mdi-mlmm hydration`: (HydrationFreeEnergy field, flag, type, default, help)
PROTOCOL = [
    ("windows", "--windows", int, 20, "λ windows (default 20: FreeSolv's schedule)"),
    ("ns_per_window", "--ns-per-window", float, 0.2, "production per window, ns (default 0.2; the docstring says why)"),
    ("window_equil_ps", "--window-equil-ps", float, 20.0, "unsampled equilibration at each λ, ps (default 20)"),
    ("equil_ps", "--equil-ps", float, 100.0, "NVT and NPT equilibration of the system, ps each (default 100)"),
    ("gas_ns", "--gas-ns", float, None, "gas-phase ML run, ns (ML models; default: --ns-per-window)"),
    ("constraints", "--constraints", str, "h-bonds", "the solute's X–H bonds: h-bonds (default: constrained at b0 "
     "on both hosts, GROMACS h-bonds, LAMMPS fix rattle; 2 fs) or none (flexible, 1 fs: the old protocol)"),
    ("dt_fs", "--dt", float, None, "time step, fs (default: hydration's, 2 fs with --constraints h-bonds, 1 fs with "
     "none)"),
    ("sample_every", "--sample-every", int, 100, "steps between energy samples (default 100)"),
    ("workers", "--workers", int, None, "windows at once (default: the number of cores)"),
    ("dtype", "--dtype", str, None, "ML model precision, float32|float64 (default: hydration's, float32)"),
    ("device", "--device", str, None, "where the ML model runs: cpu, cuda, ... (default cpu)"),
    ("seed", "--seed", int, None, "random seed (default: hydration's)"),
]
#: the protocol options that take one of a few values
CHOICES = {"constraints": ("none", "h-bonds")}
#: the physical model of both runs, always passed: the one that is the same on both hosts (docs/hosts.md;
#: ``freesolv`` runs on GROMACS only)
PHYSICS = "default"

#: the rates --dry-run falls back on when no finished window of --out or --rate-from gives one: one MM λ window
#: (ethanol + 676 TIP3P, 2037 atoms, tests/data/lammps_ethanol) at 2 fs with X–H constrained, 1 thread, CPU
#: time per MD step (a quiet machine's wall time when each window has a core) and per energy sample; measured
#: on a loaded 2-core machine under nice (see the docstring), so rough
REFERENCE_RATES = {
    ("gromacs", "mm"): {"step_s": 3.9e-3, "sample_s": 0.0, "gas_step_s": None,
                        "note": "reference rate (CPU time of one window, loaded machine, 2026-12-02; --rate-from a "
                                "finished run to measure)"},
    ("lammps", "mm"): {"step_s": 22.9e-3, "sample_s": 0.093, "gas_step_s": None,
                       "note": "reference rate (CPU time of one window, loaded machine, 2026-12-02; --rate-from a "
                               "finished run to measure)"},
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()) + " See the docstring "
                                 "and bench/README.md.")
    ap.add_argument("--model", default="mm", choices=sorted(DEFAULT_IDS),
                    help="mm (item 5, default) or ani2x (item 6)")
    ap.add_argument("--ids", nargs="+", help="FreeSolv ids (default: mm: ethanol, methanethiol, acetone; "
                                             "ani2x: ethanol)")
    ap.add_argument("--out", help="run directories DIR/ID/HOST (default runs/cross_host_MODEL)")
    for field_, flag, typ, default, help_ in PROTOCOL:
        ap.add_argument(flag, dest=field_, type=typ, default=default, help=help_, choices=CHOICES.get(field_))
    ap.add_argument("--independent-setup", action="store_true",
                    help="each host prepares and equilibrates its own system (default: LAMMPS starts from a copy "
                         "of the GROMACS run's system/ and equil/)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, the commands and a cost estimate; "
                                                           "run nothing")
    ap.add_argument("--no-run", action="store_true", help="start no run; only tabulate what is finished")
    ap.add_argument("--rate-from", nargs="*", default=[], metavar="RUN_DIR",
                    help="finished hydration runs to measure window rates from (besides --out)")
    ap.add_argument("--write-results", action="store_true",
                    help="write bench/results_cross_host_dg_MODEL.json (else only print)")
    ap.add_argument("--results", help="results file (default bench/results_cross_host_dg_MODEL.json)")
    a = ap.parse_args(argv)
    a.ids = a.ids or DEFAULT_IDS[a.model]
    a.out = Path(a.out or REPO / "runs" / f"cross_host_{a.model}").resolve()
    a.results = Path(a.results or REPO / "bench" / f"results_cross_host_dg_{a.model}.json")
    return a


def settings_of(a: argparse.Namespace) -> dict:
    """The hydration settings given (HydrationFreeEnergy fields); None = the hydration command's default."""
    s = {"model": a.model, "protocol": PHYSICS}
    s.update({f: getattr(a, f) for f, *_ in PROTOCOL if getattr(a, f) is not None})
    return s


def hydration_cmd(fid: str, host: str, run_dir: Path, settings: dict) -> list[str]:
    """The `mdi-mlmm hydration` command line of one run."""
    flags = {"protocol": "--protocol", **{f: flag for f, flag, *_ in PROTOCOL}}
    cmd = [sys.executable, "-m", "mdi_mlmm", "hydration", "--freesolv", fid, "--host", host,
           "--model", settings["model"]]
    for f, v in settings.items():
        if f in flags:
            cmd += [flags[f], repr(v) if isinstance(v, float) else str(v)]
    return cmd + ["--no-progress", "--out", str(run_dir)]


def run_dir(out: Path, fid: str, host: str) -> Path:
    return out / fid / host


# ---------------------------------------------------------------------------------------------- run state

def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_state(d: Path) -> dict:
    """What a run directory holds: windows done / planned, finished (every unit done and analysed)."""
    from mdi_mlmm.analysis.compare_dg import load_run
    from mdi_mlmm.errors import MdiMlmmError

    plan = _read_json(d / "plan.json")
    if plan is None:
        return {"started": d.exists(), "windows_done": 0, "windows": None, "finished": False}
    wins = plan.get("windows") or []
    done = sum((d / w["directory"] / "done.json").is_file() for w in wins)
    try:
        load_run(d)
        finished = True
    except MdiMlmmError:
        finished = False
    return {"started": True, "windows_done": done, "windows": len(wins), "finished": finished}


def wall_s(out: Path, fid: str, host: str):
    """The summed wall time of this script's segments of one run (None if it never ran one)."""
    segs = (_read_json(out / fid / WALL_LEDGER) or {}).get(host) or []
    return sum(s["wall_s"] for s in segs) if segs else None


def _log_segment(out: Path, fid: str, host: str, seg: dict) -> None:
    from mdi_mlmm.files import write_text

    path = out / fid / WALL_LEDGER
    led = _read_json(path) or {}
    led.setdefault(host, []).append(seg)
    write_text(path, json.dumps(led, indent=1) + "\n")


def seed_lammps(gmx: Path, lmp: Path) -> bool:
    """Start the LAMMPS run directory from the GROMACS run's system/ and equil/ (atomically); False if the
    GROMACS run has not finished its equilibration."""
    if not ((gmx / "system" / "system.json").is_file() and (gmx / "equil" / "done.json").is_file()):
        return False
    tmp = lmp.parent / f".{lmp.name}.seeding"
    shutil.rmtree(tmp, ignore_errors=True)
    for part in ("system", "equil"):
        shutil.copytree(gmx / part, tmp / part)
    os.replace(tmp, lmp)
    return True


_child = None


def _forward(signum, _frame):
    if _child is not None and _child.poll() is None:
        _child.send_signal(signum)  # hydration stops its windows at their checkpoints and exits 128 + signum


def run_one(cmd: list[str], log: Path) -> int:
    """Run one hydration command (output appended to ``log``); SIGTERM/SIGINT go to it."""
    global _child
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as fh:
        fh.write(f"\n=== {datetime.datetime.now().isoformat(timespec='seconds')} {' '.join(cmd)}\n")
        fh.flush()
        _child = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                  start_new_session=True)  # signals reach it through _forward only
        old = {s: signal.signal(s, _forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return _child.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            _child = None


def run_all(a: argparse.Namespace, settings: dict) -> int:
    """Each molecule's GROMACS run, then its LAMMPS run; 128 + signal if interrupted, else 0."""
    for fid in a.ids:
        for host in HOSTS:
            d = run_dir(a.out, fid, host)
            if run_state(d)["finished"]:
                print(f"{fid} {host}: finished", flush=True)
                continue
            if host == "lammps" and not a.independent_setup and not d.exists():
                if not seed_lammps(run_dir(a.out, fid, "gromacs"), d):
                    print(f"{fid} lammps: waits for the GROMACS run's equilibration (its start), skipped",
                          flush=True)
                    continue
            cmd = hydration_cmd(fid, host, d, settings)
            print(f"{fid} {host}: {' '.join(cmd[1:])}", flush=True)
            t0, start = time.time(), datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            rc = run_one(cmd, a.out / fid / f"{host}.log")
            st = run_state(d)
            _log_segment(a.out, fid, host, {"start_utc": start, "wall_s": time.time() - t0, "rc": rc,
                                            "finished": st["finished"], "windows_done": st["windows_done"]})
            print(f"{fid} {host}: exit {rc} after {(time.time() - t0) / 60:.1f} min, "
                  f"{st['windows_done']}/{st['windows']} windows, {'finished' if st['finished'] else 'not finished'}"
                  + ("" if rc == 0 else f" (log: {a.out / fid / f'{host}.log'})"), flush=True)
            if rc >= 128:
                return rc
    return 0


# ------------------------------------------------------------------------------------------------- table

def collect(out: Path, ids: list[str], model: str) -> list[dict]:
    """One entry per molecule: each host's run (state, wall time, σ per estimator and the σ target) and,
    when both are finished and analysed, compare_dg's rows (GROMACS = A, LAMMPS = B)."""
    from mdi_mlmm import compare_dg
    from mdi_mlmm.analysis.compare_dg import load_run

    rows = []
    for fid in ids:
        mol = {"id": fid, "name": _name(fid), "model": model, "runs": {}, "status": "pending"}
        for host in HOSTS:
            d = run_dir(out, fid, host)
            st = run_state(d)
            r = {"dir": str(d), **st, "wall_s": wall_s(out, fid, host)}
            if st["finished"]:
                summary, est, _ = load_run(d)
                r["sigma"] = {k: e.error if math.isfinite(e.error) else None for k, e in est.items()}
                r["sigma_target_met"] = {k: s is not None and s <= SIGMA_TARGET for k, s in r["sigma"].items()}
                r["warnings"] = list(summary.warnings)
                r["settings"] = _settings(d)
                mol.setdefault("smiles", summary.smiles)
            mol["runs"][host] = r
        if all(mol["runs"][h]["finished"] for h in HOSTS):
            cmp = compare_dg(run_dir(out, fid, "gromacs"), run_dir(out, fid, "lammps"))
            mol.update(status="done", comparison=cmp.to_json(), all_agree=cmp.agree)
        rows.append(mol)
    return rows


def _name(fid: str) -> str:
    from mdi_mlmm.errors import MdiMlmmError
    from mdi_mlmm.prep.freesolv import lookup

    try:
        return lookup(fid).iupac or fid
    except MdiMlmmError:
        return fid


def _settings(d: Path) -> dict:
    """The protocol a finished run used, from its plan.json."""
    p = _read_json(d / "plan.json") or {}
    keys = ("model", "host", "dt_fs", "steps_per_window", "window_equil_steps", "sample_every", "gas_steps",
            "equil_ps", "workers", "seed", "protocol", "dtype", "constraints", "device")
    s = {k: p[k] for k in keys if k in p}
    s["windows"] = len(p.get("windows") or [])
    if "dt_fs" in p and "steps_per_window" in p:
        s["ns_per_window"] = p["steps_per_window"] * p["dt_fs"] * 1e-6
    return s


def _pm(e) -> str:
    if not e or e.get("value") is None:
        return "—"
    return f"{e['value']:.2f} ± {e['error']:.2f}" if e.get("error") is not None else f"{e['value']:.2f} ± n/a"


def _minutes(s) -> str:
    return "—" if s is None else f"{s / 60:.0f} min"


def markdown(rows: list[dict]) -> str:
    """The bench/README.md table: one line per molecule and estimator; pending molecules on one line."""
    lines = ["| molecule | estimator | ΔG GROMACS | ΔG LAMMPS | ΔΔG (G − L) | \\|ΔΔG\\|/σ | within 2σ "
             f"| σ ≤ {SIGMA_TARGET} both | wall GROMACS / LAMMPS |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in rows:
        g, l_ = m["runs"]["gromacs"], m["runs"]["lammps"]
        wall = f"{_minutes(g['wall_s'])} / {_minutes(l_['wall_s'])}"
        if m["status"] != "done":
            def state(r):
                if r["finished"]:
                    return "finished"
                if not r["started"]:
                    return "not started"
                return f"{r['windows_done']}/{r['windows'] if r['windows'] is not None else '?'} windows"
            lines.append(f"| {m['name']} ({m['id']}) | pending: GROMACS {state(g)}, LAMMPS {state(l_)} | | | | | | | {wall} |")
            continue
        for k, r in enumerate(m["comparison"]["rows"]):
            est = r["estimator"]
            met = [x["sigma_target_met"].get(est) for x in (g, l_)]
            sig = "—" if None in met else ("yes" if all(met) else "no")
            ns = "—" if r["n_sigma"] is None else f"{r['n_sigma']:.1f}"
            agree = {True: "yes", False: "**NO**", None: "—"}[r["agree_within_2sigma"]]
            name = f"{m['name']} ({m['id']})" if k == 0 else ""
            lines.append(f"| {name} | {est} | {_pm(r['A'])} | {_pm(r['B'])} | {_pm(r['ddG'])} | {ns} | {agree} "
                         f"| {sig} | {wall if k == 0 else ''} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- cost

def measured_rates(dirs: list[Path], host: str, model: str) -> dict | None:
    """Median window time model of the finished, not resumed λ windows (and gas runs) of the hydration runs
    in ``dirs`` (searched two levels down) with this host and model: {"step_s", "sample_s", "gas_step_s",
    "windows", "sources"}; None when there is none."""
    plans = []
    for root in dirs:
        for pat in ("plan.json", "*/plan.json", "*/*/plan.json"):
            plans += [p for p in Path(root).glob(pat) if p.is_file()]
    step, sample, gas, sources, seen = [], [], [], set(), set()
    for pp in sorted(set(plans)):
        p = _read_json(pp)
        if not p or p.get("host") != host or p.get("model") != model:
            continue
        d = pp.parent
        for w in p.get("windows") or []:
            dj = _read_json(d / w["directory"] / "done.json")
            total = int(p.get("steps_per_window", 0)) + int(p.get("window_equil_steps", 0))
            if not dj or not dj.get("wall_s") or total < MIN_RATE_STEPS or json.dumps(dj) in seen:
                continue
            seen.add(json.dumps(dj))  # a copied run directory counts once
            if host == "lammps":
                if dj.get("resumed_from_step") is not None or not dj.get("steps_this_run"):
                    continue
                step.append((dj["loop_s"] - dj.get("sampling_s", 0.0)) / dj["steps_this_run"])
                sample.append(dj.get("sampling_s", 0.0) / max(1, dj.get("samples", 0)))
            else:
                step.append(dj["wall_s"] / total)
            sources.add(str(d))
        gj = _read_json(d / "gas" / "done.json")
        if (gj and gj.get("wall_s") and (gj.get("steps") or 0) >= MIN_RATE_STEPS and gj.get("resumed_from_step") is None
                and json.dumps(gj) not in seen):
            seen.add(json.dumps(gj))
            gas.append(gj["wall_s"] / gj["steps"])
    if not step:
        return None
    return {"step_s": statistics.median(step), "sample_s": statistics.median(sample) if sample else 0.0,
            "gas_step_s": statistics.median(gas) if gas else None, "windows": len(step), "sources": sorted(sources)}


def estimate_s(plan, rate: dict) -> tuple[float, bool]:
    """Seconds for one run of ``plan`` at ``rate``: ceil(windows / workers) windows one after the other
    (+ the gas run); the flag says whether the gas run's rate was measured (True when there is none)."""
    per_window = ((plan.steps_per_window + plan.window_equil_steps) * rate["step_s"]
                  + plan.steps_per_window / plan.sample_every * rate["sample_s"])
    t = math.ceil(len(plan.windows) / max(1, plan.workers)) * per_window
    gas_known = True
    if plan.ml and plan.gas_steps > 0:
        if rate["gas_step_s"] is None:
            gas_known = False
        else:
            t += plan.gas_steps * rate["gas_step_s"]
    return t, gas_known


def dry_run(a: argparse.Namespace, settings: dict) -> None:
    import tempfile

    from mdi_mlmm import HydrationFreeEnergy
    from mdi_mlmm.prep.freesolv import lookup

    print(f"cross-host ΔG_hyd, model {a.model}: {len(a.ids)} molecule(s), GROMACS then LAMMPS each; runs in {a.out}")
    for fid in a.ids:
        e = lookup(fid)
        print(f"  {fid}  {e.iupac}  {e.smiles}")
    kw = {k: v for k, v in settings.items()}
    plans = {}
    with tempfile.TemporaryDirectory() as tmp:
        for host in HOSTS:
            plans[host] = HydrationFreeEnergy(freesolv_id=a.ids[0], host=host, **kw).plan(Path(tmp) / host)
    p = plans["gromacs"]
    print(f"protocol {p.protocol}: {len(p.windows)} windows × ({p.window_equil_steps} + {p.steps_per_window} steps) "
          f"at {p.dt_fs:g} fs, X–H bonds {'constrained' if p.constraints == 'h-bonds' else 'flexible'} "
          f"({p.steps_per_window * p.dt_fs * 1e-6:g} ns of production per window), samples every "
          f"{p.sample_every} steps, system equilibration {p.equil_ps:g} ps NVT + {p.equil_ps:g} ps NPT, "
          f"{p.workers} windows at once" + (f", gas run {p.gas_steps} steps" if p.ml and p.gas_steps else "")
          + (f", {p.dtype}" if p.ml else ""))
    print("LAMMPS starts from a copy of the GROMACS run's system/ and equil/" if not a.independent_setup
          else "each host prepares and equilibrates its own system")
    print("commands:")
    for fid in a.ids:
        for host in HOSTS:
            print("  " + " ".join(["mdi-mlmm"] + hydration_cmd(fid, host, run_dir(a.out, fid, host), settings)[3:]))
    total, known = 0.0, True
    for host in HOSTS:
        rate = measured_rates([a.out, *map(Path, a.rate_from)], host, a.model)
        if rate is None and (host, a.model) in REFERENCE_RATES:
            rate = REFERENCE_RATES[(host, a.model)]
        if rate is None:
            print(f"cost on {host}: no measured rate (no finished {a.model} window of >= {MIN_RATE_STEPS} steps on "
                  f"{host} under --out or --rate-from); rerun --dry-run once the first windows are done")
            known = False
            continue
        t, gas_known = estimate_s(plans[host], rate)
        total += t * len(a.ids)
        print(f"cost on {host}: {t / 3600:.1f} h per molecule, {t * len(a.ids) / 3600:.1f} h for {len(a.ids)} "
              f"(measured: {rate['step_s'] * 1e3:.2f} ms per step" + (f" + {rate['sample_s']:.3f} s per sample"
                                                                   if rate["sample_s"] else "")
              + (f", {rate['note']}" if "note" in rate else
                 f", median of {rate['windows']} window(s) of {', '.join(rate['sources'])}") + "; without preparation,"
                " equilibration, analysis" + ("" if gas_known else ", gas run not measured") + ")")
    if known:
        print(f"cost in all: {total / 3600:.1f} h")


def main(argv=None) -> int:
    a = parse_args(argv)
    settings = settings_of(a)
    from mdi_mlmm.prep.freesolv import lookup

    for fid in a.ids:
        lookup(fid)  # an unknown id fails before anything runs
    if a.dry_run:
        dry_run(a, settings)
        return 0
    rc = 0 if a.no_run else run_all(a, settings)
    rows = collect(a.out, a.ids, a.model)
    table = markdown(rows)
    print(table)
    done = [m for m in rows if m["status"] == "done"]
    print(f"\n{len(done)} of {len(rows)} molecules finished on both hosts; model {a.model}, σ target {SIGMA_TARGET} "
          f"kcal/mol; ΔΔG = ΔG_GROMACS − ΔG_LAMMPS, σ = √(σ_G² + σ_L²); kcal/mol")
    if a.write_results:
        from mdi_mlmm.files import write_text

        res = {"benchmark": "bench/bench_cross_host_dg.py", "date_utc": datetime.datetime.now(
                   datetime.timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv[1:] if argv is None else argv,
               "model": a.model, "out": str(a.out), "requested_settings": settings,
               "shared_setup": not a.independent_setup, "sigma_target_kcal_mol": SIGMA_TARGET, "cpus": os.cpu_count(),
               "load_average": os.getloadavg(), "molecules": rows, "markdown": table}
        write_text(a.results, json.dumps(res, indent=1, allow_nan=False) + "\n")
        print(f"wrote {a.results}")
    return rc


if __name__ == "__main__":
    from mdi_mlmm.errors import MdiMlmmError

    try:
        sys.exit(main())
    except MdiMlmmError as exc:  # a bad id, model or setting: one line, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
