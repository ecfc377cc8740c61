"""ΔU = E_ML − E_MM,intra over the frames of a real GROMACS .trr (analysis/delta_u.py): ethanol in
water, broken across the periodic boundary, a few MM steps by the stock gmx."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm import units
from mdi_mlmm.analysis.delta_u import read_delta_u, read_solute_frames, window_delta_u
from mdi_mlmm.errors import UserInputError
from mdi_mlmm.potentials import load_potential
from mdi_mlmm.potentials.mm_intra import MMIntra
from tests.gro_tools import wrap_shifted_gro

ETH = Path(__file__).parent / "data" / "lammps_ethanol"
GMX = shutil.which("gmx")
SYMBOLS = ["C", "C", "O"] + ["H"] * 6

MDP = """
integrator    = md
dt            = 0.001
nsteps        = 20
nstxout       = 10
nstfout       = 5            ; frames with forces only in between: skipped
nstcalcenergy = 10
nstenergy     = 10
cutoff-scheme = Verlet
coulombtype   = PME
rcoulomb      = 0.9
rvdw          = 0.9
constraints   = none
gen-vel       = yes
gen-temp      = 300
gen-seed      = 11
"""


@pytest.fixture(scope="module")
def trr(tmp_path_factory):
    if GMX is None:
        pytest.skip("GROMACS (gmx) not installed")
    d = tmp_path_factory.mktemp("delta_u")
    lines = (ETH / "conf.gro").read_text().splitlines()
    box = np.array([float(v) for v in lines[-1].split()[:3]])
    c1 = np.array([float(lines[2][20 + 8 * k: 28 + 8 * k]) for k in range(3)])
    wrap_shifted_gro(ETH / "conf.gro", d / "broken.gro", np.round(box - c1 - 0.03, 3))  # ethanol split by the box
    (d / "md.mdp").write_text(MDP)
    for cmd in ([GMX, "grompp", "-f", "md.mdp", "-c", "broken.gro", "-p", str(ETH / "topol.top"), "-o", "md.tpr",
                 "-maxwarn", "2"],
                [GMX, "mdrun", "-s", "md.tpr", "-deffnm", "md", "-ntmpi", "1", "-ntomp", "1", "-nb", "cpu", "-pin", "off"]):
        r = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
    return d


def _reference_whole(raw, box):
    """Independent of WholeMaker: every atom at its minimum image from atom 0 (ethanol ≪ half the box)."""
    d = raw - raw[0]
    d -= np.round(d / box) * box
    return raw[0] + d


def test_window_delta_u(trr):
    import MDAnalysis as mda

    ani = load_potential("ani2x", dtype="float64")
    mm = MMIntra.from_gromacs(ETH / "topol.top", moleculetype="MOL")
    csv = window_delta_u(trr / "broken.gro", trr / "md.trr", trr / "delta_u.csv", potential=ani, mm=mm,
                         atoms=range(9), batch=2)
    d = read_delta_u(csv)
    np.testing.assert_allclose(d["time_ps"], [0.0, 0.01, 0.02], atol=1e-9)
    u = mda.Universe(str(trr / "broken.gro"), str(trr / "md.trr"))
    frames = [(ts.positions[:9].astype(float), ts.dimensions[:3].astype(float)) for ts in u.trajectory
              if ts.has_positions]
    assert len(frames) == 3
    raw0, box0 = frames[0]
    assert np.ptp(raw0, axis=0).max() > box0.min() / 2, "the molecule should be broken in the trajectory"
    for k, (raw, box) in enumerate(frames):
        whole = _reference_whole(raw, box)
        e_ml = float(ani.compute(SYMBOLS, whole).energy) * units.HARTREE_IN_KCAL_PER_MOL
        e_mm = float(mm.energy(whole))
        assert abs(d["e_ml"][k] - e_ml) < 1e-6 and abs(d["e_mm_intra"][k] - e_mm) < 1e-8
        assert abs(d["delta_u"][k] - (e_ml - e_mm)) < 1e-6
        assert e_mm < 30.0  # an intact molecule (a broken one has bonds of nm length)
    # later frames start at start_ps
    t, _ = read_solute_frames(trr / "broken.gro", trr / "md.trr", range(9), start_ps=0.005)
    np.testing.assert_allclose(t, [0.01, 0.02], atol=1e-9)


def test_xtc_refused(trr):
    with pytest.raises(UserInputError, match="xtc rounds positions"):
        read_solute_frames(trr / "broken.gro", trr / "md.xtc", range(9))
