"""Chapter 1's probes: each runs the answer on the inputs it is given (no judge, no key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic.bump import f_False, f_True
from gradclinic.probes._core import (
    Evidence,
    Inputs,
    choice_evidence,
    probe,
    require_callable,
)

__all__ = ["TAPE_KINDS", "TAPE_VARIANTS"]

_DTYPES_1_1 = ("float32", "float64")


@probe("1.1", answer="my_scaled_bump")
def _probe_1_1(answer: Any, inputs: Inputs) -> Evidence:
    fn = require_callable(answer, "my_scaled_bump(x, t)")
    evidence: Evidence = {}
    for dtype in _DTYPES_1_1:
        xs = np.asarray(inputs[f"{dtype}_x"], dtype=np.float64)
        x = tf.constant(xs.reshape(-1, 1), dtype=dtype)
        t = tf.Variable([inputs[f"{dtype}_t"]], dtype=dtype)
        with tf.GradientTape() as tape:
            out = tf.convert_to_tensor(fn(x, t))
            total = tf.reduce_sum(out)
        grad = tape.gradient(total, t)
        evidence[f"{dtype}_values"] = np.asarray(out, dtype=np.float64)
        evidence[f"{dtype}_dtype"] = out.dtype.name
        evidence[f"{dtype}_grad"] = None if grad is None else float(np.sum(grad))
    return evidence


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
TAPE_KINDS = ("None", "tensor")


@probe("1.2", answer="tape_predictions")
def _probe_1_2(answer: Any, inputs: Inputs) -> Evidence:
    return choice_evidence(answer, TAPE_VARIANTS, TAPE_KINDS)
