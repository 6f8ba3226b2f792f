"""Chapter 6's probes: each runs the answer on the inputs it is given (no judge, no key)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic import losssplit
from gradclinic.probes._core import (
    CheckFailed,
    Evidence,
    Inputs,
    probe,
    require_callable,
)

__all__ = []

# Exercise 6.1: (sizes n, h, m, which loss is made exactly 0), none of them the book's 3, 4, 5.
_PRODUCT_CASES: tuple[tuple[int, int, int, str | None], ...] = (
    (2, 3, 4, None),
    (4, 2, 3, None),
    (3, 5, 2, "loss1"),
    (2, 4, 3, "loss2"),
)


def _product_case(
    index: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arrays of one hidden case: inputs, weight1, weight2, label1, label2 (float64)."""
    n, h, m, zero = _PRODUCT_CASES[index]
    rng = np.random.default_rng(seed + index)
    inputs = rng.normal(size=(1, n)).round(2)
    weight1 = rng.normal(size=(n, h)).round(2)
    weight2 = rng.normal(size=(h, m)).round(2)
    label1 = rng.normal(size=(1, h)).round(2)
    label2 = rng.normal(size=(1, m)).round(2)
    # Move one label entry so that the chosen loss is exactly 0: a term of the answer vanishes.
    if zero == "loss1":
        label1[0, 0] += (inputs @ weight1 - label1).sum()
    if zero == "loss2":
        label2[0, 0] += (inputs @ weight1 @ weight2 - label2).sum()
    return inputs, weight1, weight2, label1, label2


def _exact_text(value: Any) -> str:
    """The probe's text for one returned entry: exact numbers only, never a huge one."""
    if isinstance(value, Fraction | int) and not isinstance(value, bool):
        # Bounded before str(): str() of an int of thousands of digits is itself slow or refused.
        if max(abs(value.numerator), value.denominator).bit_length() <= 190:
            return str(value)
        return "too large"
    return type(value).__name__


def _as_fractions(array: np.ndarray) -> np.ndarray:
    # Every entry of case 0 has two decimals, so a Fraction holds each one exactly.
    exact = [Fraction(round(float(value) * 100), 100) for value in array.ravel()]
    return np.array(exact, dtype=object).reshape(array.shape)


def _as_float_array(got: Any) -> np.ndarray:
    try:
        return np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"expected an array of numbers, got {type(got).__name__}") from None


@probe("6.1", answer="my_product_gradient")
def _probe_6_1(answer: Any, inputs: Inputs) -> Evidence:
    fn = require_callable(answer, "my_product_gradient(inputs, weight1, weight2, label1, label2)")
    evidence: Evidence = {}
    seed = int(inputs["seed"])
    for index in range(len(_PRODUCT_CASES)):
        # Copies, so that an answer that writes into its arguments cannot change the next case.
        got = fn(*(array.copy() for array in _product_case(index, seed)))
        evidence[f"case{index}"] = _as_float_array(got)
    # Case 0 again in exact fractions (object arrays). NumPy arithmetic keeps them exact; a tape
    # computes in floats, so only a formula of the student's own passes this case.
    try:
        exact = np.asarray(
            fn(*(_as_fractions(array) for array in _product_case(0, seed))),
            dtype=object,
        )
    except Exception as error:
        raise CheckFailed(
            "with exact fractions (object arrays of fractions.Fraction) your function raised "
            f"{type(error).__name__}; the check needs NumPy arithmetic, no TensorFlow"
        ) from None
    evidence["exact_shape"] = np.asarray(exact.shape, dtype=np.int64)
    # As ";"-joined text: plain strings survive the grader's JSON, exactly.
    evidence["exact_kinds"] = ";".join(type(v).__name__ for v in exact.ravel())
    evidence["exact_values"] = ";".join(_exact_text(v) for v in exact.ravel())
    return evidence


# Exercise 6.2: a model and a batch the chapter never shows.
_FROZEN_BATCH = 23


def _frozen_batch(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, losssplit.NUM_IDS, _FROZEN_BATCH),
        rng.integers(0, losssplit.NUM_CLASSES1, _FROZEN_BATCH),
        rng.integers(0, losssplit.NUM_CLASSES2, _FROZEN_BATCH),
    )


@probe("6.2", answer="my_frozen_head_gradients")
def _probe_6_2(answer: Any, inputs: Inputs) -> Evidence:
    fn = require_callable(answer, "my_frozen_head_gradients(model, ids, labels1, labels2)")
    seed = int(inputs["seed"])
    model = losssplit.TwoHeadModel(seed)
    before = model.values()
    got = fn(model, *_frozen_batch(seed))
    if not isinstance(got, dict) or set(got) != set(losssplit.VARIABLE_NAMES):
        keys = sorted(map(str, got)) if isinstance(got, dict) else type(got).__name__
        raise CheckFailed(f"expected a dict with keys {losssplit.VARIABLE_NAMES}, got {keys}")
    evidence: Evidence = {
        "unchanged": all(np.array_equal(before[n], v) for n, v in model.values().items())
    }
    for name in losssplit.VARIABLE_NAMES:
        grad = got[name]
        # The embedding's gradient may arrive as IndexedSlices; dense compares like the others.
        evidence[name] = None if grad is None else np.asarray(tf.convert_to_tensor(grad))
    return evidence
