"""Chapter 1's judges and inputs; the probes are in gradclinic.probes.ch1."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from gradclinic.checks._core import (
    CheckFailed,
    Evidence,
    Inputs,
    count_wrong_choices,
    exercise,
)
from gradclinic.probes.ch1 import TAPE_KINDS, TAPE_VARIANTS

__all__ = ["TAPE_KINDS", "TAPE_VARIANTS", "ex1_1", "ex1_2"]

# The self-check's inputs, which the chapter never shows. No x lies on +-t, where the rescaled
# bump has no derivative, and none so close outside it that an unselected branch overflows
# (chapter 3's subject). The grader draws its own the same way.
_CASES: tuple[tuple[str, tuple[float, ...], float], ...] = (
    ("float32", (-1.3, -0.7, -0.52, -0.1, 0.0, 0.25, 0.49, 0.9, 1.6), 0.55),
    ("float64", (-2.4, -1.45, -1.1, -0.3, 0.6, 1.2, 1.65, 1.9), 1.7),
)
_VALUE_RTOL, _VALUE_ATOL, _GRAD_RTOL = 1e-4, 1e-6, 1e-3


def _inputs_1_1(rng: np.random.Generator | None) -> Inputs:
    inputs: Inputs = {}
    for dtype, xs, t in _CASES:
        if rng is not None:
            # x = u * t: inside with |u| < 0.9, outside with 1.2 < |u| < 3, never near the edge.
            t = round(float(rng.uniform(0.4, 2.0)), 3)
            outside = rng.choice([-1.0, 1.0], 3) * rng.uniform(1.2, 3.0, 3)
            u = np.concatenate([rng.uniform(-0.9, 0.9, len(xs) - 3), outside])
            xs = tuple(float(v) for v in np.round(rng.permutation(u) * t, 4))
        inputs[f"{dtype}_x"] = np.array(xs, dtype=np.float64)
        inputs[f"{dtype}_t"] = float(t)
    return inputs


def _scaled_bump(x: np.ndarray, t: float) -> tuple[np.ndarray, float]:
    # The question's exp(-1 / (1 - u^2)) at u = x / t, and d(sum)/dt, in float64.
    inside = np.abs(x) < t
    gap = np.where(inside, t**2 - x**2, 1.0)
    values = np.where(inside, np.exp(-(t**2) / gap), 0.0)
    grad = float(np.sum(np.where(inside, values * 2 * t * x**2 / gap**2, 0.0)))
    return values, grad


@exercise("1.1", inputs=_inputs_1_1)
def ex1_1(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 1.1: the question's bump stretched to (-t, t), element-wise, with t reaching it."""
    for dtype, _, _ in _CASES:
        x = np.asarray(inputs[f"{dtype}_x"], dtype=np.float64).reshape(-1, 1)
        t = float(inputs[f"{dtype}_t"])
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


@exercise("1.2")
def ex1_2(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 1.2: for each variant, whether the tape's gradient for the threshold is None."""
    wrong = count_wrong_choices(evidence, _tape_answers(), TAPE_KINDS)
    if wrong:
        raise CheckFailed(
            f"{wrong} of {len(TAPE_VARIANTS)} predictions differ from what the tape "
            "returns; run each variant under a GradientTape and, where it surprises you, look "
            "for the path from t to the output"
        )
    return f"all {len(TAPE_VARIANTS)} predictions match what the tape returns."
