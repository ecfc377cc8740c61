"""PNG plots of a hydration run: dH/dλ per λ component against λ with error bars (alchemlyb's TI means;
its ``plot_ti_dhdl`` has no error bars), and with alchemlyb's ``visualisation``: the MBAR overlap matrix
(``plot_mbar_overlap_matrix``) and forward/backward convergence (``plot_convergence``); the E_ML
distributions in water and gas (histograms)."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from ..errors import Interrupted

log = logging.getLogger(__name__)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _per_component(frame):
    """[(component, λ values, column)] of an alchemlyb TI frame (``ti.dhdl`` or the per-state standard errors): for each
    λ component the states over which it changes, as alchemlyb's ``TI.separate_dhdl`` selects them."""
    names = list(frame.index.names)
    if len(names) == 1:
        return [(str(frame.columns[0]), frame.index.to_numpy(dtype=float), frame.iloc[:, 0].to_numpy())]
    lam = frame.reset_index()[names].to_numpy(dtype=float)
    changed = np.diff(lam, axis=0) != 0
    mask = np.zeros_like(lam, dtype=bool)
    mask[:-1] |= changed
    mask[1:] |= changed
    return [(str(frame.columns[i]), lam[mask[:, i], i], frame.iloc[mask[:, i], i].to_numpy())
            for i in range(len(names)) if mask[:, i].any()]


def dhdl_plot(path: Path, ti, d_list, temperature: float):
    """⟨dH/dλ⟩ (kcal/mol) of each λ component against that component's λ, one panel per component, with
    the standard error of each mean (of the decorrelated samples) as error bars; the shaded area is the
    trapezoid integral, the component's share of ΔG_decouple (TI), given in the panel's title.

    The means are alchemlyb's (``TI.dhdl``, split per component as ``TI.separate_dhdl`` does); alchemlyb's
    own ``plot_ti_dhdl`` draws no error bars, hence this plot."""
    import pandas as pd

    from .. import units

    plt = _plt()
    kT = units.kT_kcal(temperature)
    d_all = pd.concat(list(d_list))
    sem = d_all.groupby(level=d_all.index.names[1:]).sem()  # as alchemlyb's TI computes its variances
    errs = {c: e * kT for c, _, e in _per_component(sem)}
    comps = _per_component(ti.dhdl)
    names = {"coul": "Coulomb (charges off)", "vdw": "Lennard-Jones (soft-core)"}
    fig, axes = plt.subplots(1, len(comps), figsize=(4.2 * len(comps), 4), squeeze=False, sharey=True)
    for ax, (c, x, y) in zip(axes[0], comps):
        y = y * kT
        ax.fill_between(x, 0, y, alpha=0.2)
        ax.errorbar(x, y, yerr=errs[c], marker="o", ms=4, capsize=3, lw=1.2)
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xlabel(f"λ ({c})")
        ax.set_xlim(-0.03, 1.03)
        ax.set_title(f"{names.get(c, c)}: ∫ = {float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2):.2f} kcal/mol", fontsize=10)
    axes[0][0].set_ylabel("⟨dH/dλ⟩ (kcal/mol), mean ± s.e.")
    fig.suptitle("dH/dλ per λ component (λ = 0 coupled, 1 decoupled)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def overlap_plot(path: Path, matrix):
    """MBAR's overlap matrix (list of lists: the estimates' ``overlap``, at equal samples per window)."""
    plt = _plt()
    from alchemlyb.visualisation import plot_mbar_overlap_matrix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = plot_mbar_overlap_matrix(np.asarray(matrix))
    ax.figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(ax.figure)


def convergence_plot(path: Path, u_list, plan, boundary=None):
    """Forward/backward ΔG_decouple (MBAR); of a split decoupling (``boundary``) the sum of its stages'."""
    plt = _plt()
    from alchemlyb.visualisation import plot_convergence

    from .free_energy import convergence

    df = convergence(u_list, plan.temperature, num=5, boundary=boundary)
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


def make_all(out: Path, est, u_list, d_list, plan, *, e_ml: dict | None = None) -> dict:
    """Every plot that the data allows; returns {file name: description}. Failures are logged, not fatal.

    est: the :class:`~.results.FreeEnergyEstimates` of the run; u_list, d_list: the decorrelated
    per-window frames; e_ml: the E_ML series (water, decoupled, gas) of an ML run."""
    made = {}
    jobs = [("dhdl.png", "dH/dλ per λ component (TI)", lambda p: dhdl_plot(p, est.ti, d_list, plan.temperature))]
    if est.mbar is not None and est.overlap is not None:
        jobs.append(("overlap.png", "MBAR overlap matrix", lambda p: overlap_plot(p, est.overlap)))
    for k, stage in enumerate(getattr(est, "stages", ())):   # a split decoupling: one matrix per stage
        if stage.mbar is not None and stage.overlap is not None:
            jobs.append((f"overlap_stage{k + 1}.png", f"MBAR overlap matrix of stage {k + 1} (states "
                         f"{stage.states[0]}–{stage.states[-1]})", lambda p, m=stage.overlap: overlap_plot(p, m)))
    if (est.min_neighbour_overlap or 0) >= 0.01:  # meaningless (and slow) without overlap
        jobs.append(("convergence.png", "forward/backward convergence",
                     lambda p: convergence_plot(p, u_list, plan, getattr(est, "boundary", None))))
    else:
        log.warning("no convergence plot: neighbouring windows barely overlap (add windows or sample longer)")
    if e_ml and any(v is not None for v in e_ml.values()):
        jobs.append(("e_ml.png", "E_ML distributions water vs gas", lambda p: e_ml_plot(p, e_ml)))
    for name, desc, fn in jobs:
        try:
            fn(out / name)
            if (out / name).exists():
                made[name] = desc
        except Interrupted:       # SIGTERM/SIGINT during a slow plot: stop, do not carry on
            raise
        except Exception as exc:  # a plot must never sink the numbers
            log.warning("plot %s failed: %s", name, exc)
    return made
