"""Process lifecycle: SIGTERM/SIGINT stop every child and a rerun resumes; a hung (stopped)
engine times out with a message naming it; GROMACS windows report progress while mdrun runs.

Real processes throughout (hydration runs, window tasks, engines, the model server, mdrun);
every child is found with psutil *before* the signal, so a child that was re-parented to
init (an orphan) is still seen.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from mdi_mlmm.hosts.gromacs import build as gbuild
from tests import _prepared

HAVE_STOCK_GMX = any(Path(p, "gmx").exists() for p in os.environ["PATH"].split(":"))
needs_gmx = pytest.mark.skipif(not HAVE_STOCK_GMX, reason="needs Debian gromacs (gmx) for preparation/equilibration")
GMX = gbuild.gmx_path()
CI = bool(os.environ.get("CI"))


def hydration_cmd(out, *extra, model="mm", host="lammps"):
    return [sys.executable, "-m", "mdi_mlmm", "hydration", "--freesolv", "mobley_2310185", "--model", model,
            "--host", host, "--windows", "3", "--equil-ps", "1", "--window-equil-ps", "0.05", "--sample-every", "10",
            "--workers", "2", "--no-progress", "--out", str(out), *extra]


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(procs) -> list[psutil.Process]:
    """Those of ``procs`` still running (the same processes: psutil checks the start time)."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _wait_gone(procs, timeout: float) -> list[psutil.Process]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = _alive(procs)
        if not left:
            return []
        time.sleep(0.1)
    return _alive(procs)


def _kill_all(procs):
    """Test clean-up only: SIGKILL what a failed test left behind, by pid."""
    for p in _alive(procs):
        try:
            p.kill()
        except psutil.Error:
            pass


def _progress(unit: Path):
    try:
        return json.loads((unit / "progress.json").read_text())
    except (OSError, ValueError):
        return None


def _wait_until(cond, timeout, proc, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}:\n"
                        + proc.stdout.read().decode(errors="replace")[-3000:])
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _sigterm_run(p: subprocess.Popen, watched: list[psutil.Process], limit: float = 60.0) -> tuple[int, str, float]:
    """SIGTERM the hydration process (only it: what a batch scheduler does); its exit code and
    output, and the seconds until it and every watched process were gone."""
    t0 = time.time()
    os.kill(p.pid, signal.SIGTERM)
    try:
        rc = p.wait(limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the hydration run did not exit within {limit} s of SIGTERM")
    left = _wait_gone(watched, 3.0)
    dt = time.time() - t0
    assert not left, f"left running after SIGTERM: {[(q.pid, _cmdline(q)[:120]) for q in left]}"
    return rc, p.stdout.read().decode(errors="replace"), dt


@needs_gmx
def test_sigterm_stops_windows_engines_and_model_server_then_rerun_resumes(tmp_path):
    """ANI-2x on LAMMPS, two units at a time through one model server: SIGTERM of one window
    task takes its engine with it; SIGTERM of the run stops every unit, engine and the server
    (nothing left, exit 143, one error line); the same command then resumes and finishes."""
    out = tmp_path / "run"
    _prepared.seed(out)          # the prepared, equilibrated system of an earlier test, if any
    cmd = hydration_cmd(out, "--ns-per-window", "0.0008", "--checkpoint-every", "100", model="ani2x")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    seen: list[psutil.Process] = []
    try:
        def two_units_running():
            kids = _descendants(p.pid)
            tasks = [k for k in kids if "mdi_mlmm.workflow.task" in _cmdline(k)]
            engines = [k for k in kids if " engine " in _cmdline(k)]
            servers = [k for k in kids if "model-server" in _cmdline(k)]
            busy = [u for u in sorted((out / "windows").glob("*")) + [out / "gas"]
                    if (_progress(u) or {}).get("done", 0) >= 200]
            return (kids, tasks, engines, servers) if len(tasks) == 2 and len(engines) == 2 and servers and busy \
                else None

        kids, tasks, engines, servers = _wait_until(two_units_running, 1200, p, "two units past a checkpoint")
        seen += kids
        # 1. one window task alone: it must not leave its engine behind
        task = tasks[0]
        its_kids = task.children(recursive=True)
        assert any(" engine " in _cmdline(k) for k in its_kids)
        os.kill(task.pid, signal.SIGTERM)
        left = _wait_gone([task, *its_kids], 30.0)
        assert not left, f"left running after SIGTERM to the task: {[_cmdline(q)[:120] for q in left]}"
        # 2. the whole run (the pool may have started the next unit meanwhile: watch it too)
        time.sleep(1.0)
        now = _descendants(p.pid)
        names = [_cmdline(q)[28:100] for q in now]
        seen += now
        rc, text, dt = _sigterm_run(p, seen)
        print(f"stopped {len(now)} processes in {dt:.1f} s:", names)
        assert rc == 128 + signal.SIGTERM, text[-2000:]
        assert "error: stopped by SIGTERM; rerun the same command to resume" in text
        assert dt < 30
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        _kill_all(seen)
        _prepared.remember(out)
    saved = {u.name: (_progress(u) or {}).get("done", 0) for u in (out / "windows").glob("*")}

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "analysis" / "results.json").read_text())
    assert isinstance(res["dG_MBAR"]["value"], float)
    resumed = [w.name for w in (out / "windows").glob("*") if "resuming window" in (w / "task.log").read_text()]
    print("saved progress at the stop:", saved, "resumed:", resumed)
    assert resumed, "no window resumed from its checkpoint"
    for w in (out / "windows").glob("*"):
        t = pd.read_csv(w / "u_nk.csv")["time"].to_numpy()
        assert len(t) == 800 // 10 + 1 and np.all(np.diff(t) > 0), w     # every sample once, in order


@needs_gmx
def test_sigterm_stops_units_running_on_dask_workers(tmp_path):
    """--scheduler: the units run as children of a Dask worker (another process tree, maybe another
    machine), out of reach of the workflow's signals. SIGTERM of the run must still stop them
    (a stop request in each unit's directory), leave the worker serving, and a rerun resumes."""
    venv_bin = Path(sys.executable).parent
    dask = str(venv_bin / "dask") if (venv_bin / "dask").exists() else "dask"
    sf = tmp_path / "scheduler.json"
    cluster = [subprocess.Popen([dask, "scheduler", "--scheduler-file", str(sf), "--port", "0", "--no-dashboard"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    out = tmp_path / "run"
    _prepared.seed(out)
    p = None
    seen: list[psutil.Process] = []
    try:
        t0 = time.time()
        while not sf.exists() and time.time() - t0 < 60:
            time.sleep(0.2)
        cluster.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(sf), "--nthreads", "2",
                                         "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True))
        address = json.loads(sf.read_text())["address"]
        cmd = hydration_cmd(out, "--ns-per-window", "0.02", "--checkpoint-every", "100", "--scheduler", address)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

        def unit_running_on_the_worker():
            tasks = [k for k in _descendants(cluster[1].pid) if "mdi_mlmm.workflow.task" in _cmdline(k)]
            busy = [u for u in sorted((out / "windows").glob("*")) if (_progress(u) or {}).get("done", 0) >= 200]
            return tasks if tasks and busy else None

        tasks = _wait_until(unit_running_on_the_worker, 1200, p, "a unit running on the Dask worker")
        assert not [k for k in _descendants(p.pid) if "mdi_mlmm.workflow.task" in _cmdline(k)]
        seen += [t for task in tasks for t in [task, *task.children(recursive=True)]]
        rc, text, dt = _sigterm_run(p, seen, limit=90.0)
        print(f"stopped {len(seen)} processes on the worker in {dt:.1f} s")
        assert rc == 128 + signal.SIGTERM, text[-2000:]
        assert cluster[1].poll() is None, "the Dask worker itself must keep serving"
        assert dt < 40
        assert not [k for k in _descendants(cluster[1].pid) if "mdi_mlmm.workflow.task" in _cmdline(k)], \
            "a queued unit started after the stop"
    finally:
        if p is not None and p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        _kill_all(seen)
        for c in reversed(cluster):
            if c.poll() is None:
                os.killpg(c.pid, signal.SIGTERM)
        for c in cluster:
            try:
                c.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(c.pid, signal.SIGKILL)
        _prepared.remember(out)
    assert list(out.glob("windows/*/stop.request")), "the stop went through request files"
    # the same command without a cluster clears the requests and resumes from the checkpoints
    r = subprocess.Popen(hydration_cmd(out, "--ns-per-window", "0.02", "--checkpoint-every", "100"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until(lambda: any("resuming window" in (w / "task.log").read_text()
                                for w in (out / "windows").glob("*") if (w / "task.log").exists()),
                    600, r, "a window resuming from its checkpoint")
        assert not list(out.glob("windows/*/stop.request"))
    finally:
        os.killpg(r.pid, signal.SIGTERM)
        r.wait(60)


@needs_gmx
def test_gromacs_window_progress_moves_and_sigterm_leaves_no_mdrun(tmp_path):
    """Plain-MM windows on (stock) GROMACS: progress.json moves while mdrun runs; SIGTERM of one
    window task stops its mdrun (which leaves a checkpoint); SIGTERM of the run leaves nothing;
    the rerun continues from the checkpoints and finishes."""
    out = tmp_path / "run"
    _prepared.seed(out)
    cmd = hydration_cmd(out, "--ns-per-window", "0.02", host="gromacs")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    seen: list[psutil.Process] = []
    try:
        def window_mid_run():
            for w in sorted((out / "windows").glob("*")):
                pr = _progress(w)
                if pr and 0 < pr["done"] < pr["total"] and (w / "prod.log").exists():
                    return w, pr
            return None

        w, first = _wait_until(window_mid_run, 1200, p, "a window part-way through production")
        seen += _descendants(p.pid)
        # the bar moves within the window: a later reading, still before its end
        later = _wait_until(lambda: (lambda q: q if q and first["done"] < q["done"] else None)(_progress(w)),
                            120, p, "the window's progress to move")
        print("window", w.name, "progress", first, "->", later)
        task = next(k for k in _descendants(p.pid)
                    if "mdi_mlmm.workflow.task" in _cmdline(k) and str(w / "spec.json") in _cmdline(k))
        mdruns = [k for k in task.children(recursive=True) if "mdrun" in _cmdline(k)]
        assert mdruns, "no mdrun under the window task"
        os.kill(task.pid, signal.SIGTERM)
        left = _wait_gone([task, *mdruns], 30.0)
        assert not left, f"left running after SIGTERM to the task: {[_cmdline(q)[:120] for q in left]}"
        assert (w / "prod.cpt").exists(), "mdrun left no checkpoint"
        assert "error: stopped by SIGTERM" in (w / "task.log").read_text()
        time.sleep(1.0)
        seen += _descendants(p.pid)
        rc, text, dt = _sigterm_run(p, seen)
        print(f"run stopped in {dt:.1f} s")
        assert rc == 128 + signal.SIGTERM, text[-2000:]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        _kill_all(seen)
        _prepared.remember(out)
    assert not (w / "done.json").exists()

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Restarting from checkpoint" in (w / "prod.log").read_text()
    dt_fs = json.loads((out / "plan.json").read_text())["dt_fs"]     # 1 fs by default, 2 with --protocol freesolv
    for unit in sorted((out / "windows").glob("*")):
        t = [float(ln.split()[0]) for ln in (unit / "dhdl.xvg").read_text().splitlines()
             if ln.strip() and ln[0] not in "#@"]
        assert len(t) == round(20000 / dt_fs) // 10 + 1 and np.all(np.diff(t) > 0), unit   # each frame once, in order


DRIVER_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    from mdi_mlmm.errors import EngineTimeout
    from mdi_mlmm.hosts.driver import start_local_engine

    conn = start_local_engine("zero", log_path=sys.argv[1])
    conn.setup([8, 1, 1])
    pos = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [0.0, 0.96, 0.0]])
    conn.compute(pos)
    pid = conn.engine_proc.pid
    os.kill(pid, signal.SIGSTOP)
    print("stopped", pid, conn.port, flush=True)
    t0 = time.time()
    try:
        conn.compute(pos)
    except EngineTimeout as exc:
        print(f"raised after {time.time() - t0:.2f} s: {exc}", flush=True)
        print("engine alive:", os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z")
        sys.exit(7)
""")


def test_stopped_engine_times_out_with_its_name_pid_and_port(tmp_path):
    """A hung engine (SIGSTOP, not dead): the driver gives up after MDI_MLMM_REPLY_TIMEOUT s with
    EngineTimeout naming the engine, and the engine is killed (no process left behind)."""
    env = dict(os.environ, MDI_MLMM_REPLY_TIMEOUT="2")
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", DRIVER_SCRIPT, str(tmp_path / "engine.log")], capture_output=True,
                       text=True, env=env, timeout=120)
    print(r.stdout, r.stderr[-1500:])
    assert r.returncode == 7, r.stderr[-2000:]
    _, pid, port = r.stdout.split("\n")[0].split()
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("raised"))
    # the request it hangs on: <ENERGY_FORCES (one round trip) with our engine, <ENERGY with others
    assert re.search(rf"MDI engine ML \(pid {pid}, port {port}\) did not answer <ENERGY(_FORCES)? within 2 s", line), line
    took = float(line.split()[2])
    assert 1.9 < took < 6.0, line
    assert "engine alive: False" in r.stdout
    assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    assert time.time() - t0 < 90


def test_reply_timeout_setting_is_checked(monkeypatch):
    from mdi_mlmm.errors import UserInputError
    from mdi_mlmm.hosts.driver import REPLY_TIMEOUT_S, reply_timeout

    monkeypatch.delenv("MDI_MLMM_REPLY_TIMEOUT", raising=False)
    assert reply_timeout() == REPLY_TIMEOUT_S == 300.0
    monkeypatch.setenv("MDI_MLMM_REPLY_TIMEOUT", "0")
    assert reply_timeout() == 0.0
    monkeypatch.setenv("MDI_MLMM_REPLY_TIMEOUT", "soon")
    with pytest.raises(UserInputError, match="MDI_MLMM_REPLY_TIMEOUT"):
        reply_timeout()


def test_stop_reaches_grandchildren_in_sessions_of_their_own(tmp_path):
    """processes.stop: a child that ignores SIGTERM and started a grandchild in its own session
    (as our units start mdrun and engines): after the grace period both are gone."""
    from mdi_mlmm import processes

    script = textwrap.dedent("""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        print(g.pid, flush=True)
        time.sleep(600)
    """)
    proc = processes.start([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    grandchild = psutil.Process(int(proc.stdout.readline()))
    child = psutil.Process(proc.pid)
    try:
        assert proc in processes.children()
        t0 = time.time()
        processes.stop([proc], grace=1.0)
        assert 0.9 < time.time() - t0 < 10
        assert not _wait_gone([child, grandchild], 3.0)
        assert proc not in processes.children() and proc.returncode == -signal.SIGKILL
    finally:
        _kill_all([child, grandchild])


# ----------------------------------------------------------------------------- GROMACS module (MDI build)
@pytest.mark.gromacs_build
@pytest.mark.skipif(GMX is None and not CI, reason="no MDI-enabled GROMACS build (run `mdi-mlmm gromacs build`)")
def test_gromacs_module_reply_timeout_default_and_stopped_engine(tmp_path, shared_dir):
    """The module's mdi-reply-timeout defaults to 300 s (grompp's mdout.mdp), and mdrun with a
    SIGSTOPped engine ends with a fatal error within the (short) limit; nothing is left running."""
    from mdi_mlmm.errors import HostError
    from mdi_mlmm.hosts.gromacs import host
    from mdi_mlmm.hosts.gromacs.alchemy import log_step
    from tests.test_gromacs_host import FAST, build_system

    gmx = gbuild.gmx_path()
    assert gmx is not None, "CI is set but there is no MDI-enabled GROMACS build"
    top, gro = build_system(tmp_path / "sys", gmx, shared_dir)
    ndx = tmp_path / "index.ndx"
    host.make_index(gmx, gro, "resname MOL", ndx)
    # default: nothing set in the mdp
    (tmp_path / "default.mdp").write_text(host.mdp_text("nve", 10, 0.5, gen_vel=True, overrides=FAST))
    host.grompp(gmx, tmp_path / "default.mdp", gro, top, tmp_path / "default.tpr", ndx=ndx, maxwarn=2)
    mdout = (tmp_path / "default.mdout.mdp").read_text()
    assert any(ln.split("=")[0].strip() == "mdi-reply-timeout" and float(ln.split("=")[1].split(";")[0]) == 300
               for ln in mdout.splitlines() if "=" in ln), [ln for ln in mdout.splitlines() if "mdi-" in ln]

    # a short limit, and an engine that stops answering after it connected
    (tmp_path / "hang.mdp").write_text(host.mdp_text("nve", 100000, 0.5, gen_vel=True,
                                                     overrides={**FAST, "mdi-reply-timeout": 3}))
    host.grompp(gmx, tmp_path / "hang.mdp", gro, top, tmp_path / "hang.tpr", ndx=ndx, maxwarn=2)
    me = psutil.Process()
    before = {c.pid for c in me.children(recursive=True)}
    stopped = []

    def stop_engine_once_running():
        log = tmp_path / "hang.log"
        while not stopped:
            kids = [c for c in me.children(recursive=True) if c.pid not in before]
            eng = [c for c in kids if " engine " in _cmdline(c)]
            if eng and log_step(log) is not None:   # mdrun has energies: the engine has answered
                eng[0].suspend()
                stopped.append((eng[0], time.time(), kids))
                return
            time.sleep(0.1)

    import threading

    th = threading.Thread(target=stop_engine_once_running, daemon=True)
    th.start()
    try:
        with pytest.raises(HostError) as info:
            host.mdrun_mdi(gmx, tmp_path / "hang.tpr", "hang", "zero", cwd=tmp_path, ntomp=1, timeout=600)
        assert stopped, "the engine was never stopped"
        eng, t_stop, kids = stopped[0]
        took = time.time() - t_stop
        msg = str(info.value)
        print(f"mdrun gave up {took:.1f} s after the engine stopped:", msg)
        assert "did not answer" in msg and "mdi-reply-timeout" in msg
        assert f"pid {eng.pid}" in msg and "port" in msg
        assert took < 3 + 15
        assert not _wait_gone(kids, 15.0)
    finally:
        stopped.append(None)
        for e in [s for s in stopped if s]:
            _kill_all(e[2])
