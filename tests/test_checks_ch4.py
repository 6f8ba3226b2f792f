"""Chapter 4's self-checks: right answers in several forms pass, the wrong ones students give fail.

Every rejection message is also checked not to hand over the answer (no formula, no band ends).
"""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from _checks import judged_at_drawn_inputs
from gradclinic import checks as check
from gradclinic.bump import BumpLayer, bump_double_where, bump_stable
from gradclinic.checks._core import chapter_exercises, decode_evidence, encode_evidence
from gradclinic.checks.ch4 import FLOAT32_LOG_MAX
from gradclinic.data import bump_formula_dsigma, make_bump_data, screen


def test_every_chapter_4_exercise_is_registered_with_its_answer_name() -> None:
    answers = {ex.key: ex.answer for ex in chapter_exercises("4")}
    assert answers == {
        "4.1": "overflow_band",
        "4.2": "my_stable_bump",
        "4.3": "build_tanh_model",
        "4.4": "sgd_error_factor",
        "4.5": "dropped_fraction",
    }


def _rejected(result, *needles: str) -> str:
    assert not result, result
    for needle in needles:
        assert needle in result.message, result.message
    # No message names the formula or the band's ends.
    for leak in ("sqrt", "88.7", "x^2", "x**2", "(sigma - "):
        assert leak not in result.message, result.message
    return result.message


# --- 4.1 -----------------------------------------------------------------------------------


def overflow_band(sigma):
    if sigma <= 1:
        return None
    return math.sqrt(sigma), min(sigma, math.sqrt(sigma * (1 + 1 / 88.7228)))


def test_ex4_1_threshold_is_where_float32_exp_overflows() -> None:
    with np.errstate(over="ignore"):
        below, above = np.exp(np.float32([FLOAT32_LOG_MAX - 1e-4, FLOAT32_LOG_MAX + 1e-4]))
    assert np.isfinite(below) and np.isinf(above)


def test_ex4_1_reference_band_is_where_the_float32_layer_returns_inf() -> None:
    for sigma in (1.004, 1.3, 2.2, 7.5, 40.0):
        low, high = overflow_band(sigma)
        x = np.array([low * 0.9999, low * 1.0001, high * 0.9999, high * 1.0001], np.float32)
        values = bump_double_where(x, np.float32(sigma)).numpy()
        assert np.isfinite(values[0]) and np.isinf(values[1]) and np.isinf(values[2])
        assert np.isfinite(values[3])
    assert np.all(np.isfinite(bump_double_where(np.linspace(-3, 3, 601, dtype=np.float32), 1.0)))


def test_ex4_1_passes_right_bands_in_other_forms() -> None:
    assert check.ex4_1(overflow_band)
    # numpy numbers, a list, and the threshold computed rather than typed.
    log_max = np.log(np.finfo(np.float32).max)

    def as_numpy(sigma):
        if sigma <= 1:
            return None
        root = np.sqrt(np.float64(sigma))
        return [root, np.minimum(sigma, root * np.sqrt(1 + 1 / log_max))]

    assert check.ex4_1(as_numpy)


@pytest.mark.parametrize(
    ("wrong", "needle"),
    [
        # The whole selected band with a negative exponent, not where it overflows.
        (lambda s: (math.sqrt(s), s) if s > 1 else None, "sigma=1.3: the upper end"),
        # Forgets that the band also ends at sigma.
        (
            lambda s: (math.sqrt(s), math.sqrt(s * (1 + 1 / 88.7228))) if s > 1 else None,
            "sigma=1.004: the upper end",
        ),
        # float64's threshold instead of float32's.
        (
            lambda s: (math.sqrt(s), min(s, math.sqrt(s * (1 + 1 / 709.78)))) if s > 1 else None,
            "sigma=1.004: the upper end",
        ),
        # A band for every sigma, also where there is none.
        (lambda s: (math.sqrt(s), min(s, math.sqrt(s * 1.0113))), "sigma=0.6: got"),
        # Includes the tie sigma = 1, where both ends meet.
        (lambda s: (math.sqrt(s), s) if s >= 1 else None, "sigma=1.0: got"),
        (lambda s: "no band", "expected None or a pair"),
    ],
)
def test_ex4_1_rejects_wrong_bands(wrong, needle: str) -> None:
    _rejected(check.ex4_1(wrong), needle)


# --- 4.2 -----------------------------------------------------------------------------------


def clipped_gap_bump(x, sigma):
    """Right in another form: a clipped denominator instead of a substituted one."""
    gap = sigma - tf.square(x)
    selected = tf.logical_and(tf.abs(x) < sigma, gap > 0)
    return tf.where(selected, tf.exp(-sigma / tf.maximum(gap, 1e-3)), tf.zeros_like(gap))


def test_ex4_2_passes_the_book_guard_written_for_broadcasting_and_a_clipped_one() -> None:
    def substituted(x, sigma):
        gap = sigma - tf.square(x)
        selected = tf.logical_and(tf.abs(x) < sigma, gap > 0)
        safe_gap = tf.where(selected, gap, tf.ones_like(gap))
        return tf.where(selected, tf.exp(-sigma / safe_gap), tf.zeros_like(gap))

    assert check.ex4_2(substituted)
    assert check.ex4_2(clipped_gap_bump)


def test_ex4_2_names_the_nan_of_the_double_where_layer_at_sigma_zero() -> None:
    message = _rejected(check.ex4_2(bump_double_where))
    assert message == "sigma=0.0, x in [-7.3, 7.3]: expected a finite df/dsigma, got nan"


def test_ex4_2_rejects_a_guard_on_the_square_alone() -> None:
    # x^2 < sigma without |x| < sigma: for sigma < 1 the points sigma < |x| < sqrt(sigma) get a value.
    def square_only(x, sigma):
        gap = sigma - tf.square(x)
        safe_gap = tf.where(gap > 0, gap, tf.ones_like(gap))
        return tf.where(gap > 0, tf.exp(-sigma / safe_gap), tf.zeros_like(gap))

    _rejected(check.ex4_2(square_only), "sigma=0.37: expected f = 0")


def test_ex4_2_rejects_the_book_function_that_takes_one_sigma_only() -> None:
    # bump_stable is right for one sigma but refuses a sigma column, which the exercise asks for.
    message = _rejected(check.ex4_2(bump_stable))
    assert message.startswith(
        "sigma as a column (0.0, 0.55, 1.7, 4.2): your answer raised ValueError: sigma must be"
    )


def test_ex4_2_rejects_a_stop_gradient_guard_and_a_float64_result() -> None:
    def frozen(x, sigma):
        # Right values, but sigma's gradient is cut: it would never learn.
        return clipped_gap_bump(x, tf.stop_gradient(sigma))

    _rejected(check.ex4_2(frozen), "expected gradients for x and sigma, got None")

    def float64(x, sigma):
        return tf.cast(clipped_gap_bump(x, sigma), tf.float64)

    _rejected(check.ex4_2(float64), "expected a float32 result")


def test_ex4_2_rejects_a_wrong_x_gradient() -> None:
    @tf.custom_gradient
    def halved(x):
        return tf.identity(x), lambda dy: 0.5 * dy

    _rejected(check.ex4_2(lambda x, s: clipped_gap_bump(halved(x), s)), "expected df/dx")


# --- 4.3 -----------------------------------------------------------------------------------


def _model(activation: str, guard: str = "double_where", sigma: float = 1.0):
    def build() -> keras.Model:
        return keras.Sequential(
            [
                keras.Input(shape=(1,)),
                keras.layers.Dense(1, activation=activation),
                BumpLayer(guard=guard, initial_sigma=sigma),
            ]
        )

    return build


def test_ex4_3_passes_tanh_in_front_from_a_start_that_covers_its_range() -> None:
    assert check.ex4_3(_model("tanh"))

    def separate_activation() -> keras.Model:
        return keras.Sequential(
            [
                keras.Input(shape=(1,)),
                keras.layers.Dense(1),
                keras.layers.Activation("tanh"),
                BumpLayer(guard="double_where", initial_sigma=2.0),
            ]
        )

    assert check.ex4_3(separate_activation)


def test_ex4_3_rejects_a_start_that_covers_too_few_points() -> None:
    # From 0.1 most points lie outside the support and give sigma no gradient; on the check's
    # start sigma shrinks instead of growing (and at 0 the double-where gradient is NaN, 4.2).
    _rejected(check.ex4_3(_model("tanh", sigma=0.1)), "does not learn it")


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (_model("sigmoid"), "cannot represent the teacher"),
        (_model("softsign"), "cannot represent the teacher"),
        (_model(None), "expected the bump layer's input in [-1, 1]"),
        (_model("tanh", guard="stable"), "expected one BumpLayer(guard='double_where')"),
    ],
)
def test_ex4_3_rejects_squashing_that_cannot_recover_the_teacher(build, needle: str) -> None:
    _rejected(check.ex4_3(build), needle)


def test_ex4_3_leaves_the_students_random_state_alone_and_does_not_depend_on_it() -> None:
    keras.utils.set_random_seed(5)
    expected = np.random.random()
    keras.utils.set_random_seed(5)
    first = check.ex4_3.collect(_model("tanh"))
    # The check reseeded nothing: NumPy's next global draw is still the one seed 5 gives.
    assert np.random.random() == expected
    keras.utils.set_random_seed(123)
    second = check.ex4_3.collect(_model("tanh"))
    assert np.array_equal(first["predictions"], second["predictions"])
    assert first["sigma"] == second["sigma"]


# --- 4.4 -----------------------------------------------------------------------------------


def sgd_error_factor(x, sigma_true, learning_rate):
    slope = bump_formula_dsigma(np.asarray(x, dtype=np.float64), sigma_true)
    return 1 - learning_rate * 2 * np.mean(slope**2)


def test_ex4_4_passes_float64_and_a_float32_tape_version() -> None:
    assert check.ex4_4(sgd_error_factor)

    def by_tape(x, sigma_true, learning_rate):
        sigma = tf.Variable(float(sigma_true))
        with tf.GradientTape() as tape:
            f = bump_stable(tf.constant(x, tf.float32), sigma)
        df = tape.jacobian(f, sigma)
        return float(1 - learning_rate * 2 * tf.reduce_mean(tf.square(df)))

    assert check.ex4_4(by_tape)


@pytest.mark.parametrize(
    "wrong",
    [
        # MSE's factor 2 forgotten.
        lambda x, s, lr: 1 - lr * np.mean(bump_formula_dsigma(x, s) ** 2),
        # The square of the mean instead of the mean of the squares.
        lambda x, s, lr: 1 - 2 * lr * np.mean(bump_formula_dsigma(x, s)) ** 2,
        # The mean |df/dsigma| the first draft of this chapter plotted.
        lambda x, s, lr: 1 - lr * np.mean(np.abs(bump_formula_dsigma(x, s))),
        # A sum over points where the loss takes the mean.
        lambda x, s, lr: 1 - 2 * lr * np.sum(bump_formula_dsigma(x, s) ** 2),
        # The large-sigma limit (f ~ 1/e, sigma - x^2 ~ sigma) instead of the exact factor.
        lambda x, s, lr: 1 - 2 * lr * np.mean(np.asarray(x) ** 4) / (math.e**2 * s**4),
        # df/dsigma without the x^2.
        lambda x, s, lr: 1 - 2 * lr * np.mean(np.exp(-s / (s - x**2)) / (s - x**2) ** 2),
    ],
)
def test_ex4_4_rejects_wrong_factors(wrong) -> None:
    _rejected(check.ex4_4(wrong), "is off")


def test_ex4_4_rejects_a_sign_error_and_per_point_factors() -> None:
    _rejected(check.ex4_4(lambda x, s, lr: 2 - sgd_error_factor(x, s, lr)), "away from the target")
    per_point = _rejected(check.ex4_4(lambda x, s, lr: 1 - lr * bump_formula_dsigma(x, s) ** 2))
    assert "expected one number, got an array of shape (5, 8)" in per_point


def test_ex4_4_reference_matches_one_real_sgd_step() -> None:
    # The first-order factor is what a real step does, to the accuracy the question states.
    x, _ = make_bump_data(1.0, 400, seed=5)
    sigma_true, rate = 2.0, 30.0
    y = bump_stable(x, sigma_true)
    sigma = tf.Variable([sigma_true * 1.001])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(bump_stable(x, sigma) - y))
    keras.optimizers.SGD(rate).apply_gradients([(tape.gradient(loss, sigma), sigma)])
    measured = (float(sigma.numpy()[0]) - sigma_true) / (0.001 * sigma_true)
    predicted = sgd_error_factor(x, sigma_true, rate)
    assert math.isclose(1 - measured, 1 - predicted, rel_tol=0.01)


# --- 4.5 -----------------------------------------------------------------------------------


def dropped_fraction(sigma, x_range):
    low, high = x_range
    if sigma <= 1:
        return 0.0
    root = math.sqrt(sigma)
    overlap = sum(max(0.0, min(high, b) - max(low, a)) for a, b in ((-sigma, -root), (root, sigma)))
    return overlap / (high - low)


def test_ex4_5_passes_the_exact_share_and_it_matches_screen() -> None:
    assert check.ex4_5(dropped_fraction)
    assert check.ex4_5(lambda s, r: np.float32(dropped_fraction(s, r)).astype(np.float64))
    for sigma, x_range in ((6.0, (-7.0, 7.0)), (2.5, (1.0, 1.8)), (3.0, (-1.5, 1.5))):
        x, y = make_bump_data(sigma, 20000, x_range=x_range, seed=9)
        dropped = screen(x, y)[2].dropped / 20000
        assert abs(dropped - dropped_fraction(sigma, x_range)) < 0.01


@pytest.mark.parametrize(
    ("wrong", "needle"),
    [
        # The answer's rule of thumb, as a share.
        (lambda s, r: float(s > 1 and (r[0] < -1 or r[1] > 1)), "sigma=2.0, x_range=(-1.2, 1.2)"),
        # A band from 1 to sigma.
        (
            lambda s, r: (
                sum(max(0.0, min(r[1], b) - max(r[0], a)) for a, b in ((-s, -1), (1, s)))
                / (r[1] - r[0])
                if s > 1
                else 0.0
            ),
            "sigma=2.0, x_range=(-1.2, 1.2)",
        ),
        # The positive band only.
        (
            lambda s, r: (
                max(0.0, min(r[1], s) - max(r[0], math.sqrt(s))) / (r[1] - r[0]) if s > 1 else 0.0
            ),
            "sigma=4.0, x_range=(-3.0, -2.5)",
        ),
        # Shares of the band instead of shares of the range.
        (
            lambda s, r: (
                dropped_fraction(s, r) * (r[1] - r[0]) / (2 * (s - math.sqrt(s))) if s > 1 else 0.0
            ),
            "sigma=2.0, x_range=(-1.2, 1.5)",
        ),
    ],
)
def test_ex4_5_rejects_wrong_shares(wrong, needle: str) -> None:
    _rejected(check.ex4_5(wrong), needle, "not the expected share")


def test_ex4_5_rejects_a_yes_no_answer_by_type() -> None:
    _rejected(check.ex4_5(lambda s, r: s > 1), "expected a number, got bool")


# --- probe and judge -----------------------------------------------------------------------


def test_the_evidence_survives_json_and_forged_evidence_fails() -> None:
    for key, answer in (
        ("4.1", overflow_band),
        ("4.2", clipped_gap_bump),
        ("4.4", sgd_error_factor),
        ("4.5", dropped_fraction),
    ):
        ex = check.registry()[key]
        evidence = decode_evidence(encode_evidence({key: ex.collect(answer)}))[key]
        assert ex.verdict(evidence), key
    forged = {"fractions": np.array([0.0] * 3)}
    assert not check.registry()["4.5"].verdict(forged)
    assert not check.registry()["4.1"].verdict(json.loads('{"is_none": 1}'))


def test_every_passing_message_prints_in_lines_of_at_most_80_characters() -> None:
    results = [
        check.ex4_1(overflow_band),
        check.ex4_2(clipped_gap_bump),
        check.ex4_3(_model("tanh")),
        check.ex4_4(sgd_error_factor),
        check.ex4_5(dropped_fraction),
    ]
    assert all(results)
    for result in results:
        assert max(len(line) for line in repr(result).splitlines()) <= 80, repr(result)


# --- the grader's inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "answer", "has_inputs"),
    [
        ("4.1", overflow_band, True),
        ("4.2", clipped_gap_bump, True),
        ("4.4", sgd_error_factor, True),
        ("4.5", dropped_fraction, True),
    ],
)
def test_at_the_graders_inputs_the_right_answer_passes_and_another_runs_evidence_fails(
    key, answer, has_inputs
) -> None:
    # Evidence relabelled for another run passes only where the answer itself is the evidence.
    relabelled = judged_at_drawn_inputs(check.registry()[key], answer)
    assert [result.passed for result in relabelled] == [not has_inputs] * len(relabelled)
