"""Figures for chapter 6: the two-head model and where each fix cuts the gradient."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

__all__ = ["draw_two_paths", "plot_gradient_shares"]

# Where each node of the model sits on the diagram (x, y), in inches: the figure is 8 in wide and
# its text is 11 pt, so that it stays readable when the page scales the figure to its width.
_NODES: dict[str, tuple[float, float]] = {
    "ids": (0.08, 2.6),
    "embedding_matrix": (1.4, 2.6),
    "output1": (3.45, 2.6),
    "logits1": (5.1, 2.6),
    "loss1": (6.4, 2.6),
    "output2": (5.1, 0.95),
    "logits2": (6.4, 0.95),
    "loss2": (7.5, 0.95),
}
_FONT = 11
_VARIABLES = ("embedding_matrix", "output1", "output2")
_LOSSES = ("loss1", "loss2")
_FORWARD = [
    ("ids", "embedding_matrix"),
    ("embedding_matrix", "output1"),
    ("output1", "logits1"),
    ("logits1", "loss1"),
    ("logits1", "output2"),
    ("output2", "logits2"),
    ("logits2", "loss2"),
]
_LOSS1_PATH = [("loss1", "logits1"), ("logits1", "output1"), ("output1", "embedding_matrix")]
_LOSS2_HEAD = [("loss2", "logits2"), ("logits2", "output2")]
_LOSS2_INTO_HEAD1 = [
    ("output2", "logits1"),
    ("logits1", "output1"),
    ("output1", "embedding_matrix"),
]
# The backward edges each loss's gradient travels along, per strategy.
_BACKWARD: dict[str, dict[str, list[tuple[str, str]]]] = {
    "joint": {"loss1": _LOSS1_PATH, "loss2": _LOSS2_HEAD + _LOSS2_INTO_HEAD1},
    "var_list": {"loss1": _LOSS1_PATH[:2], "loss2": _LOSS2_HEAD},
    "stop_gradient": {"loss1": _LOSS1_PATH, "loss2": _LOSS2_HEAD},
}
_TITLES = {
    "joint": "joint loss1 + loss2: loss2's gradient leaks into output1 and the embedding",
    "var_list": "var_list: loss1 updates output1 only, loss2 updates output2 only",
    "stop_gradient": "stop_gradient: one joint loss, loss2's path cut before head 2",
}
_COLOURS = {"loss1": "tab:blue", "loss2": "tab:orange"}
# Loss1's backward arrows run above the forward arrows, loss2's below, so both stay visible.
_OFFSETS = {"loss1": 0.1, "loss2": -0.1}


def _check_strategy(strategy: str) -> None:
    if strategy not in _BACKWARD:
        raise ValueError(f"strategy must be one of {', '.join(_BACKWARD)}; got {strategy!r}")


def _reached_by(strategy: str) -> dict[str, list[str]]:
    """For each variable, the losses whose gradient reaches it under `strategy`."""
    reached: dict[str, list[str]] = {name: [] for name in _VARIABLES}
    for loss, edges in _BACKWARD[strategy].items():
        for _, target in edges:
            if target in reached and loss not in reached[target]:
                reached[target].append(loss)
    return reached


def _half_size(name: str) -> tuple[float, float]:
    if name == "embedding_matrix":
        return 0.92, 0.3
    if name == "output1":
        return 0.75, 0.3
    if name == "output2":
        return 0.55, 0.3
    if name in _LOSSES:
        return 0.32, 0.16
    if name == "ids":
        return 0.18, 0.12
    return 0.34, 0.12


def _box(ax: Axes, name: str, label: str, face: str, bold: bool = False) -> None:
    x, y = _NODES[name]
    half_width, half_height = _half_size(name)
    width, height = 2 * half_width, 2 * half_height
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor=face,
            edgecolor="0.3",
        )
    )
    ax.text(x, y, label, ha="center", va="center", fontsize=_FONT, weight="bold" if bold else None)


def _edge_points(
    start: str, end: str, offset: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    (x0, y0), (x1, y1) = _NODES[start], _NODES[end]
    horizontal = y0 == y1
    direction = np.sign([x1 - x0, y1 - y0])
    # The same side for both directions, so a loss keeps its lane all the way back.
    shift = np.array([0.0, offset]) if horizontal else np.array([offset, 0.0])
    # Stop at the box edges (plus a small gap) rather than the centres.
    axis = 0 if horizontal else 1
    gap = 0.05
    a = np.array([x0, y0], dtype=float) + shift
    b = np.array([x1, y1], dtype=float) + shift
    a[axis] += direction[axis] * (_half_size(start)[axis] + gap)
    b[axis] -= direction[axis] * (_half_size(end)[axis] + gap)
    return (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))


def _arrow(ax: Axes, start: str, end: str, colour: str, offset: float, dashed: bool) -> None:
    tail, head = _edge_points(start, end, offset)
    ax.annotate(
        "",
        xy=head,
        xytext=tail,
        arrowprops={
            "arrowstyle": "-|>",
            "color": colour,
            "lw": 1.4,
            "linestyle": (0, (3, 2)) if dashed else "-",
            "shrinkA": 0,
            "shrinkB": 0,
        },
    )


def draw_two_paths(strategy: str = "joint") -> Figure:
    """The model as boxes: forward arrows in grey, each loss's gradient as coloured dashed arrows."""
    _check_strategy(strategy)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    reached = _reached_by(strategy)
    for name in _NODES:
        if name in _VARIABLES:
            losses = reached[name]
            updates = " + ".join(f"d{loss}" for loss in losses) if losses else "no gradient"
            face = "0.93" if not losses else "#fff4d6"
            _box(ax, name, f"{name}\n{updates}", face, bold=True)
        elif name in _LOSSES:
            _box(ax, name, name, "#e8f0fb" if name == "loss1" else "#fdebd9", bold=True)
        else:
            ax.text(*_NODES[name], name, ha="center", va="center", fontsize=_FONT, style="italic")
    for start, end in _FORWARD:
        _arrow(ax, start, end, "0.55", 0.0, dashed=False)
    for loss, edges in _BACKWARD[strategy].items():
        for start, end in edges:
            _arrow(ax, start, end, _COLOURS[loss], _OFFSETS[loss], dashed=True)
    if strategy == "stop_gradient":
        (x0, y0), (x1, y1) = _NODES["logits1"], _NODES["output2"]
        cut = ((x0 + x1) / 2, (y0 + y1) / 2)
        ax.plot([cut[0] - 0.25, cut[0] + 0.25], [cut[1], cut[1]], color="crimson", lw=3)
        ax.text(
            cut[0] - 0.35,
            cut[1],
            "tf.stop_gradient",
            color="crimson",
            fontsize=_FONT,
            ha="right",
            va="center",
        )
    ax.plot([], [], color="0.55", label="forward")
    for loss, colour in _COLOURS.items():
        ax.plot([], [], color=colour, linestyle=(0, (3, 2)), label=f"gradient of {loss}")
    ax.legend(loc="lower left", fontsize=_FONT, frameon=False)
    ax.set_title(_TITLES[strategy], fontsize=_FONT)
    ax.set_xlim(-0.1, 7.9)
    ax.set_ylim(0.0, 3.1)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    return fig


def plot_gradient_shares(
    shares: Mapping[str, Mapping[str, Mapping[str, float | None]]], title: str = ""
) -> Figure:
    """One panel per loss: the norm of that loss's gradient for each variable, per strategy.

    shares[loss][strategy][variable] is a norm, or None where the strategy gives that variable no
    gradient from that loss; a None bar is drawn at 0 and labelled "None".
    """
    if not shares:
        raise ValueError("shares must map at least one loss to {strategy: {variable: norm}}")
    losses = list(shares)
    strategies = list(next(iter(shares.values())))
    names = list(next(iter(next(iter(shares.values())).values())))
    for loss, per_strategy in shares.items():
        if list(per_strategy) != strategies:
            raise ValueError(
                f"shares[{loss!r}] must list the strategies {strategies}, got {list(per_strategy)}"
            )
        for strategy, per_variable in per_strategy.items():
            if list(per_variable) != names:
                raise ValueError(
                    f"shares[{loss!r}][{strategy!r}] must list the variables {names}, "
                    f"got {list(per_variable)}"
                )
    fig, axes = plt.subplots(1, len(losses), figsize=(8, 3.6), sharey=True, squeeze=False)
    width = 0.8 / len(strategies)
    positions = np.arange(len(names))
    short = [name.replace("_matrix", "") for name in names]
    for ax, loss in zip(axes[0], losses, strict=True):
        for index, strategy in enumerate(strategies):
            norms = [shares[loss][strategy][name] for name in names]
            heights = [0.0 if norm is None else norm for norm in norms]
            offset = (index - (len(strategies) - 1) / 2) * width
            bars = ax.bar(positions + offset, heights, width, label=strategy)
            for bar, norm in zip(bars, norms, strict=True):
                if norm is None:
                    ax.text(
                        bar.get_x() + bar.get_width() / 2,
                        0,
                        "None",
                        rotation=90,
                        ha="center",
                        va="bottom",
                        fontsize=_FONT,
                    )
        ax.set_xticks(positions, short)
        ax.tick_params(labelsize=_FONT)
        ax.set_title(f"gradient of {loss}", fontsize=_FONT)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_ylabel("norm", fontsize=_FONT)
    axes[0][-1].legend(fontsize=_FONT, frameon=False)
    if title:
        fig.suptitle(title, fontsize=_FONT)
    fig.tight_layout()
    return fig
