"""Chapter 5's self-checks pass right answers in several forms and reject likely wrong ones."""

import math

import numpy as np
import pytest
import tensorflow as tf
from _checks import failed_with, judged_at_drawn_inputs, passed
from gradclinic import checks as check
from gradclinic.bump import bump_stable, loss_slopes
from gradclinic.checks._core import decode_evidence, encode_evidence
from gradclinic.data import bump_formula


def test_chapter_5_checks_are_registered_under_their_answer_names():
    names = {key: exercise.answer for key, exercise in check.registry().items()}
    assert {k: names[k] for k in ("5.1", "5.2")} == {
        "5.1": "edge_slope",
        "5.2": "slope_predictions",
    }


# --- 5.1: the edge term of the population loss's slope -------------------------------------------


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
def test_ex5_1_accepts_the_formula_in_other_forms_and_a_careful_measurement(answer):
    assert passed(check.ex5_1(answer), "5.1")


def test_ex5_1_reference_equals_finite_difference_minus_tape():
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
def test_ex5_1_rejects_likely_wrong_edge_terms(wrong):
    result = check.ex5_1(wrong)
    assert failed_with(result, "5.1", "expected")
    assert "exp(" not in repr(result)


def test_ex5_1_rejects_the_chapter_cell_copied_as_printed():
    # The chapter's edge_term and its `if sigma < 1`, as the page prints them.
    def edge_term(sigma, target_at_edge):
        return (np.exp(-1 / (1 - sigma)) - target_at_edge) ** 2 - target_at_edge**2

    def copied(sigma, teacher_sigma, low, high):
        target = float(bump_formula(np.array(sigma), teacher_sigma))
        return float(edge_term(sigma, target)) if sigma < 1 else 0.0

    assert failed_with(check.ex5_1(copied), "5.1", "expected")
    # ... and rescaled from the chapter's density 1/2 to 1/(high - low), as the old exercise allowed.
    rescaled = check.ex5_1(lambda s, ts, lo, hi: copied(s, ts, lo, hi) * 2 / (hi - lo))
    assert failed_with(rescaled, "5.1", "expected")


def test_ex5_1_enforces_a_float_result():
    result = check.ex5_1(lambda s, ts, lo, hi: tf.constant(edge_slope(s, ts, lo, hi)))
    assert failed_with(result, "5.1", "expected a number, got EagerTensor")
    assert passed(check.ex5_1(lambda s, ts, lo, hi: np.float32(edge_slope(s, ts, lo, hi))), "5.1")


# --- 5.2: None, the whole slope, or part of it ---------------------------------------------------


RIGHT_5_2 = {"A": "whole", "B": "None", "C": "part", "D": "whole", "E": "None"}
RIGHT_5_2 |= {"F": "whole", "G": "part"}


def test_ex5_2_accepts_the_right_predictions():
    assert passed(check.ex5_2(dict(RIGHT_5_2)), "5.2")


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
def test_ex5_2_rejects_each_likely_misconception(variant, belief):
    result = check.ex5_2(RIGHT_5_2 | {variant: belief})
    assert failed_with(result, "5.2", "1 of 7 predictions differ from the measurement")
    assert f"variant {variant}" not in result.message and "variant(s)" not in result.message


def test_ex5_2_enforces_the_stated_values():
    assert failed_with(check.ex5_2(RIGHT_5_2 | {"C": "partial"}), "5.2", "variant C: expected")
    assert failed_with(check.ex5_2(None), "5.2", "expected a dict")


def test_every_judge_survives_forged_or_truncated_evidence():
    for key in ("5.1", "5.2"):
        exercise = check.registry()[key]
        for forged in ({}, {"values": np.zeros(2)}, {"A": 3}, None):
            assert not exercise.verdict(forged)


def test_evidence_survives_the_json_round_trip():
    decoded = decode_evidence(encode_evidence({"5.1": check.registry()["5.1"].collect(edge_slope)}))
    assert check.registry()["5.1"].verdict(decoded["5.1"])


def test_the_success_messages_fit_one_80_character_line():
    # The notebook prints them under each exercise; the book's lines stay within 80 characters.
    right = {"5.1": check.ex5_1(edge_slope), "5.2": check.ex5_2(dict(RIGHT_5_2))}
    for key, result in right.items():
        assert passed(result, key)
        assert len(repr(result)) <= 80, repr(result)


# --- the grader's inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "answer", "has_inputs"), [("5.1", edge_slope, True), ("5.2", RIGHT_5_2, False)]
)
def test_at_the_graders_inputs_the_right_answer_passes_and_another_runs_evidence_fails(
    key, answer, has_inputs
) -> None:
    # Evidence relabelled for another run passes only where the answer itself is the evidence.
    relabelled = judged_at_drawn_inputs(check.registry()[key], answer)
    assert [result.passed for result in relabelled] == [not has_inputs] * len(relabelled)
