"""The MDI engine: serves energies and forces of any :class:`~mdi_mlmm.potentials.base.Potential`.

Knows nothing about torch: it is handed an object with ``compute(elements, positions_A,
cell_A) -> (energy_Ha, forces_Ha_per_A)`` semantics (see ``potentials.base``).

Wire units are MDI's atomic units (Bohr, Hartree, Hartree/Bohr); every conversion goes
through :mod:`mdi_mlmm.units`.

The dispatch table :data:`COMMANDS` is also the list registered with MDI, so
``MDI_Check_Command_Exists`` on the driver side sees exactly what we handle.

Commands
--------
==================== ============ ======================================================
command              data         meaning
==================== ============ ======================================================
``<NAME``            char[256]    engine name (``-name``)
``>NATOMS``          1 int        number of ML atoms (resets elements)
``<NATOMS``          1 int
``>ELEMENTS``        N int        atomic numbers
``<ELEMENTS``        N int
``>COORDS``          3N double    Bohr; may be wrapped into the cell
``<COORDS``          3N double    Bohr (as received)
``>CELL``            9 double     Bohr, rows a, b, c; enables minimum-image whole-making
``<CELL``            9 double
``>CELL_DISPL``      3 double     Bohr, cell origin (stored; irrelevant for the ML energy)
``<CELL_DISPL``      3 double
``>TOTCHARGE``       1 double     e; must be 0 unless the model takes charge
``<TOTCHARGE``       1 double
``>CHARGES``         N double     e; fixed MM charges of the ML atoms (for ``<CHARGES``)
``<CHARGES``         N double     LAMMPS ``fix mdi/qmmm potential`` mode
``>POTENTIAL_AT_NUCLEI`` N double Hartree/e; accepted and stored (mechanical embedding)
``<ENERGY``, ``<PE`` 1 double     Hartree, absolute ML energy
``<KE_ELEC``         1 double     0 (no electronic kinetic term)
``<FORCES``          3N double    Hartree/Bohr
``<STRESS``          9 double     Hartree/Bohr³: Σ r_i⊗f_i / V with whole-molecule r
                                  (LAMMPS' reading: extensive virial = value × V)
``<ENERGY_FORCES``   1+3N double  energy (Hartree) then forces (Hartree/Bohr) in one reply: one
                                  round trip per step instead of two — mdi_mlmm extension
``<ERROR``           char[1024]   last error ("" if none) — mdi_mlmm extension
``EXIT``                          end of session
==================== ============ ======================================================

Errors
------
* Bad values (NaN/inf coordinates, unsupported elements, a charge the model cannot
  take): logged, remembered; ``<ENERGY``/``<FORCES``/``<STRESS`` then answer NaN, and
  ``<ERROR`` returns the message. The session stays in sync and goes on.
* Data of the wrong length, or a command we do not know: the byte stream can no
  longer be trusted, so the engine logs the reason and exits (code 3); the driver sees
  the connection close.
* The driver disconnects without ``EXIT``: exit code 4 within the time the OS takes
  to report the closed socket (immediate for a dead local process).
"""
from __future__ import annotations

import csv
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .. import units
from ..errors import MdiMlmmError, PeerDisconnected, UnsupportedElementError, UserInputError
from ..potentials.base import SYMBOLS
from ..topology.pbc import WholeMaker
from .transport import HotCalls, Watchdog, import_mdi, parse_mdi_options, set_tcp_nodelay

log = logging.getLogger("mdi_mlmm.engine")

ERROR_LENGTH = 1024
EXIT_OK, EXIT_PROTOCOL, EXIT_DISCONNECTED = 0, 3, 4


class ProtocolError(MdiMlmmError):
    """The MDI byte stream is out of sync; the session must end."""

    exit_code = EXIT_PROTOCOL


@dataclass
class EngineState:
    natoms: Optional[int] = None
    elements: Optional[np.ndarray] = None        # (N,) int atomic numbers
    coords_A: Optional[np.ndarray] = None        # (N, 3) Å as received (maybe wrapped)
    cell_A: Optional[np.ndarray] = None          # (3, 3) Å
    cell_displ_A: np.ndarray = field(default_factory=lambda: np.zeros(3))
    total_charge: float = 0.0
    charges: Optional[np.ndarray] = None         # (N,) e
    potential_at_nuclei: Optional[np.ndarray] = None
    errors: dict = field(default_factory=dict)   # topic -> message
    result: Optional[tuple] = None               # (E_Ha, F_Ha_per_A (N,3), whole_A (N,3))


COMMANDS: dict[str, Callable[["MLEngine"], None]] = {}


def command(name: str):
    """Register a handler in :data:`COMMANDS` (the dispatch table and MDI registration list)."""

    def deco(fn):
        COMMANDS[name] = fn
        return fn

    return deco


class MLEngine:
    """One MDI session serving ``potential``.

    potential: a :class:`~mdi_mlmm.potentials.base.Potential`;
    name: reported by ``<NAME``; call_log: optional CSV path (call, E_Ha, E_kcal, ms);
    elements: optional atomic numbers preset before the driver sends any
    (for drivers that do not send ``>ELEMENTS``); charges: optional (N,) e for ``<CHARGES``.
    """

    def __init__(self, potential, name: str = "ML", call_log: Optional[str] = None,
                 elements=None, charges=None):
        self.potential = potential
        self.name = name
        self.state = EngineState()
        self.ncalls = 0
        self.done = False
        self._log_file = None
        self._log_writer = None
        if call_log:
            self._log_file = open(call_log, "w", newline="")
            self._log_writer = csv.writer(self._log_file)
            self._log_writer.writerow(["call", "natoms", "energy_hartree", "energy_kcal_mol", "ms"])
        self._symbols: Optional[list] = None   # element symbols, built once per >ELEMENTS
        if elements is not None:
            z = np.asarray(elements, dtype=int)
            self.state.natoms = len(z)
            self._set_elements(z)
        if charges is not None:
            self.state.charges = np.asarray(charges, dtype=float)
        self.mdi = None
        self.comm = None
        #: the per-step MDI calls without pymdi's per-call Python (set by serve; None: all through self.mdi)
        self.hot: Optional[HotCalls] = None
        #: the <ENERGY_FORCES reply of self._ef_for (a result tuple), built once per result; a driver that
        #: asked <ENERGY_FORCES once gets it built right after an eager evaluation, off its critical path
        self._ef_buf: Optional[np.ndarray] = None
        self._ef_for = None
        self._last_flush = 0.0
        #: evaluate as soon as >COORDS arrives: a driver that sends the coordinates early (the GROMACS
        #: host, at the start of its step) has the model run while it computes the MM forces. Turned
        #: off for the session if a driver sends >CELL after >COORDS (it would cost two evaluations).
        self.eager = True
        self._eager_unclaimed = False

    # ------------------------------------------------------------------ wire
    def _recv(self, count: int, dtype, what: str):
        mdi = self.mdi
        if count is None:
            raise ProtocolError(f"{what} received before >NATOMS: the engine does not know how many values to read")
        try:
            if dtype == mdi.MDI_DOUBLE and self.hot is not None:
                return self.hot.recv_doubles(count, self.comm)
            if dtype == mdi.MDI_DOUBLE:
                buf = np.empty(count, dtype=np.float64)
                mdi.MDI_Recv(count, dtype, self.comm, buf=buf)
                return buf
            if dtype == mdi.MDI_INT:
                buf = np.zeros(count, dtype=np.int32)
                mdi.MDI_Recv(count, dtype, self.comm, buf=buf)
                return buf
            return mdi.MDI_Recv(count, dtype, self.comm)
        except Exception as exc:  # pymdi raises a bare Exception
            raise ProtocolError(
                f"could not read the data of {what} (expected {count} values): the driver sent a different "
                f"length or type, or disconnected ({exc})"
            ) from exc

    def _send(self, data, count: int, dtype, what: str):
        mdi = self.mdi
        try:
            if dtype == mdi.MDI_DOUBLE and self.hot is not None:
                self.hot.send_doubles(data, count, self.comm)
            elif dtype in (mdi.MDI_DOUBLE, mdi.MDI_INT):
                arr = np.ascontiguousarray(data, dtype=np.float64 if dtype == mdi.MDI_DOUBLE else np.int32).ravel()
                mdi.MDI_Send(arr, count, dtype, self.comm)
            else:  # MDI_CHAR: pad to the full length, MDI sends exactly `count` bytes
                text = str(data)[: count - 1]
                mdi.MDI_Send(text + "\0" * (count - len(text)), count, dtype, self.comm)
        except Exception as exc:
            raise PeerDisconnected(f"could not send the reply to {what}: driver gone ({exc})") from exc

    # ------------------------------------------------------------- helpers
    def _need_natoms(self, what: str) -> int:
        if self.state.natoms is None:
            raise ProtocolError(f"{what} before >NATOMS (and no --elements given): cannot know the data length")
        return self.state.natoms

    def _set_error(self, topic: str, message: str):
        self.state.errors[topic] = message
        log.error("%s", message)

    def _clear_error(self, topic: str):
        self.state.errors.pop(topic, None)

    def _set_elements(self, z: np.ndarray):
        self.state.elements = z
        self.state.result = None
        self._symbols = None
        bad = [int(v) for v in z if not 0 < int(v) < len(SYMBOLS)]
        if bad:
            self._set_error("elements", f"unknown atomic numbers {sorted(set(bad))}")
            return
        self._symbols = [SYMBOLS[int(v)] for v in z]  # built once, not per step
        try:
            self.potential.check_elements(self._symbols)
            self._clear_error("elements")
        except UnsupportedElementError as exc:
            self._set_error("elements", str(exc))

    def _evaluate(self):
        """Compute (or reuse) the result for the current state; NaN when in an error state."""
        st = self.state
        n = self._need_natoms("an energy/force request")
        if st.result is not None:
            self._eager_unclaimed = False
            return st.result
        if st.coords_A is None and "coords" not in st.errors:
            self._set_error("coords", "energy/forces requested before any >COORDS")
        if st.elements is None and "elements" not in st.errors:
            self._set_error("elements", "energy/forces requested but no elements known (send >ELEMENTS)")
        if st.errors:
            nan = (float("nan"), np.full((n, 3), np.nan), np.full((n, 3), np.nan))
            return nan
        t0 = time.perf_counter()
        # whole along a minimum spanning tree of the first frame's minimum-image distances, kept
        # for later frames (hosts send whole molecules already; LAMMPS fix mdi/qm sends wrapped ones)
        if getattr(self, "_wholer", None) is None or self._wholer.n != n:
            self._wholer = WholeMaker(n)
        whole = self._wholer.whole(st.coords_A, st.cell_A)
        try:
            res = self.potential.compute(self._symbols, whole)
        except PeerDisconnected:
            raise  # a model server that went away ends the session (exit 4), not a NaN
        except MdiMlmmError as exc:
            self._set_error("compute", f"model evaluation failed: {exc}")
            return float("nan"), np.full((n, 3), np.nan), np.full((n, 3), np.nan)
        ms = (time.perf_counter() - t0) * 1e3
        energy = float(res.energy)
        forces = np.asarray(res.forces, dtype=np.float64)
        if not (np.isfinite(energy) and np.isfinite(forces).all()):
            self._set_error("compute", "model returned NaN/inf energy or forces")
            return float("nan"), np.full((n, 3), np.nan), np.full((n, 3), np.nan)
        self.ncalls += 1
        if self._log_writer:
            self._log_writer.writerow([self.ncalls, n, repr(energy),
                                       repr(energy * units.HARTREE_IN_KCAL_PER_MOL), f"{ms:.3f}"])
            now = time.monotonic()   # a flush (a write) at most every 0.2 s, not one per call
            if now - self._last_flush > 0.2:
                self._log_file.flush()
                self._last_flush = now
        log.debug("call %d: E_ML = %.10f Ha (%.3f ms)", self.ncalls, energy, ms)
        st.result = (energy, forces, whole)
        return st.result

    def _energy_forces_reply(self, result) -> np.ndarray:
        """``[E, F...]`` in MDI units (1 + 3N float64) for ``result`` (a tuple from :meth:`_evaluate`),
        built once per result into a buffer kept for the session."""
        if self._ef_for is result and self._ef_buf is not None:
            return self._ef_buf
        energy, forces, _ = result
        flat = units.forces_to_mdi(forces)
        if self._ef_buf is None or len(self._ef_buf) != 1 + flat.size:
            self._ef_buf = np.empty(1 + flat.size, dtype=np.float64)
        self._ef_buf[0] = energy
        self._ef_buf[1:] = flat
        self._ef_for = result
        return self._ef_buf

    # ------------------------------------------------------------ the loop
    def serve(self, mdi_options: str, connect_timeout: float = 120.0, nodelay: bool = True) -> int:
        """Connect as an MDI engine and answer commands until EXIT. Returns an exit code."""
        opts = parse_mdi_options(mdi_options)
        if opts["role"].upper() != "ENGINE":
            raise UserInputError(f"the engine needs '-role ENGINE' in its MDI options, got -role {opts['role']}")
        if opts["method"].upper() == "MPI":
            try:  # pymdi's MPI method rides on mpi4py, which must initialise MPI before MDI_Init
                from mpi4py import MPI  # noqa: F401
            except ImportError as exc:
                raise UserInputError("-method MPI needs mpi4py (pip install mpi4py mpich)") from exc
        self.mdi = mdi = import_mdi()
        self.name = opts.get("name", self.name)
        where = f"{opts.get('hostname', '?')}:{opts.get('port', '?')}" if opts["method"].upper() == "TCP" else opts["method"]
        log.info("engine %s (%s) connecting to the driver at %s", self.name, self.potential.describe(), where)
        with Watchdog(connect_timeout, f"no MDI driver accepted the connection at {where} within "
                                       f"{connect_timeout:g} s (is the driver running and listening?)"):
            try:
                mdi.MDI_Init(mdi_options)
            except Exception as exc:
                hint = ""
                if opts["method"].upper() == "MPI":
                    hint = (" — the MDI library from PyPI (pymdi) is built against MPI stubs, so -method MPI "
                            "cannot work with it; use -method TCP, or a pymdi built from source against MPI")
                raise UserInputError(f"MDI_Init failed for options {mdi_options!r}: {exc}{hint}") from exc
            mdi.MDI_Register_Node("@DEFAULT")
            for name in COMMANDS:
                mdi.MDI_Register_Command("@DEFAULT", name)
            self.comm = mdi.MDI_Accept_Communicator()
        if nodelay:
            n = set_tcp_nodelay()
            log.info("connected (TCP_NODELAY set on %d socket%s)", n, "" if n == 1 else "s")
        else:
            log.info("connected (TCP_NODELAY left off, as asked)")
        self.hot = HotCalls(mdi, spin_us=float(os.environ.get("MDI_MLMM_ENGINE_SPIN_US") or 0))
        if self.hot.spin_s and opts["method"].upper() == "TCP":
            log.info("spinning up to %g us for each next command: %s", self.hot.spin_s * 1e6,
                     "on" if self.hot.watch_socket() else "off (not exactly one TCP socket)")
        try:
            while not self.done:
                try:
                    cmd = self.hot.recv_command(self.comm)
                except Exception as exc:
                    raise PeerDisconnected("the driver disconnected without sending EXIT") from exc
                handler = COMMANDS.get(cmd)
                if handler is None:
                    raise ProtocolError(f"unknown MDI command {cmd!r}; supported: {' '.join(COMMANDS)}")
                handler(self)
        except ProtocolError as exc:
            log.error("protocol error, ending the session: %s", exc)
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return EXIT_PROTOCOL
        except PeerDisconnected as exc:
            log.error("%s", exc)
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return EXIT_DISCONNECTED
        finally:
            if self._log_file:
                self._log_file.close()
        log.info("EXIT received after %d model evaluations", self.ncalls)
        return EXIT_OK


# ---------------------------------------------------------------- handlers
def _mdi(e: MLEngine):
    return e.mdi


@command("<NAME")
def _name(e: MLEngine):
    e._send(e.name, _mdi(e).MDI_NAME_LENGTH, _mdi(e).MDI_CHAR, "<NAME")


@command(">NATOMS")
def _set_natoms(e: MLEngine):
    n = int(e._recv(1, _mdi(e).MDI_INT, ">NATOMS")[0])
    if n <= 0:
        raise ProtocolError(f">NATOMS must be positive, got {n}")
    if n != e.state.natoms:
        e.state.natoms = n
        e.state.elements = None
        e.state.coords_A = None
        if e.state.charges is not None and len(e.state.charges) != n:
            e.state.charges = None  # charges given at start-up survive a matching >NATOMS
        e.state.result = None
        e.state.errors.clear()


@command("<NATOMS")
def _get_natoms(e: MLEngine):
    e._send([e.state.natoms or 0], 1, _mdi(e).MDI_INT, "<NATOMS")


@command(">ELEMENTS")
def _set_elements(e: MLEngine):
    n = e._need_natoms(">ELEMENTS")
    e._set_elements(e._recv(n, _mdi(e).MDI_INT, ">ELEMENTS").astype(int))


@command("<ELEMENTS")
def _get_elements(e: MLEngine):
    n = e._need_natoms("<ELEMENTS")
    z = e.state.elements if e.state.elements is not None else np.zeros(n, dtype=int)
    e._send(z, n, _mdi(e).MDI_INT, "<ELEMENTS")


@command(">COORDS")
def _set_coords(e: MLEngine):
    n = e._need_natoms(">COORDS")
    flat = e._recv(3 * n, _mdi(e).MDI_DOUBLE, ">COORDS")
    e.state.result = None
    if not np.isfinite(flat).all():
        bad = sorted({i // 3 for i in np.flatnonzero(~np.isfinite(flat))})
        e._set_error("coords", f">COORDS contains NaN/inf for atom(s) {bad[:10]}")
        e.state.coords_A = None
        return
    e._clear_error("coords")
    e._clear_error("compute")
    e.state.coords_A = units.coords_from_mdi(flat)
    if e.eager and e.state.elements is not None and not e.state.errors:
        e._evaluate()
        e._eager_unclaimed = e.state.result is not None
        if e._ef_for is not None and e.state.result is not None:
            e._energy_forces_reply(e.state.result)


@command("<COORDS")
def _get_coords(e: MLEngine):
    n = e._need_natoms("<COORDS")
    c = e.state.coords_A if e.state.coords_A is not None else np.full((n, 3), np.nan)
    e._send(units.coords_to_mdi(c), 3 * n, _mdi(e).MDI_DOUBLE, "<COORDS")


@command(">CELL")
def _set_cell(e: MLEngine):
    flat = e._recv(9, _mdi(e).MDI_DOUBLE, ">CELL")
    if e._eager_unclaimed:   # >CELL after >COORDS: this driver's order makes eager evaluation wasteful
        e.eager = e._eager_unclaimed = False
        log.info("driver sends >CELL after >COORDS: evaluating on request from now on")
    e.state.result = None
    if not np.isfinite(flat).all():
        e._set_error("cell", ">CELL contains NaN/inf")
        return
    e._clear_error("cell")
    cell = units.cell_from_mdi(flat)
    e.state.cell_A = None if abs(np.linalg.det(cell)) < 1e-12 else cell


@command("<CELL")
def _get_cell(e: MLEngine):
    c = e.state.cell_A if e.state.cell_A is not None else np.zeros((3, 3))
    e._send(units.cell_to_mdi(c), 9, _mdi(e).MDI_DOUBLE, "<CELL")


@command(">CELL_DISPL")
def _set_cell_displ(e: MLEngine):
    e.state.cell_displ_A = e._recv(3, _mdi(e).MDI_DOUBLE, ">CELL_DISPL") * units.BOHR_IN_ANGSTROM


@command("<CELL_DISPL")
def _get_cell_displ(e: MLEngine):
    e._send(e.state.cell_displ_A * units.ANGSTROM_TO_BOHR, 3, _mdi(e).MDI_DOUBLE, "<CELL_DISPL")


@command(">TOTCHARGE")
def _set_totcharge(e: MLEngine):
    q = float(e._recv(1, _mdi(e).MDI_DOUBLE, ">TOTCHARGE")[0])
    e.state.total_charge = q
    e.state.result = None
    if abs(q) > 1e-6 and not getattr(e.potential, "accepts_charge", False):
        e._set_error("charge", f"model {e.potential.name} cannot take a net charge (got {q:g} e)")
    else:
        e._clear_error("charge")


@command("<TOTCHARGE")
def _get_totcharge(e: MLEngine):
    e._send([e.state.total_charge], 1, _mdi(e).MDI_DOUBLE, "<TOTCHARGE")


@command(">CHARGES")
def _set_charges(e: MLEngine):
    n = e._need_natoms(">CHARGES")
    e.state.charges = e._recv(n, _mdi(e).MDI_DOUBLE, ">CHARGES")


@command("<CHARGES")
def _get_charges(e: MLEngine):
    n = e._need_natoms("<CHARGES")
    q = e.state.charges
    if q is None or len(q) != n:
        e._set_error("charges", "<CHARGES requested but the engine knows no charges for the ML atoms "
                                "(start it with --charges, or send >CHARGES)")
        q = np.full(n, np.nan)
    e._send(q, n, _mdi(e).MDI_DOUBLE, "<CHARGES")


@command(">POTENTIAL_AT_NUCLEI")
def _set_potential(e: MLEngine):
    n = e._need_natoms(">POTENTIAL_AT_NUCLEI")
    e.state.potential_at_nuclei = e._recv(n, _mdi(e).MDI_DOUBLE, ">POTENTIAL_AT_NUCLEI")


@command("<ENERGY")
def _get_energy(e: MLEngine):
    energy, _, _ = e._evaluate()
    e._send([energy], 1, _mdi(e).MDI_DOUBLE, "<ENERGY")


@command("<PE")
def _get_pe(e: MLEngine):
    energy, _, _ = e._evaluate()
    e._send([energy], 1, _mdi(e).MDI_DOUBLE, "<PE")


@command("<KE_ELEC")
def _get_ke_elec(e: MLEngine):
    e._send([0.0], 1, _mdi(e).MDI_DOUBLE, "<KE_ELEC")


@command("<FORCES")
def _get_forces(e: MLEngine):
    n = e._need_natoms("<FORCES")
    _, forces, _ = e._evaluate()
    e._send(units.forces_to_mdi(forces), 3 * n, _mdi(e).MDI_DOUBLE, "<FORCES")


@command("<ENERGY_FORCES")
def _get_energy_forces(e: MLEngine):
    n = e._need_natoms("<ENERGY_FORCES")
    e._send(e._energy_forces_reply(e._evaluate()), 1 + 3 * n, _mdi(e).MDI_DOUBLE, "<ENERGY_FORCES")


@command("<STRESS")
def _get_stress(e: MLEngine):
    _, forces, whole = e._evaluate()
    cell = e.state.cell_A
    if cell is None:
        e._set_error("stress", "<STRESS requested but no >CELL was sent (stress needs a volume)")
        stress = np.full(9, np.nan)
    else:
        vol_bohr3 = abs(np.linalg.det(cell)) * units.ANGSTROM_TO_BOHR ** 3
        # Σ r⊗f in Hartree (Å × Hartree/Å); translation-invariant since Σf = 0.
        virial = np.einsum("ia,ib->ab", whole, forces)
        stress = (virial / vol_bohr3).ravel()
    e._send(stress, 9, _mdi(e).MDI_DOUBLE, "<STRESS")


@command("<ERROR")
def _get_error(e: MLEngine):
    msg = "; ".join(e.state.errors.values())
    e._send(msg[: ERROR_LENGTH - 1], ERROR_LENGTH, _mdi(e).MDI_CHAR, "<ERROR")


@command("EXIT")
def _exit(e: MLEngine):
    e.done = True
