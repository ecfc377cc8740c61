"""PNG plots of a hydration run: dH/dλ, MBAR overlap, convergence, E_ML distributions."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def dhdl_plot(path: Path, d_list, plan):
    """⟨dH/dλ⟩ per window for the coulomb and vdW components (kcal/mol), against window index."""
    from .. import units

    plt = _plt()
    kT = units.kT_kcal(plan.temperature)
    means = np.array([d.mean().to_numpy() for d in d_list]) * kT
    errs = np.array([d.std().to_numpy() / np.sqrt(max(len(d), 1)) for d in d_list]) * kT
    fig, ax = plt.subplots(figsize=(6.4, 4))
    x = np.arange(len(d_list))
    for j, name in enumerate(d_list[0].columns):
        ax.errorbar(x, means[:, j], yerr=errs[:, j], marker="o", capsize=3, label=str(name))
    ax.set_xlabel("λ window (0 = coupled)")
    ax.set_ylabel("⟨dH/dλ⟩ (kcal/mol)")
    ax.set_title("dH/dλ per window")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlap_plot(path: Path, mbar):
    plt = _plt()
    from alchemlyb.visualisation import plot_mbar_overlap_matrix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = plot_mbar_overlap_matrix(mbar.overlap_matrix)
    ax.figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(ax.figure)


def convergence_plot(path: Path, u_list, plan):
    plt = _plt()
    from alchemlyb.visualisation import plot_convergence

    from .free_energy import convergence

    df = convergence(u_list, plan.temperature, num=5)
    ax = plot_convergence(df, units="kcal/mol")
    ax.set_title("ΔG_decouple, forward / backward (MBAR)")
    ax.figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(ax.figure)


def e_ml_plot(path: Path, series: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for label, x in series.items():
        if x is not None and len(x):
            ax.hist(x, bins=int(min(40, max(8, len(x) // 8))), density=True, alpha=0.5,
                    label=f"{label}: ⟨E⟩ = {np.mean(x):.2f}")
    ax.set_xlabel("E_ML (kcal/mol, absolute)")
    ax.set_ylabel("density")
    ax.set_title("E_ML: solute in water vs gas phase")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_all(out: Path, est: dict, u_list, plan, res: dict, d_list=None) -> dict:
    """Every plot that the data allows; returns {file name: description}. Failures are logged, not fatal."""
    made = {}
    jobs = [("dhdl.png", "dH/dλ per window", lambda p: dhdl_plot(p, d_list, plan)),
            ("overlap.png", "MBAR overlap matrix", lambda p: overlap_plot(p, est["_mbar"]) if "_mbar" in est else None),
            ]
    if (res.get("min_neighbour_overlap") or 0) >= 0.01:  # meaningless (and slow) without overlap
        jobs.append(("convergence.png", "forward/backward convergence", lambda p: convergence_plot(p, u_list, plan)))
    else:
        log.warning("no convergence plot: neighbouring windows barely overlap (add windows or sample longer)")
    series = res.get("_series")
    if series and any(v is not None for v in series.values()):
        jobs.append(("e_ml.png", "E_ML distributions water vs gas", lambda p: e_ml_plot(p, series)))
    for name, desc, fn in jobs:
        try:
            fn(out / name)
            if (out / name).exists():
                made[name] = desc
        except Exception as exc:  # a plot must never sink the numbers
            log.warning("plot %s failed: %s", name, exc)
    return made
