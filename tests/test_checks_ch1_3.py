"""Self-checks of chapters 1-3 pass on right answers and say what is wrong on wrong ones."""

import pytest
import tensorflow as tf
from gradclinic import checks as check
from gradclinic.bump import bump_double_where, bump_naive, bump_stable, f_True


def passed(result, key):
    return bool(result) and repr(result).startswith(f"Exercise {key}: passed.")


def failed_with(result, key, text):
    return (
        not result and repr(result).startswith(f"Exercise {key}: not yet.") and text in repr(result)
    )


def test_every_chapter_1_to_3_check_is_registered_under_its_answer_name():
    names = {key: exercise.answer for key, exercise in check.registry().items()}
    assert {k: names[k] for k in ("1.1", "1.2", "2.1", "2.2", "3.1", "3.2")} == {
        "1.1": "my_threshold_bump",
        "1.2": "my_sigma_bump",
        "2.1": "my_clip",
        "2.2": "zero_gradient_loss",
        "3.1": "safe_log",
        "3.2": "my_double_where_bump",
    }


def test_ex1_1():
    def right(x, t):
        return tf.where(x < t, f_True(x), tf.zeros_like(x))

    def two_sided(x, t):
        return tf.where(tf.abs(x) < t, f_True(x), tf.zeros_like(x))

    assert passed(check.ex1_1(right), "1.1")
    assert failed_with(
        check.ex1_1(two_sided), "1.1", "x=-1.70, threshold=0.42: expected 1.6974, got 0.0000"
    )
    assert failed_with(check.ex1_1(lambda x, t: tf.reduce_sum(x)), "1.1", "expected shape (7, 1)")


def test_ex1_2():
    def sigma_free(x, s):
        return tf.where(tf.abs(x) < s, f_True(x), tf.zeros_like(x))

    assert passed(check.ex1_2(bump_naive), "1.2")
    assert failed_with(
        check.ex1_2(sigma_free), "1.2", "x=-0.60, sigma=0.8: expected 0.1623, got 0.2096"
    )


def test_ex1_2_catches_an_output_that_ignores_sigma():
    class Frozen:
        def __call__(self, x, sigma):
            # Right values for sigma = 0.8, computed from a constant: no gradient reaches sigma.
            return bump_stable(x, tf.constant(0.8))

    assert failed_with(check.ex1_2(Frozen()), "1.2", "expected a gradient for sigma, got None")


def test_ex2_1():
    assert passed(check.ex2_1(lambda x, t: tf.where(x < t, x, t * tf.ones_like(x))), "2.1")
    assert failed_with(
        check.ex2_1(lambda x, t: tf.where(x < t, x, tf.fill(tf.shape(x), 0.75))),
        "2.1",
        "t=0.75: expected a gradient for t, got None",
    )
    assert failed_with(check.ex2_1(lambda x, t: x), "2.1", "x=1.7, t=0.75: expected 0.75, got 1.7")


def test_ex2_2():
    assert passed(check.ex2_2(lambda a, b: tf.reduce_sum(a**2) + 0.0 * tf.reduce_sum(b)), "2.2")
    assert failed_with(
        check.ex2_2(lambda a, b: tf.reduce_sum(a**2)),
        "2.2",
        "expected a zero gradient for b, got None",
    )
    assert failed_with(
        check.ex2_2(lambda a, b: tf.reduce_sum(a * b)), "2.2", "expected gradient [0, 0] for b"
    )


def test_ex3_1():
    def double(x):
        positive = x > 0
        return tf.where(
            positive, tf.math.log(tf.where(positive, x, tf.ones_like(x))), tf.zeros_like(x)
        )

    def single(x):
        return tf.where(x > 0, tf.math.log(x), tf.zeros_like(x))

    assert passed(check.ex3_1(double), "3.1")
    assert failed_with(check.ex3_1(single), "3.1", "x=0: expected gradient 0, got nan")


@pytest.mark.parametrize("fn", [bump_double_where, bump_stable])
def test_ex3_2_accepts_both_safe_guards(fn):
    assert passed(check.ex3_2(fn), "3.2")


def test_ex3_2_rejects_the_single_where_and_reports_stubs():
    assert failed_with(
        check.ex3_2(bump_naive),
        "3.2",
        "x=-0.5478, sigma=0.3: expected a finite gradient 0.0000, got nan",
    )

    def stub(x, sigma):
        raise NotImplementedError("Exercise 3.2: two tf.where here")

    assert failed_with(check.ex3_2(stub), "3.2", "your answer raised NotImplementedError")
    assert failed_with(check.ex3_2(None), "3.2", "expected a function my_double_where_bump")
