"""Self-checks for chapter 2's exercises."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from gradclinic.checks._core import CheckFailed, exercise, require_callable

__all__ = ["ex2_1", "ex2_2"]

# Inputs the chapter never shows; no x equals t, where min(x, t) has no derivative.
_CLIP_X = (-2.5, -0.3, 0.2, 1.7, 4.0, 0.9)
_CLIP_T = 0.75
_A = (0.7, -1.3)
_B = (2.0, 0.4)


@exercise("2.1", answer="my_clip")
def ex2_1(my_clip: Callable[[tf.Tensor, tf.Variable], tf.Tensor]) -> str:
    """Exercise 2.1: min(x, t) with tf.where; the threshold t must receive its gradient."""
    fn = require_callable(my_clip, "my_clip(x, t)")
    x = np.array(_CLIP_X, dtype=np.float32)
    t = tf.Variable(_CLIP_T, dtype=tf.float32)
    with tf.GradientTape() as tape:
        out = fn(tf.constant(x), t)
        total = tf.reduce_sum(out)
    values = np.asarray(out, dtype=np.float64)
    if values.shape != x.shape:
        raise CheckFailed(f"x of shape {x.shape}: expected that shape, got {values.shape}")
    for xi, v in zip(x, values, strict=True):
        want = min(float(xi), _CLIP_T)
        if not np.isclose(v, want, rtol=1e-6):
            raise CheckFailed(f"x={xi:g}, t={_CLIP_T}: expected {want:g}, got {v:g}")
    grad = tape.gradient(total, t)
    if grad is None:
        raise CheckFailed(
            f"t={_CLIP_T}: expected a gradient for t, got None (t never reaches the output)"
        )
    want_grad = float(np.sum(x > _CLIP_T))
    if not np.isclose(float(grad), want_grad):
        raise CheckFailed(
            f"x={list(_CLIP_X)}, t={_CLIP_T}: expected d(sum)/dt = {want_grad:g} "
            f"(one per clipped element), got {float(grad):g}"
        )
    return f"values right and d(sum)/dt = {want_grad:g}: a comparison did not block the gradient."


@exercise("2.2", answer="zero_gradient_loss")
def ex2_2(zero_gradient_loss: Callable[[tf.Variable, tf.Variable], tf.Tensor]) -> str:
    """Exercise 2.2: a loss that uses a and b, with a non-zero gradient for a and a zero one for b."""
    fn = require_callable(zero_gradient_loss, "zero_gradient_loss(a, b)")
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
