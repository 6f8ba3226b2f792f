"""Self-checks for chapter 1's exercises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic.checks._core import CheckFailed, exercise, require_callable
from gradclinic.data import bump_formula, bump_formula_dsigma

__all__ = ["ex1_1", "ex1_2"]

# Inputs the chapter never shows, so an answer cannot be tuned to its numbers.
_THRESHOLD_X = (-1.7, -0.4, 0.0, 0.3, 0.55, 0.9, 2.5)
_THRESHOLD = 0.42
_SIGMA_X = (-1.2, -0.6, -0.2, 0.0, 0.35, 0.7, 1.5)
_SIGMA = 0.8


def _question_branch(x: np.ndarray) -> np.ndarray:
    # The question's f_True in float64: exp(-1 / (1 - x^2)).
    with np.errstate(divide="ignore", over="ignore"):
        return np.exp(-1.0 / (1.0 - x**2))


def _as_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if value is None:
        raise CheckFailed(f"{name}: expected a tensor of shape {shape}, got None")
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise CheckFailed(f"{name}: expected shape {shape} (the input's shape), got {array.shape}")
    return array


@exercise("1.1", answer="my_threshold_bump")
def ex1_1(my_threshold_bump: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> str:
    """Exercise 1.1: the question's f_True where x < threshold, else 0, element by element."""
    fn = require_callable(my_threshold_bump, "my_threshold_bump(x, threshold)")
    x = np.array(_THRESHOLD_X, dtype=np.float32).reshape(-1, 1)
    expected = np.where(x < _THRESHOLD, _question_branch(x.astype(np.float64)), 0.0)
    got = _as_array(fn(tf.constant(x), tf.constant([_THRESHOLD])), "output", x.shape)
    for xi, e, g in zip(x.ravel(), expected.ravel(), got.ravel(), strict=True):
        if not np.isclose(g, e, rtol=1e-4, atol=1e-6):
            raise CheckFailed(f"x={xi:.2f}, threshold={_THRESHOLD}: expected {e:.4f}, got {g:.4f}")
    return f"all {x.size} elements of a batch match, one condition per element."


@exercise("1.2", answer="my_sigma_bump")
def ex1_2(my_sigma_bump: Callable[[tf.Tensor, tf.Variable], tf.Tensor]) -> str:
    """Exercise 1.2: exp(-sigma / (sigma - x^2)) inside |x| < sigma, with sigma reaching it."""
    fn = require_callable(my_sigma_bump, "my_sigma_bump(x, sigma)")
    x = np.array(_SIGMA_X, dtype=np.float32).reshape(-1, 1)
    sigma = tf.Variable([_SIGMA], dtype=tf.float32)
    with tf.GradientTape() as tape:
        out = fn(tf.constant(x), sigma)
        total = tf.reduce_sum(out)
    got = _as_array(out, "output", x.shape)
    expected = bump_formula(x, _SIGMA)
    for xi, e, g in zip(x.ravel(), expected.ravel(), got.ravel(), strict=True):
        if not np.isclose(g, e, rtol=1e-4, atol=1e-6):
            raise CheckFailed(f"x={xi:.2f}, sigma={_SIGMA}: expected {e:.4f}, got {g:.4f}")
    grad = tape.gradient(total, sigma)
    if grad is None:
        raise CheckFailed(
            f"sigma={_SIGMA}: expected a gradient for sigma, got None (sigma never reaches the output)"
        )
    want = float(bump_formula_dsigma(x, _SIGMA).sum())
    have = float(np.asarray(grad).sum())
    if not np.isclose(have, want, rtol=1e-3):
        raise CheckFailed(f"sigma={_SIGMA}: expected d(sum f)/d sigma = {want:.4f}, got {have:.4f}")
    return f"values match the formula and d(sum f)/d sigma = {have:.4f} reaches sigma."
