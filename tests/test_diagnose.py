"""gradclinic.diagnose: statuses, the report, and the callback that stops fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from gradclinic.bump import BrokenBumpLayer, BumpLayer
from gradclinic.data import make_bump_data
from gradclinic.diagnose import (
    HEALTHY,
    NONFINITE,
    NOT_CONNECTED,
    ZERO,
    GradientCheck,
    GradientError,
    GradientRecord,
    diagnose,
    diagnose_loss,
)


def bump_model(guard="double_where", sigma=0.5):
    return keras.Sequential([keras.Input(shape=(1,)), BumpLayer(guard, initial_sigma=sigma)])


def test_broken_layer_is_not_connected():
    x, y = make_bump_data(0.5, 10)
    model = keras.Sequential([keras.Input(shape=(1,)), BrokenBumpLayer()])
    report = diagnose(model, x[:1], y[:1], loss="mse")
    assert [r.status for r in report] == [NOT_CONNECTED]
    assert report[0].norm is None and not report.ok
    assert report.status("threshlevel") == NOT_CONNECTED


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


def test_naive_layer_next_to_the_singularity_is_nonfinite():
    model = bump_model("naive", 0.5)
    report = diagnose(model, np.array([[0.709]], np.float32), np.zeros((1, 1), np.float32), "mse")
    record = report.record("sigma")
    assert record.status == NONFINITE and record.nonfinite == 1 and np.isnan(record.norm)
    assert report.problems() == [record]


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
    with pytest.raises(ValueError, match="variables must hold at least one variable"):
        diagnose_loss(lambda: tf.constant(1.0), [])
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
