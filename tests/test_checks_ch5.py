"""Chapter 5's self-checks: the book's solutions pass, typical mistakes fail with a clear message."""

import tensorflow as tf
from gradclinic import checks, losssplit

ROUTES = {
    "joint": {
        "embedding_matrix": {"loss1", "loss2"},
        "output1": {"loss1", "loss2"},
        "output2": {"loss2"},
    },
    "var_list": {"embedding_matrix": set(), "output1": {"loss1"}, "output2": {"loss2"}},
    "stop_gradient": {"embedding_matrix": {"loss1"}, "output1": {"loss1"}, "output2": {"loss2"}},
}


def one_pass(model, ids, labels1, labels2):
    with tf.GradientTape() as tape:
        loss1, loss2 = losssplit.losses(model, ids, labels1, labels2, stop_gradient=True)
        total = loss1 + loss2
    grads = tape.gradient(total, list(model.by_name.values()))
    return {name: tf.convert_to_tensor(g) for name, g in zip(model.by_name, grads, strict=True)}


def two_passes(model, ids, labels1, labels2):
    return losssplit.var_list_gradients(
        model, ids, labels1, labels2, var_list1=("embedding_matrix", "output1")
    )


def test_both_checks_are_registered() -> None:
    assert checks.registry()["5.1"].answer == "my_routes"
    assert checks.registry()["5.2"].answer == "my_split_gradients"


def test_ex5_1_passes_the_true_routes() -> None:
    result = checks.ex5_1(ROUTES)
    assert result.passed, result.message
    assert repr(result).startswith("Exercise 5.1: passed.")


def test_ex5_1_catches_the_leak_missed() -> None:
    wrong = {**ROUTES, "joint": {**ROUTES["joint"], "output1": {"loss1"}}}
    result = checks.ex5_1(wrong)
    assert not result.passed
    assert result.message == "joint, output1: expected ['loss1', 'loss2'], got ['loss1']"


def test_ex5_1_reports_missing_keys_and_bad_names() -> None:
    assert "expected a key 'stop_gradient'" in checks.ex5_1({"joint": {}, "var_list": {}}).message
    bad = {**ROUTES, "var_list": {**ROUTES["var_list"], "output1": {"l1"}}}
    assert "expected loss names" in checks.ex5_1(bad).message


def test_ex5_2_passes_one_backward_pass() -> None:
    result = checks.ex5_2(one_pass)
    assert result.passed, result.message


def test_ex5_2_refuses_two_backward_passes() -> None:
    result = checks.ex5_2(two_passes)
    assert not result.passed
    assert "expected 1 call to tape.gradient, got 2" in result.message


def test_ex5_2_refuses_the_joint_leak_and_stubs() -> None:
    def joint(model, ids, labels1, labels2):
        return losssplit.gradients(model, ids, labels1, labels2, "joint")

    result = checks.ex5_2(joint)
    assert not result.passed
    assert "embedding_matrix: expected loss1's gradient" in result.message

    def stub(model, ids, labels1, labels2):
        raise NotImplementedError("Exercise 5.2")

    assert checks.ex5_2(stub).message == "your answer raised NotImplementedError: Exercise 5.2"
    # The check restores tf.GradientTape.gradient even when the answer raises.
    assert tf.GradientTape.gradient.__name__ == "gradient"
