"""Figures of a training run step by step: the loss a user watches and the weight underneath."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_loss_and_sigma"]


def plot_loss_and_sigma(
    loss: Sequence[float],
    sigma: Sequence[float],
    steps_per_epoch: int | None = None,
    figsize: tuple[float, float] = (7, 4.2),
) -> Figure:
    """Loss (top) and sigma (bottom) after each step; steps where sigma is NaN are shaded.

    steps_per_epoch, if given, draws a faint line at every epoch boundary.
    """
    loss = np.asarray(loss, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if loss.ndim != 1 or loss.size == 0 or loss.shape != sigma.shape:
        raise ValueError(
            f"loss and sigma must be 1-D with the same non-zero length, got shapes "
            f"{loss.shape} and {sigma.shape}"
        )
    if steps_per_epoch is not None and (
        isinstance(steps_per_epoch, bool)
        or not isinstance(steps_per_epoch, int)
        or steps_per_epoch < 1
    ):
        raise ValueError(f"steps_per_epoch must be an int >= 1 or None, got {steps_per_epoch!r}")
    steps = np.arange(1, loss.size + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=figsize, sharex=True, layout="constrained")
    top.plot(steps, loss, color="tab:red", lw=1.5, label="loss (as Keras reports it)")
    top.set_ylabel("loss")
    # Markers: a run that turns NaN after a few steps leaves only a few points to see.
    bottom.plot(steps, sigma, color="tab:blue", lw=1.5, marker="o", ms=3, label=r"$\sigma$")
    bottom.set_ylabel(r"$\sigma$")
    bottom.set_xlabel("training step")
    nan = np.flatnonzero(np.isnan(sigma))
    if nan.size:
        # A NaN draws nothing, which would read as "no data": shade where sigma is NaN instead.
        first = int(nan[0]) + 1
        for i, ax in enumerate((top, bottom)):
            ax.axvspan(
                first - 0.5,
                steps[-1] + 0.5,
                color="0.85",
                zorder=0,
                label=rf"$\sigma$ = NaN from step {first}" if i else None,
            )
    if steps_per_epoch is not None:
        for boundary in range(steps_per_epoch, loss.size, steps_per_epoch):
            for ax in (top, bottom):
                ax.axvline(boundary + 0.5, color="0.6", lw=0.6, ls=":")
    top.set_ylim(bottom=0)
    top.legend(fontsize="small", loc="upper right")
    bottom.legend(fontsize="small", loc="upper right")
    return fig
