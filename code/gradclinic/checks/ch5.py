"""Self-checks for chapter 5's exercises (probe runs the answer, judge compares plain data)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic.checks._core import (
    CheckFailed,
    Evidence,
    choice_evidence,
    count_wrong_choices,
    exercise,
    require_callable,
    require_number,
)

__all__ = ["SLOPE_VARIANTS", "ex5_1", "ex5_2"]

# (sigma, teacher_sigma, low, high): data x ~ U(low, high) with low < 0 < high, never the
# chapter's (-1, 1). Both edges inside, one (either side), or none; each edge lies at least 0.05
# from the data's ends and sigma at least 0.05 from teacher_sigma, where the slope has a kink.
_EDGE_CASES: tuple[tuple[float, float, float, float], ...] = (
    (0.25, 0.6, -1.0, 0.5),
    (0.45, 0.8, -0.3, 1.5),
    (0.6, 0.35, -1.2, 0.4),
    (0.6, 0.35, -0.25, 0.3),
    (0.15, 0.3, -0.5, 2.0),
    (0.7, 0.9, -0.4, 1.6),
    (0.55, 0.4, -0.7, 0.9),
)
_EDGE_RTOL, _EDGE_ATOL = 1e-2, 1e-5


def _edge_term(sigma: float, teacher_sigma: float, low: float, high: float) -> float:
    # Leibniz: each edge +-sigma inside (low, high) adds the jump of the squared error, from
    # inside to outside, times the density 1 / (high - low); an edge outside the data adds 0.
    edge_value = math.exp(-1.0 / (1.0 - sigma))
    target = math.exp(-teacher_sigma / (teacher_sigma - sigma**2)) if sigma < teacher_sigma else 0.0
    jump = (edge_value - target) ** 2 - target**2
    edges_inside = int(sigma < high) + int(-sigma > low)
    return edges_inside * jump / (high - low)


def _probe_5_1(answer: Any) -> Evidence:
    fn = require_callable(answer, "edge_slope(sigma, teacher_sigma, low, high)")
    values = []
    for sigma, teacher, low, high in _EDGE_CASES:
        where = f"sigma={sigma}, teacher_sigma={teacher}, low={low}, high={high}"
        values.append(require_number(fn(sigma, teacher, low, high), where))
    return {"values": np.array(values)}


@exercise("5.1", answer="edge_slope", probe=_probe_5_1)
def ex5_1(evidence: Evidence) -> str:
    """Exercise 5.1: the boundary term of the population loss's slope for x ~ U(low, high)."""
    values = np.asarray(evidence["values"], dtype=np.float64).reshape(len(_EDGE_CASES))
    for (sigma, teacher, low, high), got in zip(_EDGE_CASES, values, strict=True):
        want = _edge_term(sigma, teacher, low, high)
        if not np.isclose(got, want, rtol=_EDGE_RTOL, atol=_EDGE_ATOL):
            raise CheckFailed(
                f"sigma={sigma}, teacher_sigma={teacher}, low={low}, high={high}: "
                f"expected {want:.5f}, got {got:.5f}"
            )
    # Short enough that the notebook's line stays within 80 characters.
    return f"all {len(_EDGE_CASES)} cases right: two, one or no edges in the data."


# Exercise 5.2's thresholded functions y(x, t), as the exercise prints them.
SLOPE_VARIANTS: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "A": lambda x, t: tf.where(x < t, x, t * tf.ones_like(x)),
    "B": lambda x, t: tf.where(x < t, tf.ones_like(x), tf.zeros_like(x)),
    "C": lambda x, t: tf.where(x < t, x + t, tf.zeros_like(x)),
    "D": lambda x, t: tf.where(x < t, x - t, tf.zeros_like(x)),
    "E": lambda x, t: tf.cast(x < t, x.dtype) * x,
    "F": lambda x, t: tf.where(tf.abs(x) < t, t**2 - x**2, tf.zeros_like(x)),
    "G": lambda x, t: tf.where(tf.abs(x) < t, tf.cos(x / t), tf.zeros_like(x)),
}
_SLOPE_PREDICTIONS = ("None", "whole", "part")
_SLOPE_T = 0.4


def _slope_answers() -> dict[str, str]:
    # The mean over a fine midpoint grid stands for x ~ U(-1, 1); float64 keeps the
    # difference quotient a slope, not rounding.
    n = 20_000
    x = tf.constant((np.arange(n) + 0.5) / n * 2 - 1, dtype=tf.float64)
    step = 1e-2
    answers = {}
    for name, variant in SLOPE_VARIANTS.items():
        t = tf.Variable(_SLOPE_T, dtype=tf.float64)
        with tf.GradientTape() as tape:
            mean = tf.reduce_mean(variant(x, t))
        grad = tape.gradient(mean, t)
        if grad is None:
            answers[name] = "None"
            continue
        high = float(tf.reduce_mean(variant(x, tf.constant(_SLOPE_T + step, tf.float64))))
        low = float(tf.reduce_mean(variant(x, tf.constant(_SLOPE_T - step, tf.float64))))
        slope = (high - low) / (2 * step)
        answers[name] = "whole" if math.isclose(float(grad), slope, rel_tol=1e-2) else "part"
    return answers


def _probe_5_2(answer: Any) -> Evidence:
    return choice_evidence(answer, SLOPE_VARIANTS, _SLOPE_PREDICTIONS)


@exercise("5.2", answer="slope_predictions", probe=_probe_5_2)
def ex5_2(evidence: Evidence) -> str:
    """Exercise 5.2: whether the tape returns None, the whole slope in t, or only part of it."""
    wrong = count_wrong_choices(evidence, _slope_answers(), _SLOPE_PREDICTIONS)
    if wrong:
        raise CheckFailed(
            f"{wrong} of {len(SLOPE_VARIANTS)} predictions differ from the measurement; "
            "for each variant, compare the tape's gradient with a finite difference"
        )
    return f"all {len(SLOPE_VARIANTS)} predictions match tape against finite differences."
