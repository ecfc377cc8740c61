"""``md --host gromacs --constraints h-bonds``: 2 fs with the ML region's X–H bonds constrained (issue 13, item 4).

With ``constraints = h-bonds`` grompp turns every bond with a hydrogen into a constraint at the force
field's b0 before the MDI module edits the ML molecule; the module keeps constraints and removes the
other ML–ML bonded terms. Checked on ethanol (ANI-2x) in TIP3P water, 2 fs, NVE: the grompp summary
(2 bonds removed, 6 constraints kept), every ML X–H distance at b0 over the run, and E_ML the model's
energy of the frame the engine was sent (a direct call on the .trr coordinates). The time-step policy
and the refusals are checked without GROMACS.
"""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm.errors import UserInputError
from mdi_mlmm.hosts.gromacs import build as gbuild
from mdi_mlmm.hosts.gromacs import host
from mdi_mlmm.protocol.timestep import check_timestep

DATA = Path(__file__).resolve().parent / "data" / "lammps_ethanol"  # ethanol (GAFF) + 676 TIP3P, 2037 atoms
GMX = gbuild.gmx_path()
FAST = {"rcoulomb": 1.0, "rvdw": 1.0, "rvdw-switch": 0.9, "fourierspacing": 0.12, "pme-order": 4,
        "nstcalcenergy": 1, "nstenergy": 1, "nstlog": 10, "nstxout": 1}

pytestmark = [pytest.mark.timeout(300)]


def test_constraint_mdp_and_time_step_policy():
    assert host.constraint_mdp("none") == {"constraints": "none"}
    assert host.constraint_mdp("h-bonds")["constraints"] == "h-bonds"
    with pytest.raises(UserInputError, match="constraints must be one of"):
        host.constraint_mdp("all-bonds")
    err = io.StringIO()
    check_timestep(2.0, constrained_xh=True, allow_large=False, stream=err)  # 2 fs constrained: silent
    assert err.getvalue() == ""
    check_timestep(2.0, constrained_xh=False, allow_large=False, stream=err)  # flexible: warned
    assert "flexible X-H" in err.getvalue()


def test_cli_takes_constraints_on_lammps(tmp_path):
    """Both hosts constrain h-bonds (issue 12, item 1): `md --host lammps --constraints h-bonds` runs (plain MM
    here, one step; the constrained ML runs: tests/test_lammps_constraints.py); an unknown value is refused."""
    cmd = [sys.executable, "-m", "mdi_mlmm", "md", "--host", "lammps", "--top", str(DATA / "topol.top"),
           "--gro", str(DATA / "conf.gro"), "--model", "mm", "--steps", "1", "--dt", "2", "--no-minimize", "--quiet"]
    r = subprocess.run(cmd + ["--constraints", "h-bonds", "--out", str(tmp_path / "x")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr                 # 2 fs with X-H bonds constrained: no time-step warning
    assert "fix rigidw all rattle 1e-10 500 0 b" in (tmp_path / "x" / "lammps.log").read_text()
    r = subprocess.run(cmd + ["--constraints", "all-bonds", "--out", str(tmp_path / "y")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "invalid choice: 'all-bonds'" in r.stderr




@pytest.mark.gromacs_build
@pytest.mark.skipif(GMX is None, reason="no MDI-enabled GROMACS build (run `mdi-mlmm gromacs build`)")
def test_h_bonds_constrained_at_b0_and_e_ml_unchanged(tmp_path, ani):
    from MDAnalysis.lib.formats.libmdaxdr import TRRFile

    from mdi_mlmm.topology.gromacs import load_gromacs

    res = host.run_md(DATA / "topol.top", DATA / "conf.gro", "resname MOL", model="ani2x", steps=20, dt_fs=2.0,
                      ensemble="nve", out_dir=tmp_path, mdp_overrides=FAST, constraints="h-bonds",
                      engine_args=["--call-log", str(tmp_path / "calls.csv"), "--dtype", "float64"], ntomp=1)
    summary = (tmp_path / "md.grompp.out").read_text()
    assert "2 Bond" in summary and "6 Constraint" in summary  # C-C, C-O removed; 5 C-H + O-H constrained

    structure = load_gromacs(DATA / "topol.top", DATA / "conf.gro")
    ml = res.ml_atoms
    xh = [(b.atom1.idx, b.atom2.idx, b.type.req / 10) for b in structure.bonds   # b0, nm
          if b.atom1.idx in ml and b.atom2.idx in ml and 1 in (b.atom1.element, b.atom2.element)]
    assert len(xh) == 6
    with TRRFile(str(tmp_path / "md.trr")) as f:
        frames = [(np.array(fr.x, dtype=np.float64), np.diag(fr.box)) for fr in f if fr.hasx]
    assert len(frames) == 21
    worst = 0.0
    for x, box in frames:
        for i, j, b0 in xh:
            d = x[i] - x[j]
            d -= np.round(d / box) * box
            worst = max(worst, abs(np.linalg.norm(d) - b0) / b0)
    print(f"largest relative X-H deviation from b0 over {len(frames)} frames: {worst:.2e}")
    assert worst < 1e-4  # LINCS order 12, 2 iterations, single-precision coordinates

    # the flexible bonds moved: the frames are dynamics, not a frozen molecule
    cc = [np.linalg.norm(x[0] - x[1]) for x, _ in frames]
    assert np.ptp(cc) > 1e-4

    # E_ML: the engine's energy of exactly the frame's coordinates, as a direct call gives
    calls = np.loadtxt(tmp_path / "calls.csv", delimiter=",", skiprows=1, ndmin=2)
    z = ["C", "C", "O", "H", "H", "H", "H", "H", "H"]
    e_direct = np.array([float(ani.compute(z, x[:9] * 10).energy) for x, _ in frames])  # Hartree
    assert np.allclose(calls[: len(frames), 2], e_direct, rtol=0, atol=1e-9)
