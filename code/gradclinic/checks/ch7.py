"""Self-checks for chapter 7: name what breaks an unseen patient, then fix it.

Each answer is a dict: the cause the student read off the tools, and the fixed function. The
probes run the fix on inputs the chapter never shows; the judges compare with references
computed here in float64 and with the patient's true cause.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic import diagnose as diagnosis
from gradclinic.checks._core import CheckFailed, Evidence, exercise, require_callable

__all__ = ["ex7_1", "ex7_2", "ex7_3"]

# The cause constants of gradclinic.diagnose, by name, and its two phases of an Origin.
CAUSE_NAMES = ("UNUSED", "BLOCKED", "LEFT_TENSORFLOW", "INTEGER")
CAUSES = {name: getattr(diagnosis, name) for name in CAUSE_NAMES}
PHASES = (diagnosis.FORWARD, diagnosis.BACKWARD)

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


def _require_case(answer: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise CheckFailed(f"expected a dict with keys {list(keys)}, got {type(answer).__name__}")
    missing = [key for key in keys if key not in answer]
    if missing:
        raise CheckFailed(f"expected a key {missing[0]!r} in your answer, got {sorted(answer)}")
    return answer


def _text_or_none(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CheckFailed(f"{key}: expected a string, got {type(value).__name__}")
    return value


def _array_or_none(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(tf.convert_to_tensor(value), dtype=np.float64)


def _float_array(evidence: Evidence, key: str, shape: tuple[int, ...]) -> np.ndarray:
    value = np.asarray(evidence[key], dtype=np.float64)
    if value.shape != shape:
        raise CheckFailed(f"expected {key} of shape {shape}, got {value.shape}")
    return value


# --- 6.1: a loss that leaves TensorFlow --------------------------------------------------------


def _probe_7_1(answer: Any) -> Evidence:
    case = _require_case(answer, ("cause", "fix"))
    fix = require_callable(case["fix"], "fix(y_true, y_pred)")
    values, gradients = [], []
    for target, error in zip(_TARGETS_7_1, _ERRORS_7_1, strict=True):
        y_true = tf.constant([[target]], tf.float32)
        y_pred = tf.Variable([[target + error]], dtype=tf.float32)
        with tf.GradientTape() as tape:
            loss = tf.convert_to_tensor(fix(y_true, y_pred))
        if loss.shape.num_elements() != 1:
            raise CheckFailed(f"fix(y_true, y_pred): expected one number, got shape {loss.shape}")
        gradient = _array_or_none(tape.gradient(loss, y_pred))
        values.append(float(tf.reshape(loss, [])))
        gradients.append(np.nan if gradient is None else float(gradient.reshape(-1)[0]))
        if gradient is None:
            return {"cause": _text_or_none(case["cause"], "cause"), "connected": False}
    batch = tf.convert_to_tensor(
        fix(
            tf.constant(_TARGETS_7_1.reshape(-1, 1), tf.float32),
            tf.constant((_TARGETS_7_1 + _ERRORS_7_1).reshape(-1, 1), tf.float32),
        )
    )
    # A per-sample loss, shape (n,) or (n, 1), is one number per error: its shape goes to the
    # judge, which says so, instead of a reshape failing here.
    single = batch.shape.num_elements() == 1
    return {
        "cause": _text_or_none(case["cause"], "cause"),
        "connected": True,
        "values": np.array(values),
        "gradients": np.array(gradients),
        "batch_shape": np.asarray(batch.shape.as_list(), dtype=np.int64),
        "batch_value": float(tf.reshape(batch, [])) if single else float("nan"),
    }


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


@exercise("7.1", answer="case_7_1", probe=_probe_7_1)
def ex7_1(evidence: Evidence) -> str:
    """Exercise 7.1: the patient's cause, and a log-cosh loss with healthy gradients."""
    _judge_cause(evidence["cause"], CAUSES["LEFT_TENSORFLOW"])
    if not evidence["connected"]:
        raise CheckFailed("fix: y_pred still gets no gradient (None) from your loss")
    n = _ERRORS_7_1.size
    values = _float_array(evidence, "values", (n,))
    gradients = _float_array(evidence, "gradients", (n,))
    want_values, want_gradients = _log_cosh(_ERRORS_7_1), np.tanh(_ERRORS_7_1)
    for error, value, want in zip(_ERRORS_7_1, values, want_values, strict=True):
        if not math.isfinite(value):
            raise CheckFailed(
                f"fix: for y_pred - y_true = {error}, expected a finite loss, got {value}"
            )
        if not math.isclose(value, want, rel_tol=1e-4, abs_tol=1e-5):
            raise CheckFailed(
                f"fix: for y_pred - y_true = {error}, expected loss {want:.6g}, got {value:.6g}"
            )
    for error, gradient, want in zip(_ERRORS_7_1, gradients, want_gradients, strict=True):
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


# --- 6.2 and 6.3: where a NaN is born ----------------------------------------------------------


def _origin(case: dict[str, Any]) -> dict[str, str | None]:
    return {
        "op_type": _text_or_none(case["op_type"], "op_type"),
        "phase": _text_or_none(case["phase"], "phase"),
    }


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


def _probe_7_2(answer: Any) -> Evidence:
    case = _require_case(answer, ("op_type", "phase", "fix"))
    fix = require_callable(case["fix"], "fix(x, prototypes)")
    points = tf.Variable(_POINTS_7_2, dtype=tf.float32)
    prototypes = tf.Variable(_PROTOTYPES_7_2, dtype=tf.float32)
    with tf.GradientTape() as tape:
        distances = tf.convert_to_tensor(fix(points, prototypes))
        total = tf.reduce_sum(distances * _WEIGHTS_7_2.astype(np.float32))
    grad_points, grad_prototypes = tape.gradient(total, [points, prototypes])
    return {
        **_origin(case),
        "values": np.asarray(distances, dtype=np.float64),
        "grad_points": _array_or_none(grad_points),
        "grad_prototypes": _array_or_none(grad_prototypes),
    }


def _distance_reference() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    difference = _POINTS_7_2[:, None, :] - _PROTOTYPES_7_2[None, :, :]
    distance = np.sqrt(np.sum(difference**2, axis=-1))
    # At a point on a prototype the distance has a kink; its gradient there is taken as 0.
    unit = np.divide(
        difference,
        distance[..., None],
        out=np.zeros_like(difference),
        where=distance[..., None] > 0,
    )
    weighted = _WEIGHTS_7_2[..., None] * unit
    return distance, weighted.sum(axis=1), -weighted.sum(axis=0)


@exercise("7.2", answer="case_7_2", probe=_probe_7_2)
def ex7_2(evidence: Evidence) -> str:
    """Exercise 7.2: where the patient's NaN is born, and distances with finite gradients."""
    _judge_origin(evidence, "Sqrt", diagnosis.BACKWARD)
    n, k = _WEIGHTS_7_2.shape
    want, want_points, want_prototypes = _distance_reference()
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


def _probe_7_3(answer: Any) -> Evidence:
    case = _require_case(answer, ("op_type", "phase", "fix"))
    fix = require_callable(case["fix"], "fix(z)")
    evidence: Evidence = _origin(case)
    for dtype in (tf.float16, tf.float32):
        z = tf.Variable(_GATES_7_3, dtype=dtype)
        with tf.GradientTape() as tape:
            gate = tf.convert_to_tensor(fix(z))
            total = tf.reduce_sum(tf.cast(gate, tf.float32) * _WEIGHTS_7_3.astype(np.float32))
        gradient = tape.gradient(total, z)
        evidence[f"values_{dtype.name}"] = np.asarray(tf.cast(gate, tf.float64))
        evidence[f"grad_{dtype.name}"] = (
            None if gradient is None else np.asarray(tf.cast(gradient, tf.float64))
        )
    return evidence


@exercise("7.3", answer="case_7_3", probe=_probe_7_3)
def ex7_3(evidence: Evidence) -> str:
    """Exercise 7.3: where the gate's NaN is born, and a gate that holds in float16."""
    _judge_origin(evidence, "Exp", diagnosis.FORWARD)
    gate = 1.0 / (1.0 + np.exp(-_GATES_7_3))
    want_gradient = _WEIGHTS_7_3 * gate * (1.0 - gate)
    # float16 keeps about 3 decimal digits.
    for dtype, tolerance in (("float16", 2e-3), ("float32", 1e-6)):
        values = _float_array(evidence, f"values_{dtype}", _GATES_7_3.shape)
        for z, value, want in zip(_GATES_7_3, values, gate, strict=True):
            if not abs(value - want) <= tolerance:
                raise CheckFailed(f"fix: z = {z} in {dtype}: expected gate {want:.4f}, got {value}")
        if evidence[f"grad_{dtype}"] is None:
            raise CheckFailed(f"fix: z in {dtype} gets no gradient (None)")
        gradients = _float_array(evidence, f"grad_{dtype}", _GATES_7_3.shape)
        for z, gradient, want in zip(_GATES_7_3, gradients, want_gradient, strict=True):
            if not abs(gradient - want) <= 2 * tolerance:
                raise CheckFailed(
                    f"fix: z = {z} in {dtype}: expected d gate / dz = {want:.4g} (times the "
                    f"check's weight), got {gradient}"
                )
    return "right origin; the gate holds in float16 and float32."
