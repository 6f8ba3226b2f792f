"""Self-checks for chapter 6's exercises: a product gradient by hand, a frozen head done right."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic import losssplit
from gradclinic.checks._core import CheckFailed, Evidence, exercise, require_callable

__all__ = ["ex6_1", "ex6_2"]

# Exercise 6.1: (sizes n, h, m, which loss is made exactly 0), none of them the book's 3, 4, 5.
_PRODUCT_CASES: tuple[tuple[int, int, int, str | None], ...] = (
    (2, 3, 4, None),
    (4, 2, 3, None),
    (3, 5, 2, "loss1"),
    (2, 4, 3, "loss2"),
)
# Stated in the question: within 1e-5 of the largest entry, so a float32 tape passes too.
_PRODUCT_RTOL = 1e-5


def _product_case(
    index: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arrays of one hidden case: inputs, weight1, weight2, label1, label2 (float64)."""
    n, h, m, zero = _PRODUCT_CASES[index]
    rng = np.random.default_rng(50 + index)
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


def _product_reference(
    inputs: np.ndarray,
    weight1: np.ndarray,
    weight2: np.ndarray,
    label1: np.ndarray,
    label2: np.ndarray,
) -> tuple[np.ndarray, Any, Any]:
    """d(loss1 * loss2)/d weight1 with loss1 and loss2, exact when the arrays hold Fractions."""
    output1 = inputs @ weight1
    loss1 = (output1 - label1).sum()
    loss2 = (output1 @ weight2 - label2).sum()
    d_loss1 = np.repeat(inputs.T, weight1.shape[1], axis=1)
    d_loss2 = inputs.T @ weight2.sum(axis=1)[None, :]
    return loss2 * d_loss1 + loss1 * d_loss2, loss1, loss2


# An exact entry travels as text, "p" or "p/q" in decimal digits: what str() gives for a Fraction
# or an int. The judge converts only text of this form, and of bounded length, with Fraction;
# anything else (an exponent such as "1e999999999", which Fraction would expand into a
# billion-digit integer, a name, a float's "0.1") is refused before any conversion. The right
# answer's entries for case 0 have at most 25 characters.
_EXACT_TEXT = re.compile(r"-?[0-9]{1,60}(/[0-9]{1,60})?")


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


def _probe_6_1(answer: Any) -> Evidence:
    fn = require_callable(answer, "my_product_gradient(inputs, weight1, weight2, label1, label2)")
    evidence: Evidence = {}
    for index in range(len(_PRODUCT_CASES)):
        # Copies, so that an answer that writes into its arguments cannot change the next case.
        got = fn(*(array.copy() for array in _product_case(index)))
        evidence[f"case{index}"] = _as_float_array(got)
    # Case 0 again in exact fractions (object arrays). NumPy arithmetic keeps them exact; a tape
    # computes in floats, so only a formula of the student's own passes this case.
    try:
        exact = np.asarray(fn(*(_as_fractions(array) for array in _product_case(0))), dtype=object)
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


def _case_text(index: int, loss1: float, loss2: float) -> str:
    n, h, m, _ = _PRODUCT_CASES[index]
    return (
        f"inputs (1, {n}), weight1 ({n}, {h}), weight2 ({h}, {m}), "
        f"loss1 = {loss1:.3g}, loss2 = {loss2:.3g}"
    )


@exercise("6.1", answer="my_product_gradient", probe=_probe_6_1)
def ex6_1(evidence: Evidence) -> str:
    """Exercise 6.1: d(loss1 * loss2)/d weight1 of the constant example, for any sizes."""
    for index in range(len(_PRODUCT_CASES)):
        want, loss1, loss2 = _product_reference(*_product_case(index))
        got = np.asarray(evidence[f"case{index}"], dtype=np.float64)
        where = _case_text(index, loss1, loss2)
        if got.shape != want.shape:
            raise CheckFailed(f"{where}: expected weight1's shape {want.shape}, got {got.shape}")
        if not np.all(np.isfinite(got)):
            raise CheckFailed(f"{where}: expected finite numbers, got {got[~np.isfinite(got)][0]}")
        error = np.abs(got - want)
        if error.max() > _PRODUCT_RTOL * np.abs(want).max():
            i, j = np.unravel_index(int(np.argmax(error)), want.shape)
            raise CheckFailed(
                f"{where}: entry [{i}, {j}] expected {want[i, j]:.4g}, got {got[i, j]:.4g}"
            )
    want, _, _ = _product_reference(*(_as_fractions(a) for a in _product_case(0)))
    shape = tuple(int(n) for n in np.asarray(evidence["exact_shape"]))
    if shape != want.shape:
        raise CheckFailed(f"with exact fractions: expected shape {want.shape}, got {shape}")
    kinds = str(evidence["exact_kinds"]).split(";")
    inexact = [kind for kind in kinds if kind not in ("Fraction", "int")]
    if inexact:
        raise CheckFailed(
            f"with exact fractions: expected exact numbers, got {inexact[0]} entries; keep to "
            "arithmetic on the arrays you are given (a float constant such as np.ones turns "
            "fractions into floats)"
        )
    texts = str(evidence["exact_values"]).split(";")
    if len(texts) != want.size or not all(_EXACT_TEXT.fullmatch(t) for t in texts):
        raise CheckFailed(
            "with exact fractions: expected exact numbers (fractions or integers) of "
            "reasonable size, got other entries"
        )
    values = [Fraction(text) for text in texts]
    if values != list(want.ravel()):
        raise CheckFailed("with exact fractions your function gives other numbers than in floats")
    # Short enough that "Exercise 6.1: passed. " and it fit in 80 characters.
    return "right on four unseen sizes, a zero loss, and fractions."


# Exercise 6.2: a model and a batch the chapter never shows.
_FROZEN_SEED = 11
_FROZEN_BATCH = 23
# Stated in the question: the embedding takes loss2's gradient at this weight, output2 at 1.
_LOSS2_SHARE = 0.5


def _frozen_batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_FROZEN_SEED)
    return (
        rng.integers(0, losssplit.NUM_IDS, _FROZEN_BATCH),
        rng.integers(0, losssplit.NUM_CLASSES1, _FROZEN_BATCH),
        rng.integers(0, losssplit.NUM_CLASSES2, _FROZEN_BATCH),
    )


def _probe_6_2(answer: Any) -> Evidence:
    fn = require_callable(answer, "my_frozen_head_gradients(model, ids, labels1, labels2)")
    model = losssplit.TwoHeadModel(_FROZEN_SEED)
    before = model.values()
    got = fn(model, *_frozen_batch())
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


def _frozen_reference() -> dict[str, dict[str, np.ndarray]]:
    """Each loss's own gradient for every variable (zeros where None), on the hidden inputs."""
    model = losssplit.TwoHeadModel(_FROZEN_SEED)
    names = losssplit.VARIABLE_NAMES
    per_loss = {}
    for loss_name, lists in (("loss1", (names, ())), ("loss2", ((), names))):
        grads = losssplit.var_list_gradients(
            model, *_frozen_batch(), var_list1=lists[0], var_list2=lists[1]
        )
        per_loss[loss_name] = {
            name: np.zeros(model.by_name[name].shape) if grad is None else grad.numpy()
            for name, grad in grads.items()
        }
    return per_loss


@exercise("6.2", answer="my_frozen_head_gradients", probe=_probe_6_2)
def ex6_2(evidence: Evidence) -> str:
    """Exercise 6.2: output1 frozen, the embedding by loss1 + 0.5 * loss2, output2 by loss2."""
    inputs = f"TwoHeadModel(seed={_FROZEN_SEED}) and a batch of {_FROZEN_BATCH} ids"
    if evidence["unchanged"] is not True:
        raise CheckFailed(f"{inputs}: expected the model's variables unchanged, but one moved")
    output1 = evidence["output1"]
    if output1 is not None:
        if not np.any(output1):
            raise CheckFailed(
                f"{inputs}: output1: expected None, got zeros; decoupled weight decay still "
                "moves a variable whose gradient is zero, and so does momentum left from "
                "earlier non-zero gradients"
            )
        raise CheckFailed(f"{inputs}: output1: expected None (it must not move), got a gradient")
    reference = _frozen_reference()
    loss1, loss2 = reference["loss1"], reference["loss2"]
    share = _LOSS2_SHARE
    want = {
        "embedding_matrix": loss1["embedding_matrix"] + share * loss2["embedding_matrix"],
        "output2": loss2["output2"],
    }
    # Wrong mixtures the judge names, so that a message says which share is off, never how to
    # compute the right one.
    near_misses = {
        "embedding_matrix": (
            ("only loss1's gradient", loss1["embedding_matrix"]),
            ("only loss2's gradient", loss2["embedding_matrix"]),
            (f"only {share} x loss2's gradient", share * loss2["embedding_matrix"]),
            (
                f"loss1's + loss2's gradient, loss2's share at full weight instead of {share}",
                loss1["embedding_matrix"] + loss2["embedding_matrix"],
            ),
        ),
        "output2": (
            (
                f"{share} x loss2's gradient; output2 should take loss2's at full weight",
                share * loss2["output2"],
            ),
        ),
    }
    for name, expected in want.items():
        got = evidence[name]
        if got is None:
            raise CheckFailed(f"{inputs}: {name}: expected a gradient, got None")
        got = np.asarray(got, dtype=np.float64)
        if got.shape != expected.shape:
            raise CheckFailed(f"{inputs}: {name}: expected shape {expected.shape}, got {got.shape}")
        if np.allclose(got, expected, rtol=1e-4, atol=1e-6):
            continue
        for label, wrong in near_misses[name]:
            if np.allclose(got, wrong, rtol=1e-4, atol=1e-6):
                raise CheckFailed(f"{inputs}: {name}: got {label}; that is not the goal")
        off = np.abs(got - expected).max()
        raise CheckFailed(f"{inputs}: {name}: gradient off by up to {off:.3g}")
    return "output1 stays put; loss2's two shares are right."
