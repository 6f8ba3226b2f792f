"""gradclinic.bump: values against the formula, gradients against df/dsigma, the NaN, the layers."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from gradclinic.bump import (
    GUARDS,
    BrokenBumpLayer,
    BumpLayer,
    SoftEdgeBumpLayer,
    bump_double_where,
    bump_naive,
    bump_soft_edge,
    bump_stable,
    loss_slopes,
)
from gradclinic.data import bump_formula, bump_formula_dsigma, make_bump_data
from gradclinic.train import fit_model

BUMPS = {"naive": bump_naive, "double_where": bump_double_where, "stable": bump_stable}


def value_and_sigma_grad(fn, x, sigma, dtype=tf.float64):
    """Per-element value and df/dsigma (one scalar x at a time, so sums do not mix elements)."""
    values, grads = [], []
    for xi in np.ravel(x):
        s = tf.Variable([sigma], dtype=dtype)
        with tf.GradientTape() as tape:
            out = fn(tf.constant([[xi]], dtype=dtype), s)
        values.append(float(out[0, 0]))
        grad = tape.gradient(out, s)
        grads.append(float(grad[0]))
    return np.array(values), np.array(grads)


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("sigma", [0.3, 0.8, 1.0, 2.5])
def test_values_and_gradients_match_the_formula_in_float64(guard, sigma):
    # Inside |x| < 1 and away from x^2 = sigma every guard is the plain formula.
    x = np.linspace(-0.99, 0.99, 41)
    x = x[np.abs(x**2 - sigma) > 0.05]
    values, grads = value_and_sigma_grad(BUMPS[guard], x, sigma)
    np.testing.assert_allclose(values, bump_formula(x, sigma), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(grads, bump_formula_dsigma(x, sigma), rtol=1e-9, atol=1e-300)


def test_dsigma_formula_matches_a_central_difference():
    x = np.array([-0.6, -0.1, 0.0, 0.25, 0.5])
    sigma, h = 0.7, 1e-6
    numeric = (bump_formula(x, sigma + h) - bump_formula(x, sigma - h)) / (2 * h)
    np.testing.assert_allclose(bump_formula_dsigma(x, sigma), numeric, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("guard", GUARDS)
def test_output_has_the_shape_of_x_for_scalar_and_shape_1_sigma(guard):
    x = tf.zeros((4, 3, 2))
    assert BUMPS[guard](x, 0.5).shape == (4, 3, 2)
    assert BUMPS[guard](x, tf.constant([0.5])).shape == (4, 3, 2)


def test_naive_gives_a_nan_gradient_next_to_the_singularity_in_float32():
    sigma = tf.Variable([0.5])
    with tf.GradientTape() as tape:
        out = bump_naive(tf.constant([[0.709]]), sigma)
    assert float(out[0, 0]) == 0.0  # the value is right
    assert np.isnan(float(tape.gradient(out, sigma)[0]))


@pytest.mark.parametrize("fn", [bump_double_where, bump_stable])
def test_double_where_and_stable_are_finite_where_naive_is_nan(fn):
    sigma = tf.Variable([0.5])
    with tf.GradientTape() as tape:
        out = fn(tf.constant([[0.709], [0.3]]), sigma)
    grad = float(tape.gradient(out, sigma)[0])
    expected = float(bump_formula_dsigma(np.array([0.3]), 0.5)[0])
    assert np.isfinite(grad)
    assert grad == pytest.approx(expected, rel=1e-4)


def test_double_where_overflows_for_x_beyond_sqrt_sigma_inside_the_support():
    # What the double tf.where does not cover (chapter 3 closes on it): sigma=2, x=1.42.
    assert np.isinf(float(bump_double_where(tf.constant([[1.42]]), 2.0)[0, 0]))


# float32 rounds sigma - x^2 near the singularity; the exponent then magnifies it a little.
@pytest.mark.parametrize(
    ("dtype", "rtol", "atol"), [(tf.float32, 1e-4, 1e-7), (tf.float64, 1e-10, 1e-300)]
)
def test_stable_is_finite_for_every_x_and_sigma_including_zero(dtype, rtol, atol):
    xs = np.linspace(-10, 10, 401)
    x = tf.constant(xs.reshape(-1, 1), dtype=dtype)
    for sigma_value in np.concatenate([[0.0], np.linspace(0.05, 10, 40)]):
        sigma = tf.Variable([sigma_value], dtype=dtype)
        xv = tf.Variable(x)
        with tf.GradientTape(persistent=True) as tape:
            out = bump_stable(xv, sigma)
            total = tf.reduce_sum(out)
        assert np.all(np.isfinite(out.numpy())), f"sigma={sigma_value}"
        assert np.isfinite(float(tape.gradient(total, sigma)[0])), f"sigma={sigma_value}"
        assert np.all(np.isfinite(tape.gradient(total, xv).numpy())), f"sigma={sigma_value}"
        del tape
        # Where the formula is finite and applies (|x| < sigma, x^2 < sigma) the values agree.
        # A margin keeps float32 rounding at the two boundaries out of the comparison.
        formula = bump_formula(xs, sigma_value)
        usable = (np.abs(xs) < sigma_value - 1e-6) & (xs**2 < sigma_value - 1e-6)
        masked = (np.abs(xs) > sigma_value + 1e-6) | (xs**2 > sigma_value + 1e-6)
        np.testing.assert_allclose(
            out.numpy().ravel()[usable], formula[usable], rtol=rtol, atol=atol
        )
        assert np.all(out.numpy().ravel()[masked] == 0.0)


def test_double_where_gradient_is_nan_at_sigma_zero_but_stable_is_not():
    x = tf.constant([[0.3]])
    for fn, finite in ((bump_double_where, False), (bump_stable, True)):
        sigma = tf.Variable([0.0])
        with tf.GradientTape() as tape:
            out = fn(x, sigma)
        assert bool(np.isfinite(float(tape.gradient(out, sigma)[0]))) is finite, fn.__name__


def test_bad_inputs_raise_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match="x must be a floating-point tensor"):
        bump_stable(tf.constant([1, 2]), 0.5)
    with pytest.raises(ValueError, match=r"sigma must be a scalar or shape \(1,\)"):
        bump_stable(tf.constant([0.1, 0.2]), tf.constant([0.5, 0.6]))
    with pytest.raises(ValueError, match="guard must be one of stable, double_where, naive"):
        BumpLayer(guard="single")
    with pytest.raises(ValueError, match="initial_sigma must be > 0"):
        BumpLayer(initial_sigma=0.0)


def test_bump_layer_config_round_trip():
    layer = BumpLayer(guard="double_where", initial_sigma=0.25, name="bump")
    config = layer.get_config()
    assert config["guard"] == "double_where" and config["initial_sigma"] == 0.25
    clone = BumpLayer.from_config(config)
    assert (clone.guard, clone.initial_sigma, clone.name) == ("double_where", 0.25, "bump")


def test_bump_layer_keras_save_and_load(tmp_path):
    model = keras.Sequential([keras.Input(shape=(1,)), BumpLayer("naive", initial_sigma=0.3)])
    model.layers[-1].sigma.assign([0.45])
    path = tmp_path / "bump.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.layers[-1]
    assert isinstance(layer, BumpLayer) and layer.guard == "naive"
    assert float(layer.sigma.numpy()[0]) == pytest.approx(0.45)
    x = np.linspace(-1, 1, 9, dtype=np.float32).reshape(-1, 1)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy())


def test_bump_layer_sigma_is_non_negative_after_an_update():
    layer = BumpLayer(initial_sigma=0.1)
    layer.build((None, 1))
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    optimizer.apply_gradients([(tf.constant([5.0]), layer.sigma)])
    assert float(layer.sigma.numpy()[0]) == 0.0


def test_broken_layer_never_connects_its_threshold():
    layer = BrokenBumpLayer()
    sample = tf.constant([[0.3]])
    with tf.GradientTape() as tape:
        out = layer(sample)
    assert tape.gradient(out, layer.threshold_level) is None


def test_broken_layer_in_fit_raises_no_gradients():
    x, y = make_bump_data(0.5, 64)
    model = keras.Sequential([keras.Input(shape=(1,)), BrokenBumpLayer()])
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="No gradients provided for any variable"):
        model.fit(x, y, epochs=1, verbose=0)


def test_broken_layer_cannot_choose_per_element():
    with pytest.raises(ValueError, match="truth value of an array with more than one element"):
        BrokenBumpLayer()(tf.constant([[0.1], [0.9]]))


def population_grid(n=20_000, teacher_sigma=0.5):
    """A midpoint grid standing for x ~ U(-1, 1), with the teacher bump's targets."""
    x = ((np.arange(n) + 0.5) / n * 2 - 1).reshape(-1, 1)
    return x, bump_formula(x, teacher_sigma)


def test_the_tape_misses_the_moving_edge_for_sigma_below_one():
    # Chapter 2's claim: at sigma = 0.3 the loss falls about 30 times faster than the tape says.
    x, y = population_grid()
    difference, tape = loss_slopes(bump_stable, x, y, 0.3)
    assert difference == pytest.approx(-0.087, abs=5e-4)
    assert tape == pytest.approx(-0.00286, abs=5e-5)
    # The missing part is the edge term: squared error just inside minus just outside.
    edge, target = np.exp(-1 / 0.7), float(bump_formula(np.array([0.3]), 0.5)[0])
    assert difference - tape == pytest.approx((edge - target) ** 2 - target**2, rel=2e-3)


def test_the_tape_sees_the_whole_slope_when_the_edge_lies_outside_the_data():
    x, y = population_grid()
    difference, tape = loss_slopes(bump_stable, x, y, 1.5)
    assert tape == pytest.approx(difference, rel=1e-3)


@pytest.mark.parametrize("sigma", [0.1, 0.3, 0.7, 1.5])
def test_soft_edge_tape_gradient_equals_its_finite_difference(sigma):
    x, y = population_grid()
    difference, tape = loss_slopes(lambda u, s: bump_soft_edge(u, s, 0.02), x, y, sigma)
    assert tape == pytest.approx(difference, rel=2e-3, abs=1e-6)


def test_soft_edge_is_the_stable_bump_away_from_the_edge_and_finite_everywhere():
    x = np.linspace(-3, 3, 601).reshape(-1, 1)
    for sigma_value in [0.0, 0.05, 0.3, 0.9, 2.0, 6.0]:
        sigma = tf.Variable([sigma_value], dtype=tf.float64)
        with tf.GradientTape() as tape:
            out = bump_soft_edge(tf.constant(x), sigma, 0.01)
            total = tf.reduce_sum(out)
        assert np.all(np.isfinite(out.numpy()))
        assert np.isfinite(float(tape.gradient(total, sigma)[0]))
        far = np.abs(np.abs(x) - sigma_value) > 0.2
        stable = bump_stable(tf.constant(x), sigma_value).numpy()
        np.testing.assert_allclose(out.numpy()[far], stable[far], rtol=1e-6, atol=1e-12)


def test_soft_edge_rejects_a_bad_temperature_and_loss_slopes_an_unused_sigma():
    for bad in (0.0, -0.1, float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            bump_soft_edge(tf.constant([0.1]), 0.5, bad)
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            SoftEdgeBumpLayer(temperature=bad)
    x, y = population_grid(100)
    with pytest.raises(ValueError, match="bump must use sigma"):
        loss_slopes(lambda u, s: tf.zeros_like(u), x, y, 0.3)
    with pytest.raises(ValueError, match="step must be a number in"):
        loss_slopes(bump_stable, x, y, 0.3, step=0.0)
    with pytest.raises(ValueError, match="sigma must be a number >= 0"):
        loss_slopes(bump_stable, x, y, -0.1)


def test_soft_edge_layer_round_trips_and_learns_where_the_hard_one_drifts_away():
    layer = SoftEdgeBumpLayer(temperature=0.05, initial_sigma=0.3, name="soft")
    clone = SoftEdgeBumpLayer.from_config(layer.get_config())
    assert (clone.temperature, clone.initial_sigma, clone.name) == (0.05, 0.3, "soft")
    # Targets 0.8 times the teacher's: the tape's gradient of the hard bump points to smaller
    # sigma at sigma = 0.3 although the loss falls towards larger sigma (chapter 2).
    x, y = make_bump_data(0.5, 100)
    y = 0.8 * y
    finals = {}
    for name, bump_layer in (
        ("hard", BumpLayer("stable", initial_sigma=0.3)),
        ("soft", SoftEdgeBumpLayer(0.02, initial_sigma=0.3)),
    ):
        model = keras.Sequential([keras.Input(shape=(1,)), bump_layer])
        fit_model(model, x, y, epochs=30, learning_rate=0.01)
        finals[name] = float(bump_layer.sigma.numpy()[0])
    assert finals["hard"] < 0.2 < 0.4 < finals["soft"] < 0.55
