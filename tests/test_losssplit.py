"""gradclinic.losssplit: every strategy against float64 gradients derived by hand, TF1 vs TF2."""

import keras
import matplotlib
import numpy as np
import pytest
import tensorflow as tf
from gradclinic import losssplit, plots

matplotlib.use("Agg")

N = 40


def _batch(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 5, N), rng.integers(0, 4, N), rng.integers(0, 5, N)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _mean_ce(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(_softmax(logits)[np.arange(len(labels)), labels]).mean())


def _reference(values: dict, ids, labels1, labels2) -> dict[str, dict[str, np.ndarray]]:
    """Per-loss gradients in float64 by the chain rule, with and without the cut."""
    emb, w1, w2 = (values[k].astype(np.float64) for k in ("embedding_matrix", "output1", "output2"))
    n = len(ids)
    hidden = emb[ids]
    logits1 = hidden @ w1
    logits2 = logits1 @ w2
    # d(mean cross-entropy)/d logits = (softmax - one_hot) / n
    d_logits1 = (_softmax(logits1) - np.eye(4)[labels1]) / n
    d_logits2 = (_softmax(logits2) - np.eye(5)[labels2]) / n

    def into_head1(d_logits: np.ndarray) -> dict[str, np.ndarray]:
        d_emb = np.zeros_like(emb)
        np.add.at(d_emb, ids, d_logits @ w1.T)
        return {"embedding_matrix": d_emb, "output1": hidden.T @ d_logits}

    loss1 = {**into_head1(d_logits1), "output2": np.zeros_like(w2)}
    loss2 = {**into_head1(d_logits2 @ w2.T), "output2": logits1.T @ d_logits2}
    return {"loss1": loss1, "loss2": loss2}


def _close(got, expected) -> None:
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5)


def test_model_has_the_question_variables() -> None:
    model = losssplit.TwoHeadModel(seed=0)
    assert [(v.name, tuple(v.shape)) for v in model.trainable_variables] == [
        ("embedding_matrix:0", (5, 3)),
        ("output1:0", (3, 4)),
        ("output2:0", (4, 5)),
    ]
    ids = np.array([0, 4, 2])
    logits1, logits2 = model(ids)
    expected1 = model.values()["embedding_matrix"][ids] @ model.values()["output1"]
    _close(logits1, expected1)
    _close(logits2, expected1 @ model.values()["output2"])
    # The cut changes what the backward pass sees, never the forward values.
    cut1, cut2 = model(ids, stop_gradient=True)
    _close(cut1, logits1.numpy())
    _close(cut2, logits2.numpy())


def test_seeds_give_different_reproducible_models() -> None:
    a, b, c = losssplit.TwoHeadModel(0), losssplit.TwoHeadModel(0), losssplit.TwoHeadModel(1)
    np.testing.assert_array_equal(a.values()["output1"], b.values()["output1"])
    assert not np.allclose(a.values()["output1"], c.values()["output1"])


def test_reference_gradient_matches_finite_differences() -> None:
    ids, labels1, labels2 = _batch()
    values = {k: v.astype(np.float64) for k, v in losssplit.TwoHeadModel(3).values().items()}

    def joint_loss(vals: dict) -> float:
        logits1 = vals["embedding_matrix"][ids] @ vals["output1"]
        return _mean_ce(logits1, labels1) + _mean_ce(logits1 @ vals["output2"], labels2)

    ref = _reference(values, ids, labels1, labels2)
    eps = 1e-6
    for name in losssplit.VARIABLE_NAMES:
        index = (1, 2)
        plus = {k: v.copy() for k, v in values.items()}
        minus = {k: v.copy() for k, v in values.items()}
        plus[name][index] += eps
        minus[name][index] -= eps
        numeric = (joint_loss(plus) - joint_loss(minus)) / (2 * eps)
        analytic = ref["loss1"][name][index] + ref["loss2"][name][index]
        assert numeric == pytest.approx(analytic, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 5])
def test_each_strategy_matches_the_chain_rule(seed: int) -> None:
    ids, labels1, labels2 = _batch(seed + 1)
    model = losssplit.TwoHeadModel(seed)
    ref = _reference(model.values(), ids, labels1, labels2)
    expected = {
        "joint": {k: ref["loss1"][k] + ref["loss2"][k] for k in losssplit.VARIABLE_NAMES},
        "var_list": {
            "embedding_matrix": None,
            "output1": ref["loss1"]["output1"],
            "output2": ref["loss2"]["output2"],
        },
        "stop_gradient": {
            "embedding_matrix": ref["loss1"]["embedding_matrix"],
            "output1": ref["loss1"]["output1"],
            "output2": ref["loss2"]["output2"],
        },
    }
    for strategy, want in expected.items():
        got = losssplit.gradients(model, ids, labels1, labels2, strategy)
        assert list(got) == list(losssplit.VARIABLE_NAMES)
        for name, value in want.items():
            if value is None:
                assert got[name] is None, f"{strategy}: {name} should have no gradient"
            else:
                _close(got[name], value)


def test_stop_gradient_and_var_list_agree_on_the_heads_only() -> None:
    ids, labels1, labels2 = _batch()
    model = losssplit.TwoHeadModel(0)
    cut = losssplit.gradients(model, ids, labels1, labels2, "stop_gradient")
    lists = losssplit.gradients(model, ids, labels1, labels2, "var_list")
    for name in ("output1", "output2"):
        _close(cut[name], lists[name].numpy())
    assert lists["embedding_matrix"] is None
    assert np.abs(cut["embedding_matrix"].numpy()).max() > 1e-4
    # With the embedding in loss1's list, two gradient computations give stop_gradient's result.
    two_passes = losssplit.var_list_gradients(
        model, ids, labels1, labels2, var_list1=("embedding_matrix", "output1")
    )
    for name in losssplit.VARIABLE_NAMES:
        _close(two_passes[name], cut[name].numpy())


def test_embedding_in_both_lists_lets_loss2_in() -> None:
    # The answer's commented-out variant: loss2 then reaches the embedding (through output1).
    ids, labels1, labels2 = _batch()
    model = losssplit.TwoHeadModel(0)
    ref = _reference(model.values(), ids, labels1, labels2)
    both = losssplit.var_list_gradients(
        model,
        ids,
        labels1,
        labels2,
        var_list1=("embedding_matrix", "output1"),
        var_list2=("embedding_matrix", "output2"),
    )
    _close(
        both["embedding_matrix"],
        ref["loss1"]["embedding_matrix"] + ref["loss2"]["embedding_matrix"],
    )


def test_unknown_strategy_lists_the_valid_ones() -> None:
    model = losssplit.TwoHeadModel(0)
    with pytest.raises(ValueError, match="strategy must be one of joint, var_list, stop_gradient"):
        losssplit.gradients(model, [0], [0], [0], "minimize")
    with pytest.raises(ValueError, match="strategy"):
        losssplit.train_step(model, keras.optimizers.SGD(), [0], [0], [0], "both")


def test_var_list_rejects_unknown_names() -> None:
    model = losssplit.TwoHeadModel(0)
    with pytest.raises(ValueError, match="var_list2 may only name"):
        losssplit.var_list_gradients(model, [0], [0], [0], var_list2=("dense",))


@pytest.mark.parametrize(
    ("ids", "labels1", "labels2", "message"),
    [
        ([0, 5], [0, 0], [0, 0], r"ids must lie in \[0, 5\)"),
        ([-1, 0], [0, 0], [0, 0], r"ids must lie in \[0, 5\)"),
        ([[0, 1]], [0], [0], "ids must be a non-empty 1-D array"),
        ([0.5, 1.0], [0, 0], [0, 0], "ids must hold integers"),
        ([0, 1], [0, 4], [0, 0], r"labels1 must lie in \[0, 4\)"),
        ([0, 1], [0, 1], [0, 5], r"labels2 must lie in \[0, 5\)"),
        ([0, 1], [0], [0, 1], "same length"),
        ([], [], [], "non-empty"),
    ],
)
def test_bad_batches_are_refused(ids, labels1, labels2, message) -> None:
    model = losssplit.TwoHeadModel(0)
    with pytest.raises(ValueError, match=message):
        losssplit.gradients(model, ids, labels1, labels2, "joint")


def test_train_step_moves_only_what_the_strategy_allows() -> None:
    ids, labels1, labels2 = _batch()
    moved = {}
    for strategy in losssplit.STRATEGIES:
        model = losssplit.TwoHeadModel(0)
        before = model.values()
        optimizer = keras.optimizers.Adam(0.01)
        losssplit.train_step(model, optimizer, ids, labels1, labels2, strategy)
        assert int(optimizer.iterations) == 1
        after = model.values()
        moved[strategy] = {k: float(np.abs(after[k] - before[k]).max()) for k in before}
    assert moved["var_list"]["embedding_matrix"] == 0.0
    for strategy in losssplit.STRATEGIES:
        # Adam's first step moves every entry with a non-zero gradient by the learning rate.
        assert moved[strategy]["output1"] == pytest.approx(0.01, rel=1e-3)
        assert moved[strategy]["output2"] == pytest.approx(0.01, rel=1e-3)
    assert moved["joint"]["embedding_matrix"] == pytest.approx(0.01, rel=1e-3)
    assert moved["stop_gradient"]["embedding_matrix"] == pytest.approx(0.01, rel=1e-3)


def test_tf1_answer_agrees_with_tf2_and_keeps_eager_mode() -> None:
    ids, labels1, labels2 = _batch()
    model = losssplit.TwoHeadModel(0)
    start = model.values()
    result = losssplit.tf1_answer(model, ids, labels1, labels2, steps=2, learning_rate=0.01)
    assert tf.executing_eagerly()
    assert result.trainable == list(losssplit.VARIABLE_NAMES)
    assert result.var_list1 == ["output1"]
    assert result.var_list2 == ["output2"]
    # The answer's losses are per-example vectors: TF1 sums their gradients, we average.
    tf2 = losssplit.gradients(model, ids, labels1, labels2, "var_list")
    _close(result.gradients["loss1 -> output1"] / N, tf2["output1"].numpy())
    _close(result.gradients["loss2 -> output2"] / N, tf2["output2"].numpy())
    np.testing.assert_array_equal(
        result.gradients["loss1 + loss2 -> output2"], result.gradients["loss2 -> output2"]
    )
    assert not np.allclose(
        result.gradients["loss1 * loss2 -> output2"], result.gradients["loss2 -> output2"]
    )
    # Same Adam as TF1's (epsilon 1e-8), two steps: the same values.
    optimizer = keras.optimizers.Adam(0.01, epsilon=1e-8)
    for _ in range(2):
        losssplit.train_step(model, optimizer, ids, labels1, labels2, "var_list")
    assert len(result.values) == 3
    np.testing.assert_array_equal(result.values[0]["output1"], start["output1"])
    for step in result.values:
        np.testing.assert_array_equal(step["embedding_matrix"], start["embedding_matrix"])
    for name, value in model.values().items():
        np.testing.assert_allclose(result.values[-1][name], value, atol=1e-5)


def test_tf1_answer_refuses_bad_arguments() -> None:
    model = losssplit.TwoHeadModel(0)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        losssplit.tf1_answer(model, [0], [0], [0], steps=0)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        losssplit.tf1_answer(model, [0], [0], [0], learning_rate=0.0)
    with pytest.raises(ValueError, match="ids must lie"):
        losssplit.tf1_answer(model, [9], [0], [0])


def test_constant_example_matches_the_answer() -> None:
    grads = losssplit.constant_example()
    inputs = np.array([1.0, 2.0, 3.0])
    weight1 = np.arange(12.0).reshape(3, 4)
    output1 = inputs @ weight1
    loss1 = (output1 - np.array([1, 2, 3, 4])).sum()
    # The numbers printed in the answer: rows of 1, 2, 3 and rows of 32, 38, 44, 50.
    np.testing.assert_array_equal(grads["d loss1 / d weight1"], np.repeat([[1], [2], [3]], 4, 1))
    rows = np.repeat([[32], [38], [44], [50]], 5, 1)
    np.testing.assert_array_equal(grads["d loss2 / d weight2"], rows)
    np.testing.assert_array_equal(grads["d (loss1 + loss2) / d weight2"], rows)
    np.testing.assert_array_equal(output1, [32, 38, 44, 50])
    np.testing.assert_allclose(grads["d (loss1 * loss2) / d weight2"], loss1 * rows)


def test_model_assign_round_trips_and_checks_shapes() -> None:
    model, other = losssplit.TwoHeadModel(0), losssplit.TwoHeadModel(1)
    model.assign(other.values())
    np.testing.assert_array_equal(model.values()["output2"], other.values()["output2"])
    with pytest.raises(ValueError, match="must have shape"):
        model.assign({**other.values(), "output1": np.zeros((4, 3))})
    with pytest.raises(ValueError, match="exactly the keys"):
        model.assign({"output1": np.zeros((3, 4))})


def test_seed_must_be_a_non_negative_int() -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        losssplit.TwoHeadModel(seed=-1)


@pytest.mark.parametrize("strategy", losssplit.STRATEGIES)
def test_diagram_marks_the_cut(strategy: str) -> None:
    fig = plots.draw_two_paths(strategy)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("embedding_matrix\nno gradient") for t in texts) == (
        strategy == "var_list"
    )
    assert ("tf.stop_gradient" in texts) == (strategy == "stop_gradient")
    matplotlib.pyplot.close(fig)


def test_plots_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="strategy must be one of"):
        plots.draw_two_paths("sum")


def test_traced_op_counts_split_forward_and_backward_without_patching() -> None:
    ids, labels1, labels2 = _batch()
    model = losssplit.TwoHeadModel(0)
    gradient_before = tf.GradientTape.gradient
    counts = {
        "forward": losssplit.traced_op_counts(
            lambda: losssplit.losses(model, ids, labels1, labels2)
        ),
        "one pass": losssplit.traced_op_counts(
            lambda: losssplit.gradients(model, ids, labels1, labels2, "stop_gradient")
        ),
        "two passes": losssplit.traced_op_counts(
            lambda: losssplit.var_list_gradients(
                model, ids, labels1, labels2, var_list1=("embedding_matrix", "output1")
            )
        ),
    }
    assert counts["forward"]["backward"] == 0
    assert 0 < counts["one pass"]["backward"] < counts["two passes"]["backward"]
    # The forward pass is recorded once on either route.
    assert counts["one pass"]["forward"] - counts["forward"]["forward"] < 10
    assert tf.GradientTape.gradient is gradient_before


@pytest.mark.parametrize(("slope1", "slope2"), [(1.0, 1.0), (3.0, 3.0), (0.5, 0.5)])
def test_tf1_applies_two_adam_updates_to_a_variable_in_both_lists(slope1, slope2) -> None:
    moves = losssplit.tf1_shared_variable_step(slope1, slope2, learning_rate=0.1)
    # Adam's first update is the learning rate whatever the gradient's size: the summed loss
    # moves v by 0.1. Two updates on the same slots move it further, by the formula of Adam's
    # second update with t = 1: lr * sqrt(1 - b2) / (1 - b1) * m / sqrt(v).
    assert moves["summed"] == pytest.approx(-0.1, rel=1e-4)
    m = 0.9 * 0.1 + 0.1
    v = 0.999 * 0.001 + 0.001
    second = 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9) * m / np.sqrt(v)
    assert moves["two lists"] == pytest.approx(-(0.1 + second), rel=1e-4)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        losssplit.tf1_shared_variable_step(1.0, 1.0, learning_rate=-1.0)


def test_tf1_answer_commented_lists_put_the_embedding_in_both() -> None:
    ids, labels1, labels2 = _batch()
    model = losssplit.TwoHeadModel(0)
    start = model.values()["embedding_matrix"]
    result = losssplit.tf1_answer(
        model, ids, labels1, labels2, steps=1, learning_rate=0.01, lists="embedding_in_both"
    )
    assert result.var_list1 == ["embedding_matrix", "output1"]
    assert result.var_list2 == ["embedding_matrix", "output2"]
    # Two Adam updates in one step: some entries move further than one step can (0.01).
    assert np.abs(result.values[1]["embedding_matrix"] - start).max() > 0.015
    with pytest.raises(ValueError, match="lists must be"):
        losssplit.tf1_answer(model, ids, labels1, labels2, lists="both")
