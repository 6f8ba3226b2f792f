"""Chapter 7's patients are broken the way the chapter says, and their fixes heal them."""

import numpy as np
import pytest
import tensorflow as tf
from gradclinic import patients
from gradclinic.bump import bump_naive
from gradclinic.diagnose import HEALTHY, NONFINITE, NOT_CONNECTED, ZERO, diagnose, diagnose_loss


def statuses(report):
    return [record.status for record in report]


def test_loss_from_predict_disconnects_every_weight_and_the_call_fixes_it() -> None:
    x, y = patients.regression_batch()
    model = patients.relu_regressor()
    broken = diagnose_loss(
        lambda: patients.loss_from_predict(model, x, y), model.trainable_variables
    )
    fixed = diagnose_loss(lambda: patients.loss_from_call(model, x, y), model.trainable_variables)
    assert statuses(broken) == [NOT_CONNECTED] * 4
    assert statuses(fixed) == [HEALTHY] * 4
    assert broken.loss == pytest.approx(fixed.loss, rel=1e-6)


def test_numpy_tanh_layer_cuts_only_its_own_kernel() -> None:
    import keras

    x, y = patients.regression_batch()
    for via_numpy, first in ((True, NOT_CONNECTED), (False, HEALTHY)):
        model = keras.Sequential(
            [keras.Input((3,)), patients.TanhDense(4, via_numpy=via_numpy), keras.layers.Dense(1)]
        )
        assert statuses(diagnose(model, x, y, loss="mse")) == [first, HEALTHY, HEALTHY]
    np.testing.assert_allclose(
        patients.TanhDense(2, via_numpy=True)(x),
        patients.TanhDense(2, via_numpy=False)(x),
        atol=1e-6,
    )


def test_rebinding_and_assign_patients() -> None:
    assert patients.rebinding_gradients(3) == [
        ("ResourceVariable", 1.0),
        ("EagerTensor", None),
        ("EagerTensor", None),
    ]
    w, v = tf.Variable(3.0, name="w"), tf.Variable(0.0, name="v")
    broken = diagnose_loss(lambda: patients.loss_assigning(w, v), [w])
    assert statuses(broken) == [NOT_CONNECTED] and broken.loss == 36.0
    assert float(v) == 6.0
    fixed = diagnose_loss(lambda: patients.loss_from_tensor(w, v), [w])
    # d (2w)^2 / dw = 8w
    assert statuses(fixed) == [HEALTHY] and fixed[0].norm == pytest.approx(24.0)
    assert float(v) == 6.0


def test_dead_relu_gives_zero_not_none_and_leaky_relu_revives_it() -> None:
    x, y = patients.regression_batch()
    dead = diagnose(patients.relu_regressor(hidden_bias=-5.0), x, y, loss="mse")
    assert statuses(dead) == [ZERO, ZERO, ZERO, HEALTHY]
    leaky = patients.relu_regressor(hidden_bias=-5.0, activation="leaky_relu")
    assert statuses(diagnose(leaky, x, y, loss="mse")) == [HEALTHY] * 4


def test_cross_entropy_on_probabilities_is_nan_and_from_logits_is_not() -> None:
    import keras

    model, x, labels = patients.confident_classifier(softmax=True)
    assert float(tf.reduce_min(model(x))) == 0.0
    broken = diagnose_loss(
        lambda: patients.probability_cross_entropy(labels, model(x)), model.trainable_variables
    )
    assert statuses(broken) == [NONFINITE, NONFINITE] and np.isnan(broken.loss)
    logits_model, x, labels = patients.confident_classifier(softmax=False)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    fixed = diagnose_loss(lambda: loss(labels, logits_model(x)), logits_model.trainable_variables)
    assert statuses(fixed) == [HEALTHY, HEALTHY] and np.isfinite(fixed.loss)
    # Same weights: the two models differ only by the softmax.
    np.testing.assert_array_equal(model.get_weights()[0], logits_model.get_weights()[0])


def test_unscaled_inputs_explode_clipping_crawls_scaling_converges() -> None:
    x, y = patients.unscaled_regression()
    exploded = patients.fit_linear(x, y, steps=30, learning_rate=1e-3)
    assert exploded.first_nonfinite_step is not None and exploded.first_nonfinite_step < 20
    clipped = patients.fit_linear(x, y, steps=30, learning_rate=1e-3, clipnorm=1.0)
    assert clipped.first_nonfinite_step is None
    assert clipped.losses[-1] > 0.5 * clipped.losses[0]
    scaled = patients.fit_linear((x - x.mean()) / x.std(), y, steps=30, learning_rate=0.1)
    assert scaled.first_nonfinite_step is None and scaled.losses[-1] < 1e-3 * scaled.losses[0]


def test_exercise_patients_show_their_symptoms() -> None:
    p1 = patients.exercise_patient("7.1")
    assert statuses(diagnose(p1.model, p1.x, p1.y, loss=p1.loss)) == [NOT_CONNECTED] * 4
    p2 = patients.exercise_patient("7.2")
    report = diagnose(p2.model, p2.x, p2.y, loss=p2.loss)
    assert statuses(report) == [NONFINITE, HEALTHY, HEALTHY] and np.isfinite(report.loss)
    p3 = patients.exercise_patient("7.3")
    report = diagnose(p3.model, p3.x, p3.y, loss=p3.loss)
    assert NONFINITE in statuses(report) and np.isnan(report.loss)
    assert patients.exercise_patient("7.1") is not p1
    with pytest.raises(ValueError, match=r"key must be one of 7\.1, 7\.2, 7\.3"):
        patients.exercise_patient("7.4")


def test_check_numerics_report_names_the_exp_and_the_line() -> None:
    sigma = tf.Variable([0.5])

    @tf.function
    def gradient(x):
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(bump_naive(x, sigma))
        return tape.gradient(total, sigma)

    tf.debugging.enable_check_numerics()
    try:
        with pytest.raises(tf.errors.InvalidArgumentError) as caught:
            gradient(tf.constant([0.3, 0.709]))
    finally:
        tf.debugging.disable_check_numerics()
    report = patients.check_numerics_report(caught.value)
    assert report.startswith("op 'Exp' (graph), output 0: +Inf values")
    assert "created at bump.py:" in report and "(bump_naive)" in report
    assert "/" not in report
    with pytest.raises(ValueError, match="enable_check_numerics"):
        patients.check_numerics_report(ValueError("something else"))


def test_check_numerics_report_names_a_function_traced_before_the_checks() -> None:
    sigma = tf.Variable([0.5])

    @tf.function
    def traced_before(x):
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(bump_naive(x, sigma))
        return tape.gradient(total, sigma)

    x = tf.constant([0.3, 0.709])
    assert np.isnan(traced_before(x).numpy()).all()
    tf.debugging.enable_check_numerics()
    try:
        with pytest.raises(tf.errors.InvalidArgumentError) as caught:
            traced_before(x)
    finally:
        tf.debugging.disable_check_numerics()
    report = patients.check_numerics_report(caught.value)
    assert report == "tf.function 'traced_before', checked as one op, output 0: NaN values"


def test_error_summary_keeps_the_message_only() -> None:
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        tf.debugging.check_numerics(tf.constant([1.0, np.inf]), "my tensor")
    assert patients.error_summary(caught.value) == "my tensor : Tensor had Inf values"
    with pytest.raises(ValueError, match="error must be an exception"):
        patients.error_summary("text")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: patients.regression_batch(n=0), "n must be an int >= 1"),
        (lambda: patients.regression_batch(features=1.5), "features must be an int >= 1"),
        (lambda: patients.TanhDense(0), "units must be an int >= 1"),
        (lambda: patients.fit_linear(np.ones((2, 1)), np.ones((2, 1)), steps=0), "steps must be"),
    ],
)
def test_bad_arguments_are_named(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()
