"""Figures for chapters 1-3: the bump, its sigma-gradient, training curves, the animation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import HTMLWriter
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from gradclinic.data import bump_formula, bump_formula_dsigma
from gradclinic.train import TrainResult

if TYPE_CHECKING:
    from IPython.display import HTML

__all__ = [
    "animate_bump",
    "animation_alt_text",
    "band_edges",
    "band_limit",
    "plot_bump",
    "plot_sigma_per_epoch",
    "plot_sweep",
]

GUARD_COLORS = {"naive": "tab:red", "double_where": "tab:blue", "stable": "tab:green"}
# Chapter 3's text calls the x = +-sqrt(sigma) lines grey: a mid grey, distinct from black text.
SQRT_LINE_COLOR = "tab:gray"


def _new_axes(ax: Axes | None, figsize: tuple[float, float] = (7, 3.5)) -> Axes:
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


_X_RANGE = (-3.0, 3.0)
_YSCALES = ("linear", "symlog")
BAND_COLOR = "tab:orange"
BAND_LABEL = r"band $\sqrt{\sigma} < |x| < \sigma$"
EDGE_LABEL = r"$f \to e^{1/(\sigma-1)}$ at $|x| = \sigma$"


def band_edges(sigma: float) -> tuple[float, float] | None:
    """(sqrt(sigma), sigma), the band inside the support past x^2 = sigma; None if sigma <= 1."""
    if not sigma > 1:
        return None
    return float(np.sqrt(sigma)), float(sigma)


def band_limit(sigma: float) -> float:
    """f's limit as |x| rises to sigma inside the band, exp(1 / (sigma - 1)); sigma must be > 1."""
    if not sigma > 1:
        raise ValueError(f"sigma must be > 1 (no band otherwise), got {sigma!r}")
    return float(np.exp(1.0 / (sigma - 1.0)))


def _band_artists(ax: Axes) -> tuple[list[Rectangle], Line2D]:
    # x in data units, y spanning the axes: the shading fills the height whatever the scale.
    spans = [
        Rectangle(
            (0.0, 0.0),
            0.0,
            1.0,
            transform=ax.get_xaxis_transform(),
            color=BAND_COLOR,
            alpha=0.2,
            lw=0,
            label=BAND_LABEL if i else None,
        )
        for i in range(2)
    ]
    for span in spans:
        ax.add_patch(span)
    (edge,) = ax.plot([], [], "o", color="tab:red", mfc="white", ms=6, label=EDGE_LABEL)
    return spans, edge


def _update_band(spans: list[Rectangle], edge: Line2D, sigma: float) -> None:
    edges = band_edges(sigma)
    for span in spans:
        span.set_visible(edges is not None)
    if edges is None:
        edge.set_data([], [])
        return
    root, top = edges
    spans[0].set_x(-top)
    spans[0].set_width(top - root)
    spans[1].set_x(root)
    spans[1].set_width(top - root)
    limit = band_limit(sigma)
    edge.set_data([-top, top], [limit, limit])


def _draw_band(ax: Axes, sigma: float) -> None:
    if band_edges(sigma) is None:
        return
    spans, edge = _band_artists(ax)
    _update_band(spans, edge, sigma)


def _bump_curves(sigma: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # The analytic derivative, not GradientTape: the figure shows the formula itself, also where
    # the book's guarded TensorFlow functions mask it; tests check it against GradientTape.
    return bump_formula(x, sigma), bump_formula_dsigma(x, sigma)


def plot_bump(
    sigma: float,
    ax: Axes | None = None,
    x_range: tuple[float, float] = _X_RANGE,
    ylim: tuple[float, float] = (-0.2, 3.0),
    points: int = 1201,
    legend: bool = True,
    show_unselected: bool = False,
    band: bool = False,
    yscale: str = "linear",
) -> Axes:
    """Draw f and df/dsigma at one sigma with the lines x = +-sqrt(sigma) and x = +-sigma.

    show_unselected also draws the raw formula outside |x| < sigma, the branch tf.where
    evaluates but does not select. band shades sqrt(sigma) < |x| < sigma (empty unless
    sigma > 1) and marks f's limit exp(1/(sigma - 1)) at |x| = sigma; yscale "symlog" is
    linear below 1 and logarithmic above, so the band's huge values stay on the axes.
    Returns the axes, so callers can add to the figure.
    """
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if not x_range[0] < x_range[1]:
        raise ValueError(f"x_range must be (low, high) with low < high, got {x_range!r}")
    if yscale not in _YSCALES:
        raise ValueError(f"yscale must be one of {', '.join(_YSCALES)}; got {yscale!r}")
    ax = _new_axes(ax)
    x = np.linspace(x_range[0], x_range[1], points)
    f, dfds = _bump_curves(sigma, x)
    if show_unselected:
        # What tf.where's formula branch computes where the threshold does not select it.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            raw = np.exp(-sigma / (sigma - x**2))
        ax.plot(
            x,
            np.where(np.abs(x) < sigma, np.nan, raw),
            color="tab:red",
            lw=1,
            alpha=0.35,
            label="formula where not selected",
        )
    ax.plot(x, f, color="tab:red", lw=2, label=r"$f(x)$")
    ax.plot(x, dfds, color="tab:green", lw=1.5, ls=":", label=r"$\partial f / \partial\sigma$")
    root = float(np.sqrt(sigma))
    for i, xs in enumerate((-root, root)):
        ax.axvline(
            xs,
            color=SQRT_LINE_COLOR,
            ls="-",
            lw=1.2,
            label=r"$x = \pm\sqrt{\sigma}$" if i else None,
        )
    for i, xs in enumerate((-sigma, sigma)):
        ax.axvline(xs, color="tab:blue", ls="--", lw=1, label=r"$x = \pm\sigma$" if i else None)
    if band:
        _draw_band(ax, sigma)
    if yscale == "symlog":
        # Linear up to 1 keeps 0 and the small bump readable; decades above show the band.
        ax.set_yscale("symlog", linthresh=1.0, linscale=1.5)
    ax.set_xlim(*x_range)
    ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_title(rf"$\sigma = {sigma:.2f}$")
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return ax


ANIMATION_YLIM = (-0.2, 1e4)


def animation_alt_text(sigma_max: float, frames: int) -> str:
    """What animate_bump's frames show, for the page's image alt text."""
    text = (
        f"Animation in {frames} frames, sigma rising from 0 to {sigma_max:g}: the bump f"
        " (solid red) and its sigma-derivative (dotted green) on x from -5.5 to 5.5, y linear"
        " below 1 and logarithmic above, with grey lines at x = +-sqrt(sigma) and dashed blue"
        " lines at x = +-sigma. Below sigma = 1 the grey lines lie outside the blue ones and"
        " both curves stay under 1."
    )
    if sigma_max > 1:
        text += (
            " From sigma = 1 on the grey lines move inside and the band between them is shaded"
            " orange: there f falls from off the top of the axes next to sqrt(sigma) to"
            " exp(1/(sigma - 1)) at |x| = sigma, marked by open circles"
            f" ({band_limit(sigma_max):.2f} in the last frame)."
        )
    return text


def _label_controls(html: str, alt: str) -> str:
    # to_jshtml gives its buttons aria-labels but leaves the frame image without alt text and
    # the frame slider without a label: both fail WCAG 2 A (axe-core: image-alt, label).
    image, slider = '<img id="_anim_img', '<input id="_anim_slider'
    if html.count(image) != 1 or html.count(slider) != 1:
        raise RuntimeError("matplotlib's to_jshtml layout changed: cannot label the animation")
    html = html.replace(image, f'<img alt="{escape(alt, quote=True)}" id="_anim_img')
    return html.replace(slider, '<input aria-label="Animation frame (sigma)" id="_anim_slider')


def animate_bump(
    sigma_max: float = 5.0,
    frames: int = 18,
    figsize: tuple[float, float] = (7, 3.2),
    dpi: int = 100,
    fps: int = 6,
    font_size: float = 11,
) -> HTML:
    """f and df/dsigma as sigma goes from 0 to sigma_max, with the band shaded, as labelled HTML."""
    # Imported here: IPython comes with Jupyter, and the rest of gradclinic must not need it.
    from IPython.display import HTML

    if not (np.isfinite(sigma_max) and sigma_max > 0):
        raise ValueError(f"sigma_max must be a finite number > 0, got {sigma_max!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or not 2 <= frames <= 200:
        raise ValueError(f"frames must be an int from 2 to 200, got {frames!r}")
    sigmas = np.linspace(0.0, sigma_max, frames)
    # The page shows the frames at their pixel size, so the text must be legible at this dpi;
    # the fonts stay set while to_jshtml draws, as ticks are created during drawing.
    with plt.rc_context({"font.size": font_size, "legend.fontsize": font_size}):
        fig, ax = plt.subplots(figsize=figsize, dpi=dpi, layout="constrained")
        # The first frame is drawn by plot_bump; later frames only move its artists, which is
        # much faster than redrawing the axes for every frame.
        plot_bump(
            float(sigmas[0]),
            ax=ax,
            x_range=(-5.5, 5.5),
            ylim=ANIMATION_YLIM,
            legend=False,
            yscale="symlog",
        )
        f_line, dfds_line = ax.lines[:2]
        vertical = ax.lines[2:6]
        spans, edge = _band_artists(ax)
        # The band is empty in the first frame; shown once so the legend lists it.
        _update_band(spans, edge, 2.0)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        _update_band(spans, edge, float(sigmas[0]))
        x = f_line.get_xdata()
        # Lay out once, then freeze: constrained layout on every frame costs most of the time.
        fig.canvas.draw()
        fig.set_layout_engine("none")

        def update(i: int) -> None:
            sigma = float(sigmas[i])
            f, dfds = _bump_curves(sigma, x)
            f_line.set_ydata(f)
            dfds_line.set_ydata(dfds)
            root = float(np.sqrt(sigma))
            for line, xs in zip(vertical, (-root, root, -sigma, sigma), strict=True):
                line.set_xdata([xs, xs])
            _update_band(spans, edge, sigma)
            ax.set_title(rf"$\sigma = {sigma:.2f}$")

        # Every frame is stored in the page as an embedded PNG: the frame count sets its size.
        # Frames go straight to the writer: FuncAnimation.save also redraws the canvas after
        # each update, which doubles the drawing time for nothing.
        writer = HTMLWriter(fps=fps, embed_frames=True, default_mode="loop")
        with TemporaryDirectory() as folder:
            path = Path(folder, "animation.html")
            with writer.saving(fig, str(path), dpi):
                for i in range(frames):
                    update(i)
                    writer.grab_frame()
            html = path.read_text()
    # Closed so the notebook does not also show the last frame as a static figure.
    plt.close(fig)
    return HTML(_label_controls(html, animation_alt_text(sigma_max, frames)))


def plot_sigma_per_epoch(
    results: Mapping[str, TrainResult], true_sigma: float, ax: Axes | None = None
) -> Axes:
    """Sigma after each epoch for each labelled run, against the true sigma."""
    if not results:
        raise ValueError("results must map at least one label to a TrainResult")
    ax = _new_axes(ax)
    for label, result in results.items():
        epochs = np.arange(len(result.sigma))
        color = GUARD_COLORS.get(label)
        ax.plot(epochs, result.sigma, marker="o", ms=3, color=color, label=label)
        if not np.all(np.isfinite(result.sigma)):
            # A NaN sigma leaves no line; the cross marks the last finite epoch.
            last = int(np.argmax(~np.isfinite(result.sigma))) - 1
            ax.plot(
                last,
                result.sigma[last],
                "x",
                ms=10,
                mew=2,
                color=color,
                label=f"{label}: NaN after epoch {last}",
            )
    ax.axhline(true_sigma, color="0.4", ls="--", lw=1, label=rf"true $\sigma$ = {true_sigma:g}")
    ax.set_xlabel("epoch (0 = initial value)")
    # Epochs are whole numbers; the default locator would put ticks at 2.5, 7.5, ...
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_ylabel(r"$\sigma$")
    ax.legend(fontsize="small")
    return ax


def plot_sweep(
    true_sigmas: Sequence[float],
    learned: Mapping[str, Sequence[float]],
    ax: Axes | None = None,
    start: float | None = None,
) -> Axes:
    """Learned against true sigma per guard (log axes); a NaN result is drawn on the bottom edge.

    start, if given, is the sigma every run began from, drawn as a horizontal line.
    """
    if not learned:
        raise ValueError("learned must map at least one guard to its learned sigmas")
    true = np.asarray(true_sigmas, dtype=np.float64)
    if np.any(true <= 0):
        raise ValueError(f"true_sigmas must all be > 0 for log axes, got {true_sigmas!r}")
    low, high = true.min() / 3, true.max() * 2
    if start is not None and not low < start < high:
        raise ValueError(f"start must lie between {low:g} and {high:g} (the axes), got {start!r}")
    ax = _new_axes(ax)
    ax.plot([low, high], [low, high], color="0.6", lw=1, label="learned = true")
    if start is not None:
        ax.axhline(start, color="0.4", ls=":", lw=1.2, label=rf"start $\sigma$ = {start:g}")
    markers = iter("osD^v")
    for guard, values in learned.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != true.shape:
            raise ValueError(f"learned[{guard!r}] must have {true.size} values, got {values.size}")
        color = GUARD_COLORS.get(guard)
        marker = next(markers)
        ok = np.isfinite(values) & (values > 0)
        ax.plot(true[ok], values[ok], marker, color=color, ms=8, mfc="none", mew=2, label=guard)
        if np.any(~ok):
            ax.plot(
                true[~ok],
                np.full((~ok).sum(), low * 1.15),
                "x",
                color=color,
                ms=9,
                mew=2,
                label=f"{guard}: NaN or 0",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(r"true $\sigma$")
    ax.set_ylabel(r"learned $\sigma$")
    ax.legend(fontsize="small", loc="upper left")
    return ax
