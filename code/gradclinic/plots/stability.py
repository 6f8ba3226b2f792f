"""Figures for chapter 4: the unsafe band for |x| > 1, the loss slope and training speed against sigma."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import NullLocator

from gradclinic.plots.bump import plot_bump

# At least 11 pt when a figure up to 8 inches wide is shown at the page's width.
FONT_SIZE = 12

__all__ = [
    "plot_epochs_vs_sigma",
    "plot_loss_slope",
    "plot_sigma_trajectories",
    "plot_unsafe_band",
]


def plot_unsafe_band(
    sigma: float, ax: Axes | None = None, x_range: tuple[float, float] = (-4.0, 4.0)
) -> Axes:
    """plot_bump at one sigma > 1 with the band sqrt(sigma) < |x| < sigma shaded."""
    if not (np.isfinite(sigma) and sigma > 1):
        raise ValueError(f"sigma must be a finite number > 1 (no band otherwise), got {sigma!r}")
    ax = plot_bump(sigma, ax=ax, x_range=x_range, ylim=(-0.2, 3.0))
    root = float(np.sqrt(sigma))
    for i, (low, high) in enumerate(((-sigma, -root), (root, sigma))):
        ax.axvspan(
            low,
            high,
            color="tab:orange",
            alpha=0.25,
            label=r"selected, but $\sigma - x^2 < 0$" if i else None,
        )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE)
    for text in (ax.xaxis.label, ax.yaxis.label, ax.title):
        text.set_fontsize(FONT_SIZE)
    return ax


def plot_loss_slope(
    sigmas: Sequence[float],
    by_tape: Sequence[float],
    by_differences: Sequence[float],
    ax: Axes | None = None,
) -> Axes:
    """|dL/dsigma| against the true sigma, log-log: tape and finite differences, a 1/sigma^4 line."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    tape = np.abs(np.asarray(by_tape, dtype=np.float64))
    differences = np.abs(np.asarray(by_differences, dtype=np.float64))
    if sigmas.ndim != 1 or sigmas.size < 2 or not np.all(sigmas > 0):
        raise ValueError(f"sigmas must be at least two numbers > 0, got {sigmas!r}")
    if tape.shape != sigmas.shape or differences.shape != sigmas.shape:
        raise ValueError("by_tape and by_differences must have one slope per sigma")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    ax.loglog(sigmas, differences, "-", color="0.6", lw=4, label="finite differences of the loss")
    ax.loglog(sigmas, tape, "o", color="tab:green", label="GradientTape")
    # Anchored at the largest sigma so the line overlays the tail, where the power law holds.
    ax.loglog(
        sigmas, tape[-1] * (sigmas[-1] / sigmas) ** 4, "k--", lw=1, label=r"$\propto 1/\sigma^4$"
    )
    ax.set_xticks(list(sigmas), [f"{s:g}" for s in sigmas])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(r"true $\sigma$", fontsize=FONT_SIZE)
    ax.set_ylabel(r"$|\partial L/\partial\sigma|$ at a fixed distance", fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.legend(fontsize=FONT_SIZE)
    return ax


def plot_sigma_trajectories(
    trajectories: Mapping[str, Sequence[float]],
    true_sigma: float,
    budget_per_epoch: float,
    ax: Axes | None = None,
) -> Axes:
    """Sigma after each epoch per run, log scale, with the most a step budget allows in sigma and log sigma."""
    if not trajectories:
        raise ValueError("trajectories must map at least one label to sigma after each epoch")
    if not budget_per_epoch > 0:
        raise ValueError(f"budget_per_epoch must be > 0, got {budget_per_epoch!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    styles = ("-", "--", "-.", ":")
    start = None
    for i, (label, sigma) in enumerate(trajectories.items()):
        sigma = np.asarray(sigma, dtype=np.float64)
        start = sigma[0]
        ax.plot(np.arange(sigma.size), sigma, styles[i % len(styles)], marker=".", label=label)
    epochs = np.linspace(0, max(len(s) for s in trajectories.values()) - 1, 200)
    per_epoch = f"{budget_per_epoch:g}"
    ax.plot(
        epochs,
        start + budget_per_epoch * epochs,
        color="0.4",
        lw=0.8,
        label=f"σ₀ + {per_epoch} · epoch",
    )
    ax.plot(
        epochs,
        start * np.exp(budget_per_epoch * epochs),
        color="0.7",
        lw=0.8,
        label=f"σ₀ · exp({per_epoch} · epoch)",
    )
    ax.axhline(true_sigma, color="k", lw=0.8, ls=":", label=rf"true $\sigma = {true_sigma:g}$")
    ax.set_yscale("log")
    ax.set_ylim(start * 0.8, true_sigma * 1.6)
    ax.set_xlabel("epoch", fontsize=FONT_SIZE)
    ax.set_ylabel(r"$\sigma$", fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE)
    ax.legend(fontsize=FONT_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def plot_epochs_vs_sigma(
    epochs: Mapping[str, Sequence[int | None]],
    sigmas: Sequence[float],
    max_epochs: int,
    ax: Axes | None = None,
    legend: bool = True,
) -> Axes:
    """Grouped bars: epochs each setup needed to get within 1 % of each sigma; unreached runs hatched at the cap."""
    if not epochs:
        raise ValueError("epochs must map at least one label to a list of epoch counts")
    for label, counts in epochs.items():
        if len(counts) != len(sigmas):
            raise ValueError(
                f"epochs[{label!r}] must have one entry per sigma ({len(sigmas)}), got {len(counts)}"
            )
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5), layout="constrained")
    # The sigmas are categories, not a scale: one group of bars per sigma, one bar per setup.
    groups = np.arange(len(sigmas))
    width = 0.8 / len(epochs)
    for i, (label, counts) in enumerate(epochs.items()):
        values = np.array([max_epochs if c is None else c for c in counts], dtype=float)
        missed = [c is None for c in counts]
        bars = ax.bar(groups + (i - (len(epochs) - 1) / 2) * width, values, width, label=label)
        for bar, was_missed in zip(bars, missed, strict=True):
            if was_missed:
                bar.set_hatch("//")
                bar.set_alpha(0.5)
    ax.axhline(max_epochs, color="0.3", lw=1, ls=":", label=f"cap: not reached in {max_epochs}")
    ax.set_xticks(groups, [f"{s:g}" for s in sigmas])
    ax.set_xlabel(r"true $\sigma$", fontsize=FONT_SIZE)
    ax.set_ylabel("epochs to 1 % error", fontsize=FONT_SIZE)
    ax.tick_params(labelsize=FONT_SIZE)
    if legend:
        ax.legend(fontsize=FONT_SIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax
