"""``mdi-mlmm analyze-md`` (mdi_mlmm.analysis.md) on synthetic trajectories of a tiny peptide–benzene system
with known answers: RMSDs after rigid motions and a known ligand displacement, B-factors from a known RMSF,
Pearson r against a PDB's B-factors, molecules broken across periodic boundaries, one-line errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("MDAnalysis")

from mdi_mlmm.analysis.md import analyze_run, pearson, rmsf_to_bfactor  # noqa: E402
from mdi_mlmm.errors import UserInputError  # noqa: E402
from tests import pl_tiny  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return pl_tiny.build(tmp_path_factory.mktemp("pl_tiny"))


def _universe(tiny):
    import MDAnalysis as mda

    return mda.Universe(str(tiny["gro"]))


def write_traj(u, frames, path, wrap=True):
    """Frames (n, 3) Å of the whole system into ``path`` (.trr: full precision), each atom wrapped into the box
    (molecules broken across the boundaries) unless ``wrap`` is False."""
    import MDAnalysis as mda

    with mda.Writer(str(path), u.atoms.n_atoms) as w:
        for x in frames:
            u.atoms.positions = x
            if wrap:
                u.atoms.wrap()
            w.write(u.atoms)
    return path


def _rot(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.array([[1, 0, 0], [0, c, s], [0, -s, c]])


def test_bfactor_and_pearson_formulas():
    assert rmsf_to_bfactor(1.0) == pytest.approx(8 * math.pi ** 2 / 3)  # 26.319 Å²
    assert rmsf_to_bfactor([0.5, 2.0]) == pytest.approx([8 * math.pi ** 2 / 12, 32 * math.pi ** 2 / 3])
    r = pearson([1, 2, 3, 4], [2, 4, 5, 4])
    assert r["r"] == pytest.approx(3.5 / math.sqrt(5 * 4.75)) and r["n"] == 4
    assert pearson([1, 2, 3], [5, 5, 5]) is None


def test_rmsd_zero_rigid_motion_and_known_ligand_shift_across_pbc(tiny, tmp_path):
    u = _universe(tiny)
    x0 = u.atoms.positions.astype(float)
    n_sol = u.select_atoms("protein or resname MOL").n_atoms
    lig = u.select_atoms("resname MOL").indices
    c = x0[:n_sol].mean(axis=0)
    f1 = (x0 - c) @ _rot(35).T + c + [11.0, -7.0, 13.0]         # rigid rotation + translation
    f2 = x0.copy()
    f2[lig] += [1.0, 1.0, 0.5]                                    # the ligand alone moved by 1.5 Å
    f2 += [20.0, -15.0, 9.0]                                      # and everything across the box
    traj = write_traj(u, [x0, f1, f2], tmp_path / "t.trr")
    d = analyze_run(tiny["gro"], [traj])
    assert d.rmsd_backbone == pytest.approx([0, 0, 0], abs=2e-3)
    assert d.rmsd_ligand == pytest.approx([0, 0, 1.5], abs=2e-3)
    assert d.n_ligand_atoms == 6  # heavy atoms only
    # the same frames, not wrapped: the same numbers
    d2 = analyze_run(tiny["gro"], [write_traj(u, [x0, f1, f2], tmp_path / "w.trr", wrap=False)])
    assert d2.rmsd_ligand == pytest.approx(d.rmsd_ligand, abs=2e-3)
    # a trajectory against itself: zero RMSD, zero RMSF
    same = analyze_run(tiny["gro"], [write_traj(u, [x0, x0, x0], tmp_path / "s.trr")])
    assert same.rmsd_backbone == pytest.approx(0, abs=1e-3) and same.rmsf == pytest.approx(0, abs=1e-3)


def test_bfactors_from_known_rmsf_and_pearson_against_pdb(tiny, tmp_path):
    u = _universe(tiny)
    x0 = u.atoms.positions.astype(float)
    cb = u.select_atoms("protein and name CB")
    amp = 0.2 * np.arange(1, cb.n_atoms + 1)               # 0.2, 0.4, ... Å: RMSF of each C-beta
    frames = []
    for k in range(6):
        x = x0.copy()
        x[cb.indices, 0] += amp * (1 if k % 2 else -1)     # ± amp along x: RMSF = amp; the backbone stays
        frames.append(x + [7.0 * k, 0, 0])                 # drifting through the box
    traj = write_traj(u, frames, tmp_path / "cb.trr")
    d = analyze_run(tiny["gro"], [traj], bfactor_atoms="name CB")
    assert list(d.resnames) == ["LYS", "ALA", "TRP", "ALA", "GLU", "ALA"]
    assert d.rmsf == pytest.approx(amp, abs=2e-3)
    assert d.bfactor == pytest.approx(8 * math.pi ** 2 / 3 * amp ** 2, rel=1e-2)
    # a PDB whose B-factors are a linear function of ours (renumbered residues, HIS-like aliasing unused): r = 1
    pdb_u = _universe(tiny).select_atoms("protein")
    pdb_u.residues.resids = pdb_u.residues.resids + 100
    b = np.zeros(pdb_u.n_atoms)
    for res, bb in zip(pdb_u.select_atoms("name CB").residues, 8 * math.pi ** 2 / 3 * amp ** 2):
        b[np.isin(pdb_u.indices, res.atoms.indices)] = 3.0 * bb + 10.0
    pdb_u.universe.add_TopologyAttr("tempfactors")
    pdb_u.tempfactors = b
    pdb_u.write(str(tmp_path / "xtal.pdb"))
    d = analyze_run(tiny["gro"], [traj], bfactor_atoms="name CB", pdb=tmp_path / "xtal.pdb")
    assert d.pdb_pearson["r"] == pytest.approx(1.0, abs=1e-4) and d.pdb_pearson["n"] == 6
    # anti-correlated B-factors: r = -1 (the test can fail)
    pdb_u.tempfactors = np.where(b > 0, 500.0 - b, 0.0)
    pdb_u.write(str(tmp_path / "anti.pdb"))
    d = analyze_run(tiny["gro"], [traj], bfactor_atoms="name CB", pdb=tmp_path / "anti.pdb")
    assert d.pdb_pearson["r"] == pytest.approx(-1.0, abs=1e-4)
    # a PDB of another protein: one line
    pdb_u.residues[2].resname = "GLY"
    pdb_u.write(str(tmp_path / "other.pdb"))
    with pytest.raises(UserInputError, match="do not match"):
        analyze_run(tiny["gro"], [traj], bfactor_atoms="name CB", pdb=tmp_path / "other.pdb")


def test_cli_two_runs_report_and_one_line_errors(tiny, tmp_path, capsys):
    from mdi_mlmm.cli.main import main

    u = _universe(tiny)
    x0 = u.atoms.positions.astype(float)
    rng = np.random.default_rng(3)
    a = write_traj(u, [x0 + rng.normal(0, 0.2, x0.shape) for _ in range(4)], tmp_path / "a.trr")
    b = write_traj(u, [x0 + rng.normal(0, 0.4, x0.shape) for _ in range(4)], tmp_path / "b.trr")
    out = tmp_path / "report"
    assert main(["analyze-md", "--top", str(tiny["gro"]), "--traj", str(a), "--reference-run", str(tiny["gro"]),
                 str(b), "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [r["label"] for r in s["runs"]] == ["ML/MM", "MM"]
    # noisier run: larger RMSDs (sd 0.2 against 0.4 Å per coordinate)
    assert s["runs"][0]["rmsd_backbone_A"]["mean"] < s["runs"][1]["rmsd_backbone_A"]["mean"]
    assert s["comparison"]["rmsd_backbone_mean_diff_A"] < 0
    for f in ("report.md", "rmsd.png", "bfactors.png", "rmsd.csv", "bfactors.csv"):
        assert (out / f).stat().st_size > 0
    capsys.readouterr()
    # one-line errors: atom counts, missing file, empty selection
    bad = [["--top", str(tiny["dir"] / "complex.inpcrd"), "--traj", str(a)],
           ["--top", str(tiny["gro"]), "--traj", str(tmp_path / "missing.xtc")],
           ["--top", str(tiny["gro"]), "--traj", str(a), "--ligand", "resname XYZ"]]
    import MDAnalysis as mda

    dry = mda.Universe(str(tiny["complex"]), str(tiny["inpcrd"]))
    dry.atoms.write(str(tmp_path / "dry.pdb"))
    bad[0][1] = str(tmp_path / "dry.pdb")
    for args, what in zip(bad, ["atoms but topology", "does not exist", "selects no atoms"]):
        assert main(["analyze-md", *args, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and what in err[0], err


def test_run_directory_of_the_lammps_host(tiny, tmp_path):
    """``--run DIR``: the LAMMPS host's topology.gro + traj.dcd (unwrapped) are found and read."""
    import shutil

    from mdi_mlmm.cli.main import main

    u = _universe(tiny)
    x0 = u.atoms.positions.astype(float)
    run = tmp_path / "md_lammps"
    run.mkdir()
    shutil.copy(tiny["gro"], run / "topology.gro")
    lig = u.select_atoms("resname MOL").indices
    x1 = x0.copy()
    x1[lig] += [0.0, 2.0, 0.0]
    write_traj(u, [x0, x1], run / "traj.dcd", wrap=False)
    assert main(["analyze-md", "--run", str(run), "--out", str(tmp_path / "r")]) == 0
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["runs"][0]["rmsd_ligand_A"]["final"] == pytest.approx(2.0, abs=1e-3)
    assert s["runs"][0]["topology"].endswith("topology.gro")
