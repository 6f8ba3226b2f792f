"""Self-checks for chapter 7: name what breaks an unseen patient, then fix it.

Each answer is a dict: the cause the student read off the tools, and the fixed function. The
probes (gradclinic.probes.ch7) run the fix on inputs the chapter never shows; the judges compare with references
computed here in float64 and with the patient's true cause.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradclinic import diagnose as diagnosis
from gradclinic.checks._core import CheckFailed, Evidence, Inputs, exercise
from gradclinic.probes.ch7 import (
    CAUSE_NAMES,
    CAUSES,
    PHASES,
)

__all__ = ["ex7_1", "ex7_2", "ex7_3"]


# Hidden inputs: none of these numbers appears in the chapter.
_ERRORS_7_1 = np.array([-300.0, -45.5, -3.0, -0.5, 0.0, 0.25, 2.0, 37.0, 120.0])
_TARGETS_7_1 = np.linspace(-2.0, 3.0, _ERRORS_7_1.size)
_PROTOTYPES_7_2 = np.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0], [-1.5, 0.25, 1.0]])
_POINTS_7_2 = np.array(
    [
        [0.5, -1.0, 2.0],  # on prototype 0
        [0.0, 0.0, 0.0],  # on prototype 1
        [1.0, 1.0, 1.0],
        [-1.5, 0.25, 1.0],  # on prototype 2
        [3.0, -2.0, 0.5],
    ]
)
_WEIGHTS_7_2 = np.array(
    [[1.0, -2.0, 0.5], [0.3, 1.0, -1.0], [2.0, 0.7, 1.5]] + [[0.4, -0.6, 1.1]] * 2
)
_GATES_7_3 = np.array([-200.0, -61.0, -12.5, -3.0, 0.0, 0.75, 11.25, 12.0, 18.0, 75.0, 250.0])
_WEIGHTS_7_3 = np.linspace(0.5, 1.5, _GATES_7_3.size)


def _eighths(values: Any) -> np.ndarray:
    # Multiples of 1/8: exact in float32 and float16, as the self-check's are.
    return np.round(np.asarray(values, dtype=np.float64) * 8) / 8


def _inputs_7_1(rng: np.random.Generator | None) -> Inputs:
    # The grader's: -300, 0 and 120 themselves, the errors between drawn.
    errors = _ERRORS_7_1
    if rng is not None:
        regions = ((-80, -10), (-10, -1), (-1, -0.125), (0.125, 1), (1, 10), (10, 80))
        drawn = [float(rng.uniform(low, high)) for low, high in regions]
        errors = _eighths([-300.0, *drawn[:3], 0.0, *drawn[3:], 120.0])
    return {"errors": errors, "targets": _TARGETS_7_1}


def _inputs_7_2(rng: np.random.Generator | None) -> Inputs:
    # The grader's: three points on a prototype (one of them 0), as above, the rest drawn.
    points, prototypes, weights = _POINTS_7_2, _PROTOTYPES_7_2, _WEIGHTS_7_2
    if rng is not None:
        prototypes = _eighths(rng.uniform(-2, 2, (3, 3)))
        prototypes[1] = 0.0
        others = _eighths(rng.uniform(-3, 3, (2, 3)))
        points = np.stack([prototypes[0], prototypes[1], others[0], prototypes[2], others[1]])
        weights = _eighths(rng.uniform(-2, 2, (5, 3)))
    return {"points": points, "prototypes": prototypes, "weights": weights}


def _inputs_7_3(rng: np.random.Generator | None) -> Inputs:
    # The grader's: 0 itself, the others drawn around where exp overflows in float16 (|z| > 11)
    # and in float32 (|z| > 88).
    gates = _GATES_7_3
    if rng is not None:
        regions = ((-300, -100), (-90, -20), (-15, -5), (-5, -1), (0.125, 2), (2, 11))
        regions += ((11, 12), (12, 30), (30, 88), (90, 300))
        drawn = _eighths([0.0, *(rng.uniform(low, high) for low, high in regions)])
        gates = np.sort(drawn.astype(np.float16).astype(np.float64))
    return {"gates": gates, "weights": _WEIGHTS_7_3}


def _float_array(evidence: Evidence, key: str, shape: tuple[int, ...]) -> np.ndarray:
    value = np.asarray(evidence[key], dtype=np.float64)
    if value.shape != shape:
        raise CheckFailed(f"expected {key} of shape {shape}, got {value.shape}")
    return value


def _log_cosh(error: np.ndarray) -> np.ndarray:
    magnitude = np.abs(error)
    return magnitude + np.log1p(np.exp(-2.0 * magnitude)) - math.log(2.0)


def _judge_cause(got: Any, truth: str) -> None:
    if got is None:
        raise CheckFailed("cause: expected one of diagnose's cause constants, got None")
    if got not in CAUSES.values():
        raise CheckFailed(
            f"cause: expected one of gradclinic.diagnose.{', '.join(CAUSE_NAMES)}, got {got!r}"
        )
    if got != truth:
        raise CheckFailed(
            "cause: that is not what disconnects this patient; run diagnose on it and read why"
        )


@exercise("7.1", inputs=_inputs_7_1)
def ex7_1(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 7.1: the patient's cause, and a log-cosh loss with healthy gradients."""
    _judge_cause(evidence["cause"], CAUSES["LEFT_TENSORFLOW"])
    if not evidence["connected"]:
        raise CheckFailed("fix: y_pred still gets no gradient (None) from your loss")
    errors = np.asarray(inputs["errors"], dtype=np.float64).ravel()
    n = errors.size
    values = _float_array(evidence, "values", (n,))
    gradients = _float_array(evidence, "gradients", (n,))
    want_values, want_gradients = _log_cosh(errors), np.tanh(errors)
    for error, value, want in zip(errors.tolist(), values, want_values, strict=True):
        if not math.isfinite(value):
            raise CheckFailed(
                f"fix: for y_pred - y_true = {error}, expected a finite loss, got {value}"
            )
        if not math.isclose(value, want, rel_tol=1e-4, abs_tol=1e-5):
            raise CheckFailed(
                f"fix: for y_pred - y_true = {error}, expected loss {want:.6g}, got {value:.6g}"
            )
    for error, gradient, want in zip(errors.tolist(), gradients, want_gradients, strict=True):
        if not math.isclose(gradient, want, rel_tol=1e-4, abs_tol=1e-5):
            raise CheckFailed(
                f"fix: for y_pred - y_true = {error}, expected d loss / d y_pred = {want:.6g}, "
                f"got {gradient:.6g}"
            )
    batch_shape = tuple(int(size) for size in np.asarray(evidence["batch_shape"]).ravel())
    if math.prod(batch_shape) != 1:
        raise CheckFailed(
            f"fix: on a batch of {n} errors (y_true and y_pred of shape ({n}, 1)) expected one "
            f"number, the mean loss over the batch, got shape {batch_shape}: one loss per sample"
        )
    batch, want_batch = float(evidence["batch_value"]), float(want_values.mean())
    if not math.isclose(batch, want_batch, rel_tol=1e-4):
        raise CheckFailed(
            f"fix: on a batch of {n} errors expected their mean loss {want_batch:.6g}, got {batch:.6g}"
        )
    return "right cause; loss and gradient right from -300 to 120."


def _judge_origin(evidence: Evidence, op_type: str, phase: str) -> None:
    got_op, got_phase = evidence["op_type"], evidence["phase"]
    if not got_op:
        raise CheckFailed("op_type: expected the type of the forward op responsible, got nothing")
    if got_op.strip() != op_type:
        raise CheckFailed(
            f"op_type: the non-finite value of this patient does not come from a {got_op!r} op"
        )
    if got_phase not in PHASES:
        raise CheckFailed(f"phase: expected one of {PHASES}, got {got_phase!r}")
    if got_phase != phase:
        raise CheckFailed(
            "phase: not what happens in this patient; follow its non-finite gradient back "
            "to the first inf or NaN on the way"
        )


def _distance_reference(inputs: Inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points = np.asarray(inputs["points"], dtype=np.float32).astype(np.float64)
    prototypes = np.asarray(inputs["prototypes"], dtype=np.float32).astype(np.float64)
    difference = points[:, None, :] - prototypes[None, :, :]
    distance = np.sqrt(np.sum(difference**2, axis=-1))
    # At a point on a prototype the distance has a kink; its gradient there is taken as 0.
    unit = np.divide(
        difference,
        distance[..., None],
        out=np.zeros_like(difference),
        where=distance[..., None] > 0,
    )
    weights = np.asarray(inputs["weights"], dtype=np.float32).astype(np.float64)
    weighted = weights[..., None] * unit
    return distance, weighted.sum(axis=1), -weighted.sum(axis=0)


@exercise("7.2", inputs=_inputs_7_2)
def ex7_2(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 7.2: where the patient's NaN is born, and distances with finite gradients."""
    _judge_origin(evidence, "Sqrt", diagnosis.BACKWARD)
    n, k = np.asarray(inputs["weights"]).shape
    want, want_points, want_prototypes = _distance_reference(inputs)
    values = _float_array(evidence, "values", (n, k))
    bad = np.argwhere(~np.isclose(values, want, rtol=1e-5, atol=1e-5))
    if bad.size:
        i, j = bad[0]
        raise CheckFailed(
            f"fix: point {i}, prototype {j}: expected distance {want[i, j]:.5f}, got {values[i, j]:.5f}"
        )
    for key, reference in (("grad_points", want_points), ("grad_prototypes", want_prototypes)):
        if evidence[key] is None:
            raise CheckFailed(f"fix: {key.removeprefix('grad_')} get no gradient (None)")
        got = _float_array(evidence, key, reference.shape)
        if not np.all(np.isfinite(got)):
            row = int(np.argwhere(~np.isfinite(got))[0][0])
            raise CheckFailed(
                f"fix: the gradient for {key.removeprefix('grad_')} row {row} is not finite"
            )
        if not np.allclose(got, reference, rtol=1e-4, atol=1e-4):
            row = int(np.argwhere(~np.isclose(got, reference, rtol=1e-4, atol=1e-4))[0][0])
            raise CheckFailed(
                f"fix: the gradient for {key.removeprefix('grad_')} row {row} is off by up to "
                f"{np.abs(got - reference).max():.3g}"
            )
    return "right origin; distances right, gradients finite."


@exercise("7.3", inputs=_inputs_7_3)
def ex7_3(evidence: Evidence, inputs: Inputs) -> str:
    """Exercise 7.3: where the gate's NaN is born, and a gate that holds in float16."""
    _judge_origin(evidence, "Exp", diagnosis.FORWARD)
    gates = np.asarray(inputs["gates"], dtype=np.float64).ravel()
    weights = np.asarray(inputs["weights"], dtype=np.float32).astype(np.float64).ravel()
    gate = 1.0 / (1.0 + np.exp(-gates))
    want_gradient = weights * gate * (1.0 - gate)
    # float16 keeps about 3 decimal digits.
    for dtype, tolerance in (("float16", 2e-3), ("float32", 1e-6)):
        values = _float_array(evidence, f"values_{dtype}", gates.shape)
        for z, value, want in zip(gates.tolist(), values, gate, strict=True):
            if not abs(value - want) <= tolerance:
                raise CheckFailed(f"fix: z = {z} in {dtype}: expected gate {want:.4f}, got {value}")
        if evidence[f"grad_{dtype}"] is None:
            raise CheckFailed(f"fix: z in {dtype} gets no gradient (None)")
        gradients = _float_array(evidence, f"grad_{dtype}", gates.shape)
        for z, gradient, want in zip(gates.tolist(), gradients, want_gradient, strict=True):
            if not abs(gradient - want) <= 2 * tolerance:
                raise CheckFailed(
                    f"fix: z = {z} in {dtype}: expected d gate / dz = {want:.4g} (times the "
                    f"check's weight), got {gradient}"
                )
    return "right origin; the gate holds in float16 and float32."
