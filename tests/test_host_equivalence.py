"""One physical model on both hosts (issue 12; docs/hosts.md).

1. The defaults agree with :mod:`mdi_mlmm.protocol.physics`: GROMACS's mdp templates and the LAMMPS
   host's settings (no engines run).
2. Single points: one configuration of solvated ethanol (tests/data/lammps_ethanol, 2037 atoms) evaluated
   by both hosts with their DEFAULT production settings (GROMACS: the package templates, only output and
   a 0-step evaluation set; LAMMPS: ``run_md``'s defaults), through :func:`mdi_mlmm.hosts.compare.compare`
   with ``Settings(production=True)``; both see the GROMACS frame's coordinates.

Tolerances (kcal/mol) and why; "seen" = this configuration on the development VM:

* LJ: 2e-3 — the same shifted LJ in both (seen 3e-5 with the mixed-precision build, 3e-4 with gmx_d).
* E_MM with a double-precision GROMACS (Debian's stock ``gmx_d``, plain MM): 0.02, the issue's bound
  (seen 0.010: GROMACS's SPME vs LAMMPS's PPPM on the same 0.10 nm / order-6 grid, erfc tables; with both
  k-space sums converged 0.004).
* E_MM with the mixed-precision builds that production runs use (the MDI build; stock ``gmx``): 0.02 +
  5e-6 |E_Coulomb| (≈ 0.058 here). GROMACS's single-precision Ewald adds a bias of about 3.5e-6 of the
  Coulomb energy (seen 0.025 of the 0.036 total; with both k-space sums converged, the mixed build is still
  0.028 from LAMMPS and gmx_d 0.004), which no setting removes. It is the same at every λ, so ΔG does not
  see it.
* E_ML, GROMACS .edr vs the potential: 2 float32 ulps at |E_ML| (the .edr stores float).
* That the test can fail: FreeSolv's protocol (switch + dispersion correction) on GROMACS against the
  LAMMPS default differs by more than 10 kcal/mol in LJ (the dispersion correction of the box).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mdi_mlmm import units
from mdi_mlmm.hosts import compare as cmpmod
from mdi_mlmm.hosts.gromacs import build as gbuild
from mdi_mlmm.prep import mdp
from mdi_mlmm.protocol import physics

DATA = Path(__file__).parent / "data" / "lammps_ethanol"
CI = bool(os.environ.get("CI"))
HAVE_GMX = gbuild.gmx_path() is not None
needs_gmx = pytest.mark.skipif(not (HAVE_GMX or CI), reason="no MDI-enabled GROMACS build (and CI unset)")
KJ2KCAL = units.factor("energy", "kj/mol", "kcal/mol")

TOL_LJ = 2e-3
TOL_E_MM = 0.02
TOL_SINGLE_REL = 5e-6


# ------------------------------------------------------------------ 1. the defaults are physics.py's
@pytest.mark.parametrize("template", ["em", "nvt", "npt", "nve", "lambda"])
def test_gromacs_templates_are_the_default_model(template):
    p = mdp.parse(mdp.render(template, init_lambda_state=0) if template == "lambda" else mdp.render(template))
    assert float(p["rcoulomb"]) == float(p["rvdw"]) == physics.CUTOFF_NM
    assert p["vdw-modifier"].lower() == "potential-shift" and "rvdw-switch" not in p
    assert p["dispcorr"].lower() == "no" and not physics.DISPERSION_CORRECTION
    assert float(p["ewald-rtol"]) == physics.EWALD_RTOL and p["coulombtype"].lower() == "pme"
    if template == "lambda":   # NVT at the equilibrated volume, solute flexible, as on LAMMPS
        assert p["pcoupl"].lower() == "no" and p["constraints"].lower() == "none"


def test_lammps_defaults_are_the_default_model(tmp_path):
    s = cmpmod.lammps_production_settings()
    assert s["cutoff_A"] == pytest.approx(physics.cutoff_A()) and s["lj_shift"] is physics.LJ_SHIFT
    assert s["ewald_rtol"] == physics.EWALD_RTOL
    from mdi_mlmm.hosts.lammps.alchemy import AlchemicalSystem

    asys = AlchemicalSystem.build(DATA / "topol.top", DATA / "conf.gro", tmp_path / "l", list(range(9)), ml=False)
    assert asys.cutoff == pytest.approx(physics.cutoff_A())
    lines = [ln.split() for ln in asys.commands(1.0)]
    modify = next(w for w in lines if w[0] == "pair_modify")
    assert modify[modify.index("shift") + 1] == "yes" and modify[modify.index("tail") + 1] == "no"
    gamma = next(w for w in lines if w[:2] == ["kspace_modify", "gewald"])
    from mdi_mlmm.hosts.lammps.convert import ewald_beta

    assert float(gamma[2]) == pytest.approx(ewald_beta(physics.cutoff_A(), physics.EWALD_RTOL))


def test_freesolv_protocol_is_an_option_on_gromacs_only():
    from mdi_mlmm.errors import UserInputError
    from mdi_mlmm.hosts.gromacs.alchemy import _lambda_mdp
    from mdi_mlmm.protocol.schedule import FREESOLV

    p = mdp.parse(_lambda_mdp(5, FREESOLV, 100, 2.0, 10, 298.15, 1, False, False, protocol="freesolv",
                              constrain_hbonds=True))
    assert (p["vdw-modifier"], p["rvdw-switch"], p["dispcorr"], p["rcoulomb"]) == \
        ("Potential-switch", "0.9", "AllEnerPres", "1.2")
    assert p["pcoupl"] == "C-rescale" and p["constraints"] == "h-bonds"
    with pytest.raises(UserInputError, match="GROMACS host only"):
        physics.check_protocol("freesolv", "lammps")
    from mdi_mlmm.api import HydrationFreeEnergy

    with pytest.raises(UserInputError, match="GROMACS host only"):
        HydrationFreeEnergy(freesolv_id="mobley_2310185", host="lammps", protocol="freesolv")
    assert HydrationFreeEnergy(freesolv_id="mobley_2310185", host="gromacs", model="mm").timestep_fs == 1.0
    assert HydrationFreeEnergy(freesolv_id="mobley_2310185", host="gromacs", model="mm",
                               protocol="freesolv").timestep_fs == 2.0


# ------------------------------------------------------------------ 2. single points
def _single_point(tmp_path, model, selection=None, gmx=None, potential=None):
    return cmpmod.compare(DATA / "topol.top", DATA / "conf.gro", selection, model=model,
                          engines=["gromacs", "lammps"], potential=potential, workdir=tmp_path,
                          settings=cmpmod.Settings(production=True, gmx_binary=gmx))


def _deltas(res):
    g, lm = res.results["gromacs"].terms, res.results["lammps"].terms
    return {k: (g[k] - lm[k]) * KJ2KCAL for k in g}, {k: v * KJ2KCAL for k, v in lm.items()}


def _single_tol(lmp_terms):
    return TOL_E_MM + TOL_SINGLE_REL * abs(lmp_terms["Coulomb"])


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("gmx_d") is None, reason="no double-precision gmx_d (Debian package gromacs)")
def test_mm_single_point_same_energy_double_precision(tmp_path):
    """Plain MM, GROMACS in double precision (stock gmx_d, the same mdp): E_MM within 0.02 kcal/mol."""
    d, lm = _deltas(_single_point(tmp_path, "mm", gmx=shutil.which("gmx_d")))
    assert abs(d["LJ"]) <= TOL_LJ, d
    assert abs(d["E_MM"]) <= TOL_E_MM, (d, lm)


@needs_gmx
@pytest.mark.timeout(120)
def test_mm_single_point_same_energy(tmp_path):
    """Plain MM with the MDI build (mixed precision, as ``md``): E_pot = E_MM agrees (tolerance: docstring)."""
    res = _single_point(tmp_path, "mm")
    d, lm = _deltas(res)
    assert abs(d["LJ"]) <= TOL_LJ, d
    assert abs(d["E_MM"]) <= _single_tol(lm), (d, lm)
    assert res.results["gromacs"].terms["E_ML"] == 0.0 == res.results["lammps"].terms["E_ML"]


@needs_gmx
@pytest.mark.timeout(180)
def test_mlmm_single_point_same_energy(tmp_path):
    """ML/MM (ethanol = ANI-2x): E_MM agrees as in MM mode, and E_pot = E_MM + E_ML with the engine's E_ML
    (GROMACS .edr, float) equal to the potential's (the LAMMPS column) to float32 rounding."""
    from mdi_mlmm.potentials import load_potential

    res = _single_point(tmp_path, "ani2x", "resname MOL", potential=load_potential("ani2x", dtype="float64"))
    d, lm = _deltas(res)
    assert abs(d["LJ"]) <= TOL_LJ, d
    assert abs(d["E_MM"]) <= _single_tol(lm), (d, lm)
    e_ml = res.e_ml_potential_kj
    ulp2 = 2.0 * float(np.spacing(np.float32(abs(e_ml))))
    assert abs(res.e_ml_gromacs_edr_kj - e_ml) <= ulp2
    assert abs(d["E_total"]) <= _single_tol(lm) + ulp2 * KJ2KCAL, d


@needs_gmx
@pytest.mark.timeout(120)
def test_single_point_sees_a_different_model(tmp_path, monkeypatch):
    """The check can fail: GROMACS with FreeSolv's settings against the LAMMPS default is far off."""
    monkeypatch.setattr(cmpmod, "_gmx_eval_mdp", lambda f=cmpmod._gmx_eval_mdp: {**f(), **physics.FREESOLV_NONBONDED})
    d, lm = _deltas(_single_point(tmp_path, "mm"))
    assert abs(d["LJ"]) > 10.0, d
