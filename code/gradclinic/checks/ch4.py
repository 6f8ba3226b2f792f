"""Self-checks for chapter 4's exercises: inputs with |x| > 1, slow large sigma, screening."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from gradclinic.bump import BumpLayer
from gradclinic.checks._core import CheckFailed, exercise, require_callable
from gradclinic.data import bump_formula, bump_formula_dsigma

__all__ = ["ex4_1", "ex4_2", "ex4_3", "ex4_4", "ex4_5"]

# Different from the values the chapter prints, so a hard-coded table cannot pass.
_BAND_SIGMAS = (0.4, 1.0, 1.7, 3.0, 12.5)
_STABLE_SIGMAS = (0.0, 0.37, 1.0, 2.6, 6.1)
_GRADIENT_SIGMAS = (0.3, 0.8, 2.0, 9.0, 40.0)
# (sigma, x_range, whether make_bump_data can draw a target from the unsafe band)
_SCREEN_CASES = (
    (0.5, (-3.0, 3.0), False),
    (1.0, (-5.0, 5.0), False),
    (2.0, (-1.2, 1.2), False),
    (2.0, (-1.2, 1.5), True),
    (3.0, (0.0, 1.7), False),
    (4.0, (-3.0, -2.5), True),
    (9.0, (3.5, 8.0), True),
    (9.0, (9.5, 12.0), False),
)


@exercise("4.1", answer="unsafe_band")
def ex4_1(unsafe_band: Callable[[float], tuple[float, float] | None]) -> str:
    """Exercise 4.1: the positive x where the double-where layer evaluates exp of a positive power."""
    fn = require_callable(unsafe_band, "unsafe_band(sigma)")
    for sigma in _BAND_SIGMAS:
        got = fn(sigma)
        want = (math.sqrt(sigma), sigma) if sigma > 1 else None
        if want is None:
            if got is not None:
                raise CheckFailed(f"sigma={sigma}: expected None (no unsafe x), got {got!r}")
            continue
        if got is None or len(got) != 2 or not np.allclose(got, want, rtol=1e-6):
            raise CheckFailed(
                f"sigma={sigma}: expected (sqrt(sigma), sigma) = ({want[0]:.4f}, {want[1]:.4f}), "
                f"got {got!r}"
            )
    return f"the band is right for sigma in {_BAND_SIGMAS}."


def _stable_reference(x: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    # The bump where it is a bump (|x| < sigma and x^2 < sigma), 0 elsewhere, and its d/dsigma.
    inside = (np.abs(x) < sigma) & (x**2 < sigma)
    return (
        np.where(inside, bump_formula(x, sigma), 0.0),
        np.where(inside, bump_formula_dsigma(x, sigma), 0.0),
    )


@exercise("4.2", answer="my_stable_bump")
def ex4_2(my_stable_bump: Callable[[tf.Tensor, tf.Variable], tf.Tensor]) -> str:
    """Exercise 4.2: a bump whose values and gradients are finite for every x and sigma >= 0."""
    fn = require_callable(my_stable_bump, "my_stable_bump(x, sigma)")
    for sigma_value in _STABLE_SIGMAS:
        root = math.sqrt(sigma_value)
        x_np = np.concatenate(
            [np.linspace(-7.3, 7.3, 147), [root * 1.001, -root * 1.001, root * 0.999, sigma_value]]
        ).astype(np.float32)
        x = tf.Variable(x_np)
        sigma = tf.Variable([sigma_value], dtype=tf.float32)
        with tf.GradientTape() as tape:
            out = fn(x, sigma)
            total = tf.reduce_sum(out)
        grad_sigma, grad_x = tape.gradient(total, [sigma, x])
        values = np.asarray(out, dtype=np.float64)
        if values.shape != x_np.shape:
            raise CheckFailed(f"x of shape {x_np.shape}: expected that shape, got {values.shape}")
        want_v, want_g = _stable_reference(x_np.astype(np.float64), sigma_value)
        bad = np.flatnonzero(~np.isclose(values, want_v, rtol=1e-4, atol=1e-6))
        if bad.size:
            i = bad[0]
            raise CheckFailed(
                f"x={x_np[i]:.4f}, sigma={sigma_value}: expected f = {want_v[i]:.4g}, "
                f"got {values[i]:.4g}"
            )
        if grad_sigma is None or grad_x is None:
            raise CheckFailed(f"sigma={sigma_value}: expected gradients for x and sigma, got None")
        grad_x = np.asarray(grad_x)
        if not np.all(np.isfinite(grad_x)):
            i = np.flatnonzero(~np.isfinite(grad_x))[0]
            raise CheckFailed(
                f"x={x_np[i]:.4f}, sigma={sigma_value}: expected a finite df/dx, got {grad_x[i]}"
            )
        g = float(np.asarray(grad_sigma).reshape(-1)[0])
        if not math.isfinite(g):
            raise CheckFailed(
                f"sigma={sigma_value}, x in [-7.3, 7.3]: expected a finite df/dsigma, got {g}"
            )
        if not math.isclose(g, float(want_g.sum()), rel_tol=1e-3, abs_tol=1e-5):
            raise CheckFailed(
                f"sigma={sigma_value}, x in [-7.3, 7.3]: expected the sum of df/dsigma "
                f"{want_g.sum():.4f}, got {g:.4f}"
            )
    return f"values right and gradients finite for x in [-7.3, 7.3], sigma in {_STABLE_SIGMAS}."


def _bump_layers(model: keras.Model) -> list[BumpLayer]:
    return [layer for layer in model.layers if isinstance(layer, BumpLayer)]


@exercise("4.3", answer="build_tanh_model")
def ex4_3(build_tanh_model: Callable[[], keras.Model]) -> str:
    """Exercise 4.3: a model whose double-where bump layer only ever sees inputs in (-1, 1)."""
    fn = require_callable(build_tanh_model, "build_tanh_model()")
    model = fn()
    if not isinstance(model, keras.Model):
        raise CheckFailed(f"build_tanh_model(): expected a keras Model, got {type(model).__name__}")
    bumps = _bump_layers(model)
    if len(bumps) != 1 or bumps[0].guard != "double_where":
        guards = [b.guard for b in bumps]
        raise CheckFailed(
            "build_tanh_model(): expected one BumpLayer(guard='double_where') (the layer stays "
            f"as it is; the layer before changes), got bump layers with guards {guards}"
        )
    x = np.linspace(-60.0, 60.0, 241, dtype=np.float32).reshape(-1, 1)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    h = np.asarray(keras.Model(inputs, bumps[0].input)(x))
    # tanh rounds to exactly +-1 in float32 for large inputs; |h| = 1 is still outside the band.
    if not np.all(np.abs(h) <= 1):
        i = int(np.argmax(np.abs(h).max(axis=1)))
        raise CheckFailed(
            f"x={x[i, 0]:.1f}: expected the bump layer's input in [-1, 1], got {h[i].max():.4g}"
        )
    # Hidden targets: a bump of a squashed input, as in the chapter but with other numbers.
    y = np.asarray(bump_formula(np.tanh(0.3 * x - 0.2), 2.4), dtype=np.float32)
    for var in model.trainable_variables:
        # Large sigma is where the double-where layer overflows on |x| > 1.
        if "sigma" in var.path:
            var.assign(tf.fill(var.shape, 3.5))
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    for var, grad in zip(model.trainable_variables, grads, strict=True):
        if grad is None or not np.all(np.isfinite(np.asarray(grad))):
            raise CheckFailed(
                f"x in [-60, 60], sigma=3.5: expected a finite gradient for {var.path}, got "
                f"{'None' if grad is None else np.asarray(grad)}"
            )
    return "the bump layer's input stays in [-1, 1] for x in [-60, 60]; every gradient finite."


@exercise("4.4", answer="bump_sigma_gradient")
def ex4_4(bump_sigma_gradient: Callable[[np.ndarray, float], np.ndarray]) -> str:
    """Exercise 4.4: df/dsigma by hand, for |x| < 1, as a NumPy function."""
    fn = require_callable(bump_sigma_gradient, "bump_sigma_gradient(x, sigma)")
    x = np.linspace(-0.97, 0.97, 59)
    for sigma in _GRADIENT_SIGMAS:
        got = np.asarray(fn(x.copy(), sigma), dtype=np.float64)
        if got.shape != x.shape:
            raise CheckFailed(f"x of shape {x.shape}: expected that shape, got {got.shape}")
        want = bump_formula_dsigma(x, sigma)
        bad = np.flatnonzero(~np.isclose(got, want, rtol=1e-5, atol=1e-9))
        if bad.size:
            i = bad[0]
            raise CheckFailed(
                f"x={x[i]:.4f}, sigma={sigma}: expected df/dsigma = {want[i]:.6g}, got {got[i]:.6g}"
            )
    return f"df/dsigma right for |x| < 1 and sigma in {_GRADIENT_SIGMAS}."


@exercise("4.5", answer="needs_screening")
def ex4_5(needs_screening: Callable[[float, tuple[float, float]], bool]) -> str:
    """Exercise 4.5: whether make_bump_data(sigma, n, x_range) can produce an unusable target."""
    fn = require_callable(needs_screening, "needs_screening(sigma, x_range)")
    for sigma, x_range, want in _SCREEN_CASES:
        got = fn(sigma, x_range)
        if not isinstance(got, bool | np.bool_) or bool(got) != want:
            raise CheckFailed(f"sigma={sigma}, x_range={x_range}: expected {want}, got {got!r}")
    return f"right on {len(_SCREEN_CASES)} (sigma, x_range) cases."
