"""The one place where mdi_mlmm converts units.

Conventions used across the package (every docstring states its units):

* positions: Å (potentials, hosts, topology) — MDI wire: Bohr
* energies: Hartree (potentials, engine) — kcal/mol in reports — kJ/mol in GROMACS
* forces: Hartree/Å (potentials) — MDI wire: Hartree/Bohr

MDI itself speaks atomic units; :func:`to_mdi` / :func:`from_mdi` are the only
conversions between the wire and the package. Values are CODATA 2018, the same
ones the MDI library uses (``MDI_Conversion_Factor``), so a round trip through
MDI is exact to the last bit that the wire carries.
"""
from __future__ import annotations

import numpy as np

# --- length -------------------------------------------------------------
BOHR_IN_ANGSTROM = 0.529177210903          # CODATA 2018
ANGSTROM_TO_BOHR = 1.0 / BOHR_IN_ANGSTROM
NM_TO_ANGSTROM = 10.0

# --- energy -------------------------------------------------------------
HARTREE_IN_EV = 27.211386245988            # CODATA 2018
HARTREE_IN_KJ_PER_MOL = 2625.4996394798254  # CODATA 2018
KCAL_IN_KJ = 4.184
HARTREE_IN_KCAL_PER_MOL = HARTREE_IN_KJ_PER_MOL / KCAL_IN_KJ
EV_TO_HARTREE = 1.0 / HARTREE_IN_EV
KJ_PER_MOL_TO_KCAL_PER_MOL = 1.0 / KCAL_IN_KJ

# --- pressure -------------------------------------------------------------
ATM_IN_BAR = 1.01325                       # exact: 1 atm = 101325 Pa (LAMMPS real units use atm)
BAR_TO_ATM = 1.0 / ATM_IN_BAR

# --- thermodynamics -----------------------------------------------------
BOLTZMANN_KJ_PER_MOL_K = 0.00831446261815324
BOLTZMANN_KCAL_PER_MOL_K = BOLTZMANN_KJ_PER_MOL_K / KCAL_IN_KJ

# Coulomb constant 1/(4π ε0) for charges in e: kJ mol⁻¹ nm e⁻² from CODATA 2018 (as GROMACS's
# c_one4PiEps0); LAMMPS ``units real`` uses its own rounded qqr2e = 332.06371 kcal mol⁻¹ Å e⁻².
_EPS0_SI = 8.8541878128e-12        # F/m, CODATA 2018
_E_CHARGE = 1.602176634e-19        # C, exact
_AVOGADRO = 6.02214076e23          # 1/mol, exact
COULOMB_KJ_MOL_NM = _E_CHARGE ** 2 * _AVOGADRO / (4 * 3.141592653589793 * _EPS0_SI) / 1e3 * 1e9
LAMMPS_QQR2E_REAL = 332.06371


def kT_kcal(temperature_K: float) -> float:
    """kT in kcal/mol at ``temperature_K``."""
    return BOLTZMANN_KCAL_PER_MOL_K * temperature_K


# Conversions keyed by (quantity, from, to); the MDI boundary uses these.
_FACTORS = {
    ("length", "angstrom", "bohr"): ANGSTROM_TO_BOHR,
    ("length", "bohr", "angstrom"): BOHR_IN_ANGSTROM,
    ("length", "nm", "angstrom"): NM_TO_ANGSTROM,
    ("length", "angstrom", "nm"): 1.0 / NM_TO_ANGSTROM,
    ("length", "nm", "bohr"): NM_TO_ANGSTROM * ANGSTROM_TO_BOHR,
    ("length", "bohr", "nm"): BOHR_IN_ANGSTROM / NM_TO_ANGSTROM,
    ("energy", "hartree", "kcal/mol"): HARTREE_IN_KCAL_PER_MOL,
    ("energy", "kcal/mol", "hartree"): 1.0 / HARTREE_IN_KCAL_PER_MOL,
    ("energy", "hartree", "kj/mol"): HARTREE_IN_KJ_PER_MOL,
    ("energy", "kj/mol", "hartree"): 1.0 / HARTREE_IN_KJ_PER_MOL,
    ("energy", "hartree", "ev"): HARTREE_IN_EV,
    ("energy", "ev", "hartree"): EV_TO_HARTREE,
    ("energy", "kj/mol", "kcal/mol"): KJ_PER_MOL_TO_KCAL_PER_MOL,
    ("energy", "kcal/mol", "kj/mol"): KCAL_IN_KJ,
    ("pressure", "atm", "bar"): ATM_IN_BAR,
    ("pressure", "bar", "atm"): BAR_TO_ATM,
}


def factor(quantity: str, src: str, dst: str) -> float:
    """Multiplicative factor converting ``quantity`` from unit ``src`` to ``dst``.

    Forces use ``force_factor``. Raises ``KeyError`` for an unknown pair.
    """
    src, dst = src.lower(), dst.lower()
    if src == dst:
        return 1.0
    return _FACTORS[(quantity, src, dst)]


def force_factor(e_src: str, l_src: str, e_dst: str, l_dst: str) -> float:
    """Factor for forces (energy/length) from ``e_src/l_src`` to ``e_dst/l_dst``."""
    return factor("energy", e_src, e_dst) / factor("length", l_src, l_dst)


# --- the MDI boundary -----------------------------------------------------
def coords_from_mdi(flat_bohr) -> np.ndarray:
    """MDI ``>COORDS`` payload (3N Bohr, flat) → (N, 3) Å."""
    return np.asarray(flat_bohr, dtype=np.float64).reshape(-1, 3) * BOHR_IN_ANGSTROM


def coords_to_mdi(pos_A: np.ndarray) -> np.ndarray:
    """(N, 3) Å → flat 3N Bohr for MDI."""
    return (np.asarray(pos_A, dtype=np.float64) * ANGSTROM_TO_BOHR).ravel()


def cell_from_mdi(flat_bohr) -> np.ndarray:
    """MDI ``>CELL`` payload (9 Bohr, row vectors a, b, c) → (3, 3) Å."""
    return np.asarray(flat_bohr, dtype=np.float64).reshape(3, 3) * BOHR_IN_ANGSTROM


def cell_to_mdi(cell_A: np.ndarray) -> np.ndarray:
    """(3, 3) Å row vectors → 9 Bohr for MDI."""
    return (np.asarray(cell_A, dtype=np.float64) * ANGSTROM_TO_BOHR).ravel()


def forces_to_mdi(forces_Ha_per_A: np.ndarray) -> np.ndarray:
    """(N, 3) Hartree/Å → flat 3N Hartree/Bohr for MDI."""
    return (np.asarray(forces_Ha_per_A, dtype=np.float64) * BOHR_IN_ANGSTROM).ravel()


def forces_from_mdi(flat_Ha_per_bohr) -> np.ndarray:
    """MDI ``<FORCES`` payload (3N Hartree/Bohr) → (N, 3) Hartree/Å."""
    return np.asarray(flat_Ha_per_bohr, dtype=np.float64).reshape(-1, 3) * ANGSTROM_TO_BOHR
