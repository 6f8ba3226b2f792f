"""Two heads, two losses: keeping loss2's gradient out of head 1 with var_list or stop_gradient."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "NUM_CLASSES1",
    "NUM_CLASSES2",
    "NUM_IDS",
    "STRATEGIES",
    "VARIABLE_NAMES",
    "TF1Result",
    "TwoHeadModel",
    "constant_example",
    "gradients",
    "joint_gradients",
    "losses",
    "stop_gradient_gradients",
    "tf1_answer",
    "tf1_shared_variable_step",
    "traced_op_counts",
    "train_step",
    "var_list_gradients",
]

Strategy = Literal["joint", "var_list", "stop_gradient"]
STRATEGIES: tuple[str, ...] = ("joint", "var_list", "stop_gradient")
VARIABLE_NAMES: tuple[str, ...] = ("embedding_matrix", "output1", "output2")
NUM_IDS, EMBEDDING_SIZE, NUM_CLASSES1, NUM_CLASSES2 = 5, 3, 4, 5
SHAPES: dict[str, tuple[int, int]] = {
    "embedding_matrix": (NUM_IDS, EMBEDDING_SIZE),
    "output1": (EMBEDDING_SIZE, NUM_CLASSES1),
    "output2": (NUM_CLASSES1, NUM_CLASSES2),
}

Gradients = dict[str, tf.Tensor | None]


class TwoHeadModel(tf.Module):
    """The question's model: ids -> embedding -> output1 -> logits1 -> output2 -> logits2."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(name="two_head_model")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        rng = np.random.default_rng(seed)
        # Standard normal, like the question's tf.random_normal_initializer().
        start = {
            name: rng.standard_normal(shape).astype(np.float32)
            for name, shape in SHAPES.items()
        }
        self.embedding_matrix = tf.Variable(
            start["embedding_matrix"], name="embedding_matrix"
        )
        self.output1 = tf.Variable(start["output1"], name="output1")
        self.output2 = tf.Variable(start["output2"], name="output2")

    @property
    def by_name(self) -> dict[str, tf.Variable]:
        """The three variables keyed by their names, in the order the question creates them."""
        return {
            "embedding_matrix": self.embedding_matrix,
            "output1": self.output1,
            "output2": self.output2,
        }

    def values(self) -> dict[str, np.ndarray]:
        """A numpy copy of every variable, keyed by name."""
        return {
            name: variable.numpy().copy()
            for name, variable in self.by_name.items()
        }

    def assign(self, values: Mapping[str, np.ndarray]) -> None:
        """Set every variable from `values` (a dict like the one values() returns)."""
        if set(values) != set(VARIABLE_NAMES):
            raise ValueError(
                f"values must have exactly the keys {VARIABLE_NAMES}, got {sorted(values)}"
            )
        for name, variable in self.by_name.items():
            value = np.asarray(values[name], dtype=np.float32)
            if value.shape != SHAPES[name]:
                raise ValueError(
                    f"values[{name!r}] must have shape {SHAPES[name]}, got {value.shape}"
                )
            variable.assign(value)

    def __call__(
        self, ids: tf.Tensor, stop_gradient: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(logits1, logits2) for 1-D ids; stop_gradient cuts before head 2."""
        ids = _as_ids(ids)
        logits1 = tf.matmul(
            tf.nn.embedding_lookup(self.embedding_matrix, ids), self.output1
        )
        head2_input = tf.stop_gradient(logits1) if stop_gradient else logits1
        return logits1, tf.matmul(head2_input, self.output2)


def _as_int_vector(values: object, argument: str, upper: int) -> tf.Tensor:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"{argument} must be a non-empty 1-D array, got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{argument} must hold integers, got dtype {array.dtype}"
        )
    if array.min() < 0 or array.max() >= upper:
        raise ValueError(
            f"{argument} must lie in [0, {upper}), got values from {array.min()} to {array.max()}"
        )
    return tf.constant(array, dtype=tf.int32)


def _as_ids(ids: object) -> tf.Tensor:
    # Checked here because on a CPU an out-of-range id is an error, while on a
    # GPU tf.gather quietly returns a row of zeros.
    if isinstance(ids, tf.Tensor) and not tf.executing_eagerly():
        return ids
    return _as_int_vector(ids, "ids", NUM_IDS)


def _batch(
    ids: object, labels1: object, labels2: object
) -> tuple[tf.Tensor, ...]:
    ids_t = _as_ids(ids)
    labels1_t = _as_int_vector(labels1, "labels1", NUM_CLASSES1)
    labels2_t = _as_int_vector(labels2, "labels2", NUM_CLASSES2)
    if not ids_t.shape[0] == labels1_t.shape[0] == labels2_t.shape[0]:
        raise ValueError(
            "ids, labels1 and labels2 must have the same length, got "
            f"{ids_t.shape[0]}, {labels1_t.shape[0]} and {labels2_t.shape[0]}"
        )
    return ids_t, labels1_t, labels2_t


def _mean_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits
        )
    )


def losses(
    model: TwoHeadModel,
    ids: object,
    labels1: object,
    labels2: object,
    stop_gradient: bool = False,
) -> tuple[tf.Tensor, tf.Tensor]:
    """(loss1, loss2): the mean sparse softmax cross-entropy of each head."""
    ids_t, labels1_t, labels2_t = _batch(ids, labels1, labels2)
    logits1, logits2 = model(ids_t, stop_gradient=stop_gradient)
    return _mean_cross_entropy(labels1_t, logits1), _mean_cross_entropy(
        labels2_t, logits2
    )


def joint_gradients(
    model: TwoHeadModel, ids: object, labels1: object, labels2: object
) -> Gradients:
    """d(loss1 + loss2) for every variable: loss2 also reaches output1 and the embedding."""
    variables = model.by_name
    with tf.GradientTape() as tape:
        loss1, loss2 = losses(model, ids, labels1, labels2)
        loss = loss1 + loss2
    grads = tape.gradient(loss, list(variables.values()))
    return {
        name: _dense(grad) for name, grad in zip(variables, grads, strict=True)
    }


def var_list_gradients(
    model: TwoHeadModel,
    ids: object,
    labels1: object,
    labels2: object,
    var_list1: Sequence[str] = ("output1",),
    var_list2: Sequence[str] = ("output2",),
) -> Gradients:
    """Two gradient computations: loss1 for var_list1, loss2 for var_list2."""
    for argument, names in (("var_list1", var_list1), ("var_list2", var_list2)):
        unknown = set(names) - set(VARIABLE_NAMES)
        if unknown:
            raise ValueError(
                f"{argument} may only name {VARIABLE_NAMES}, "
                f"got {sorted(unknown)}"
            )
    variables = model.by_name
    # persistent=True: one forward pass, two backward passes over the same tape.
    with tf.GradientTape(persistent=True) as tape:
        loss1, loss2 = losses(model, ids, labels1, labels2)
    result: Gradients = dict.fromkeys(variables)
    for loss, names in ((loss1, var_list1), (loss2, var_list2)):
        grads = tape.gradient(loss, [variables[name] for name in names])
        for name, grad in zip(names, grads, strict=True):
            # A variable named in both lists gets the sum, d(loss1 + loss2): one
            # optimizer update. TF1's apply_gradients(grads_vars + grads_vars2)
            # applies two instead (one per pair); tf1_shared_variable_step
            # measures the difference.
            grad = _dense(grad)
            result[name] = grad if result[name] is None else result[name] + grad
    del tape
    return result


def stop_gradient_gradients(
    model: TwoHeadModel, ids: object, labels1: object, labels2: object
) -> Gradients:
    """d(loss1 + loss2) for every variable with logits1 cut before head 2: one backward pass."""
    variables = model.by_name
    with tf.GradientTape() as tape:
        loss1, loss2 = losses(model, ids, labels1, labels2, stop_gradient=True)
        loss = loss1 + loss2
    grads = tape.gradient(loss, list(variables.values()))
    return {
        name: _dense(grad) for name, grad in zip(variables, grads, strict=True)
    }


def _dense(grad: tf.Tensor | tf.IndexedSlices | None) -> tf.Tensor | None:
    # The embedding's gradient arrives as IndexedSlices (only the looked-up
    # rows); a dense tensor prints and compares like the other two.
    return None if grad is None else tf.convert_to_tensor(grad)


def traced_op_counts(fn: Callable[[], object]) -> dict[str, int]:
    """Operations tf.function traces for fn: {"forward": n, "backward": m}."""
    operations = tf.function(fn).get_concrete_function().graph.get_operations()
    # In a traced function, every operation a GradientTape adds for a backward
    # pass is named under the "gradient_tape" scope; counting them needs no
    # patching of TensorFlow.
    backward = sum(
        op.name.split("/")[0].startswith("gradient_tape") for op in operations
    )
    return {"forward": len(operations) - backward, "backward": backward}


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}"
        )


def gradients(
    model: TwoHeadModel,
    ids: object,
    labels1: object,
    labels2: object,
    strategy: Strategy,
) -> Gradients:
    """{variable name: gradient or None} for "joint", "var_list" or "stop_gradient"."""
    _check_strategy(strategy)
    if strategy == "joint":
        return joint_gradients(model, ids, labels1, labels2)
    if strategy == "var_list":
        return var_list_gradients(model, ids, labels1, labels2)
    return stop_gradient_gradients(model, ids, labels1, labels2)


def train_step(
    model: TwoHeadModel,
    optimizer: keras.optimizers.Optimizer,
    ids: object,
    labels1: object,
    labels2: object,
    strategy: Strategy,
) -> Gradients:
    """Apply one optimizer step with the strategy's gradients; return them."""
    grads = gradients(model, ids, labels1, labels2, strategy)
    variables = model.by_name
    if not optimizer.built:
        # A Keras 3 optimizer only accepts the variables it was built with, so
        # build it with all three even when this strategy leaves one of them
        # without a gradient.
        optimizer.build(list(variables.values()))
    # One apply_gradients call, as in the answer: two calls would count two Adam
    # steps.
    optimizer.apply_gradients(
        [
            (grad, variables[name])
            for name, grad in grads.items()
            if grad is not None
        ]
    )
    return grads


# constant_example and tf1_answer reproduce the code of a Stack Overflow answer
# (January 2020, "stop gradients flowing in a joint loss"), adapted; that code
# is licensed CC BY-SA 4.0.
def constant_example() -> dict[str, np.ndarray]:
    """The answer's constant example in TF2: gradients, sum and product."""
    inputs = tf.constant([[1, 2, 3]], tf.float32)
    label1 = tf.constant([[1, 2, 3, 4]], tf.float32)
    label2 = tf.constant([[1, 2, 3, 4, 5]], tf.float32)
    weight1 = tf.reshape(tf.range(12, dtype=tf.float32), [3, 4])
    weight2 = tf.reshape(tf.range(20, dtype=tf.float32), [4, 5])
    with tf.GradientTape(persistent=True) as tape:
        # Constants are not watched automatically, unlike variables.
        tape.watch([weight1, weight2])
        output1 = tf.matmul(inputs, weight1)
        loss1 = tf.reduce_sum(output1 - label1)
        output2 = tf.matmul(output1, weight2)
        loss2 = tf.reduce_sum(output2 - label2)
        loss_sum = loss1 + loss2
        loss_product = loss1 * loss2
    result = {
        "d loss1 / d weight1": tape.gradient(loss1, weight1),
        "d loss2 / d weight2": tape.gradient(loss2, weight2),
        "d (loss1 + loss2) / d weight2": tape.gradient(loss_sum, weight2),
        "d (loss1 * loss2) / d weight2": tape.gradient(loss_product, weight2),
    }
    del tape
    return {name: grad.numpy() for name, grad in result.items()}


@dataclass(frozen=True)
class TF1Result:
    """What the TF1 answer prints: its variable lists, its gradients and the values after each step."""

    trainable: list[str]
    var_list1: list[str]
    var_list2: list[str]
    gradients: dict[str, np.ndarray]
    values: list[dict[str, np.ndarray]]


def _tf1_name(variable: tf.Variable) -> str:
    return variable.name.split(":")[0]


def tf1_answer(
    start: TwoHeadModel,
    ids: object,
    labels1: object,
    labels2: object,
    steps: int = 2,
    learning_rate: float = 0.01,
    lists: Literal["answer", "embedding_in_both"] = "answer",
) -> TF1Result:
    """Run the answer's TF1 graph (var_list, Adam, Session) from start."""
    if lists not in ("answer", "embedding_in_both"):
        raise ValueError(
            f"lists must be 'answer' or 'embedding_in_both', got {lists!r}"
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    ids_t, labels1_t, labels2_t = _batch(ids, labels1, labels2)
    initial = start.values()
    tf1 = tf.compat.v1
    # A graph of its own: the caller stays in eager mode, no
    # disable_eager_execution().
    graph = tf.Graph()
    with graph.as_default():
        data = tf1.placeholder(tf.int32, [None])
        output1 = tf1.placeholder(tf.int32, [None])
        output2 = tf1.placeholder(tf.int32, [None])

        # The answer draws random normal starting values; we start from
        # `start`'s so that TF1 and TF2 can be compared number for number.
        embedding_matrix = tf1.get_variable(
            "embedding_matrix",
            [5, 3],
            tf.float32,
            initializer=tf1.constant_initializer(initial["embedding_matrix"]),
        )
        input_vectors = tf.nn.embedding_lookup(
            params=embedding_matrix, ids=data
        )
        params_num0 = len(tf1.trainable_variables())

        output1_weights = tf1.get_variable(
            "output1",
            [3, 4],
            tf.float32,
            initializer=tf1.constant_initializer(initial["output1"]),
        )
        network_output1 = tf.matmul(input_vectors, output1_weights)
        params_num1 = len(tf1.trainable_variables())
        loss1 = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=output1, logits=network_output1
        )

        output2_weights = tf1.get_variable(
            "output2",
            [4, 5],
            tf.float32,
            initializer=tf1.constant_initializer(initial["output2"]),
        )
        network_output2 = tf.matmul(network_output1, output2_weights)
        loss2 = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=output2, logits=network_output2
        )

        params = tf1.trainable_variables()
        if lists == "answer":
            params1 = params[params_num0:params_num1]
            params2 = params[params_num1:]
        else:
            # The answer's commented-out lists, "if you want to back-prop the
            # gradient of embedding_matrix": the embedding is then in both.
            params1 = params[:params_num1]
            params2 = params[:params_num0] + params[params_num1:]

        opt = tf1.train.AdamOptimizer(learning_rate)
        grads_vars = opt.compute_gradients(loss1, var_list=params1)
        grads_vars2 = opt.compute_gradients(loss2, var_list=params2)
        train_op = opt.apply_gradients(grads_vars + grads_vars2)
        # The answer's addendum: the sum leaves output2's gradient as loss2's,
        # the product not.
        grads_vars3_sum = opt.compute_gradients(loss1 + loss2, var_list=params2)
        grads_vars3_product = opt.compute_gradients(
            loss1 * loss2, var_list=params2
        )

        gradient_tensors = {
            "loss1 -> output1": grads_vars[0][0],
            "loss2 -> output2": grads_vars2[0][0],
            "loss1 + loss2 -> output2": grads_vars3_sum[0][0],
            "loss1 * loss2 -> output2": grads_vars3_product[0][0],
        }
        watched = {
            "embedding_matrix": embedding_matrix,
            "output1": output1_weights,
            "output2": output2_weights,
        }
        feed_dict_v = {
            data: ids_t.numpy(),
            output1: labels1_t.numpy(),
            output2: labels2_t.numpy(),
        }
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            grads_at_start = sess.run(gradient_tensors, feed_dict=feed_dict_v)
            values = [sess.run(watched)]
            for _ in range(steps):
                sess.run(train_op, feed_dict=feed_dict_v)
                values.append(sess.run(watched))
    return TF1Result(
        trainable=[_tf1_name(v) for v in params],
        var_list1=[_tf1_name(v) for v in params1],
        var_list2=[_tf1_name(v) for v in params2],
        gradients=grads_at_start,
        values=values,
    )


def tf1_shared_variable_step(
    slope1: float, slope2: float, learning_rate: float = 0.1
) -> dict[str, float]:
    """One TF1 Adam step of v from 0, loss_i = slope_i * v: lists vs sum."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    tf1 = tf.compat.v1
    moves = {}
    for route in ("two lists", "summed"):
        graph = tf.Graph()
        with graph.as_default():
            v = tf1.get_variable(
                "v", [], tf.float32, initializer=tf1.zeros_initializer()
            )
            loss1, loss2 = float(slope1) * v, float(slope2) * v
            opt = tf1.train.AdamOptimizer(learning_rate)
            if route == "two lists":
                # As the answer: v in both lists, one apply_gradients call, two
                # updates of v. Nothing orders them, so with unequal slopes a
                # run may give either order's result.
                pairs = opt.compute_gradients(loss1, var_list=[v])
                pairs += opt.compute_gradients(loss2, var_list=[v])
                train_op = opt.apply_gradients(pairs)
            else:
                train_op = opt.minimize(loss1 + loss2, var_list=[v])
            with tf1.Session(graph=graph) as sess:
                sess.run(tf1.global_variables_initializer())
                sess.run(train_op)
                moves[route] = float(sess.run(v))
    return moves
