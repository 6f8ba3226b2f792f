"""Self-checks of chapter 2 pass right answers in several forms and reject likely wrong ones."""

import numpy as np
import pytest
import tensorflow as tf
from _checks import failed_with, judged_at_drawn_inputs, passed
from gradclinic import checks as check
from gradclinic.checks._core import decode_evidence, encode_evidence
from gradclinic.checks.ch2 import GRADIENT_FUNCTIONS, measure_gradient


def test_chapter_2_checks_are_registered_under_their_answer_names():
    names = {key: exercise.answer for key, exercise in check.registry().items()}
    assert {k: names[k] for k in ("2.1", "2.2")} == {
        "2.1": "gradient_predictions",
        "2.2": "none_gradients",
    }


# --- 2.1: None, zero or nonzero ----------------------------------------------------------------


RIGHT_2_1 = {"A": "zero", "B": "nonzero", "C": "zero", "D": "None", "E": "None", "F": "zero"}


def test_the_measured_kinds_are_the_ones_the_chapter_teaches():
    # Each kind of answer occurs, so no constant guess passes.
    measured = {name: measure_gradient(name) for name in GRADIENT_FUNCTIONS}
    assert {name: kind for name, (kind, _) in measured.items()} == RIGHT_2_1
    assert measured["B"][1] == 3.0 and measured["A"][1] == 0.0 and measured["D"][1] is None


def test_measure_gradient_names_the_allowed_functions():
    with pytest.raises(ValueError, match="name must be one of A, B, C, D, E, F; got 'Z'"):
        measure_gradient("Z")


def test_ex2_1_accepts_the_right_predictions():
    assert passed(check.ex2_1(dict(RIGHT_2_1)), "2.1")


@pytest.mark.parametrize(
    ("name", "belief"),
    [
        ("A", "nonzero"),  # "v is used, so its gradient is nonzero"
        ("C", "None"),  # "the branch that reads v was not selected"
        ("D", "zero"),  # "a constant has derivative zero"
        ("E", "zero"),  # "casting the comparison makes it a step with slope 0"
        ("F", "None"),  # "a ReLU that is off is disconnected"
    ],
)
def test_ex2_1_rejects_each_likely_misconception_without_giving_the_answer(name, belief):
    result = check.ex2_1(RIGHT_2_1 | {name: belief})
    assert failed_with(result, "2.1", "1 of 6 predictions differ from what the tape returns")
    assert f"variant {name}" not in result.message


@pytest.mark.parametrize("guess", ["None", "zero", "nonzero"])
def test_ex2_1_rejects_a_constant_guess(guess):
    assert not check.ex2_1(dict.fromkeys(RIGHT_2_1, guess))


def test_ex2_1_enforces_the_stated_choices():
    assert failed_with(check.ex2_1(RIGHT_2_1 | {"A": 0}), "2.1", "variant A: expected one of")
    assert failed_with(check.ex2_1(RIGHT_2_1 | {"B": "tensor"}), "2.1", "variant B")
    assert failed_with(check.ex2_1(list(RIGHT_2_1)), "2.1", "expected a dict")


# --- 2.2: the names of the variables whose gradient is None ------------------------------------


def none_gradients(gradients, variables):
    if len(gradients) != len(variables):
        raise ValueError(
            f"gradients and variables must have the same length, "
            f"got {len(gradients)} and {len(variables)}"
        )
    return [v.name for g, v in zip(gradients, variables, strict=True) if g is None]


def none_gradients_strict_zip(gradients, variables):
    # zip(strict=True) raises the ValueError by itself; names without the ":0" suffix.
    return tuple(
        v.name.split(":")[0] for g, v in zip(gradients, variables, strict=True) if g is None
    )


@pytest.mark.parametrize("answer", [none_gradients, none_gradients_strict_zip])
def test_ex2_2_accepts_right_answers_in_several_forms(answer):
    assert passed(check.ex2_2(answer), "2.2")


def test_ex2_2_rejects_counting_zero_gradients_as_none():
    def zero_or_none(gradients, variables):
        return [
            v.name
            for g, v in zip(gradients, variables, strict=True)
            if g is None or not np.any(tf.convert_to_tensor(g).numpy())
        ]

    result = check.ex2_2(zero_or_none)
    assert failed_with(result, "2.2", "case 1, variables used, times_zero, unused")
    assert "expected ['unused', 'copied'], got ['times_zero', 'unused', 'copied']" in result.message


def test_ex2_2_rejects_counting_non_finite_gradients_as_none():
    def nonfinite_too(gradients, variables):
        out = []
        for g, v in zip(gradients, variables, strict=True):
            if g is None or not np.all(np.isfinite(tf.convert_to_tensor(g).numpy())):
                out.append(v.name)
        return out

    assert failed_with(check.ex2_2(nonfinite_too), "2.2", "case 2")


def test_ex2_2_rejects_an_answer_that_truncates_silently():
    def plain_zip(gradients, variables):
        return [v.name for g, v in zip(gradients, variables) if g is None]  # noqa: B905

    result = check.ex2_2(plain_zip)
    assert failed_with(result, "2.2", "1 gradient for 2 variables: expected a ValueError")
    assert result.message.endswith("got returned")


def test_ex2_2_rejects_the_wrong_kind_of_result_with_a_clear_message():
    assert failed_with(check.ex2_2(lambda g, v: "unused"), "2.2", "expected a list of names")
    assert failed_with(check.ex2_2(lambda g, v: list(v)), "2.2", "expected names (str)")
    assert failed_with(check.ex2_2("unused"), "2.2", "expected a function none_gradients")


def test_every_judge_survives_forged_or_truncated_evidence():
    for key in ("2.1", "2.2"):
        exercise = check.registry()[key]
        for forged in ({}, {"case0": np.zeros(2)}, {"A": 3}, None):
            assert not exercise.verdict(forged)


def test_evidence_survives_the_json_round_trip():
    evidence = {"2.2": check.registry()["2.2"].collect(none_gradients)}
    decoded = decode_evidence(encode_evidence(evidence))
    assert check.registry()["2.2"].verdict(decoded["2.2"])


# --- the grader's inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "answer", "has_inputs"), [("2.1", RIGHT_2_1, False), ("2.2", none_gradients, True)]
)
def test_at_the_graders_inputs_the_right_answer_passes_and_another_runs_evidence_fails(
    key, answer, has_inputs
) -> None:
    # Evidence relabelled for another run passes only where the answer itself is the evidence.
    relabelled = judged_at_drawn_inputs(check.registry()[key], answer)
    assert [result.passed for result in relabelled] == [not has_inputs] * len(relabelled)
