"""Self-checks for chapter 2's exercises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic.checks._core import CheckFailed, exercise

__all__ = ["ex2_1", "ex2_2"]

# Inputs the chapter never shows (0 is left out: ReLU has no derivative there).
_RELU_X = (-2.5, -0.3, 0.2, 1.7, 4.0)
_A = (0.7, -1.3)
_B = (2.0, 0.4)


def _require_callable(answer: Any, what: str) -> Callable[..., Any]:
    if not callable(answer):
        raise CheckFailed(f"expected a function {what}, got {type(answer).__name__}")
    return answer


@exercise("2.1", answer="relu_where")
def ex2_1(relu_where: Callable[[tf.Tensor], tf.Tensor]) -> str:
    """Exercise 2.1: ReLU with tf.where; values and gradients must match max(x, 0)."""
    fn = _require_callable(relu_where, "relu_where(x)")
    x = tf.Variable(np.array(_RELU_X, dtype=np.float32))
    with tf.GradientTape() as tape:
        out = fn(x)
        total = tf.reduce_sum(out)
    values = np.asarray(out, dtype=np.float64)
    if values.shape != (len(_RELU_X),):
        raise CheckFailed(f"x of shape ({len(_RELU_X)},): expected that shape, got {values.shape}")
    grad = tape.gradient(total, x)
    if grad is None:
        raise CheckFailed("x: expected a gradient with respect to x, got None")
    grad = np.asarray(grad, dtype=np.float64)
    for xi, v, g in zip(_RELU_X, values, grad, strict=True):
        want_v, want_g = max(xi, 0.0), 1.0 if xi > 0 else 0.0
        if not np.isclose(v, want_v, rtol=1e-6):
            raise CheckFailed(f"x={xi}: expected relu(x) = {want_v}, got {v:.4f}")
        if not np.isclose(g, want_g):
            raise CheckFailed(f"x={xi}: expected gradient {want_g}, got {g:.4f}")
    return "values and gradients match ReLU: the boolean condition did not get in the way."


@exercise("2.2", answer="zero_gradient_loss")
def ex2_2(zero_gradient_loss: Callable[[tf.Variable, tf.Variable], tf.Tensor]) -> str:
    """Exercise 2.2: a loss that uses a and b, with a non-zero gradient for a and a zero one for b."""
    fn = _require_callable(zero_gradient_loss, "zero_gradient_loss(a, b)")
    a = tf.Variable(np.array(_A, dtype=np.float32))
    b = tf.Variable(np.array(_B, dtype=np.float32))
    with tf.GradientTape() as tape:
        loss = tf.convert_to_tensor(fn(a, b))
    if loss.shape.rank != 0:
        raise CheckFailed(
            f"a={list(_A)}, b={list(_B)}: expected a scalar loss, got shape {loss.shape}"
        )
    grad_a, grad_b = tape.gradient(loss, [a, b])
    where = f"a={list(_A)}, b={list(_B)}"
    if grad_b is None:
        raise CheckFailed(f"{where}: expected a zero gradient for b, got None (b is not used)")
    if grad_a is None:
        raise CheckFailed(f"{where}: expected a non-zero gradient for a, got None (a is not used)")
    grad_a, grad_b = np.asarray(grad_a), np.asarray(grad_b)
    if not np.all(np.isfinite(grad_a)) or not np.all(np.isfinite(grad_b)):
        raise CheckFailed(
            f"{where}: expected finite gradients, got {grad_a} for a and {grad_b} for b"
        )
    if np.any(grad_b != 0):
        raise CheckFailed(f"{where}: expected gradient [0, 0] for b, got {grad_b}")
    if not np.any(grad_a != 0):
        raise CheckFailed(f"{where}: expected a non-zero gradient for a, got {grad_a}")
    return "b is connected but its gradient is exactly zero, not None."
