"""Chapter 5's judges and inputs; the probes are in gradclinic.probes.ch5."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from gradclinic.checks._core import (
    CheckFailed,
    Evidence,
    Inputs,
    count_wrong_choices,
    exercise,
)
from gradclinic.probes.ch5 import (
    SLOPE_KINDS,
    SLOPE_VARIANTS,
)

__all__ = ["SLOPE_KINDS", "SLOPE_VARIANTS", "ex5_1", "ex5_2"]

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


def _inputs_5_1(rng: np.random.Generator | None) -> Inputs:
    # The grader's: as many cases drawn under the same rules.
    cases = list(_EDGE_CASES)
    if rng is not None:
        cases = []
        while len(cases) < len(_EDGE_CASES):
            sigma, teacher = np.round(rng.uniform([0.1, 0.2], [0.8, 0.95]), 2).tolist()
            low, high = np.round(rng.uniform([-1.5, 0.1], [-0.1, 2.0]), 2).tolist()
            apart = min(abs(sigma - teacher), abs(sigma - high), abs(-sigma - low))
            if apart >= 0.05:
                cases.append((sigma, teacher, low, high))
    return {"cases": np.array(cases)}


def _edge_term(sigma: float, teacher_sigma: float, low: float, high: float) -> float:
    # Leibniz: each edge +-sigma inside (low, high) adds the jump of the squared error, from
    # inside to outside, times the density 1 / (high - low); an edge outside the data adds 0.
    edge_value = math.exp(-1.0 / (1.0 - sigma))
    target = math.exp(-teacher_sigma / (teacher_sigma - sigma**2)) if sigma < teacher_sigma else 0.0
    jump = (edge_value - target) ** 2 - target**2
    edges_inside = int(sigma < high) + int(-sigma > low)
    return edges_inside * jump / (high - low)


@exercise("5.1", inputs=_inputs_5_1)
def ex5_1(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 5.1: the boundary term of the population loss's slope for x ~ U(low, high)."""
    cases = np.asarray(inputs["cases"], dtype=np.float64).tolist()
    values = np.asarray(evidence["values"], dtype=np.float64).reshape(len(cases))
    for (sigma, teacher, low, high), got in zip(cases, values, strict=True):
        want = _edge_term(sigma, teacher, low, high)
        if not np.isclose(got, want, rtol=_EDGE_RTOL, atol=_EDGE_ATOL):
            raise CheckFailed(
                f"sigma={sigma}, teacher_sigma={teacher}, low={low}, high={high}: "
                f"expected {want:.5f}, got {got:.5f}"
            )
    # Short enough that the notebook's line stays within 80 characters.
    return f"all {len(cases)} cases right: two, one or no edges in the data."


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


@exercise("5.2")
def ex5_2(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 5.2: whether the tape returns None, the whole slope in t, or only part of it."""
    wrong = count_wrong_choices(evidence, _slope_answers(), SLOPE_KINDS)
    if wrong:
        raise CheckFailed(
            f"{wrong} of {len(SLOPE_VARIANTS)} predictions differ from the measurement; "
            "for each variant, compare the tape's gradient with a finite difference"
        )
    return f"all {len(SLOPE_VARIANTS)} predictions match tape against finite differences."
