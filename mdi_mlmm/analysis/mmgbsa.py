"""MM-GBSA binding energies over the frames of MD runs (``mdi-mlmm mmgbsa``), with OpenMM's implicit
solvent (single-trajectory approach):

    ΔE_bind(frame) = E(complex) − E(receptor) − E(ligand)

each a potential energy of the dry Amber topology (``amber/complex.prmtop`` etc. of ``mdi-mlmm prepare``)
with a generalized-Born solvent (OBC2 = Amber igb=5 by default, or GBn2 = igb=8; the radii of the prmtop),
its ACE surface-area term, no cutoff, no periodic boundaries. The receptor and ligand coordinates are the
complex's of the same frame, so the bonded terms cancel exactly. The entropy (−TΔS) is not included, as
usual for ranking. Mean ± SEM over frames; the SEM from block averaging (the standard deviation of block
means over √blocks), which accounts for correlated frames.

The frames come from the solvated MD trajectory (GROMACS .xtc/.trr, ...): the complex atoms (by default
the first atoms of the system, as many as ``complex.prmtop`` has) are checked against the prmtop atom by
atom (atom and residue names) before any energy is computed, made whole across periodic boundaries with the
prmtop's bonds, and the ligand put next to the receptor. Energies kcal/mol.

gmx_MMPBSA (PyPI) computes the same with sander; it needs numpy < 2 and so cannot live in the project's
environment: docs/analyze_md.md shows how to run it from its own and how its numbers compare.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .. import units
from ..errors import UserInputError
from .trajectory import _check_file, add_bonds, frame_slice, open_universe, select, whole_solute

log = logging.getLogger(__name__)

#: generalized-Born models offered (OpenMM names); Amber igb equivalents in the docs
GB_MODELS = ("OBC2", "OBC1", "GBn2", "GBn", "HCT")
DEFAULT_LIGAND = "resname MOL"
DEFAULT_BLOCKS = 5
_KJ_TO_KCAL = units.factor("energy", "kj/mol", "kcal/mol")


def block_sem(x, n_blocks: int = DEFAULT_BLOCKS) -> float:
    """Standard error of the mean of a correlated series by block averaging: the series (its first
    len % n_blocks values dropped) cut into ``n_blocks`` contiguous blocks, SEM = sd(block means)/√n_blocks.
    NaN with fewer than 2 values."""
    x = np.asarray(x, dtype=float)
    nb = min(int(n_blocks), len(x))
    if nb < 2:
        return float("nan")
    size = len(x) // nb
    means = x[len(x) - nb * size:].reshape(nb, size).mean(axis=1)
    return float(means.std(ddof=1) / math.sqrt(nb))


def _names(path) -> list:
    """[(atom name, residue name)] as written in a prmtop (ParmEd; OpenMM's reader renames some atoms to PDB
    conventions, e.g. Amber's N-terminal H1 to H, which a trajectory written from the prmtop does not)."""
    import parmed

    return [(a.name, a.residue.name) for a in parmed.load_file(str(path)).atoms]


class GBEnergy:
    """Potential energy (kJ/mol, per force) of one dry Amber topology in implicit solvent."""

    def __init__(self, prmtop_path, gb: str = "OBC2", salt_molar: float = 0.0, platform: str = "CPU",
                 sa: bool = True):
        import openmm as mm
        from openmm import app, unit

        self.path = _check_file(prmtop_path, "Amber topology")
        try:
            self.prmtop = app.AmberPrmtopFile(self.path)
        except Exception as exc:  # noqa: BLE001 - a broken file is the user's
            raise UserInputError(f"cannot read Amber topology {self.path}: {' '.join(str(exc).split())}") from None
        system = self.prmtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=None,
                                          implicitSolvent=getattr(app, gb),
                                          implicitSolventSaltConc=salt_molar * unit.molar,
                                          gbsaModel="ACE" if sa else None)
        self.groups = {}
        for k, force in enumerate(system.getForces()):
            force.setForceGroup(k)
            self.groups[k] = type(force).__name__
        self.n_atoms = system.getNumParticles()
        self.names = _names(self.path)
        plat = mm.Platform.getPlatformByName(platform)
        self.context = mm.Context(system, mm.VerletIntegrator(0.001), plat)
        self._kj = unit.kilojoule_per_mole

    def energies(self, positions_A: np.ndarray) -> dict:
        """{force class name: energy kcal/mol} and "total" at ``positions_A`` (n, 3) Å."""
        self.context.setPositions(np.asarray(positions_A, dtype=float) * 0.1)  # Å → nm (OpenMM)
        out = {}
        for k, name in self.groups.items():
            e = self.context.getState(getEnergy=True, groups={k}).getPotentialEnergy()
            out[name] = out.get(name, 0.0) + e.value_in_unit(self._kj) * _KJ_TO_KCAL
        out["total"] = sum(out.values())
        return out


#: force classes → the reported components
_COMPONENTS = {"HarmonicBondForce": "bonded", "HarmonicAngleForce": "bonded", "PeriodicTorsionForce": "bonded",
               "CMAPTorsionForce": "bonded", "NonbondedForce": "vdw_elec", "GBSAOBCForce": "gb_sa",
               "CustomGBForce": "gb_sa"}


def _components(e: dict) -> dict:
    out = {"bonded": 0.0, "vdw_elec": 0.0, "gb_sa": 0.0}
    for name, v in e.items():
        if name != "total":
            out[_COMPONENTS.get(name, "bonded")] += v
    out["total"] = e["total"]
    return out


@dataclass
class MMGBSARun:
    """The per-frame binding energies of one run (kcal/mol): ``dE`` {component: array}, ``frames``,
    ``time_ps``."""

    label: str
    frames: np.ndarray
    time_ps: np.ndarray
    dE: dict
    n_blocks: int = DEFAULT_BLOCKS
    notes: list = field(default_factory=list)

    def stats(self, component: str = "total") -> dict:
        x = self.dE[component]
        return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                "sem_block": block_sem(x, self.n_blocks), "blocks": min(self.n_blocks, len(x)),
                "sem_naive": float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan"),
                "n_frames": int(len(x))}

    def summary(self) -> dict:
        return {"label": self.label, "n_frames": int(len(self.frames)), "blocks": self.n_blocks,
                "dE_kcal_mol": {c: self.stats(c) for c in self.dE}, "notes": self.notes}


class ComplexMapping:
    """Where the dry complex, receptor and ligand atoms are in a solvated trajectory, checked name by name
    against their prmtops (:class:`GBEnergy` of each)."""

    def __init__(self, u, complex_prmtop, receptor_prmtop, ligand_prmtop, *, complex_selection: Optional[str],
                 ligand_selection: str):
        n_c = complex_prmtop.n_atoms
        if complex_selection:
            cplx = select(u.atoms, complex_selection, "--complex")
        else:
            if u.atoms.n_atoms < n_c:
                raise UserInputError(f"the trajectory has {u.atoms.n_atoms} atoms, fewer than the complex "
                                     f"topology's {n_c}: not this system")
            cplx = u.atoms[:n_c]
        _same(cplx, complex_prmtop.names, "complex")
        lig = select(cplx, ligand_selection, "--ligand")
        rec = cplx - lig
        _same(rec, receptor_prmtop.names, "receptor")
        _same(lig, ligand_prmtop.names, "ligand")
        pos = {int(i): k for k, i in enumerate(cplx.indices)}
        self.complex, self.receptor, self.ligand = cplx, rec, lig
        self.rec_idx = np.array([pos[int(i)] for i in rec.indices])
        self.lig_idx = np.array([pos[int(i)] for i in lig.indices])
        # bonds of the complex (for making it whole when the trajectory's topology has none)
        bonds = [(b.atom1.index, b.atom2.index) for b in complex_prmtop.prmtop.topology.bonds()]
        add_bonds(u, np.array([(cplx.indices[a], cplx.indices[b]) for a, b in bonds], dtype=int).reshape(-1, 2))


def _same(ag, names: list, what: str) -> None:
    if ag.n_atoms != len(names):
        raise UserInputError(f"the trajectory's {what} has {ag.n_atoms} atoms but its prmtop has {len(names)}: "
                             "not the same system (check --complex/--ligand)")
    for k, (a, (name, resname)) in enumerate(zip(ag, names)):
        if a.name != name or a.resname.strip() != resname.strip():
            raise UserInputError(f"atom {k + 1} of the {what} is {a.name} of {a.resname} {a.resid} in the trajectory "
                                 f"but {name} of {resname} in its prmtop: not the same atom order")


def mmgbsa_run(topology, trajectories, complex_prmtop, receptor_prmtop, ligand_prmtop, *, label: str = "run",
               complex_selection: Optional[str] = None, ligand: str = DEFAULT_LIGAND, gb: str = "OBC2",
               salt_molar: float = 0.0, start: Optional[int] = None, stop: Optional[int] = None,
               step: Optional[int] = None, n_blocks: int = DEFAULT_BLOCKS, platform: str = "CPU",
               _energies: Optional[tuple] = None) -> MMGBSARun:
    """Per-frame MM-GBSA binding energies of one trajectory (see the module)."""
    if gb not in GB_MODELS:
        raise UserInputError(f"unknown GB model {gb!r}; choose {', '.join(GB_MODELS)}")
    trajectories = [str(t) for t in ([trajectories] if isinstance(trajectories, (str, Path)) else trajectories)]
    if not trajectories:
        raise UserInputError("give at least one trajectory")
    ec, er, el = _energies or (GBEnergy(complex_prmtop, gb, salt_molar, platform),
                               GBEnergy(receptor_prmtop, gb, salt_molar, platform),
                               GBEnergy(ligand_prmtop, gb, salt_molar, platform))
    u = open_universe(topology, trajectories)
    m = ComplexMapping(u, ec, er, el, complex_selection=complex_selection,
                       ligand_selection=ligand)
    whole_solute(u, m.complex, m.receptor, m.ligand)
    frames = frame_slice(len(u.trajectory), start, stop, step)
    rows, times = [], []
    for ts in u.trajectory[frames.start:frames.stop:frames.step]:
        x = m.complex.positions.astype(float)
        c, r, l = (_components(ec.energies(x)), _components(er.energies(x[m.rec_idx])),
                   _components(el.energies(x[m.lig_idx])))
        rows.append({k: c[k] - r[k] - l[k] for k in c})
        times.append(ts.time)
    dE = {k: np.array([row[k] for row in rows]) for k in rows[0]}
    return MMGBSARun(label=label, frames=np.array(list(frames)), time_ps=np.array(times), dE=dE,
                     n_blocks=n_blocks)


@dataclass
class MMGBSAReport:
    runs: list
    out: Path
    files: dict
    gb: str
    salt_molar: float

    def __str__(self):
        lines = []
        for r in self.runs:
            s = r.stats()
            lines.append(f"{r.label}: ΔE_bind(MM-GBSA, {self.gb}) = {s['mean']:.2f} ± {s['sem_block']:.2f} kcal/mol "
                         f"(SEM, {s['blocks']} blocks; sd {s['sd']:.2f}; {s['n_frames']} frames)")
        if len(self.runs) > 1:
            a, b = self.runs[0].stats(), self.runs[1].stats()
            lines.append(f"{self.runs[0].label} − {self.runs[1].label}: {a['mean'] - b['mean']:.2f} ± "
                         f"{math.hypot(a['sem_block'], b['sem_block']):.2f} kcal/mol")
        return "\n".join(lines)


def _plot(path, runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        s = r.stats()
        a1.plot(r.frames, r.dE["total"], lw=1, label=f"{r.label}: {s['mean']:.2f} ± {s['sem_block']:.2f}")
        a2.hist(r.dE["total"], bins=max(5, min(40, len(r.frames) // 3)), alpha=0.5, label=r.label)
    a1.set_xlabel("frame")
    a1.set_ylabel("ΔE_bind (kcal/mol)")
    a1.legend()
    a2.set_xlabel("ΔE_bind (kcal/mol)")
    a2.set_ylabel("frames")
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mmgbsa(runs: Sequence[dict], out, *, complex_prmtop, receptor_prmtop, ligand_prmtop, gb: str = "OBC2",
           salt_molar: float = 0.0, platform: str = "CPU", **options) -> MMGBSAReport:
    """MM-GBSA of one or more runs of the same complex (e.g. ML/MM and classical); writes mmgbsa.json,
    mmgbsa.md, mmgbsa_frames.csv and mmgbsa.png into ``out``. ``runs``: dicts with ``topology``,
    ``trajectories``, ``label``; ``options``: those of :func:`mmgbsa_run`."""
    if not runs:
        raise UserInputError("give at least one run")
    labels = [r["label"] for r in runs]
    if len(set(labels)) != len(labels):
        raise UserInputError(f"run labels must differ, got {labels}")
    if gb not in GB_MODELS:
        raise UserInputError(f"unknown GB model {gb!r}; choose {', '.join(GB_MODELS)}")
    energies = (GBEnergy(complex_prmtop, gb, salt_molar, platform), GBEnergy(receptor_prmtop, gb, salt_molar, platform),
                GBEnergy(ligand_prmtop, gb, salt_molar, platform))
    res = [mmgbsa_run(r["topology"], r["trajectories"], complex_prmtop, receptor_prmtop, ligand_prmtop,
                      label=r["label"], gb=gb, salt_molar=salt_molar, _energies=energies, **options) for r in runs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary": out / "mmgbsa.json", "report": out / "mmgbsa.md", "frames": out / "mmgbsa_frames.csv",
             "plot": out / "mmgbsa.png"}
    with open(files["frames"], "w", newline="") as fh:
        w = csv.writer(fh)
        comps = list(res[0].dE)
        w.writerow(["run", "frame", "time_ps", *[f"dE_{c}_kcal_mol" for c in comps]])
        for r in res:
            for k in range(len(r.frames)):
                w.writerow([r.label, int(r.frames[k]), f"{r.time_ps[k]:.3f}", *[f"{r.dE[c][k]:.4f}" for c in comps]])
    summary = {"format": "mdi_mlmm.mmgbsa/1", "method": f"MM-GBSA, OpenMM {gb}, ACE surface term, no cutoff, "
               "single trajectory, no entropy", "gb": gb, "salt_molar": salt_molar,
               "prmtops": {"complex": str(complex_prmtop), "receptor": str(receptor_prmtop),
                           "ligand": str(ligand_prmtop)}, "runs": [r.summary() for r in res]}
    if len(res) > 1:
        a, b = res[0].stats(), res[1].stats()
        summary["difference"] = {"runs": labels[:2], "mean": a["mean"] - b["mean"],
                                 "sem_block": math.hypot(a["sem_block"], b["sem_block"])}
    files["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    _plot(files["plot"], res)
    lines = ["# MM-GBSA", "", f"OpenMM implicit solvent {gb} (ACE surface term), salt {salt_molar} M, no cutoff; "
             "single-trajectory ΔE_bind = E(complex) − E(receptor) − E(ligand), no entropy term; kcal/mol; "
             "SEM by block averaging.", "",
             "| run | frames | ΔE_bind | SEM (blocks) | sd | ΔE vdW+elec | ΔG GB+SA | Δ bonded |", "|---|---|---|---|---|---|---|---|"]
    for r in res:
        s = r.stats()
        lines.append(f"| {r.label} | {s['n_frames']} | {s['mean']:.2f} | {s['sem_block']:.2f} ({s['blocks']}) | {s['sd']:.2f} | "
                     f"{r.stats('vdw_elec')['mean']:.2f} | {r.stats('gb_sa')['mean']:.2f} | {r.stats('bonded')['mean']:.2g} |")
    if "difference" in summary:
        d = summary["difference"]
        lines += ["", f"{d['runs'][0]} − {d['runs'][1]}: {d['mean']:.2f} ± {d['sem_block']:.2f} kcal/mol"]
    lines += ["", "![MM-GBSA](mmgbsa.png)", ""]
    files["report"].write_text("\n".join(lines))
    return MMGBSAReport(runs=res, out=out, files=files, gb=gb, salt_molar=salt_molar)
