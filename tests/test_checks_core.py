"""The self-check machinery (registry, run_chapter) and chapter 4's checks on wrong answers."""

import math

import keras
import numpy as np
import pytest
from gradclinic import checks as check
from gradclinic.bump import BumpLayer, bump_double_where, bump_stable
from gradclinic.checks import _core
from gradclinic.checks._core import CheckFailed, chapter_exercises, exercise, run_chapter


@pytest.fixture
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    registry: dict = {}
    monkeypatch.setattr(_core, "_REGISTRY", registry)
    return registry


def test_a_check_reports_passed_not_yet_and_the_students_exception(empty_registry: dict) -> None:
    @exercise("9.1", answer="double")
    def ex9_1(double) -> str:
        if double(3) != 6:
            raise CheckFailed(f"x=3: expected 6, got {double(3)}")
        return "right."

    assert repr(ex9_1(lambda v: 2 * v)) == "Exercise 9.1: passed. right."
    wrong = ex9_1(lambda v: v + 2)
    assert not wrong and repr(wrong) == "Exercise 9.1: not yet. x=3: expected 6, got 5"
    raised = ex9_1(lambda v: 1 / 0)
    assert raised.message == "your answer raised ZeroDivisionError: division by zero"
    with pytest.raises(ValueError, match="registered twice"):
        exercise("9.1", answer="other")(lambda obj: "")


def test_run_chapter_looks_answers_up_by_name_in_numeric_order(empty_registry: dict) -> None:
    for key in ("9.10", "9.2", "8.1"):
        exercise(key, answer=f"answer_{key.replace('.', '_')}")(lambda obj: f"got {obj}")
    assert [ex.key for ex in chapter_exercises("9")] == ["9.2", "9.10"]
    results = run_chapter("9", {"answer_9_10": 1})
    assert [(r.exercise, r.passed) for r in results] == [("9.2", False), ("9.10", True)]
    assert results[0].message == "expected an object named answer_9_2, found none"
    with pytest.raises(ValueError, match="chapter must be one with exercises"):
        run_chapter("7", {})


def test_every_chapter_4_exercise_is_registered_with_its_answer_name() -> None:
    answers = {ex.key: ex.answer for ex in chapter_exercises("4")}
    assert answers == {
        "4.1": "unsafe_band",
        "4.2": "my_stable_bump",
        "4.3": "build_tanh_model",
        "4.4": "bump_sigma_gradient",
        "4.5": "needs_screening",
    }


def test_ex4_1_rejects_a_band_that_starts_at_one() -> None:
    result = check.ex4_1(lambda s: (1.0, s) if s > 1 else None)
    assert not result and result.message.startswith("sigma=1.7: expected (sqrt(sigma), sigma)")


def test_ex4_2_passes_the_stable_bump_and_names_the_nan_of_the_double_where_one() -> None:
    assert check.ex4_2(bump_stable).passed
    result = check.ex4_2(bump_double_where)
    assert not result
    assert result.message == "sigma=0.0, x in [-7.3, 7.3]: expected a finite df/dsigma, got nan"


def test_ex4_3_wants_the_double_where_layer_behind_a_squashing_layer() -> None:
    def linear() -> keras.Model:
        return keras.Sequential(
            [keras.Input(shape=(1,)), keras.layers.Dense(1), BumpLayer(guard="double_where")]
        )

    def stable_tanh() -> keras.Model:
        return keras.Sequential(
            [keras.Input(shape=(1,)), keras.layers.Dense(1, activation="tanh"), BumpLayer()]
        )

    assert "expected the bump layer's input in [-1, 1]" in check.ex4_3(linear).message
    assert "expected one BumpLayer(guard='double_where')" in check.ex4_3(stable_tanh).message


def test_ex4_4_catches_a_gradient_without_the_square() -> None:
    def unsquared(x, sigma):
        x = np.asarray(x)
        inside = (np.abs(x) < sigma) & (x**2 < sigma)
        gap = np.where(inside, sigma - x**2, 1.0)
        return np.where(inside, np.exp(-sigma / gap) * x**2 / gap, 0.0)

    result = check.ex4_4(unsquared)
    assert not result
    # The first point inside sigma = 0.3's support, where the missing square matters.
    assert result.message.startswith("x=-0.2676, sigma=0.3: expected df/dsigma = 0.369")


def test_ex4_5_rejects_the_rule_of_thumb_from_the_hint() -> None:
    def rule_of_thumb(sigma, x_range):
        return sigma > 1 and (x_range[0] < -1 or x_range[1] > 1)

    result = check.ex4_5(rule_of_thumb)
    assert result.message == "sigma=2.0, x_range=(-1.2, 1.2): expected False, got True"

    def exact(sigma, x_range):
        low, high, root = x_range[0], x_range[1], math.sqrt(sigma)
        return sigma > 1 and ((low < -root and high > -sigma) or (high > root and low < sigma))

    assert check.ex4_5(exact).passed
