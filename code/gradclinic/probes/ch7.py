"""Chapter 7's probes: each runs the answer on the inputs it is given (no judge, no key)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic import diagnose as diagnosis
from gradclinic.probes._core import (
    CheckFailed,
    Evidence,
    Inputs,
    probe,
    require_callable,
)

__all__ = []

# The cause constants of gradclinic.diagnose, by name, and its two phases of an Origin.
CAUSE_NAMES = ("UNUSED", "BLOCKED", "LEFT_TENSORFLOW", "INTEGER")
CAUSES = {name: getattr(diagnosis, name) for name in CAUSE_NAMES}
PHASES = (diagnosis.FORWARD, diagnosis.BACKWARD)


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


# --- 6.1: a loss that leaves TensorFlow --------------------------------------------------------


@probe("7.1", answer="case_7_1")
def _probe_7_1(answer: Any, inputs: Inputs) -> Evidence:
    case = _require_case(answer, ("cause", "fix"))
    fix = require_callable(case["fix"], "fix(y_true, y_pred)")
    values, gradients = [], []
    targets = np.asarray(inputs["targets"], dtype=np.float64)
    errors = np.asarray(inputs["errors"], dtype=np.float64)
    for target, error in zip(targets, errors, strict=True):
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
            return {
                "cause": _text_or_none(case["cause"], "cause"),
                "connected": False,
            }
    batch = tf.convert_to_tensor(
        fix(
            tf.constant(targets.reshape(-1, 1), tf.float32),
            tf.constant((targets + errors).reshape(-1, 1), tf.float32),
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


# --- 6.2 and 6.3: where a NaN is born ----------------------------------------------------------


def _origin(case: dict[str, Any]) -> dict[str, str | None]:
    return {
        "op_type": _text_or_none(case["op_type"], "op_type"),
        "phase": _text_or_none(case["phase"], "phase"),
    }


@probe("7.2", answer="case_7_2")
def _probe_7_2(answer: Any, inputs: Inputs) -> Evidence:
    case = _require_case(answer, ("op_type", "phase", "fix"))
    fix = require_callable(case["fix"], "fix(x, prototypes)")
    points = tf.Variable(np.asarray(inputs["points"]), dtype=tf.float32)
    prototypes = tf.Variable(np.asarray(inputs["prototypes"]), dtype=tf.float32)
    with tf.GradientTape() as tape:
        distances = tf.convert_to_tensor(fix(points, prototypes))
        total = tf.reduce_sum(distances * np.asarray(inputs["weights"], dtype=np.float32))
    grad_points, grad_prototypes = tape.gradient(total, [points, prototypes])
    return {
        **_origin(case),
        "values": np.asarray(distances, dtype=np.float64),
        "grad_points": _array_or_none(grad_points),
        "grad_prototypes": _array_or_none(grad_prototypes),
    }


@probe("7.3", answer="case_7_3")
def _probe_7_3(answer: Any, inputs: Inputs) -> Evidence:
    case = _require_case(answer, ("op_type", "phase", "fix"))
    fix = require_callable(case["fix"], "fix(z)")
    evidence: Evidence = _origin(case)
    for dtype in (tf.float16, tf.float32):
        z = tf.Variable(np.asarray(inputs["gates"]), dtype=dtype)
        with tf.GradientTape() as tape:
            gate = tf.convert_to_tensor(fix(z))
            total = tf.reduce_sum(
                tf.cast(gate, tf.float32) * np.asarray(inputs["weights"], dtype=np.float32)
            )
        gradient = tape.gradient(total, z)
        evidence[f"values_{dtype.name}"] = np.asarray(tf.cast(gate, tf.float64))
        evidence[f"grad_{dtype.name}"] = (
            None if gradient is None else np.asarray(tf.cast(gradient, tf.float64))
        )
    return evidence
