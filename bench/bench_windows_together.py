#!/usr/bin/env python
"""K GROMACS ML/MM λ windows at once through one batching model server: the per-step rate, and the
wall time it projects for a full ANI-2x hydration (issue 13, item 6).

Each mode runs K λ windows of ethanol (ANI-2x) in TIP3P (tests/data/lammps_ethanol, 2037 atoms)
together: one ``mdi-mlmm model-server`` (1 torch thread, ``--dtype``) serves the K windows' engines,
each window is ``gmx mdrun -ntomp 1`` (the hydration workflow's default: ``MDI_MLMM_THREADS_PER_WINDOW``
unset) with the λ windows' own mdp (:func:`mdi_mlmm.hosts.gromacs.alchemy._lambda_mdp`: template
``lambda``, sd 298.15 K, FreeSolv's 20-state schedule, states 0..K-1 spread over it), ``--steps`` steps
from the prepared box. Modes (side by side, alternated ``--repeats`` times):

* ``1fs``      the workflow's default for ML: 1 fs, every bond flexible (``constraints = none``);
* ``2fs-hb``   2 fs with X–H bonds constrained (``constraints = h-bonds``, ML region included, LINCS
  order 12, 2 iterations: what ``mdi-mlmm md --host gromacs --constraints h-bonds`` uses);
* ``4fs-hmr``   4 fs with X–H bonds constrained and hydrogen masses repartitioned (×3, taken from the bonded
  heavy atom; the bench's topology rewritten into its work directory by :func:`mdi_mlmm.hosts.gromacs.host.hmr_topology`,
  what ``--mass-repartition`` runs): half the steps (ML calls) of ``2fs-hb`` per ns;
* ``1fs-split``, ``2fs-hb-split``, ``4fs-hmr-split``  the same, with the windows run as the split decoupling runs the windows
  after its boundary state (docs/gromacs.md, "One PME grid"): the solute's charges zero in both topology
  states (one PME grid per step instead of two), energies at the stage-2 states only.

With a ``-split`` mode among ``--modes`` every mode of the run takes stage-2 states (after FreeSolv's
boundary state 4, spread over 5..19; or ``--states``), so that e.g. ``--modes 2fs-hb 2fs-hb-split`` compares
the same windows with and without the split. Each run records the PME spreads per step from md.log's cycle
accounting (2 full, 1 split). The projection counts every one of the ``--total-windows`` at the mode's rate:
for a ``-split`` mode that is an underestimate of the wall time, as the first 5 of FreeSolv's 20 windows
(states 0..4) run with the full topology. With both ``X`` and ``X-split`` among the modes the summary also
gives ``projection_with_unsplit_stage1``: the windows up to the boundary at ``X``'s rate, the rest at the split rate
(the wall of a real split run).

The rate is each window's ms per step from its md.log (GROMACS's own timer around the MD loop: no
start-up), averaged over the K windows; K windows advance together, so K window-steps take that long.

Projection for the issue's run, 20 windows × ``--ns`` ns + a gas leg of ``--ns`` ns on the same
cores: windows = 20 · ns / dt steps, K at a time, at the measured ms/step; gas = ns / dt steps at
``--gas-ms-per-step`` (one model call of the molecule alone plus the coupling overhead; default:
bench/README.md's quiet-machine ANI-2x float64 call, 6.43 ms + 0.22 ms), run after the windows
(an upper bound: the pool overlaps it with the last windows). The system's classical equilibration
(2 × 20 ps MM) and the windows' 10 ps equilibration at λ are added at the same rates.

    python bench/bench_windows_together.py [--windows 2] [--steps 400] [--repeats 1] [--dtype float64]
    python bench/bench_windows_together.py --modes 2fs-hb 2fs-hb-split [--states 8 15]
    python bench/bench_windows_together.py --modes 2fs-hb-split 4fs-hmr-split

Writes bench/results_windows_together[_DTYPE].json. Shared 2-core machine: the load average at start
and end of every run is recorded; ratios between modes measured in one run are what to trust.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "tests" / "data" / "lammps_ethanol"
#: mode -> (time step fs, the solute's X–H bonds, split: the window run as a stage-2 window of a split decoupling,
#: hydrogen mass repartitioning factor or None)
MODES = {"1fs": (1.0, "none", False, None), "2fs-hb": (2.0, "h-bonds", False, None),
         "1fs-split": (1.0, "none", True, None), "2fs-hb-split": (2.0, "h-bonds", True, None),
         "4fs-hmr": (4.0, "h-bonds", False, 3.0), "4fs-hmr-split": (4.0, "h-bonds", True, 3.0)}


def _ms_per_step(md_log: Path, dt_fs: float) -> float:
    """ms per MD step from md.log's Performance line (ns/day over the MD loop)."""
    m = re.search(r"^Performance:\s+([0-9.]+)", md_log.read_text(), re.M)
    if not m:
        raise RuntimeError(f"no Performance line in {md_log}")
    steps_per_day = float(m.group(1)) * 1e6 / dt_fs
    return 86400e3 / steps_per_day


def _pme_spreads_per_step(md_log: Path) -> float | None:
    """PME spread calls per force evaluation from md.log's cycle accounting (2: A and B charges, 1: one grid)."""
    text = md_log.read_text()
    spread = re.search(r"^ PME spread\s+\d+\s+\d+\s+(\d+)\s", text, re.M)
    mesh = re.search(r"^ PME mesh\s+\d+\s+\d+\s+(\d+)\s", text, re.M)
    return int(spread.group(1)) / int(mesh.group(1)) if spread and mesh else None


def default_states(modes, k: int) -> list[int]:
    """K λ states spread over FreeSolv's schedule; with a ``-split`` mode among ``modes``, over the states after
    its boundary (stage 2), for every mode of the run."""
    from mdi_mlmm.protocol.schedule import decoupling_schedule, stage_boundary

    sched = decoupling_schedule()
    lo = stage_boundary(sched) + 1 if any(MODES[m][2] for m in modes) else 0
    hi = len(sched) - 1
    return [round(lo + i * (hi - lo) / max(1, k - 1)) if k > 1 else lo for i in range(k)]


def window_mdp(mode: str, state: int, steps: int, w: int) -> str:
    """The mdp of window ``w`` at λ ``state`` in ``mode``: the λ windows' own (``_lambda_mdp``; a ``-split``
    mode: as a stage-2 window of the split decoupling), with fresh velocities and the mode's constraints."""
    from mdi_mlmm.hosts.gromacs import alchemy, host
    from mdi_mlmm.protocol.schedule import decoupling_schedule, stage_boundary

    dt_fs, constraints, split, _ = MODES[mode]
    sched = decoupling_schedule()
    boundary = stage_boundary(sched) if split else None
    if split and state <= boundary:
        raise SystemExit(f"mode {mode}: state {state} is not after the boundary state {boundary} (not split there)")
    text = alchemy._lambda_mdp(state, sched, steps, dt_fs, 100, 298.15, 11 + w, True, equil=True, boundary=boundary)
    extra = {**host.constraint_mdp(constraints), "gen-vel": "yes", "gen-temp": 298.15, "gen-seed": 11 + w}
    for key in extra:   # the mode's keys replace the template's
        text = re.sub(rf"^{key}\s*=.*$", "", text, flags=re.M)
    return text + "".join(f"{key} = {value}\n" for key, value in extra.items())


def run_mode(mode: str, k: int, steps: int, dtype: str, work: Path, states: list[int]) -> dict:
    from mdi_mlmm.hosts.gromacs import alchemy, host
    from mdi_mlmm.hosts.gromacs.build import require_gmx
    from mdi_mlmm.potentials.shared import start_server_process, stop_server_process
    from mdi_mlmm.topology.mlregion import select_indices

    dt_fs, constraints, split, hmr = MODES[mode]
    gmx = require_gmx()
    work.mkdir(parents=True)
    # the mode's topology: the bench's own, or with the hydrogen masses repartitioned into the work directory
    top = host.hmr_topology(DATA / "topol.top", work, hmr, constrained=constraints == "h-bonds", ml=True)
    ml = [int(i) for i in select_indices(DATA / "conf.gro", "resname MOL")]
    ndx = work / "index.ndx"
    host.make_index(gmx, DATA / "conf.gro", ml, ndx)
    info = work / "server.json"
    load0 = os.getloadavg()
    server = start_server_process("ani2x", info, work / "server.log", extra=("--threads", "1", "--dtype", dtype))
    dirs, errors = [], []
    try:
        for w, state in enumerate(states):
            d = work / f"w{w}"
            d.mkdir()
            (d / "prod.mdp").write_text(window_mdp(mode, state, steps, w))
            alchemy._grompp(gmx, "prod.mdp", DATA / "conf.gro", top, "prod.tpr", ndx, d, 2,
                            f"gmx grompp (window {state})")
            dirs.append(d)

        def one(d):
            try:
                host.mdrun_mdi(gmx, d / "prod.tpr", "prod", f"server:{info}", cwd=d, ntomp=1,
                               engine_args=["--threads", "1"])
            except Exception as exc:  # reported below
                errors.append(f"{d.name}: {exc}")

        t0 = time.perf_counter()
        threads = [threading.Thread(target=one, args=(d,)) for d in dirs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        stop_server_process(server)
    if errors:
        raise RuntimeError("; ".join(errors))
    per_window = [_ms_per_step(d / "prod.log", dt_fs) for d in dirs]
    stats = [ln for ln in (work / "server.log").read_text().splitlines() if ln.startswith("{")]
    return {"mode": mode, "dt_fs": dt_fs, "constraints": constraints, "split": split, "mass_repartition": hmr,
            "windows": k, "states": states,
            "pme_spreads_per_step": [_pme_spreads_per_step(d / "prod.log") for d in dirs],
            "steps": steps, "ms_per_step_per_window": per_window, "ms_per_step": statistics.mean(per_window),
            "wall_s_incl_startup": wall, "load_average_before": list(load0),
            "load_average_after": list(os.getloadavg()), "server_stats": json.loads(stats[-1]) if stats else None}


def project(ms_per_step: float, dt_fs: float, k: int, ns: float, windows: int, gas_ms: float) -> dict:
    window_steps = ns * 1e6 / dt_fs
    equil_steps = 10e3 / dt_fs                           # 10 ps at each λ
    windows_h = windows * (window_steps + equil_steps) / k * ms_per_step / 3.6e6
    gas_h = window_steps * gas_ms / 3.6e6
    return {"windows_h": windows_h, "gas_h": gas_h, "total_h": windows_h + gas_h}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=2, help="K windows at once (default 2: 2 cores)")
    ap.add_argument("--steps", type=int, default=400, help="MD steps per window and mode (default 400)")
    ap.add_argument("--repeats", type=int, default=1, help="times each mode runs, alternated (default 1)")
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=["1fs", "2fs-hb"])
    ap.add_argument("--states", nargs="+", type=int, default=None,
                    help="the K windows' λ states (default: spread over FreeSolv's 20; with a -split mode, over "
                         "the stage-2 states 5..19, for every mode)")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="model precision")
    ap.add_argument("--ns", type=float, default=0.5, help="production per window for the projection, ns")
    ap.add_argument("--total-windows", type=int, default=20, help="windows of the projected run")
    ap.add_argument("--gas-ms-per-step", type=float, default=None,
                    help="gas leg ms/step (default 6.65 for float64, 3.09 for float32: bench/README.md's "
                         "quiet-machine ANI-2x call + 0.22 ms coupling)")
    ap.add_argument("--quiet-model-ms", type=float, default=None,
                    help="the model server's batch-of-K call on a quiet machine, ms: the projection is also given "
                         "with the measured ms/step scaled by (this / the call time measured in the run), for a "
                         "shared machine (default for K = 2: 6.97 float64, 3.85 float32 — the quiet single call "
                         "6.43 / 2.87 ms × the batch-of-2 / single-call ratio 1.085 / 1.341 measured side by side)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    states = args.states or default_states(args.modes, args.windows)
    if len(states) != args.windows:
        ap.error(f"--states gives {len(states)} states for --windows {args.windows}")
    gas_ms = args.gas_ms_per_step or (6.43 + 0.22 if args.dtype == "float64" else 2.87 + 0.22)
    out = Path(args.out or REPO / "bench" / f"results_windows_together_{args.dtype}.json")
    res = {"benchmark": "bench/bench_windows_together.py", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "cpus": os.cpu_count(), "dtype": args.dtype, "runs": []}
    work = Path(tempfile.mkdtemp(prefix="bench_windows_"))
    try:
        for rep in range(args.repeats):
            for mode in (args.modes if rep % 2 == 0 else args.modes[::-1]):
                r = run_mode(mode, args.windows, args.steps, args.dtype, work / f"{mode}{rep}", states)
                res["runs"].append(r)
                print(f"{mode:7s} repeat {rep}: {args.windows} windows at once (states {states}, PME spreads per "
                      f"step {r['pme_spreads_per_step']}), {r['ms_per_step']:.2f} ms/step "
                      f"(per window {', '.join(f'{x:.2f}' for x in r['ms_per_step_per_window'])}), "
                      f"wall {r['wall_s_incl_startup']:.1f} s, load {r['load_average_before'][0]:.1f}"
                      f"→{r['load_average_after'][0]:.1f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["summary"] = {}
    for mode in args.modes:
        rates = [r["ms_per_step"] for r in res["runs"] if r["mode"] == mode]
        ms = statistics.median(rates)
        dt = MODES[mode][0]
        p = project(ms, dt, args.windows, args.ns, args.total_windows, gas_ms)
        calls = [r["server_stats"]["model_s"] / r["server_stats"]["model_calls"] * 1e3
                 for r in res["runs"] if r["mode"] == mode and r["server_stats"]]
        model_ms = statistics.mean(calls) if calls else None
        res["summary"][mode] = {"ms_per_step": ms, "window_ns_per_day": args.windows * dt * 1e-6 * 86400e3 / ms,
                                "model_ms_per_call": model_ms, "projection": p}
        quiet = args.quiet_model_ms or ({"float64": 6.97, "float32": 3.85}[args.dtype] if args.windows == 2 else None)
        if quiet and model_ms:
            ms_q = ms * quiet / model_ms
            q = project(ms_q, dt, args.windows, args.ns, args.total_windows, gas_ms)
            res["summary"][mode].update({"quiet_model_ms": quiet, "ms_per_step_scaled": ms_q, "projection_scaled": q})
            print(f"{mode:7s}: scaled to a quiet machine (model call {model_ms:.1f} → {quiet:.2f} ms): "
                  f"{ms_q:.2f} ms/step, {q['windows_h']:.1f} h + {q['gas_h']:.1f} h = {q['total_h']:.1f} h")
        print(f"{mode:7s}: {ms:.2f} ms/step for {args.windows} windows together "
              f"({res['summary'][mode]['window_ns_per_day']:.2f} window-ns/day); {args.total_windows} windows × "
              f"{args.ns} ns + gas: {p['windows_h']:.1f} h + {p['gas_h']:.1f} h = {p['total_h']:.1f} h")
    # a split run's real wall: the windows up to the boundary state run unsplit, the rest split
    from mdi_mlmm.protocol.schedule import decoupling_schedule, stage_boundary
    n_full = stage_boundary(decoupling_schedule(args.total_windows)) + 1
    for mode in args.modes:
        if mode.endswith("-split") and mode[:-len("-split")] in args.modes:
            full, split = res["summary"][mode[:-len("-split")]], res["summary"][mode]
            for key in ("projection", "projection_scaled"):
                if key in full and key in split:
                    w = (n_full * full[key]["windows_h"] + (args.total_windows - n_full) * split[key]["windows_h"]) \
                        / args.total_windows
                    split[key + "_with_unsplit_stage1"] = {"windows_h": w, "gas_h": split[key]["gas_h"],
                                                           "total_h": w + split[key]["gas_h"],
                                                           "unsplit_windows": n_full}
            c = split["projection_with_unsplit_stage1"]
            print(f"{mode}: with the first {n_full} windows unsplit (at {mode[:-len('-split')]}'s rate): "
                  f"{c['windows_h']:.1f} h + {c['gas_h']:.1f} h = {c['total_h']:.1f} h")
    if len(args.modes) == 2:
        a, b = (res["summary"][m]["projection"]["total_h"] for m in args.modes)
        res["summary"]["ratio_total"] = a / b
        print(f"{args.modes[0]} / {args.modes[1]} projected wall: {a / b:.2f}")
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
