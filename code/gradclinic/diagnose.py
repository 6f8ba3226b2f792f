"""Which trainable variables get a usable gradient, and why not: a per-variable report and a callback.

`diagnose(model, x, y)` runs one forward and backward pass on a batch and classifies each
trainable variable's gradient as one of STATUSES. `GradientCheck` does the same from inside
`model.fit` and stops training with an error naming the variable that has no gradient or a
NaN/inf one. The file depends only on TensorFlow, Keras and NumPy, so it can be copied as is.

Each `GradientRecord` also says why, in fields that are None when they do not apply:

- `cause`, for a NOT_CONNECTED (None) gradient, one of CAUSES, or None when it cannot be decided
  (the report then says "cause unknown"):
  UNUSED (the loss never reads the variable), BLOCKED (it reads it, but every path to the loss
  passes through an op without gradient), LEFT_TENSORFLOW (a value computed from it left
  TensorFlow inside the loss, through `.numpy()`, `float()`, `int()` or NumPy, and came back as a
  constant), INTEGER (the variable's dtype cannot carry a gradient).
- `blocked_by`, for BLOCKED: the op types that stop the gradient, nearest the variable first,
  e.g. ("Cast",) or ("Less",). `conversion`, for LEFT_TENSORFLOW: how the value left, e.g.
  ".numpy()", "float()", "np.mean", or the user's call it happened in, e.g. "model.predict()
  through .numpy()". `dtype`, for INTEGER: the dtype name. `origin`, for a NONFINITE gradient:
  `op_type` (the forward op responsible, e.g. "Exp" or "Sqrt"), `phase` ("forward": the gradient's
  inf/NaN goes back to a forward value, even one in a branch tf.where did not select; "backward":
  the op's own gradient made it from finite values, even when its forward value is infinite too,
  as log(0) is), `location`, and `unselected`: True, in either phase, when the inf/NaN lies
  only where a tf.where chose its other branch (the where trap: its zero gradient times inf is
  NaN, fixed by a second tf.where on the op's input); None when no origin was found.
- `location`: "file.py:LINE" (or "In[N]:LINE" for a notebook cell) of the user's code behind the
  culprit, the innermost frame of the loss that is not TensorFlow, Keras, their helpers, Python's
  standard library or this file; None when there is none.
- `culprit`, a read-only property kept for older pages: whichever typed field applies.

The printed report adds a line "  why: ..." under each None or non-finite row, in plain words;
`record.why` is that text and `record.describe()` the status and cause in one line, e.g.
"None (not connected) — left TensorFlow (.numpy() at loss.py:12)" or "non-finite (1 of 1) — Exp
overflowed in the forward pass at bump.py:28". GradientCheck's error carries the same lines.

How, with TensorFlow's own machinery, and only for the variables whose gradient is None or
non-finite (a healthy diagnosis costs one forward and backward pass, nothing more):

- None: the loss is traced once with tf.function. A variable whose captured handle no op reads
  on the way to the loss is UNUSED. Otherwise the graph is walked from the handle towards the
  loss, asking tf.gradients op by op (so each op's registered gradient, the one the tape uses)
  whether the gradient crosses it; the ops it cannot cross are the BLOCKED culprit (the walk
  enters the bodies of nested tf.functions and tf.cond branches). When tracing
  fails, because `.numpy()`, `float()` or NumPy do not work on a graph tensor, the failing
  method's tensor is taken from the traceback and the variables it depends on (tf.gradients in
  the partly built graph) are LEFT_TENSORFLOW at the user's line of the traceback; `float()` of
  a tensor leaves no such trace, so the loss then runs once more eagerly under a Python profile
  hook that records each tensor converted to Python, and the tape says which variables it
  depends on. A variable the eager tape never saw read is UNUSED.
- Non-finite: the loss and tf.gradients are traced together and run, returning every
  intermediate value; the non-finite gradient is followed back to the first op whose inputs
  were all finite. A forward op is the origin itself; a gradient op belongs to the forward op
  whose name scope ("gradients/<op>_grad") it was built in. The forward op's creation stack
  (`op.traceback`) gives the location. A loss that cannot be traced runs once more eagerly under
  tf.debugging.enable_check_numerics, disabled again in all cases; it names the op but, in the
  backward pass, not the line (eager ops keep no creation stack).

Limits, reported as "cause unknown" rather than guessed: a loss that leaves TensorFlow hides
every later op from the trace, so another variable's None there stays unknown; a gradient that
stops inside a tf.while_loop body is not analysed (the loop's graph gradient is not None);
a non-finite gradient the second run does not reproduce (random layers) has no origin. The
extra runs re-execute the loss: a random layer draws again, a BatchNormalization updates its
statistics once more. Keras traceback filtering is switched off while tracing and restored.
"""

from __future__ import annotations

import dataclasses
import linecache
import os
import re
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
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

UNUSED = "unused"
BLOCKED = "blocked"
LEFT_TENSORFLOW = "left TensorFlow"
INTEGER = "integer dtype"
CAUSES: tuple[str, ...] = (UNUSED, BLOCKED, LEFT_TENSORFLOW, INTEGER)
FORWARD = "forward"
BACKWARD = "backward"

__all__ = [
    "BACKWARD",
    "BLOCKED",
    "CAUSES",
    "FATAL_STATUSES",
    "FORWARD",
    "HEALTHY",
    "INTEGER",
    "LEFT_TENSORFLOW",
    "NONFINITE",
    "NOT_CONNECTED",
    "STATUSES",
    "UNUSED",
    "ZERO",
    "GradientCheck",
    "GradientError",
    "GradientRecord",
    "GradientReport",
    "Origin",
    "diagnose",
    "diagnose_loss",
]


class GradientError(RuntimeError):
    """Raised by GradientCheck when a variable's gradient is None or non-finite."""


@dataclass(frozen=True)
class Origin:
    """Where a non-finite gradient starts: the forward op, the pass, the user's line."""

    op_type: str
    phase: str
    location: str | None
    # True when the inf/NaN lies only where a tf.where chose its other branch: its zero
    # gradient still meets it (0 * inf). Set in both phases, only for a loss that traces.
    # Not part of equality, so Origin(op_type, phase, location) compares as documented.
    unselected: bool = dataclasses.field(default=False, compare=False)


@dataclass(frozen=True)
class GradientRecord:
    """One trainable variable: name, shape, gradient status and norm, and why it is broken."""

    name: str
    shape: tuple[int, ...]
    status: str
    norm: float | None
    nonfinite: int
    cause: str | None = None
    location: str | None = None
    # One typed field per kind of cause; each is None when it does not apply.
    blocked_by: tuple[str, ...] | None = None
    conversion: str | None = None
    origin: Origin | None = None
    dtype: str | None = None

    @property
    def culprit(self) -> tuple[str, ...] | str | Origin | None:
        """Whichever of blocked_by, conversion, dtype (INTEGER) or origin applies; kept for old pages."""
        if self.cause == INTEGER:
            return self.dtype
        return self.blocked_by or self.conversion or self.origin

    @property
    def size(self) -> int:
        """Number of entries in the variable."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def why(self) -> str | None:
        """The cause in words, for a None or non-finite gradient; None for the other statuses."""
        if self.status == NONFINITE:
            return _explain_origin(self.origin)
        if self.status == NOT_CONNECTED:
            return _explain_cause(self)
        return None

    def describe(self) -> str:
        """Status and cause in one line, e.g. "None (not connected) — the loss never reads it"."""
        why = self.why
        return _describe(self) if why is None else f"{_describe(self)} — {why}"


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
        short = [
            r
            for r in self._records
            if r.name.rsplit("/", 1)[-1].split(":")[0] == name
        ]
        found = exact or short
        if len(found) != 1:
            names = ", ".join(r.name for r in self._records)
            how = "no variable" if not found else f"{len(found)} variables"
            raise ValueError(
                f"name must identify one variable; {how} match {name!r} in: {names}"
            )
        return found[0]

    def problems(
        self, statuses: Sequence[str] = FATAL_STATUSES
    ) -> list[GradientRecord]:
        """The records whose status is in `statuses` (by default: None or non-finite)."""
        _check_statuses(statuses)
        return [r for r in self._records if r.status in statuses]

    @property
    def ok(self) -> bool:
        """True when every variable has a finite gradient (zero counts as ok)."""
        return not self.problems()

    def table(self) -> str:
        """The report as an aligned text table, one row per variable, each problem's cause below it."""
        rows = [("variable", "shape", "gradient", "norm")]
        for r in self._records:
            rows.append(
                (
                    r.name,
                    _format_shape(r.shape),
                    _describe(r),
                    _format_norm(r.norm),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = []
        for row, record in zip(rows, (None, *self._records), strict=True):
            a, b, c, d = row
            lines.append(
                f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip()
            )
            why = None if record is None else record.why
            if why is not None:
                # Wrapped so the report fits a page and a terminal of 80 columns.
                lines.append(
                    textwrap.fill(
                        f"  why: {why}", 80, subsequent_indent=" " * 7
                    )
                )
        return "\n".join([*lines, f"loss: {_format_norm(self.loss)}"])

    def __repr__(self) -> str:
        return self.table()

    __str__ = __repr__


def _check_statuses(statuses: Sequence[str]) -> None:
    unknown = [s for s in statuses if s not in STATUSES]
    if isinstance(statuses, str) or unknown:
        raise ValueError(
            f"statuses must be a sequence of {STATUSES}, got {statuses!r}"
        )


def _format_shape(shape: tuple[int, ...]) -> str:
    return (
        "("
        + ", ".join(str(d) for d in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )


def _format_norm(value: float | None) -> str:
    # Three significant digits: enough to tell tiny from huge, stable across CPUs.
    return "-" if value is None else f"{value:.3g}"


def _describe(record: GradientRecord) -> str:
    if record.status == NONFINITE:
        return f"{NONFINITE} ({record.nonfinite} of {record.size})"
    return record.status


def _at(location: str | None) -> str:
    return f"at {location}" if location else "at an unknown line"


# What the usual blocking ops are, in the words of the Python call that made them.
_FRIENDLY_OPS = {
    **dict.fromkeys(
        ("Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual"),
        "a comparison",
    ),
    "Cast": "a cast to an integer type",
    **dict.fromkeys(("ArgMax", "ArgMin"), "an index"),
    **dict.fromkeys(("Round", "Floor", "Ceil"), "rounding"),
    "StopGradient": "tf.stop_gradient",
}

# Ops that run a function body (a nested tf.function, a tf.cond or tf.while_loop branch).
_OPAQUE_OPS = frozenset(
    {
        "PartitionedCall",
        "StatefulPartitionedCall",
        "If",
        "StatelessIf",
        "While",
        "StatelessWhile",
    }
)


def _explain_cause(record: GradientRecord) -> str:
    cause, culprit, location = (
        record.cause,
        record.blocked_by or (),
        record.location,
    )
    if cause == UNUSED:
        return "the loss never reads it"
    if cause == BLOCKED:
        ops = ", ".join(culprit)
        if _OPAQUE_OPS.intersection(culprit):
            # A body the walk could not enter (a loop): the op without gradient is inside it.
            return f"blocked inside a nested tf.function, tf.cond or loop ({ops}, {_at(location)})"
        named = ", ".join(
            f"{op} ({_FRIENDLY_OPS[op]})" if op in _FRIENDLY_OPS else op
            for op in culprit
        )
        # Round or Floor do register a gradient function; it returns None, so "passes" is exact.
        verb = "passes" if len(culprit) == 1 else "pass"
        return f"blocked by {named}, which {verb} no gradient back ({_at(location)})"
    if cause == LEFT_TENSORFLOW:
        return f"left TensorFlow ({record.conversion} {_at(location)})"
    if cause == INTEGER:
        return f"its dtype {record.dtype} is an integer type, which cannot carry a gradient"
    return "cause unknown"


# Ops whose inf comes from a result too large for the dtype rather than from a pole like 1/0.
_OVERFLOWING = frozenset(
    {"Exp", "Expm1", "Pow", "Cosh", "Sinh", "Square", "Mul"}
)


# The where trap's fix, named in every why-line of an unselected origin.
_DOUBLE_WHERE = (
    "tf.where's zero gradient times inf is NaN: also pass the op a safe input "
    "with a second tf.where (the double where)"
)


def _explain_origin(origin: Any) -> str:
    if not isinstance(origin, Origin):
        return "cause unknown"
    at = _at(origin.location)
    if origin.phase == FORWARD:
        broke = (
            "overflowed"
            if origin.op_type in _OVERFLOWING
            else "gave inf or NaN"
        )
        if origin.unselected:
            return (
                f"{origin.op_type} {broke} in the forward pass {at}, in a branch tf.where "
                f"did not select; {_DOUBLE_WHERE}"
            )
        return f"{origin.op_type} {broke} in the forward pass {at}"
    if origin.unselected:
        return (
            f"the gradient of {origin.op_type} ({at}) is inf or NaN where tf.where did not "
            f"select it; {_DOUBLE_WHERE}"
        )
    return (
        f"the gradient of {origin.op_type} turned inf or NaN in the backward pass, although the "
        f"op's inputs are finite ({at})"
    )


def _variable_name(variable: Any) -> str:
    # Keras 3 variables carry a unique path ("sequential/bump_layer/sigma"); tf.Variable a name.
    return str(getattr(variable, "path", None) or variable.name)


def _classify(variable: Any, gradient: Any) -> GradientRecord:
    name = _variable_name(variable)
    shape = tuple(int(d) for d in variable.shape)
    if gradient is None:
        return GradientRecord(name, shape, NOT_CONNECTED, None, 0)
    # IndexedSlices (from embeddings or gathers) become dense, so that every
    # entry is inspected.
    values = np.asarray(tf.convert_to_tensor(gradient), dtype=np.float64)
    nonfinite = int(np.count_nonzero(~np.isfinite(values)))
    # The norm of a gradient holding NaN is NaN: shown as such, never dropped.
    norm = float(np.sqrt(np.sum(np.square(values))))
    if nonfinite:
        status = NONFINITE
    elif not np.any(values):
        status = ZERO
    else:
        status = HEALTHY
    return GradientRecord(name, shape, status, norm, nonfinite)


def diagnose_loss(
    loss_fn: Callable[[], Any], variables: Sequence[Any]
) -> GradientReport:
    """Classify the gradient of the scalar loss_fn() with respect to each of `variables`."""
    if not callable(loss_fn):
        raise ValueError(
            f"loss_fn must be a callable taking no arguments, got {loss_fn!r}"
        )
    variables = list(variables)
    if not variables:
        raise ValueError(
            "variables must hold at least one variable, got an empty sequence"
        )
    for index, variable in enumerate(variables):
        if not isinstance(variable, (tf.Variable, keras.Variable)):
            raise ValueError(
                "variables must hold tf.Variable or keras.Variable objects, got "
                f"{type(variable).__name__} at index {index}"
            )
    with tf.GradientTape() as tape:
        # The tape watches trainable variables as they are read; the others must be asked for.
        tape.watch(
            [
                _tf_variable(v)
                for v in variables
                if not v.trainable and _is_real_float(v.dtype)
            ]
        )
        loss = tf.convert_to_tensor(loss_fn())
    if loss.shape.rank != 0:
        raise ValueError(
            f"loss_fn must return a scalar, got shape {loss.shape}"
        )
    # UNCONNECTED_GRADIENTS defaults to None, which is exactly the case worth reporting.
    gradients = tape.gradient(loss, variables)
    records = [
        _classify(v, g) for v, g in zip(variables, gradients, strict=True)
    ]
    if any(r.status in FATAL_STATUSES for r in records):
        read = {id(_handle(w)) for w in tape.watched_variables()}
        unread = {
            i
            for i, v in enumerate(variables)
            if v.trainable and id(_handle(v)) not in read
        }
        records = _find_causes(loss_fn, variables, records, unread)
    return GradientReport(records, float(loss))


def diagnose(
    model: keras.Model, x: Any, y: Any, loss: Any = None
) -> GradientReport:
    """Classify every trainable variable's gradient for one batch; regularisation losses count."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"model must be a keras.Model, got {type(model).__name__}"
        )
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
        value = tf.reduce_mean(loss_object(y, y_pred))
        # As compute_loss does, so a weight reached only through a regulariser gets the same
        # status with or without `loss`.
        for penalty in model.losses:
            value += tf.cast(penalty, value.dtype)
        return value

    return diagnose_loss(batch_loss, model.trainable_variables)


# ---- Why a gradient is None or non-finite (runs only when one is) -------------------------------


def _handle(variable: Any) -> Any:
    # A Keras 3 variable exposes the handle of the tf.Variable it wraps.
    return variable.handle


def _tf_variable(variable: Any) -> tf.Variable:
    return variable if isinstance(variable, tf.Variable) else variable.value


def _python_function(loss_fn: Callable[[], Any]) -> Callable[[], Any]:
    # Tracing a tf.function inside another would hide its ops in one call op: trace its body.
    return getattr(loss_fn, "python_function", loss_fn)


def _is_real_float(dtype: Any) -> bool:
    dtype = tf.as_dtype(dtype)
    return dtype.is_floating or dtype.is_complex


def _trace(fn: Callable[[], Any]) -> Any:
    """The concrete function of fn(); autograph only if Python control flow needs it."""
    # Keras cuts its own and TensorFlow's frames out of a layer's exception; the innermost one
    # holds the tensor that left TensorFlow, so filtering is off while tracing, then restored.
    filtering = keras.config.is_traceback_filtering_enabled()
    keras.config.disable_traceback_filtering()
    try:
        try:
            return tf.function(fn, autograph=False).get_concrete_function()
        except tf.errors.OperatorNotAllowedInGraphError:
            # `if tensor:` in the loss. Autograph rewrites it into tf.cond; op stacks then
            # point into generated files, which _user_location skips.
            return tf.function(fn, autograph=True).get_concrete_function()
    finally:
        if filtering:
            keras.config.enable_traceback_filtering()


def _find_causes(
    loss_fn: Callable[[], Any],
    variables: list[Any],
    records: list[GradientRecord],
    unread: set[int],
) -> list[GradientRecord]:
    records = list(records)
    candidates = []
    for index, (variable, record) in enumerate(
        zip(variables, records, strict=True)
    ):
        if record.status != NOT_CONNECTED:
            continue
        dtype = tf.as_dtype(variable.dtype)
        if not _is_real_float(dtype):
            records[index] = dataclasses.replace(
                record, cause=INTEGER, dtype=dtype.name
            )
        else:
            candidates.append(index)
    if candidates:
        causes = _guarded(
            lambda: _none_causes(loss_fn, variables, candidates, unread)
        )
        for index, (cause, culprit, location) in causes.items():
            typed = {BLOCKED: "blocked_by", LEFT_TENSORFLOW: "conversion"}.get(
                cause
            )
            records[index] = dataclasses.replace(
                records[index],
                cause=cause,
                location=location,
                **({} if typed is None else {typed: culprit}),
            )
    broken = [i for i, r in enumerate(records) if r.status == NONFINITE]
    if broken:
        for index, origin in _guarded(
            lambda: _find_origins(loss_fn, variables, broken)
        ).items():
            records[index] = dataclasses.replace(
                records[index], origin=origin, location=origin.location
            )
    return records


def _guarded(search: Callable[[], dict[int, Any]]) -> dict[int, Any]:
    # A search that breaks on an unforeseen graph or TensorFlow version leaves "cause unknown";
    # each search restores what it switched (profile hook, check-numerics) in its own finally.
    try:
        return search()
    except Exception:
        return {}


def _none_causes(
    loss_fn: Callable[[], Any],
    variables: list[Any],
    candidates: list[int],
    unread: set[int],
) -> dict[int, tuple[str, Any, str | None]]:
    python_fn = _python_function(loss_fn)
    found: dict[int, tuple[str, Any, str | None]] = {}

    def traced() -> tf.Tensor:
        loss = tf.convert_to_tensor(python_fn())
        try:
            found.update(_graph_causes(loss, variables, candidates))
        except Exception:  # an analysis that fails must not hide the report
            found.clear()
        return loss

    try:
        _trace(traced)
        return found
    except (
        Exception
    ) as error:  # the loss does not trace: look for values leaving TensorFlow
        failure = error
    causes: dict[int, tuple[str, Any, str | None]] = {
        i: (UNUSED, None, None) for i in candidates if i in unread
    }
    still_open = [i for i in candidates if i not in causes]
    if still_open:
        causes.update(_traced_exit(failure, variables, still_open))
    still_open = [i for i in still_open if i not in causes]
    if still_open:
        causes.update(_find_exits(python_fn, variables, still_open))
    return causes


def _captured_handle(graph: Any, variable: Any) -> Any:
    handle = _handle(variable)
    for external, internal in graph.captures:
        if external is handle:
            return internal
    return None


def _ancestors(tensor: Any) -> set[Any]:
    seen: set[Any] = set()
    stack = [tensor.op]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
    return seen


def _graph_causes(
    loss: tf.Tensor, variables: list[Any], candidates: list[int]
) -> dict[int, tuple[str, Any, str | None]]:
    graph = loss.graph
    upstream = _ancestors(loss)
    causes: dict[int, tuple[str, Any, str | None]] = {}
    for index in candidates:
        handle = _captured_handle(graph, variables[index])
        if handle is None or not any(
            op in upstream for op in handle.consumers()
        ):
            causes[index] = (UNUSED, None, None)
            continue
        if tf.gradients(loss, handle)[0] is not None:
            continue  # the graph has a gradient the eager tape did not: undecided
        blockers = _blocking_ops(handle, [loss], upstream)
        if blockers:
            culprit = tuple(dict.fromkeys(op.type for op in blockers))
            causes[index] = (
                BLOCKED,
                culprit,
                _user_location(_frames_of_op(blockers[0])),
            )
    return causes


# Ops that read only a tensor's shape: no value flows through them, so they block nothing.
_SHAPE_OPS = frozenset({"Shape", "ShapeN", "Size", "Rank", "VariableShape"})


def _blocking_ops(
    start: Any, targets: list[tf.Tensor], upstream: set[Any]
) -> list[Any]:
    """Ops on the way from start to targets that take a gradient-carrying input but pass none on."""
    order = {op: i for i, op in enumerate(start.graph.get_operations())}
    carries = {
        start.ref()
    }  # tensors that depend differentiably on the variable
    ends = {t.ref() for t in targets}
    blockers = []
    pending = sorted(
        {op for op in start.consumers() if op in upstream},
        key=order.__getitem__,
    )
    queued = set(pending)
    while pending:
        op = pending.pop(0)
        if op.type in _SHAPE_OPS:
            continue
        inputs = [t for t in op.inputs if t.ref() in carries]
        outputs = [
            t
            for t in op.outputs
            if t.ref() in ends or any(c in upstream for c in t.consumers())
        ]
        passed = False
        for out in outputs:
            # tf.gradients answers with the op's registered gradient, the one the tape uses.
            if _is_real_float(out.dtype) and _crosses(out, inputs):
                carries.add(out.ref())
                passed = True
                for consumer in out.consumers():
                    if consumer in upstream and consumer not in queued:
                        queued.add(consumer)
                        pending.append(consumer)
        if not passed:
            blockers.extend(_inside(op, inputs, outputs) or [op])
        # Smallest creation index first is a topological order: producers before consumers.
        pending.sort(key=order.__getitem__)
    return blockers


# Function-calling ops: the attributes naming their bodies, and how many inputs precede the
# body's arguments (tf.cond's condition).
_BODIES = {
    "PartitionedCall": (("f",), 0),
    "StatefulPartitionedCall": (("f",), 0),
    "If": (("then_branch", "else_branch"), 1),
    "StatelessIf": (("then_branch", "else_branch"), 1),
}


def _inside(
    op: Any, inputs: list[tf.Tensor], outputs: list[tf.Tensor]
) -> list[Any]:
    """The blocking ops inside the body of a function-calling op, or [] if it has none to show."""
    if op.type not in _BODIES:
        return []
    attributes, skip = _BODIES[op.type]
    blockers = []
    try:
        for attribute in attributes:
            # A body's FuncGraph is only reachable through the graph's function library.
            body = op.graph._get_function(op.get_attr(attribute).name).graph
            # Positions by identity: == on tensors would build an Equal op.
            targets = [body.outputs[_position(op.outputs, t)] for t in outputs]
            upstream = set().union(*(_ancestors(t) for t in targets))
            for tensor in inputs:
                start = body.inputs[_position(op.inputs, tensor) - skip]
                blockers.extend(_blocking_ops(start, targets, upstream))
    except (
        Exception
    ):  # another TensorFlow version keeps bodies elsewhere: show the call op
        return []
    return list(dict.fromkeys(blockers))


def _position(tensors: Sequence[tf.Tensor], tensor: tf.Tensor) -> int:
    return next(i for i, t in enumerate(tensors) if t is tensor)


def _crosses(output: tf.Tensor, inputs: list[tf.Tensor]) -> bool:
    try:
        return any(g is not None for g in tf.gradients(output, inputs))
    except LookupError:  # an op with no gradient registered at all
        return False


def _find_origins(
    loss_fn: Callable[[], Any], variables: list[Any], broken: list[int]
) -> dict[int, Origin]:
    python_fn = _python_function(loss_fn)
    state: dict[str, Any] = {}

    def probe() -> list[tf.Tensor]:
        loss = tf.convert_to_tensor(python_fn())
        graph = loss.graph
        state["forward"] = {op.name for op in graph.get_operations()}
        handles = [_captured_handle(graph, variables[i]) for i in broken]
        gradients = tf.gradients(loss, [h for h in handles if h is not None])
        by_handle = iter(gradients)
        state["gradients"] = [
            None if h is None else next(by_handle) for h in handles
        ]
        state["ops"] = graph.get_operations()
        # Floats to follow the inf/NaN, booleans to read which side each tf.where chose.
        state["fetched"] = [
            t
            for op in state["ops"]
            for t in op.outputs
            if _is_real_float(t.dtype) or t.dtype == tf.bool
        ]
        return state["fetched"]

    try:
        values = _trace(probe)()
    except (
        Exception
    ):  # the loss does not trace (it leaves TensorFlow): ask check-numerics
        # One eager run stops at the first non-finite op of the whole loss, which is this
        # variable's origin only when no other variable's gradient is broken.
        origin = (
            _eager_origin(python_fn, variables[broken[0]])
            if len(broken) == 1
            else None
        )
        return {} if origin is None else {broken[0]: origin}
    arrays = {
        t.ref(): v.numpy()
        for t, v in zip(state["fetched"], values, strict=True)
    }
    finite = {ref: bool(np.all(np.isfinite(a))) for ref, a in arrays.items()}
    position = {op: i for i, op in enumerate(state["ops"])}
    forward = state["forward"]
    origins = {}
    for index, gradient in zip(broken, state["gradients"], strict=True):
        if isinstance(gradient, tf.IndexedSlices):
            gradient = gradient.values
        if gradient is None or finite.get(gradient.ref(), True):
            continue  # the traced run did not reproduce the non-finite gradient
        born = min(_births(gradient, finite), key=position.__getitem__)
        if born.name in forward:
            origin_op, phase = born, FORWARD
        else:
            origin_op, phase = _forward_op(born, forward, born.graph), BACKWARD
        if origin_op is not None:
            location = _user_location(_frames_of_op(origin_op))
            if phase == FORWARD:
                unselected = _dropped_by_where(born, finite, forward)
            else:
                unselected = _unselected_gradient(
                    origin_op, born, arrays, forward
                )
            origins[index] = Origin(origin_op.type, phase, location, unselected)
    return origins


def _dropped_by_where(
    born: Any, finite: dict[Any, bool], forward: set[str]
) -> bool:
    """Whether a tf.where with a finite result consumed the forward inf/NaN born at `born`."""
    seen, stack = set(), [born]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        for tensor in op.outputs:
            if finite.get(tensor.ref(), True):
                continue
            for consumer in tensor.consumers():
                if consumer.name not in forward:
                    continue
                if consumer.type in ("Select", "SelectV2") and all(
                    finite.get(t.ref(), True) for t in consumer.outputs
                ):
                    return True
                stack.append(consumer)
    return False


def _unselected_gradient(
    origin_op: Any, born: Any, arrays: dict[Any, np.ndarray], forward: set[str]
) -> bool:
    """Whether a backward inf/NaN lies only where a tf.where fed by origin_op chose the other side."""
    bad = [
        ~np.isfinite(arrays[t.ref()]) for t in born.outputs if t.ref() in arrays
    ]
    bad = [mask for mask in bad if mask.any()]
    if not bad:
        return False
    seen, stack = set(), [origin_op]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        for consumer in (c for t in op.outputs for c in t.consumers()):
            if consumer.name not in forward:
                continue
            if consumer.type not in ("Select", "SelectV2"):
                stack.append(consumer)
                continue
            condition, *branches = consumer.inputs
            chosen = arrays.get(condition.ref())
            if chosen is None:
                continue
            shape = arrays[consumer.outputs[0].ref()].shape
            for side, branch in enumerate(branches):
                if branch.op is not op:
                    continue
                # Entries where this branch was dropped: condition False for the first branch.
                dropped = np.broadcast_to(
                    ~chosen if side == 0 else chosen, shape
                )
                # Same shape: the bad entries must all be dropped ones; else any drop will do.
                if all(
                    m.shape == dropped.shape and not (m & ~dropped).any()
                    for m in bad
                ):
                    return True
                if any(m.shape != dropped.shape for m in bad) and dropped.any():
                    return True
    return False


def _eager_origin(python_fn: Callable[[], Any], variable: Any) -> Origin | None:
    """The first op check-numerics stops at while the loss and its gradient run eagerly."""
    # The user's own check-numerics cannot be on here: it would have stopped the first run.
    tf.debugging.enable_check_numerics()
    try:
        with tf.GradientTape() as tape:
            try:
                loss = tf.convert_to_tensor(python_fn())
            except tf.errors.InvalidArgumentError as error:
                return _checked_origin(error, FORWARD)
        try:
            tape.gradient(loss, variable)
        except tf.errors.InvalidArgumentError as error:
            return _checked_origin(error, BACKWARD)
        return None
    except Exception:  # the loss failed for another reason: no origin
        return None
    finally:
        tf.debugging.disable_check_numerics()


def _checked_origin(error: BaseException, phase: str) -> Origin | None:
    frames, lines = _traceback_of(error)
    if phase == FORWARD:
        found = re.search(r'op "(\w+)"', str(error))
        return (
            None
            if found is None
            else Origin(found.group(1), FORWARD, _user_location(lines))
        )
    # The tape calls each op's gradient through one function that knows the forward op type;
    # an eager op keeps no creation stack, so the line stays unknown.
    for frame in frames:
        if (
            frame.f_code.co_name == "_gradient_function"
            and "op_name" in frame.f_locals
        ):
            return Origin(str(frame.f_locals["op_name"]), BACKWARD, None)
    return None


def _births(tensor: Any, finite: dict[Any, bool]) -> list[Any]:
    """The ops behind a non-finite tensor whose own inputs were all finite."""
    births, seen, stack = [], set(), [tensor.op]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        bad = [t.op for t in op.inputs if not finite.get(t.ref(), True)]
        if bad:
            stack.extend(bad)
        else:
            births.append(op)
    return births


def _forward_op(backward_op: Any, forward: set[str], graph: Any) -> Any:
    # tf.gradients builds the gradient of op "a/b/Exp" under the name scope "gradients/a/b/Exp_grad".
    parts = backward_op.name.split("/")[1:]
    for i, part in enumerate(parts):
        if part.endswith("_grad"):
            name = "/".join([*parts[:i], part[: -len("_grad")]])
            if name in forward:
                return graph.get_operation_by_name(name)
    return None


# ---- Values that leave TensorFlow --------------------------------------------------------------

# Methods through which a tensor or variable becomes a Python number or a NumPy array.
_EXITS = {
    "numpy": ".numpy()",
    "__float__": "float()",
    "__int__": "int()",
    "__index__": "int()",
    "__complex__": "complex()",
    "__array__": "NumPy",
}


def _exit_kind(method: str, frames: list[types.FrameType]) -> str:
    """How the value left TensorFlow, e.g. "float()", from the method that ran."""
    if method != "__index__":
        return _EXITS[method]
    # Python falls back to __index__ for float() as well as int() (TF 2.22's graph
    # tensors have no __float__), so the user's line tells which one it was.
    called = set(
        re.findall(r"(?<![\w.])(float|int)\s*\(", _user_source(frames))
    )
    return f"{called.pop()}()" if len(called) == 1 else "int()"


def _traced_exit(
    error: BaseException, variables: list[Any], candidates: list[int]
) -> dict[int, tuple[str, Any, str | None]]:
    """The candidates a failed trace shows leaving TensorFlow: the failing method's tensor."""
    frames, lines = _traceback_of(error)
    owner = frames[-1].f_locals.get("self") if frames else None
    methods = [f.f_code.co_name for f in frames if f.f_code.co_name in _EXITS]
    if methods:
        kind = _exit_kind(methods[0], frames)
    elif isinstance(error, AttributeError) and "numpy" in str(error):
        kind = _EXITS["numpy"]  # a graph tensor has no .numpy() at all
    else:
        return {}
    # np.mean is what the user wrote; a .numpy() may sit inside a library call the user wrote.
    kind = (
        _numpy_function(frames) if kind == "NumPy" else _user_call(frames, kind)
    )
    if isinstance(owner, tf.Tensor) and hasattr(owner, "graph"):
        if not _is_real_float(owner.dtype):
            return {}
        graph = owner.graph
        handles = [_captured_handle(graph, variables[i]) for i in candidates]
        with graph.as_default():
            depends = [
                h is not None and tf.gradients(owner, h)[0] is not None
                for h in handles
            ]
    elif isinstance(owner, (tf.Variable, keras.Variable)):
        depends = [_handle(owner) is _handle(variables[i]) for i in candidates]
    else:
        return {}
    location = _user_location(lines)
    return {
        i: (LEFT_TENSORFLOW, kind, location)
        for i, hit in zip(candidates, depends, strict=True)
        if hit
    }


def _find_exits(
    python_fn: Callable[[], Any], variables: list[Any], candidates: list[int]
) -> dict[int, tuple[str, Any, str | None]]:
    if sys.getprofile() is not None:
        return {}  # a profiler is active: do not replace its hook
    exits: list[tuple[Any, str, list[types.FrameType]]] = []

    def hook(frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_name in _EXITS:
            owner = frame.f_locals.get("self")
            if isinstance(owner, (tf.Tensor, tf.Variable, keras.Variable)):
                exits.append((owner, frame.f_code.co_name, _stack(frame)))

    targets = [variables[i] for i in candidates]
    with tf.GradientTape(persistent=True) as tape:
        sys.setprofile(hook)
        try:
            python_fn()
        except (
            Exception
        ):  # the loss already ran once; a second failure says nothing
            return {}
        finally:
            sys.setprofile(None)
    causes: dict[int, tuple[str, Any, str | None]] = {}
    for owner, method, frames in exits:
        if isinstance(owner, tf.Tensor):
            if not _is_real_float(owner.dtype):
                continue
            depends = [g is not None for g in tape.gradient(owner, targets)]
        else:
            depends = [_handle(owner) is _handle(v) for v in targets]
        for index, hit in zip(candidates, depends, strict=True):
            if hit and index not in causes:
                kind = _exit_kind(method, frames)
                kind = (
                    _numpy_function(frames)
                    if kind == "NumPy"
                    else _user_call(frames, kind)
                )
                causes[index] = (LEFT_TENSORFLOW, kind, _user_location(frames))
    del tape
    return causes


def _traceback_of(
    error: BaseException,
) -> tuple[list[types.FrameType], list[tuple[str, int]]]:
    """The frames of an exception's traceback, outermost first, and the line each was at."""
    frames, lines = [], []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        lines.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return frames, lines


def _stack(frame: types.FrameType | None) -> list[types.FrameType]:
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames[::-1]


def _numpy_function(frames: list[types.FrameType]) -> str:
    # The outermost NumPy frame is the function the user called, e.g. np.mean.
    numpy_dir = os.path.dirname(np.__file__) + os.sep
    for frame in frames:
        if frame.f_code.co_filename.startswith(numpy_dir):
            return f"np.{frame.f_code.co_name}"
    return "NumPy"


# ---- Which frame is the user's ------------------------------------------------------------------

# Packages whose frames are never the user's code: TensorFlow, Keras and what they call through.
_LIBRARIES = (
    "tensorflow",
    "keras",
    "tf_keras",
    "numpy",
    "optree",
    "tree",
    "absl",
    "wrapt",
)
_THIS_FILE = os.path.abspath(__file__)


def _library_dirs() -> tuple[str, ...]:
    dirs = []
    for name in _LIBRARIES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            dirs.append(os.path.dirname(os.path.abspath(path)) + os.sep)
    return tuple(dirs)


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(
        {os.path.abspath(paths[k]) + os.sep for k in ("stdlib", "platstdlib")}
    )


def _frames_of_op(op: Any) -> list[tuple[str, int]]:
    try:
        return [(frame.filename, frame.lineno) for frame in op.traceback]
    except Exception:  # a graph without creation stacks has no location
        return []


def _pairs(frames: Iterable[Any]) -> list[tuple[str, int]]:
    return [
        (f.f_code.co_filename, f.f_lineno)
        if isinstance(f, types.FrameType)
        else f
        for f in frames
    ]


def _user_index(pairs: list[tuple[str, int]]) -> int | None:
    """Index of the innermost user frame of the loss in pairs, given outermost first."""
    # Frames outside this module's innermost frame are the caller of diagnose, not the loss.
    ours = [
        i
        for i, (filename, _) in enumerate(pairs)
        if os.path.abspath(filename) == _THIS_FILE
    ]
    first = ours[-1] + 1 if ours else 0
    libraries, stdlib = _library_dirs(), _stdlib_dirs()
    for index in range(len(pairs) - 1, first - 1, -1):
        filename = pairs[index][0]
        path = os.path.abspath(filename)
        in_stdlib = path.startswith(stdlib) and "-packages" + os.sep not in path
        generated = "__autograph_generated_file" in path or filename.startswith(
            "<frozen"
        )
        if not (path.startswith(libraries) or in_stdlib or generated):
            return index
    return None


def _user_location(frames: Iterable[Any]) -> str | None:
    """'file.py:LINE' of the innermost user frame of the loss; frames are given outermost first."""
    pairs = _pairs(frames)
    index = _user_index(pairs)
    if index is None:
        return None
    filename, lineno = pairs[index]
    return f"{_notebook_cell(filename) or os.path.basename(filename)}:{lineno}"


def _user_source(frames: list[types.FrameType]) -> str:
    """The source line of the innermost user frame, or "" where there is none."""
    pairs = _pairs(frames)
    index = _user_index(pairs)
    return "" if index is None else linecache.getline(*pairs[index])


def _user_call(frames: list[types.FrameType], conversion: str) -> str:
    """The call on the user's line that converted, e.g. "model.predict() through .numpy()"."""
    pairs = _pairs(frames)
    index = _user_index(pairs)
    if (
        index is None
        or index >= len(frames) - 1
        or frames[index + 1].f_code.co_name in _EXITS
    ):
        return conversion  # the user's line converts the value itself
    source = _user_source(frames)
    # The first library function that the user's line names is the call the user wrote.
    for frame in frames[index + 1 :]:
        found = re.search(
            rf"([\w.]*\b{re.escape(frame.f_code.co_name)})\s*\(", source
        )
        if found:
            return f"{found.group(1)}() through {conversion}"
    return conversion


def _notebook_cell(filename: str) -> str | None:
    # IPython names a cell's code after a temporary file; its own tracebacks say "In[N]".
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    try:
        label = shell.compile.format_code_name(filename)
    except Exception:  # not IPython, or an IPython without the helper
        return None
    return label[1] if label else None


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
            culprits = "; ".join(f"{r.name}: {r.describe()}" for r in bad)
            raise GradientError(
                f"gradient check at {moment} failed for {culprits}\n{report.table()}"
            )
        return report

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._batches_seen = 0
        self.check("train begin")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._batches_seen += 1
        if (
            self.every_n_batches
            and self._batches_seen % self.every_n_batches == 0
        ):
            self.check(f"batch {self._batches_seen}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.check(f"end of epoch {epoch + 1}")
