"""Self-checks for chapter 4's exercises: inputs with |x| > 1, slow large sigma, screening.

Each exercise is a probe (runs the student's answer on inputs chosen here, none of them shown
in the chapter, and returns plain data) and a judge (compares that data with a reference
computed here in float64, never calling student code).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gradclinic.bump import BumpLayer
from gradclinic.checks._core import (
    CheckFailed,
    Evidence,
    exercise,
    require_callable,
    require_number,
)
from gradclinic.data import bump_formula, bump_formula_dsigma, bump_stable_reference
from gradclinic.train import fit_model

__all__ = ["ex4_1", "ex4_2", "ex4_3", "ex4_4", "ex4_5"]

# ln of the largest float32: exp of anything larger is inf in float32.
FLOAT32_LOG_MAX = math.log(float(np.finfo(np.float32).max))


# --- 4.1 -----------------------------------------------------------------------------------

# 1.004 lies between 1 and 1 + 1/88.72, where sigma itself caps the band; 1.0 is the tie.
_OVERFLOW_SIGMAS = (0.6, 1.0, 1.004, 1.3, 2.2, 7.5, 40.0)


def _overflow_reference(sigma: float) -> tuple[float, float] | None:
    if sigma <= 1:
        return None
    return math.sqrt(sigma), min(sigma, math.sqrt(sigma * (1 + 1 / FLOAT32_LOG_MAX)))


def _probe_4_1(answer: Any) -> Evidence:
    fn = require_callable(answer, "overflow_band(sigma)")
    low, high, none = [], [], []
    for sigma in _OVERFLOW_SIGMAS:
        got = fn(sigma)
        if got is None:
            none.append(True)
            low.append(math.nan)
            high.append(math.nan)
            continue
        if not isinstance(got, tuple | list) or len(got) != 2:
            raise CheckFailed(f"sigma={sigma}: expected None or a pair (low, high), got {got!r}")
        none.append(False)
        low.append(require_number(got[0], f"sigma={sigma}, low"))
        high.append(require_number(got[1], f"sigma={sigma}, high"))
    return {
        "sigma": np.array(_OVERFLOW_SIGMAS),
        "is_none": np.array(none),
        "low": np.array(low),
        "high": np.array(high),
    }


@exercise("4.1", answer="overflow_band", probe=_probe_4_1)
def ex4_1(evidence: Evidence) -> str:
    """Exercise 4.1: the positive x where the double-where layer returns inf in float32."""
    is_none = np.asarray(evidence["is_none"], dtype=bool).reshape(len(_OVERFLOW_SIGMAS))
    low = np.asarray(evidence["low"], dtype=np.float64).reshape(is_none.shape)
    high = np.asarray(evidence["high"], dtype=np.float64).reshape(is_none.shape)
    for i, sigma in enumerate(_OVERFLOW_SIGMAS):
        want = _overflow_reference(sigma)
        if want is None:
            if not is_none[i]:
                raise CheckFailed(
                    f"sigma={sigma}: got ({low[i]:.6g}, {high[i]:.6g}), but the layer returns "
                    "no inf for any x at this sigma"
                )
            continue
        if is_none[i]:
            raise CheckFailed(f"sigma={sigma}: got None, but the layer returns inf for some x")
        for end, got, ref in (("lower", low[i], want[0]), ("upper", high[i], want[1])):
            if not (math.isfinite(got) and math.isclose(got, ref, rel_tol=1e-5)):
                raise CheckFailed(
                    f"sigma={sigma}: the {end} end {got:.6g} is not where the float32 output "
                    "changes between finite and inf (tolerance 1e-5 relative)"
                )
    # The newlines keep each printed line within 80 characters.
    return f"the inf band is right for sigma in\n{_OVERFLOW_SIGMAS}."


# --- 4.2 -----------------------------------------------------------------------------------

_STABLE_SIGMAS = (0.0, 0.37, 1.0, 2.6, 6.1)
# A sigma column against an x row: the broadcast form the exercise asks for.
_COLUMN_SIGMAS = (0.0, 0.55, 1.7, 4.2)
_COLUMN_X = (-5.0, -1.9, -1.0, -0.6, -1e-30, 0.0, 0.2, 0.7, 1.2, 1.5, 3.0)


def _stable_x(sigma: float) -> np.ndarray:
    root = math.sqrt(sigma)
    special = [
        *(sign * root * k for sign in (1, -1) for k in (0.999, 1.001)),
        *(sign * sigma * k for sign in (1, -1) for k in (0.999, 1.0, 1.001)),
        0.5 * (root + sigma),  # the band sqrt(sigma) < x < sigma when sigma > 1
        1e-30,
        -1e-30,
        0.0,
    ]
    return np.concatenate([np.linspace(-7.3, 7.3, 147), special]).astype(np.float32)


def _run_bump(fn: Callable[..., Any], x_np: np.ndarray, sigma_np: np.ndarray) -> dict[str, Any]:
    x = tf.Variable(x_np)
    sigma = tf.Variable(sigma_np)
    with tf.GradientTape() as tape:
        out = tf.convert_to_tensor(fn(x, sigma))
        total = tf.reduce_sum(out)
    grad_x, grad_sigma = tape.gradient(total, [x, sigma])
    return {
        "dtype": out.dtype.name,
        "values": out.numpy(),
        "grad_x": None if grad_x is None else np.asarray(grad_x),
        "grad_sigma": None if grad_sigma is None else np.asarray(grad_sigma),
    }


def _probe_4_2(answer: Any) -> Evidence:
    fn = require_callable(answer, "my_stable_bump(x, sigma)")
    evidence: Evidence = {}
    for i, sigma in enumerate(_STABLE_SIGMAS):
        run = _run_bump(fn, _stable_x(sigma), np.array([sigma], dtype=np.float32))
        evidence.update({f"{name}_{i}": value for name, value in run.items()})
    x_row = np.array([_COLUMN_X], dtype=np.float32)
    sigma_column = np.array(_COLUMN_SIGMAS, dtype=np.float32).reshape(-1, 1)
    # Judged after the single-sigma cases, so a failure here does not hide theirs.
    try:
        run = _run_bump(fn, x_row, sigma_column)
    except Exception as error:  # the student's code refused the column: report it, never hide it
        evidence["column_error"] = f"your answer raised {type(error).__name__}: {error}"
    else:
        evidence.update({f"{name}_column": value for name, value in run.items()})
    return evidence


def _sum_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    # The gradient of a sum with respect to a broadcast input adds over the broadcast axes.
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and array.shape[i] != 1)
    return array.sum(axis=axes, keepdims=True).reshape(shape)


def _compare_bump(
    evidence: Evidence, suffix: str, x: np.ndarray, sigma: np.ndarray, where: str
) -> None:
    want = bump_stable_reference(x, sigma)
    shape = np.broadcast_shapes(x.shape, sigma.shape)
    dtype = evidence[f"dtype_{suffix}"]
    if dtype != "float32":
        raise CheckFailed(f"{where}: expected a float32 result for float32 inputs, got {dtype}")
    values = np.asarray(evidence[f"values_{suffix}"], dtype=np.float64)
    if values.shape != shape:
        raise CheckFailed(f"{where}: expected a result of shape {shape}, got {values.shape}")
    xs, ss = np.broadcast_to(x, shape), np.broadcast_to(sigma, shape)
    bad = np.flatnonzero(~np.isclose(values, want["values"], rtol=1e-4, atol=1e-6))
    if bad.size:
        i = bad[0]
        raise CheckFailed(
            f"x={xs.flat[i]:.6g}, sigma={ss.flat[i]:.4g}: expected f = "
            f"{want['values'].flat[i]:.4g}, got {values.flat[i]:.4g}"
        )
    grad_x, grad_sigma = evidence[f"grad_x_{suffix}"], evidence[f"grad_sigma_{suffix}"]
    if grad_sigma is None or grad_x is None:
        raise CheckFailed(f"{where}: expected gradients for x and sigma, got None")
    grad_x = np.asarray(grad_x, dtype=np.float64).reshape(x.shape)
    want_gx = _sum_to(np.broadcast_to(want["grad_x"], shape), x.shape)
    if not np.all(np.isfinite(grad_x)):
        i = np.flatnonzero(~np.isfinite(grad_x))[0]
        raise CheckFailed(
            f"{where}, x={x.flat[i]:.6g}: expected a finite df/dx, got {grad_x.flat[i]}"
        )
    bad = np.flatnonzero(~np.isclose(grad_x, want_gx, rtol=1e-3, atol=1e-5))
    if bad.size:
        i = bad[0]
        raise CheckFailed(
            f"{where}, x={x.flat[i]:.6g}: expected df/dx = {want_gx.flat[i]:.4g}, "
            f"got {grad_x.flat[i]:.4g}"
        )
    grad_sigma = np.asarray(grad_sigma, dtype=np.float64).reshape(sigma.shape)
    want_gs = _sum_to(np.broadcast_to(want["grad_sigma"], shape), sigma.shape)
    for i in range(sigma.size):
        got, ref = float(grad_sigma.flat[i]), float(want_gs.flat[i])
        label = where if sigma.size == 1 else f"sigma={sigma.flat[i]:.4g} in the column"
        if not math.isfinite(got):
            raise CheckFailed(f"{label}: expected a finite df/dsigma, got {got}")
        if not math.isclose(got, ref, rel_tol=1e-3, abs_tol=1e-5):
            raise CheckFailed(f"{label}: expected the sum of df/dsigma {ref:.4f}, got {got:.4f}")


@exercise("4.2", answer="my_stable_bump", probe=_probe_4_2)
def ex4_2(evidence: Evidence) -> str:
    """Exercise 4.2: a bump whose values and gradients are right and finite for every x, sigma >= 0."""
    for i, sigma in enumerate(_STABLE_SIGMAS):
        x = _stable_x(sigma).astype(np.float64)
        sigma_used = np.array([np.float32(sigma)], dtype=np.float64)
        _compare_bump(evidence, str(i), x, sigma_used, f"sigma={sigma}, x in [-7.3, 7.3]")
    if "column_error" in evidence:
        raise CheckFailed(f"sigma as a column {_COLUMN_SIGMAS}: {evidence['column_error']}")
    x_row = np.array([_COLUMN_X], dtype=np.float32).astype(np.float64)
    column = np.array(_COLUMN_SIGMAS, dtype=np.float32).astype(np.float64).reshape(-1, 1)
    _compare_bump(evidence, "column", x_row, column, f"sigma as a column {_COLUMN_SIGMAS}")
    return (
        f"values and gradients right for x in [-7.3, 7.3]\n"
        f"(edges, band, tiny x), sigma in {_STABLE_SIGMAS},\n"
        f"and for a sigma column."
    )


# --- 4.3 -----------------------------------------------------------------------------------

# A teacher the chapter does not use: h = tanh(0.8 x - 0.35), y = f(h; sigma = 1.5).
_TEACHER = (0.8, -0.35, 1.5)
_TEACHER_SEED = 17
_STRESS_SIGMA = 3.5


def _teacher(x: np.ndarray) -> np.ndarray:
    kernel, bias, sigma = _TEACHER
    return bump_formula(np.tanh(kernel * np.asarray(x, dtype=np.float64) + bias), sigma)


def _bump_layers(model: keras.Model) -> list[BumpLayer]:
    return [layer for layer in model.layers if isinstance(layer, BumpLayer)]


def _fresh_model(fn: Callable[[], Any]) -> keras.Model:
    model = fn()
    if not isinstance(model, keras.Model):
        raise CheckFailed(f"build_tanh_model(): expected a keras Model, got {type(model).__name__}")
    bumps = _bump_layers(model)
    if len(bumps) != 1 or bumps[0].guard != "double_where":
        raise CheckFailed(
            "build_tanh_model(): expected one BumpLayer(guard='double_where') (the layer stays "
            f"as it is; the layer before changes), got guards {[b.guard for b in bumps]}"
        )
    return model


def _seeded_start(model: keras.Model) -> keras.Model:
    """Redraw every kernel from the check's own seeds, so that no global RNG decides the run."""
    # Reseeding globally (keras.utils.set_random_seed) would reset the student's own random
    # state; explicit seeds make the check repeatable and leave that state alone. Biases and
    # other vectors start from constants in Keras, so only kernels are drawn at random.
    for i, weight in enumerate(model.weights):
        if len(weight.shape) >= 2:
            start = keras.initializers.GlorotUniform(seed=_TEACHER_SEED + i)(weight.shape)
            weight.assign(keras.ops.cast(start, weight.dtype))
    return model


def _probe_4_3(answer: Any) -> Evidence:
    fn = require_callable(answer, "build_tanh_model()")
    model = _seeded_start(_fresh_model(fn))
    bump = _bump_layers(model)[0]
    x = np.linspace(-60.0, 60.0, 241, dtype=np.float32).reshape(-1, 1)
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    h = np.asarray(keras.Model(inputs, bump.input)(x), dtype=np.float64)
    # Large sigma is where the double-where layer overflows on |x| > 1.
    bump.sigma.assign(tf.fill(bump.sigma.shape, _STRESS_SIGMA))
    y = _teacher(x).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    finite = [g is not None and bool(np.all(np.isfinite(np.asarray(g)))) for g in grads]

    trained = _seeded_start(_fresh_model(fn))
    rng = np.random.default_rng(_TEACHER_SEED)
    x_train = rng.uniform(-5, 5, size=(600, 1)).astype(np.float32)
    fit = fit_model(
        trained, x_train, _teacher(x_train).astype(np.float32), epochs=25, seed=_TEACHER_SEED
    )
    grid = np.linspace(-6, 6, 121, dtype=np.float32).reshape(-1, 1)
    return {
        "h_max": float(np.max(np.abs(h))),
        "h_max_at": float(x[int(np.argmax(np.abs(h).max(axis=1))), 0]),
        "grads_finite": np.array(finite),
        "variables": np.array([v.path for v in model.trainable_variables]),
        "nonfinite_steps": fit.nonfinite_loss_steps + fit.nonfinite_grad_steps,
        "predictions": np.asarray(trained(grid), dtype=np.float64).reshape(-1),
        "sigma": float(np.asarray(_bump_layers(trained)[0].sigma).reshape(-1)[0]),
    }


@exercise("4.3", answer="build_tanh_model", probe=_probe_4_3)
def ex4_3(evidence: Evidence) -> str:
    """Exercise 4.3: a squashing layer in front of the double-where layer, recovering a teacher."""
    # tanh rounds to exactly +-1 in float32 for large inputs; |h| = 1 is still outside the band.
    if not float(evidence["h_max"]) <= 1:
        raise CheckFailed(
            f"x={float(evidence['h_max_at']):.1f}: expected the bump layer's input in [-1, 1], "
            f"got {float(evidence['h_max']):.4g}"
        )
    finite = np.asarray(evidence["grads_finite"], dtype=bool).reshape(-1)
    names = np.asarray(evidence["variables"]).reshape(finite.shape)
    if not finite.all():
        raise CheckFailed(
            f"x in [-60, 60], sigma={_STRESS_SIGMA}: expected a finite gradient for "
            f"{names[np.flatnonzero(~finite)[0]]}, got None or NaN/inf"
        )
    if int(evidence["nonfinite_steps"]) != 0:
        raise CheckFailed(
            f"training on the check's teacher: {int(evidence['nonfinite_steps'])} steps had a "
            "NaN/inf loss or gradient, expected none"
        )
    grid = np.linspace(-6, 6, 121, dtype=np.float32).reshape(-1).astype(np.float64)
    predictions = np.asarray(evidence["predictions"], dtype=np.float64).reshape(grid.shape)
    error = float(np.max(np.abs(predictions - _teacher(grid))))
    sigma = float(evidence["sigma"])
    if not (error < 1e-3 and abs(sigma - _TEACHER[2]) < 0.01 * _TEACHER[2]):
        raise CheckFailed(
            "after fit_model(epochs=25) on 600 points of a teacher you have not seen, the "
            f"model is off by up to {error:.2g} on x in [-6, 6] (sigma learned: {sigma:.3g}); "
            "expected under 1e-3 and sigma within 1 %: this model cannot represent the teacher "
            "or does not learn it"
        )
    return (
        "the bump layer sees only [-1, 1] for x in [-60, 60],\n"
        "every gradient is finite, and the model recovers a teacher it has not seen."
    )


# --- 4.4 -----------------------------------------------------------------------------------

_SGD_CASES = ((1.0, 3.0), (1.6, 40.0), (4.5, 0.7), (12.0, 5000.0))
_SGD_SEED = 23


def _sgd_x() -> np.ndarray:
    rng = np.random.default_rng(_SGD_SEED)
    return np.concatenate([rng.uniform(-1, 1, 37), [0.0, 0.999, -0.999]]).reshape(5, 8)


def _sgd_reference(x: np.ndarray, sigma_true: float, learning_rate: float) -> float:
    # Near the target f(x; sigma) - f(x; sigma*) = df/dsigma * (sigma - sigma*), so the MSE's
    # slope is 2 mean(df/dsigma^2) (sigma - sigma*), and one step multiplies the error by this.
    curvature = 2 * np.mean(bump_formula_dsigma(x, sigma_true) ** 2)
    return float(1 - learning_rate * curvature)


def _probe_4_4(answer: Any) -> Evidence:
    fn = require_callable(answer, "sgd_error_factor(x, sigma_true, learning_rate)")
    x = _sgd_x()
    got = []
    for sigma_true, rate in _SGD_CASES:
        value = fn(x.copy(), sigma_true, rate)
        if isinstance(value, np.ndarray | tf.Tensor) and np.size(value) != 1:
            raise CheckFailed(
                f"sigma_true={sigma_true}, learning_rate={rate}: expected one number, got an "
                f"array of shape {tuple(np.shape(value))}"
            )
        if isinstance(value, tf.Tensor):
            value = value.numpy()
        got.append(
            require_number(
                np.asarray(value).reshape(()) if isinstance(value, np.ndarray) else value,
                f"sigma_true={sigma_true}, learning_rate={rate}",
            )
        )
    return {"factors": np.array(got)}


@exercise("4.4", answer="sgd_error_factor", probe=_probe_4_4)
def ex4_4(evidence: Evidence) -> str:
    """Exercise 4.4: the factor by which one full-batch SGD step shrinks sigma's error."""
    factors = np.asarray(evidence["factors"], dtype=np.float64).reshape(len(_SGD_CASES))
    x = _sgd_x()
    for (sigma_true, rate), got in zip(_SGD_CASES, factors, strict=True):
        want = _sgd_reference(x, sigma_true, rate)
        where = f"x (40 points in (-1, 1)), sigma_true={sigma_true}, learning_rate={rate}"
        if not math.isfinite(got):
            raise CheckFailed(f"{where}: expected a finite factor, got {got}")
        if got > 1:
            raise CheckFailed(
                f"{where}: your factor {got:.6g} is above 1, so a step would move sigma away "
                "from the target"
            )
        # Compare 1 - factor: the step's own size, which is what the learning rate scales.
        if not math.isclose(1 - got, 1 - want, rel_tol=1e-3):
            raise CheckFailed(
                f"{where}: your factor {got:.6g} is off (1 - factor must be right to 0.1 %)"
            )
    return f"the first-order SGD factor is right for\n(sigma_true, learning_rate) in\n{_SGD_CASES}."


# --- 4.5 -----------------------------------------------------------------------------------

_SCREEN_CASES = (
    (0.5, (-3.0, 3.0)),
    (1.0, (-5.0, 5.0)),
    (2.0, (-1.2, 1.2)),
    (2.0, (-1.2, 1.5)),
    (3.0, (0.0, 1.7)),
    (4.0, (-3.0, -2.5)),
    (9.0, (3.5, 8.0)),
    (9.0, (9.5, 12.0)),
    (6.0, (-7.0, 7.0)),
    (2.5, (1.0, 1.8)),
    (1.2, (-1.1, 0.5)),
    (5.0, (-10.0, -1.0)),
)


def _dropped_reference(sigma: float, x_range: tuple[float, float]) -> float:
    # Uniform x: the share of x_range inside the band sqrt(sigma) < |x| < sigma, both signs.
    low, high = x_range
    if sigma <= 1:
        return 0.0
    root = math.sqrt(sigma)
    inside = sum(max(0.0, min(high, b) - max(low, a)) for a, b in ((-sigma, -root), (root, sigma)))
    return inside / (high - low)


def _probe_4_5(answer: Any) -> Evidence:
    fn = require_callable(answer, "dropped_fraction(sigma, x_range)")
    got = [
        require_number(fn(sigma, x_range), f"sigma={sigma}, x_range={x_range}")
        for sigma, x_range in _SCREEN_CASES
    ]
    return {"fractions": np.array(got)}


@exercise("4.5", answer="dropped_fraction", probe=_probe_4_5)
def ex4_5(evidence: Evidence) -> str:
    """Exercise 4.5: the expected share of make_bump_data's rows that screen drops."""
    fractions = np.asarray(evidence["fractions"], dtype=np.float64).reshape(len(_SCREEN_CASES))
    for (sigma, x_range), got in zip(_SCREEN_CASES, fractions, strict=True):
        want = _dropped_reference(sigma, x_range)
        if not (math.isfinite(got) and abs(got - want) <= 1e-6):
            raise CheckFailed(
                f"sigma={sigma}, x_range={x_range}: got {got:.6g}, which is not the expected "
                "share of dropped rows (exact, to 1e-6)"
            )
    return f"right on {len(_SCREEN_CASES)} (sigma, x_range) cases,\nedges and both signs included."
