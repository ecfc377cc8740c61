"""The solute's classical intramolecular energy in vacuum, E_MM,intra, from its GROMACS topology.

This is the term the endpoint route switches off (:mod:`.mixed`): in the MM hydration free energy
(FreeSolv's protocol, ``couple-intramol = no``) GROMACS replaces every solute–solute non-bonded
pair beyond the exclusions by an explicit pair interaction of plain Coulomb and Lennard-Jones
without cut-off, so the solute's intramolecular energy is, at every λ, its vacuum energy:

    E_MM,intra = bonds + angles + dihedrals (proper, improper)
                 + 1-4 pairs (LJ scaled by fudgeLJ, Coulomb by fudgeQQ of ``[ defaults ]``, or the
                   ``[ pairs ]`` parameters when given)
                 + plain Coulomb (ε_r = 1) and LJ of every pair beyond ``nrexcl`` (no cut-off, no shift)

ParmEd reads the topology and builds an OpenMM ``System`` with ``NoCutoff`` (no constraints,
no centre-of-mass remover), evaluated by OpenMM's double-precision Reference platform. No torch.
Validated against GROMACS (``gmx_d``, ``couple-intramol = no``) in tests/test_mm_intra.py.

Units: positions Å; energies kcal/mol; forces kcal/mol/Å (conversions by :mod:`mdi_mlmm.units`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import units
from ..errors import UserInputError

_KJ_TO_KCAL = units.factor("energy", "kj/mol", "kcal/mol")
_F_TO_KCAL_A = units.force_factor("kj/mol", "nm", "kcal/mol", "angstrom")
_A_TO_NM = units.factor("length", "angstrom", "nm")


class MMIntra:
    """E_MM,intra of one molecule: ``energy_forces(positions)``.

    Build it with :meth:`from_gromacs`. Attributes: ``n_atoms``; ``atomic_numbers`` (n,) int;
    ``atoms``: the molecule's 0-based indices in the system the topology describes (n,);
    ``names``: atom names; ``description``: where it came from.
    """

    def __init__(self, structure, atoms: Sequence[int], description: str = ""):
        import openmm
        from openmm import app

        self.atoms = np.asarray(atoms, dtype=int)
        self.atomic_numbers = np.array([a.atomic_number for a in structure.atoms], dtype=int)
        self.names = [a.name for a in structure.atoms]
        self.n_atoms = len(structure.atoms)
        self.description = description
        system = structure.createSystem(nonbondedMethod=app.NoCutoff, constraints=None, rigidWater=False,
                                        removeCMMotion=False)
        self._terms = []
        for k, force in enumerate(system.getForces()):
            force.setForceGroup(k)
            self._terms.append(type(force).__name__)
        if system.getNumConstraints():  # pragma: no cover  (constraints=None gives none)
            raise UserInputError(f"{description}: the MM intramolecular energy cannot have constraints")
        self._integrator = openmm.VerletIntegrator(0.001)
        platform = openmm.Platform.getPlatformByName("Reference")
        self._context = openmm.Context(system, self._integrator, platform)
        self.system = system

    # ---------------------------------------------------------------------------- building
    @classmethod
    def from_gromacs(cls, top, *, atoms: Optional[Sequence[int]] = None, moleculetype: Optional[str] = None,
                     defines: Optional[dict] = None) -> "MMIntra":
        """E_MM,intra of one molecule of the GROMACS system ``top``.

        atoms: the molecule's 0-based atom indices in the system (e.g. the ML region; they must
        form whole molecules — the result is the classical intramolecular energy of those atoms,
        sorted); moleculetype: the first molecule of that ``[ moleculetype ]`` (``MOL`` as
        ``mdi-mlmm prepare`` writes it); neither: the topology must hold one molecule (a gas-phase
        ``topol.top``). A solvated topology works too but is slower to read (all its waters).
        """
        import warnings

        import parmed

        top = Path(top)
        if not top.is_file():
            raise UserInputError(f"no such topology: {top}")
        if atoms is not None and moleculetype is not None:
            raise UserInputError("give the molecule either as atoms or as a moleculetype, not both")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = parmed.load_file(str(top), defines=defines)
        except Exception as exc:  # ParmEd raises many kinds
            raise UserInputError(f"cannot read GROMACS topology {top}: {exc}") from exc
        if not isinstance(s, parmed.gromacs.GromacsTopologyFile):
            raise UserInputError(f"{top} is not a GROMACS topology")
        if s.defaults.nbfunc != 1:
            raise UserInputError(f"{top}: only Lennard-Jones non-bonded functions (nbfunc 1) are supported")
        from ..topology.graph import components

        n = len(s.atoms)
        bonds = [(b.atom1.idx, b.atom2.idx) for b in s.bonds]
        comp = np.asarray(components(n, bonds), dtype=int)
        if atoms is not None:
            idx = np.array(sorted({int(a) for a in atoms}), dtype=int)
            if len(idx) == 0 or idx[0] < 0 or idx[-1] >= n:
                raise UserInputError(f"atoms {idx[:1]}..{idx[-1:]} outside the {n} atoms of {top}")
            what = f"atoms {idx[0]}..{idx[-1]} (0-based) of {top}"
        elif moleculetype is not None:
            idx = cls._first_molecule(s, comp, moleculetype, top)
            what = f"moleculetype {moleculetype} of {top}"
        else:
            if comp.max() != 0:
                raise UserInputError(f"{top} holds {comp.max() + 1} molecules: say which one (atoms or moleculetype)")
            idx = np.arange(n)
            what = f"{top}"
        inside = np.zeros(n, dtype=bool)
        inside[idx] = True
        for i, j in bonds:
            if inside[i] != inside[j]:
                raise UserInputError(f"{what}: the atoms cut the bond {i + 1}-{j + 1} (1-based); give whole molecules")
        nrexcl = {m[1] for name, m in s.molecules.items()} if hasattr(s, "molecules") else {3}
        if nrexcl - {3}:
            raise UserInputError(f"{top}: nrexcl {sorted(nrexcl)}; only nrexcl = 3 (AMBER/GAFF) is supported")
        # a boolean mask: ParmEd reads a list of indices as long as the structure as a mask
        sub = s[[bool(x) for x in inside]]
        return cls(sub, idx, description=what)

    @staticmethod
    def _first_molecule(s, comp: np.ndarray, moleculetype: str, top) -> np.ndarray:
        mols = getattr(s, "molecules", {})
        if moleculetype not in mols:
            raise UserInputError(f"{top} has no [ moleculetype ] {moleculetype} (it has {', '.join(mols)})")
        tmpl = mols[moleculetype][0]
        key = [(a.name, a.type, round(float(a.charge), 6)) for a in tmpl.atoms]
        for c in range(int(comp.max()) + 1):
            idx = np.nonzero(comp == c)[0]
            if len(idx) == len(key) and [(s.atoms[i].name, s.atoms[i].type, round(float(s.atoms[i].charge), 6))
                                         for i in idx] == key:
                return idx
        raise UserInputError(f"{top}: no molecule {moleculetype} in [ molecules ]")

    # ---------------------------------------------------------------------------- evaluation
    def _check(self, positions) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.float64)
        if pos.shape[-2:] != (self.n_atoms, 3) or pos.ndim not in (2, 3):
            raise UserInputError(f"positions must have shape (N, 3) or (B, N, 3) with N = {self.n_atoms}, "
                                 f"got {pos.shape}")
        if not np.all(np.isfinite(pos)):
            raise UserInputError("positions contain NaN or inf")
        return pos

    def energy_forces(self, positions) -> tuple[np.ndarray, np.ndarray]:
        """E_MM,intra (kcal/mol) and its forces (kcal/mol/Å) of one structure or a batch.

        positions: (N, 3) Å → energy shape (), forces (N, 3); (B, N, 3) Å → (B,), (B, N, 3).
        Atoms in the order of :attr:`atoms`. Periodic images play no part (vacuum).
        """
        pos = self._check(positions)
        batch = pos.reshape(-1, self.n_atoms, 3)
        e = np.empty(len(batch))
        f = np.empty_like(batch)
        for k, x in enumerate(batch):
            self._context.setPositions(x * _A_TO_NM)
            st = self._context.getState(getEnergy=True, getForces=True)
            e[k] = st.getPotentialEnergy()._value * _KJ_TO_KCAL
            f[k] = np.asarray(st.getForces(asNumpy=True)._value) * _F_TO_KCAL_A
        if pos.ndim == 2:
            return e.reshape(()), f[0]
        return e, f

    def energy(self, positions) -> np.ndarray:
        """E_MM,intra (kcal/mol): shape () for (N, 3) positions, (B,) for (B, N, 3)."""
        return self.energy_forces(positions)[0]

    def terms(self, positions) -> dict[str, float]:
        """E_MM,intra (kcal/mol) of one structure (N, 3) Å split by OpenMM force (bonds, angles,
        torsions, non-bonded incl. 1-4)."""
        pos = self._check(positions)
        if pos.ndim != 2:
            raise UserInputError("terms() takes one structure (N, 3)")
        self._context.setPositions(pos * _A_TO_NM)
        out = {}
        for k, name in enumerate(self._terms):
            st = self._context.getState(getEnergy=True, groups={k})
            out[name] = out.get(name, 0.0) + st.getPotentialEnergy()._value * _KJ_TO_KCAL
        return out

    def __getstate__(self):  # pragma: no cover  (an OpenMM Context does not pickle)
        raise TypeError("MMIntra holds an OpenMM Context and cannot be pickled; build it where it is used")
