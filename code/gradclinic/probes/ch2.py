"""Chapter 2's probes: each runs the answer on the inputs it is given (no judge, no key)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic.probes._core import (
    CheckFailed,
    Evidence,
    Inputs,
    choice_evidence,
    probe,
    require_callable,
)

__all__ = ["GRADIENT_FUNCTIONS", "GRADIENT_KINDS"]

# Exercise 2.1: small functions of one variable v = 2.0, as the exercise prints them.
GRADIENT_FUNCTIONS: dict[str, Callable[[tf.Variable], tf.Tensor]] = {
    "A": lambda v: tf.square(v - 2.0),
    "B": lambda v: tf.where(v > 1.0, 3.0 * v, 0.0),
    "C": lambda v: tf.where(v > 5.0, 3.0 * v, 0.0),
    "D": lambda v: tf.constant(v.numpy()) * 3.0,
    "E": lambda v: tf.cast(v > 1.0, tf.float32) * 3.0,
    "F": lambda v: tf.nn.relu(v - 5.0),
}
GRADIENT_KINDS = ("None", "zero", "nonzero")


@probe("2.1", answer="gradient_predictions")
def _probe_2_1(answer: Any, inputs: Inputs) -> Evidence:
    return choice_evidence(answer, GRADIENT_FUNCTIONS, GRADIENT_KINDS)


# Exercise 2.2: each case is a loss over named variables; the judge knows which are unconnected.
def _case_mixed(v: dict[str, tf.Variable]) -> tf.Tensor:
    # used; multiplied by zero; unused; gathered (an IndexedSlices gradient); through NumPy.
    gathered = tf.reduce_sum(tf.gather(v["table"], [0, 2]))
    numpy_copy = tf.constant(v["copied"].numpy())
    return 2.0 * v["used"] + 0.0 * v["times_zero"] + gathered + numpy_copy


def _case_connected(v: dict[str, tf.Variable]) -> tf.Tensor:
    # A gradient of inf is not None either.
    return tf.sqrt(v["at_zero"]) + tf.nn.relu(v["off"])


def _case_unconnected(v: dict[str, tf.Variable]) -> tf.Tensor:
    return tf.cast(v["compared"] > 0.0, tf.float32) + tf.round(v["rounded"])


_CASES_2_2: tuple[tuple[Callable[[dict[str, tf.Variable]], tf.Tensor], dict[str, Any]], ...] = (
    (
        _case_mixed,
        {
            "used": 1.0,
            "times_zero": 1.0,
            "unused": 1.0,
            "table": [1.0, 2.0, 3.0],
            "copied": 1.0,
        },
    ),
    (_case_connected, {"at_zero": 0.0, "off": -1.0}),
    (_case_unconnected, {"compared": 1.0, "rounded": 1.2}),
)


def _names_text(names: Any, where: str) -> str:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise CheckFailed(f"{where}: expected a list of names, got {type(names).__name__}")
    for name in names:
        if not isinstance(name, str):
            raise CheckFailed(f"{where}: expected names (str), got {type(name).__name__}")
    # Variables created eagerly are named "unused:0": the suffix is the output index, not a name.
    return ",".join(name.split(":")[0] for name in names)


@probe("2.2", answer="none_gradients")
def _probe_2_2(answer: Any, inputs: Inputs) -> Evidence:
    fn = require_callable(answer, "none_gradients(gradients, variables)")
    evidence: Evidence = {}
    for i, (loss_fn, start) in enumerate(_CASES_2_2):
        # The loss reads each variable by its role; its name is the one given.
        names = [str(name) for name in np.asarray(inputs[f"names{i}"]).ravel()]
        variables = {
            role: tf.Variable(value, name=name)
            for (role, value), name in zip(start.items(), names, strict=True)
        }
        with tf.GradientTape() as tape:
            loss = loss_fn(variables)
        ordered = list(variables.values())
        gradients = tape.gradient(loss, ordered)
        evidence[f"case{i}"] = _names_text(fn(gradients, ordered), f"case {i + 1}")
    # One gradient fewer than variables: a mistake the function must refuse, not paper over.
    short = [tf.Variable(1.0, name="first"), tf.Variable(1.0, name="second")]
    try:
        fn([tf.constant(1.0)], short)
    except ValueError:
        evidence["mismatch"] = "ValueError"
    except Exception as error:  # the wrong kind, and the judge says so
        evidence["mismatch"] = type(error).__name__
    else:
        evidence["mismatch"] = "returned"
    return evidence
