"""Self-checks for chapter 1's exercises (probe runs the answer, judge compares plain data)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic.bump import f_False, f_True
from gradclinic.checks._core import (
    CheckFailed,
    Evidence,
    choice_evidence,
    count_wrong_choices,
    exercise,
    require_callable,
)

__all__ = ["TAPE_VARIANTS", "ex1_1", "ex1_2"]

# Inputs the chapter never shows. No x lies on +-t, where the rescaled bump has no derivative,
# and none so close outside it that an unselected branch overflows (chapter 3's subject).
_CASES: tuple[tuple[str, tuple[float, ...], float], ...] = (
    ("float32", (-1.3, -0.7, -0.52, -0.1, 0.0, 0.25, 0.49, 0.9, 1.6), 0.55),
    ("float64", (-2.4, -1.45, -1.1, -0.3, 0.6, 1.2, 1.65, 1.9), 1.7),
)
_VALUE_RTOL, _VALUE_ATOL, _GRAD_RTOL = 1e-4, 1e-6, 1e-3


def _scaled_bump(x: np.ndarray, t: float) -> tuple[np.ndarray, float]:
    # The question's exp(-1 / (1 - u^2)) at u = x / t, and d(sum)/dt, in float64.
    inside = np.abs(x) < t
    gap = np.where(inside, t**2 - x**2, 1.0)
    values = np.where(inside, np.exp(-(t**2) / gap), 0.0)
    grad = float(np.sum(np.where(inside, values * 2 * t * x**2 / gap**2, 0.0)))
    return values, grad


def _probe_1_1(answer: Any) -> Evidence:
    fn = require_callable(answer, "my_scaled_bump(x, t)")
    evidence: Evidence = {}
    for dtype, xs, t_value in _CASES:
        x = tf.constant(np.array(xs).reshape(-1, 1), dtype=dtype)
        t = tf.Variable([t_value], dtype=dtype)
        with tf.GradientTape() as tape:
            out = tf.convert_to_tensor(fn(x, t))
            total = tf.reduce_sum(out)
        grad = tape.gradient(total, t)
        evidence[f"{dtype}_values"] = np.asarray(out, dtype=np.float64)
        evidence[f"{dtype}_dtype"] = out.dtype.name
        evidence[f"{dtype}_grad"] = None if grad is None else float(np.sum(grad))
    return evidence


@exercise("1.1", answer="my_scaled_bump", probe=_probe_1_1)
def ex1_1(evidence: Evidence) -> str:
    """Exercise 1.1: the question's bump stretched to (-t, t), element-wise, with t reaching it."""
    for dtype, xs, t in _CASES:
        x = np.array(xs).reshape(-1, 1)
        where = f"{dtype} x, t={t}"
        got = np.asarray(evidence[f"{dtype}_values"], dtype=np.float64)
        if got.shape != x.shape:
            raise CheckFailed(f"{where}: expected the input's shape {x.shape}, got {got.shape}")
        if evidence[f"{dtype}_dtype"] != dtype:
            raise CheckFailed(
                f"{where}: expected a {dtype} result (the input's dtype), "
                f"got {evidence[f'{dtype}_dtype']}"
            )
        want, want_grad = _scaled_bump(x, t)
        for xi, w, g in zip(x.ravel(), want.ravel(), got.ravel(), strict=True):
            if not np.isclose(g, w, rtol=_VALUE_RTOL, atol=_VALUE_ATOL):
                raise CheckFailed(f"{where}: at x={xi:g} expected {w:.4f}, got {g:.4f}")
        grad = evidence[f"{dtype}_grad"]
        if grad is None:
            raise CheckFailed(
                f"{where}: the tape's gradient for t is None: t never reaches the value"
            )
        if not np.isclose(float(grad), want_grad, rtol=_GRAD_RTOL):
            raise CheckFailed(
                f"{where}: d(sum of outputs)/dt should be {want_grad:.4f}, got {float(grad):.4f}"
            )
    return "values and gradient right; x just outside ±t not tested."


# Exercise 1.2's variants of the question's call, as the exercise prints them.
TAPE_VARIANTS: dict[str, Callable[[tf.Tensor, tf.Variable], tf.Tensor]] = {
    "A": lambda x, t: tf.cast(x < t, x.dtype) * f_True(x),
    "B": lambda x, t: tf.where(x < t, f_True(x), 0.0 * t * x),
    "C": lambda x, t: tf.cond(t[0] > 0, lambda: f_True(x) * t, lambda: f_False(x)),
    "D": lambda x, t: tf.cond(t[0] > 0, lambda: f_True(x), lambda: f_False(x) * t),
    "E": lambda x, t: tf.where(x < t, f_True(x), t * tf.ones_like(x)),
    "F": lambda x, t: tf.round(t) * f_True(x),
    "G": lambda x, t: tf.sign(t) * f_True(x),
}
_PREDICTIONS = ("None", "tensor")
_TAPE_X = ((-0.7,), (0.15,), (0.35,), (0.8,))
_TAPE_T = 0.5


def _tape_answers() -> dict[str, str]:
    x = tf.constant(_TAPE_X)
    answers = {}
    for name, variant in TAPE_VARIANTS.items():
        t = tf.Variable([_TAPE_T])
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(variant(x, t))
        answers[name] = "None" if tape.gradient(total, t) is None else "tensor"
    return answers


def _probe_1_2(answer: Any) -> Evidence:
    return choice_evidence(answer, TAPE_VARIANTS, _PREDICTIONS)


@exercise("1.2", answer="tape_predictions", probe=_probe_1_2)
def ex1_2(evidence: Evidence) -> str:
    """Exercise 1.2: for each variant, whether the tape's gradient for the threshold is None."""
    wrong = count_wrong_choices(evidence, _tape_answers(), _PREDICTIONS)
    if wrong:
        raise CheckFailed(
            f"{wrong} of {len(TAPE_VARIANTS)} predictions differ from what the tape "
            "returns; run each variant under a GradientTape and, where it surprises you, look "
            "for the path from t to the output"
        )
    return f"all {len(TAPE_VARIANTS)} predictions match what the tape returns."
