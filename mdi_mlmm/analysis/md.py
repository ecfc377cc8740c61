"""Stability and flexibility of a protein–ligand MD run (``mdi-mlmm analyze-md``), with MDAnalysis:

* protein backbone RMSD (after fitting each frame on the backbone of the reference frame) and ligand
  RMSD in the same fit (the ligand is not refitted: it measures the ligand moving in the pocket),
  ``MDAnalysis.analysis.rms.RMSD`` with ``groupselections``;
* per-residue B-factors from the RMSF of the C-alpha atoms after fitting on the backbone of the average
  structure (``align.AverageStructure``, ``align.AlignTraj``, ``rms.RMSF``): B = 8π²/3 · RMSF² (Å²), and
  the Pearson correlation with the B-factors of a PDB file when it has them;
* several runs of the same system side by side (an ML/MM run next to a classical one).

Periodic boundaries: every molecule of the protein and the ligand is made whole (bonds of the topology,
or guessed) and the ligand brought to the image next to the protein, on the fly
(:mod:`mdi_mlmm.analysis.trajectory`). Lengths Å, times ps (ns in plots and reports).
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

from ..errors import AnalysisError, UserInputError
from .trajectory import frame_slice, open_universe, select, whole_solute

log = logging.getLogger(__name__)

#: default selections (MDAnalysis syntax)
DEFAULT_PROTEIN = "protein"
DEFAULT_LIGAND = "resname MOL LIG UNL"
DEFAULT_BACKBONE = "backbone"
DEFAULT_BFACTOR_ATOMS = "name CA"
#: residue names of force fields' protonation/termini variants → the PDB's
_RESNAME_ALIASES = {"HIE": "HIS", "HID": "HIS", "HIP": "HIS", "HSD": "HIS", "HSE": "HIS", "HSP": "HIS",
                    "CYX": "CYS", "CYM": "CYS", "ASH": "ASP", "GLH": "GLU", "LYN": "LYS", "ARN": "ARG",
                    "TYM": "TYR"}


def rmsf_to_bfactor(rmsf):
    """B = 8π²/3 · RMSF² (Å², RMSF in Å): the isotropic Debye–Waller factor of an atom whose mean-square
    displacement is RMSF²."""
    return 8.0 * math.pi ** 2 / 3.0 * np.asarray(rmsf, dtype=float) ** 2


def pearson(x, y) -> Optional[dict]:
    """Pearson r (and its two-sided p-value) of two equally long series; None with fewer than 3 points or
    a constant series."""
    from scipy.stats import pearsonr

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    r = pearsonr(x, y)
    return {"r": float(r.statistic), "p": float(r.pvalue), "n": int(len(x))}


def _canonical(resname: str) -> str:
    name = resname.upper()
    if len(name) == 4 and name[0] in "NC" and name[1:] in _RESNAME_ALIASES.values() | set(_RESNAME_ALIASES):
        name = name[1:]  # Amber's terminal residues (NALA, CLYS, ...)
    return _RESNAME_ALIASES.get(name, name)


@dataclass
class RunData:
    """One analysed run: ``time_ps`` (n_frames), ``rmsd_backbone`` and ``rmsd_ligand`` (Å, the latter None
    without a ligand), per-residue ``resids``, ``resnames``, ``rmsf`` (Å) and ``bfactor`` (Å²)."""

    label: str
    topology: str
    trajectories: list
    time_ps: np.ndarray
    rmsd_backbone: np.ndarray
    rmsd_ligand: Optional[np.ndarray]
    resids: np.ndarray
    resnames: list
    rmsf: np.ndarray
    bfactor: np.ndarray
    n_ligand_atoms: int
    n_backbone_atoms: int
    pdb_pearson: Optional[dict] = None
    notes: list = field(default_factory=list)

    def summary(self) -> dict:
        def stats(a):
            if a is None:
                return None
            a = np.asarray(a, float)
            half = a[len(a) // 2:]
            return {"mean": float(a.mean()), "sd": float(a.std()), "max": float(a.max()), "final": float(a[-1]),
                    "mean_second_half": float(half.mean())}

        return {"label": self.label, "topology": self.topology, "trajectories": self.trajectories,
                "n_frames": int(len(self.time_ps)), "time_ns": [float(self.time_ps[0] / 1e3),
                                                                  float(self.time_ps[-1] / 1e3)],
                "backbone_atoms": self.n_backbone_atoms, "ligand_heavy_atoms": self.n_ligand_atoms,
                "rmsd_backbone_A": stats(self.rmsd_backbone), "rmsd_ligand_A": stats(self.rmsd_ligand),
                "rmsf_mean_A": float(self.rmsf.mean()), "bfactor_mean_A2": float(self.bfactor.mean()),
                "pearson_vs_pdb": self.pdb_pearson, "notes": self.notes}


def analyze_run(topology, trajectories, *, label: str = "run", protein: str = DEFAULT_PROTEIN,
                ligand: Optional[str] = None, backbone: str = DEFAULT_BACKBONE,
                bfactor_atoms: str = DEFAULT_BFACTOR_ATOMS, start: Optional[int] = None,
                stop: Optional[int] = None, step: Optional[int] = None, pdb=None) -> RunData:
    """RMSD, RMSF and B-factors of one run (see the module). ``ligand``: MDAnalysis selection of the
    ligand (None: ``resname MOL LIG UNL`` when present, else no ligand); its hydrogens are left out of the
    RMSD. ``pdb``: a PDB whose B-factors (of the ``bfactor_atoms``, matched to the run's residues in
    order) are correlated with the computed ones."""
    import MDAnalysis as mda
    from MDAnalysis.analysis import align, rms
    from MDAnalysis.coordinates.memory import MemoryReader

    trajectories = [str(t) for t in ([trajectories] if isinstance(trajectories, (str, Path)) else trajectories)]
    if not trajectories:
        raise UserInputError("give at least one trajectory")
    u = open_universe(topology, trajectories)
    prot = select(u.atoms, protein, "--protein")
    explicit = ligand is not None
    lig_all = select(u.atoms, ligand if explicit else DEFAULT_LIGAND, "--ligand", required=explicit)
    lig_all = lig_all - prot
    if explicit and lig_all.n_atoms == 0:
        raise UserInputError(f"--ligand {ligand!r} selects only protein atoms")
    solute = prot + lig_all  # in this order: the protein first in the merged solute below
    whole_solute(u, solute, prot, lig_all)
    frames = frame_slice(len(u.trajectory), start, stop, step)
    coords = np.empty((len(frames), solute.n_atoms, 3), dtype=np.float32)
    times = np.empty(len(frames))
    for k, ts in enumerate(u.trajectory[frames.start:frames.stop:frames.step]):
        coords[k] = solute.positions
        times[k] = ts.time
    sol = mda.Merge(solute)
    sol.load_new(coords, format=MemoryReader)
    sel_prot = f"index 0:{prot.n_atoms - 1}"  # the protein comes first in the merged solute
    bb = select(sol.atoms, f"({sel_prot}) and ({backbone})", "--backbone")
    lig_sel = f"index {prot.n_atoms}:{solute.n_atoms - 1} and not name H*" if lig_all.n_atoms else None
    if lig_sel and sol.select_atoms(lig_sel).n_atoms == 0:
        lig_sel = f"index {prot.n_atoms}:{solute.n_atoms - 1}"  # a ligand of hydrogens only (H2)
    r = rms.RMSD(sol, sol, select=f"({sel_prot}) and ({backbone})", groupselections=[lig_sel] if lig_sel else None,
                 ref_frame=0).run()
    rmsd = r.results.rmsd
    ca = select(sol.atoms, f"({sel_prot}) and ({bfactor_atoms})", "--bfactor-atoms")
    avg = align.AverageStructure(sol, sol, select=f"({sel_prot}) and ({backbone})", ref_frame=0).run()
    align.AlignTraj(sol, avg.results.universe, select=f"({sel_prot}) and ({backbone})", in_memory=True).run()
    rmsf_atoms = rms.RMSF(ca).run().results.rmsf
    # per residue: the mean over the residue's selected atoms (one C-alpha each by default)
    resids = np.array([res.resid for res in ca.residues])
    resnames = [res.resname for res in ca.residues]
    owner = ca.resindices
    per_res = np.array([rmsf_atoms[owner == ri].mean() for ri in ca.residues.resindices])
    data = RunData(label=label, topology=str(topology), trajectories=trajectories, time_ps=times,
                   rmsd_backbone=rmsd[:, 2].copy(), rmsd_ligand=rmsd[:, 3].copy() if lig_sel else None,
                   resids=resids, resnames=resnames, rmsf=per_res, bfactor=rmsf_to_bfactor(per_res),
                   n_ligand_atoms=sol.select_atoms(lig_sel).n_atoms if lig_sel else 0, n_backbone_atoms=bb.n_atoms)
    if not lig_sel:
        data.notes.append("no ligand (no atoms of the default ligand selection): ligand RMSD not computed")
    if len(frames) < 2:
        data.notes.append("one frame only: RMSD and RMSF are zero")
    if pdb is not None:
        data.pdb_pearson, note = compare_bfactors(data, pdb, protein=protein, bfactor_atoms=bfactor_atoms)
        if note:
            data.notes.append(note)
    return data


def pdb_bfactors(pdb, *, protein: str = DEFAULT_PROTEIN, bfactor_atoms: str = DEFAULT_BFACTOR_ATOMS):
    """(resids, resnames, B-factors Å²) of the ``bfactor_atoms`` of the protein of a PDB file, one per
    residue (the first such atom of each residue: alternate locations are skipped)."""
    u = open_universe(pdb)
    if not hasattr(u.atoms, "tempfactors"):
        return np.array([]), [], np.array([])
    ag = select(u.atoms, f"({protein}) and ({bfactor_atoms})", f"--bfactor-atoms in {pdb}")
    seen, rows = set(), []
    for a in ag:
        key = (a.segid, a.resid, getattr(a, "icode", ""))
        if key not in seen:
            seen.add(key)
            rows.append((a.resid, a.resname, float(a.tempfactor)))
    return (np.array([r[0] for r in rows]), [r[1] for r in rows], np.array([r[2] for r in rows]))


def compare_bfactors(data: RunData, pdb, *, protein: str = DEFAULT_PROTEIN,
                     bfactor_atoms: str = DEFAULT_BFACTOR_ATOMS):
    """(Pearson of the run's B-factors against the PDB's or None, a note or None). Residues are paired in
    order when both have the same number (prepared structures are often renumbered), else by residue
    number; paired residues must have the same residue names (protonation variants count as one)."""
    resids, resnames, b = pdb_bfactors(pdb, protein=protein, bfactor_atoms=bfactor_atoms)
    if len(b) == 0 or np.ptp(b) == 0:
        return None, f"{pdb} has no B-factors (none, or all equal): no correlation computed"
    if len(b) == len(data.resids):
        pairs = list(zip(range(len(b)), range(len(b))))
    else:
        where = {int(r): k for k, r in enumerate(data.resids)}
        pairs = [(k, where[int(r)]) for k, r in enumerate(resids) if int(r) in where]
    bad = [(resnames[i], int(resids[i]), data.resnames[j], int(data.resids[j])) for i, j in pairs
           if _canonical(resnames[i]) != _canonical(data.resnames[j])]
    if bad or len(pairs) < 3:
        what = (f"e.g. {bad[0][0]} {bad[0][1]} in the PDB against {bad[0][2]} {bad[0][3]} in the run" if bad
                else f"{len(pairs)} residues in common")
        raise UserInputError(f"the residues of {pdb} do not match the run's ({len(b)} against {len(data.resids)}; "
                             f"{what}): give the PDB of this protein")
    i, j = np.array(pairs).T
    data.pdb_bfactor = b[i]
    data.pdb_pairs = (i, j)
    return pearson(data.bfactor[j], b[i]), None


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rmsd(path, runs: Sequence[RunData]):
    """Backbone RMSD and ligand RMSD (Å) against time (ns), one line per run."""
    plt = _plt()
    has_lig = any(r.rmsd_ligand is not None for r in runs)
    fig, axes = plt.subplots(1, 2 if has_lig else 1, figsize=(11 if has_lig else 6, 4), squeeze=False)
    for r in runs:
        axes[0, 0].plot(r.time_ps / 1e3, r.rmsd_backbone, label=r.label, lw=1)
        if has_lig and r.rmsd_ligand is not None:
            axes[0, 1].plot(r.time_ps / 1e3, r.rmsd_ligand, label=r.label, lw=1)
    axes[0, 0].set_title("protein backbone RMSD")
    if has_lig:
        axes[0, 1].set_title("ligand RMSD (heavy atoms, fit on backbone)")
    for ax in axes[0]:
        ax.set_xlabel("time (ns)")
        ax.set_ylabel("RMSD (Å)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bfactors(path, runs: Sequence[RunData]):
    """Per-residue B-factors (Å²) of every run, with the PDB's when given."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 4))
    for r in runs:
        ax.plot(r.resids, r.bfactor, label=f"{r.label}" + (f" (r = {r.pdb_pearson['r']:.2f} vs PDB)"
                                                          if r.pdb_pearson else ""), lw=1)
    ref = next((r for r in runs if getattr(r, "pdb_bfactor", None) is not None), None)
    if ref is not None:
        ax.plot(ref.resids[ref.pdb_pairs[1]], ref.pdb_bfactor, "k--", lw=1, label="PDB")
    ax.set_xlabel("residue")
    ax.set_ylabel("B-factor (Å²) = 8π²/3 · RMSF²")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass
class MDAnalysisReport:
    """What :func:`analyze_md` wrote: the runs, the comparison between the first two, and the files."""

    runs: list
    comparison: Optional[dict]
    out: Path
    files: dict

    def __str__(self):
        lines = []
        for r in self.runs:
            s = r.summary()
            lig = s["rmsd_ligand_A"]
            lines.append(f"{r.label}: {s['n_frames']} frames, backbone RMSD {s['rmsd_backbone_A']['mean']:.2f} ± "
                         f"{s['rmsd_backbone_A']['sd']:.2f} Å"
                         + (f", ligand RMSD {lig['mean']:.2f} ± {lig['sd']:.2f} Å" if lig else "")
                         + f", mean B {s['bfactor_mean_A2']:.1f} Å²"
                         + (f", Pearson r vs PDB {s['pearson_vs_pdb']['r']:.2f}" if s["pearson_vs_pdb"] else ""))
        return "\n".join(lines)


def compare_runs(a: RunData, b: RunData) -> dict:
    """Differences of run ``a`` from run ``b`` (mean RMSDs, B-factors) and the Pearson r of their per-residue
    B-factors (same residues required)."""
    out = {"runs": [a.label, b.label],
           "rmsd_backbone_mean_diff_A": float(a.rmsd_backbone.mean() - b.rmsd_backbone.mean())}
    if a.rmsd_ligand is not None and b.rmsd_ligand is not None:
        out["rmsd_ligand_mean_diff_A"] = float(a.rmsd_ligand.mean() - b.rmsd_ligand.mean())
    if len(a.resids) == len(b.resids):
        out["bfactor_pearson"] = pearson(a.bfactor, b.bfactor)
        out["bfactor_mean_diff_A2"] = float(a.bfactor.mean() - b.bfactor.mean())
    else:
        out["note"] = f"different residues ({len(a.resids)} against {len(b.resids)}): B-factors not compared"
    return out


def write_report(out, runs: Sequence[RunData], comparison: Optional[dict], pdb=None) -> dict:
    """summary.json, report.md, rmsd.png, bfactors.png, rmsd.csv, bfactors.csv in ``out``; returns
    {kind: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary": out / "summary.json", "report": out / "report.md", "rmsd_plot": out / "rmsd.png",
             "bfactor_plot": out / "bfactors.png", "rmsd_csv": out / "rmsd.csv", "bfactor_csv": out / "bfactors.csv"}
    plot_rmsd(files["rmsd_plot"], runs)
    plot_bfactors(files["bfactor_plot"], runs)
    with open(files["rmsd_csv"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "time_ps", "rmsd_backbone_A", "rmsd_ligand_A"])
        for r in runs:
            for k in range(len(r.time_ps)):
                w.writerow([r.label, f"{r.time_ps[k]:.3f}", f"{r.rmsd_backbone[k]:.4f}",
                            "" if r.rmsd_ligand is None else f"{r.rmsd_ligand[k]:.4f}"])
    with open(files["bfactor_csv"], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "resid", "resname", "rmsf_A", "bfactor_A2"])
        for r in runs:
            for k in range(len(r.resids)):
                w.writerow([r.label, int(r.resids[k]), r.resnames[k], f"{r.rmsf[k]:.4f}", f"{r.bfactor[k]:.3f}"])
    summary = {"format": "mdi_mlmm.analyze_md/1", "pdb": None if pdb is None else str(pdb),
               "runs": [r.summary() for r in runs], "comparison": comparison,
               "definitions": {"rmsd": "after fitting each frame's backbone on the run's first analysed frame; "
                                       "ligand heavy atoms in that fit, not refitted",
                               "bfactor": "8π²/3·RMSF² of the C-alpha (by default) after fitting on the average "
                                          "backbone"}}
    files["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["# MD analysis", "", "| run | frames | time (ns) | backbone RMSD (Å) | ligand RMSD (Å) | "
             "mean B (Å²) | Pearson r vs PDB |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r.summary()
        lig = s["rmsd_ligand_A"]
        pr = s["pearson_vs_pdb"]
        lines.append(f"| {r.label} | {s['n_frames']} | {s['time_ns'][0]:.3f}–{s['time_ns'][1]:.3f} | "
                     f"{s['rmsd_backbone_A']['mean']:.2f} ± {s['rmsd_backbone_A']['sd']:.2f} "
                     f"(max {s['rmsd_backbone_A']['max']:.2f}) | "
                     + (f"{lig['mean']:.2f} ± {lig['sd']:.2f} (max {lig['max']:.2f})" if lig else "–")
                     + f" | {s['bfactor_mean_A2']:.1f} | " + (f"{pr['r']:.2f} (n = {pr['n']})" if pr else "–") + " |")
    if comparison:
        lines += ["", f"## {comparison['runs'][0]} against {comparison['runs'][1]}", ""]
        for k, v in comparison.items():
            if k != "runs":
                lines.append(f"- {k}: {v if not isinstance(v, float) else round(v, 3)}")
    lines += ["", "RMSD: mean ± sd over frames after fitting on the protein backbone of the first analysed frame; "
              "the ligand RMSD (heavy atoms) is in the same fit. B = 8π²/3·RMSF².", "",
              "![RMSD](rmsd.png)", "", "![B-factors](bfactors.png)", ""]
    notes = [f"- {r.label}: {n}" for r in runs for n in r.notes]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    files["report"].write_text("\n".join(lines))
    return files


def analyze_md(runs: Sequence[dict], out, *, pdb=None, **options) -> MDAnalysisReport:
    """Analyse one or more runs of the same system and write the report into ``out``. ``runs``: dicts with
    ``topology``, ``trajectories`` and ``label``; ``options``: those of :func:`analyze_run`."""
    if not runs:
        raise UserInputError("give at least one run")
    labels = [r["label"] for r in runs]
    if len(set(labels)) != len(labels):
        raise UserInputError(f"run labels must differ, got {labels}")
    data = [analyze_run(r["topology"], r["trajectories"], label=r["label"], pdb=pdb, **options) for r in runs]
    comparison = compare_runs(data[0], data[1]) if len(data) > 1 else None
    if any(len(d.time_ps) == 0 for d in data):  # pragma: no cover - frame_slice refuses it first
        raise AnalysisError("a run has no frames")
    files = write_report(out, data, comparison, pdb=pdb)
    return MDAnalysisReport(runs=data, comparison=comparison, out=Path(out), files=files)
