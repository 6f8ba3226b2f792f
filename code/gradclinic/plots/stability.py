"""Figures for chapter 4: the unsafe band for |x| > 1 and gradient size against sigma."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from gradclinic.data import bump_formula_dsigma
from gradclinic.plots.bump import plot_bump

__all__ = ["plot_epochs_vs_sigma", "plot_gradient_vs_sigma", "plot_unsafe_band"]


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
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return ax


def plot_gradient_vs_sigma(
    sigmas: Sequence[float], ax: Axes | None = None, x_max: float = 1.0, points: int = 401
) -> Axes:
    """Mean |df/dsigma| over x in (-x_max, x_max) against sigma, log-log, with a 1/sigma^2 line."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if sigmas.ndim != 1 or sigmas.size < 2 or not np.all(sigmas > 0):
        raise ValueError(f"sigmas must be at least two numbers > 0, got {sigmas!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    # Open interval: at x^2 = sigma = 1 the formula is 0/0.
    x = np.linspace(-x_max, x_max, points)[1:-1]
    mean_abs = np.array([np.abs(bump_formula_dsigma(x, s)).mean() for s in sigmas])
    ax.loglog(
        sigmas, mean_abs, "o-", color="tab:green", label=r"mean $|\partial f/\partial\sigma|$"
    )
    large = sigmas >= 2
    if large.any():
        # The reference line is anchored at the largest sigma so it overlays the tail.
        anchor = mean_abs[-1] * sigmas[-1] ** 2
        ax.loglog(
            sigmas[large], anchor / sigmas[large] ** 2, "k--", lw=1, label=r"$\propto 1/\sigma^2$"
        )
    ax.set_xlabel(r"$\sigma$")
    ax.set_ylabel(rf"mean over $|x| < {x_max:g}$")
    ax.legend(fontsize="small")
    return ax


def plot_epochs_vs_sigma(
    epochs: Mapping[str, Sequence[int | None]],
    sigmas: Sequence[float],
    max_epochs: int,
    ax: Axes | None = None,
) -> Axes:
    """Epochs each labelled setup needed to get within 1 % of sigma; unreached runs sit at the cap."""
    if not epochs:
        raise ValueError("epochs must map at least one label to a list of epoch counts")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    for label, counts in epochs.items():
        if len(counts) != len(sigmas):
            raise ValueError(
                f"epochs[{label!r}] must have one entry per sigma ({len(sigmas)}), got {len(counts)}"
            )
        values = np.array([max_epochs if c is None else c for c in counts], dtype=float)
        (line,) = ax.plot(sigmas, values, "o-", label=label)
        missed = np.array([c is None for c in counts])
        ax.plot(np.asarray(sigmas)[missed], values[missed], "x", ms=10, color=line.get_color())
    ax.axhline(max_epochs, color="0.5", lw=0.8, ls=":", label=f"not reached in {max_epochs}")
    ax.set_xscale("log")
    ax.set_xticks(list(sigmas), [f"{s:g}" for s in sigmas])
    ax.set_xlabel(r"true $\sigma$")
    ax.set_ylabel("epochs to 1 % error")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax
