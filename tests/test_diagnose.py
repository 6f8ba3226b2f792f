"""gradclinic.diagnose: statuses, causes and origins, the report, and the callback that stops fit."""

import inspect
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from gradclinic.bump import BrokenBumpLayer, BumpLayer, bump_double_where, bump_naive
from gradclinic.data import make_bump_data
from gradclinic.diagnose import (
    BACKWARD,
    BLOCKED,
    FORWARD,
    HEALTHY,
    INTEGER,
    LEFT_TENSORFLOW,
    NONFINITE,
    NOT_CONNECTED,
    UNUSED,
    ZERO,
    GradientCheck,
    GradientError,
    GradientRecord,
    Origin,
    _exit_kind,
    _traceback_of,
    diagnose,
    diagnose_loss,
)


def bump_model(guard="double_where", sigma=0.5):
    return keras.Sequential([keras.Input(shape=(1,)), BumpLayer(guard, initial_sigma=sigma)])


def line_of(function, text):
    """'file.py:LINE' of the first line of function's source that contains text."""
    lines, first = inspect.getsourcelines(function)
    found = [first + i for i, line in enumerate(lines) if text in line]
    assert found, f"{text!r} is not in the source of {function.__name__}"
    return f"{os.path.basename(inspect.getsourcefile(function))}:{found[0]}"


def test_broken_layer_is_not_connected_because_only_a_comparison_reads_the_threshold():
    x, y = make_bump_data(0.5, 10)
    model = keras.Sequential([keras.Input(shape=(1,)), BrokenBumpLayer()])
    report = diagnose(model, x[:1], y[:1], loss="mse")
    assert [r.status for r in report] == [NOT_CONNECTED]
    assert report[0].norm is None and not report.ok
    assert report.status("threshlevel") == NOT_CONNECTED
    # The weight is read, but only by tf.math.less, whose bool output decides tf.cond.
    record = report.record("threshlevel")
    assert (record.cause, record.culprit) == (BLOCKED, ("Less",))
    assert record.location == line_of(BrokenBumpLayer.call, "tf.math.less")
    assert record.why == (
        f"blocked by Less (a comparison), which passes no gradient back (at {record.location})"
    )


def test_fixed_layer_is_healthy_with_the_right_norm():
    x, y = make_bump_data(0.5, 64)
    model = bump_model("double_where", 0.4)
    report = diagnose(model, x, y, loss="mse")
    sigma = model.layers[-1].sigma
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - y))
    expected = float(tf.norm(tape.gradient(loss, sigma)))
    assert report.status("sigma") == HEALTHY and report.ok
    assert report.record("sigma").norm == pytest.approx(expected, rel=1e-5)
    assert report.loss == pytest.approx(float(loss), rel=1e-6)


def test_naive_layer_next_to_the_singularity_is_nonfinite_born_in_the_forward_exp():
    model = bump_model("naive", 0.5)
    report = diagnose(model, np.array([[0.709]], np.float32), np.zeros((1, 1), np.float32), "mse")
    record = report.record("sigma")
    assert record.status == NONFINITE and record.nonfinite == 1 and np.isnan(record.norm)
    assert report.problems() == [record]
    # x = 0.709 is outside (-0.5, 0.5): tf.where drops exp(-0.5 / (0.5 - 0.709^2)) ~ exp(186),
    # which is inf in float32; its gradient 0 * inf is the NaN.
    where = line_of(bump_naive, "tf.exp")
    assert record.origin == Origin("Exp", FORWARD, where)
    assert record.origin.unselected  # the inf sits in the branch tf.where discards
    assert record.location == where and record.cause is None
    assert record.why == (
        f"Exp overflowed in the forward pass at {where}, in a branch tf.where did not select; "
        "tf.where's zero gradient times inf is NaN: also pass the op a safe input with a second "
        "tf.where (the double where)"
    )


def test_no_point_inside_the_bump_gives_zero_not_none():
    model = bump_model("naive", 0.01)
    x = np.array([[0.5], [-0.7]], np.float32)
    report = diagnose(model, x, np.zeros_like(x), "mse")
    assert report.status("sigma") == ZERO and report.record("sigma").norm == 0.0
    assert report.ok  # zero is not a problem by default
    assert report.problems([ZERO]) == [report.record("sigma")]


def test_an_unbuilt_subclassed_model_is_built_on_the_batch():
    class Scale(keras.Model):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(1,), initializer="ones", name="w")

        def call(self, x):
            return self.w * x

    model = Scale()
    x = np.ones((4, 1), np.float32)
    report = diagnose(model, x, 2 * x, loss="mse")
    assert [(r.name.rsplit("/", 1)[-1], r.status) for r in report] == [("w", HEALTHY)]
    # d/dw mean((w x - 2x)^2) at w = 1, x = 1: 2 (1 - 2) = -2
    assert report[0].norm == pytest.approx(2.0)


def test_compiled_model_uses_its_own_loss():
    x, y = make_bump_data(0.5, 32)
    model = bump_model("stable", 0.3)
    model.compile(optimizer="adam", loss="mae")
    expected = float(tf.reduce_mean(tf.abs(model(x) - y)))
    assert diagnose(model, x, y).loss == pytest.approx(expected, rel=1e-6)


def test_diagnose_loss_with_plain_variables_and_all_four_statuses():
    used = tf.Variable([1.0, 2.0], name="used")
    zero = tf.Variable(3.0, name="zero")
    unused = tf.Variable(4.0, name="unused")
    bad = tf.Variable(-1.0, name="bad")
    report = diagnose_loss(
        lambda: tf.reduce_sum(used**2) + 0.0 * zero + tf.sqrt(bad), [used, zero, unused, bad]
    )
    assert [r.status for r in report] == [HEALTHY, ZERO, NOT_CONNECTED, NONFINITE]
    assert report[0].norm == pytest.approx(np.hypot(2.0, 4.0))
    assert report.record("used").shape == (2,)


def test_table_lists_every_variable_with_status_and_norm():
    used = tf.Variable([3.0, 4.0], name="weights")
    unused = tf.Variable(1.0, name="lonely")
    text = repr(diagnose_loss(lambda: tf.reduce_sum(used * used) / 2, [used, unused]))
    lines = text.splitlines()
    assert lines[0].split() == ["variable", "shape", "gradient", "norm"]
    assert lines[1].split() == ["weights:0", "(2,)", "healthy", "5"]
    assert lines[2].split() == ["lonely:0", "()", "None", "(not", "connected)", "-"]
    assert lines[3] == "  why: the loss never reads it"
    assert lines[4] == "loss: 12.5"


def test_record_size_and_frozen():
    record = GradientRecord("w", (3, 4), HEALTHY, 1.0, 0)
    assert record.size == 12
    with pytest.raises(AttributeError):
        record.status = ZERO


def test_bad_arguments_raise_value_errors_naming_them():
    model = bump_model()
    x = np.zeros((2, 1), np.float32)
    with pytest.raises(ValueError, match=r"model must be a keras\.Model"):
        diagnose("not a model", x, x, "mse")
    with pytest.raises(ValueError, match="loss must be given"):
        diagnose(model, x, x)
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        diagnose_loss(lambda: tf.ones(3), [tf.Variable(1.0)])
    with pytest.raises(ValueError, match="loss_fn must be a callable"):
        diagnose_loss(tf.constant(1.0), [tf.Variable(1.0)])
    with pytest.raises(ValueError, match="variables must hold at least one variable"):
        diagnose_loss(lambda: tf.constant(1.0), [])
    with pytest.raises(ValueError, match=r"variables must hold tf.Variable .* at index 1"):
        diagnose_loss(lambda: tf.constant(1.0), [tf.Variable(1.0), tf.constant(2.0)])
    with pytest.raises(ValueError, match="name must identify one variable; no variable"):
        diagnose(model, x, x, "mse").record("kernel")
    with pytest.raises(ValueError, match="statuses must be a sequence of"):
        diagnose(model, x, x, "mse").problems(["broken"])
    with pytest.raises(ValueError, match="every_n_batches must be None or an int >= 1"):
        GradientCheck(x, x, every_n_batches=0)


def test_callback_stops_the_broken_model_before_keras_and_names_the_variable():
    x, y = make_bump_data(0.5, 32)
    model = keras.Sequential([keras.Input(shape=(1,)), BrokenBumpLayer()])
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(GradientError, match=r"at train begin failed for .*threshlevel: None"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[GradientCheck(x[:1], y[:1])])


def test_callback_stops_when_sigma_turns_nan_during_fit():
    x, y = make_bump_data(0.5, 1000)
    model = bump_model("naive", 0.1)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    check = GradientCheck(x[:64], y[:64], every_n_batches=1)
    with pytest.raises(GradientError, match=r"at batch \d+ failed for .*sigma: non-finite"):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[check])
    assert check.reports[0][0] == "train begin" and check.reports[0][1].ok
    assert not check.reports[-1][1].ok


def test_callback_lets_a_healthy_fit_finish_and_keeps_its_reports():
    x, y = make_bump_data(0.5, 128)
    model = bump_model("double_where", 0.3)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    check = GradientCheck(x[:32], y[:32])
    model.fit(x, y, epochs=2, verbose=0, callbacks=[check])
    assert [moment for moment, _ in check.reports] == [
        "train begin",
        "end of epoch 1",
        "end of epoch 2",
    ]
    assert all(report.ok for _, report in check.reports)


# ---- Why a gradient is None: one patient per cause ------------------------------------------


def only(report, name):
    record = report.record(name)
    return record.status, record.cause, record.culprit, record.location


def test_a_variable_the_loss_never_reads_is_unused():
    used, unused = tf.Variable(1.0, name="used"), tf.Variable(2.0, name="unused")
    report = diagnose_loss(lambda: 3.0 * used, [used, unused])
    assert only(report, "unused") == (NOT_CONNECTED, UNUSED, None, None)
    assert report.record("used").cause is None and report.record("used").culprit is None


def test_an_integer_variable_cannot_carry_a_gradient():
    w, count = tf.Variable(1.0, name="w"), tf.Variable(3, name="count")
    report = diagnose_loss(lambda: w * tf.cast(count, tf.float32), [w, count])
    assert only(report, "count") == (NOT_CONNECTED, INTEGER, "int32", None)
    assert report.status("w") == HEALTHY


def blocked_by_cast(v, w):
    return tf.cast(tf.cast(v, tf.int32), tf.float32) * w


def blocked_by_argmax(v, w):
    return tf.cast(tf.argmax(tf.stack([v, w])), tf.float32) * w


def blocked_by_round(v, w):
    return tf.round(v) * w


def blocked_by_stop_gradient(v, w):
    return tf.stop_gradient(v) * w


def blocked_by_a_comparison_in_tf_where(v, w):
    return tf.where(v > 1.0, w, 2.0 * w)


def left_by_numpy(v, w):
    return tf.constant(v.numpy()) * w


def left_by_tensor_numpy(v, w):
    return tf.constant((2.0 * v).numpy()) * w


def left_by_float(v, w):
    return float(v * 2.0) * w


def left_by_np_mean(v, w):
    return tf.constant(np.mean(v * 2.0)) * w


# A path through an op without a gradient is blocked; a value taken out of TensorFlow has left it.
@pytest.mark.parametrize(
    ("loss", "cause", "culprit", "text"),
    [
        (blocked_by_cast, BLOCKED, ("Cast",), "tf.int32"),
        (blocked_by_argmax, BLOCKED, ("ArgMax",), "tf.argmax"),
        (blocked_by_round, BLOCKED, ("Round",), "tf.round"),
        (blocked_by_stop_gradient, BLOCKED, ("StopGradient",), "tf.stop_gradient"),
        (blocked_by_a_comparison_in_tf_where, BLOCKED, ("Greater",), "v > 1.0"),
        (left_by_numpy, LEFT_TENSORFLOW, ".numpy()", "numpy()"),
        (left_by_tensor_numpy, LEFT_TENSORFLOW, ".numpy()", "numpy()"),
        (left_by_float, LEFT_TENSORFLOW, "float()", "return float"),
        (left_by_np_mean, LEFT_TENSORFLOW, "np.mean", "np.mean"),
    ],
)
def test_the_cause_and_culprit_of_a_lost_path_are_named(loss, cause, culprit, text):
    v, w = tf.Variable(2.0, name="v"), tf.Variable(3.0, name="w")
    report = diagnose_loss(lambda: loss(v, w), [v, w])
    assert only(report, "v") == (NOT_CONNECTED, cause, culprit, line_of(loss, text))
    assert report.status("w") == HEALTHY


def leaves_with_w_and_rounds_v(v, w):
    return 3.0 * w + tf.constant((2.0 * w).numpy()) + tf.round(v)


def test_a_cause_that_cannot_be_decided_is_unknown_not_guessed():
    # The trace stops at w's .numpy(), before tf.round(v) exists: nothing shows why v is None.
    v, w = tf.Variable(2.0, name="v"), tf.Variable(3.0, name="w")
    report = diagnose_loss(lambda: leaves_with_w_and_rounds_v(v, w), [v, w])
    assert only(report, "v") == (NOT_CONNECTED, None, None, None)
    assert report.record("v").why == "cause unknown"
    assert report.status("w") == HEALTHY


class NumpyScale(keras.layers.Layer):
    """Scales after a round trip through NumPy, which cuts the gradient; shifts in TensorFlow."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(1,), initializer="ones", name="scale")
        self.shift = self.add_weight(shape=(1,), initializer="ones", name="shift")

    def call(self, inputs):
        return inputs * tf.constant(self.scale.numpy()) + self.shift


class NumpyMeanScale(NumpyScale):
    """The same, through np.mean inside the layer (Keras filters the traceback of layer errors)."""

    def call(self, inputs):
        return inputs * tf.constant(np.mean(self.scale * 2.0)) + self.shift


class FloatScaleModel(keras.Model):
    """A subclassed model that scales by float() of a tensor, which Keras builds only eagerly."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(1,), initializer="ones", name="scale")
        self.shift = self.add_weight(shape=(1,), initializer="ones", name="shift")

    def call(self, inputs):
        return inputs * float(self.scale[0] * 2.0) + self.shift


@pytest.mark.parametrize(
    ("make_model", "function", "culprit", "text"),
    [
        (
            lambda: keras.Sequential([keras.Input((1,)), NumpyScale()]),
            NumpyScale.call,
            ".numpy()",
            "numpy()",
        ),
        (
            lambda: keras.Sequential([keras.Input((1,)), NumpyMeanScale()]),
            NumpyMeanScale.call,
            "np.mean",
            "np.mean",
        ),
        (FloatScaleModel, FloatScaleModel.call, "float()", "float("),
    ],
)
def test_a_keras_layer_that_leaves_tensorflow_is_reported_at_its_line(
    make_model, function, culprit, text
):
    x, y = make_bump_data(0.5, 16)
    report = diagnose(make_model(), x, y, loss="mse")
    assert only(report, "scale") == (
        NOT_CONNECTED,
        LEFT_TENSORFLOW,
        culprit,
        line_of(function, text),
    )
    assert report.status("shift") == HEALTHY


def test_a_tf_function_loss_and_python_control_flow_are_analysed_too():
    v, w = tf.Variable(2.0, name="v"), tf.Variable(3.0, name="w")
    compiled = tf.function(lambda: blocked_by_round(v, w))
    assert only(diagnose_loss(compiled, [v, w]), "v")[1:3] == (BLOCKED, ("Round",))

    def python_if():
        if v > 1.0:  # eagerly a Python bool; traced, autograph makes it a tf.cond on Greater
            return 2.0 * w
        return w

    report = diagnose_loss(python_if, [v, w])
    assert only(report, "v") == (NOT_CONNECTED, BLOCKED, ("Greater",), line_of(python_if, "if v"))


def rounds_in_both_branches(v, w):
    return tf.cond(v > 0.0, lambda: tf.round(v) * w, lambda: 2.0 * tf.round(v) * w)


def test_a_block_inside_a_nested_tf_function_or_tf_cond_is_found_inside_it():
    inner = tf.function(blocked_by_cast)
    v, w = tf.Variable(2.0, name="v"), tf.Variable(3.0, name="w")
    report = diagnose_loss(lambda: inner(v, w), [v, w])
    assert only(report, "v") == (
        NOT_CONNECTED,
        BLOCKED,
        ("Cast",),
        line_of(blocked_by_cast, "tf.int32"),
    )
    # Traced, tf.cond becomes one op with a body per branch: v reaches the loss through the
    # condition (Greater) and through Round in each branch.
    report = diagnose_loss(tf.function(lambda: rounds_in_both_branches(v, w)), [v, w])
    record = report.record("v")
    assert (record.cause, record.culprit) == (BLOCKED, ("Greater", "Round"))
    assert record.location == line_of(rounds_in_both_branches, "tf.cond")


# ---- Where a NaN is born ----------------------------------------------------------------------


def sqrt_at_zero(z, w):
    return tf.sqrt(z) + w


def log_of_negative(z, w):
    return tf.math.log(z - 1.0) * w


def test_sqrt_at_zero_is_finite_forward_and_inf_backward():
    z, w = tf.Variable(0.0, name="z"), tf.Variable(1.0, name="w")
    report = diagnose_loss(lambda: sqrt_at_zero(z, w), [z, w])
    record = report.record("z")
    # d sqrt(z)/dz = 1 / (2 sqrt(z)) = inf at z = 0, while sqrt(0) = 0 is finite.
    assert (record.status, record.norm) == (NONFINITE, np.inf)
    assert record.origin == Origin("Sqrt", BACKWARD, line_of(sqrt_at_zero, "tf.sqrt"))
    assert report.record("w").culprit is None


def test_a_forward_nan_is_the_origin_of_the_gradients_it_reaches_and_only_those():
    z, w = tf.Variable(0.5, name="z"), tf.Variable(2.0, name="w")
    report = diagnose_loss(lambda: log_of_negative(z, w), [z, w])
    # log(z - 1) is NaN at z = 0.5, so d/dw = log(z - 1) is NaN; d/dz = w / (z - 1) = -4 is not.
    origin = Origin("Log", FORWARD, line_of(log_of_negative, "tf.math.log"))
    assert [(r.status, r.culprit) for r in report] == [(HEALTHY, None), (NONFINITE, origin)]
    assert not report.record("w").origin.unselected  # the NaN is the loss itself
    assert report.record("z").norm == pytest.approx(4.0)


# The where trap in its common forms: each op is inf or NaN (or has an infinite derivative)
# only at an entry tf.where does not select, yet the gradient there is 0 * inf = NaN.
def reciprocal_where(a):
    return tf.reduce_sum(tf.where(a > 0, 1.0 / a, tf.zeros_like(a)))


def log_where(a):
    return tf.reduce_sum(tf.where(a > 0, tf.math.log(a), tf.zeros_like(a)))


def sqrt_of_negative_where(a):
    return tf.reduce_sum(tf.where(a > 0, a * tf.sqrt(a), tf.zeros_like(a)))


def pow_where(a):
    return tf.reduce_sum(tf.where(a > 0, tf.pow(a, 0.5), tf.zeros_like(a)))


def pow_of_negative_where(a):
    return tf.reduce_sum(tf.where(a > 0, tf.pow(a, 1.5), tf.zeros_like(a)))


@pytest.mark.parametrize(
    ("loss", "at", "op", "phase", "text"),
    [
        (reciprocal_where, 0.0, "RealDiv", BACKWARD, "1.0 / a"),
        (log_where, 0.0, "Log", BACKWARD, "tf.math.log"),
        (sqrt_of_negative_where, -1.0, "Sqrt", FORWARD, "tf.sqrt"),
        (pow_where, 0.0, "Pow", BACKWARD, "tf.pow"),
        (pow_of_negative_where, -1.0, "Pow", BACKWARD, "tf.pow"),
    ],
)
def test_an_inf_in_a_branch_tf_where_did_not_select_is_named_with_its_fix(
    loss, at, op, phase, text
):
    a = tf.Variable([at, 4.0], name="a")
    report = diagnose_loss(lambda: loss(a), [a])
    record = report.record("a")
    assert (record.status, record.nonfinite) == (NONFINITE, 1)
    assert report.loss == pytest.approx(float(loss(tf.constant([0.0, 4.0]))))  # finite loss
    assert record.origin == Origin(op, phase, line_of(loss, text))
    assert record.origin.unselected
    assert "tf.where did not select" in record.why
    assert "second tf.where (the double where)" in record.why
    # The printed why-line wraps at 80 columns and keeps every word.
    lines = str(report).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  why: "))
    end = next(i for i, line in enumerate(lines) if i > start and not line.startswith(" " * 7))
    wrapped = lines[start:end]
    assert all(len(line) <= 80 for line in wrapped) and len(wrapped) > 1
    assert " ".join(line.strip() for line in wrapped) == f"why: {record.why}"


def test_an_inf_that_tf_where_selects_is_not_the_where_trap():
    a = tf.Variable([0.0, 4.0], name="a")
    report = diagnose_loss(
        lambda: tf.reduce_sum(tf.where(a >= 0, tf.math.log(a), tf.zeros_like(a))), [a]
    )
    record = report.record("a")
    # log(0) = -inf is selected: the loss itself is -inf, and no second tf.where helps.
    assert record.status == NONFINITE and report.loss == -np.inf
    assert not record.origin.unselected and "tf.where" not in record.why


def test_the_bump_as_a_function_of_a_plain_variable_has_the_same_origin_as_the_layer():
    sigma = tf.Variable(0.5, name="sigma")
    x = tf.constant([[0.709]])
    record = diagnose_loss(lambda: tf.reduce_sum(bump_naive(x, sigma)), [sigma]).record("sigma")
    assert record.origin == Origin("Exp", FORWARD, line_of(bump_naive, "tf.exp"))


def test_the_guarded_bump_is_healthy_so_nothing_is_searched():
    calls = []
    sigma = tf.Variable(0.5, name="sigma")
    x = tf.constant([[0.709], [0.2]])

    def loss():
        calls.append(1)
        return tf.reduce_sum(bump_double_where(x, sigma))

    report = diagnose_loss(loss, [sigma])
    assert report.ok and report.record("sigma").culprit is None
    assert len(calls) == 1  # the healthy path runs the loss once, no tracing


# ---- The report's text ------------------------------------------------------------------------


def test_the_report_explains_each_problem_under_its_row_in_plain_words():
    v, w = tf.Variable(2.0, name="v"), tf.Variable(3.0, name="w")
    z = tf.Variable(0.0, name="z")
    report = diagnose_loss(lambda: left_by_numpy(v, w) + sqrt_at_zero(z, w), [v, w, z])
    exit_line = line_of(left_by_numpy, "numpy()")
    assert report.record("v").describe() == (
        f"None (not connected) — left TensorFlow (.numpy() at {exit_line})"
    )
    # The loss does not trace, so the origin comes from check-numerics in an eager run, where
    # an op keeps no creation stack: the op is known, the line is not.
    assert report.record("z").culprit == Origin("Sqrt", BACKWARD, None)
    assert report.record("z").describe() == (
        "non-finite (1 of 1) — the gradient of Sqrt turned inf or NaN in the backward pass, "
        "although the op's inputs are finite (at an unknown line)"
    )
    lines = str(report).splitlines()
    assert lines[1].split()[:2] == ["v:0", "()"] and lines[2] == f"  why: {report[0].why}"
    assert lines[3].split()[:3] == ["w:0", "()", "healthy"]
    assert lines[4].split()[:2] == ["z:0", "()"]
    # A why-line longer than 80 columns continues on lines indented under its first word.
    assert f"{lines[5]} {lines[6].strip()}" == f"  why: {report[2].why}"
    assert lines[6].startswith(" " * 7) and max(map(len, lines[5:7])) <= 80
    assert lines[7].startswith("loss: ")


def test_the_callback_error_carries_the_origin():
    x = np.array([[0.709]], np.float32)
    y = np.zeros((1, 1), np.float32)
    model = bump_model("naive", 0.5)
    model.compile(optimizer="adam", loss="mse")
    where = line_of(bump_naive, "tf.exp")
    expected = f"non-finite (1 of 1) — Exp overflowed in the forward pass at {where}"
    with pytest.raises(GradientError, match=r"at train begin failed for .*sigma: ") as caught:
        model.fit(x, y, epochs=1, verbose=0, callbacks=[GradientCheck(x, y)])
    assert expected in str(caught.value).splitlines()[0]
    assert f"  why: Exp overflowed in the forward pass at {where}" in str(caught.value)


# ---- No global state left behind --------------------------------------------------------------


def assert_no_global_state():
    assert sys.getprofile() is None
    assert keras.config.is_traceback_filtering_enabled()
    assert tf.executing_eagerly() and not tf.config.functions_run_eagerly()
    # With tf.debugging.enable_check_numerics still on, log(0) = -inf would raise.
    assert float(tf.math.log(tf.constant(0.0))) == -np.inf


def test_the_cause_search_leaves_no_global_state_even_when_the_loss_raises():
    v, w = tf.Variable(2.0, name="v"), tf.Variable(3.0, name="w")
    runs = []

    def fails_after_the_first_run():
        runs.append(1)
        if len(runs) > 1:
            raise RuntimeError("the second run fails")
        return float(v * 2.0) * w

    report = diagnose_loss(fails_after_the_first_run, [v, w])
    assert report.record("v").cause is None and len(runs) > 1
    assert_no_global_state()
    diagnose_loss(lambda: left_by_float(v, w) + sqrt_at_zero(tf.Variable(0.0), w), [v, w])
    assert_no_global_state()
    with pytest.raises(RuntimeError, match="always"):
        diagnose_loss(lambda: (_ for _ in ()).throw(RuntimeError("always")), [v])
    assert_no_global_state()


def test_a_profiler_already_installed_is_kept():
    def profiler(frame, event, arg):
        return None

    v, w = tf.Variable(2.0, name="v"), tf.Variable(3.0, name="w")
    sys.setprofile(profiler)
    try:
        report = diagnose_loss(lambda: left_by_float(v, w), [v, w])
        assert sys.getprofile() is profiler
    finally:
        sys.setprofile(None)
    # Up to TF 2.21 only the profile hook, which must not replace the user's, sees float() of
    # a tensor; from 2.22 the failed trace shows it too (a graph tensor's __index__ raises).
    record = report.record("v")
    seen = (record.cause, record.conversion)
    assert seen in ((None, None), (LEFT_TENSORFLOW, "float()"))


class _NotANumber:
    def __index__(self) -> int:
        raise TypeError("not a number")


def _converted_by(convert) -> str:
    try:
        convert(_NotANumber())
    except TypeError as error:
        frames, _ = _traceback_of(error)
    # Without the __index__ frame, as when it is TensorFlow's: the user's line is the last.
    return _exit_kind("__index__", frames[:-1])


def test_a_conversion_through_index_is_named_after_the_builtin_on_the_users_line():
    assert _converted_by(lambda value: float(value)) == "float()"
    assert _converted_by(lambda value: int(value)) == "int()"


def overflows_and_leaves(w, runs):
    runs.append(1)
    if len(runs) > 2:  # the eager run under check-numerics is the third
        raise RuntimeError("the third run fails")
    return tf.exp(100.0 * w) * tf.constant(tf.reduce_sum(tf.ones(2)).numpy())


def test_check_numerics_finds_the_origin_of_a_loss_that_does_not_trace_and_is_switched_off():
    w = tf.Variable(1.0, name="w")
    runs = []
    first = diagnose_loss(lambda: overflows_and_leaves(w, []), [w]).record("w")
    # exp(100) overflows float32 in the forward pass; the traced search cannot run (.numpy()).
    assert first.culprit == Origin("Exp", FORWARD, line_of(overflows_and_leaves, "tf.exp"))
    assert_no_global_state()
    second = diagnose_loss(lambda: overflows_and_leaves(w, runs), [w]).record("w")
    assert len(runs) == 3 and second.status == NONFINITE and second.culprit is None
    assert second.why == "cause unknown"
    assert_no_global_state()


def test_a_conversion_inside_a_library_call_names_the_call_the_user_wrote():
    from gradclinic import patients

    x, y = patients.regression_batch()
    model = patients.relu_regressor()
    report = diagnose_loss(
        lambda: patients.loss_from_predict(model, x, y), model.trainable_variables
    )
    where = line_of(patients.loss_from_predict, "model.predict(")
    for record in report:
        # The .numpy() is Keras' own, inside predict: the user wrote model.predict.
        assert (record.cause, record.conversion, record.location) == (
            LEFT_TENSORFLOW,
            "model.predict() through .numpy()",
            where,
        )
        assert record.why == f"left TensorFlow (model.predict() through .numpy() at {where})"


def test_each_cause_fills_its_own_typed_field_and_leaves_the_others_none():
    v = tf.Variable(2.0, name="v")
    w = tf.Variable(3.0, name="w")
    n = tf.Variable(3, name="n", trainable=True)
    z = tf.Variable(0.0, name="z")

    def traced_loss():
        cut = tf.cast(tf.cast(v, tf.int32), tf.float32)
        return cut + tf.cast(n, tf.float32) + tf.math.log(z)

    # A value that leaves TensorFlow stops the trace, so it gets a loss of its own.
    report = [*diagnose_loss(traced_loss, [v, n, z]), *diagnose_loss(lambda: w.numpy() * v, [w])]
    fields = ("blocked_by", "conversion", "dtype", "origin")
    typed = {r.name.split(":")[0]: {f: getattr(r, f) for f in fields} for r in report}
    assert typed["v"] == {
        "blocked_by": ("Cast",),
        "conversion": None,
        "dtype": None,
        "origin": None,
    }
    assert typed["w"] == {
        "blocked_by": None,
        "conversion": ".numpy()",
        "dtype": None,
        "origin": None,
    }
    assert typed["n"] == {"blocked_by": None, "conversion": None, "dtype": "int32", "origin": None}
    assert typed["z"]["origin"].op_type == "Log" and typed["z"]["blocked_by"] is None
    # culprit, kept for older pages, is whichever typed field applies.
    assert [r.culprit for r in report] == [("Cast",), "int32", typed["z"]["origin"], ".numpy()"]


def test_a_weight_reached_only_through_its_regulariser_has_one_status_with_or_without_loss():
    class Penalised(keras.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(1,), initializer="ones", name="scale")
            # Never used in call: only its L2 penalty reaches the loss.
            self.spare = self.add_weight(
                shape=(1,), initializer="ones", regularizer=keras.regularizers.L2(0.5), name="spare"
            )

        def call(self, x):
            return self.scale * x

    model = keras.Sequential([keras.Input((1,)), Penalised()])
    model.compile(loss="mse")
    x = np.ones((4, 1), np.float32)
    compiled = diagnose(model, x, 2 * x)
    given = diagnose(model, x, 2 * x, loss="mse")
    assert [r.status for r in compiled] == [r.status for r in given] == [HEALTHY, HEALTHY]
    # d(0.5 * spare^2)/d spare = spare = 1; the mse (1) plus the penalty 0.5 * 1^2 = 0.5.
    assert given.record("spare").norm == pytest.approx(1.0)
    assert given.loss == pytest.approx(compiled.loss) and given.loss == pytest.approx(1.5)
