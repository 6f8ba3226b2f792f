"""Chapter 3's probes: each runs the answer on the inputs it is given (no judge, no key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic.probes._core import (
    CheckFailed,
    Evidence,
    Inputs,
    probe,
    require_callable,
)

# EX3_1_BRANCHES, EX3_1_INPUTS and EX3_1_OPS are imported by the chapter, not re-exported.
__all__ = ["EX3_1_BRANCHES", "EX3_1_INPUTS", "EX3_1_OPS"]

# Exercise 3.1: each branch g sits in tf.where(x > 0, g(x), 0), so at these inputs it is the
# unselected one. None of them is shown on the chapter's page.
EX3_1_BRANCHES: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "tf.math.reciprocal(x)": tf.math.reciprocal,
    "tf.math.rsqrt(x)": tf.math.rsqrt,
    "tf.exp(-1.0 / x)": lambda x: tf.exp(-1.0 / x),
    "x * tf.math.log(x)": lambda x: x * tf.math.log(x),
    # Not tf.math.xlogy: TF 2.22.0rc0 changed its gradient at x = y = 0 (0 became log 0 = -inf),
    # and the answer must not depend on the release a student runs.
    "tf.tanh(1.0 / x)": lambda x: tf.tanh(1.0 / x),
    "tf.pow(x, 1.5)": lambda x: tf.pow(x, 1.5),
    "tf.math.divide_no_nan(1.0, x)": lambda x: tf.math.divide_no_nan(1.0, x),
}
EX3_1_INPUTS = (-1.0, 0.0)
# The TensorFlow op types the branches are built from (a / b is RealDiv, a * b is Mul).
EX3_1_OPS = (
    "DivNoNan",
    "Exp",
    "Log",
    "Mul",
    "Pow",
    "RealDiv",
    "Reciprocal",
    "Rsqrt",
    "Tanh",
)


@probe("3.1", answer="nan_gradient_at")
def _probe_3_1(answer: Any, inputs: Inputs) -> Evidence:
    if not isinstance(answer, dict):
        raise CheckFailed(
            "expected a dict {expression: {input: [ops]}} with one entry per expression of "
            f"EX3_1_BRANCHES, got {type(answer).__name__}"
        )
    missing = [name for name in EX3_1_BRANCHES if name not in answer]
    if missing:
        raise CheckFailed(f"no prediction for {missing[0]!r} (one entry per expression)")
    evidence: Evidence = {}
    for name in EX3_1_BRANCHES:
        chosen = answer[name]
        if not isinstance(chosen, dict):
            raise CheckFailed(
                f"{name!r}: expected a dict {{input: [ops]}} of the inputs with a NaN gradient "
                f"({{}} if none), got {type(chosen).__name__}"
            )
        nan_at = np.zeros(len(EX3_1_INPUTS), dtype=bool)
        ops = np.zeros((len(EX3_1_INPUTS), len(EX3_1_OPS)), dtype=bool)
        for value, named in chosen.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CheckFailed(f"{name!r}: inputs must be numbers from {EX3_1_INPUTS}")
            if float(value) not in EX3_1_INPUTS:
                raise CheckFailed(f"{name!r}: {value!r} is not one of the inputs {EX3_1_INPUTS}")
            row = EX3_1_INPUTS.index(float(value))
            named = [named] if isinstance(named, str) else named
            if not isinstance(named, list | tuple | set | frozenset) or not named:
                raise CheckFailed(
                    f"{name!r}, input {value!r}: expected a non-empty list of ops from "
                    f"EX3_1_OPS, got {named!r}"
                )
            for op in named:
                if op not in EX3_1_OPS:
                    raise CheckFailed(f"{name!r}: {op!r} is not one of EX3_1_OPS {EX3_1_OPS}")
                ops[row, EX3_1_OPS.index(op)] = True
            nan_at[row] = True
        evidence[name] = nan_at
        evidence[f"ops of {name}"] = ops
    return evidence


@probe("3.2", answer="smooth_step")
def _probe_3_2(answer: Any, inputs: Inputs) -> Evidence:
    fn = require_callable(answer, "smooth_step(x)")
    points = np.asarray(inputs["x"], dtype=np.float64).ravel()
    x = tf.Variable(points.astype(np.float32))
    with tf.GradientTape() as tape:
        out = tf.convert_to_tensor(fn(x))
    if out.shape != x.shape:
        raise CheckFailed(
            f"x of shape {tuple(x.shape)}: expected an output of that shape, got {tuple(out.shape)}"
        )
    if not out.dtype.is_floating:
        raise CheckFailed(f"expected a floating-point output, got dtype {out.dtype.name}")
    # The sum's gradient is each point's own derivative when the step acts element-wise;
    # the values one at a time (below) catch an answer that mixes elements.
    grad = tape.gradient(out, x)
    alone = [
        float(np.asarray(tf.convert_to_tensor(fn(tf.constant([value], tf.float32))))[0])
        for value in points
    ]
    return {
        "values": np.asarray(out, dtype=np.float64),
        "alone": np.array(alone),
        "grads": None if grad is None else np.asarray(grad, dtype=np.float64),
    }
