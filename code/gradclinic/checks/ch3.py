"""Chapter 3's judges, references and inputs; the probes are in gradclinic.probes.ch3."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from gradclinic.checks._core import CheckFailed, Evidence, Inputs, exercise

# EX3_1_BRANCHES, EX3_1_INPUTS and EX3_1_OPS are imported by the chapter, not re-exported.
from gradclinic.probes.ch3 import (
    EX3_1_BRANCHES,
    EX3_1_INPUTS,
    EX3_1_OPS,
)

__all__ = ["ex3_1", "ex3_2"]

# The key to the ops, in eager and graph execution: for each input with a NaN gradient, the
# ops whose own backward step receives a finite gradient and returns inf or NaN. Where the
# forward value is non-finite (log at -1 and 0) is not the question: at -1, Log's step gets
# 0 * x = -0 and passes on -0 * (1 / x) = 0. tests/test_checks_ch3.py measures the table op by op.
_NAN_OPS: dict[str, dict[float, frozenset[str]]] = {
    "tf.math.reciprocal(x)": {},
    "tf.math.rsqrt(x)": {},
    "tf.exp(-1.0 / x)": {0.0: frozenset({"RealDiv"})},
    "x * tf.math.log(x)": {-1.0: frozenset({"Mul"}), 0.0: frozenset({"Log", "Mul"})},
    "tf.tanh(1.0 / x)": {0.0: frozenset({"RealDiv"})},
    "tf.pow(x, 1.5)": {-1.0: frozenset({"Pow"})},
    "tf.math.divide_no_nan(1.0, x)": {},
}


def _guarded_nan_gradients(branch: Callable[[tf.Tensor], tf.Tensor]) -> np.ndarray:
    # The reference: what this TensorFlow gives eagerly, so the check follows the installed version.
    x = tf.Variable(np.array(EX3_1_INPUTS, dtype=np.float32))
    with tf.GradientTape() as tape:
        out = tf.where(x > 0, branch(x), tf.zeros_like(x))
    return np.isnan(tape.gradient(out, x).numpy())


def _ops_key(name: str) -> np.ndarray:
    # _NAN_OPS[name] as the probe records an answer: one row per input, one column per op.
    table = _NAN_OPS[name]
    return np.array([[op in table.get(x, ()) for op in EX3_1_OPS] for x in EX3_1_INPUTS])


@exercise("3.1")
def ex3_1(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 3.1: where each guarded branch gives a NaN gradient, and which ops produce it."""
    wrong, wrong_ops = [], 0
    n = len(EX3_1_BRANCHES)
    for name, branch in EX3_1_BRANCHES.items():
        measured = _guarded_nan_gradients(branch)
        if not np.array_equal(measured, _ops_key(name).any(axis=1)):
            # A book bug, not the student's: say so instead of failing a right answer silently.
            raise CheckFailed(
                f"this TensorFlow's NaN gradients for {name!r} differ from the book's key "
                "(made with TensorFlow 2.21); please report it"
            )
        claimed = np.asarray(evidence[name], dtype=bool).reshape(len(EX3_1_INPUTS))
        if not np.array_equal(claimed, measured):
            wrong.append(name)
        ops = np.asarray(evidence[f"ops of {name}"], dtype=bool)
        wrong_ops += not np.array_equal(
            ops.reshape(len(EX3_1_INPUTS), len(EX3_1_OPS)), _ops_key(name)
        )
    if wrong:
        raise CheckFailed(
            f"inputs right for {n - len(wrong)} of {n}; not what TensorFlow gives for "
            f"{', '.join(wrong)}. For each, find the factor of the chain rule that is inf or NaN "
            "at that input, and whether the op multiplies it by the 0 that tf.where passes back."
        )
    if wrong_ops:
        # Only a count: with a handful of ops per expression, names would give the answer away.
        raise CheckFailed(
            f"inputs right for all {n}, but the ops are wrong for {wrong_ops} of {n}. Follow "
            "the backward pass from tf.where: which op's own step receives a finite gradient "
            "and passes on inf or NaN? A non-finite forward value is not enough."
        )
    return f"inputs and ops right for all {n} expressions, run eagerly."


# Exercise 3.2: a smooth step, psi(x) / (psi(x) + psi(1 - x)) with psi(t) = exp(-1/t) for
# t > 0 and 0 otherwise. The points sit at both edges, just outside them (where exp(-1/t)
# overflows in float32, |t| < 1/88.7), far outside, and inside; the chapter shows none.
_STEP_POINTS = (
    -3.0,
    -0.5,
    -0.005,
    -1e-30,
    0.0,
    1e-3,
    0.02,
    0.2,
    0.45,
    0.5,
    0.77,
    0.98,
    1.0,
    1.004,
    1.5,
    40.0,
)


def _inputs_3_2(rng: np.random.Generator | None) -> Inputs:
    # The grader's: the edges themselves, then as many points drawn in each region as above.
    if rng is None:
        points = list(_STEP_POINTS)
    else:

        def draw(low: float, high: float, n: int = 1) -> list[float]:
            return rng.uniform(low, high, n).tolist()

        points = [
            *draw(-50.0, -0.1, 2),  # far outside
            *draw(-1 / 89, -1e-4),  # just outside: exp(-1/t) overflows in float32
            -1e-30,
            0.0,
            *draw(1e-4, 0.03, 2),
            *draw(0.05, 0.95, 4),  # inside
            *draw(0.97, 0.9999),
            1.0,
            *draw(1.0001, 1 + 1 / 89),
            *draw(1.1, 50.0, 2),
        ]
    # float32 values: what the answer computes on is what the reference uses.
    return {"x": np.array(points, dtype=np.float32).astype(np.float64)}


_STEP_VALUE_TOLERANCE = 1e-5
# float32 autodiff against a float64 formula.
_STEP_GRAD_RTOL, _STEP_GRAD_ATOL = 1e-3, 1e-5


def _psi(t: np.ndarray) -> np.ndarray:
    safe = np.where(t > 0, t, 1.0)
    return np.where(t > 0, np.exp(-1.0 / safe), 0.0)


def smooth_step_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smooth step and its derivative in float64, 0 outside (0, 1) for the derivative."""
    x = np.asarray(x, dtype=np.float64)
    left, right = _psi(x), _psi(1.0 - x)
    total = left + right
    inside = (x > 0) & (x < 1)
    safe_x = np.where(inside, x, 0.5)
    # psi'(t) = psi(t) / t^2; the quotient rule gives the rest.
    d_left, d_right = left / safe_x**2, right / (1.0 - safe_x) ** 2
    slope = np.where(inside, (d_left * right + left * d_right) / total**2, 0.0)
    return left / total, slope


@exercise("3.2", inputs=_inputs_3_2)
def ex3_2(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 3.2: the smooth step's values and a finite d/dx at every point, edges included."""
    points = np.asarray(inputs["x"], dtype=np.float64).ravel().tolist()
    n = len(points)
    want_values, want_grads = smooth_step_reference(np.array(points))
    values = np.asarray(evidence["values"], dtype=np.float64).reshape(n)
    for x, value, want in zip(points, values, want_values, strict=True):
        if not np.isclose(value, want, rtol=0, atol=_STEP_VALUE_TOLERANCE):
            raise CheckFailed(
                f"x={x:g}: your value {value:.6g} is not the smooth step's value {want:.6g}"
            )
    alone = np.asarray(evidence["alone"], dtype=np.float64).reshape(n)
    if not np.allclose(alone, values, rtol=0, atol=_STEP_VALUE_TOLERANCE):
        raise CheckFailed(
            "the points one at a time give other values than in one tensor; "
            "the step must act element by element"
        )
    if evidence["grads"] is None:
        raise CheckFailed("no gradient reached x (None): compute the step from x with TF ops")
    grads = np.asarray(evidence["grads"], dtype=np.float64).reshape(n)
    for x, grad, want in zip(points, grads, want_grads, strict=True):
        if not np.isfinite(grad):
            raise CheckFailed(
                f"x={x:g}: the value is right but d/dx is {grad}. A branch tf.where does not "
                "select still runs on x there: make its input safe before the formula"
            )
        if not np.isclose(grad, want, rtol=_STEP_GRAD_RTOL, atol=_STEP_GRAD_ATOL):
            raise CheckFailed(
                f"x={x:g}: the value is right but d/dx = {grad:.4g} is not the step's "
                f"derivative {want:.4g}"
            )
    return f"values and finite d/dx right at {n} points, edges included."
