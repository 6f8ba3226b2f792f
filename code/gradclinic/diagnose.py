"""Which trainable variables get a usable gradient: a per-variable report and a Keras callback.

`diagnose(model, x, y)` runs one forward and backward pass on a batch and classifies each
trainable variable's gradient as one of STATUSES. `GradientCheck` does the same from inside
`model.fit` and stops training with an error naming the variable that has no gradient or a
NaN/inf one. The file depends only on TensorFlow, Keras and NumPy, so it can be copied as is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

NOT_CONNECTED = "None (not connected)"
ZERO = "zero"
NONFINITE = "non-finite"
HEALTHY = "healthy"
STATUSES: tuple[str, ...] = (NOT_CONNECTED, ZERO, NONFINITE, HEALTHY)
# What stops training by default: a zero gradient can be legitimate (a ReLU that is off for the
# whole batch, a bump whose support holds no point), None and NaN/inf never are.
FATAL_STATUSES: tuple[str, ...] = (NOT_CONNECTED, NONFINITE)

__all__ = [
    "FATAL_STATUSES",
    "HEALTHY",
    "NONFINITE",
    "NOT_CONNECTED",
    "STATUSES",
    "ZERO",
    "GradientCheck",
    "GradientError",
    "GradientRecord",
    "GradientReport",
    "diagnose",
    "diagnose_loss",
]


class GradientError(RuntimeError):
    """Raised by GradientCheck when a variable's gradient is None or non-finite."""


@dataclass(frozen=True)
class GradientRecord:
    """One trainable variable: its name, shape, gradient status and gradient norm."""

    name: str
    shape: tuple[int, ...]
    status: str
    norm: float | None
    nonfinite: int

    @property
    def size(self) -> int:
        """Number of entries in the variable."""
        return int(np.prod(self.shape, dtype=np.int64))


class GradientReport(Sequence[GradientRecord]):
    """The records of one diagnosis, in variable order; prints as a text table."""

    def __init__(self, records: Sequence[GradientRecord], loss: float) -> None:
        self._records = tuple(records)
        self.loss = loss

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: Any) -> Any:
        return self._records[index]

    def __iter__(self) -> Iterator[GradientRecord]:
        return iter(self._records)

    def status(self, name: str) -> str:
        """The status of the variable called `name` (full path or last component)."""
        return self.record(name).status

    def record(self, name: str) -> GradientRecord:
        """The record whose full name is `name`, or whose last path component is `name`."""
        exact = [r for r in self._records if r.name == name]
        short = [r for r in self._records if r.name.rsplit("/", 1)[-1].split(":")[0] == name]
        found = exact or short
        if len(found) != 1:
            names = ", ".join(r.name for r in self._records)
            how = "no variable" if not found else f"{len(found)} variables"
            raise ValueError(f"name must identify one variable; {how} match {name!r} in: {names}")
        return found[0]

    def problems(self, statuses: Sequence[str] = FATAL_STATUSES) -> list[GradientRecord]:
        """The records whose status is in `statuses` (by default: None or non-finite)."""
        _check_statuses(statuses)
        return [r for r in self._records if r.status in statuses]

    @property
    def ok(self) -> bool:
        """True when every variable has a finite gradient (zero counts as ok)."""
        return not self.problems()

    def table(self) -> str:
        """The report as an aligned text table, one row per variable."""
        rows = [("variable", "shape", "gradient", "norm")]
        for r in self._records:
            rows.append((r.name, _format_shape(r.shape), _describe(r), _format_norm(r.norm)))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [
            f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip()
            for a, b, c, d in rows
        ]
        return "\n".join([*lines, f"loss: {_format_norm(self.loss)}"])

    def __repr__(self) -> str:
        return self.table()

    __str__ = __repr__


def _check_statuses(statuses: Sequence[str]) -> None:
    unknown = [s for s in statuses if s not in STATUSES]
    if isinstance(statuses, str) or unknown:
        raise ValueError(f"statuses must be a sequence of {STATUSES}, got {statuses!r}")


def _format_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _format_norm(value: float | None) -> str:
    # Three significant digits: enough to tell tiny from huge, stable across CPUs.
    return "-" if value is None else f"{value:.3g}"


def _describe(record: GradientRecord) -> str:
    if record.status == NONFINITE:
        return f"{NONFINITE} ({record.nonfinite} of {record.size})"
    return record.status


def _variable_name(variable: Any) -> str:
    # Keras 3 variables carry a unique path ("sequential/bump_layer/sigma"); tf.Variable a name.
    return str(getattr(variable, "path", None) or variable.name)


def _classify(variable: Any, gradient: Any) -> GradientRecord:
    name = _variable_name(variable)
    shape = tuple(int(d) for d in variable.shape)
    if gradient is None:
        return GradientRecord(name, shape, NOT_CONNECTED, None, 0)
    # IndexedSlices (from embeddings or gathers) become dense so every entry is inspected.
    values = np.asarray(tf.convert_to_tensor(gradient), dtype=np.float64)
    nonfinite = int(np.count_nonzero(~np.isfinite(values)))
    # The norm of a gradient holding NaN is NaN: it is reported as such, never dropped.
    norm = float(np.sqrt(np.sum(np.square(values))))
    if nonfinite:
        status = NONFINITE
    elif not np.any(values):
        status = ZERO
    else:
        status = HEALTHY
    return GradientRecord(name, shape, status, norm, nonfinite)


def diagnose_loss(loss_fn: Callable[[], Any], variables: Sequence[Any]) -> GradientReport:
    """Classify the gradient of the scalar loss_fn() with respect to each of `variables`."""
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be a callable taking no arguments, got {loss_fn!r}")
    variables = list(variables)
    if not variables:
        raise ValueError("variables must hold at least one variable, got an empty sequence")
    with tf.GradientTape() as tape:
        loss = tf.convert_to_tensor(loss_fn())
    if loss.shape.rank != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {loss.shape}")
    # UNCONNECTED_GRADIENTS defaults to None, which is exactly the case worth reporting.
    gradients = tape.gradient(loss, variables)
    records = [_classify(v, g) for v, g in zip(variables, gradients, strict=True)]
    return GradientReport(records, float(loss))


def diagnose(model: keras.Model, x: Any, y: Any, loss: Any = None) -> GradientReport:
    """Classify the gradient of every trainable variable of `model` for one batch (x, y)."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model, got {type(model).__name__}")
    if not model.built:
        # A subclassed model creates its variables on its first call.
        model(x)
    if not model.trainable_variables:
        raise ValueError("model must have trainable variables; it has none")
    if loss is None and not getattr(model, "compiled", False):
        raise ValueError(
            "loss must be given (a Keras loss or loss name) when model is not compiled"
        )
    loss_object = None if loss is None else keras.losses.get(loss)

    def batch_loss() -> tf.Tensor:
        y_pred = model(x, training=True)
        if loss_object is None:
            # compute_loss uses the compiled loss and adds the model's regularisation losses.
            return model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        # Loss functions looked up by name return one value per sample; Keras averages them.
        return tf.reduce_mean(loss_object(y, y_pred))

    return diagnose_loss(batch_loss, model.trainable_variables)


class GradientCheck(keras.callbacks.Callback):
    """Diagnose a fixed batch at train begin, every epoch end (and optionally every n batches).

    Raises GradientError naming the variable when a gradient's status is in `stop_on`. Keras 3
    raises its own "No gradients provided for any variable" while building the train step when
    *no* variable is connected; on_train_begin runs before that, so this check names the culprit.
    Every report is kept in `reports` as (moment, report).
    """

    def __init__(
        self,
        x: Any,
        y: Any,
        loss: Any = None,
        every_n_batches: int | None = None,
        stop_on: Sequence[str] = FATAL_STATUSES,
    ) -> None:
        super().__init__()
        if every_n_batches is not None and (
            isinstance(every_n_batches, bool)
            or not isinstance(every_n_batches, int)
            or every_n_batches < 1
        ):
            raise ValueError(
                f"every_n_batches must be None or an int >= 1, got {every_n_batches!r}"
            )
        _check_statuses(stop_on)
        self.x = x
        self.y = y
        self.loss = loss
        self.every_n_batches = every_n_batches
        self.stop_on = tuple(stop_on)
        self.reports: list[tuple[str, GradientReport]] = []
        self._batches_seen = 0

    def check(self, moment: str) -> GradientReport:
        """Diagnose the batch now; raise GradientError if a status is in stop_on."""
        report = diagnose(self.model, self.x, self.y, self.loss)
        self.reports.append((moment, report))
        bad = report.problems(self.stop_on)
        if bad:
            culprits = "; ".join(f"{r.name}: {_describe(r)}" for r in bad)
            raise GradientError(
                f"gradient check at {moment} failed for {culprits}\n{report.table()}"
            )
        return report

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._batches_seen = 0
        self.check("train begin")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._batches_seen += 1
        if self.every_n_batches and self._batches_seen % self.every_n_batches == 0:
            self.check(f"batch {self._batches_seen}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.check(f"end of epoch {epoch + 1}")
