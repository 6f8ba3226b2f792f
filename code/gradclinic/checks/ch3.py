"""Self-checks for chapter 3's exercises: each a probe (runs the answer) and a judge (data only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic.checks._core import (
    CheckFailed,
    Evidence,
    exercise,
    require_callable,
    require_number,
)
from gradclinic.data import bump_stable_reference

# EX3_1_BRANCHES, EX3_1_INPUTS and EX3_1_OPS are imported by the chapter, not re-exported.
__all__ = ["ex3_1", "ex3_2", "ex3_3"]

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
EX3_1_OPS = ("DivNoNan", "Exp", "Log", "Mul", "Pow", "RealDiv", "Reciprocal", "Rsqrt", "Tanh")

# The key to the ops, in eager and graph execution: for each input with a NaN gradient, the
# ops whose own backward step receives a finite gradient and returns inf or NaN. Where the
# forward value is non-finite (log at -1 and 0) is not the question: at -1, Log's step gets
# 0 * x = -0 and passes on -0 * (1 / x) = 0. tests/test_checks_ch3.py measures the table op by op.
_NAN_OPS: dict[str, dict[float, frozenset[str]]] = {
    "tf.math.reciprocal(x)": {},
    "tf.math.rsqrt(x)": {},
    "tf.exp(-1.0 / x)": {0.0: frozenset({"RealDiv"})},
    "x * tf.math.log(x)": {-1.0: frozenset({"Mul"}), 0.0: frozenset({"Log", "Mul"})},
    "tf.tanh(1.0 / x)": {0.0: frozenset({"RealDiv"})},
    "tf.pow(x, 1.5)": {-1.0: frozenset({"Pow"})},
    "tf.math.divide_no_nan(1.0, x)": {},
}


def _guarded_nan_gradients(branch: Callable[[tf.Tensor], tf.Tensor]) -> np.ndarray:
    # The reference: what this TensorFlow gives eagerly, so the check follows the installed version.
    x = tf.Variable(np.array(EX3_1_INPUTS, dtype=np.float32))
    with tf.GradientTape() as tape:
        out = tf.where(x > 0, branch(x), tf.zeros_like(x))
    return np.isnan(tape.gradient(out, x).numpy())


def _ops_key(name: str) -> np.ndarray:
    # _NAN_OPS[name] as the probe records an answer: one row per input, one column per op.
    table = _NAN_OPS[name]
    return np.array([[op in table.get(x, ()) for op in EX3_1_OPS] for x in EX3_1_INPUTS])


def _probe_3_1(answer: Any) -> Evidence:
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


@exercise("3.1", answer="nan_gradient_at", probe=_probe_3_1)
def ex3_1(evidence: Evidence) -> str:
    """Exercise 3.1: where each guarded branch gives a NaN gradient, and which ops produce it."""
    wrong, wrong_ops = [], 0
    n = len(EX3_1_BRANCHES)
    for name, branch in EX3_1_BRANCHES.items():
        measured = _guarded_nan_gradients(branch)
        if not np.array_equal(measured, _ops_key(name).any(axis=1)):
            # A book bug, not the student's: say so instead of failing a right answer silently.
            raise CheckFailed(
                f"this TensorFlow's NaN gradients for {name!r} differ from the book's key "
                "(made with TensorFlow 2.21); please report it"
            )
        claimed = np.asarray(evidence[name], dtype=bool).reshape(len(EX3_1_INPUTS))
        if not np.array_equal(claimed, measured):
            wrong.append(name)
        ops = np.asarray(evidence[f"ops of {name}"], dtype=bool)
        wrong_ops += not np.array_equal(
            ops.reshape(len(EX3_1_INPUTS), len(EX3_1_OPS)), _ops_key(name)
        )
    if wrong:
        raise CheckFailed(
            f"inputs right for {n - len(wrong)} of {n}; not what TensorFlow gives for "
            f"{', '.join(wrong)}. For each, find the factor of the chain rule that is inf or NaN "
            "at that input, and whether the op multiplies it by the 0 that tf.where passes back."
        )
    if wrong_ops:
        # Only a count: with a handful of ops per expression, names would give the answer away.
        raise CheckFailed(
            f"inputs right for all {n}, but the ops are wrong for {wrong_ops} of {n}. Follow "
            "the backward pass from tf.where: which op's own step receives a finite gradient "
            "and passes on inf or NaN? A non-finite forward value is not enough."
        )
    return f"inputs and ops right for all {n} expressions (eager execution, this TensorFlow)."


# Exercise 3.2: (sigma, x) pairs for a bump that is right for every sigma >= 0 and |x| <= 1.
# They cover the band sigma < |x| < sqrt(sigma) (sigma < 1), ties |x| = sigma and x^2 = sigma,
# x just past sqrt(sigma) (the naive layer's NaN), tiny and negative x, sigma = 0, and sigma
# just below 1, where a substitute x = 1 overflows. None is a point the chapter shows.
_BUMP_POINTS = (
    (0.3, 0.35),
    (0.3, -0.5),
    (0.3, 0.5478),
    (0.3, -0.3),
    (0.3, -0.29),
    (0.3, 0.0),
    (0.3, 1e-20),
    (0.3, -0.8),
    (0.25, 0.5),
    (0.25, 0.25),
    (0.25, -0.4),
    (0.25, 0.2),
    (0.0, 0.0),
    (0.0, 0.3),
    (0.0, -1.0),
    (0.995, 1.0),
    (0.995, -0.999),
    (0.995, 0.5),
    (1.0, 1.0),
    (1.0, -0.99),
    (2.0, -1.0),
    (2.0, 0.7),
    (7.0, 0.95),
)


# A column of sigmas, one per row of x: shape (6, 1) against x of shape (6, 5), the form the
# chapter's column of copies takes. Each row mixes ties, the support, the band and x just past
# sqrt(sigma); bump_stable, which takes one sigma, refuses it.
_COLUMN_ROWS = (
    (0.0, (-1.0, -0.3, 0.0, 1e-20, 0.6)),
    (0.2, (-0.2, 0.1, 0.3, 0.4475, -0.9)),
    (0.64, (0.64, -0.5, 0.7, -0.8005, 1.0)),
    (0.995, (-0.9, 0.994, 0.996, -0.998, 0.3)),
    (1.0, (1.0, -0.999, 0.5, 0.0, -1.0)),
    (2.5, (-1.0, 0.95, -0.2, 0.0, 0.7)),
)
_COLUMN = (
    f"sigma as a column of shape ({len(_COLUMN_ROWS)}, 1), one per row of x of shape "
    f"({len(_COLUMN_ROWS)}, {len(_COLUMN_ROWS[0][1])})"
)


def _bump_reference(sigma: float, x: float) -> tuple[float, float]:
    # f and df/dsigma of the stable bump at one point; the answer must match it for |x| <= 1.
    reference = bump_stable_reference(x, sigma)
    return float(reference["values"]), float(reference["grad_sigma"])


def _probe_3_2(answer: Any) -> Evidence:
    fn = require_callable(answer, "my_bump(x, sigma)")
    values, grads, no_grad = [], [], []
    for sigma_value, x_value in _BUMP_POINTS:
        sigma = tf.Variable([sigma_value], dtype=tf.float32)
        x = tf.constant([[x_value]], dtype=tf.float32)
        with tf.GradientTape() as tape:
            out = tf.convert_to_tensor(fn(x, sigma))
        if out.shape != x.shape:
            raise CheckFailed(
                f"x of shape {tuple(x.shape)}: expected an output of that shape, "
                f"got {tuple(out.shape)}"
            )
        if not out.dtype.is_floating:
            raise CheckFailed(f"expected a floating-point output, got dtype {out.dtype.name}")
        grad = tape.gradient(out, sigma)
        values.append(float(np.asarray(out).reshape(-1)[0]))
        no_grad.append(grad is None)
        grads.append(np.nan if grad is None else float(np.asarray(grad).reshape(-1)[0]))
    # Element-wise: the same inputs in one batch must give the same values.
    sigma = tf.Variable([0.3], dtype=tf.float32)
    batch = np.array([[x] for s, x in _BUMP_POINTS if s == 0.3], dtype=np.float32)
    batched = np.asarray(tf.convert_to_tensor(fn(tf.constant(batch), sigma)), dtype=np.float64)
    evidence: Evidence = {
        "values": np.array(values),
        "grads": np.array(grads),
        "no_grad": np.array(no_grad),
        "batched": batched.reshape(-1),
    }
    sigma_column = tf.Variable(np.array([[s] for s, _ in _COLUMN_ROWS], dtype=np.float32))
    x_rows = tf.constant([row for _, row in _COLUMN_ROWS], dtype=tf.float32)
    # Judged after the single-sigma points, so a failure here does not hide theirs.
    try:
        with tf.GradientTape() as tape:
            out = tf.convert_to_tensor(fn(x_rows, sigma_column))
        grad = tape.gradient(out, sigma_column)
    except Exception as error:  # the answer refused the column: report it, never hide it
        evidence["column_error"] = f"your answer raised {type(error).__name__}: {error}"
    else:
        evidence["column_values"] = np.asarray(out, dtype=np.float64)
        evidence["column_grads"] = (
            None if grad is None else np.asarray(grad, dtype=np.float64).reshape(-1)
        )
    return evidence


def _where(sigma: float, x: float) -> str:
    return f"sigma={sigma:g}, x={x:g}"


@exercise("3.2", answer="my_bump", probe=_probe_3_2)
def ex3_2(evidence: Evidence) -> str:
    """Exercise 3.2: the bump and its sigma-gradient for |x| <= 1 and sigma >= 0, one or a column."""
    n = len(_BUMP_POINTS)
    values = np.asarray(evidence["values"], dtype=np.float64).reshape(n)
    grads = np.asarray(evidence["grads"], dtype=np.float64).reshape(n)
    no_grad = np.asarray(evidence["no_grad"], dtype=bool).reshape(n)
    references = [_bump_reference(s, x) for s, x in _BUMP_POINTS]
    for (sigma, x), value, (want, _) in zip(_BUMP_POINTS, values, references, strict=True):
        if not np.isclose(value, want, rtol=1e-4, atol=1e-6):
            raise CheckFailed(
                f"{_where(sigma, x)}: your value {value:.4g} is not the bump's value there; "
                "check which inputs your guard selects"
            )
    batched = np.asarray(evidence["batched"], dtype=np.float64)
    alone = values[[s == 0.3 for s, _ in _BUMP_POINTS]]
    if batched.shape != alone.shape or not np.allclose(batched, alone, rtol=1e-5, atol=1e-7):
        raise CheckFailed(
            "sigma=0.3: the inputs in one batch give other values than one at a time; "
            "the bump must act element by element"
        )
    for (sigma, x), missing, grad in zip(_BUMP_POINTS, no_grad, grads, strict=True):
        if missing:
            raise CheckFailed(
                f"{_where(sigma, x)}: no gradient reached sigma (None); the output must be "
                "computed from sigma itself"
            )
        if not np.isfinite(grad):
            raise CheckFailed(
                f"{_where(sigma, x)}: the value is right but df/dsigma is {grad}; some branch "
                "is still evaluated where it overflows or divides 0 by 0"
            )
    for (sigma, x), grad, (_, want) in zip(_BUMP_POINTS, grads, references, strict=True):
        # float32 autodiff against a float64 formula: about 1e-4 relative at worst here.
        if not np.isclose(grad, want, rtol=2e-3, atol=1e-5):
            raise CheckFailed(
                f"{_where(sigma, x)}: the value is right but df/dsigma = {grad:.4g} is not "
                "the bump's derivative there"
            )
    _judge_column(evidence)
    return (
        f"values and df/dsigma right at {n} points and for a column of {len(_COLUMN_ROWS)} "
        "sigmas, one per row of x, including sigma = 0, ties and the band between sigma and "
        "sqrt(sigma)."
    )


def _judge_column(evidence: Evidence) -> None:
    # The float32 inputs the answer saw, so that ties |x| = sigma stay ties in the reference.
    sigmas = [float(np.float32(s)) for s, _ in _COLUMN_ROWS]
    rows = [[float(np.float32(x)) for x in row] for _, row in _COLUMN_ROWS]
    if "column_error" in evidence:
        raise CheckFailed(f"{_COLUMN}: {evidence['column_error']}")
    shape = (len(rows), len(rows[0]))
    values = np.asarray(evidence["column_values"], dtype=np.float64)
    if values.shape != shape:
        raise CheckFailed(f"{_COLUMN}: expected an output of x's shape {shape}, got {values.shape}")
    for sigma, row, got_row in zip(sigmas, rows, values, strict=True):
        for x, value in zip(row, got_row, strict=True):
            if not np.isclose(value, _bump_reference(sigma, x)[0], rtol=1e-4, atol=1e-6):
                raise CheckFailed(
                    f"{_COLUMN}: in the row of sigma={sigma:.4g}, x={x:.4g}, your value "
                    f"{value:.4g} is not the bump's value there; each row must use its own sigma"
                )
    if evidence["column_grads"] is None:
        raise CheckFailed(f"{_COLUMN}: no gradient reached sigma (None)")
    grads = np.asarray(evidence["column_grads"], dtype=np.float64).reshape(len(rows))
    for sigma, row, grad in zip(sigmas, rows, grads, strict=True):
        want = sum(_bump_reference(sigma, x)[1] for x in row)
        if not np.isfinite(grad):
            raise CheckFailed(
                f"{_COLUMN}: the values are right but df/dsigma of the row of sigma={sigma:.4g} "
                f"is {grad}; some branch is still evaluated where it overflows or divides 0 by 0"
            )
        if not np.isclose(grad, want, rtol=2e-3, atol=1e-5):
            raise CheckFailed(
                f"{_COLUMN}: the values are right but df/dsigma of the row of sigma={sigma:.4g}, "
                f"{grad:.4g}, is not the sum of the bump's derivatives over that row"
            )


# Exercise 3.3: the upper edge of the x-window beyond sqrt(sigma) where the naive layer's
# sigma-gradient is NaN in float32, as a function of sigma in (0, 1); the chapter shows none.
_EDGE_SIGMAS = (0.05, 0.3, 0.7, 0.95)
_EDGE_TOLERANCE = 1e-4


def _naive_nan_edge(sigma: float) -> float:
    # The largest float32 x on a fine grid past sqrt(sigma) whose naive gradient is NaN.
    root = np.sqrt(sigma)
    x = np.linspace(root, root * 1.02, 20001).astype(np.float32).reshape(-1, 1)
    sigma_column = tf.Variable(tf.fill(x.shape, np.float32(sigma)))
    with tf.GradientTape() as tape:
        # bump_naive takes one sigma; a column of copies gives each x its own derivative.
        out = tf.where(
            tf.abs(x) < sigma_column,
            tf.exp(-sigma_column / (sigma_column - tf.square(x))),
            tf.zeros_like(x),
        )
    grad = tape.gradient(out, sigma_column).numpy().reshape(-1)
    bad = x.reshape(-1)[np.isnan(grad)]
    if bad.size == 0:
        raise RuntimeError(f"no NaN gradient past sqrt({sigma}): the reference grid is wrong")
    return float(bad.max())


def _probe_3_3(answer: Any) -> Evidence:
    fn = require_callable(answer, "nan_window_edge(sigma)")
    edges = []
    for sigma in _EDGE_SIGMAS:
        edges.append(require_number(fn(sigma), f"sigma={sigma:g}"))
    return {"edges": np.array(edges)}


@exercise("3.3", answer="nan_window_edge", probe=_probe_3_3)
def ex3_3(evidence: Evidence) -> str:
    """Exercise 3.3: where the naive layer's NaN window past sqrt(sigma) ends, for sigma < 1."""
    edges = np.asarray(evidence["edges"], dtype=np.float64).reshape(len(_EDGE_SIGMAS))
    for sigma, edge in zip(_EDGE_SIGMAS, edges, strict=True):
        if not np.isfinite(edge):
            raise CheckFailed(f"sigma={sigma:g}: expected a finite number, got {edge}")
        root = float(np.sqrt(sigma))
        if edge <= root:
            raise CheckFailed(
                f"sigma={sigma:g}: x = {edge:.5g} is not beyond sqrt(sigma) = {root:.5f}; "
                "the window lies outside it"
            )
        if abs(edge - _naive_nan_edge(sigma)) > _EDGE_TOLERANCE:
            raise CheckFailed(
                f"sigma={sigma:g}: x = {edge:.5f} is not where the window ends (tolerance "
                f"{_EDGE_TOLERANCE:g} in x): at which value does float32's exp stop being "
                "finite, and what x makes the exponent reach it?"
            )
    sigmas = ", ".join(f"{s:g}" for s in _EDGE_SIGMAS)
    return f"the window's end is right, within 1e-4, at sigma = {sigmas}."
