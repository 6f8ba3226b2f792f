"""Self-checks of chapters 1 and 2 pass right answers in several forms and reject likely wrong ones."""

import math

import numpy as np
import pytest
import tensorflow as tf
from _checks import failed_with, passed
from gradclinic import checks as check
from gradclinic.bump import bump_stable, f_False, f_True, loss_slopes
from gradclinic.checks._core import decode_evidence, encode_evidence
from gradclinic.data import bump_formula


def test_chapter_1_and_2_checks_are_registered_under_their_answer_names():
    names = {key: exercise.answer for key, exercise in check.registry().items()}
    assert {k: names[k] for k in ("1.1", "1.2", "2.1", "2.2")} == {
        "1.1": "my_scaled_bump",
        "1.2": "tape_predictions",
        "2.1": "edge_slope",
        "2.2": "slope_predictions",
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


# --- 2.1: the edge term of the population loss's slope -------------------------------------------


def jump(sigma, teacher_sigma):
    edge = math.exp(-1 / (1 - sigma))
    target = math.exp(-teacher_sigma / (teacher_sigma - sigma**2)) if sigma < teacher_sigma else 0
    return (edge - target) ** 2 - target**2


def edge_slope(sigma, teacher_sigma, low, high):
    edges = (sigma < high) + (-sigma > low)
    return edges * jump(sigma, teacher_sigma) / (high - low)


def edge_slope_float32(sigma, teacher_sigma, low, high):
    # Another form: a sum over the two edges, computed in float32.
    s, ts = np.float32(sigma), np.float32(teacher_sigma)
    edge = np.exp(np.float32(-1) / (np.float32(1) - s))
    target = np.exp(-ts / (ts - s * s)) if s < ts else np.float32(0)
    total = np.float32(0)
    for position in (s, -s):
        if low < position < high:
            total += ((edge - target) ** 2 - target**2) / np.float32(high - low)
    return total


def edge_slope_measured(sigma, teacher_sigma, low, high):
    # A different, numerical route: finite difference minus the tape, on a fine grid.
    n = 20_000
    x = low + (np.arange(n) + 0.5) / n * (high - low)
    y = bump_formula(x, teacher_sigma)
    # The step must span many grid points, or it counts the jumps it crosses too coarsely.
    difference, tape = loss_slopes(bump_stable, x, y, sigma, step=1e-2)
    return difference - tape


@pytest.mark.parametrize("answer", [edge_slope, edge_slope_float32, edge_slope_measured])
def test_ex2_1_accepts_the_formula_in_other_forms_and_a_careful_measurement(answer):
    assert passed(check.ex2_1(answer), "2.1")


def test_ex2_1_reference_equals_finite_difference_minus_tape():
    # The judge's formula is checked here against TensorFlow, at cases it does not use.
    for case in [(0.3, 0.5, -0.6, 1.0), (0.5, 0.35, -1.0, 0.3), (0.2, 0.9, -2.0, 0.5)]:
        assert edge_slope_measured(*case) == pytest.approx(edge_slope(*case), rel=2e-3, abs=1e-6)


def chapter_cell(sigma, teacher_sigma, low, high):
    # The chapter's table cell, copied: both edges inside (-1, 1), density 1/2.
    return jump(sigma, teacher_sigma) if sigma < 1 else 0.0


def symmetric(sigma, teacher_sigma, low, high):
    # The U(-a, a) answer with a = half the width: two edges or none.
    half_width = (high - low) / 2
    return 2 * jump(sigma, teacher_sigma) / (high - low) if sigma < half_width else 0.0


@pytest.mark.parametrize(
    "wrong",
    [
        chapter_cell,
        symmetric,
        # the edge at +sigma only
        lambda s, ts, lo, hi: jump(s, ts) / (hi - lo) if s < hi else 0.0,
        # both edges counted wherever they lie
        lambda s, ts, lo, hi: 2 * jump(s, ts) / (hi - lo),
        # the chapter's density 1/2 kept
        lambda s, ts, lo, hi: ((s < hi) + (-s > lo)) * jump(s, ts) / 2,
        # the density of U(-high, high)
        lambda s, ts, lo, hi: ((s < hi) + (-s > lo)) * jump(s, ts) / (2 * hi),
        # the teacher forgotten: only the model's edge value
        lambda s, ts, lo, hi: ((s < hi) + (-s > lo)) * math.exp(-1 / (1 - s)) ** 2 / (hi - lo),
        # outside minus inside
        lambda s, ts, lo, hi: -edge_slope(s, ts, lo, hi),
    ],
)
def test_ex2_1_rejects_likely_wrong_edge_terms(wrong):
    result = check.ex2_1(wrong)
    assert failed_with(result, "2.1", "expected")
    assert "exp(" not in repr(result)


def test_ex2_1_rejects_the_chapter_cell_copied_as_printed():
    # The chapter's edge_term and its `if sigma < 1`, as the page prints them.
    def edge_term(sigma, target_at_edge):
        return (np.exp(-1 / (1 - sigma)) - target_at_edge) ** 2 - target_at_edge**2

    def copied(sigma, teacher_sigma, low, high):
        target = float(bump_formula(np.array(sigma), teacher_sigma))
        return float(edge_term(sigma, target)) if sigma < 1 else 0.0

    assert failed_with(check.ex2_1(copied), "2.1", "expected")
    # ... and rescaled from the chapter's density 1/2 to 1/(high - low), as the old exercise allowed.
    rescaled = check.ex2_1(lambda s, ts, lo, hi: copied(s, ts, lo, hi) * 2 / (hi - lo))
    assert failed_with(rescaled, "2.1", "expected")


def test_ex2_1_enforces_a_float_result():
    result = check.ex2_1(lambda s, ts, lo, hi: tf.constant(edge_slope(s, ts, lo, hi)))
    assert failed_with(result, "2.1", "expected a number, got EagerTensor")
    assert passed(check.ex2_1(lambda s, ts, lo, hi: np.float32(edge_slope(s, ts, lo, hi))), "2.1")


# --- 2.2: None, the whole slope, or part of it ---------------------------------------------------


RIGHT_2_2 = {"A": "whole", "B": "None", "C": "part", "D": "whole", "E": "None"}
RIGHT_2_2 |= {"F": "whole", "G": "part"}


def test_ex2_2_accepts_the_right_predictions():
    assert passed(check.ex2_2(dict(RIGHT_2_2)), "2.2")


@pytest.mark.parametrize(
    ("variant", "belief"),
    [
        ("A", "part"),  # "every comparison hides something"
        ("C", "whole"),  # "t is in the output, so the tape sees all of it"
        ("D", "part"),
        ("E", "whole"),  # "a cast to float is differentiable"
        ("G", "whole"),
    ],
)
def test_ex2_2_rejects_each_likely_misconception(variant, belief):
    result = check.ex2_2(RIGHT_2_2 | {variant: belief})
    assert failed_with(result, "2.2", "1 of 7 predictions differ from the measurement")
    assert f"variant {variant}" not in result.message and "variant(s)" not in result.message


def test_ex2_2_enforces_the_stated_values():
    assert failed_with(check.ex2_2(RIGHT_2_2 | {"C": "partial"}), "2.2", "variant C: expected")
    assert failed_with(check.ex2_2(None), "2.2", "expected a dict")


def test_every_judge_survives_forged_or_truncated_evidence():
    for key in ("1.1", "1.2", "2.1", "2.2"):
        exercise = check.registry()[key]
        for forged in ({}, {"values": np.zeros(2)}, {"A": 3}, None):
            assert not exercise.verdict(forged)


def test_evidence_survives_the_json_round_trip():
    evidence = {
        "1.1": check.registry()["1.1"].collect(scaled_where),
        "2.1": check.registry()["2.1"].collect(edge_slope),
    }
    decoded = decode_evidence(encode_evidence(evidence))
    assert check.registry()["1.1"].verdict(decoded["1.1"])
    assert check.registry()["2.1"].verdict(decoded["2.1"])
