"""Self-checks for chapter 3's exercises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic.checks._core import CheckFailed, exercise, require_callable
from gradclinic.data import bump_formula, bump_formula_dsigma

__all__ = ["ex3_1", "ex3_2"]

# 0 is where log's unselected branch is -inf and its derivative inf; negatives give NaN values.
_LOG_X = (-3.0, -0.5, 0.0, 1e-3, 0.5, 2.0, 10.0)
# sigma = 0.3: x = 0.5478 has x^2 just above sigma, so the unguarded formula overflows to inf.
_BUMP_SIGMA = 0.3
_BUMP_X = (-0.95, -0.5478, -0.25, 0.0, 0.1, 0.29, 0.5478, 0.8)


def _values_and_grads(fn: Callable[[tf.Tensor], tf.Tensor], x: np.ndarray) -> tuple[Any, Any]:
    # Element-wise functions: the gradient of the sum is each element's own derivative.
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        out = fn(xv)
        total = tf.reduce_sum(out)
    grad = tape.gradient(total, xv)
    return out, grad


@exercise("3.1", answer="safe_log")
def ex3_1(safe_log: Callable[[tf.Tensor], tf.Tensor]) -> str:
    """Exercise 3.1: log(x) for x > 0 and 0 elsewhere, with a finite gradient everywhere."""
    fn = require_callable(safe_log, "safe_log(x)")
    x = np.array(_LOG_X, dtype=np.float32)
    out, grad = _values_and_grads(fn, x)
    values = np.asarray(out, dtype=np.float64)
    if values.shape != x.shape:
        raise CheckFailed(f"x of shape {x.shape}: expected that shape, got {values.shape}")
    if grad is None:
        raise CheckFailed("x: expected a gradient with respect to x, got None")
    grad = np.asarray(grad, dtype=np.float64)
    for xi, v, g in zip(x, values, grad, strict=True):
        want_v = float(np.log(xi)) if xi > 0 else 0.0
        want_g = 1.0 / float(xi) if xi > 0 else 0.0
        if not np.isclose(v, want_v, rtol=1e-5, atol=1e-6):
            raise CheckFailed(f"x={xi:g}: expected safe_log(x) = {want_v:.4f}, got {v:.4f}")
        if not np.isclose(g, want_g, rtol=1e-4, atol=1e-6):
            raise CheckFailed(f"x={xi:g}: expected gradient {want_g:g}, got {g:g}")
    return "values right and every gradient finite, also at x = 0."


@exercise("3.2", answer="my_double_where_bump")
def ex3_2(my_double_where_bump: Callable[[tf.Tensor, tf.Variable], tf.Tensor]) -> str:
    """Exercise 3.2: the bump with two tf.where; finite gradients where the naive one gives NaN."""
    fn = require_callable(my_double_where_bump, "my_double_where_bump(x, sigma)")
    x = np.array(_BUMP_X, dtype=np.float32).reshape(-1, 1)
    values = []
    for xi in x:
        sigma = tf.Variable([_BUMP_SIGMA], dtype=tf.float32)
        with tf.GradientTape() as tape:
            out = fn(tf.constant(xi.reshape(1, 1)), sigma)
        value = np.asarray(out, dtype=np.float64).reshape(-1)
        if value.shape != (1,):
            raise CheckFailed(f"x of shape (1, 1): expected that shape, got {np.shape(out)}")
        grad = tape.gradient(out, sigma)
        where = f"x={xi[0]:.4f}, sigma={_BUMP_SIGMA}"
        if grad is None:
            raise CheckFailed(f"{where}: expected a gradient for sigma, got None")
        g = float(np.asarray(grad).reshape(-1)[0])
        want_v = float(bump_formula(xi, _BUMP_SIGMA)[0])
        want_g = float(bump_formula_dsigma(xi, _BUMP_SIGMA)[0])
        if not np.isclose(value[0], want_v, rtol=1e-4, atol=1e-6):
            raise CheckFailed(f"{where}: expected f = {want_v:.4f}, got {value[0]:.4f}")
        if not np.isfinite(g):
            raise CheckFailed(f"{where}: expected a finite gradient {want_g:.4f}, got {g}")
        if not np.isclose(g, want_g, rtol=1e-3, atol=1e-6):
            raise CheckFailed(f"{where}: expected df/dsigma = {want_g:.4f}, got {g:.4f}")
        values.append(value[0])
    return f"values and gradients right at {len(values)} points, also next to x^2 = sigma."
