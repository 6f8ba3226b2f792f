"""Self-checks for chapter 2's exercises (probe runs the answer, judge compares plain data)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from gradclinic.checks._core import (
    CheckFailed,
    Evidence,
    choice_evidence,
    count_wrong_choices,
    exercise,
    require_callable,
)

__all__ = ["GRADIENT_FUNCTIONS", "GRADIENT_KINDS", "ex2_1", "ex2_2", "measure_gradient"]

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
_V = 2.0


def measure_gradient(name: str) -> tuple[str, float | None]:
    """What the tape returns for function `name` of GRADIENT_FUNCTIONS at v = 2: kind and value."""
    if name not in GRADIENT_FUNCTIONS:
        raise ValueError(f"name must be one of {', '.join(GRADIENT_FUNCTIONS)}; got {name!r}")
    v = tf.Variable(_V)
    with tf.GradientTape() as tape:
        y = GRADIENT_FUNCTIONS[name](v)
    gradient = tape.gradient(y, v)
    if gradient is None:
        return "None", None
    value = float(gradient)
    return ("zero" if value == 0.0 else "nonzero"), value


def _probe_2_1(answer: Any) -> Evidence:
    return choice_evidence(answer, GRADIENT_FUNCTIONS, GRADIENT_KINDS)


@exercise("2.1", answer="gradient_predictions", probe=_probe_2_1)
def ex2_1(evidence: Evidence) -> str:
    """Exercise 2.1: for each function, whether the tape's gradient is None, zero or nonzero."""
    truth = {name: measure_gradient(name)[0] for name in GRADIENT_FUNCTIONS}
    wrong = count_wrong_choices(evidence, truth, GRADIENT_KINDS)
    if wrong:
        raise CheckFailed(
            f"{wrong} of {len(GRADIENT_FUNCTIONS)} predictions differ from what the tape "
            "returns; for each function, look for a path from v to the result, then for the "
            "derivative along it at v = 2"
        )
    return f"all {len(GRADIENT_FUNCTIONS)} predictions match what the tape returns."


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
        {"used": 1.0, "times_zero": 1.0, "unused": 1.0, "table": [1.0, 2.0, 3.0], "copied": 1.0},
    ),
    (_case_connected, {"at_zero": 0.0, "off": -1.0}),
    (_case_unconnected, {"compared": 1.0, "rounded": 1.2}),
)
_UNCONNECTED_2_2 = (("unused", "copied"), (), ("compared", "rounded"))


def _names_text(names: Any, where: str) -> str:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise CheckFailed(f"{where}: expected a list of names, got {type(names).__name__}")
    for name in names:
        if not isinstance(name, str):
            raise CheckFailed(f"{where}: expected names (str), got {type(name).__name__}")
    # Variables created eagerly are named "unused:0": the suffix is the output index, not a name.
    return ",".join(name.split(":")[0] for name in names)


def _probe_2_2(answer: Any) -> Evidence:
    fn = require_callable(answer, "none_gradients(gradients, variables)")
    evidence: Evidence = {}
    for i, (loss_fn, start) in enumerate(_CASES_2_2):
        variables = {name: tf.Variable(value, name=name) for name, value in start.items()}
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
    except Exception as error:  # any other exception is the wrong kind, and the judge says so
        evidence["mismatch"] = type(error).__name__
    else:
        evidence["mismatch"] = "returned"
    return evidence


@exercise("2.2", answer="none_gradients", probe=_probe_2_2)
def ex2_2(evidence: Evidence) -> str:
    """Exercise 2.2: the names of the variables whose gradient is None, in the given order."""
    for i, (want, (_, start)) in enumerate(zip(_UNCONNECTED_2_2, _CASES_2_2, strict=True)):
        got = evidence[f"case{i}"]
        got_names = [name for name in str(got).split(",") if name]
        if got_names != list(want):
            raise CheckFailed(
                f"case {i + 1}, variables {', '.join(start)}: expected {list(want)}, "
                f"got {got_names}"
            )
    if evidence["mismatch"] != "ValueError":
        raise CheckFailed(
            "1 gradient for 2 variables: expected a ValueError naming the arguments, "
            f"got {evidence['mismatch']}"
        )
    return "right names in every case; ValueError on unequal lengths."
