"""LAMMPS as the MM host of an ML/MM simulation, the ML potential behind MDI.

LAMMPS runs in this process through its Python module. ``fix external`` (mode
``pf/callback``) calls :class:`MLCoupling` every step: it sends the ML atoms'
positions (and the cell; the engine makes the molecule whole) to the MDI engine,
gets E_ML (Hartree) and F_ML (Hartree/Å), and hands LAMMPS the forces (kcal/mol/Å),
the energy (``fix_external_set_energy_global``) and the virial of the ML forces
(``fix_external_set_virial_global``; Σ r_i ⊗ F_i over whole-molecule coordinates),
so that ``pe``, ``etotal`` and ``press`` — and hence NPT — include the ML part
(``fix_modify ... energy yes virial yes``).

The MM system is the GROMACS one converted by :mod:`.convert` with the ML–ML
classical terms removed. Units: LAMMPS ``real`` (Å, fs, kcal/mol, atm) inside;
the CSV reports pressure in bar.

Outputs in ``out_dir``: ``energies.csv`` (one row every ``energy_every`` steps),
``traj.dcd`` + ``topology.gro`` (read with ``MDAnalysis.Universe(topology.gro,
traj.dcd)``; unwrapped coordinates), ``summary.json``, ``lammps.log``, ``engine.log``
(engine started here), ``lammps/`` (the converted system) and ``final.data``.
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ... import units
from ...errors import HostError, MdiMlmmError, PeerDisconnected, UserInputError
from ...progress import MDStatus
from ...potentials.registry import is_ml
from ...protocol.outputs import MD_ENERGY_COLUMNS, format_md_summary, md_summary, read_md_energies, write_md_summary
from ...topology.pbc import WholeMaker, check_within_half_box
from ..ewald_exclusions import FarPairCorrection
from .convert import COUL_TABLE, GROMACS_FOURIER_SPACING_A, GROMACS_PME_ORDER

log = logging.getLogger("mdi_mlmm.lammps")

HA2KCAL = units.factor("energy", "hartree", "kcal/mol")
ATM_IN_BAR = units.ATM_IN_BAR
FIX_ID = "mlext"
EXCL_FIX_ID = "mlexcl"
QQR2E_REAL = units.LAMMPS_QQR2E_REAL  # LAMMPS qqr2e in units real (read from LAMMPS where it can be)
ENSEMBLES = ("nve", "nvt", "npt")
#: neighbor-list skin of ``run_md``, Å (rebuilt when an atom moved half of it: exact at any value; 1 Å
#: keeps ~25 % fewer pairs in the list than LAMMPS's 2 Å for units real, ``bench/README.md``)
NEIGHBOR_SKIN_A = 1.0

#: the LAMMPS equal-style expression of each :data:`~mdi_mlmm.protocol.outputs.MD_ENERGY_COLUMNS` column
_CSV_EXPRESSIONS = {
    "step": "step",
    "time_ps": "time/1000.0",
    "E_ML_hartree": f"f_{FIX_ID}/{HA2KCAL!r}",
    "E_ML_kcal_mol": f"f_{FIX_ID}",
    "E_MM_kcal_mol": f"pe-f_{FIX_ID}",
    "E_pot_kcal_mol": "pe",
    "E_kin_kcal_mol": "ke",
    "E_tot_kcal_mol": "etotal",
    "E_conserved_kcal_mol": "econserve",
    "T_K": "temp",
    "P_bar": f"press*{ATM_IN_BAR!r}",
    "volume_A3": "vol",
    "E_vdw_kcal_mol": "evdwl",
    "E_coul_kcal_mol": "ecoul+elong",
    "E_bonded_kcal_mol": "ebond+eangle+edihed+eimp",
}
CSV_COLUMNS = [(c, _CSV_EXPRESSIONS[c]) for c, _ in MD_ENERGY_COLUMNS]  # (header, LAMMPS expression)


def _ranges(idx: Sequence[int]) -> str:
    """1-based LAMMPS id ranges ``a:b`` for 0-based indices."""
    idx = sorted(int(i) + 1 for i in idx)
    out, start, prev = [], idx[0], idx[0]
    for i in idx[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}:{prev}" if prev > start else f"{start}")
        if i is not None:
            start = prev = i
    return " ".join(out)


def box_matrix(lmp) -> np.ndarray:
    """Current LAMMPS box as (3,3) Å row vectors a, b, c."""
    lo, hi, xy, yz, xz, _, _ = lmp.extract_box()
    lx, ly, lz = (hi[k] - lo[k] for k in range(3))
    return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])


def _stop_lammps(callback, exc: BaseException, f) -> None:
    """A ``fix external`` callback failed: keep the error (re-raised after the run), zero its forces,
    set ``mlstop`` and force LAMMPS's timeout, which ends the run at the end of the step.

    (A ``fix halt`` on ``mlstop`` every step did the same, but it makes LAMMPS compute the energy and
    virial at every step: ~30 % more pair time, bench/README.md "LAMMPS host speed".)"""
    callback.error = exc
    f[:] = 0.0
    try:
        callback.lmp.set_internal_variable("mlstop", 1.0)
        callback.lmp.force_timeout()
    except Exception:  # pragma: no cover
        pass


class MLCoupling:
    """The ``fix external`` callback: ML energy/forces/virial from an MDI engine.

    conn: anything with ``compute(pos_A, cell_A) -> (E_Ha, F_Ha_per_A)``
    (an :class:`~mdi_mlmm.hosts.driver.EngineConnection`); ml_indices: 0-based.
    After a failure the callback returns zero forces, stores the exception in
    ``error``, sets the LAMMPS internal variable ``mlstop`` and forces LAMMPS's timeout,
    which stops the run at the end of the step.
    """

    def __init__(self, lmp, conn, ml_indices: Sequence[int], natoms: int, bonds=None):
        self.lmp = lmp
        self.conn = conn
        self.ml_tags = np.asarray(ml_indices, dtype=np.int64) + 1
        self.wholer = WholeMaker(len(self.ml_tags), bonds)
        self.inv = np.zeros(natoms + 1, dtype=np.int64)
        self.error: Optional[BaseException] = None
        self.ncalls = 0
        self.last_energy_Ha = float("nan")
        self.last_virial = [0.0] * 6  # xx yy zz xy xz yz, kcal/mol
        self.seconds = 0.0

    def __call__(self, caller, ntimestep, nlocal, tag, x, f):
        f[:] = 0.0
        if self.error is not None:
            return
        try:
            t0 = time.perf_counter()
            self.inv[np.asarray(tag, dtype=np.int64)] = np.arange(nlocal)
            rows = self.inv[self.ml_tags]
            cell = box_matrix(self.lmp)
            whole = self.wholer.whole(np.array(x[rows], dtype=np.float64), cell)
            e_ha, f_ha = self.conn.compute(whole, cell)
            f_kcal = np.asarray(f_ha, dtype=np.float64) * HA2KCAL
            f[rows] = f_kcal
            w = whole.T @ f_kcal  # W_ab = Σ r_a F_b (kcal/mol)
            self.lmp.fix_external_set_energy_global(FIX_ID, e_ha * HA2KCAL)
            self.last_virial = [w[0, 0], w[1, 1], w[2, 2], 0.5 * (w[0, 1] + w[1, 0]), 0.5 * (w[0, 2] + w[2, 0]),
                                0.5 * (w[1, 2] + w[2, 1])]
            self.lmp.fix_external_set_virial_global(FIX_ID, self.last_virial)
            self.last_energy_Ha = e_ha
            self.ncalls += 1
            self.seconds += time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 - ctypes would swallow it; stop LAMMPS instead
            _stop_lammps(self, exc, f)


class ExclusionCorrection:
    """``fix external`` callback removing the ML–ML reciprocal-space Coulomb that ``coul/long``
    leaves in beyond the cutoff (:mod:`~mdi_mlmm.hosts.ewald_exclusions`): energy −scale·L,
    forces and virial, every step, over the molecule made whole along its bonds. Also refuses
    (one line, run stopped) a molecule that comes to span half the box.

    charges: (n,) e of the ML atoms at full strength; scale: the factor of q_i q_j in the
    sampled Hamiltonian (κ² in a λ window whose solute charges are κ q). ``last_leftover``:
    L (kcal/mol, full charges) at the last call.
    """

    def __init__(self, lmp, ml_indices: Sequence[int], natoms: int, charges, beta: float, cutoff_A: float,
                 bonds=None, scale: float = 1.0):
        self.lmp = lmp
        self.ml_tags = np.asarray(ml_indices, dtype=np.int64) + 1
        self.inv = np.zeros(natoms + 1, dtype=np.int64)
        self.wholer = WholeMaker(len(self.ml_tags), bonds)
        try:
            qqr2e = float(lmp.extract_global("qqr2e"))
        except Exception:  # pragma: no cover
            qqr2e = QQR2E_REAL
        self.corr = FarPairCorrection(charges, beta, cutoff_A, qqr2e)
        self.scale = float(scale)
        self.error: Optional[BaseException] = None
        self.last_leftover = 0.0
        self.max_far_pairs = 0
        self.half_box_warning: Optional[str] = None

    def leftover_at(self, positions: np.ndarray, cell) -> float:
        """L (kcal/mol) of the ML atoms at ``positions`` (n, 3) Å (any images)."""
        whole = self.wholer.whole(positions, cell)
        self._check_span(whole, cell)
        return self.corr.leftover(whole)[0]

    def _check_span(self, whole, cell):
        """The start was checked (one-line error); a molecule that comes to span half the box during
        the run (a test model like ``zero`` does not hold it together) gets one loud warning."""
        if self.half_box_warning is not None:
            return
        try:
            check_within_half_box(whole, cell)
        except UserInputError as exc:
            step = int(self.lmp.get_thermo("step")) if hasattr(self.lmp, "get_thermo") else -1
            self.half_box_warning = f"step {step}: {exc}; ML-ML exclusion corrections are no longer exact"
            log.warning("%s", self.half_box_warning)

    def __call__(self, caller, ntimestep, nlocal, tag, x, f):
        f[:] = 0.0
        if self.error is not None:
            return
        try:
            self.inv[np.asarray(tag, dtype=np.int64)] = np.arange(nlocal)
            rows = self.inv[self.ml_tags]
            cell = box_matrix(self.lmp)
            whole = self.wholer.whole(np.array(x[rows], dtype=np.float64), cell)
            self._check_span(whole, cell)
            e, fl, w = self.corr.leftover(whole)
            self.max_far_pairs = max(self.max_far_pairs, self.corr.n_far)
            self.last_leftover = e
            f[rows] = -self.scale * fl
            self.lmp.fix_external_set_energy_global(EXCL_FIX_ID, -self.scale * e)
            self.lmp.fix_external_set_virial_global(EXCL_FIX_ID, FarPairCorrection.virial6(-self.scale * w))
        except BaseException as exc:  # noqa: BLE001 - as MLCoupling: stop LAMMPS, re-raise after the run
            _stop_lammps(self, exc, f)


def install_exclusion_correction(lmp, system, ml_indices: Sequence[int], charges, bonds=None,
                                 scale: float = 1.0) -> Optional[ExclusionCorrection]:
    """Add ``fix external`` :data:`EXCL_FIX_ID` (energy and virial tallied, so ``pe`` and the
    pressure include it) with an :class:`ExclusionCorrection`; after :func:`install_coupling`
    (which defines ``mlstop``). ``system``: the converted :class:`~.convert.LammpsSystem` (its
    β and cutoff). None when there is no ML region."""
    if not len(ml_indices):
        return None
    if not system.g_ewald:
        raise HostError("an ML region needs a fixed Ewald β (convert with ewald_rtol) for its exclusion correction")
    corr = ExclusionCorrection(lmp, ml_indices, system.natoms, charges, system.g_ewald, system.cutoff_A,
                               bonds=bonds, scale=scale)
    lmp.command(f"fix {EXCL_FIX_ID} all external pf/callback 1 1")
    lmp.command(f"fix_modify {EXCL_FIX_ID} energy yes virial yes")
    lmp.set_fix_external_callback(EXCL_FIX_ID, corr)
    lmp.fix_external_set_energy_global(EXCL_FIX_ID, 0.0)
    lmp.fix_external_set_virial_global(EXCL_FIX_ID, [0.0] * 6)
    return corr


def install_coupling(lmp, conn, ml_indices: Sequence[int], natoms: int, bonds=None) -> Optional[MLCoupling]:
    """Add ``fix external`` (id :data:`FIX_ID`, energy and virial tallied) driven by ``conn``, and the
    internal variable ``mlstop`` (set, with a forced timeout that ends the run, when a callback fails).
    conn None: a zero-force fix (plain MM).
    bonds: the ML molecule's bonds (positions in ``ml_indices``) for whole-making."""
    lmp.command("variable mlstop internal 0")
    if conn is None:
        install_zero_fix(lmp)
        return None
    lmp.command(f"fix {FIX_ID} all external pf/callback 1 1")
    lmp.command(f"fix_modify {FIX_ID} energy yes virial yes")
    coupling = MLCoupling(lmp, conn, ml_indices, natoms, bonds)
    lmp.set_fix_external_callback(FIX_ID, coupling)
    return coupling


def install_zero_fix(lmp) -> None:
    """Plain MM: fix :data:`FIX_ID` as ``external pf/array`` with zero forces, energy and virial, set
    once. The fix (``f_mlext`` = 0) exists as with a model, but LAMMPS calls no Python during the run
    (``bench/README.md``, "LAMMPS host speed")."""
    lmp.command(f"fix {FIX_ID} all external pf/array 1")
    lmp.command(f"fix_modify {FIX_ID} energy yes virial yes")
    lmp.fix_external_set_energy_global(FIX_ID, 0.0)
    lmp.fix_external_set_virial_global(FIX_ID, [0.0] * 6)
    lmp.numpy.fix_external_get_force(FIX_ID)[:] = 0.0


#: ``fix shake``/``rattle`` tolerance, iterations, statistics interval (0: none)
SHAKE_SETTINGS = "1e-10 500 0"


def shake_args(system, *, water: bool = True, hbonds: bool = False) -> str:
    """The arguments of the one ``fix shake``/``rattle`` (after ``all shake``) of a converted system: its rigid
    waters' bond and angle types (``water``) and its X–H bond types (``hbonds``: the
    :attr:`~.convert.LammpsSystem.hbond_types` of a system converted with ``constrain_hbonds``, each
    constrained at its r0 = b0); "" when nothing is constrained. The fix must come after every fix that adds
    forces (the ``fix external`` of the ML coupling, Langevin): fixes act at ``post_force`` in the order they
    were defined, and SHAKE has to see every force. LAMMPS removes the constrained degrees of freedom from
    the temperature (``compute temp`` asks the fix)."""
    bond_types = (list(system.water_bond_types) if water else []) + (list(system.hbond_types) if hbonds else [])
    if hbonds and not system.hbond_types:
        raise HostError("X-H constraints asked for, but the system was converted without X-H bond types "
                        "(convert with constrain_hbonds=True)")
    if not bond_types:
        return ""
    out = f" {SHAKE_SETTINGS} b " + " ".join(map(str, bond_types))
    if water and system.water_angle_types:
        out += " a " + " ".join(map(str, system.water_angle_types))
    return out


def close_quietly(*objs):
    """Close LAMMPS instances, evaluators and engine connections in ``finally`` blocks; None is skipped,
    a LAMMPS close that fails during an error path must not hide the original error."""
    for obj in objs:
        if obj is None:
            continue
        try:
            obj.close()
        except Exception:  # pragma: no cover
            pass


def run_md(top, gro, ml_selection: Optional[str], model: str, steps: int, dt_fs: float, ensemble: str, out_dir,
           *, ndx=None, ml_group: Optional[str] = None, temperature: float = 298.15, pressure_bar: float = 1.0,
           engine_port: Optional[int] = None, seed: int = 2024, report_every: int = 100, energy_every: int = 1,
           traj_every: int = 100, progress: bool = True, cutoff_A: float = 10.0, kspace_accuracy: float = 1e-6,
           lj_shift: bool = True, coul_table: int = COUL_TABLE,
           fourier_spacing_A: Optional[float] = GROMACS_FOURIER_SPACING_A, pme_order: int = GROMACS_PME_ORDER, neighbor_skin_A: float = NEIGHBOR_SKIN_A, omp_threads: int = 0,
           tdamp_fs: float = 100.0, pdamp_fs: float = 1000.0, velocities: bool = True,
           engine_options: Sequence[str] = (), engine_log: Optional[str] = None,
           accept_timeout: float = 180.0, stream=None, minimize: bool = False, constraints: str = "none") -> dict:
    """ML/MM molecular dynamics with LAMMPS as the MM host; returns a summary dict.

    top, gro: GROMACS topology and coordinates. ml_selection: MDAnalysis selection of
    the ML atoms (e.g. ``"resname MOL"``) or None with ``ndx`` + ``ml_group``.
    model: engine model (``ani2x``, ``mace:PATH``, ``zero``, ...) or ``mm`` for plain
    MM (no engine, no ML region). steps, dt_fs: number and length (fs) of steps.
    ensemble: ``nve`` | ``nvt`` (Nosé–Hoover, ``tdamp_fs``) | ``npt`` (+ isotropic
    Nosé–Hoover barostat, ``pdamp_fs``). out_dir: output directory (module docstring).
    temperature (K) sets the initial velocities (``velocities=True``, Gaussian, ``seed``)
    and the thermostat; pressure_bar the barostat. engine_port: accept a user-started
    engine on this TCP port instead of starting ``mdi-mlmm engine`` here (extra engine
    options: ``engine_options``). report_every: progress/thermo interval; energy_every:
    CSV row interval; traj_every: DCD frame interval (0: none). cutoff_A, lj_shift,
    kspace_accuracy, coul_table: nonbonded settings (:func:`.convert.convert`; the
    default ``coul_table=12``, :data:`.convert.COUL_TABLE`, is LAMMPS's tabulated erfc, ~1e-6 relative,
    20 % faster; the λ windows use the same).
    fourier_spacing_A, pme_order: the PPPM mesh, chosen as GROMACS chooses its PME grid (default: the
    GROMACS host's, :data:`.convert.GROMACS_FOURIER_SPACING_A` and :data:`.convert.GROMACS_PME_ORDER`,
    a force error measured no larger than GROMACS's); ``pme_order=0`` (or no spacing) goes back to a
    mesh that LAMMPS picks for ``kspace_accuracy`` (order 5; 1e-6 was the default before, ~2× slower).
    neighbor_skin_A: neighbor-list skin (lists are rebuilt whenever an atom has moved half of it, so
    any value is exact; 2.0 was the default before). omp_threads: > 0 runs LAMMPS's OPENMP styles on
    that many threads (``package omp``, ``suffix omp``); 0: the plain styles, one thread.
    minimize: :func:`minimize_mm` first (the ML atoms held fixed); ``mdi-mlmm md`` does this unless
    ``--no-minimize``, the default here is off so that a given configuration is run as it is.
    constraints: ``none`` (default: every bond flexible, waters rigid) or ``h-bonds``: every X–H bond, the ML
    region's included, constrained at the force field's b0 by the same ``fix shake``/``rattle`` as the waters
    (:func:`shake_args`), as the GROMACS host's ``constraints = h-bonds`` does.
    """
    from ...topology.gromacs import load_gromacs
    from .convert import convert, lammps_error, new_lammps, setup_commands

    from ...protocol.timestep import CONSTRAINTS

    if constraints not in CONSTRAINTS:
        raise UserInputError(f"constraints must be one of {', '.join(CONSTRAINTS)}, got {constraints!r}")
    hbonds = constraints == "h-bonds"
    ensemble = ensemble.lower()
    if ensemble not in ENSEMBLES:
        raise UserInputError(f"ensemble must be one of {', '.join(ENSEMBLES)}, not {ensemble!r}")
    if steps < 0 or dt_fs <= 0:
        raise UserInputError("steps must be >= 0 and dt > 0")
    report_every = max(1, int(report_every))
    energy_every = max(1, int(energy_every))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pure_mm = not is_ml(model or "")
    t_start = time.perf_counter()

    structure = load_gromacs(top, gro)
    ml_idx: list[int] = []
    z: list[int] = []
    region = None
    if not pure_mm:
        from ...topology.mlregion import check_region_geometry, ml_region

        region = ml_region(top, gro, ml_selection, ndx=ndx, group=ml_group, structure=structure)
        check_region_geometry(region.indices, region.bonds, structure)
        ml_idx = [int(i) for i in region.indices]
        z = [int(v) for v in region.atomic_numbers]
    system = convert(top, gro, out / "lammps", ml_indices=ml_idx, cutoff_A=cutoff_A, lj_shift=lj_shift,
                     kspace="pppm", kspace_accuracy=kspace_accuracy, coul_table=coul_table,
                     structure=structure, fourier_spacing_A=fourier_spacing_A, pme_order=pme_order,
                     constrain_hbonds=hbonds)
    shutil.copyfile(gro, out / "topology.gro")

    conn = None
    coupling = None
    lmp = None
    summary: dict = {}
    em_record = None
    try:
        if not pure_mm:
            from ..driver import EngineConnection, start_local_engine

            if engine_port:
                log.info("waiting for an MDI engine on port %d", engine_port)
                conn = EngineConnection.listen(int(engine_port), accept_timeout=accept_timeout)
            else:
                elog = Path(engine_log) if engine_log else out / "engine.log"
                conn = start_local_engine(model, log_path=elog, extra=list(engine_options),
                                          accept_timeout=accept_timeout)
            conn.setup(z)

        lmp = new_lammps(out / "lammps.log")
        if omp_threads and int(omp_threads) > 0:
            lmp.command(f"package omp {int(omp_threads)}")
            lmp.command("suffix omp")
        for c in setup_commands(system):
            lmp.command(c)
        lmp.command(f"neighbor {float(neighbor_skin_A)!r} bin")
        lmp.command("neigh_modify delay 0 every 1 check yes")
        lmp.command(f"timestep {dt_fs!r}")
        if ml_idx:
            lmp.command(f"group ml id {_ranges(ml_idx)}")
        tdamp, pdamp = tdamp_fs, pdamp_fs
        p_atm = pressure_bar / ATM_IN_BAR
        integ = {"nve": "nve",
                 "nvt": f"nvt temp {temperature!r} {temperature!r} {tdamp!r}",
                 "npt": f"npt temp {temperature!r} {temperature!r} {tdamp!r} iso {p_atm!r} {p_atm!r} {pdamp!r}"}
        shake = shake_args(system, hbonds=hbonds)
        if minimize:  # before any ML fix: the ML atoms are held fixed, so nothing ML changes
            em_record = minimize_mm(lmp, ml_idx, shake)
        # fix external always exists (zero energy for plain MM) so the CSV has the same columns; it comes
        # before the constraint fix, so SHAKE/RATTLE see every force
        coupling = install_coupling(lmp, None if pure_mm else conn, ml_idx, system.natoms,
                                    bonds=region.bonds if region is not None else None)
        excl = install_exclusion_correction(lmp, system, ml_idx, region.charges, region.bonds) \
            if region is not None else None
        if ensemble == "npt":
            # LAMMPS wants SHAKE before a box-changing fix (RATTLE's velocity step would come after it)
            if shake:
                lmp.command("fix rigidw all shake" + shake)
            lmp.command(f"fix integ all {integ[ensemble]}")
        else:
            # RATTLE after the integrator: velocities satisfy the constraints at every full step
            lmp.command(f"fix integ all {integ[ensemble]}")
            if shake:
                lmp.command("fix rigidw all rattle" + shake)
        if velocities:  # after fix shake/rattle, so the constrained degrees of freedom are known
            lmp.command(f"velocity all create {temperature!r} {int(seed)} dist gaussian mom yes rot no")
            if shake:
                # one step lets RATTLE constrain positions (gro precision) and velocities; then start
                # again at step 0 with the intended temperature, so E_tot does not jump at step 1
                lmp.command("run 1 post no")
                lmp.command("reset_timestep 0")
                lmp.command(f"velocity all scale {temperature!r}")
        for k, (_, expr) in enumerate(CSV_COLUMNS):
            lmp.command(f"variable c{k} equal {expr}")
        header = ",".join(h for h, _ in CSV_COLUMNS)
        row = ",".join(f"${{c{k}}}" for k in range(len(CSV_COLUMNS)))
        lmp.command(f'fix eprint all print {energy_every} "{row}" file {out / "energies.csv"} '
                    f'screen no title "{header}"')
        if traj_every:
            lmp.command(f"dump traj all dcd {int(traj_every)} {out / 'traj.dcd'}")
            lmp.command("dump_modify traj unwrap yes")
        lmp.command("thermo_style custom step time temp press pe ke etotal vol f_" + FIX_ID)
        lmp.command("thermo_modify norm no flush yes")
        lmp.command(f"thermo {report_every}")

        prog = MDStatus(steps, dt_fs, progress, stream)
        t_setup = time.perf_counter() - t_start
        t0 = time.perf_counter()
        done = 0
        first = True
        while True:
            chunk = min(report_every, steps - done) if steps > 0 else 0
            # the last chunk ends lammps.log with LAMMPS's timing breakdown (Pair, Kspace, Neigh, Modify, ...)
            last = done + chunk >= steps
            lmp.command(f"run {chunk} pre {'yes' if first else 'no'} post {'yes' if last else 'no'}")
            first = False
            failed = next((c for c in (coupling, excl) if c is not None and c.error is not None), None)
            if failed is not None:
                exc = failed.error
                if isinstance(exc, MdiMlmmError):
                    raise exc
                if isinstance(exc, KeyboardInterrupt):
                    raise exc
                raise HostError(f"ML coupling failed at step {lmp.get_thermo('step'):.0f}: {exc!r}") from exc
            done += chunk
            th = lmp.last_thermo()
            prog.update(done, float(th["TotEng"]), float(th["Temp"]), final=done >= steps)
            if done >= steps:
                break
        wall = time.perf_counter() - t0
        lmp.command(f"write_data {out / 'final.data'} nocoeff")
        extra = {}
        if excl is not None and excl.half_box_warning:
            extra["warnings"] = [excl.half_box_warning]
        if excl is not None:
            extra["ml_ml_far_pairs_max"] = excl.max_far_pairs
            extra["ml_ml_far_coulomb_removed_kcal_mol"] = -excl.last_leftover
        engine = ("none (plain MM)" if pure_mm else f"user-started, accepted on port {engine_port}" if engine_port
                  else f"started here: mdi-mlmm engine --model {model}")
        files = {k: out / v for k, v in (("energies", "energies.csv"), ("trajectory", "traj.dcd"),
                                         ("topology", "topology.gro"), ("log", "lammps.log"),
                                         ("final_data", "final.data"), ("summary", "summary.json"))}
        summary = md_summary(out / "energies.csv", host="lammps", model=model, ensemble=ensemble, steps=steps,
                             dt_fs=dt_fs, wall_s=wall, setup_s=t_setup, n_atoms=system.natoms, n_ml_atoms=len(ml_idx),
                             temperature_K=temperature, pressure_bar=pressure_bar,
                             ml_calls=coupling.ncalls if coupling else 0,
                             ml_seconds=coupling.seconds if coupling else 0.0, engine=engine, files=files,
                             minimization=em_record, **extra)
    except Exception as exc:  # a LAMMPS command failed (lost atoms, blow-up, ...): one line, not a traceback
        herr = lammps_error(exc, out / "lammps.log", where=_step_text(lmp))
        if herr is None:
            raise
        raise herr from exc
    finally:
        close_quietly(lmp, conn)
    write_md_summary(out / "summary.json", summary)
    return summary


def _step_text(lmp) -> str:
    """"at step N" of a LAMMPS instance after a failed command, or "" if it cannot tell."""
    try:
        return f"at step {lmp.get_thermo('step'):.0f}"
    except Exception:
        return ""


def minimize_mm(lmp, ml_indices: Sequence[int], constraints: str = "", *, etol: float = 1e-8,
                ftol_kcal_mol_A: float = 1e-3, maxiter: int = 2000, maxeval: int = 20000,
                restraint_k: float = 500.0) -> dict:
    """LAMMPS ``minimize`` (conjugate gradient) of the MM atoms with the ML atoms held fixed
    (``fix setforce 0 0 0`` on them), before any ML fix exists; the timestep counter is reset to 0.

    In mechanical embedding the force on an MM atom is classical whatever the ML model, so this
    is the ML/MM energy minimized over the MM coordinates at the ML region's given geometry, with no
    engine call; the ML region itself is not relaxed. ``constraints``: the ``fix shake`` arguments of
    the rigid waters (and X–H bonds, :func:`shake_args`), applied during minimization as LAMMPS does there:
    as harmonic restraints, of ``restraint_k`` kcal/mol/Å² (LAMMPS's much stiffer default stalls the line
    search; without them TIP3P's LJ-free hydrogens collapse), and exactly again from the first MD step on.
    The restraints come before the ``setforce`` of the ML atoms, which so stay where they are.
    ``ml_indices``: 0-based (empty:
    everything moves). Returns the record for summary.json: energies kcal/mol, forces kcal/mol/Å
    (``fmax``: largest force component, ``fnorm``: 2-norm of the whole force vector).
    """
    if constraints:
        lmp.command("fix emshake all shake" + constraints + f" kbond {restraint_k!r}")
        lmp.command("fix_modify emshake energy yes")
    if ml_indices:
        lmp.command(f"group mlfixed id {_ranges(ml_indices)}")
        lmp.command("fix mlfixed mlfixed setforce 0.0 0.0 0.0")
    lmp.command("thermo_style custom step pe fmax fnorm")
    lmp.command("run 0 post no")
    before = {k: float(lmp.get_thermo(k)) for k in ("pe", "fmax")}
    lmp.command(f"minimize {etol!r} {ftol_kcal_mol_A!r} {int(maxiter)} {int(maxeval)}")
    after = {k: float(lmp.get_thermo(k)) for k in ("pe", "fmax", "fnorm")}
    iters = int(lmp.get_thermo("step"))
    for fix in (("emshake",) if constraints else ()) + (("mlfixed",) if ml_indices else ()):
        lmp.command(f"unfix {fix}")
    if ml_indices:
        lmp.command("group mlfixed delete")
    lmp.command("reset_timestep 0")
    rec = {"method": "LAMMPS minimize (cg), ML atoms held fixed" if ml_indices else "LAMMPS minimize (cg)",
           "iterations": iters, "maxiter": int(maxiter), "reached_maxiter": iters >= int(maxiter),
           "water_restraint_k_kcal_mol_A2": float(restraint_k) if constraints else None,
           "epot_initial_kcal_mol": before["pe"], "epot_kcal_mol": after["pe"],
           "fmax_initial_kcal_mol_A": before["fmax"], "fmax_kcal_mol_A": after["fmax"],
           "fnorm_kcal_mol_A": after["fnorm"], "n_fixed_atoms": len(ml_indices)}
    log.info("minimized: E_pot %.1f -> %.1f kcal/mol, max force component %.2f kcal/mol/Å after %d iterations",
             before["pe"], after["pe"], after["fmax"], iters)
    return rec


#: energies.csv → {column: np.ndarray} (:func:`~mdi_mlmm.protocol.outputs.read_md_energies`)
read_energies = read_md_energies
#: a few human-readable lines of a :func:`run_md` summary (:func:`~mdi_mlmm.protocol.outputs.format_md_summary`)
format_summary = format_md_summary
