"""One λ window of the ML/MM decoupling leg on the LAMMPS host (resumable), and the gas leg.

Only the solute–environment nonbonded terms are decoupled; E_ML (and, for the MM
baseline, the solute's classical intramolecular terms) stays on at every λ.

Hamiltonian of state (c, v) (λ = 0 coupled, 1 decoupled; κ_c = 1 − c, κ_v = 1 − v)::

    U(c, v; x) = E_ML(x) + E_MM,env(x) + E_intra(x)
                 + κ_c C(x) + κ_c² [E_ss(x) − E_intra,coul(x)] + S(κ_v; x)

* Coulomb: the solute charges are scaled by κ_c. The Ewald/PPPM energy is a quadratic form
  in the charges (β and the mesh are fixed), so with solute charges κ q_s it is exactly
  E_env + κ C + κ² E_ss, where C is the full-charge solute–environment Coulomb (real +
  reciprocal) and E_ss the Ewald energy of the solute's charges alone (environment charges
  0). A second, static LAMMPS instance (the *evaluator*: ``pair_style coul/long``, same
  special bonds, same β, same PPPM mesh and order, same table setting) computes E(all),
  E(solute q = 0) and E(environment q = 0) at every sample: C = E(all) − E(q_s=0) −
  E(q_env=0), E_ss = E(q_env=0). The settings are ``run_md``'s (:meth:`AlchemicalSystem.build`):
  mesh by GROMACS's grid rule at ``GROMACS_FOURIER_SPACING_A`` / ``GROMACS_PME_ORDER``, ``pair_modify
  table`` :data:`~.convert.COUL_TABLE`, skin :data:`~.host.NEIGHBOR_SKIN_A`.

  - ML models: every solute–solute pair is an excluded (weight-0) special pair. ``coul/long``
    removes the reciprocal part of such a pair only inside the cutoff, so E_ss is the
    solute's interaction with its own periodic images (and the Ewald self terms that cancel
    the mesh self-interaction) plus L(x) = Σ_{ML pairs, r ≥ r_c} k q_i q_j erf(βr)/r, the
    reciprocal part of the pairs beyond the cutoff (:mod:`~mdi_mlmm.hosts.ewald_exclusions`).
    A second ``fix external`` removes κ_c² L with its forces and virial, and E_intra,coul = L
    is recorded, so that what scales with κ² is E_ss − L = the image interaction, a few
    0.01 kcal/mol and nearly constant, kept exactly in every state's Hamiltonian; the
    sampled and the evaluated Hamiltonians are the same function. GROMACS also switches the
    image term off with the charges.
  - ``mm`` (the classical baseline, like GROMACS ``couple-intramol = no``): the solute keeps
    its bonded terms and its intramolecular LJ (λ = 1 for solute–solute type pairs), and
    its intramolecular Coulomb stays at full strength: the PPPM part scales with κ², so
    a ``fix external`` adds (1 − κ_c²) E_intra,coul(x) (plain Coulomb over the solute's
    pairs, 1-2/1-3 excluded, 1-4 × fudgeQQ, molecule made whole) with its forces. What
    then scales with κ² is E_ss − E_intra,coul = image interaction + PPPM error of the
    intramolecular pairs (~1e-5 kcal/mol), the same function in sampling and evaluation.

* LJ: ``pair_style hybrid/overlay lj/cut/soft 1 0.5 rc coul/long rc`` with an explicit
  ``pair_coeff`` for every type pair (Lorentz–Berthelot or geometric mixing done here;
  λ_LJ = κ_v for solute–environment type pairs, 1 otherwise) and ``pair_modify shift``.
  S(κ; x) = Σ_{solute i, environment j, r < rc} κ 4ε [1/D² − 1/D] − (same at r = rc),
  D = α(1 − κ)² + (r/σ)⁶, minimum image — numpy, the exact LAMMPS lj/cut/soft form.

Per sample (every ``sample_every`` steps) the window records E_ML, C, E_ss, E_intra,coul and
S(κ_v,k) for every state k, and writes (with :func:`~mdi_mlmm.protocol.outputs.write_window_frames`)

* ``u_nk.csv``: u_k(x) − u_current(x) = [ΔU_k]/kT for every state (E_ML and the λ-independent
  terms cancel),
* ``dhdl.csv``: ∂U/∂c = −[C + 2κ_c (E_ss − E_intra,coul)]/kT, ∂U/∂v = −∂S/∂κ_v /kT
  (analytic) at the current state,
* ``e_ml.csv``: ``time_ps,e_ml_kcal_mol`` (absolute E_ML of the sampled configurations; ML
  models only).

Time 0 is the first sampled step (after ``equil_steps``); samples at 0, sample_every, ...

Resumability: ``checkpoint.npz`` (positions, velocities, image flags, step, all samples,
settings) is written atomically (:mod:`mdi_mlmm.files`) every
``checkpoint_every`` steps; the CSVs are regenerated from it each time, after it. A rerun
in the same ``out_dir`` continues from the checkpoint (samples recorded after it, which
were never saved, are redone; nothing saved is lost, CSV rows beyond the checkpoint are
rewritten), and a rerun of a finished window (``done.json``) returns its summary at
once. A SIGKILL at any moment leaves either the old or the new checkpoint.

Units: Å, fs, kcal/mol, e (LAMMPS ``real``); u_nk/dHdl in kT; times in ps.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ... import files, units
from ...errors import HostError, MdiMlmmError, UserInputError
from ...potentials.registry import is_ml
from ...protocol import physics
from ...protocol.outputs import write_e_ml, write_window_frames
from ...topology.mlregion import check_region_geometry, region_bonds
from ...topology.pbc import minimum_image
from .convert import COUL_TABLE, GROMACS_FOURIER_SPACING_A, GROMACS_PME_ORDER, lammps_error
from .host import NEIGHBOR_SKIN_A, close_quietly

log = logging.getLogger("mdi_mlmm.lammps.alchemy")

HA2KCAL = units.factor("energy", "hartree", "kcal/mol")
SC_ALPHA = 0.5          # lj/cut/soft alpha_LJ (FreeSolv's sc-alpha)
SC_N = 1                # lj/cut/soft n (λ^n prefactor)
LANGEVIN_DAMP_FS = 1000.0
CHECKPOINT = "checkpoint.npz"
DONE = "done.json"
QQR2E_REAL = units.LAMMPS_QQR2E_REAL  # LAMMPS real units (fallback if extract_global lacks it)


# =============================================================================== system
def _settings_lines(system) -> list[str]:
    from .convert import setup_commands
    return setup_commands(system)


def _type_params(system) -> tuple[dict, str, float]:
    """({type: (eps, sigma)}, mix, cutoff) from the converted settings."""
    params, mix, rc = {}, None, None
    for ln in Path(system.settings_file).read_text().splitlines():
        w = ln.split("#")[0].split()
        if not w:
            continue
        if w[0] == "pair_coeff":
            if w[1] != w[2]:
                raise HostError(f"unexpected mixed pair_coeff in {system.settings_file}: {ln}")
            params[int(w[1])] = (float(w[3]), float(w[4]))
        elif w[0] == "pair_modify" and "mix" in w:
            mix = w[w.index("mix") + 1]
        elif w[0] == "pair_style":
            rc = float(w[-1])
    if mix not in ("arithmetic", "geometric") or rc is None:
        raise HostError(f"cannot read the pair settings of {system.settings_file}")
    return params, mix, rc


class AlchemicalSystem:
    """A converted system plus the solute/environment split and its LJ tables.

    solute: 0-based indices (the ML region, or the MM solute for ``mm``); atom types (1-based
    LAMMPS types) of each atom are read from the data file.
    """

    def __init__(self, system, solute: Sequence[int], types: np.ndarray, charges: np.ndarray):
        self.system = system
        self.natoms = system.natoms
        self.solute = np.asarray(sorted(int(i) for i in solute), dtype=np.int64)
        mask = np.zeros(self.natoms, dtype=bool)
        mask[self.solute] = True
        self.env = np.nonzero(~mask)[0]
        self.types = np.asarray(types, dtype=np.int64)
        self.charges = np.asarray(charges, dtype=np.float64)
        self.params, self.mix, self.cutoff = _type_params(system)
        st, et = set(self.types[self.solute].tolist()), set(self.types[self.env].tolist())
        shared = st & et
        if shared:
            raise UserInputError(
                f"LAMMPS atom type(s) {sorted(shared)} are used by both solute and environment atoms; the "
                "soft-core λ is set per type pair, so the solute needs its own atom types")
        self.solute_types, self.env_types = sorted(st), sorted(et)
        nt = max(self.params)
        self.eps = np.zeros((nt + 1, nt + 1))
        self.sig = np.ones((nt + 1, nt + 1))
        for i in self.params:
            for j in self.params:
                (ei, si), (ej, sj) = self.params[i], self.params[j]
                e = math.sqrt(ei * ej)
                s = 0.5 * (si + sj) if self.mix == "arithmetic" else math.sqrt(si * sj)
                if e == 0.0 or s == 0.0:
                    e, s = 0.0, 1.0  # no LJ; sigma 1 keeps lj/cut/soft finite (sigma 0 gives NaN)
                self.eps[i, j], self.sig[i, j] = e, s
        # solute x environment pair tables for the numpy S(λ)
        self._pe = self.eps[np.ix_(self.types[self.solute], self.types[self.env])]
        self._ps6 = self.sig[np.ix_(self.types[self.solute], self.types[self.env])] ** 6
        self._xc6 = self.cutoff ** 6 / self._ps6

    @classmethod
    def build(cls, top, gro, out_dir, solute, *, ml: bool, structure=None, cutoff_A: Optional[float] = None,
              kspace_accuracy: float = 1e-6, fourier_spacing_A: Optional[float] = GROMACS_FOURIER_SPACING_A,
              pme_order: int = GROMACS_PME_ORDER, constrain_hbonds: bool = False) -> "AlchemicalSystem":
        """Convert ``top`` + ``gro`` with the default physical model (:mod:`~mdi_mlmm.protocol.physics`:
        cut-off, shifted LJ, β from its ``ewald-rtol``) and ``run_md``'s grid rule: the PPPM mesh from
        ``fourier_spacing_A`` and ``pme_order`` as GROMACS's PME grid (the GROMACS host's, by default);
        ``pme_order=0`` (or no spacing): a mesh LAMMPS picks for ``kspace_accuracy`` (order 5). The mesh
        does not follow the cut-off (as in GROMACS): a much shorter cut-off needs a finer spacing.
        constrain_hbonds: the X–H bonds get types of their own for SHAKE (:func:`.convert.convert`)."""
        from ...topology.gromacs import load_gromacs
        from .convert import convert

        structure = structure if structure is not None else load_gromacs(top, gro)
        system = convert(top, gro, out_dir, ml_indices=list(solute) if ml else None,
                         cutoff_A=physics.cutoff_A() if cutoff_A is None else cutoff_A, lj_shift=physics.LJ_SHIFT,
                         kspace="pppm", kspace_accuracy=kspace_accuracy, ewald_rtol=physics.EWALD_RTOL,
                         coul_table=COUL_TABLE, structure=structure, fourier_spacing_A=fourier_spacing_A,
                         pme_order=pme_order, constrain_hbonds=constrain_hbonds)
        types = _read_types(system.data_file, system.natoms)
        obj = cls(system, solute, types, np.asarray(system.charges))
        obj.ml = ml
        obj.structure = structure
        return obj

    # ---------------------------------------------------------- LAMMPS input
    def pair_coeffs(self, coupling_v: float) -> list[str]:
        """``pair_coeff`` lines (hybrid/overlay) with λ_LJ = coupling_v for solute–environment type pairs."""
        st = set(self.solute_types)
        out = []
        for i in sorted(self.params):
            for j in sorted(self.params):
                if j < i:
                    continue
                lam = coupling_v if ((i in st) != (j in st)) else 1.0
                out.append(f"pair_coeff {i} {j} lj/cut/soft {float(self.eps[i, j])!r} {float(self.sig[i, j])!r} {float(lam)!r}")
        out.append("pair_coeff * * coul/long")
        return out

    def commands(self, coupling_v: Optional[float], mesh: Optional[Sequence[int]] = None,
                 evaluator: bool = False, gas: bool = False, order: Optional[int] = None) -> list[str]:
        """Set-up commands: the converted system with the alchemical pair style (or, ``evaluator``,
        Coulomb only; ``gas``, no nonbonded terms at all and no k-space). mesh, order: pin the PPPM mesh
        and its order (the evaluator's, :attr:`CoulombEvaluator.mesh` / ``order``; order None: the
        converted system's, else LAMMPS's default 5); None: the converted settings as they are."""
        rc = self.cutoff
        out = []
        for ln in _settings_lines(self.system):
            w = ln.split()
            if w[0] == "pair_style":
                if gas:
                    out.append(f"pair_style zero {rc!r}")
                elif evaluator:
                    out.append(f"pair_style coul/long {rc!r}")
                else:
                    out.append(f"pair_style hybrid/overlay lj/cut/soft {SC_N} {SC_ALPHA!r} {rc!r} coul/long {rc!r}")
            elif w[0] == "pair_modify":
                out.append(f"pair_modify shift {'yes' if self.system.lj_shift else 'no'} tail no "
                           f"table {COUL_TABLE}")
                if gas or evaluator:
                    out.append("pair_coeff * *")
                else:
                    out += self.pair_coeffs(coupling_v)
            elif w[0] == "pair_coeff":
                continue
            elif w[0].startswith("kspace"):
                if gas or (mesh is not None and w[:2] == ["kspace_modify", "mesh"]):
                    continue
                out.append(ln)
                if w[0] == "kspace_style" and mesh is not None:
                    order = order or self.system.pppm_order or 5
                    out.append("kspace_modify mesh {} {} {} order {}".format(*mesh, int(order)))
            else:
                out.append(ln)
        return out

    # ---------------------------------------------------------- soft-core LJ
    def lj_solute_env(self, positions: np.ndarray, cell: np.ndarray, kappas: Sequence[float]):
        """Soft-core solute–environment LJ S(κ) and dS/dκ (kcal/mol) at every κ in ``kappas``.

        positions (N, 3) Å, cell (3, 3) rows; the LAMMPS lj/cut/soft form with the shift."""
        pos = np.asarray(positions, dtype=np.float64)
        d = pos[self.env][None, :, :] - pos[self.solute][:, None, :]
        d = minimum_image(d, cell, cutoff=self.cutoff, nearest=True)
        r2 = np.einsum("ijk,ijk->ij", d, d)
        m = (r2 < self.cutoff ** 2) & (self._pe > 0)
        eps = self._pe[m]
        x6 = r2[m] ** 3 / self._ps6[m]
        xc6 = self._xc6[m]
        S, dS = [], []
        for k in kappas:
            k = float(k)
            a = SC_ALPHA * (1.0 - k) ** 2
            da = -2.0 * SC_ALPHA * (1.0 - k)
            kn = k ** SC_N
            dkn = SC_N * k ** (SC_N - 1) if SC_N > 0 else 0.0
            D, Dc = a + x6, a + xc6
            g = 1.0 / D ** 2 - 1.0 / D
            gc = 1.0 / Dc ** 2 - 1.0 / Dc
            dg = (-2.0 / D ** 3 + 1.0 / D ** 2) * da
            dgc = (-2.0 / Dc ** 3 + 1.0 / Dc ** 2) * da
            S.append(float(np.sum(4.0 * eps * kn * (g - gc))))
            dS.append(float(np.sum(4.0 * eps * (dkn * (g - gc) + kn * (dg - dgc)))))
        return np.array(S), np.array(dS)


def _read_types(data_file, natoms: int) -> np.ndarray:
    """1-based LAMMPS type of each atom (0-based index) from an ``atom_style full`` data file."""
    types = np.zeros(natoms, dtype=np.int64)
    section = None
    for ln in Path(data_file).read_text().splitlines():
        s = ln.split("#")[0].strip()
        if not s:
            continue
        if s[0].isalpha():
            section = s.split()[0]
            continue
        if section == "Atoms":
            w = s.split()
            types[int(w[0]) - 1] = int(w[2])
    if (types == 0).any():
        raise HostError(f"{data_file}: not every atom has a type")
    return types


# =============================================================================== Coulomb
class CoulombEvaluator:
    """A static LAMMPS instance (Coulomb only) computing C(x) and E_ss(x) for given positions.

    Its PPPM mesh and order (:attr:`mesh`, :attr:`order`), read back from LAMMPS, are the ones every
    instance of the window uses: the converted system's (GROMACS's grid rule, :meth:`AlchemicalSystem.build`),
    or, without one, the mesh LAMMPS picks for the full-charge system (which then is pinned: LAMMPS would
    pick another for scaled charges). The decomposition needs the same mesh, order and β everywhere.
    """

    def __init__(self, asys: AlchemicalSystem, log_file: Optional[Path] = None):
        from .convert import new_lammps

        self.asys = asys
        self._tmpdir = None
        if log_file is None:  # the PPPM grid and order are read from the log
            import tempfile
            self._tmpdir = tempfile.TemporaryDirectory()
            log_file = Path(self._tmpdir.name) / "evaluator.log"
        self.lmp = lmp = new_lammps(None)
        lmp.command(f"log {log_file}")
        for c in asys.commands(None, evaluator=True):
            lmp.command(c)
        lmp.command("neighbor 0.0 bin")  # a list built for these very positions: no skin needed
        lmp.command("atom_modify sort 0 0.0")  # keep the atom order between runs
        lmp.command("thermo_style custom step ecoul elong")
        lmp.command("run 0 post no")
        self.mesh, self.order = self._mesh(log_file)
        lmp.command("kspace_modify mesh {} {} {} order {}".format(*self.mesh, self.order))
        lmp.command("log none")
        q = asys.charges
        self.q_all = q.copy()
        self.q_env = q.copy()
        self.q_env[asys.solute] = 0.0          # solute charges 0
        self.q_sol = np.zeros_like(q)
        self.q_sol[asys.solute] = q[asys.solute]  # environment charges 0
        self.seconds = 0.0
        self.calls = 0

    def _mesh(self, log_file) -> tuple[tuple[int, int, int], int]:
        """(mesh, order) of the PPPM that LAMMPS set up, from its log."""
        text = Path(log_file).read_text()
        m = re.findall(r"grid = (\d+) (\d+) (\d+)", text)
        o = re.findall(r"stencil order = (\d+)", text)
        if not m or not o:
            raise HostError("could not read the PPPM grid and order from the evaluator's LAMMPS log")
        return tuple(int(v) for v in m[-1]), int(o[-1])

    def _rows(self) -> np.ndarray:
        """Local row of each atom (0-based index)."""
        lmp = self.lmp
        nlocal = lmp.extract_global("nlocal")
        if nlocal != self.asys.natoms:
            raise HostError("the evaluator lost atoms")
        tags = np.asarray(lmp.numpy.extract_atom("id")[:nlocal], dtype=np.int64)
        rows = np.empty(nlocal, dtype=np.int64)
        rows[tags - 1] = np.arange(nlocal)
        return rows

    def _energy(self, q: np.ndarray) -> float:
        lmp = self.lmp
        qa = lmp.numpy.extract_atom("q")
        qa[self._rows()] = q
        lmp.command("run 0 post no")
        return float(lmp.get_thermo("ecoul")) + float(lmp.get_thermo("elong"))

    def evaluate(self, positions: np.ndarray) -> tuple[float, float]:
        """(C, E_ss) in kcal/mol for positions (N, 3) Å (the box is the system's, fixed)."""
        t0 = time.perf_counter()
        x = self.lmp.numpy.extract_atom("x")
        x[self._rows()] = np.asarray(positions, dtype=np.float64)
        e_all = self._energy(self.q_all)
        e_env = self._energy(self.q_env)
        e_ss = self._energy(self.q_sol)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return e_all - e_env - e_ss, e_ss

    def close(self):
        self.lmp.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()


class IntraCoulomb:
    """(1 − κ²) × the solute's plain intramolecular Coulomb (1-2/1-3 excluded, 1-4 × fudgeQQ), as an
    MDI-engine-like object for :func:`~.host.install_coupling` (``compute`` → Hartree, Hartree/Å).

    Used by the ``mm`` baseline to keep the intramolecular Coulomb at full strength while the
    solute charges are scaled by κ in LAMMPS."""

    def __init__(self, asys: AlchemicalSystem, kappa: float, qqr2e: float = QQR2E_REAL):
        from .convert import graph_neighbours

        sol = asys.solute
        local = {int(a): k for k, a in enumerate(sol)}
        bonds = [(local[b.atom1.idx], local[b.atom2.idx]) for b in asys.structure.bonds
                 if b.atom1.idx in local and b.atom2.idx in local]
        neigh = graph_neighbours(len(sol), bonds, 3)
        excluded = neigh[1] | neigh[2]
        one4 = neigh[3] - excluded
        ii, jj, ww = [], [], []
        for a in range(len(sol)):
            for b in range(a + 1, len(sol)):
                if (a, b) in excluded:
                    continue
                ii.append(a)
                jj.append(b)
                ww.append(asys.system.fudge_qq if (a, b) in one4 else 1.0)
        q = asys.charges[sol]
        self.i, self.j = np.array(ii, dtype=int), np.array(jj, dtype=int)
        self.qq = qqr2e * np.array(ww) * q[self.i] * q[self.j]
        self.scale = 1.0 - kappa ** 2
        self.last_energy = 0.0

    def energy_forces(self, positions: np.ndarray, cell) -> tuple[float, np.ndarray]:
        """Unscaled intramolecular Coulomb energy (kcal/mol) and forces (kcal/mol/Å)."""
        from ...topology.pbc import make_whole

        x = make_whole(np.asarray(positions, dtype=np.float64), cell)
        d = x[self.j] - x[self.i]
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
        e = self.qq / r
        f = np.zeros_like(x)
        fij = (e / r ** 2)[:, None] * d  # force on j: +qq d/r^3
        np.add.at(f, self.j, fij)
        np.add.at(f, self.i, -fij)
        return float(e.sum()), f

    def compute(self, positions, cell=None):
        e, f = self.energy_forces(positions, cell)
        self.last_energy = e
        return self.scale * e / HA2KCAL, self.scale * f / HA2KCAL


# =============================================================================== checkpoints
def _gather(lmp, natoms: int):
    """x (wrapped), v, image (raw) ordered by atom id."""
    nlocal = lmp.extract_global("nlocal")
    tags = np.asarray(lmp.numpy.extract_atom("id")[:nlocal], dtype=np.int64)
    order = np.argsort(tags)
    x = np.array(lmp.numpy.extract_atom("x")[:nlocal])[order]
    v = np.array(lmp.numpy.extract_atom("v")[:nlocal])[order]
    img = np.array(lmp.numpy.extract_atom("image")[:nlocal])[order]
    if nlocal != natoms:
        raise HostError("the LAMMPS instance lost atoms")
    return x, v, img


def _scatter(lmp, x, v, img):
    nlocal = lmp.extract_global("nlocal")
    tags = np.asarray(lmp.numpy.extract_atom("id")[:nlocal], dtype=np.int64)
    lmp.numpy.extract_atom("x")[:nlocal] = x[tags - 1]
    lmp.numpy.extract_atom("v")[:nlocal] = v[tags - 1]
    lmp.numpy.extract_atom("image")[:nlocal] = img[tags - 1]


def _positions(lmp, natoms: int) -> np.ndarray:
    nlocal = lmp.extract_global("nlocal")
    tags = np.asarray(lmp.numpy.extract_atom("id")[:nlocal], dtype=np.int64)
    out = np.empty((natoms, 3))
    out[tags - 1] = lmp.numpy.extract_atom("x")[:nlocal]
    return out


class _Store:
    """Samples + dynamic state, saved atomically to ``checkpoint.npz``."""

    def __init__(self, out: Path, meta: dict, columns: Sequence[str]):
        self.path = out / CHECKPOINT
        self.meta = meta
        self.columns = list(columns)
        self.data = {c: [] for c in self.columns}
        self.state = None  # (step, x, v, img)

    def load(self) -> bool:
        if not self.path.exists():
            return False
        try:
            z = np.load(self.path, allow_pickle=False)
            meta = json.loads(str(z["meta"]))
        except Exception as exc:
            raise HostError(f"cannot read the checkpoint {self.path}: {exc}; delete it to start the window again")
        if meta != self.meta:
            diff = sorted(k for k in set(meta) | set(self.meta) if meta.get(k) != self.meta.get(k))
            raise UserInputError(f"{self.path} was written by a run with other settings ({', '.join(diff)}); "
                                 "use another output directory or delete it")
        self.data = {c: list(z[c]) if c != "S" else [row for row in z[c]] for c in self.columns}
        self.state = (int(z["step"]), z["x"], z["v"], z["image"])
        return True

    def add(self, **values):
        for c in self.columns:
            self.data[c].append(values[c])

    def __len__(self):
        return len(self.data[self.columns[0]])

    def save(self, step: int, lmp, natoms: int):
        x, v, img = _gather(lmp, natoms)
        arrays = {c: np.asarray(self.data[c], dtype=np.float64) for c in self.columns}
        files.write_with(self.path, lambda fh: np.savez(fh, meta=json.dumps(self.meta), step=step, x=x, v=v,
                                                        image=img, **arrays), fsync=True)


# =============================================================================== frames
def window_frames(samples: dict, schedule: Sequence[tuple[float, float]], state: int, temperature: float):
    """(u_nk, dHdl) DataFrames (alchemlyb layout, kT) from the raw samples of one window.

    samples: time_ps, C, E_ss, E_intra (kcal/mol, n), S (n, K: soft-core LJ at every state's κ_v),
    dS (n: dS/dκ_v at this state)."""
    import pandas as pd

    kT = units.kT_kcal(temperature)
    sched = [(float(c), float(v)) for c, v in schedule]
    c0, v0 = sched[state]
    k0 = 1.0 - c0
    t = np.asarray(samples["time_ps"], dtype=float)
    C = np.asarray(samples["C"], dtype=float)
    W = np.asarray(samples["E_ss"], dtype=float) - np.asarray(samples["E_intra"], dtype=float)
    S = np.asarray(samples["S"], dtype=float).reshape(len(t), len(sched))
    dS = np.asarray(samples["dS"], dtype=float)
    idx = pd.MultiIndex.from_arrays([t, np.full(len(t), c0), np.full(len(t), v0)],
                                    names=["time", "coul-lambda", "vdw-lambda"])
    cols = {}
    for k, (c, v) in enumerate(sched):
        kk = 1.0 - c
        cols[(c, v)] = ((kk - k0) * C + (kk ** 2 - k0 ** 2) * W + S[:, k] - S[:, state]) / kT
    u = pd.DataFrame(cols, index=idx)
    u.columns = list(cols.keys())
    # dHdl columns named like alchemlyb's GROMACS parser names them: the λ components without "-lambda"
    d = pd.DataFrame({"coul": -(C + 2.0 * k0 * W) / kT, "vdw": -dS / kT}, index=idx)
    for df in (u, d):
        df.attrs = {"temperature": float(temperature), "energy_unit": "kT"}
    return u, d


# =============================================================================== dynamics
def _start_engine(model: str, natoms_z: Sequence[int], out: Path, engine_options):
    from ..driver import start_local_engine

    conn = start_local_engine(model, log_path=out / "engine.log", extra=list(engine_options))
    conn.setup([int(z) for z in natoms_z])
    return conn


def _time_ps(steps: int, dt_fs: float) -> float:
    """Sample time in ps, rounded to 1e-9 ps so that times are clean multiples of the interval."""
    return round(steps * float(dt_fs) / 1000.0, 9)


def _check_common(steps, dt_fs, sample_every, checkpoint_every, temperature):
    if int(steps) < 0 or dt_fs <= 0 or int(sample_every) < 1 or temperature <= 0:
        raise UserInputError("need steps >= 0, dt > 0, sample_every >= 1 and temperature > 0")
    sample_every = int(sample_every)
    ce = max(int(checkpoint_every), 1)
    ce = ((ce + sample_every - 1) // sample_every) * sample_every  # checkpoints on sample steps
    return int(steps), sample_every, ce


def _setup_dynamics(lmp, system, dt_fs, temperature, seed, resume_state, conn, solute, rigid: bool, bonds=None,
                    exclusion_charges=None, exclusion_scale: float = 1.0, hbonds: bool = False):
    """Thermostat, integrator, constraints, ML coupling; velocities (fresh) or the checkpoint state.
    rigid: RATTLE on the waters; hbonds: on the X–H bonds too, at b0 (:func:`.host.shake_args`; after the
    ``fix external`` and Langevin forces).
    exclusion_charges: (n_solute,) e — install the ML–ML exclusion correction beyond the cutoff
    (:func:`.host.install_exclusion_correction`, factor ``exclusion_scale``). Returns (coupling, correction)."""
    from .host import install_coupling, install_exclusion_correction, shake_args

    lmp.command(f"neighbor {NEIGHBOR_SKIN_A!r} bin")   # run_md's skin
    lmp.command("neigh_modify delay 0 every 1 check yes")
    lmp.command(f"timestep {float(dt_fs)!r}")
    coupling = install_coupling(lmp, conn, list(solute), system.natoms, bonds=bonds)
    excl = None
    if exclusion_charges is not None:
        excl = install_exclusion_correction(lmp, system, list(solute), exclusion_charges, bonds,
                                            scale=exclusion_scale)
    step0 = resume_state[0] if resume_state else 0
    lseed = 1 + (int(seed) * 7919 + step0) % 900000000  # a fresh noise stream after each resume
    lmp.command(f"fix lang all langevin {float(temperature)!r} {float(temperature)!r} {LANGEVIN_DAMP_FS!r} {lseed}")
    lmp.command("fix integ all nve")
    constraints = shake_args(system, water=rigid, hbonds=hbonds)
    if constraints:
        lmp.command("fix rigidw all rattle" + constraints)
    lmp.command("thermo_style custom step time temp pe ke etotal f_mlext")
    lmp.command("thermo_modify norm no flush yes")
    lmp.command("thermo 1000")
    if resume_state:
        step, x, v, img = resume_state
        _scatter(lmp, x, v, img)
        lmp.command(f"reset_timestep {int(step)}")
    else:
        lmp.command(f"velocity all create {float(temperature)!r} {int(seed)} dist gaussian mom yes "
                    f"rot {'no' if constraints else 'yes'}")
        if constraints:  # as run_md: let RATTLE constrain positions/velocities, then restart at step 0
            _lmp_run(lmp, "run 1 post no", "at the first step")
            lmp.command("reset_timestep 0")
            lmp.command(f"velocity all scale {float(temperature)!r}")
    return coupling, excl


def _constraints_meta(constrain_hbonds: bool) -> dict:
    """The checkpoint's record of constrained X–H bonds (none for flexible ones, so that checkpoints written
    before the option resume)."""
    return {"constraints": "h-bonds"} if constrain_hbonds else {}


def _lmp_run(lmp, command: str, where: str):
    """A LAMMPS ``run`` command; a LAMMPS error (lost atoms, a blow-up...) becomes one line: LAMMPS's
    own message, ``where`` and the log file (a :class:`HostError`), not a traceback."""
    try:
        lmp.command(command)
    except Exception as exc:
        err = lammps_error(exc, getattr(lmp, "mdi_mlmm_log", None), where)
        if err is None:
            raise
        raise err from exc


def _raise_coupling(coupling, lmp):
    """Re-raise the error of a ``fix external`` callback (``coupling``: one, or a tuple of them)."""
    callbacks = coupling if isinstance(coupling, tuple) else (coupling,)
    failed = next((c for c in callbacks if c is not None and c.error is not None), None)
    if failed is not None:
        exc = failed.error
        if isinstance(exc, (MdiMlmmError, KeyboardInterrupt)):
            raise exc
        raise HostError(f"ML coupling failed at step {lmp.get_thermo('step'):.0f}: {exc!r}") from exc


def _loop(lmp, coupling, store: _Store, *, start: int, equil_steps: int, steps: int, dt_fs: float,
          sample_every: int, checkpoint_every: int, natoms: int, record: Callable[[int], None],
          flush: Callable[[], None], progress):
    """Run from global step ``start`` to equil_steps + steps, recording at every sample step
    (global steps equil_steps + m·sample_every) and checkpointing every ``checkpoint_every``."""
    total = equil_steps + steps
    step = start
    # a sample due at the starting step (fresh start, or a checkpoint saved before recording)
    first = True
    n_expected = (step - equil_steps) // sample_every + 1 if step >= equil_steps else 0
    if step >= equil_steps and (step - equil_steps) % sample_every == 0 and len(store) < n_expected:
        lmp.command("run 0 post no")
        _raise_coupling(coupling, lmp)
        first = False
        record(step)
    t0, s0 = time.perf_counter(), step
    if progress:
        progress(step, total)
    while step < total:
        targets = [total]
        if step < equil_steps:
            targets.append(equil_steps)
        else:
            targets.append(step - (step - equil_steps) % sample_every + sample_every)
        targets.append((step // checkpoint_every + 1) * checkpoint_every)
        nxt = min(targets)
        _lmp_run(lmp, f"run {nxt - step} pre {'yes' if first else 'no'} post no", f"between steps {step} and {nxt}")
        first = False
        _raise_coupling(coupling, lmp)
        step = nxt
        if step >= equil_steps and (step - equil_steps) % sample_every == 0:
            record(step)
        if step % checkpoint_every == 0 or step == total:
            store.save(step, lmp, natoms)
            flush()
        if progress:
            progress(step, total)
    wall = time.perf_counter() - t0
    return wall, step - s0


def run_window(top, gro, ml_indices, model, state, schedule, steps, dt_fs, out_dir, *,
               sample_every=100, temperature=298.15, seed=1, checkpoint_every=1000,
               equil_steps=0, engine_options=(), progress=None, engine_model=None, constrain_hbonds=False) -> dict:
    """One λ window of the decoupling leg; returns (and writes to ``done.json``) a summary.

    top, gro: the solvated GROMACS system; ml_indices: 0-based solute atoms (whole molecules);
    model: engine spec (``ani2x``, ``mace:PATH``, ``zero``) or ``mm`` (classical solute, no
    engine); state: index into ``schedule`` [(coul λ, vdw λ)], 0 = coupled; steps, dt_fs:
    production steps (fs each), sampled every ``sample_every`` steps after ``equil_steps``
    unsampled ones; Langevin (1 ps damping, ``seed``) at ``temperature`` K, NVT; RATTLE water.
    Outputs in ``out_dir``: module docstring. ``progress(done, total)`` counts equilibration
    and production steps. engine_model: what the engine loads when it is not ``model`` itself
    (``server:INFO.json`` for a shared model server). constrain_hbonds: RATTLE on the solute's X–H bonds too,
    at the force field's b0 (the ML region's included; as GROMACS ``constraints = h-bonds``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = out / DONE
    if done.exists():
        return json.loads(done.read_text())
    steps, sample_every, checkpoint_every = _check_common(steps, dt_fs, sample_every, checkpoint_every, temperature)
    equil_steps = max(0, int(equil_steps))
    sched = [(float(c), float(v)) for c, v in schedule]
    state = int(state)
    if not 0 <= state < len(sched):
        raise UserInputError(f"state {state} out of range 0..{len(sched) - 1}")
    for c, v in sched:
        if not (0.0 <= c <= 1.0 and 0.0 <= v <= 1.0):
            raise UserInputError(f"λ values must lie in [0, 1]: {(c, v)}")
    c_lam, v_lam = sched[state]
    kc, kv = 1.0 - c_lam, 1.0 - v_lam
    ml = is_ml(model or "")
    solute = sorted(int(i) for i in ml_indices)
    if not solute:
        raise UserInputError("no solute atoms (ml_indices is empty)")
    t_start = time.perf_counter()

    from ...topology.gromacs import load_gromacs
    from .convert import new_lammps

    structure = load_gromacs(top, gro)
    if ml:
        check_region_geometry(solute, region_bonds(structure, solute), structure)
    asys = AlchemicalSystem.build(top, gro, out / "lammps", solute, ml=ml, structure=structure,
                                  constrain_hbonds=constrain_hbonds)
    meta = {"kind": "window", "state": state, "schedule": [list(s) for s in sched], "model": str(model),
            "steps": steps, "dt_fs": float(dt_fs), "sample_every": sample_every, "temperature": float(temperature),
            "equil_steps": equil_steps, "natoms": asys.natoms, "solute": solute, **_constraints_meta(constrain_hbonds)}
    store = _Store(out, meta, ["time_ps", "E_ML", "C", "E_ss", "E_intra", "S", "dS"])
    resumed = store.load()
    kT = units.kT_kcal(temperature)
    kappas_v = [1.0 - v for _, v in sched]

    ev = conn = lmp = None
    intra = None
    try:
        ev = CoulombEvaluator(asys, log_file=out / "evaluator.log")
        if ml:
            z = [int(structure.atoms[i].atomic_number) for i in solute]
            conn = _start_engine(engine_model or model, z, out, engine_options)
        else:
            intra = IntraCoulomb(asys, kc)
        lmp = new_lammps(None)
        lmp.command(f"log {out / 'lammps.log'} append")
        lmp.mdi_mlmm_log = out / "lammps.log"   # named in LAMMPS errors (_lmp_run)
        for c in asys.commands(kv, mesh=ev.mesh, order=ev.order):
            lmp.command(c)
        qa = lmp.numpy.extract_atom("q")
        nlocal = lmp.extract_global("nlocal")
        tags = np.asarray(lmp.numpy.extract_atom("id")[:nlocal], dtype=np.int64)
        rows = np.empty(asys.natoms, dtype=np.int64)
        rows[tags - 1] = np.arange(nlocal)
        qa[rows[asys.solute]] = kc * asys.charges[asys.solute]
        if not ml:
            try:
                intra.qq *= float(lmp.extract_global("qqr2e")) / QQR2E_REAL
            except Exception:  # pragma: no cover
                pass
        driver = conn if ml else (intra if kc != 1.0 else None)
        # ML: the ML–ML Ewald exclusions beyond the cutoff are removed with the κ-scaled charges (κ² L)
        coupling, excl = _setup_dynamics(lmp, asys.system, dt_fs, temperature, seed,
                                         store.state if resumed else None, driver, solute, rigid=True,
                                         bonds=region_bonds(structure, solute),
                                         exclusion_charges=asys.charges[asys.solute] if ml else None,
                                         exclusion_scale=kc * kc, hbonds=constrain_hbonds)
        start = store.state[0] if resumed else 0
        if resumed:
            # drop samples after the checkpoint step (none are saved there, but be explicit)
            keep = int(np.sum(np.asarray(store.data["time_ps"]) <= (start - equil_steps) * dt_fs / 1000.0 + 1e-9)) \
                if start >= equil_steps else 0
            for c in store.columns:
                store.data[c] = store.data[c][:keep]
            log.info("resuming window %d at step %d (%d samples)", state, start, keep)
        if lmp.extract_global("nlocal") != asys.natoms:
            raise HostError("atom count mismatch")
        box_cell = None
        t_eval = [0.0]

        def record(step):
            t1 = time.perf_counter()
            nonlocal box_cell
            from .host import box_matrix

            if box_cell is None:
                box_cell = box_matrix(lmp)
            pos = _positions(lmp, asys.natoms)
            C, e_ss, e_intra = coulomb_sample(ev, excl if ml else intra, pos, box_cell)
            S, dS_all = asys.lj_solute_env(pos, box_cell, kappas_v)
            e_ml = coupling.last_energy_Ha * HA2KCAL if ml else float("nan")
            store.add(time_ps=_time_ps(step - equil_steps, dt_fs), E_ML=e_ml, C=C, E_ss=e_ss, E_intra=e_intra,
                      S=S, dS=dS_all[state])
            t_eval[0] += time.perf_counter() - t1

        def flush():
            samples = {c: store.data[c] for c in store.columns}
            u, d = window_frames(samples, sched, state, temperature)
            write_window_frames(u, d, out / "u_nk.csv", out / "dhdl.csv")
            if ml:
                write_e_ml(out / "e_ml.csv", samples["time_ps"], samples["E_ML"])

        if resumed:
            flush()  # CSVs exactly as saved (drops rows written after the checkpoint)
        wall, nsteps = _loop(lmp, (coupling, excl), store, start=start, equil_steps=equil_steps, steps=steps,
                             dt_fs=dt_fs, sample_every=sample_every, checkpoint_every=checkpoint_every,
                             natoms=asys.natoms, record=record, flush=flush, progress=progress)
        if start >= equil_steps + steps:
            flush()
        n = len(store)
        md_wall = wall - t_eval[0]
        res = {
            "host": "lammps", "kind": "window", "state": state, "coul_lambda": c_lam, "vdw_lambda": v_lam,
            "model": str(model), "steps": steps, "equil_steps": equil_steps, "dt_fs": float(dt_fs),
            "sample_every": sample_every, "samples": n, "temperature": float(temperature),
            "resumed_from_step": start if resumed else None, "steps_this_run": nsteps,
            "wall_s": time.perf_counter() - t_start, "loop_s": wall, "sampling_s": t_eval[0],
            "evaluator_s_per_sample": ev.seconds / max(ev.calls, 1),
            "ns_per_day": nsteps * dt_fs * 1e-6 / wall * 86400 if wall > 0 and nsteps else None,
            "ns_per_day_md_only": nsteps * dt_fs * 1e-6 / md_wall * 86400 if md_wall > 0 and nsteps else None,
            "pppm_mesh": list(ev.mesh), "pppm_order": ev.order, "kT_kcal_mol": kT,
            "mean_dhdl_kT": {"coul": float(np.mean(_dhdl_coul(store, kc))) / kT if n else None,
                             "vdw": float(-np.mean(store.data["dS"])) / kT if n else None},
            "u_nk": str(out / "u_nk.csv"), "dhdl": str(out / "dhdl.csv"),
        }
        if ml:
            res["e_ml"] = str(out / "e_ml.csv")
            res["E_ML_mean_kcal_mol"] = float(np.mean(store.data["E_ML"])) if n else None
    finally:
        close_quietly(lmp, ev, conn)
    files.write_text(done, json.dumps(res, indent=1), fsync=True)
    return res


def coulomb_sample(ev: "CoulombEvaluator", intra, positions: np.ndarray, cell: np.ndarray):
    """(C, E_ss, E_intra,coul) in kcal/mol of one configuration (N, 3) Å (module docstring).

    intra: for ML solutes the window's :class:`~.host.ExclusionCorrection` (E_intra,coul = L, the
    reciprocal-space Coulomb of the ML–ML pairs beyond the cutoff, which the window removes as
    κ² L), for the ``mm`` baseline its :class:`IntraCoulomb`."""
    C, e_ss = ev.evaluate(positions)
    sol = positions[ev.asys.solute]
    if hasattr(intra, "leftover_at"):
        e_intra = intra.leftover_at(sol, cell)
    else:
        e_intra, _ = intra.energy_forces(sol, cell)
    return C, e_ss, e_intra


def _dhdl_coul(store, kc):
    C = np.asarray(store.data["C"])
    W = np.asarray(store.data["E_ss"]) - np.asarray(store.data["E_intra"])
    return -(C + 2 * kc * W)


def run_gas(top, gro, ml_indices, model, steps, dt_fs, out_dir, *, sample_every=100, temperature=298.15, seed=1,
            checkpoint_every=1000, equil_steps=0, engine_options=(), progress=None, engine_model=None,
            constrain_hbonds=False) -> dict:
    """The solute alone (gas-phase system, no water) with the ML potential only: every classical
    term is removed (ML–ML terms dropped, no pair interactions, no k-space), Langevin NVT at
    ``temperature``; writes ``e_ml.csv`` (time_ps, e_ml_kcal_mol every ``sample_every`` steps) and
    ``done.json``; resumable like :func:`run_window`. ``mm`` has no gas leg (its intramolecular
    terms are never decoupled) and is refused. constrain_hbonds: the X–H bonds constrained at b0 (RATTLE)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = out / DONE
    if done.exists():
        return json.loads(done.read_text())
    if not is_ml(model or ""):
        raise UserInputError("the MM baseline has no gas leg (intramolecular terms stay on at every λ)")
    steps, sample_every, checkpoint_every = _check_common(steps, dt_fs, sample_every, checkpoint_every, temperature)
    equil_steps = max(0, int(equil_steps))
    solute = sorted(int(i) for i in ml_indices)
    t_start = time.perf_counter()
    from ...topology.gromacs import load_gromacs
    from .convert import new_lammps

    structure = load_gromacs(top, gro)
    if len(structure.atoms) != len(solute):
        raise UserInputError(f"the gas-phase system {top} has {len(structure.atoms)} atoms but {len(solute)} are "
                             "ML atoms; it must hold the solute only")
    asys = AlchemicalSystem.build(top, gro, out / "lammps", solute, ml=True, structure=structure,
                                  constrain_hbonds=constrain_hbonds)
    meta = {"kind": "gas", "model": str(model), "steps": steps, "dt_fs": float(dt_fs), "sample_every": sample_every,
            "temperature": float(temperature), "equil_steps": equil_steps, "natoms": asys.natoms, "solute": solute,
            **_constraints_meta(constrain_hbonds)}
    store = _Store(out, meta, ["time_ps", "E_ML"])
    resumed = store.load()
    conn = lmp = None
    try:
        z = [int(structure.atoms[i].atomic_number) for i in solute]
        conn = _start_engine(engine_model or model, z, out, engine_options)
        lmp = new_lammps(None)
        lmp.command(f"log {out / 'lammps.log'} append")
        lmp.mdi_mlmm_log = out / "lammps.log"   # named in LAMMPS errors (_lmp_run)
        for c in asys.commands(None, gas=True):
            lmp.command(c)
        coupling, _ = _setup_dynamics(lmp, asys.system, dt_fs, temperature, seed, store.state if resumed else None,
                                      conn, solute, rigid=False, bonds=region_bonds(structure, solute),
                                      hbonds=constrain_hbonds)
        start = store.state[0] if resumed else 0

        def record(step):
            store.add(time_ps=_time_ps(step - equil_steps, dt_fs), E_ML=coupling.last_energy_Ha * HA2KCAL)

        def flush():
            write_e_ml(out / "e_ml.csv", store.data["time_ps"], store.data["E_ML"])

        if resumed:
            flush()
        wall, nsteps = _loop(lmp, coupling, store, start=start, equil_steps=equil_steps, steps=steps, dt_fs=dt_fs,
                             sample_every=sample_every, checkpoint_every=checkpoint_every, natoms=asys.natoms,
                             record=record, flush=flush, progress=progress)
        if start >= equil_steps + steps:
            flush()
        e = np.asarray(store.data["E_ML"])
        res = {"host": "lammps", "kind": "gas", "model": str(model), "steps": steps, "equil_steps": equil_steps,
               "dt_fs": float(dt_fs), "sample_every": sample_every, "samples": int(len(e)),
               "resumed_from_step": start if resumed else None, "steps_this_run": nsteps,
               "wall_s": time.perf_counter() - t_start, "loop_s": wall,
               "ns_per_day": nsteps * dt_fs * 1e-6 / wall * 86400 if wall > 0 and nsteps else None,
               "E_ML_mean_kcal_mol": float(e.mean()) if len(e) else None, "e_ml": str(out / "e_ml.csv")}
    finally:
        close_quietly(lmp, conn)
    files.write_text(done, json.dumps(res, indent=1), fsync=True)
    return res


def _write_solute_dcd(out: Path, gro, solute: Sequence[int], times_ps, X, cells, dt_ps: float) -> tuple[Path, Path]:
    """``solute.gro`` (the solute's atoms, once) and ``solute.dcd`` (atomically): the recorded solute
    frames (positions Å as LAMMPS holds them, float32 in the file; the cell of each frame)."""
    import os

    import MDAnalysis as mda
    from MDAnalysis.lib.mdamath import triclinic_box

    top = out / "solute.gro"
    if not top.exists():
        mda.Universe(str(gro)).atoms[list(solute)].write(str(top))
    u = mda.Universe(str(top))
    n = len(solute)
    dcd, tmp = out / "solute.dcd", out / "solute.tmp.dcd"
    with mda.Writer(str(tmp), n_atoms=n, dt=float(dt_ps)) as w:
        for x, cell in zip(X, cells):
            u.atoms.positions = np.asarray(x, dtype=np.float64).reshape(n, 3)
            u.dimensions = triclinic_box(*np.asarray(cell, dtype=np.float64).reshape(3, 3))
            w.write(u.atoms)
    os.replace(tmp, dcd)
    return top, dcd


def run_leg(spec, progress=None) -> dict:
    """One window of an endpoint-route leg (:class:`~mdi_mlmm.protocol.specs.LegSpec`): the engine
    serves λ·E_ML + (1 − λ)·E_MM,intra of the solute (``spec.mixed_engine_args``); water = the
    solvated system fully coupled (as window 0 of :func:`run_window`: RATTLE water, the ML–ML Ewald
    exclusions beyond the cutoff removed), gas = the solute alone (as :func:`run_gas`). Langevin NVT.
    Every ``sample_every`` steps after ``equil_steps`` the solute's positions and the cell are
    recorded (in the checkpoint, so a resume loses and repeats nothing) and written as
    ``solute.dcd`` + ``solute.gro``; done.json names them (trajectory, topology, atoms).
    ``spec.constrain_hbonds``: the solute's X–H bonds constrained at b0 by the same RATTLE, in water and gas."""
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = out / DONE
    if done.exists():
        return json.loads(done.read_text())
    steps, sample_every, checkpoint_every = _check_common(spec.steps, spec.dt_fs, spec.sample_every,
                                                          spec.checkpoint_every, spec.temperature)
    equil_steps = max(0, int(spec.equil_steps))
    solute = sorted(int(i) for i in spec.ml_indices)
    gas = spec.phase == "gas"
    t_start = time.perf_counter()
    from ...topology.gromacs import load_gromacs
    from .convert import new_lammps
    from .host import box_matrix

    structure = load_gromacs(spec.top, spec.gro)
    if gas and len(structure.atoms) != len(solute):
        raise UserInputError(f"the gas-phase system {spec.top} has {len(structure.atoms)} atoms but {len(solute)} "
                             "are ML atoms; it must hold the solute only")
    bonds = region_bonds(structure, solute)
    check_region_geometry(solute, bonds, structure)
    asys = AlchemicalSystem.build(spec.top, spec.gro, out / "lammps", solute, ml=True, structure=structure,
                                  constrain_hbonds=spec.constrain_hbonds)
    meta = {"kind": "leg", "phase": spec.phase, "lambda": float(spec.lam), "model": str(spec.model), "steps": steps,
            "dt_fs": float(spec.dt_fs), "sample_every": sample_every, "temperature": float(spec.temperature),
            "equil_steps": equil_steps, "natoms": asys.natoms, "solute": solute,
            **_constraints_meta(spec.constrain_hbonds)}
    store = _Store(out, meta, ["time_ps", "X", "cell"])
    resumed = store.load()
    conn = lmp = None
    try:
        z = [int(structure.atoms[i].atomic_number) for i in solute]
        conn = _start_engine(spec.engine, z, out, spec.mixed_engine_args)
        lmp = new_lammps(None)
        lmp.command(f"log {out / 'lammps.log'} append")
        lmp.mdi_mlmm_log = out / "lammps.log"   # named in LAMMPS errors (_lmp_run)
        for c in (asys.commands(None, gas=True) if gas else asys.commands(1.0)):
            lmp.command(c)
        coupling, excl = _setup_dynamics(lmp, asys.system, spec.dt_fs, spec.temperature, spec.seed,
                                         store.state if resumed else None, conn, solute, rigid=not gas, bonds=bonds,
                                         exclusion_charges=None if gas else asys.charges[asys.solute],
                                         hbonds=spec.constrain_hbonds)
        start = store.state[0] if resumed else 0
        if lmp.extract_global("nlocal") != asys.natoms:
            raise HostError("atom count mismatch")

        def record(step):
            pos = _positions(lmp, asys.natoms)[solute]
            store.add(time_ps=_time_ps(step - equil_steps, spec.dt_fs), X=pos.ravel(), cell=box_matrix(lmp).ravel())

        def flush():
            if len(store):
                _write_solute_dcd(out, spec.gro, solute, store.data["time_ps"], store.data["X"], store.data["cell"],
                                  sample_every * spec.dt_fs / 1000.0)

        wall, nsteps = _loop(lmp, (coupling, excl), store, start=start, equil_steps=equil_steps, steps=steps,
                             dt_fs=spec.dt_fs, sample_every=sample_every, checkpoint_every=checkpoint_every,
                             natoms=asys.natoms, record=record, flush=flush, progress=progress)
        flush()
        res = {"host": "lammps", "kind": "leg", "phase": spec.phase, "lambda": float(spec.lam), "steps": steps,
               "equil_steps": equil_steps, "dt_fs": float(spec.dt_fs), "sample_every": sample_every,
               "samples": len(store), "resumed_from_step": start if resumed else None, "steps_this_run": nsteps,
               "wall_s": time.perf_counter() - t_start, "loop_s": wall,
               "ns_per_day": nsteps * spec.dt_fs * 1e-6 / wall * 86400 if wall > 0 and nsteps else None,
               "trajectory": str(out / "solute.dcd"), "topology": str(out / "solute.gro"),
               "atoms": list(range(len(solute)))}
    finally:
        close_quietly(lmp, conn)
    files.write_text(done, json.dumps(res, indent=1), fsync=True)
    return res
