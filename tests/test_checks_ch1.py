"""Self-checks of chapter 1 pass right answers in several forms and reject likely wrong ones."""

import numpy as np
import pytest
import tensorflow as tf
from _checks import failed_with, judged_at_drawn_inputs, passed
from gradclinic import checks as check
from gradclinic.bump import bump_stable, f_False, f_True
from gradclinic.checks._core import decode_evidence, encode_evidence


def test_chapter_1_checks_are_registered_under_their_answer_names():
    names = {key: exercise.answer for key, exercise in check.registry().items()}
    assert {k: names[k] for k in ("1.1", "1.2")} == {
        "1.1": "my_scaled_bump",
        "1.2": "tape_predictions",
    }


# --- 1.1: the question's bump stretched to (-t, t) ---------------------------------------------


def scaled_where(x, t):
    inside = tf.abs(x) < t
    return tf.where(inside, tf.exp(-tf.square(t) / (tf.square(t) - tf.square(x))), tf.zeros_like(x))


def scaled_via_f_true(x, t):
    # A different correct formulation: the question's own f_True at x / t, guarded.
    inside = tf.abs(x) < t
    safe = tf.where(inside, x / t, tf.zeros_like(x))
    return tf.where(inside, f_True(safe), tf.zeros_like(x))


def scaled_in_float64(x, t):
    # Computes in float64 and returns the input's dtype.
    out = scaled_where(tf.cast(x, tf.float64), tf.cast(t, tf.float64))
    return tf.cast(out, x.dtype)


@pytest.mark.parametrize("answer", [scaled_where, scaled_via_f_true, scaled_in_float64])
def test_ex1_1_accepts_right_answers_in_several_forms(answer):
    assert passed(check.ex1_1(answer), "1.1")


def test_ex1_1_rejects_the_question_branch_that_ignores_t():
    result = check.ex1_1(lambda x, t: tf.where(tf.abs(x) < t, f_True(x), tf.zeros_like(x)))
    assert failed_with(result, "1.1", "float32 x, t=0.55: at x=-0.52 expected")


def test_ex1_1_rejects_the_book_formula_instead_of_the_rescaled_one():
    assert failed_with(check.ex1_1(bump_stable), "1.1", "expected")


def test_ex1_1_rejects_a_one_sided_condition():
    def plain_one_sided(x, t):
        u = tf.where(x < t, x / t, tf.zeros_like(x))
        return tf.where(x < t, f_True(u), tf.zeros_like(x))

    assert failed_with(check.ex1_1(plain_one_sided), "1.1", "at x=-1.3 expected 0.0000")


def test_ex1_1_rejects_a_mask_left_at_one_and_a_frozen_threshold():
    def mask_at_one(x, t):
        inside = tf.abs(x) < 1.0
        safe = tf.where(inside, x / t, tf.zeros_like(x))
        return tf.where(inside, f_True(tf.clip_by_value(safe, -0.999, 0.999)), tf.zeros_like(x))

    def frozen(x, t):
        return scaled_where(x, tf.constant(t.numpy()))

    assert failed_with(check.ex1_1(mask_at_one), "1.1", "expected")
    result = check.ex1_1(frozen)
    assert failed_with(result, "1.1", "the tape's gradient for t is None")


def test_ex1_1_rejects_a_float32_only_answer_and_tf_cond():
    def always_float32(x, t):
        return scaled_where(tf.cast(x, tf.float32), tf.cast(t, tf.float32))

    assert failed_with(check.ex1_1(always_float32), "1.1", "expected a float64 result")

    def with_cond(x, t):
        return tf.cond(x < t, lambda: f_True(x), lambda: f_False(x))

    assert failed_with(check.ex1_1(with_cond), "1.1", "your answer raised")


def test_ex1_1_messages_do_not_hand_over_the_formula():
    message = repr(check.ex1_1(bump_stable))
    assert "exp(" not in message and "t**2" not in message and "t^2" not in message


# --- 1.2: which variants give the threshold a gradient ------------------------------------------


RIGHT_1_2 = {"A": "None", "B": "tensor", "C": "tensor", "D": "None", "E": "tensor"}
RIGHT_1_2 |= {"F": "None", "G": "tensor"}


def test_ex1_2_accepts_the_right_predictions():
    assert passed(check.ex1_2(dict(RIGHT_1_2)), "1.2")


@pytest.mark.parametrize(
    ("variant", "belief"),
    [
        ("A", "tensor"),  # "casting the comparison to float makes it differentiable"
        ("B", "None"),  # "multiplied by zero means not connected"
        ("D", "tensor"),  # "t appears in the code of the layer"
        ("F", "tensor"),  # "round is piecewise constant, so its gradient is zero"
        ("G", "None"),
    ],
)
def test_ex1_2_rejects_each_likely_misconception_without_giving_the_answer(variant, belief):
    result = check.ex1_2(RIGHT_1_2 | {variant: belief})
    assert failed_with(result, "1.2", "1 of 7 predictions differ from what the tape returns")
    # With two choices, naming the wrong variant would hand over the answer.
    assert f"variant {variant}" not in result.message and "variant(s)" not in result.message
    assert f"'{RIGHT_1_2[variant]}'" not in result.message


def test_ex1_2_counts_every_wrong_prediction():
    flipped = {k: ("tensor" if v == "None" else "None") for k, v in RIGHT_1_2.items()}
    assert failed_with(check.ex1_2(flipped), "1.2", "7 of 7 predictions differ")


def test_ex1_2_enforces_the_stated_type_of_each_prediction():
    assert failed_with(check.ex1_2(RIGHT_1_2 | {"A": None}), "1.2", "variant A: expected one of")
    assert failed_with(check.ex1_2(RIGHT_1_2 | {"B": "zero"}), "1.2", "variant B: expected one of")
    missing = {k: v for k, v in RIGHT_1_2.items() if k != "G"}
    assert failed_with(check.ex1_2(missing), "1.2", "variant G")
    assert failed_with(check.ex1_2(["None"] * 7), "1.2", "expected a dict")


def test_every_judge_survives_forged_or_truncated_evidence():
    for key in ("1.1", "1.2"):
        exercise = check.registry()[key]
        for forged in ({}, {"values": np.zeros(2)}, {"A": 3}, None):
            assert not exercise.verdict(forged)


def test_evidence_survives_the_json_round_trip():
    evidence = {
        "1.1": check.registry()["1.1"].collect(scaled_where),
    }
    decoded = decode_evidence(encode_evidence(evidence))
    assert check.registry()["1.1"].verdict(decoded["1.1"])


def test_ex1_1_says_it_avoids_the_window_where_a_single_where_is_nan():
    # The single-tf.where answer passes because no input lies just outside +-t; there its
    # gradient is NaN (t = 0.5, x = 0.5015), and the passing message says the window is untested.
    t = tf.Variable([0.5])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(scaled_where(tf.constant([[0.5015]]), t))
    assert np.isnan(tape.gradient(total, t).numpy()).all()
    result = check.ex1_1(scaled_where)
    assert passed(result, "1.1") and "just outside" in result.message


# --- the grader's inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "answer", "has_inputs"), [("1.1", scaled_where, True), ("1.2", RIGHT_1_2, False)]
)
def test_at_the_graders_inputs_the_right_answer_passes_and_another_runs_evidence_fails(
    key, answer, has_inputs
) -> None:
    # Evidence relabelled for another run passes only where the answer itself is the evidence.
    relabelled = judged_at_drawn_inputs(check.registry()[key], answer)
    assert [result.passed for result in relabelled] == [not has_inputs] * len(relabelled)
