"""Chapter 5's probes: each runs the answer on the inputs it is given (no judge, no key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic.probes._core import (
    Evidence,
    Inputs,
    choice_evidence,
    probe,
    require_callable,
    require_number,
)

__all__ = ["SLOPE_KINDS", "SLOPE_VARIANTS"]


@probe("5.1", answer="edge_slope")
def _probe_5_1(answer: Any, inputs: Inputs) -> Evidence:
    fn = require_callable(answer, "edge_slope(sigma, teacher_sigma, low, high)")
    values = []
    for sigma, teacher, low, high in np.asarray(inputs["cases"], np.float64).tolist():
        where = f"sigma={sigma}, teacher_sigma={teacher}, low={low}, high={high}"
        values.append(require_number(fn(sigma, teacher, low, high), where))
    return {"values": np.array(values)}


# Exercise 5.2's thresholded functions y(x, t), as the exercise prints them.
SLOPE_VARIANTS: dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "A": lambda x, t: tf.where(x < t, x, t * tf.ones_like(x)),
    "B": lambda x, t: tf.where(x < t, tf.ones_like(x), tf.zeros_like(x)),
    "C": lambda x, t: tf.where(x < t, x + t, tf.zeros_like(x)),
    "D": lambda x, t: tf.where(x < t, x - t, tf.zeros_like(x)),
    "E": lambda x, t: tf.cast(x < t, x.dtype) * x,
    "F": lambda x, t: tf.where(tf.abs(x) < t, t**2 - x**2, tf.zeros_like(x)),
    "G": lambda x, t: tf.where(tf.abs(x) < t, tf.cos(x / t), tf.zeros_like(x)),
}
SLOPE_KINDS = ("None", "whole", "part")


@probe("5.2", answer="slope_predictions")
def _probe_5_2(answer: Any, inputs: Inputs) -> Evidence:
    return choice_evidence(answer, SLOPE_VARIANTS, SLOPE_KINDS)
