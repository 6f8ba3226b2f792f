"""The generalised bump f(x) = exp(-sigma / (sigma - x^2)) for |x| < sigma, else 0.

sigma is the threshold of the comparison |x| < sigma, not the bump's width: the formula is a
bump only where x^2 < sigma, so bump_stable is non-zero on |x| < min(sigma, sqrt(sigma)).
Three guards against NaN, a soft-edge relaxation, and the slopes of a loss in sigma.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import keras
import tensorflow as tf

Guard = Literal["stable", "double_where", "naive"]
GUARDS: tuple[str, ...] = ("stable", "double_where", "naive")


def _as_inputs(x: Any, sigma: Any) -> tuple[tf.Tensor, tf.Tensor]:
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise ValueError(
            f"x must be a floating-point tensor, got dtype {x.dtype.name}"
        )
    sigma = tf.convert_to_tensor(sigma, dtype=x.dtype)
    if sigma.shape.rank is not None and sigma.shape.num_elements() != 1:
        raise ValueError(
            f"sigma must be a scalar or shape (1,), got shape {sigma.shape}"
        )
    return x, tf.reshape(sigma, [])


def bump_naive(x: Any, sigma: Any) -> tf.Tensor:
    """One tf.where: right values, NaN gradient where unselected x overflow."""
    x, sigma = _as_inputs(x, sigma)
    inside = tf.abs(x) < sigma
    return tf.where(
        inside, tf.exp(-sigma / (sigma - tf.square(x))), tf.zeros_like(x)
    )


def bump_double_where(x: Any, sigma: Any) -> tf.Tensor:
    """Two tf.where: unselected x become 0 first, so their branch stays finite.

    Not covered: |x| > sqrt(sigma) inside the support (sigma > 1), and
    sigma = 0, where the substitute x = 0 makes the formula -0/0.
    """
    x, sigma = _as_inputs(x, sigma)
    inside = tf.abs(x) < sigma
    safe_x = tf.where(inside, x, tf.zeros_like(x))
    return tf.where(
        inside, tf.exp(-sigma / (sigma - tf.square(safe_x))), tf.zeros_like(x)
    )


def bump_stable(x: Any, sigma: Any) -> tf.Tensor:
    """Finite values and gradients for any finite x and sigma >= 0."""
    x, sigma = _as_inputs(x, sigma)
    gap = sigma - tf.square(x)
    # For sigma > 1 the band sqrt(sigma) < |x| < sigma is inside the support but
    # has gap < 0, where the formula overflows; it is masked out like the region
    # outside the support, so the bump also requires x^2 < sigma.
    inside = tf.logical_and(tf.abs(x) < sigma, gap > 0)
    # 1 keeps the unselected branch finite (exp(-sigma)), also at sigma = 0,
    # where gap = 0.
    safe_gap = tf.where(inside, gap, tf.ones_like(gap))
    return tf.where(inside, tf.exp(-sigma / safe_gap), tf.zeros_like(x))


def _check_temperature(temperature: Any) -> None:
    if isinstance(temperature, bool) or not isinstance(
        temperature, int | float
    ):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature!r}"
        )
    if not 0 < temperature < float("inf"):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature!r}"
        )


def bump_soft_edge(x: Any, sigma: Any, temperature: float = 0.02) -> tf.Tensor:
    """bump_stable whose jump at |x| = sigma is a sigmoid, width temperature."""
    _check_temperature(temperature)
    x, sigma = _as_inputs(x, sigma)
    gap = sigma - tf.square(x)
    usable = gap > 0
    safe_gap = tf.where(usable, gap, tf.ones_like(gap))
    # The formula tends to 0 as x^2 -> sigma from inside, so this part has no
    # jump in sigma; the sigmoid removes the jump at |x| = sigma, which autodiff
    # cannot see.
    body = tf.where(usable, tf.exp(-sigma / safe_gap), tf.zeros_like(x))
    return body * tf.sigmoid((sigma - tf.abs(x)) / temperature)


def loss_slopes(
    bump: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    x: Any,
    y: Any,
    sigma: float,
    step: float = 1e-2,
) -> tuple[float, float]:
    """d/dsigma of mean((bump(x, sigma) - y)^2): by differences, by the tape."""
    if not callable(bump):
        raise ValueError(
            f"bump must be a function bump(x, sigma), got {bump!r}"
        )
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, int | float)
        or not sigma >= 0
    ):
        raise ValueError(f"sigma must be a number >= 0, got {sigma!r}")
    if (
        isinstance(step, bool)
        or not isinstance(step, int | float)
        or not 0 < step < 1
    ):
        raise ValueError(f"step must be a number in (0, 1), got {step!r}")
    # float64 so that the difference quotient measures the slope, not rounding.
    x = tf.constant(x, dtype=tf.float64)
    y = tf.constant(y, dtype=tf.float64)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {x.shape} and {y.shape}"
        )

    def loss(s: Any) -> tf.Tensor:
        return tf.reduce_mean(tf.square(bump(x, s) - y))

    # Below sigma = step the difference is one-sided: sigma < 0 means nothing.
    low = max(sigma - step, 0.0)
    high = sigma + step
    rise = float(loss(tf.constant(high, tf.float64))) - float(
        loss(tf.constant(low, tf.float64))
    )
    difference = rise / (high - low)
    variable = tf.Variable(float(sigma), dtype=tf.float64)
    with tf.GradientTape() as tape:
        value = loss(variable)
    gradient = tape.gradient(value, variable)
    if gradient is None:
        raise ValueError(
            "bump must use sigma in its output; the tape's gradient is None"
        )
    return difference, float(gradient)


_BUMPS = {
    "stable": bump_stable,
    "double_where": bump_double_where,
    "naive": bump_naive,
}


# The question's two branch functions, kept as written (adapted from a Stack Overflow question,
# CC BY-SA 4.0): neither uses the threshold, which is the bug chapter 1 studies.
def f_True(x: tf.Tensor) -> tf.Tensor:
    """The question's bump branch: exp(-1 / (1 - x^2)), with no sigma in it."""
    bump_value = 1 - tf.math.pow(x, 2)
    bump_value = -tf.math.pow(bump_value, -1)
    bump_value = tf.math.exp(bump_value)
    return bump_value


def f_False(x: tf.Tensor) -> tf.Tensor:
    """The question's zero branch."""
    x_out = 0 * x
    return x_out


@keras.saving.register_keras_serializable(package="gradclinic")
class BrokenBumpLayer(keras.layers.Layer):
    """The question's layer: its threshold feeds tf.cond, never the output."""

    def build(self, input_shape: Any) -> None:
        self.threshold_level = self.add_weight(
            name="threshlevel",
            shape=[1],
            initializer="GlorotUniform",
            trainable=True,
        )

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        the_logic = tf.math.less(inputs, self.threshold_level)
        return tf.cond(
            the_logic, lambda: f_True(inputs), lambda: f_False(inputs)
        )


@keras.saving.register_keras_serializable(package="gradclinic")
class BumpLayer(keras.layers.Layer):
    """Element-wise bump, trainable sigma >= 0; guard picks the NaN guard."""

    def __init__(
        self, guard: Guard = "stable", initial_sigma: float = 0.1, **kwargs: Any
    ):
        super().__init__(**kwargs)
        if guard not in _BUMPS:
            raise ValueError(
                f"guard must be one of {', '.join(GUARDS)}; got {guard!r}"
            )
        if not initial_sigma > 0:
            raise ValueError(
                f"initial_sigma must be > 0, got {initial_sigma!r}"
            )
        self.guard = guard
        self.initial_sigma = float(initial_sigma)

    def build(self, input_shape: Any) -> None:
        self.sigma = self.add_weight(
            name="sigma",
            shape=(1,),
            initializer=keras.initializers.Constant(self.initial_sigma),
            constraint=keras.constraints.NonNeg(),
            trainable=True,
        )

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return _BUMPS[self.guard](inputs, self.sigma)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "guard": self.guard,
            "initial_sigma": self.initial_sigma,
        }


@keras.saving.register_keras_serializable(package="gradclinic")
class SoftEdgeBumpLayer(BumpLayer):
    """BumpLayer whose edge at |x| = sigma is the sigmoid of bump_soft_edge (fixed temperature)."""

    def __init__(
        self,
        temperature: float = 0.02,
        initial_sigma: float = 0.1,
        **kwargs: Any,
    ):
        # The guard is the soft edge itself; "stable" only records what it builds on.
        kwargs.pop("guard", None)
        super().__init__("stable", initial_sigma=initial_sigma, **kwargs)
        _check_temperature(temperature)
        self.temperature = float(temperature)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return bump_soft_edge(inputs, self.sigma, self.temperature)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature}
