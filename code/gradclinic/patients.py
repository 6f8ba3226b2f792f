"""Chapter 7's patients: small broken models and losses seen in the wild, with their fixes.

The casebook patients are shown in the chapter, each next to its fix. The exercise patients
(`exercise_patient(key)`) are not: a student diagnoses them with the chapter's tools, and the
checks in `gradclinic.checks.ch7` grade the cause they name and the fix they write. Two helpers
turn TensorFlow's error messages into short text without paths, devices or graph names.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "EXERCISES",
    "LinearRun",
    "Patient",
    "TanhDense",
    "check_numerics_report",
    "confident_classifier",
    "error_summary",
    "exercise_patient",
    "fit_linear",
    "loss_assigning",
    "loss_from_call",
    "loss_from_predict",
    "loss_from_tensor",
    "probability_cross_entropy",
    "rebinding_gradients",
    "regression_batch",
    "relu_regressor",
    "unscaled_regression",
]


# ---------------------------------------------------------------------------------------------
# Error messages, tidied


def error_summary(error: BaseException) -> str:
    """A TensorFlow error's own message without the function-node, device and op suffixes."""
    if not isinstance(error, BaseException):
        raise ValueError(
            f"error must be an exception, got {type(error).__name__}"
        )
    text = str(getattr(error, "message", None) or error)
    # "{{function_node __wrapped__CheckNumerics_device_/job:localhost/...}} msg [Op:...] name: "
    text = re.sub(r"\{\{function_node [^}]*\}\}", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text, flags=re.S)
    return " ".join(text.split())


_FRAME = re.compile(
    r"^\s*\+ (?P<path>\S+) \(L(?P<line>\d+)\) (?P<function>\S+)"
)
_DETECTED = re.compile(
    r'Detected Infinity or NaN in output (\d+) of (graph|eagerly-executing) op "(\w+)"'
)
# The op name TensorFlow gives a traced function's call; the counter differs from run to run.
_TRACED_CALL = re.compile(r"__inference_(\w+?)_\d+")


def _is_library(path: str) -> bool:
    # Installed packages (IPython, ipykernel, TensorFlow), except this one, are not user code.
    return "packages/" in path and "gradclinic" not in path


def _frame_name(path: str, line: str, function: str) -> str:
    # A notebook cell's file is a fresh temporary name in every kernel: call it "cell".
    in_cell = re.search(r"ipykernel_\d+", path) is not None or path.startswith(
        "<"
    )
    name = "cell" if in_cell else PurePath(path).name
    return f"{name}:{line} ({function})"


def check_numerics_report(error: BaseException) -> str:
    """The op that enable_check_numerics caught and the user's frames that created it, one per line."""
    if not isinstance(error, BaseException):
        raise ValueError(
            f"error must be an exception, got {type(error).__name__}"
        )
    text = str(getattr(error, "message", None) or error)
    found = _DETECTED.search(text)
    if found is None:
        raise ValueError(
            "error must come from tf.debugging.enable_check_numerics; it does not"
        )
    output, kind, op_type = found.groups()
    lines = text.splitlines()
    frames = []
    # check_numerics marks the frames it infers to be user code with "->" on the next line.
    for line, following in itertools.pairwise(lines):
        match = _FRAME.match(line)
        if (
            match
            and following.lstrip().startswith("->")
            and not _is_library(match["path"])
        ):
            frames.append(
                _frame_name(match["path"], match["line"], match["function"])
            )
    where = "graph" if kind == "graph" else "eager"
    called = _TRACED_CALL.fullmatch(op_type)
    if called:
        # A function traced before the checks were on runs as one op: only its outputs are seen.
        head = f"tf.function {called[1]!r}, checked as one op, output {output}"
    else:
        head = f"op {op_type!r} ({where}), output {output}"
    report = [f"{head}: {_tensor_problem(text)}"]
    report += [f"  created at {frame}" for frame in frames]
    return "\n".join(report)


def _tensor_problem(text: str) -> str:
    found = re.search(r"Tensor had ([^\n\[]*?)values", text)
    return f"{found.group(1).strip()} values" if found else "non-finite values"


# ---------------------------------------------------------------------------------------------
# Casebook: gradients that are None


def regression_batch(
    n: int = 32, features: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A batch (x, y) for a small regression: y = x @ w + 0.5 with fixed w, as float32."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if (
        isinstance(features, bool)
        or not isinstance(features, int)
        or features < 1
    ):
        raise ValueError(f"features must be an int >= 1, got {features!r}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, features)).astype(np.float32)
    w = np.linspace(-1.0, 1.0, features, dtype=np.float32).reshape(-1, 1)
    return x, (x @ w + 0.5).astype(np.float32)


def relu_regressor(
    features: int = 3,
    hidden: int = 4,
    hidden_bias: float = 0.0,
    activation: str = "relu",
) -> keras.Model:
    """Dense(hidden, activation) then Dense(1); a very negative hidden_bias switches ReLUs off."""
    return keras.Sequential(
        [
            keras.Input(shape=(features,)),
            keras.layers.Dense(
                hidden,
                activation=activation,
                kernel_initializer=keras.initializers.GlorotUniform(seed=0),
                bias_initializer=keras.initializers.Constant(hidden_bias),
            ),
            keras.layers.Dense(
                1, kernel_initializer=keras.initializers.GlorotUniform(seed=1)
            ),
        ]
    )


def loss_from_predict(
    model: keras.Model, x: np.ndarray, y: np.ndarray
) -> tf.Tensor:
    """The patient: a squared error from model.predict, which gives NumPy."""
    predictions = model.predict(x, verbose=0)
    return tf.reduce_mean(tf.square(predictions - y))


def loss_from_call(
    model: keras.Model, x: np.ndarray, y: np.ndarray
) -> tf.Tensor:
    """The fix: the same loss from model(x), a tensor the tape records."""
    predictions = model(x, training=True)
    return tf.reduce_mean(tf.square(predictions - y))


@keras.saving.register_keras_serializable(package="gradclinic")
class TanhDense(keras.layers.Layer):
    """tanh(x @ kernel); via_numpy=True computes the tanh with NumPy inside tf.numpy_function."""

    def __init__(
        self, units: int, via_numpy: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be an int >= 1, got {units!r}")
        self.units = units
        self.via_numpy = bool(via_numpy)

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(
            name="kernel",
            shape=(int(input_shape[-1]), self.units),
            initializer=keras.initializers.GlorotUniform(seed=2),
        )

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        z = tf.matmul(inputs, self.kernel)
        if not self.via_numpy:
            return tf.tanh(z)
        out = tf.numpy_function(np.tanh, [z], tf.float32)
        # numpy_function forgets the shape; Keras needs it for the next layer.
        out.set_shape(z.shape)
        return out

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (*tuple(input_shape[:-1]), self.units)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "via_numpy": self.via_numpy,
        }


def rebinding_gradients(steps: int = 2) -> list[tuple[str, float | None]]:
    """The TF guide's first case: `x = x + 1` makes the variable a tensor."""
    x = tf.Variable(2.0)
    seen: list[tuple[str, float | None]] = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            y = x + 1
        gradient = tape.gradient(y, x)
        seen.append(
            (type(x).__name__, None if gradient is None else float(gradient))
        )
        x = x + 1  # the bug: should be x.assign_add(1)
    return seen


def loss_assigning(w: tf.Variable, v: tf.Variable) -> tf.Tensor:
    """The patient: v.assign(2 w), then the loss squares v, not w."""
    v.assign(2.0 * w)
    return tf.square(v)


def loss_from_tensor(w: tf.Variable, v: tf.Variable) -> tf.Tensor:
    """The fix: the loss squares the tensor 2 w; v still gets the value."""
    doubled = 2.0 * w
    v.assign(doubled)
    return tf.square(doubled)


# ---------------------------------------------------------------------------------------------
# Casebook: gradients that are NaN or inf


def confident_classifier(
    softmax: bool, seed: int = 0
) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """A 3-class linear classifier with large weights, its batch and one-hot labels.

    softmax=True outputs probabilities (some underflow to exactly 0 in float32); False, logits.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, size=(16, 2)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=16)]
    model = keras.Sequential(
        [
            keras.Input(shape=(2,)),
            keras.layers.Dense(
                3,
                activation="softmax" if softmax else None,
                kernel_initializer=keras.initializers.RandomNormal(
                    stddev=30.0, seed=seed
                ),
            ),
        ]
    )
    return model, x, labels


def probability_cross_entropy(
    labels: tf.Tensor, probabilities: tf.Tensor
) -> tf.Tensor:
    """The patient: -sum(labels * log(p)) written by hand on probabilities."""
    return tf.reduce_mean(
        -tf.reduce_sum(labels * tf.math.log(probabilities), axis=-1)
    )


def unscaled_regression(
    n: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """House-size-like inputs in [500, 3000] and targets 0.2 * x + 30, as float32 (n, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(500.0, 3000.0, size=(n, 1)).astype(np.float32)
    return x, (0.2 * x + 30.0).astype(np.float32)


@dataclass(frozen=True)
class LinearRun:
    """A linear fit's loss after each step, and the first step whose weights were not finite."""

    losses: np.ndarray
    first_nonfinite_step: int | None
    weight: float
    bias: float


def fit_linear(
    x: np.ndarray,
    y: np.ndarray,
    steps: int = 50,
    learning_rate: float = 0.01,
    clipnorm: float | None = None,
) -> LinearRun:
    """Full-batch SGD on y = w x + b (clipnorm as in keras SGD); stops at the first non-finite weights."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    x = tf.constant(x, tf.float32)
    y = tf.constant(y, tf.float32)
    w, b = tf.Variable(0.0), tf.Variable(0.0)
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate, clipnorm=clipnorm
    )
    losses = []
    first = None
    for step in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(w * x + b - y))
        optimizer.apply_gradients(
            zip(tape.gradient(loss, [w, b]), [w, b], strict=True)
        )
        losses.append(float(loss))
        if not (np.isfinite(float(w)) and np.isfinite(float(b))):
            first = step
            break  # every later step is NaN
    return LinearRun(np.array(losses), first, float(w), float(b))


# ---------------------------------------------------------------------------------------------
# Exercise patients (not shown in the chapter)


@dataclass(frozen=True)
class Patient:
    """A broken model, a batch, and the loss it is trained with: run the tools on it."""

    model: keras.Model
    x: np.ndarray
    y: np.ndarray
    loss: Callable[[Any, Any], Any]
    symptom: str


def _log_cosh_by_numpy(y_true: Any, y_pred: Any) -> Any:
    # A robust regression loss written with NumPy, as it would be in a NumPy code base.
    error = np.asarray(y_pred, dtype=np.float32) - np.asarray(
        y_true, dtype=np.float32
    )
    return tf.reduce_mean(np.log(np.cosh(error)))


def _patient_7_1() -> Patient:
    x, y = regression_batch(n=24, features=2, seed=61)
    model = keras.Sequential(
        [
            keras.Input(shape=(2,)),
            keras.layers.Dense(3, activation="tanh", name="hidden"),
            keras.layers.Dense(1, name="out"),
        ]
    )
    return Patient(
        model,
        x,
        y,
        _log_cosh_by_numpy,
        "trained with a log-cosh loss, it never moves",
    )


@keras.saving.register_keras_serializable(package="gradclinic")
class _PrototypeDistance(keras.layers.Layer):
    """Euclidean distance from each input to each of k trainable prototypes."""

    def __init__(self, prototypes: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.initial = np.asarray(prototypes, dtype=np.float32)

    def build(self, input_shape: Any) -> None:
        self.prototypes = self.add_weight(
            name="prototypes",
            shape=self.initial.shape,
            initializer=keras.initializers.Constant(self.initial),
        )

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        difference = inputs[:, None, :] - self.prototypes[None, :, :]
        return tf.sqrt(tf.reduce_sum(tf.square(difference), axis=-1))


def _patient_7_2() -> Patient:
    rng = np.random.default_rng(62)
    x = rng.normal(size=(20, 2)).astype(np.float32)
    # Prototypes initialised from data points, as k-means-style layers usually are.
    layer = _PrototypeDistance(x[[3, 11]], name="distance")
    model = keras.Sequential(
        [keras.Input(shape=(2,)), layer, keras.layers.Dense(1, name="out")]
    )
    y = rng.normal(size=(20, 1)).astype(np.float32)
    return Patient(
        model,
        x,
        y,
        keras.losses.MeanSquaredError(),
        "its loss is finite, yet one training step makes every weight NaN",
    )


@keras.saving.register_keras_serializable(package="gradclinic")
class _HandGate(keras.layers.Layer):
    """A gate exp(z) / (1 + exp(z)) on a learned pre-activation, written by hand."""

    def build(self, input_shape: Any) -> None:
        self.scale = self.add_weight(
            name="scale", shape=(int(input_shape[-1]),), initializer="ones"
        )

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        z = inputs * self.scale
        e = tf.exp(z)
        return e / (1.0 + e)


def _patient_7_3() -> Patient:
    rng = np.random.default_rng(63)
    x = rng.uniform(-16.0, 16.0, size=(32, 4)).astype(np.float32)
    model = keras.Sequential(
        [
            keras.Input(shape=(4,)),
            _HandGate(dtype="mixed_float16", name="gate"),
            keras.layers.Dense(1, dtype="float32", name="out"),
        ]
    )
    y = rng.uniform(0.0, 1.0, size=(32, 1)).astype(np.float32)
    return Patient(
        model,
        x,
        y,
        keras.losses.MeanSquaredError(),
        "fine in float32, broken in mixed precision",
    )


EXERCISES: dict[str, Callable[[], Patient]] = {
    "7.1": _patient_7_1,
    "7.2": _patient_7_2,
    "7.3": _patient_7_3,
}


def exercise_patient(key: str) -> Patient:
    """A fresh copy of the patient of exercise `key` ("7.1", "7.2" or "7.3")."""
    if key not in EXERCISES:
        raise ValueError(
            f"key must be one of {', '.join(EXERCISES)}; got {key!r}"
        )
    return EXERCISES[key]()
