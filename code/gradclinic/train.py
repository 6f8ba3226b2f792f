"""Fit a one-layer bump model to recover sigma, reporting every non-finite loss or gradient."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from gradclinic.bump import GUARDS, BumpLayer, Guard


@dataclass
class TrainResult:
    """Sigma after each epoch (index 0 is the initial value), mean loss per epoch, NaN/inf counts."""

    sigma: np.ndarray
    loss: np.ndarray
    nonfinite_loss_steps: int
    nonfinite_grad_steps: int
    first_nonfinite: tuple[int, int] | None = field(default=None)

    @property
    def any_nonfinite(self) -> bool:
        """True when any step produced a NaN/inf loss or gradient."""
        return self.nonfinite_loss_steps > 0 or self.nonfinite_grad_steps > 0

    @property
    def final_sigma(self) -> float:
        """Sigma after the last epoch (NaN if training blew up)."""
        return float(self.sigma[-1])


def make_bump_model(guard: Guard = "stable", initial_sigma: float = 0.1) -> keras.Model:
    """A model with one BumpLayer on inputs of shape (1,)."""
    return keras.Sequential(
        [keras.Input(shape=(1,)), BumpLayer(guard, initial_sigma=initial_sigma)]
    )


def fit_sigma(
    x: np.ndarray,
    y: np.ndarray,
    guard: Guard = "stable",
    epochs: int = 5,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    initial_sigma: float = 0.1,
    seed: int = 0,
) -> TrainResult:
    """Train a fresh one-layer bump model with Adam and MSE; NaN/inf steps are counted, not hidden."""
    if guard not in GUARDS:
        raise ValueError(f"guard must be one of {', '.join(GUARDS)}; got {guard!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    x = np.asarray(x, dtype=np.float32).reshape(-1, 1)
    y = np.asarray(y, dtype=np.float32).reshape(-1, 1)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"x and y must have the same, non-zero number of rows, got {len(x)} and {len(y)}"
        )

    model = make_bump_model(guard, initial_sigma)
    layer = model.layers[-1]
    optimizer = keras.optimizers.Adam(learning_rate)
    loss_fn = keras.losses.MeanSquaredError()

    @tf.function
    def step(xb: tf.Tensor, yb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        grads_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        # Applied even when non-finite, as model.fit would: the reader sees sigma turn NaN.
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, tf.math.is_finite(loss), grads_finite

    rng = np.random.default_rng(seed)
    sigmas = [float(layer.sigma.numpy()[0])]
    epoch_losses: list[float] = []
    bad_loss = bad_grad = 0
    first: tuple[int, int] | None = None
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        losses = []
        for batch, start in enumerate(range(0, len(x), batch_size)):
            idx = order[start : start + batch_size]
            loss, loss_ok, grad_ok = step(tf.constant(x[idx]), tf.constant(y[idx]))
            losses.append(float(loss))
            if not bool(loss_ok):
                bad_loss += 1
            if not bool(grad_ok):
                bad_grad += 1
            if first is None and not (bool(loss_ok) and bool(grad_ok)):
                first = (epoch, batch)
        sigmas.append(float(layer.sigma.numpy()[0]))
        epoch_losses.append(float(np.mean(losses)))
    return TrainResult(np.array(sigmas), np.array(epoch_losses), bad_loss, bad_grad, first)
