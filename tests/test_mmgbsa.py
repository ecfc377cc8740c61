"""MM-GBSA (mdi_mlmm.analysis.mmgbsa, ``mdi-mlmm mmgbsa``) with real OpenMM on a tiny peptide–benzene complex:
the tool's per-frame ΔE_bind equals an independent OpenMM computation on the separated parts, also when
the frames come from a solvated trajectory with molecules broken across the box; a ligand moved far away
binds with ~0; block-averaged SEM on known data; one-line refusals of a trajectory of another system."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("openmm")
pytest.importorskip("MDAnalysis")

from mdi_mlmm.analysis.mmgbsa import block_sem, mmgbsa_run  # noqa: E402
from mdi_mlmm.errors import UserInputError  # noqa: E402
from tests import pl_tiny  # noqa: E402
from tests.test_analyze_md import write_traj  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return pl_tiny.build(tmp_path_factory.mktemp("pl_tiny"))


def direct_binding(tiny, x):
    """E(complex) − E(receptor) − E(ligand) in kcal/mol at complex positions ``x`` (Å), written out here with
    OpenMM alone (Reference platform, OBC2, ACE, no cutoff): the independent check of the tool."""
    import openmm as mm
    from openmm import app, unit

    def energy(name, pos):
        prm = app.AmberPrmtopFile(str(tiny[name]))
        system = prm.createSystem(nonbondedMethod=app.NoCutoff, implicitSolvent=app.OBC2)
        ctx = mm.Context(system, mm.VerletIntegrator(1.0), mm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(pos * unit.angstrom)
        return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)

    n = len(x) - pl_tiny.N_LIGAND
    return energy("complex", x) - energy("receptor", x[:n]) - energy("ligand", x[n:])


def test_block_sem_on_known_data():
    assert block_sem([1, 1, 3, 3], 2) == pytest.approx(1.0)                # block means 1, 3: sd √2 / √2
    assert block_sem([9, 1, 1, 3, 3], 2) == pytest.approx(1.0)             # the first value is dropped
    x = np.repeat([0.0, 1.0, 0.0, 1.0, 0.0], 20)                           # correlated: 5 blocks of 20
    assert block_sem(x, 5) == pytest.approx(np.std([0, 1, 0, 1, 0], ddof=1) / math.sqrt(5))
    assert block_sem(x, 5) > np.std(x, ddof=1) / math.sqrt(len(x))         # naive SEM underestimates
    assert math.isnan(block_sem([1.0]))


def test_frames_of_a_broken_solvated_trajectory_match_direct_openmm(tiny, tmp_path):
    import MDAnalysis as mda

    u = mda.Universe(str(tiny["gro"]))
    x0 = u.atoms.positions.astype(float)
    nc = mda.Universe(str(tiny["complex"])).atoms.n_atoms
    rng = np.random.default_rng(7)
    frames = [x0 + rng.normal(0, 0.05, x0.shape) + [6.0 * k, -9.0 * k, 11.0 * k] for k in range(3)]
    traj = write_traj(u, frames, tmp_path / "md.trr")            # every atom wrapped: molecules broken
    run = mmgbsa_run(tiny["gro"], [traj], tiny["complex"], tiny["receptor"], tiny["ligand"], platform="Reference")
    want = [direct_binding(tiny, f[:nc]) for f in frames]
    assert run.dE["total"] == pytest.approx(want, abs=2e-3)
    assert -4.0 < np.mean(want) < -1.0                           # benzene stacked on the peptide binds
    assert run.dE["bonded"] == pytest.approx(0.0, abs=1e-6)      # single trajectory: bonded terms cancel
    assert run.dE["vdw_elec"] + run.dE["gb_sa"] == pytest.approx(run.dE["total"], abs=1e-6)


def test_ligand_far_away_binds_with_zero_and_mismatches_are_refused(tiny, tmp_path):
    import MDAnalysis as mda

    dry = mda.Universe(str(tiny["complex"]), str(tiny["inpcrd"]))          # no box: no re-imaging
    x0 = dry.atoms.positions.astype(float)
    far = x0.copy()
    far[-pl_tiny.N_LIGAND:] += [300.0, 0.0, 0.0]
    traj = write_traj(dry, [x0, far], tmp_path / "dry.trr", wrap=False)
    run = mmgbsa_run(tiny["complex"], [traj], tiny["complex"], tiny["receptor"], tiny["ligand"], platform="Reference")
    assert run.dE["total"][0] == pytest.approx(direct_binding(tiny, x0), abs=1e-4)
    assert run.dE["total"][0] < -1.0
    assert abs(run.dE["total"][1]) < 0.01
    # the receptor's topology given as the complex's: its atoms are the first ones, but no ligand among them
    with pytest.raises(UserInputError, match="selects no atoms"):
        mmgbsa_run(tiny["complex"], [traj], tiny["receptor"], tiny["receptor"], tiny["ligand"])
    # the ligand's topology given as the receptor's: one line naming the atom counts
    with pytest.raises(UserInputError, match="receptor has 94 atoms but its prmtop has 12"):
        mmgbsa_run(tiny["complex"], [traj], tiny["complex"], tiny["ligand"], tiny["ligand"])
    # a ligand selection that is not the ligand prmtop's atoms
    with pytest.raises(UserInputError, match="not the same system"):
        mmgbsa_run(tiny["complex"], [traj], tiny["complex"], tiny["receptor"], tiny["ligand"],
                   ligand="resname MOL and name C*")
    # another system's trajectory with the same number of atoms: refused by names
    shuffled = tmp_path / "renamed.pdb"
    dry.atoms[0].name = "XX"
    dry.atoms.write(str(shuffled))
    with pytest.raises(UserInputError, match="atom 1 of the complex is XX"):
        mmgbsa_run(shuffled, [traj], tiny["complex"], tiny["receptor"], tiny["ligand"])


def test_cli_two_runs_with_prepared_layout(tiny, tmp_path, capsys):
    import shutil

    import MDAnalysis as mda

    from mdi_mlmm.cli.main import main

    prepared = tmp_path / "prep"
    (prepared / "amber").mkdir(parents=True)
    for k in ("complex", "receptor", "ligand"):
        shutil.copy(tiny[k], prepared / "amber" / f"{k}.prmtop")
    u = mda.Universe(str(tiny["gro"]))
    x0 = u.atoms.positions.astype(float)
    rng = np.random.default_rng(1)
    a = write_traj(u, [x0 + rng.normal(0, 0.03, x0.shape) for _ in range(4)], tmp_path / "a.trr")
    lig = u.select_atoms("resname MOL").indices
    x_far = x0.copy()
    x_far[lig] += [0.0, 0.0, 3.0]                                 # lifted off: weaker binding
    b = write_traj(u, [x_far + rng.normal(0, 0.03, x0.shape) for _ in range(4)], tmp_path / "b.trr")
    out = tmp_path / "gbsa"
    assert main(["mmgbsa", "--prepared", str(prepared), "--top", str(tiny["gro"]), "--traj", str(a),
                 "--reference-run", str(tiny["gro"]), str(b), "--blocks", "2", "--out", str(out)]) == 0
    s = json.loads((out / "mmgbsa.json").read_text())
    ml, mm = (r["dE_kcal_mol"]["total"]["mean"] for r in s["runs"])
    assert ml < mm and s["difference"]["mean"] == pytest.approx(ml - mm)
    assert "ML/MM − MM" in capsys.readouterr().out
    for f in ("mmgbsa.md", "mmgbsa_frames.csv", "mmgbsa.png"):
        assert (out / f).stat().st_size > 0
    assert main(["mmgbsa", "--top", str(tiny["gro"]), "--traj", str(a), "--out", str(out)]) == 2
    assert "give --complex-prmtop or --prepared DIR" in capsys.readouterr().err
