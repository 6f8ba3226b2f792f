"""Chapter 4's probes: each runs the answer on the inputs it is given (no judge, no key)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gradclinic.bump import BumpLayer
from gradclinic.data import bump_formula
from gradclinic.probes._core import (
    CheckFailed,
    Evidence,
    Inputs,
    probe,
    require_callable,
    require_number,
)
from gradclinic.train import fit_model

__all__ = []


# --- 4.1 -----------------------------------------------------------------------------------


@probe("4.1", answer="overflow_band")
def _probe_4_1(answer: Any, inputs: Inputs) -> Evidence:
    fn = require_callable(answer, "overflow_band(sigma)")
    low, high, none = [], [], []
    sigmas = [float(sigma) for sigma in np.asarray(inputs["sigmas"]).ravel()]
    for sigma in sigmas:
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
        "sigma": np.array(sigmas),
        "is_none": np.array(none),
        "low": np.array(low),
        "high": np.array(high),
    }


# --- 4.2 -----------------------------------------------------------------------------------

# A sigma column against this x row: the broadcast form the exercise asks for.
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


@probe("4.2", answer="my_stable_bump")
def _probe_4_2(answer: Any, inputs: Inputs) -> Evidence:
    fn = require_callable(answer, "my_stable_bump(x, sigma)")
    evidence: Evidence = {}
    for i, sigma in enumerate(np.asarray(inputs["sigmas"], dtype=np.float64).ravel()):
        run = _run_bump(fn, _stable_x(sigma), np.array([sigma], dtype=np.float32))
        evidence.update({f"{name}_{i}": value for name, value in run.items()})
    x_row = np.array([_COLUMN_X], dtype=np.float32)
    sigma_column = np.asarray(inputs["column_sigmas"], dtype=np.float32).reshape(-1, 1)
    # Judged after the single-sigma cases, so a failure here does not hide theirs.
    try:
        run = _run_bump(fn, x_row, sigma_column)
    except Exception as error:  # the student's code refused the column: report it, never hide it
        evidence["column_error"] = f"your answer raised {type(error).__name__}: {error}"
    else:
        evidence.update({f"{name}_column": value for name, value in run.items()})
    return evidence


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


@probe("4.3", answer="build_tanh_model")
def _probe_4_3(answer: Any, inputs: Inputs) -> Evidence:
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
        trained,
        x_train,
        _teacher(x_train).astype(np.float32),
        epochs=25,
        seed=_TEACHER_SEED,
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


# --- 4.4 -----------------------------------------------------------------------------------


@probe("4.4", answer="sgd_error_factor")
def _probe_4_4(answer: Any, inputs: Inputs) -> Evidence:
    fn = require_callable(answer, "sgd_error_factor(x, sigma_true, learning_rate)")
    x = np.asarray(inputs["x"], dtype=np.float64)
    got = []
    for sigma_true, rate in np.asarray(inputs["cases"], dtype=np.float64).tolist():
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


# --- 4.5 -----------------------------------------------------------------------------------


def _screen_cases(inputs: Inputs) -> list[tuple[float, tuple[float, float]]]:
    """The (sigma, x_range) cases of exercise 4.5's inputs."""
    rows = np.asarray(inputs["cases"], dtype=np.float64).reshape(-1, 3).tolist()
    return [(sigma, (low, high)) for sigma, low, high in rows]


@probe("4.5", answer="dropped_fraction")
def _probe_4_5(answer: Any, inputs: Inputs) -> Evidence:
    fn = require_callable(answer, "dropped_fraction(sigma, x_range)")
    got = [
        require_number(fn(sigma, x_range), f"sigma={sigma}, x_range={x_range}")
        for sigma, x_range in _screen_cases(inputs)
    ]
    return {"fractions": np.array(got)}
