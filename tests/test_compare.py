"""Cross-engine comparison (``mdi-mlmm compare``): GROMACS (MDI module) vs LAMMPS vs OpenMM.

One configuration of a prepared solvated ethanol (as ``prepare --smiles CCO``: GAFF2 ethanol + 702
TIP3P, freshly solvated, 2115 atoms), ethanol = ANI-2x, matched settings (r_c = 1.0 nm, one
Ewald β from ewald-rtol 1e-6, fine reciprocal grids, plain LJ cut-off, no dispersion correction).
The GROMACS column is skipped only when there is no MDI-enabled build AND env CI is unset.

Tolerances (kJ/mol, kJ/mol/nm) and why; "seen" = this system on the development VM:

* LJ, LAMMPS vs OpenMM: 1e-8 relative — same pair sums in double precision (seen: LJ 7e-10 kJ/mol =
  2.5e-14, bonded 4e-15).
* Coulomb, LAMMPS vs OpenMM: 5e-6 relative — LAMMPS's coul/long evaluates erfc with the
  Abramowitz–Stegun polynomial (|error| ≤ 1.5e-7), i.e. ~2e-7 of the real-space sum (+1.7e5), which is
  ~1e-6 of the Coulomb total (seen 1.1e-6: 0.033 kJ/mol of −30539); reciprocal sums agree to 1e-8.
* LJ, GROMACS vs the double-precision engines: 1e-5 relative; Coulomb 5e-5 relative — mixed
  precision (float pair kernels, PME and energy accumulation; seen ≤ 3.7e-6 on the unminimized box,
  1.5e-5 on the minimized one `prepare` writes now, 2–4e-5 on 10⁴-atom boxes whatever the ML region).
* E_MM: 1e-4 relative (seen ≤ 2e-5; E_MM = LJ + Coulomb is a cancellation of ±3e4).
* E_total: the E_MM tolerance + the E_ML one (seen 2e-7 relative).
* bonded, ML = ethanol: 1e-6 kJ/mol absolute: every bonded term left is zero (ML–ML bonded terms removed,
  waters rigid), in every engine — a check that OpenMM's FLEXIBLE water and the ML removal are handled.
* bonded, ML = one water (ethanol MM, exercising bonds/angles/torsions and the fudged 1-4 pairs):
  LAMMPS vs OpenMM 1e-8 relative, GROMACS 1e-5 relative (seen 2.6e-6: 1.3887 kJ/mol).
* E_ML, GROMACS .edr vs the potential: 2 float32 ulps at |E_ML| (2 × 0.031 kJ/mol at 4e5 kJ/mol;
  the .edr stores float; seen 0.011).
* forces, GROMACS vs double engines: |ΔF_i| ≤ 0.05 + 1e-5 |F_i| on every atom; RMS ≤ 0.05; ML
  atoms ≤ 0.02 — float arithmetic on forces up to 1.1e5 kJ/mol/nm (close contacts of the freshly
  solvated box; seen max 0.146 at |F| = 1.1e5, RMS 0.0076, ML atoms 0.0025 (ethanol) / 0.0095 (water)).
* forces, LAMMPS vs OpenMM: max |ΔF_i| ≤ 5e-3 (PME order 5 / grid vs Ewald, erfc polynomial; seen 7.5e-4).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm.hosts import compare as cmpmod
from mdi_mlmm.hosts.gromacs import build as gbuild
from tests.gro_tools import wrap_shifted_gro

CI = bool(os.environ.get("CI"))
HAVE_GMX = gbuild.gmx_path() is not None
WITH_GMX = HAVE_GMX or CI  # in CI a missing build fails the tests instead of skipping them
needs_gmx = pytest.mark.skipif(not WITH_GMX, reason="no MDI-enabled GROMACS build (and CI unset)")

pytestmark = [pytest.mark.timeout(600)]

TOL_REL = {  # (pair kind, term) -> relative tolerance
    ("double", "LJ"): 1e-8,
    ("double", "Coulomb"): 5e-6,
    ("double", "bonded"): 1e-8,
    ("single", "bonded"): 1e-5,
    ("single", "LJ"): 1e-5,
    ("single", "Coulomb"): 5e-5,  # float sums: seen 1.5e-5 on the minimized ethanol box, 2-4e-5 on 1e4-atom boxes
}
TOL_E_MM_REL = 1e-4
TOL_BONDED_ABS = 1e-6


def e_ml_tol(e_ml_kj: float) -> float:
    """2 float32 ulps at |E_ML| (kJ/mol): the .edr stores single precision."""
    return 2.0 * float(np.spacing(np.float32(abs(e_ml_kj))))


@pytest.fixture(scope="module")
def eth(tmp_path_factory, shared_dir) -> Path:
    os.environ["MDI_MLMM_SHARED"] = str(shared_dir)
    from mdi_mlmm.prep.system import prepare_system

    out = tmp_path_factory.mktemp("compare") / "eth"
    prepare_system(out, smiles="CCO", forcefield="gaff2")  # what `mdi-mlmm prepare --smiles CCO` builds
    return out / "solvated"


@pytest.fixture(scope="module")
def ani():
    from mdi_mlmm.potentials import load_potential

    return load_potential("ani2x", dtype="float64")  # compare's precision (REFERENCE_DTYPE)


@pytest.fixture(scope="module")
def result(eth, ani, tmp_path_factory):
    engines = list(cmpmod.ENGINES) if WITH_GMX else ["lammps", "openmm"]
    return cmpmod.compare(eth / "topol.top", eth / "conf.gro", "resname MOL", model="ani2x", engines=engines,
                          potential=ani, workdir=tmp_path_factory.mktemp("compare_work"))


def _pairs(res):
    eng = res.engines()
    for a in range(len(eng)):
        for b in range(a + 1, len(eng)):
            kind = "single" if "gromacs" in (eng[a], eng[b]) else "double"
            yield eng[a], eng[b], kind


def check_energies(result):
    assert set(result.engines()) >= {"lammps", "openmm"}
    t = {e: r.terms for e, r in result.results.items()}
    for a, b, kind in _pairs(result):
        for term in ("bonded", "LJ", "Coulomb"):
            if term == "bonded" and abs(t[b][term]) < TOL_BONDED_ABS:
                assert abs(t[a][term]) <= TOL_BONDED_ABS, (a, b, term, t[a][term])
                continue
            rel = abs(t[a][term] - t[b][term]) / abs(t[b][term])
            assert rel <= TOL_REL[(kind, term)], (a, b, term, t[a][term], t[b][term], rel)
        rel = abs(t[a]["E_MM"] - t[b]["E_MM"]) / abs(t[b]["E_MM"])
        assert rel <= TOL_E_MM_REL, (a, b, t[a]["E_MM"], t[b]["E_MM"], rel)
        tol_total = TOL_E_MM_REL * abs(t[b]["E_MM"]) + (e_ml_tol(t[b]["E_ML"]) if kind == "single" else 1e-9)
        assert abs(t[a]["E_total"] - t[b]["E_total"]) <= tol_total, (a, b, t[a]["E_total"], t[b]["E_total"])
        # every engine's E_MM is its bonded + LJ + Coulomb (GROMACS: the float .edr terms round separately)
        for e in (a, b):
            parts = t[e]["bonded"] + t[e]["LJ"] + t[e]["Coulomb"]
            assert abs(t[e]["E_MM"] - parts) <= (0.1 if e == "gromacs" else 1e-6), (e, t[e]["E_MM"], parts)


def check_forces(result):
    ml = np.array(result.ml_indices)
    for a, b, kind in _pairs(result):
        fa, fb = result.results[a].forces, result.results[b].forces
        d = np.linalg.norm(fa - fb, axis=1)
        mag = np.linalg.norm(fb, axis=1)
        if kind == "single":
            bad = np.nonzero(d > 0.05 + 1e-5 * mag)[0]
            assert len(bad) == 0, (a, b, bad[:5], d[bad[:5]], mag[bad[:5]])
            assert np.sqrt(np.mean(d ** 2)) <= 0.05
            assert d[ml].max() <= 0.02, (a, b, d[ml])
        else:
            assert d.max() <= 5e-3, (a, b, d.max(), int(d.argmax()))


def test_energy_terms_agree(result):
    """ML = ethanol: every ML-ML term removed, so bonded = 0 (waters rigid) in every engine."""
    for e, r in result.results.items():
        assert abs(r.terms["bonded"]) <= TOL_BONDED_ABS, (e, r.terms["bonded"])
    check_energies(result)


def test_forces_agree(result):
    check_forces(result)


@pytest.fixture(scope="module")
def result_mm_ethanol(eth, ani):
    engines = list(cmpmod.ENGINES) if WITH_GMX else ["lammps", "openmm"]
    return cmpmod.compare(eth / "topol.top", eth / "conf.gro", "resid 2", model="ani2x", engines=engines,
                          potential=ani)


def test_mm_ethanol_bonded_and_14_terms_agree(result_mm_ethanol):
    """ML = one water, ethanol MM: exercises the bonded terms and the 1-4 pairs (fudgeLJ 0.5, fudgeQQ 0.8333,
    gen-pairs) in all three engines, OpenMM's GromacsTopFile included."""
    r = result_mm_ethanol
    assert r.results["openmm"].terms["bonded"] > 0.1
    check_energies(r)
    check_forces(r)


def test_ml_removal_is_complete_in_openmm(result):
    """OpenMM: ethanol's 8 bonds, 13 angles and its torsions zeroed (OpenMM drops zero-k torsion lines, so their
    number depends on the force field), 9·8/2 = 36 ML-ML exceptions. That nothing ML-ML is left in any engine
    is checked by bonded = 0 and by the agreement with LAMMPS and GROMACS, which remove the terms their own way."""
    note = " ".join(result.results["openmm"].notes)
    assert "'HarmonicBondForce': 8" in note and "'HarmonicAngleForce': 13" in note
    assert "'PeriodicTorsionForce': 0" not in note and "36 ML-ML exceptions" in note


@needs_gmx
def test_e_ml_gromacs_edr_equals_potential(result):
    assert "gromacs" in result.results
    edr, pot = result.e_ml_gromacs_edr_kj, result.e_ml_potential_kj
    assert edr is not None
    assert abs(edr - pot) <= e_ml_tol(pot), (edr, pot, e_ml_tol(pot))
    # the LAMMPS and OpenMM columns carry the potential's value
    assert result.results["lammps"].terms["E_ML"] == pot == result.results["openmm"].terms["E_ML"]


def test_table_and_json(result, tmp_path):
    text = result.table()
    for word in ("kJ/mol", "kcal/mol", "bonded", "LJ", "Coulomb", "E_MM", "E_ML", "E_total", "forces |ΔF|",
                 "matched settings", "LAMMPS", "OpenMM"):
        assert word in text, word
    cmpmod.write_json(result, tmp_path / "c.json")
    d = json.loads((tmp_path / "c.json").read_text())
    assert set(d["engines"]) == set(result.engines())
    assert abs(d["engines"]["openmm"]["terms_kcal"]["E_MM"] * 4.184 - d["engines"]["openmm"]["terms_kj"]["E_MM"]) < 1e-9


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mdi_mlmm", "compare", *map(str, args)], capture_output=True,
                          text=True, **kw)


def test_cli_prints_table_and_exits_0(eth, result, tmp_path):
    """Index-group input, LAMMPS + OpenMM, the cheap 'zero' model: same E_MM as the selection run."""
    out = tmp_path / "c.json"
    p = _cli("--top", eth / "topol.top", "--gro", eth / "conf.gro", "--ndx", eth / "index.ndx", "--ml-group", "ML",
             "--model", "zero", "--engines", "lammps,openmm", "--json", out)
    assert p.returncode == 0, p.stderr
    assert "E_total" in p.stdout and "LAMMPS − OpenMM" in p.stdout and "kcal/mol" in p.stdout
    d = json.loads(out.read_text())
    assert d["ml_indices"] == result.ml_indices
    assert d["engines"]["openmm"]["terms_kj"]["E_ML"] == 0.0
    # positions: the .gro rounded to float32 here; with GROMACS in `result`, mdrun's frame, wrapped into the box
    # in float32 (≤ 1 ulp ≈ 2e-7 nm apart for the wrapped atoms: Σ F·δx with |F| up to 1e5 kJ/mol/nm; seen 0.012
    # kJ/mol = 3.5e-6) — why every engine takes the GROMACS frame when GROMACS runs
    e_mm = d["engines"]["openmm"]["terms_kj"]["E_MM"]
    ref = result.results["openmm"].terms["E_MM"]
    tol = 2e-5 * abs(ref) if "gromacs" in result.results else 1e-9 * abs(ref)
    assert abs(e_mm - ref) <= tol, (e_mm, ref)


@pytest.mark.parametrize("sel, expect", [("resname XYZ", "selects no atoms"),
                                         ("resnam MOL", "bad ML selection"),
                                         ("resname MOL and name C1", "cuts the bond")])
def test_cli_bad_selection_is_one_error_line(eth, sel, expect):
    p = _cli("--top", eth / "topol.top", "--gro", eth / "conf.gro", "--ml", sel)
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], p.stderr
    assert p.stdout == ""


def test_ml_molecule_broken_across_pbc(eth, ani, result, tmp_path):
    """Ethanol split by the periodic boundary: LAMMPS and OpenMM (exceptions with PBC) still agree at the double-
    precision tolerances, and E_MM, E_ML equal the unbroken configuration's (translation invariance; float32
    rounding of the shifted coordinates ≤ 2e-5 relative as above)."""
    lines = (eth / "conf.gro").read_text().splitlines()
    box = np.array([float(v) for v in lines[-1].split()[:3]])
    c1 = np.array([float(lines[2][20 + 8 * d: 28 + 8 * d]) for d in range(3)])
    shift = np.round(box - c1 - 0.03, 3)  # C1 lands 0.03 nm inside the upper faces: its neighbours wrap
    wrap_shifted_gro(eth / "conf.gro", tmp_path / "broken.gro", shift)
    r = cmpmod.compare(eth / "topol.top", tmp_path / "broken.gro", "resname MOL", engines=["lammps", "openmm"],
                       potential=ani)
    x = np.array([[float(ln[20 + 8 * d: 28 + 8 * d]) for d in range(3)] for ln in
                  (tmp_path / "broken.gro").read_text().splitlines()[2:11]])
    assert np.ptp(x, axis=0).max() > box.min() / 2, "the test molecule should be broken across the boundary"
    t, lo = r.results["lammps"].terms, r.results["openmm"].terms
    assert abs(t["LJ"] - lo["LJ"]) <= 1e-8 * abs(lo["LJ"])
    assert abs(t["Coulomb"] - lo["Coulomb"]) <= 5e-6 * abs(lo["Coulomb"])
    assert np.linalg.norm(r.results["lammps"].forces - r.results["openmm"].forces, axis=1).max() <= 5e-3
    ref = result.results["openmm"].terms
    assert abs(lo["E_MM"] - ref["E_MM"]) <= 2e-5 * abs(ref["E_MM"]), (lo["E_MM"], ref["E_MM"])
    assert abs(lo["E_ML"] - ref["E_ML"]) <= 1e-3, (lo["E_ML"], ref["E_ML"])
