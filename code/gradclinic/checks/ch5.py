"""Self-checks for chapter 5's exercises."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from gradclinic import losssplit
from gradclinic.checks._core import CheckFailed, exercise

__all__ = ["ex5_1", "ex5_2"]

LOSSES = ("loss1", "loss2")
# A model and a batch the chapter never shows, so an answer cannot be tuned to its numbers.
_CHECK_SEED = 11


def _hidden_batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_CHECK_SEED)
    return rng.integers(0, 5, 23), rng.integers(0, 4, 23), rng.integers(0, 5, 23)


def _reaches(grad: tf.Tensor | None) -> bool:
    return grad is not None and bool(tf.reduce_any(tf.not_equal(grad, 0.0)))


def _per_loss_routes(strategy: str) -> dict[str, set[str]]:
    """Which losses' gradients reach each variable under `strategy`, measured on the hidden batch."""
    model = losssplit.TwoHeadModel(_CHECK_SEED)
    ids, labels1, labels2 = _hidden_batch()
    routes: dict[str, set[str]] = {name: set() for name in losssplit.VARIABLE_NAMES}
    if strategy == "var_list":
        only_loss1 = losssplit.var_list_gradients(model, ids, labels1, labels2, var_list2=())
        only_loss2 = losssplit.var_list_gradients(model, ids, labels1, labels2, var_list1=())
        per_loss = {"loss1": only_loss1, "loss2": only_loss2}
    else:
        variables = model.by_name
        with tf.GradientTape(persistent=True) as tape:
            loss1, loss2 = losssplit.losses(
                model, ids, labels1, labels2, stop_gradient=strategy == "stop_gradient"
            )
        per_loss = {
            name: dict(zip(variables, tape.gradient(loss, list(variables.values())), strict=True))
            for name, loss in (("loss1", loss1), ("loss2", loss2))
        }
        del tape
    for loss, grads in per_loss.items():
        for name, grad in grads.items():
            if _reaches(grad):
                routes[name].add(loss)
    return routes


@exercise("5.1", answer="my_routes")
def ex5_1(my_routes: Mapping[str, Mapping[str, Any]]) -> str:
    """Exercise 5.1: for each strategy and variable, the set of losses whose gradient reaches it."""
    if not isinstance(my_routes, Mapping):
        raise CheckFailed(f"expected a dict keyed by strategy, got {type(my_routes).__name__}")
    missing = [strategy for strategy in losssplit.STRATEGIES if strategy not in my_routes]
    if missing:
        raise CheckFailed(f"expected a key {missing[0]!r}, got keys {sorted(my_routes)}")
    for strategy in losssplit.STRATEGIES:
        answer = my_routes[strategy]
        truth = _per_loss_routes(strategy)
        for name, expected in truth.items():
            if name not in answer:
                raise CheckFailed(f"{strategy}: expected an entry for {name!r}, got none")
            got = set(answer[name])
            unknown = got - set(LOSSES)
            if unknown:
                raise CheckFailed(
                    f"{strategy}, {name}: expected loss names {LOSSES}, got {unknown}"
                )
            if got != expected:
                raise CheckFailed(
                    f"{strategy}, {name}: expected {sorted(expected) or 'no loss'}, "
                    f"got {sorted(got) or 'no loss'}"
                )
    return "every route matches the gradients TensorFlow computes on a model you have not seen."


@exercise("5.2", answer="my_split_gradients")
def ex5_2(my_split_gradients: Callable[..., Mapping[str, Any]]) -> str:
    """Exercise 5.2: loss1 trains embedding and output1, loss2 only output2, in one backward pass."""
    model = losssplit.TwoHeadModel(_CHECK_SEED)
    before = model.values()
    ids, labels1, labels2 = _hidden_batch()
    got, calls = losssplit.count_gradient_calls(
        lambda: my_split_gradients(model, ids, labels1, labels2)
    )
    inputs = f"TwoHeadModel(seed={_CHECK_SEED}) and a batch of {len(ids)} ids"
    if calls != 1:
        raise CheckFailed(f"{inputs}: expected 1 call to tape.gradient, got {calls}")
    if not isinstance(got, Mapping) or set(got) != set(losssplit.VARIABLE_NAMES):
        keys = sorted(got) if isinstance(got, Mapping) else type(got).__name__
        raise CheckFailed(f"expected a dict with keys {losssplit.VARIABLE_NAMES}, got {keys}")
    for name, value in model.values().items():
        if not np.array_equal(value, before[name]):
            raise CheckFailed(f"{inputs}: expected {name} unchanged (no training), but it moved")
    expected = losssplit.var_list_gradients(
        model, ids, labels1, labels2, var_list1=("embedding_matrix", "output1")
    )
    for name in losssplit.VARIABLE_NAMES:
        if got[name] is None:
            raise CheckFailed(f"{inputs}: expected a gradient for {name}, got None")
        value = np.asarray(tf.convert_to_tensor(got[name]))
        want = expected[name].numpy()
        if value.shape != want.shape:
            raise CheckFailed(f"{inputs}: {name}: expected shape {want.shape}, got {value.shape}")
        if not np.allclose(value, want, atol=1e-5):
            raise CheckFailed(
                f"{inputs}: {name}: expected loss1's gradient for the embedding and output1 and "
                f"loss2's for output2, got values off by up to {np.abs(value - want).max():.3g}"
            )
    return "one backward pass gives each head its own loss and keeps loss2 out of the embedding."
