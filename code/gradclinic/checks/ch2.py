"""Chapter 2's judges and inputs; the probes are in gradclinic.probes.ch2."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from gradclinic.checks._core import (
    CheckFailed,
    Evidence,
    Inputs,
    count_wrong_choices,
    exercise,
)
from gradclinic.probes.ch2 import (
    _CASES_2_2,
    GRADIENT_FUNCTIONS,
    GRADIENT_KINDS,
)

__all__ = ["GRADIENT_FUNCTIONS", "GRADIENT_KINDS", "ex2_1", "ex2_2", "measure_gradient"]
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


@exercise("2.1")
def ex2_1(evidence: Evidence, inputs: Inputs) -> str:
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


# By role: the grader names each variable afresh (its role and a number).
_UNCONNECTED_2_2 = (("unused", "copied"), (), ("compared", "rounded"))


def _inputs_2_2(rng: np.random.Generator | None) -> Inputs:
    # The self-check names each variable after its role.
    inputs: Inputs = {}
    for i, (_, start) in enumerate(_CASES_2_2):
        names = [
            role if rng is None else f"{role}_{int(rng.integers(100, 1000))}" for role in start
        ]
        inputs[f"names{i}"] = np.array(names)
    return inputs


@exercise("2.2", inputs=_inputs_2_2)
def ex2_2(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 2.2: the names of the variables whose gradient is None, in the given order."""
    for i, (unconnected, (_, start)) in enumerate(zip(_UNCONNECTED_2_2, _CASES_2_2, strict=True)):
        names = dict(zip(start, np.asarray(inputs[f"names{i}"]).ravel().tolist(), strict=True))
        want = [names[role] for role in unconnected]
        got = evidence[f"case{i}"]
        got_names = [name for name in str(got).split(",") if name]
        if got_names != want:
            raise CheckFailed(
                f"case {i + 1}, variables {', '.join(names.values())}: expected {want}, "
                f"got {got_names}"
            )
    if evidence["mismatch"] != "ValueError":
        raise CheckFailed(
            "1 gradient for 2 variables: expected a ValueError naming the arguments, "
            f"got {evidence['mismatch']}"
        )
    return "right names in every case; ValueError on unequal lengths."
