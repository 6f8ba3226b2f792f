"""gradclinic.data: generated data, the unguarded formula and its sigma-derivative, screening."""

import math

import numpy as np
import pytest
import tensorflow as tf
from gradclinic.bump import bump_stable
from gradclinic.data import (
    ScreenReport,
    bump_formula,
    bump_formula_dsigma,
    bump_stable_reference,
    make_bump_data,
    screen,
)


def test_make_bump_data_shapes_dtypes_range_and_values():
    x, y = make_bump_data(0.5, 200, x_range=(-0.8, 0.6), seed=3)
    assert x.shape == y.shape == (200, 1)
    assert x.dtype == y.dtype == np.float32
    assert x.min() >= -0.8 and x.max() < 0.6
    inside = np.abs(x) < 0.5
    expected = np.exp(-0.5 / (0.5 - x.astype(np.float64) ** 2))
    np.testing.assert_allclose(y[inside], expected[inside], rtol=1e-5)
    assert np.all(y[~inside] == 0.0)


def test_make_bump_data_is_reproducible_and_seed_dependent():
    a = make_bump_data(1.0, 50, seed=7)
    b = make_bump_data(1.0, 50, seed=7)
    c = make_bump_data(1.0, 50, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_formula_is_zero_outside_and_infinite_at_the_singularity_inside():
    assert bump_formula(np.array([2.5]), 2.0)[0] == 0.0
    assert bump_formula(np.array([0.0]), 2.0)[0] == pytest.approx(np.exp(-1.0))
    # sigma = 2: x just beyond sqrt(2) is inside |x| < 2 and the exponent is huge.
    assert bump_formula(np.array([1.41422]), 2.0)[0] > 1e300


def test_dsigma_formula_against_a_hand_computed_value():
    x, sigma = 0.4, 0.8
    f = np.exp(-sigma / (sigma - x**2))
    expected = f * x**2 / (sigma - x**2) ** 2
    assert bump_formula_dsigma(np.array([x]), sigma)[0] == pytest.approx(expected, rel=1e-14)
    assert bump_formula_dsigma(np.array([0.9]), sigma)[0] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": -0.1, "n": 5}, "sigma must be >= 0"),
        ({"sigma": float("nan"), "n": 5}, "sigma must be a finite number"),
        ({"sigma": True, "n": 5}, "sigma must be a finite number"),
        ({"sigma": 0.5, "n": 0}, "n must be an int >= 1"),
        ({"sigma": 0.5, "n": 2.0}, "n must be an int >= 1"),
        ({"sigma": 0.5, "n": 5, "x_range": (1.0, -1.0)}, "x_range must be two finite numbers"),
        ({"sigma": 0.5, "n": 5, "x_range": (0.0, np.inf)}, "x_range must be two finite numbers"),
        ({"sigma": 0.5, "n": 5, "seed": -1}, "seed must be an int >= 0"),
    ],
)
def test_make_bump_data_rejects_bad_arguments_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_bump_data(**kwargs)


def test_screen_drops_and_counts_nonfinite_and_huge_targets():
    x = np.arange(6, dtype=np.float32).reshape(-1, 1)
    y = np.array([[0.1], [np.nan], [np.inf], [5.0], [0.3], [-np.inf]], dtype=np.float32)
    kept_x, kept_y, report = screen(x, y)
    assert report == ScreenReport(kept=2, nonfinite=3, huge=1)
    assert report.dropped == 4
    np.testing.assert_array_equal(kept_x.ravel(), [0.0, 4.0])
    np.testing.assert_array_equal(kept_y.ravel(), np.array([0.1, 0.3], dtype=np.float32))


def test_screen_keeps_everything_generated_inside_the_unit_interval():
    x, y = make_bump_data(3.0, 300)
    _, _, report = screen(x, y)
    assert report == ScreenReport(kept=300, nonfinite=0, huge=0)


def test_screen_rejects_bad_arguments_by_name():
    with pytest.raises(ValueError, match="x and y must have the same number of rows"):
        screen(np.zeros((3, 1)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="limit must be a finite number > 0"):
        screen(np.zeros((3, 1)), np.zeros((3, 1)), limit=0)


def test_screen_default_limit_separates_bump_values_from_band_values():
    # The default limit 1 lies between every proper bump value (<= exp(-1)) and every value of
    # the formula in its unsafe band sqrt(sigma) < |x| < sigma (> 1), for any sigma > 1.
    for sigma in (1.05, 2.0, 3.0, 12.0):
        x = np.linspace(-sigma, sigma, 20001)[1:-1]
        y = bump_formula(x, sigma)
        band = x**2 > sigma
        assert np.all(y[band] > 1) and np.all(y[~band] <= np.exp(-1.0))
    x, y = make_bump_data(3.0, 1000, x_range=(-3.0, 3.0), seed=2)
    kept_x, _, report = screen(x, y)
    assert report.dropped > 0 and np.all(kept_x**2 < 3.0) and report.kept + report.dropped == 1000
    # float32 rounds exp(-1) up; the default limit keeps x = 0 all the same.
    assert np.float32(np.exp(-1.0)) > np.exp(-1.0)
    assert screen(np.zeros((1, 1)), bump_formula(np.zeros((1, 1)), 3.0).astype(np.float32))[2].kept


def test_screen_limits_its_docstring_states():
    # float32 rounds exp(-1) up, yet a limit of exactly exp(-1) keeps the x = 0 row: a Python
    # float limit is compared in the targets' float32.
    x0 = np.zeros((1, 1))
    y0 = bump_formula(x0, 3.0).astype(np.float32)
    assert float(y0[0, 0]) > math.exp(-1)
    assert screen(x0, y0, limit=math.exp(-1))[2].kept == 1
    # Near |x| = sigma the band value exp(1 / (sigma - 1)) rounds to exactly 1 in float32 only
    # for sigma above about 1.7e7; below, every band row is dropped.
    for sigma, kept in ((1.65e7, 0), (1.75e7, 1)):
        x = np.array([[0.999 * sigma]])
        assert screen(x, bump_formula(x, sigma).astype(np.float32))[2].kept == kept


def test_bump_stable_reference_matches_bump_stable_and_its_tape():
    x = tf.Variable([[-1.2, -0.4, 0.0, 0.3, 0.9, 1.5, 1.8]], dtype=tf.float64)
    sigma = tf.Variable([[0.5], [2.5]], dtype=tf.float64)
    with tf.GradientTape(persistent=True) as tape:
        f = bump_stable(x, sigma[0]), bump_stable(x, sigma[1])
    for row, out in enumerate(f):
        want = bump_stable_reference(x.numpy(), sigma.numpy()[row])
        np.testing.assert_allclose(want["values"], out.numpy(), rtol=1e-12)
        np.testing.assert_allclose(want["grad_x"], tape.gradient(out, x).numpy(), rtol=1e-10)
        grad_sigma = tape.gradient(out, sigma).numpy()[row, 0]
        np.testing.assert_allclose(want["grad_sigma"].sum(), grad_sigma, rtol=1e-10)
    # The band sqrt(sigma) < |x| < sigma is outside the stable bump's support.
    assert bump_stable_reference(1.8, 2.5)["values"] == 0.0
