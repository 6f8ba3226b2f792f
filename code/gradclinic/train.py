"""Fit a one-layer bump model to recover sigma, reporting every non-finite loss or gradient."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from gradclinic.bump import GUARDS, BumpLayer, Guard
from gradclinic.reparam import (
    PARAMETRISATIONS,
    Parametrisation,
    ReparamBumpLayer,
)


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


def _bump_layer(
    guard: Guard, initial_sigma: float, parametrisation: Parametrisation
) -> BumpLayer:
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(
            f"parametrisation must be one of {', '.join(PARAMETRISATIONS)}; got {parametrisation!r}"
        )
    if parametrisation == "plain":
        return BumpLayer(guard, initial_sigma=initial_sigma)
    return ReparamBumpLayer(parametrisation, guard, initial_sigma=initial_sigma)


def make_bump_model(
    guard: Guard = "stable",
    initial_sigma: float = 0.1,
    parametrisation: Parametrisation = "plain",
) -> keras.Model:
    """A model with one bump layer on inputs of shape (1,); "plain" trains sigma itself."""
    return keras.Sequential(
        [
            keras.Input(shape=(1,)),
            _bump_layer(guard, initial_sigma, parametrisation),
        ]
    )


def _sigma_of(layer: BumpLayer) -> float:
    # A plain layer's sigma is a variable, a reparametrised layer's a tensor computed from it.
    return float(np.asarray(layer.sigma).reshape(-1)[0])


def epochs_to_reach(
    result: TrainResult, true_sigma: float, rel_tol: float = 0.01
) -> int | None:
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


OptimizerChoice = keras.optimizers.Optimizer | Literal["adam", "sgd"] | None
_OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
}


def _check_fit_arguments(
    epochs: int,
    batch_size: int,
    learning_rate: float,
    optimizer: OptimizerChoice,
) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if isinstance(optimizer, keras.optimizers.Optimizer):
        if optimizer.built:
            raise ValueError(
                "optimizer must be fresh (not used before): its state belongs to one model"
            )
    elif optimizer is not None and not (
        isinstance(optimizer, str) and optimizer in _OPTIMIZERS
    ):
        raise ValueError(
            f"optimizer must be {' or '.join(map(repr, _OPTIMIZERS))}, a fresh keras Optimizer "
            f"or None (Adam), got {optimizer!r}"
        )


def _make_optimizer(
    optimizer: OptimizerChoice, learning_rate: float
) -> keras.optimizers.Optimizer:
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    return _OPTIMIZERS[optimizer or "adam"](learning_rate)


def _as_rows(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    return x, y


class _EpochLoop:
    """A model, an optimizer built on its weights, and one traced graph that runs an epoch."""

    def __init__(
        self, model: keras.Model, optimizer: keras.optimizers.Optimizer
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = keras.losses.MeanSquaredError()
        # The optimizer's slots must exist before the graph loop, which cannot create variables.
        optimizer.build(model.trainable_variables)
        # Data size and batch size are graph inputs, so other values do not trace it again.
        self.run_epoch = tf.function(
            self._epoch, reduce_retracing=True, autograph=False
        )

    def start_from(
        self, start: keras.Layer, optimizer: keras.optimizers.Optimizer
    ) -> None:
        """Set the weights and optimizer state to those of a fresh built layer and optimizer."""
        optimizer.build(start.trainable_variables)
        targets = [*self.model.variables, *self.optimizer.variables]
        sources = [*start.variables, *optimizer.variables]
        for target, source in zip(targets, sources, strict=True):
            target.assign(source)

    def hand_back(self, optimizer: keras.optimizers.Optimizer) -> None:
        """Copy this loop's optimizer state into the caller's optimizer."""
        pairs = zip(optimizer.variables, self.optimizer.variables, strict=True)
        for target, source in pairs:
            target.assign(source)

    def _epoch(
        self, xs: tf.Tensor, ys: tf.Tensor, batch_size: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        # One graph call per epoch instead of one per batch: the Python overhead per step
        # would otherwise dominate models this small. An explicit while_loop, not autograph:
        # converting this method's source costs more than tracing it.
        n_batches = (tf.shape(xs)[0] + batch_size - 1) // batch_size
        variables = self.model.trainable_variables

        def step(
            batch: tf.Tensor,
            losses: tf.TensorArray,
            grad_ok: tf.TensorArray,
        ) -> tuple[tf.Tensor, tf.TensorArray, tf.TensorArray]:
            start = batch * batch_size
            xb, yb = (
                xs[start : start + batch_size],
                ys[start : start + batch_size],
            )
            with tf.GradientTape() as tape:
                loss = self.loss_fn(yb, self.model(xb, training=True))
            grads = tape.gradient(loss, variables)
            finite = tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(g)) for g in grads]
            )
            # Applied even when non-finite, as model.fit would: the reader sees weights turn NaN.
            self.optimizer.apply_gradients(zip(grads, variables, strict=True))
            return (
                batch + 1,
                losses.write(batch, loss),
                grad_ok.write(batch, finite),
            )

        _, losses, grad_ok = tf.while_loop(
            lambda batch, *_: batch < n_batches,
            step,
            (
                tf.constant(0),
                tf.TensorArray(tf.float32, size=n_batches),
                tf.TensorArray(tf.bool, size=n_batches),
            ),
        )
        return losses.stack(), grad_ok.stack()

    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int,
        batch_size: int,
        seed: int,
        on_epoch_end: Callable[[], bool | None] | None,
    ) -> FitResult:
        """Run up to `epochs` shuffled epochs and count the non-finite steps."""
        rng = np.random.default_rng(seed)
        epoch_losses: list[float] = []
        bad_loss = bad_grad = 0
        first: tuple[int, int] | None = None
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            losses, grad_ok = (
                t.numpy()
                for t in self.run_epoch(
                    tf.constant(x[order]),
                    tf.constant(y[order]),
                    tf.constant(batch_size),
                )
            )
            loss_ok = np.isfinite(losses)
            bad_loss += int((~loss_ok).sum())
            bad_grad += int((~grad_ok).sum())
            bad_batches = np.flatnonzero(~(loss_ok & grad_ok))
            if first is None and bad_batches.size:
                first = (epoch, int(bad_batches[0]))
            epoch_losses.append(float(np.mean(losses, dtype=np.float64)))
            if on_epoch_end is not None and on_epoch_end():
                break
        return FitResult(np.array(epoch_losses), bad_loss, bad_grad, first)


def fit_model(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int = 5,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    seed: int = 0,
    optimizer: OptimizerChoice = None,
    on_epoch_end: Callable[[], bool | None] | None = None,
) -> FitResult:
    """Train a built model with MSE on (n, k) arrays; NaN/inf steps are counted, not hidden.

    optimizer is "adam" (the default, None) or "sgd" with learning_rate, or a fresh keras
    Optimizer (its own learning rate applies). on_epoch_end is called after every epoch, e.g. to
    record a weight; returning True stops training there, so the result may hold fewer than
    `epochs` epochs.
    """
    _check_fit_arguments(epochs, batch_size, learning_rate, optimizer)
    x, y = _as_rows(x, y)
    loop = _EpochLoop(model, _make_optimizer(optimizer, learning_rate))
    return loop.train(x, y, epochs, batch_size, seed, on_epoch_end)


def _optimizer_key(optimizer: keras.optimizers.Optimizer) -> str | None:
    # Everything but a constant learning rate (an optimizer variable) and the name is traced
    # into the graph, so it must match for two runs to share one; None when not serialisable.
    config = optimizer.get_config()
    config.pop("name", None)
    if not isinstance(config.get("learning_rate"), dict):
        config["learning_rate"] = 1.0
    try:
        return json.dumps(config, sort_keys=True)
    except TypeError:
        return None


@functools.lru_cache(maxsize=16)
def _shared_bump_loop(
    guard: Guard,
    parametrisation: Parametrisation,
    optimizer_class: type[keras.optimizers.Optimizer],
    optimizer_key: str,
) -> _EpochLoop:
    # Starting values are copied in before every run, so the 1.0 here never trains.
    optimizer = optimizer_class.from_config(json.loads(optimizer_key))
    return _EpochLoop(make_bump_model(guard, 1.0, parametrisation), optimizer)


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
    optimizer: OptimizerChoice = None,
    target_sigma: float | None = None,
    patience: int = 8,
    rel_tol: float = 0.01,
) -> TrainResult:
    """Train a one-layer bump model from initial_sigma as fit_model does; record sigma per epoch.

    optimizer is as in fit_model; an Optimizer object is the one that trains, so it cannot be
    passed again. With target_sigma, training stops early once sigma has stayed within rel_tol of it for
    `patience` epochs in a row; epochs_to_reach then reads "stays" as "stays to that stop".
    """
    if guard not in GUARDS:
        raise ValueError(
            f"guard must be one of {', '.join(GUARDS)}; got {guard!r}"
        )
    _check_fit_arguments(epochs, batch_size, learning_rate, optimizer)
    if target_sigma is not None and not target_sigma > 0:
        raise ValueError(
            f"target_sigma must be > 0 or None, got {target_sigma!r}"
        )
    if not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an int >= 1, got {patience!r}")
    if not rel_tol > 0:
        raise ValueError(f"rel_tol must be > 0, got {rel_tol!r}")
    x, y = _as_rows(np.asarray(x).reshape(-1, 1), np.asarray(y).reshape(-1, 1))
    callers = isinstance(optimizer, keras.optimizers.Optimizer)
    optimizer = _make_optimizer(optimizer, learning_rate)
    key = _optimizer_key(optimizer)
    if key is None:
        loop = _EpochLoop(
            make_bump_model(guard, initial_sigma, parametrisation), optimizer
        )
    else:
        # Tracing Keras' training step costs far more than running it on these small data;
        # runs that differ only in data, starting sigma or learning rate share one graph.
        start = _bump_layer(guard, initial_sigma, parametrisation)
        # The layer alone, not a model around it: building a Sequential costs 5x more.
        start.build((None, 1))
        loop = _shared_bump_loop(guard, parametrisation, type(optimizer), key)
        loop.start_from(start, optimizer)
    layer = loop.model.layers[-1]
    sigmas = [_sigma_of(layer)]

    def record_sigma() -> bool:
        sigmas.append(_sigma_of(layer))
        if target_sigma is None or len(sigmas) <= patience:
            return False
        recent = np.asarray(sigmas[-patience:])
        return bool(
            np.all(np.abs(recent - target_sigma) <= rel_tol * target_sigma)
        )

    fit = loop.train(x, y, epochs, batch_size, seed, record_sigma)
    if callers and key is not None:
        # A caller's optimizer ends with the state of the run, as if it had trained itself.
        loop.hand_back(optimizer)
    return TrainResult(
        np.array(sigmas),
        fit.loss,
        fit.nonfinite_loss_steps,
        fit.nonfinite_grad_steps,
        fit.first_nonfinite,
    )
