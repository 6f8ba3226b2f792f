"""Chapter 6's judges and inputs (a product gradient by hand, a frozen head done right)."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

import numpy as np

from gradclinic import losssplit
from gradclinic.checks._core import CheckFailed, Evidence, Inputs, exercise
from gradclinic.probes.ch6 import (
    _FROZEN_BATCH,
    _PRODUCT_CASES,
    _as_fractions,
    _frozen_batch,
    _product_case,
)

__all__ = ["ex6_1", "ex6_2"]
# Stated in the question: within 1e-5 of the largest entry, so a float32 tape passes too.
_PRODUCT_RTOL = 1e-5


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


# The self-check's cases come from seed 50 (one more per case); the grader draws the seed.
_PRODUCT_SEED = 50


def _inputs_6_1(rng: np.random.Generator | None) -> Inputs:
    return {"seed": _PRODUCT_SEED if rng is None else int(rng.integers(1_000, 2**31))}


def _case_text(index: int, loss1: float, loss2: float) -> str:
    n, h, m, _ = _PRODUCT_CASES[index]
    return (
        f"inputs (1, {n}), weight1 ({n}, {h}), weight2 ({h}, {m}), "
        f"loss1 = {loss1:.3g}, loss2 = {loss2:.3g}"
    )


@exercise("6.1", inputs=_inputs_6_1)
def ex6_1(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 6.1: d(loss1 * loss2)/d weight1 of the constant example, for any sizes."""
    seed = int(inputs["seed"])
    for index in range(len(_PRODUCT_CASES)):
        want, loss1, loss2 = _product_reference(*_product_case(index, seed))
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
    want, _, _ = _product_reference(*(_as_fractions(a) for a in _product_case(0, seed)))
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


# Stated in the question: the embedding takes loss2's gradient at this weight, output2 at 1.
_LOSS2_SHARE = 0.5


# The self-check's model and batch come from seed 11; the grader draws the seed.
_FROZEN_SEED = 11


def _inputs_6_2(rng: np.random.Generator | None) -> Inputs:
    return {"seed": _FROZEN_SEED if rng is None else int(rng.integers(1_000, 2**31))}


def _frozen_reference(seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Each loss's own gradient for every variable (zeros where None), on the hidden inputs."""
    model = losssplit.TwoHeadModel(seed)
    names = losssplit.VARIABLE_NAMES
    per_loss = {}
    for loss_name, lists in (("loss1", (names, ())), ("loss2", ((), names))):
        grads = losssplit.var_list_gradients(
            model, *_frozen_batch(seed), var_list1=lists[0], var_list2=lists[1]
        )
        per_loss[loss_name] = {
            name: np.zeros(model.by_name[name].shape) if grad is None else grad.numpy()
            for name, grad in grads.items()
        }
    return per_loss


@exercise("6.2", inputs=_inputs_6_2)
def ex6_2(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 6.2: output1 frozen, the embedding by loss1 + 0.5 * loss2, output2 by loss2."""
    seed = int(inputs["seed"])
    where = f"TwoHeadModel(seed={seed}) and a batch of {_FROZEN_BATCH} ids"
    if evidence["unchanged"] is not True:
        raise CheckFailed(f"{where}: expected the model's variables unchanged, but one moved")
    output1 = evidence["output1"]
    if output1 is not None:
        if not np.any(output1):
            raise CheckFailed(
                f"{where}: output1: expected None, got zeros; decoupled weight decay still "
                "moves a variable whose gradient is zero, and so does momentum left from "
                "earlier non-zero gradients"
            )
        raise CheckFailed(f"{where}: output1: expected None (it must not move), got a gradient")
    reference = _frozen_reference(seed)
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
            raise CheckFailed(f"{where}: {name}: expected a gradient, got None")
        got = np.asarray(got, dtype=np.float64)
        if got.shape != expected.shape:
            raise CheckFailed(f"{where}: {name}: expected shape {expected.shape}, got {got.shape}")
        if np.allclose(got, expected, rtol=1e-4, atol=1e-6):
            continue
        for label, wrong in near_misses[name]:
            if np.allclose(got, wrong, rtol=1e-4, atol=1e-6):
                raise CheckFailed(f"{where}: {name}: got {label}; that is not the goal")
        off = np.abs(got - expected).max()
        raise CheckFailed(f"{where}: {name}: gradient off by up to {off:.3g}")
    return "output1 stays put; loss2's two shares are right."
