"""Reverse mode through tf.where, drawn: forward values, then the cotangents coming back."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

__all__ = ["WhereBackward", "draw_where_backward", "where_backward"]

# Text size in points: the figure is drawn 8 inches wide, the width of the page.
FONT_SIZE = 11
FORWARD_COLOR = "tab:blue"
BACKWARD_COLOR = "tab:red"
# The boxes of one row, left to right, and their centres in axes units.
OPS = (r"$\sigma$", r"$e = -\sigma/(\sigma - x^2)$", "b = exp(e)", r"tf.where(|x|<$\sigma$, b, 0)")
CENTRES = (0.09, 0.35, 0.61, 0.87)
BOX_WIDTH = 0.21


@dataclass(frozen=True)
class WhereBackward:
    """Forward values and backward cotangents of tf.where(|x| < sigma, exp(e), 0) at one x."""

    x: float
    selected: bool
    exponent: float
    branch: float
    out: float
    # Cotangents, from the output back: what reaches b, what Exp's step passes to e, and sigma's.
    branch_bar: float
    exponent_bar: float
    sigma_bar: float


def where_backward(x: float, sigma: float) -> WhereBackward:
    """Run the naive bump at one x and record each op's forward value and backward step."""
    if not (isinstance(sigma, int | float) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    if not (isinstance(x, int | float) and math.isfinite(x)):
        raise ValueError(f"x must be a finite number, got {x!r}")
    s = tf.Variable(float(sigma))
    x_t = tf.constant(float(x))
    with tf.GradientTape(persistent=True) as tape:
        exponent = -s / (s - tf.square(x_t))
        branch = tf.exp(exponent)
        out = tf.where(tf.abs(x_t) < s, branch, tf.zeros_like(branch))
    # One op's step at a time: each fed the cotangent that reaches it (output_gradients).
    branch_bar = tape.gradient(out, branch)
    exponent_bar = tape.gradient(branch, exponent, output_gradients=branch_bar)
    sigma_bar = tape.gradient(exponent, s, output_gradients=exponent_bar)
    del tape
    return WhereBackward(
        x=float(x),
        selected=bool(abs(x) < sigma),
        exponent=float(exponent),
        branch=float(branch),
        out=float(out),
        branch_bar=float(branch_bar),
        exponent_bar=float(exponent_bar),
        sigma_bar=float(sigma_bar),
    )


def _number(value: float) -> str:
    # "NaN" and "inf" as the chapter writes them; a signed zero printed as 0.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value + 0.0:.4g}"


def _box(ax: Axes, centre: float, y: float, text: str) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (centre - BOX_WIDTH / 2, y - 0.06),
            BOX_WIDTH,
            0.12,
            boxstyle="round,pad=0.005",
            facecolor="0.95",
            edgecolor="0.3",
        )
    )
    ax.text(centre, y, text, ha="center", va="center", fontsize=FONT_SIZE)


def _arrow(ax: Axes, start: float, end: float, y: float, color: str) -> None:
    ax.annotate(
        "",
        xy=(end, y),
        xytext=(start, y),
        arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5},
    )


def _draw_row(ax: Axes, y: float, sigma: float, run: WhereBackward) -> None:
    side = "selected" if run.selected else r"not selected, since |x| $\geq \sigma$"
    ax.text(0.0, y + 0.2, f"x = {run.x:g} ({side})", fontsize=FONT_SIZE, fontweight="bold")
    boxes = (rf"$\sigma$ = {sigma:g}", *OPS[1:])
    # What each op computes going forward (above its box) and what its backward step
    # hands on (below): tf.where passes b_bar, Exp's step multiplies it by exp(e), and
    # the exponent's step turns e_bar into sigma's gradient.
    exp_step = (
        rf"{_number(run.branch_bar)} $\times$ {_number(run.branch)} = {_number(run.exponent_bar)}"
    )
    values = ("", f"e = {_number(run.exponent)}", f"b = {_number(run.branch)}")
    values += (f"out = {_number(run.out)}",)
    cotangents = (
        rf"$\bar{{\sigma}}$ = {_number(run.sigma_bar)}",
        rf"$\bar{{e}}$ = {exp_step}",
        rf"$\bar{{b}}$ = {_number(run.branch_bar)}",
        "d loss/d out = 1",
    )
    for centre, box, value, cotangent in zip(CENTRES, boxes, values, cotangents, strict=True):
        _box(ax, centre, y, box)
        ax.text(centre, y + 0.08, value, ha="center", fontsize=FONT_SIZE, color=FORWARD_COLOR)
        ax.text(
            centre,
            y - 0.08,
            cotangent,
            ha="center",
            va="top",
            fontsize=FONT_SIZE,
            color=BACKWARD_COLOR,
        )
    for start, end in itertools.pairwise(CENTRES):
        _arrow(ax, start + BOX_WIDTH / 2, end - BOX_WIDTH / 2, y, FORWARD_COLOR)


def draw_where_backward(
    sigma: float = 0.5,
    xs: Sequence[float] = (0.3, 0.709),
    figsize: tuple[float, float] = (8.0, 3.2),
) -> Figure:
    """Boxes for sigma -> exponent -> exp -> tf.where, one row per x: forward values above
    the arrows (blue), the backward pass's cotangents below (red), 0 times inf = NaN where the
    branch is not selected."""
    if len(xs) == 0:
        raise ValueError("xs must hold at least one number")
    runs = [where_backward(x, sigma) for x in xs]
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    ax.set_axis_off()
    ax.set_xlim(-0.02, 0.98)
    rows = -0.5 * np.arange(len(runs))
    ax.set_ylim(rows.min() - 0.25, rows.max() + 0.25)
    for y, run in zip(rows, runs, strict=True):
        _draw_row(ax, float(y), sigma, run)
    ax.text(
        0.5,
        rows.min() - 0.22,
        "blue, above a box: its forward value;  red, below: its backward step's cotangent",
        ha="center",
        va="center",
        fontsize=FONT_SIZE,
        color="0.3",
    )
    return fig
