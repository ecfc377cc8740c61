"""One configuration, three MM engines: GROMACS (MDI module), LAMMPS and OpenMM side by side.

:func:`compare` evaluates the ML/MM energy E = E_ML(ML atoms) + E_MM(everything, no ML–ML
term) and the forces of ONE configuration (``top`` + ``gro``) with

* **GROMACS** — the MDI-enabled build, one zero-step ``integrator = md`` run with our module
  and an engine serving ``model`` (:func:`mdi_mlmm.hosts.gromacs.host.run_md`); terms from the
  .edr (E_ML included, single precision), forces from the .trr (``nstfout = 1``);
* **LAMMPS** — the converted system with the ML region (:func:`.lammps.convert.convert`), terms
  and forces of ``run 0``; E_ML / F_ML from the potential;
* **OpenMM** — an independent MM reference: ``openmm.app.GromacsTopFile`` reads the .top; every
  bonded term whose atoms are all ML is zeroed, every ML–ML pair becomes a NonbondedForce
  exception with zero chargeProd and epsilon (OpenMM subtracts an excluded pair's reciprocal
  part), the NonbondedForce is split into an LJ copy and a Coulomb copy (separate force groups);
  Reference platform (double precision); E_ML / F_ML from the potential.

Settings are matched (:class:`Settings`): PME/Ewald with the same real-space cutoff (1.0 nm)
and the same splitting parameter β (erfc(β r_c) = ewald-rtol, as GROMACS computes it), fine
reciprocal grids, LJ with a plain cutoff, no shift, no dispersion correction, no Coulomb
shift. With one β everywhere the real-space truncation is the same in all three engines and
only the reciprocal sums (converged to ~1e-8 relative) differ.

When GROMACS runs, the coordinates that all engines (and the potential) use are those of the
GROMACS .trr frame (float32 values of the .gro coordinates, wrapped into the box the way mdrun
did), so that everything sees bit-identical positions; without GROMACS the .gro coordinates
rounded to float32.

Term mapping (kJ/mol; sums where the engines split differently):

=========  ==============================================  ===========================  =================================
term       GROMACS (.edr)                                  LAMMPS (thermo)               OpenMM (force groups)
=========  ==============================================  ===========================  =================================
bonded     every interaction term that is not LJ/Coulomb   ebond+eangle+edihed+eimp      bond, angle, torsion forces
LJ         LJ (SR) + LJ-14 (+ Disper. corr.)               evdwl                         NonbondedForce without charges
Coulomb    Coulomb (SR) + Coul. recip. + Coulomb-14        ecoul + elong                 NonbondedForce without LJ
E_MM       Potential − E_ML                                pe                            sum of all groups
E_ML       E_ML (engine via MDI, .edr)                     potential                     potential
E_total    Potential                                       pe + E_ML                     E_MM + E_ML
=========  ==============================================  ===========================  =================================

Units: kJ/mol and kJ/mol/nm in the results (kcal/mol and kcal/mol/Å also in the table);
all conversions through :mod:`mdi_mlmm.units`.
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import units
from ..errors import HostError, UserInputError
from ..potentials.registry import is_ml

log = logging.getLogger("mdi_mlmm.compare")

ENGINES = ("gromacs", "lammps", "openmm")
#: the ML model's precision in a comparison (its potential and the GROMACS column's engine): float64, a
#: reference, although engines default to float32 (:data:`mdi_mlmm.potentials.registry.DEFAULT_DTYPE`)
REFERENCE_DTYPE = "float64"
LABELS = {"gromacs": "GROMACS", "lammps": "LAMMPS", "openmm": "OpenMM"}
TERMS = ("bonded", "LJ", "Coulomb", "E_MM", "E_ML", "E_total")

KJ_PER_HARTREE = units.factor("energy", "hartree", "kj/mol")
KJ2KCAL = units.factor("energy", "kj/mol", "kcal/mol")
KCAL2KJ = units.factor("energy", "kcal/mol", "kj/mol")
F_HA_A_TO_KJ_NM = units.force_factor("hartree", "angstrom", "kj/mol", "nm")
F_KCAL_A_TO_KJ_NM = units.force_factor("kcal/mol", "angstrom", "kj/mol", "nm")
F_KJ_NM_TO_KCAL_A = units.force_factor("kj/mol", "nm", "kcal/mol", "angstrom")
NM2A = units.factor("length", "nm", "angstrom")

# .edr terms that are not interaction energies, or are classified explicitly
_GMX_LJ = ("LJ (SR)", "LJ-14", "Disper. corr.", "LJ recip.")
_GMX_COUL = ("Coulomb (SR)", "Coul. recip.", "Coulomb-14", "Coul. corr.", "RF excl.")


@dataclass
class Settings:
    """Matched settings of the three engines (lengths nm)."""

    cutoff_nm: float = 1.0                 # LJ and real-space Coulomb, all engines
    ewald_rtol: float = 1e-6               # β from erfc(β r_c) = ewald_rtol, all engines
    gmx_fourier_spacing_nm: float = 0.06   # GROMACS PME grid
    gmx_pme_order: int = 8
    lammps_kspace: str = "ewald"           # ewald | pppm
    lammps_kspace_accuracy: float = 1e-10  # relative force accuracy of the LAMMPS k-space solver
    openmm_grid_spacing_nm: float = 0.02   # OpenMM PME grid (order 5, fixed in OpenMM)
    gmx_ntomp: int = 1
    #: each host's own default production settings instead of the matched ones above: GROMACS the package
    #: mdp templates (only the output and the 0-step evaluation set here), LAMMPS ``run_md``'s defaults
    #: (:func:`lammps_production_settings`); no OpenMM column (it has no potential-shifted LJ)
    production: bool = False
    #: the gmx binary of the GROMACS column (None: the MDI-enabled build; e.g. Debian's double-precision
    #: ``gmx_d`` for a plain-MM column without single-precision rounding)
    gmx_binary: Optional[str] = None

    @property
    def beta_per_nm(self) -> float:
        from .lammps.convert import ewald_beta

        return ewald_beta(self.cutoff_nm * NM2A, self.ewald_rtol) * NM2A

    def describe(self) -> list[str]:
        rc = self.cutoff_nm
        if self.production:
            lmp = lammps_production_settings()
            return ["each host's default production settings (docs/hosts.md): GROMACS the package mdp "
                    "templates (0-step evaluation), LAMMPS run_md's defaults "
                    + ", ".join(f"{k}={v!r}" for k, v in lmp.items())]
        return [
            f"matched settings: r_c = {rc:g} nm (LJ and real-space Coulomb); Ewald β = {self.beta_per_nm:.6f} /nm "
            f"(erfc(β r_c) = {self.ewald_rtol:g}) in every engine; LJ plain cut-off, no shift, no dispersion "
            "correction; no Coulomb shift",
            f"  GROMACS: PME order {self.gmx_pme_order}, fourier-spacing {self.gmx_fourier_spacing_nm:g} nm, "
            f"coulomb-modifier = None, vdw-modifier = None, DispCorr = no, mixed precision, 0-step md",
            f"  LAMMPS:  lj/cut/coul/long {rc * NM2A:g} Å, pair_modify shift no tail no table 0, "
            f"kspace_style {self.lammps_kspace} {self.lammps_kspace_accuracy:g}, gewald fixed; double precision, run 0",
            f"  OpenMM:  NonbondedForce PME, alpha = β, grid spacing {self.openmm_grid_spacing_nm:g} nm (order 5), "
            "no switching, useDispersionCorrection = False; Reference platform (double)",
        ]


@dataclass
class EngineResult:
    """One engine's numbers: ``terms`` (kJ/mol, keys of :data:`TERMS`), ``raw`` (the engine's own terms,
    kJ/mol), ``forces`` (N, 3) kJ/mol/nm, total (MM + ML)."""

    engine: str
    terms: dict
    raw: dict
    forces: np.ndarray = field(repr=False)
    seconds: float = 0.0
    notes: list = field(default_factory=list)


@dataclass
class Comparison:
    top: str
    gro: str
    ml_description: str
    ml_indices: list
    natoms: int
    model: str
    settings: Settings
    results: dict                      # engine -> EngineResult
    e_ml_potential_kj: float           # E_ML from the potential (double precision), kJ/mol
    e_ml_gromacs_edr_kj: Optional[float]
    positions_source: str
    skipped: dict = field(default_factory=dict)   # engine -> why
    ml_max_distance_nm: float = 0.0               # largest ML-ML distance (whole molecule)

    # ----------------------------------------------------------------- numbers
    def engines(self) -> list[str]:
        return [e for e in ENGINES if e in self.results]

    def spread(self, term: str) -> tuple[float, float]:
        """(max − min over engines, that / max(|value|)) of ``term`` (kJ/mol)."""
        v = [self.results[e].terms[term] for e in self.engines()]
        d = max(v) - min(v)
        return d, d / max(max(abs(x) for x in v), 1e-300)

    def force_diffs(self) -> dict:
        """For each pair of engines: max and RMS of |ΔF_i| (kJ/mol/nm) over all atoms and over the ML atoms,
        and max |ΔF_i| / |F_i| (atoms with |F_i| > 1 kJ/mol/nm)."""
        out = {}
        eng = self.engines()
        ml = np.asarray(self.ml_indices, dtype=int)
        for a in range(len(eng)):
            for b in range(a + 1, len(eng)):
                fa, fb = self.results[eng[a]].forces, self.results[eng[b]].forces
                d = np.linalg.norm(fa - fb, axis=1)
                mag = np.linalg.norm(fb, axis=1)
                big = mag > 1.0
                out[f"{eng[a]}-{eng[b]}"] = {
                    "max_all": float(d.max()), "rms_all": float(np.sqrt(np.mean(d ** 2))),
                    "max_ml": float(d[ml].max()) if len(ml) else 0.0,
                    "rms_ml": float(np.sqrt(np.mean(d[ml] ** 2))) if len(ml) else 0.0,
                    "argmax_all": int(d.argmax()), "F_at_argmax": float(mag[d.argmax()]),
                    "max_rel": float((d[big] / mag[big]).max()) if big.any() else 0.0,
                }
        return out

    # ----------------------------------------------------------------- output
    def table(self) -> str:
        eng = self.engines()
        L = [f"cross-engine comparison: {self.top} + {self.gro}", f"ML region: {self.ml_description} "
             f"({len(self.ml_indices)} atoms of {self.natoms}), model {self.model}; positions: {self.positions_source}"]
        L += self.settings.describe()
        for why in self.skipped.items():
            L.append(f"  skipped {LABELS[why[0]]}: {why[1]}")
        for unit, f in (("kJ/mol", 1.0), ("kcal/mol", KJ2KCAL)):
            L.append("")
            head = f"{'term (' + unit + ')':<18}" + "".join(f"{LABELS[e]:>18}" for e in eng)
            if len(eng) > 1:
                head += f"{'max Δ':>12}{'max Δ rel':>11}"
            L.append(head)
            L.append("-" * len(head))
            for t in TERMS:
                row = f"{t:<18}" + "".join(f"{self.results[e].terms[t] * f:18.4f}" for e in eng)
                if len(eng) > 1:
                    d, r = self.spread(t)
                    row += f"{d * f:12.4f}{r:11.1e}"
                L.append(row)
        L.append("")
        L.append(f"E_ML: potential (double) {self.e_ml_potential_kj:.4f} kJ/mol"
                 + (f"; GROMACS .edr (engine via MDI, float) {self.e_ml_gromacs_edr_kj:.4f} kJ/mol; "
                    f"Δ = {self.e_ml_gromacs_edr_kj - self.e_ml_potential_kj:.4f} kJ/mol"
                    if self.e_ml_gromacs_edr_kj is not None else ""))
        L.append("GROMACS: Coulomb = Coulomb (SR) + Coul. recip. (+ Coulomb-14); LAMMPS: ecoul + elong; "
                 "engines split real/reciprocal differently, so only sums are compared")
        far = {LABELS[e]: self.results[e].raw["ml_far_exclusions"] for e in ("gromacs", "lammps")
               if e in self.results and "ml_far_exclusions" in self.results[e].raw}
        L.append(f"ML-ML pairs: largest distance {self.ml_max_distance_nm:.3f} nm (cut-off {self.settings.cutoff_nm:g} nm); "
                 "reciprocal-space Coulomb of the ML-ML pairs beyond the cut-off (the engines' exclusions stop at "
                 "the cut-off), removed by our hosts: "
                 + (", ".join(f"{k} {v:.4f} kJ/mol" for k, v in far.items()) or "-")
                 + "; OpenMM's exceptions remove every ML-ML pair at any distance")
        fd = self.force_diffs()
        if fd:
            L.append("")
            head = (f"{'forces |ΔF|':<18}{'max all':>12}{'RMS all':>12}{'max ML':>12}{'RMS ML':>12}"
                    f"{'max |ΔF|/|F|':>14}   (kJ/mol/nm; kcal/mol/Å = × {F_KJ_NM_TO_KCAL_A:.5f})")
            L.append(head)
            L.append("-" * 80)
            for pair, v in fd.items():
                a, b = pair.split("-")
                L.append(f"{LABELS[a] + ' − ' + LABELS[b]:<18}{v['max_all']:12.4g}{v['rms_all']:12.4g}"
                         f"{v['max_ml']:12.4g}{v['rms_ml']:12.4g}{v['max_rel']:14.2e}")
            fmax = max(float(np.linalg.norm(r.forces, axis=1).max()) for r in self.results.values())
            L.append(f"(largest |F_i| in this configuration: {fmax:.4g} kJ/mol/nm)")
        L.append("")
        L.append("time: " + ", ".join(f"{LABELS[e]} {self.results[e].seconds:.1f} s" for e in eng))
        return "\n".join(L)

    def to_json(self) -> dict:
        return {
            "top": self.top, "gro": self.gro, "ml": self.ml_description, "ml_indices": list(map(int, self.ml_indices)),
            "natoms": self.natoms, "model": self.model, "settings": asdict(self.settings),
            "beta_per_nm": self.settings.beta_per_nm, "positions": self.positions_source,
            "units": {"energy": "kJ/mol (and *_kcal)", "force": "kJ/mol/nm", "indices": "0-based"},
            "engines": {e: {"terms_kj": r.terms, "terms_kcal": {k: v * KJ2KCAL for k, v in r.terms.items()},
                            "raw_kj": r.raw, "seconds": r.seconds, "notes": r.notes}
                        for e, r in self.results.items()},
            "spread_kj": {t: dict(zip(("abs", "rel"), self.spread(t))) for t in TERMS} if self.results else {},
            "e_ml_potential_kj": self.e_ml_potential_kj, "e_ml_gromacs_edr_kj": self.e_ml_gromacs_edr_kj,
            "forces": self.force_diffs(), "skipped": self.skipped, "ml_max_distance_nm": self.ml_max_distance_nm,
        }


# ============================================================================ engines
def _gmx_mdp(settings: Settings) -> dict:
    rc = settings.cutoff_nm
    return {
        "integrator": "md", "nsteps": 0, "continuation": "yes", "gen-vel": "no", "constraints": "none",
        "nstxout": 1, "nstfout": 1, "nstvout": 0, "nstxout-compressed": 0, "nstcalcenergy": 1, "nstenergy": 1,
        "nstlog": 0, "comm-mode": "None", "tcoupl": "no", "pcoupl": "no", "pbc": "xyz", "cutoff-scheme": "Verlet",
        "coulombtype": "PME", "rcoulomb": rc, "coulomb-modifier": "None", "ewald-rtol": settings.ewald_rtol,
        "fourierspacing": settings.gmx_fourier_spacing_nm, "pme-order": settings.gmx_pme_order,
        "vdwtype": "Cut-off", "rvdw": rc, "vdw-modifier": "None", "DispCorr": "no",
        "verlet-buffer-tolerance": -1, "rlist": rc + 0.1,
    }


def _gmx_eval_mdp() -> dict:
    """The 0-step evaluation of a production mdp: output and start settings only, no physics."""
    return {"integrator": "md", "nsteps": 0, "continuation": "yes", "gen-vel": "no", "constraints": "none",
            "nstxout": 1, "nstfout": 1, "nstvout": 0, "nstxout-compressed": 0, "nstcalcenergy": 1, "nstenergy": 1,
            "nstlog": 0, "comm-mode": "None"}


def lammps_production_settings() -> dict:
    """The nonbonded keywords of the LAMMPS host's ``run_md`` at their defaults (what ``mdi-mlmm md``
    uses), as :func:`.lammps.convert.convert` keywords."""
    import inspect

    from .lammps.convert import convert
    from .lammps.host import run_md

    md = inspect.signature(run_md).parameters
    conv = inspect.signature(convert).parameters
    out = {k: md[k].default for k in ("cutoff_A", "lj_shift", "kspace_accuracy", "coul_table", "fourier_spacing_A",
                                      "pme_order") if k in md and k in conv}
    for k in ("kspace", "ewald_rtol"):
        out[k] = md[k].default if k in md else conv[k].default
    return out


def _read_trr_frame(trr: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions nm, forces kJ/mol/nm, box nm (3,3)) of the first frame, as float64 of the stored float32."""
    from MDAnalysis.lib.formats.libmdaxdr import TRRFile

    with TRRFile(str(trr)) as f:
        for fr in f:
            if fr.hasx and fr.hasf:
                return (np.array(fr.x, dtype=np.float64), np.array(fr.f, dtype=np.float64),
                        np.array(fr.box, dtype=np.float64))
    raise HostError(f"{trr}: no frame with positions and forces")


def run_gromacs(top, gro, selection, ndx, ml_group, model: str, settings: Settings, workdir: Path,
                dtype: str = REFERENCE_DTYPE):
    """GROMACS column: (EngineResult, positions nm, box nm). ``model`` is served by an engine over MDI in
    precision ``dtype``."""
    from .gromacs import host

    t0 = time.monotonic()
    overrides = _gmx_eval_mdp() if settings.production else _gmx_mdp(settings)
    res = host.run_md(top, gro, selection, model=model, steps=0, dt_fs=0.5,
                      ensemble="nvt" if settings.production else "nve", out_dir=workdir,
                      ndx=ndx, ml_group=ml_group, mdp_overrides=overrides, ntomp=settings.gmx_ntomp,
                      gmx=Path(settings.gmx_binary) if settings.gmx_binary else None,
                      report_every=0, energy_every=1, traj_every=0, progress=False, name="compare",
                      minimize=False, engine_args=["--dtype", dtype])
    e = res.energies
    names = list(e)
    if "Potential" not in names:
        raise HostError(f"{res.edr}: no Potential term")
    inter = [n for n in names[names.index("Time") + 1 if "Time" in names else 0:names.index("Potential")]]
    raw = {n: float(e[n][0]) for n in inter + ["Potential"]}
    e_ml = raw.get("E_ML", 0.0 if not is_ml(model) else None)
    if e_ml is None:
        raise HostError(f"{res.edr}: no E_ML term (is the MDI module active?)")
    lj = sum(raw[n] for n in inter if n in _GMX_LJ)
    coul = sum(raw[n] for n in inter if n in _GMX_COUL)
    bonded = sum(raw[n] for n in inter if n not in _GMX_LJ + _GMX_COUL + ("E_ML",))
    terms = {"bonded": bonded, "LJ": lj, "Coulomb": coul, "E_MM": raw["Potential"] - e_ml, "E_ML": e_ml,
             "E_total": raw["Potential"]}
    x, f, box = _read_trr_frame(res.out_dir / "compare.trr")
    raw["ml_far_exclusions"] = gromacs_far_exclusion_energy(res.out_dir / "compare.log")
    notes = [f"E_MM − (bonded + LJ + Coulomb) = {terms['E_MM'] - bonded - lj - coul:.3g} kJ/mol (float rounding)"]
    return EngineResult("gromacs", terms, raw, f, time.monotonic() - t0, notes), x, box


def gromacs_far_exclusion_energy(md_log: Path) -> float:
    """kJ/mol the MDI module removed at the last step for ML–ML pairs beyond rcoulomb (its md.log
    line; double precision, printed to 4 decimals); 0.0 when it reports none."""
    import re

    text = Path(md_log).read_text(errors="replace") if Path(md_log).is_file() else ""
    m = re.findall(r"removed by the module \(([-+0-9.eE]+) kJ/mol at the last step\)", text)
    return float(m[-1]) if m else 0.0


def run_lammps(structure, top, gro, ml: Sequence[int], positions_nm: np.ndarray, box_nm: np.ndarray,
               settings: Settings, workdir: Path) -> EngineResult:
    """LAMMPS column, MM only (kJ/mol, kJ/mol/nm); the caller adds the ML part."""
    from .lammps import convert as lc

    t0 = time.monotonic()
    if settings.production:
        system = lc.convert(top, gro, workdir, ml_indices=list(ml), structure=structure,
                            **lammps_production_settings())
    else:
        system = lc.convert(top, gro, workdir, ml_indices=list(ml), cutoff_A=settings.cutoff_nm * NM2A,
                            lj_shift=False, kspace=settings.lammps_kspace,
                            kspace_accuracy=settings.lammps_kspace_accuracy, ewald_rtol=settings.ewald_rtol,
                            coul_table=0, structure=structure)
    from ..topology.mlregion import region_bonds
    from .lammps.host import install_exclusion_correction

    lmp = lc.new_lammps(workdir / "lammps.log")
    try:
        for c in lc.setup_commands(system):
            lmp.command(c)
        # the ML–ML reciprocal-space Coulomb beyond the cutoff: removed as in every LAMMPS run of ours
        lmp.command("variable mlstop internal 0")
        ml_sorted = sorted(int(i) for i in ml)
        excl = install_exclusion_correction(lmp, system, ml_sorted, [structure.atoms[i].charge for i in ml_sorted],
                                            region_bonds(structure, ml_sorted)) if ml_sorted else None
        # the box of the other engines (GROMACS: float32); a box differing in the 8th digit moves the periodic
        # images of close contacts enough to change forces by ~0.3 kJ/mol/nm in an unrelaxed box
        xhi, yhi, zhi, xy, xz, yz = (float(v) for v in lc.box_to_lammps(box_nm * NM2A))
        cmd = f"change_box all x final 0.0 {xhi!r} y final 0.0 {yhi!r} z final 0.0 {zhi!r}"
        if any(abs(v) > 0 for v in (xy, xz, yz)):
            cmd += f" xy final {xy!r} xz final {xz!r} yz final {yz!r}"
        lmp.command(cmd + " units box")
        lc.set_positions(lmp, positions_nm * NM2A)
        lmp.command("thermo_style custom step " + " ".join(lc.ENERGY_TERMS))
        lmp.command("run 0")
        if excl is not None and excl.error is not None:
            raise excl.error
        raw = {k: float(lmp.get_thermo(k)) * KCAL2KJ for k in lc.ENERGY_TERMS}
        raw["ml_far_exclusions"] = -excl.last_leftover * KCAL2KJ if excl is not None else 0.0
        n = lmp.extract_global("nlocal")
        ids = np.array(lmp.numpy.extract_atom("id")[:n], dtype=int)
        f = np.empty((system.natoms, 3))
        f[ids - 1] = np.array(lmp.numpy.extract_atom("f")[:n], dtype=float) * F_KCAL_A_TO_KJ_NM
    except UserInputError:
        raise
    except Exception as exc:  # the lammps module raises plain Exception
        raise HostError(f"LAMMPS failed: {' '.join(str(exc).split())}") from exc
    finally:
        lmp.close()
    terms = {"bonded": raw["ebond"] + raw["eangle"] + raw["edihed"] + raw["eimp"], "LJ": raw["evdwl"],
             "Coulomb": raw["ecoul"] + raw["elong"] + raw["ml_far_exclusions"], "E_MM": raw["pe"]}
    return EngineResult("lammps", terms, raw, f, time.monotonic() - t0)


def _openmm_topfile(top: Path, box_vectors):
    """GromacsTopFile with GROMACS's default preprocessor state: OpenMM predefines FLEXIBLE (flexible water
    with bonds); GROMACS, ParmEd and hence LAMMPS do not (SETTLE, no water bond energy). Undefine it."""
    from openmm.app.gromacstopfile import GromacsTopFile

    class _Top(GromacsTopFile):
        _started = False

        def _processFile(self, file):  # noqa: N802 (OpenMM's name)
            if not self._started:
                self._started = True
                self._defines.pop("FLEXIBLE", None)
            super()._processFile(file)

    try:
        return _Top(str(top), periodicBoxVectors=box_vectors)
    except Exception as exc:
        raise UserInputError(f"OpenMM cannot read {top}: {exc}") from exc


def run_openmm(top, ml: Sequence[int], positions_nm: np.ndarray, box_nm: np.ndarray,
               settings: Settings, ml_charge_scale: float = 1.0) -> EngineResult:
    """OpenMM column, MM only (kJ/mol, kJ/mol/nm): the ML–ML terms removed here (module docstring).
    ml_charge_scale: factor on the ML atoms' charges (κ of a λ window; 1 = full charges)."""
    import openmm
    import openmm.app as app
    import openmm.unit as u

    t0 = time.monotonic()
    box = [openmm.Vec3(*map(float, row)) for row in box_nm] * u.nanometer
    gt = _openmm_topfile(Path(top), box)
    system = gt.createSystem(nonbondedMethod=app.PME, nonbondedCutoff=settings.cutoff_nm * u.nanometer,
                             constraints=None, rigidWater=True, removeCMMotion=False)
    if system.getNumParticles() != len(positions_nm):
        raise UserInputError(f"OpenMM reads {system.getNumParticles()} atoms from {top}, the coordinates have "
                             f"{len(positions_nm)}")
    mls = set(int(i) for i in ml)
    if ml_charge_scale != 1.0:  # a λ window's κ-scaled solute charges
        for f in system.getForces():
            if type(f).__name__ == "NonbondedForce":
                for i in mls:
                    q, s, e = f.getParticleParameters(i)
                    f.setParticleParameters(i, q * ml_charge_scale, s, e)
    bonded_types = {"HarmonicBondForce": (2, "Bond"), "HarmonicAngleForce": (3, "Angle"),
                    "PeriodicTorsionForce": (4, "Torsion"), "RBTorsionForce": (4, "Torsion")}
    forces, nb, removed = [], None, {}
    for f in system.getForces():
        name = type(f).__name__
        if name == "NonbondedForce":
            nb = f
        elif name in bonded_types:
            natom, what = bonded_types[name]
            get, put = getattr(f, f"get{what}Parameters"), getattr(f, f"set{what}Parameters")
            count = getattr(f, f"getNum{what}s")()
            k = 0
            for i in range(count):
                p = list(get(i))
                if set(p[:natom]) <= mls:
                    if name == "RBTorsionForce":
                        p[natom:] = [0.0] * (len(p) - natom)
                    else:
                        p[-1] = 0.0 * p[-1]  # force constant (keeps its unit)
                    put(i, *p)
                    k += 1
            removed[name] = k
            forces.append((name, f))
        elif name == "CMMotionRemover":
            continue
        else:
            raise UserInputError(f"OpenMM comparison: {name} in the system of {top} is not supported "
                                 "(supported: comb-rule 2 LJ, harmonic bonds/angles, periodic/RB torsions)")
    if nb is None:
        raise UserInputError(f"OpenMM comparison: no NonbondedForce for {top}")
    ml_sorted = sorted(mls)
    for a in range(len(ml_sorted)):
        for b in range(a + 1, len(ml_sorted)):
            nb.addException(ml_sorted[a], ml_sorted[b], 0.0, 1.0, 0.0, True)
    beta = settings.beta_per_nm
    grid = [max(8, int(math.ceil(float(np.linalg.norm(v)) / settings.openmm_grid_spacing_nm))) for v in box_nm]

    def clone(keep_lj: bool, keep_q: bool):
        c = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(nb))
        for i in range(c.getNumParticles()):
            q, s, e = c.getParticleParameters(i)
            c.setParticleParameters(i, q if keep_q else 0.0 * q, s, e if keep_lj else 0.0 * e)
        for i in range(c.getNumExceptions()):
            a, b, q, s, e = c.getExceptionParameters(i)
            c.setExceptionParameters(i, a, b, q if keep_q else 0.0 * q, s, e if keep_lj else 0.0 * e)
        c.setNonbondedMethod(openmm.NonbondedForce.PME)
        c.setCutoffDistance(settings.cutoff_nm)
        c.setUseSwitchingFunction(False)
        c.setUseDispersionCorrection(False)
        c.setPMEParameters(beta, *grid)
        c.setExceptionsUsePeriodicBoundaryConditions(True)
        return c

    mm = openmm.System()
    for i in range(system.getNumParticles()):
        mm.addParticle(system.getParticleMass(i))
    mm.setDefaultPeriodicBoxVectors(*box)
    groups = {}
    for k, (name, f) in enumerate(forces):
        c = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(f))
        c.setForceGroup(k)
        mm.addForce(c)
        groups[name] = k
    lj, q = clone(True, False), clone(False, True)
    lj.setForceGroup(len(forces))
    q.setForceGroup(len(forces) + 1)
    q.setReciprocalSpaceForceGroup(len(forces) + 2)
    mm.addForce(lj)
    mm.addForce(q)
    groups.update({"LJ": len(forces), "Coulomb direct + exceptions": len(forces) + 1,
                   "Coulomb reciprocal": len(forces) + 2})
    ctx = openmm.Context(mm, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions_nm)
    kj = u.kilojoule_per_mole

    def energy(gs):
        return ctx.getState(getEnergy=True, groups=set(gs)).getPotentialEnergy().value_in_unit(kj)

    raw = {name: energy([g]) for name, g in groups.items()}
    st = ctx.getState(getEnergy=True, getForces=True)
    f = np.array(st.getForces(asNumpy=True).value_in_unit(kj / u.nanometer), dtype=float)
    bonded = sum(raw[n] for n in bonded_types if n in raw)
    terms = {"bonded": bonded, "LJ": raw["LJ"],
             "Coulomb": raw["Coulomb direct + exceptions"] + raw["Coulomb reciprocal"],
             "E_MM": st.getPotentialEnergy().value_in_unit(kj)}
    notes = [f"ML-ML terms zeroed: {removed}; {len(ml_sorted) * (len(ml_sorted) - 1) // 2} ML-ML exceptions; "
             f"PME grid {grid}"]
    return EngineResult("openmm", terms, raw, f, time.monotonic() - t0, notes)


def ml_term(potential, atomic_numbers, positions_nm: np.ndarray, box_nm: np.ndarray) -> tuple[float, np.ndarray]:
    """E_ML (kJ/mol) and F_ML ((n_ml, 3) kJ/mol/nm) of the ML atoms, made whole across PBC."""
    from ..topology.pbc import make_whole

    whole = make_whole(positions_nm * NM2A, box_nm * NM2A)
    r = potential.compute(list(atomic_numbers), whole)
    return float(r.energy) * KJ_PER_HARTREE, np.asarray(r.forces, dtype=float) * F_HA_A_TO_KJ_NM


def _with_ml(r: EngineResult, ml: np.ndarray, e_ml: float, f_ml: np.ndarray) -> EngineResult:
    r.terms["E_ML"] = e_ml
    r.terms["E_total"] = r.terms["E_MM"] + e_ml
    r.forces = r.forces.copy()
    r.forces[ml] += f_ml
    return r


# ============================================================================ driver
def available_engines() -> dict:
    """engine -> None if usable here, else why not."""
    out = {}
    from .gromacs import build

    out["gromacs"] = None if build.gmx_path() is not None else "no MDI-enabled GROMACS build (mdi-mlmm gromacs build)"
    try:
        from .lammps.convert import import_lammps

        import_lammps()
        out["lammps"] = None
    except Exception as exc:  # noqa: BLE001
        out["lammps"] = str(exc)
    try:
        import openmm  # noqa: F401

        out["openmm"] = None
    except Exception as exc:  # noqa: BLE001
        out["openmm"] = f"cannot import openmm: {exc}"
    return out


def parse_engines(spec: Optional[str]) -> Optional[list[str]]:
    if spec is None or spec.strip().lower() in ("", "auto", "all"):
        return None
    out = [s.strip().lower() for s in spec.split(",") if s.strip()]
    bad = [s for s in out if s not in ENGINES]
    if bad:
        raise UserInputError(f"unknown engine(s) {', '.join(bad)}; choose from {', '.join(ENGINES)}")
    return out


def compare(top, gro, selection: Optional[str] = None, *, ndx=None, ml_group: Optional[str] = None,
            model: str = "ani2x", engines: Optional[Sequence[str]] = None, settings: Optional[Settings] = None,
            workdir=None, potential=None, dtype: str = REFERENCE_DTYPE) -> Comparison:
    """Energies and forces of one configuration from GROMACS, LAMMPS and OpenMM (module docstring).

    selection: MDAnalysis selection of the ML atoms, or ``ndx`` + ``ml_group``. engines: subset of
    :data:`ENGINES`; None = every engine usable here (GROMACS skipped, with a note, without a build).
    workdir: keep the engines' files there (default: a temporary directory). potential: an already
    loaded potential for ``model`` (saves loading it again), in the precision ``dtype``. dtype: the ML
    model's precision here and in the GROMACS column's engine (:data:`REFERENCE_DTYPE`).
    """
    from ..topology.mlregion import ml_region
    from ..topology.gromacs import load_gromacs

    settings = settings or Settings()
    top, gro = Path(top).resolve(), Path(gro).resolve()
    for p in (top, gro):
        if not p.is_file():
            raise UserInputError(f"no such file: {p}")
    mm_only = not is_ml(str(model))
    if mm_only and not settings.production:
        raise UserInputError("compare needs an ML model (ani2x, mace:PATH, zero, ...), not 'mm' "
                             "(plain MM: with the production settings, --production)")
    structure = load_gromacs(top, gro)
    region = None
    if not mm_only:
        try:
            region = ml_region(top, gro, selection, ndx, ml_group, structure=structure)
        except UserInputError as exc:
            raise UserInputError(" ".join(str(exc).split())) from exc
    ml = np.asarray(region.indices if region is not None else [], dtype=int)
    avail = available_engines()
    if settings.production:
        avail["openmm"] = "not with the production settings (OpenMM has no potential-shifted LJ)"
    skipped = {}
    if engines is None:
        chosen = [e for e in ENGINES if avail[e] is None]
        skipped = {e: avail[e] for e in ENGINES if avail[e] is not None}
    else:
        chosen = [e for e in ENGINES if e in engines]
        missing = [f"{e}: {avail[e]}" for e in chosen if avail[e] is not None]
        if missing:
            raise HostError("; ".join(missing))
    if not chosen:
        raise HostError("no engine to compare: " + "; ".join(f"{e}: {w}" for e, w in skipped.items()))
    if potential is None and not mm_only:
        from ..potentials import load_potential

        potential = load_potential(model, dtype=dtype)
    if not mm_only:
        potential.check_elements(list(region.atomic_numbers))

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mdi_mlmm_compare_")
        wd = Path(tmp.name)
    else:
        wd = Path(workdir).resolve()
        wd.mkdir(parents=True, exist_ok=True)
    try:
        results = {}
        e_ml_edr = None
        if "gromacs" in chosen:
            r, pos, box = run_gromacs(top, gro, None if mm_only else selection, None if mm_only else ndx,
                                      None if mm_only else ml_group, model, settings, wd / "gromacs", dtype)
            results["gromacs"] = r
            e_ml_edr = r.terms["E_ML"]
            source = "GROMACS .trr frame (float32 of the .gro, wrapped as mdrun did), used by every engine"
        else:
            pos = np.array(structure.coordinates, dtype=np.float64) / NM2A
            pos = pos.astype(np.float32).astype(np.float64)
            box = np.array(structure.box_vectors.value_in_unit(_nm()), dtype=np.float64)
            box = box.astype(np.float32).astype(np.float64)
            source = ".gro coordinates rounded to float32"
        if len(pos) != len(structure.atoms):
            raise HostError(f"{len(pos)} positions but {len(structure.atoms)} atoms in {top}")
        from ..topology.pbc import WholeMaker, check_within_half_box
        from .ewald_exclusions import max_pair_distance

        e_ml, f_ml, t_ml, ml_width_nm = 0.0, np.zeros((0, 3)), 0.0, 0.0
        if not mm_only:
            whole = WholeMaker(len(ml), region.bonds).whole(pos[ml] * NM2A, box * NM2A)
            check_within_half_box(whole, box * NM2A)
            ml_width_nm = max_pair_distance(whole) / NM2A
            t0 = time.monotonic()
            e_ml, f_ml = ml_term(potential, region.atomic_numbers, pos[ml], box)
            t_ml = time.monotonic() - t0
        if "lammps" in chosen:
            r = run_lammps(structure, top, gro, ml, pos, box, settings, wd / "lammps")
            r.seconds += t_ml
            results["lammps"] = _with_ml(r, ml, e_ml, f_ml)
        if "openmm" in chosen:
            r = run_openmm(top, ml, pos, box, settings)
            r.seconds += t_ml
            results["openmm"] = _with_ml(r, ml, e_ml, f_ml)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return Comparison(top=str(top), gro=str(gro),
                      ml_description=region.description if region is not None else "none (plain MM)",
                      ml_indices=[int(i) for i in ml],
                      natoms=len(structure.atoms), model=model, settings=settings, results=results,
                      e_ml_potential_kj=e_ml, e_ml_gromacs_edr_kj=e_ml_edr, positions_source=source,
                      skipped=skipped, ml_max_distance_nm=ml_width_nm)


def _nm():
    from parmed import unit as u

    return u.nanometer


def write_json(cmp: Comparison, path) -> None:
    Path(path).write_text(json.dumps(cmp.to_json(), indent=1))
