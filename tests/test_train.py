"""gradclinic.train and gradclinic.reparam: training counts NaN steps, and log sigma learns fast."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from gradclinic.bump import BumpLayer, bump_stable
from gradclinic.data import make_bump_data
from gradclinic.reparam import ReparamBumpLayer
from gradclinic.train import (
    FitResult,
    TrainResult,
    epochs_to_reach,
    fit_model,
    fit_sigma,
    make_bump_model,
)


def test_naive_guard_reports_nonfinite_steps_and_stable_learns_sigma() -> None:
    x, y = make_bump_data(0.5, 400, seed=0)
    naive = fit_sigma(x, y, guard="naive", epochs=3)
    stable = fit_sigma(x, y, guard="stable", epochs=8)
    assert naive.nonfinite_grad_steps > 0 and naive.first_nonfinite is not None
    assert np.isnan(naive.final_sigma)
    assert not stable.any_nonfinite
    assert stable.final_sigma == pytest.approx(0.5, rel=0.02)
    assert stable.sigma.shape == (9,) and stable.loss.shape == (8,)
    assert stable.sigma[0] == pytest.approx(0.1)


@pytest.mark.parametrize("parametrisation", ["log", "softplus"])
def test_reparam_layer_starts_at_initial_sigma_and_trains_its_raw_weight(
    parametrisation: str,
) -> None:
    model = make_bump_model("stable", initial_sigma=0.3, parametrisation=parametrisation)
    layer = model.layers[-1]
    assert isinstance(layer, ReparamBumpLayer)
    assert float(layer.sigma.numpy()[0]) == pytest.approx(0.3, rel=1e-5)
    assert [v.path.split("/")[-1] for v in model.trainable_variables] == ["raw_sigma"]
    x = tf.constant([[0.2]])
    want = np.exp(-0.3 / (0.3 - 0.04))
    assert float(model(x)[0, 0]) == pytest.approx(want, rel=1e-5)
    with tf.GradientTape() as tape:
        out = model(x)
    (grad,) = tape.gradient(out, model.trainable_variables)
    assert grad is not None and np.isfinite(grad.numpy()).all()


@pytest.mark.parametrize("sigma", [1e-3, 29.0, 31.0, 1e4])
def test_softplus_layer_starts_at_small_and_huge_sigma(sigma: float) -> None:
    layer = make_bump_model("stable", sigma, "softplus").layers[-1]
    assert float(layer.sigma.numpy()[0]) == pytest.approx(sigma, rel=1e-5)


def test_reparam_layer_round_trips_through_its_config() -> None:
    layer = ReparamBumpLayer("softplus", "double_where", initial_sigma=2.0)
    clone = ReparamBumpLayer.from_config(layer.get_config())
    assert (clone.parametrisation, clone.guard, clone.initial_sigma) == (
        "softplus",
        "double_where",
        2.0,
    )


def test_log_sigma_learns_sigma_10_where_plain_sigma_does_not() -> None:
    x, y = make_bump_data(10.0, 1000, seed=1)
    rate = keras.optimizers.schedules.ExponentialDecay(0.1, 32, 0.8)
    log_run = fit_sigma(
        x,
        y,
        epochs=15,
        parametrisation="log",
        optimizer=keras.optimizers.Adam(rate, beta_1=0.5, beta_2=0.9),
    )
    plain_run = fit_sigma(x, y, epochs=15)
    assert epochs_to_reach(log_run, 10.0) is not None
    assert epochs_to_reach(plain_run, 10.0) is None
    assert plain_run.final_sigma < 5


def test_epochs_to_reach_counts_from_the_last_miss() -> None:
    run = TrainResult(np.array([0.1, 0.5, 1.02, 0.995, 1.003]), np.zeros(4), 0, 0)
    assert epochs_to_reach(run, 1.0) == 3
    assert epochs_to_reach(run, 1.0, rel_tol=0.05) == 2
    assert epochs_to_reach(run, 2.0) is None
    with pytest.raises(ValueError, match="true_sigma"):
        epochs_to_reach(run, 0.0)


def test_fit_model_trains_any_model_and_counts_nan_steps() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(256, 2)).astype(np.float32)
    y = x @ np.array([[2.0], [-1.0]], dtype=np.float32)
    model = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(1)])
    seen = []
    fit = fit_model(model, x, y, epochs=20, learning_rate=0.1, on_epoch_end=lambda: seen.append(1))
    assert len(seen) == 20 and fit.loss.shape == (20,)
    assert fit.loss[-1] < 1e-3 * fit.loss[0]
    assert fit.nonfinite_grad_steps == fit.nonfinite_loss_steps == 0
    bad = np.full_like(y, np.nan)
    broken = fit_model(
        keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(1)]), x, bad, epochs=1
    )
    assert broken.nonfinite_loss_steps == 8 and broken.first_nonfinite == (0, 0)


def test_early_stop_keeps_epochs_to_reach_and_saves_epochs() -> None:
    x, y = make_bump_data(1.0, 1000, seed=1)
    full = fit_sigma(x, y, epochs=20)
    stopped = fit_sigma(x, y, epochs=20, target_sigma=1.0, patience=4)
    reached = epochs_to_reach(full, 1.0)
    assert reached is not None and reached + 4 < 20
    # Stops after the 4th epoch in a row within 1 %, on the same trajectory as the full run.
    assert len(stopped.sigma) == reached + 4 and stopped.loss.shape == (reached + 3,)
    np.testing.assert_allclose(stopped.sigma, full.sigma[: len(stopped.sigma)])
    assert epochs_to_reach(stopped, 1.0) == reached


def test_fit_model_stops_when_on_epoch_end_returns_true() -> None:
    x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(-1, 1)
    model = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(1)])
    calls = []
    fit = fit_model(
        model, x, 2 * x, epochs=10, on_epoch_end=lambda: calls.append(1) or len(calls) == 3
    )
    assert len(calls) == 3 and fit.loss.shape == (3,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"guard": "none"}, "guard"),
        ({"parametrisation": "cube"}, "parametrisation"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"optimizer": keras.optimizers.SGD}, "optimizer"),
        ({"target_sigma": 0.0}, "target_sigma"),
        ({"patience": 0}, "patience"),
        ({"rel_tol": -0.01}, "rel_tol"),
    ],
)
def test_fit_sigma_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    x, y = make_bump_data(0.5, 10)
    with pytest.raises(ValueError, match=match):
        fit_sigma(x, y, **kwargs)


def test_plain_model_keeps_the_bump_layer() -> None:
    layer = make_bump_model("double_where", 0.2).layers[-1]
    assert type(layer) is BumpLayer and layer.guard == "double_where"


def _sigma_by_fit_model(x, y, guard, **kwargs) -> tuple[np.ndarray, FitResult]:
    # The same training on a model of its own: a new traced loop, nothing shared.
    model = make_bump_model(guard, kwargs.pop("initial_sigma", 0.1))
    sigmas = [float(model.layers[-1].sigma.numpy()[0])]
    fit = fit_model(
        model,
        x,
        y,
        on_epoch_end=lambda: sigmas.append(float(model.layers[-1].sigma.numpy()[0])),
        **kwargs,
    )
    return np.array(sigmas), fit


def test_fit_sigma_runs_share_a_loop_without_sharing_state() -> None:
    x, y = make_bump_data(0.5, 1000, seed=0)
    first = fit_sigma(x, y, guard="double_where", epochs=4, learning_rate=0.03, initial_sigma=0.3)
    # Another run on the same guard in between: other data size, start, rate, batch size, seed.
    x_other, y_other = make_bump_data(2.0, 300, seed=5)
    other = fit_sigma(
        x_other, y_other, guard="double_where", epochs=3, batch_size=20, initial_sigma=1.5, seed=2
    )
    again = fit_sigma(x, y, guard="double_where", epochs=4, learning_rate=0.03, initial_sigma=0.3)
    np.testing.assert_array_equal(again.sigma, first.sigma)
    np.testing.assert_array_equal(again.loss, first.loss)
    assert again.sigma[0] == np.float32(0.3) and other.sigma[0] == np.float32(1.5)
    alone_sigma, alone = _sigma_by_fit_model(
        x, y, "double_where", epochs=4, learning_rate=0.03, initial_sigma=0.3
    )
    np.testing.assert_array_equal(first.sigma, alone_sigma)
    np.testing.assert_array_equal(first.loss, alone.loss)
    alone_sigma, _ = _sigma_by_fit_model(
        x_other, y_other, "double_where", epochs=3, batch_size=20, initial_sigma=1.5, seed=2
    )
    np.testing.assert_array_equal(other.sigma, alone_sigma)


def test_fit_sigma_after_a_nan_run_starts_clean() -> None:
    # Inside (-0.4, 0.4) every input is selected, so even the naive guard stays finite.
    x_inside, y_inside = make_bump_data(0.5, 400, x_range=(-0.4, 0.4), seed=0)
    clean = fit_sigma(x_inside, y_inside, guard="naive", epochs=2, initial_sigma=0.45)
    assert not clean.any_nonfinite
    x, y = make_bump_data(0.5, 400, seed=0)
    assert np.isnan(fit_sigma(x, y, guard="naive", epochs=3).final_sigma)
    after = fit_sigma(x_inside, y_inside, guard="naive", epochs=2, initial_sigma=0.45)
    np.testing.assert_array_equal(after.sigma, clean.sigma)
    assert not after.any_nonfinite


def test_sgd_takes_the_plain_gradient_step() -> None:
    x, y = make_bump_data(0.5, 64, seed=3)
    sigma = tf.Variable([0.4])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            (bump_stable(tf.constant(x.reshape(-1, 1)), sigma) - y.reshape(-1, 1)) ** 2
        )
    want = 0.4 - 0.5 * float(tape.gradient(loss, sigma)[0])
    # One batch of all 64 points is one step: sigma <- sigma - rate * dloss/dsigma.
    by_name = fit_sigma(
        x, y, epochs=1, batch_size=64, learning_rate=0.5, initial_sigma=0.4, optimizer="sgd"
    )
    assert by_name.sigma[1] == pytest.approx(want, rel=1e-5)
    by_object = fit_sigma(
        x, y, epochs=1, batch_size=64, initial_sigma=0.4, optimizer=keras.optimizers.SGD(0.5)
    )
    assert by_object.sigma[1] == by_name.sigma[1]
    adam = fit_sigma(x, y, epochs=1, batch_size=64, learning_rate=0.5, initial_sigma=0.4)
    assert adam.sigma[1] != pytest.approx(want, rel=1e-3)
    sigma_sgd, _ = _sigma_by_fit_model(
        x,
        y,
        "stable",
        epochs=1,
        batch_size=64,
        learning_rate=0.5,
        initial_sigma=0.4,
        optimizer="sgd",
    )
    assert sigma_sgd[1] == by_name.sigma[1]


def test_fit_sigma_does_not_share_a_loop_between_optimizer_settings() -> None:
    x, y = make_bump_data(1.0, 200, seed=0)
    momentum = fit_sigma(x, y, epochs=3, optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    plain = fit_sigma(x, y, epochs=3, optimizer=keras.optimizers.SGD(0.05))
    alone, _ = _sigma_by_fit_model(x, y, "stable", epochs=3, optimizer=keras.optimizers.SGD(0.05))
    np.testing.assert_array_equal(plain.sigma, alone)
    assert not np.array_equal(momentum.sigma, plain.sigma)


def test_an_optimizer_passed_to_fit_sigma_is_the_one_that_trains_and_is_then_used_up() -> None:
    x, y = make_bump_data(0.5, 50)
    adam = keras.optimizers.Adam(0.01)
    result = fit_sigma(x, y, epochs=3, optimizer=adam)
    # 50 points in batches of 32: 2 steps per epoch, all taken by the caller's optimizer.
    assert int(adam.iterations) == 6
    by_name = fit_sigma(x, y, epochs=3, learning_rate=0.01, optimizer="adam")
    np.testing.assert_allclose(result.sigma, by_name.sigma, rtol=1e-6)
    with pytest.raises(ValueError, match="optimizer must be fresh"):
        fit_sigma(x, y, epochs=1, optimizer=adam)


def test_runs_with_equal_fresh_optimizers_share_a_graph_but_not_their_state() -> None:
    first_x, first_y = make_bump_data(2.0, 100, seed=1)
    x, y = make_bump_data(0.5, 100, seed=2)
    fit_sigma(first_x, first_y, epochs=3, optimizer=keras.optimizers.Adam(0.01, beta_2=0.9))
    second = fit_sigma(x, y, epochs=3, optimizer=keras.optimizers.Adam(0.01, beta_2=0.9))
    alone, _ = _sigma_by_fit_model(
        x, y, "stable", epochs=3, optimizer=keras.optimizers.Adam(0.01, beta_2=0.9)
    )
    np.testing.assert_allclose(second.sigma, alone, rtol=1e-6)
