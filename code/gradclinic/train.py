"""Fit a one-layer bump model to recover sigma, reporting every non-finite loss or gradient."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gradclinic.bump import GUARDS, BumpLayer, Guard
from gradclinic.reparam import PARAMETRISATIONS, Parametrisation, ReparamBumpLayer


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


def make_bump_model(
    guard: Guard = "stable", initial_sigma: float = 0.1, parametrisation: Parametrisation = "plain"
) -> keras.Model:
    """A model with one bump layer on inputs of shape (1,); "plain" trains sigma itself."""
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(
            f"parametrisation must be one of {', '.join(PARAMETRISATIONS)}; got {parametrisation!r}"
        )
    if parametrisation == "plain":
        layer = BumpLayer(guard, initial_sigma=initial_sigma)
    else:
        layer = ReparamBumpLayer(parametrisation, guard, initial_sigma=initial_sigma)
    return keras.Sequential([keras.Input(shape=(1,)), layer])


def _sigma_of(layer: BumpLayer) -> float:
    # A plain layer's sigma is a variable, a reparametrised layer's a tensor computed from it.
    return float(np.asarray(layer.sigma).reshape(-1)[0])


def epochs_to_reach(result: TrainResult, true_sigma: float, rel_tol: float = 0.01) -> int | None:
    """First epoch from which sigma stays within rel_tol of true_sigma to the end, else None."""
    if not true_sigma > 0:
        raise ValueError(f"true_sigma must be > 0, got {true_sigma!r}")
    if not rel_tol > 0:
        raise ValueError(f"rel_tol must be > 0, got {rel_tol!r}")
    close = np.abs(result.sigma - true_sigma) <= rel_tol * true_sigma
    if not close[-1]:
        return None
    # "Stays": an overshoot that passes through the target on its way does not count.
    off = np.flatnonzero(~close)
    return 0 if off.size == 0 else int(off[-1]) + 1


@dataclass
class FitResult:
    """Mean loss per epoch and how many steps had a NaN/inf loss or gradient (first at (epoch, batch))."""

    loss: np.ndarray
    nonfinite_loss_steps: int
    nonfinite_grad_steps: int
    first_nonfinite: tuple[int, int] | None = field(default=None)


def _check_fit_arguments(
    epochs: int, batch_size: int, learning_rate: float, optimizer: Any
) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if optimizer is not None and not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(f"optimizer must be a keras Optimizer or None, got {optimizer!r}")
    if optimizer is not None and optimizer.built:
        raise ValueError(
            "optimizer must be fresh (not used before): its state belongs to one model"
        )


def fit_model(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int = 5,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    seed: int = 0,
    optimizer: keras.optimizers.Optimizer | None = None,
    on_epoch_end: Callable[[], bool | None] | None = None,
) -> FitResult:
    """Train a built model with MSE on (n, k) arrays; NaN/inf steps are counted, not hidden.

    The optimizer defaults to Adam(learning_rate); pass a fresh one to compare optimizers.
    on_epoch_end is called after every epoch, e.g. to record a weight; returning True stops
    training there, so the result may hold fewer than `epochs` epochs.
    """
    _check_fit_arguments(epochs, batch_size, learning_rate, optimizer)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"x and y must have the same, non-zero number of rows, got {len(x)} and {len(y)}"
        )
    if optimizer is None:
        optimizer = keras.optimizers.Adam(learning_rate)
    loss_fn = keras.losses.MeanSquaredError()
    n_batches = -(-len(x) // batch_size)

    @tf.function
    def run_epoch(xs: tf.Tensor, ys: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        # One graph call per epoch instead of one per batch: the Python overhead per step
        # would otherwise dominate models this small.
        losses = tf.TensorArray(tf.float32, size=n_batches)
        loss_ok = tf.TensorArray(tf.bool, size=n_batches)
        grad_ok = tf.TensorArray(tf.bool, size=n_batches)
        for batch in tf.range(n_batches):
            start = batch * batch_size
            xb, yb = xs[start : start + batch_size], ys[start : start + batch_size]
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
            # Applied even when non-finite, as model.fit would: the reader sees weights turn NaN.
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            losses = losses.write(batch, loss)
            loss_ok = loss_ok.write(batch, tf.math.is_finite(loss))
            grad_ok = grad_ok.write(batch, finite)
        return losses.stack(), loss_ok.stack(), grad_ok.stack()

    # The optimizer's slots must exist before the graph loop, which cannot create variables.
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(seed)
    epoch_losses: list[float] = []
    bad_loss = bad_grad = 0
    first: tuple[int, int] | None = None
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        losses, loss_ok, grad_ok = (
            t.numpy() for t in run_epoch(tf.constant(x[order]), tf.constant(y[order]))
        )
        bad_loss += int((~loss_ok).sum())
        bad_grad += int((~grad_ok).sum())
        bad_batches = np.flatnonzero(~(loss_ok & grad_ok))
        if first is None and bad_batches.size:
            first = (epoch, int(bad_batches[0]))
        epoch_losses.append(float(np.mean(losses, dtype=np.float64)))
        if on_epoch_end is not None and on_epoch_end():
            break
    return FitResult(np.array(epoch_losses), bad_loss, bad_grad, first)


def fit_sigma(
    x: np.ndarray,
    y: np.ndarray,
    guard: Guard = "stable",
    epochs: int = 5,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    initial_sigma: float = 0.1,
    seed: int = 0,
    parametrisation: Parametrisation = "plain",
    optimizer: keras.optimizers.Optimizer | None = None,
    target_sigma: float | None = None,
    patience: int = 8,
    rel_tol: float = 0.01,
) -> TrainResult:
    """Train a fresh one-layer bump model with fit_model and record sigma after every epoch.

    With target_sigma, training stops early once sigma has stayed within rel_tol of it for
    `patience` epochs in a row; epochs_to_reach then reads "stays" as "stays to that stop".
    """
    if guard not in GUARDS:
        raise ValueError(f"guard must be one of {', '.join(GUARDS)}; got {guard!r}")
    _check_fit_arguments(epochs, batch_size, learning_rate, optimizer)
    if target_sigma is not None and not target_sigma > 0:
        raise ValueError(f"target_sigma must be > 0 or None, got {target_sigma!r}")
    if not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an int >= 1, got {patience!r}")
    if not rel_tol > 0:
        raise ValueError(f"rel_tol must be > 0, got {rel_tol!r}")
    model = make_bump_model(guard, initial_sigma, parametrisation)
    layer = model.layers[-1]
    sigmas = [_sigma_of(layer)]

    def record_sigma() -> bool:
        sigmas.append(_sigma_of(layer))
        if target_sigma is None or len(sigmas) <= patience:
            return False
        recent = np.asarray(sigmas[-patience:])
        return bool(np.all(np.abs(recent - target_sigma) <= rel_tol * target_sigma))

    fit = fit_model(
        model,
        np.asarray(x).reshape(-1, 1),
        np.asarray(y).reshape(-1, 1),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        optimizer=optimizer,
        on_epoch_end=record_sigma,
    )
    return TrainResult(
        np.array(sigmas),
        fit.loss,
        fit.nonfinite_loss_steps,
        fit.nonfinite_grad_steps,
        fit.first_nonfinite,
    )
