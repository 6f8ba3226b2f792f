"""Chapter 6's self-checks: right answers in several forms pass, the expected wrong ones fail."""

import numpy as np
import pytest
import tensorflow as tf
from _checks import judged_at_drawn_inputs
from gradclinic import checks, losssplit
from gradclinic.checks._core import decode_evidence, encode_evidence


def _losses(inputs, weight1, weight2, label1, label2):
    output1 = inputs @ weight1
    return (output1 - label1).sum(), (output1 @ weight2 - label2).sum()


def product_by_hand(inputs, weight1, weight2, label1, label2):
    loss1, loss2 = _losses(inputs, weight1, weight2, label1, label2)
    d_loss1 = np.repeat(inputs.T, weight1.shape[1], axis=1)
    d_loss2 = inputs.T @ weight2.sum(axis=1, keepdims=True).T
    return loss2 * d_loss1 + loss1 * d_loss2


def product_by_outer(inputs, weight1, weight2, label1, label2):
    # Another correct form: sums written out, np.outer, ones_like (exact on fractions).
    output1 = inputs @ weight1
    loss1 = np.sum(output1) - np.sum(label1)
    loss2 = np.sum(output1 @ weight2) - np.sum(label2)
    ones = np.ones_like(output1[0])
    return np.outer(inputs[0], loss2 * ones + loss1 * np.sum(weight2, axis=1))


def product_by_exact_differences(inputs, weight1, weight2, label1, label2):
    # Another correct route, no formula for the gradient: loss1 * loss2 is quadratic in each
    # entry of weight1, so a central difference with step 1 is exact (also on fractions).
    def product(w1):
        loss1, loss2 = _losses(inputs, w1, weight2, label1, label2)
        return loss1 * loss2

    result = np.zeros_like(weight1)
    for index in np.ndindex(*weight1.shape):
        step = np.zeros_like(weight1)
        step[index] = 1
        result[index] = (product(weight1 + step) - product(weight1 - step)) / 2
    return result


def product_in_float32(inputs, weight1, weight2, label1, label2):
    # Right formula, float32 result for float inputs: within the stated tolerance.
    result = product_by_hand(inputs, weight1, weight2, label1, label2)
    return result if result.dtype == object else result.astype(np.float32)


def product_by_tape(inputs, weight1, weight2, label1, label2):
    # Right numbers, but from a float32 tape: the exact-fraction case catches it.
    w1 = tf.Variable(weight1, dtype=tf.float32)
    with tf.GradientTape() as tape:
        output1 = tf.constant(inputs, tf.float32) @ w1
        loss1 = tf.reduce_sum(output1 - label1)
        loss2 = tf.reduce_sum(output1 @ tf.constant(weight2, tf.float32) - label2)
        product = loss1 * loss2
    return tape.gradient(product, w1)


def test_both_checks_are_registered_under_their_answer_names() -> None:
    assert checks.registry()["6.1"].answer == "my_product_gradient"
    assert checks.registry()["6.2"].answer == "my_frozen_head_gradients"


@pytest.mark.parametrize(
    "answer",
    [product_by_hand, product_by_outer, product_by_exact_differences, product_in_float32],
)
def test_ex6_1_passes_right_answers_in_float64_and_float32(answer) -> None:
    result = checks.ex6_1(answer)
    assert result.passed, result.message


def test_ex6_1_refuses_a_tape_even_with_the_right_numbers() -> None:
    result = checks.ex6_1(product_by_tape)
    assert not result.passed
    assert "with exact fractions" in result.message


def test_ex6_1_asks_for_exact_arithmetic_on_fractions() -> None:
    def float_ones(inputs, weight1, weight2, label1, label2):
        loss1, loss2 = _losses(inputs, weight1, weight2, label1, label2)
        ones = np.ones((inputs.shape[1], weight1.shape[1]))
        return loss2 * inputs.T * ones + loss1 * inputs.T @ weight2.sum(axis=1, keepdims=True).T

    result = checks.ex6_1(float_ones)
    assert not result.passed
    assert "expected exact numbers, got float entries" in result.message


def test_ex6_1_reference_agrees_with_a_float64_tape() -> None:
    # The judge's formula must be the derivative, not just agree with our own by-hand answer.
    for seed in (checks.ch6._PRODUCT_SEED, 12345):  # the self-check's, and one a grader draws
        for index in range(4):
            _agrees_with_a_tape(checks.ch6._product_case(index, seed))


def _agrees_with_a_tape(arrays) -> None:
    w1 = tf.Variable(arrays[1])
    inputs, _, weight2, label1, label2 = map(tf.constant, arrays)
    with tf.GradientTape() as tape:
        output1 = inputs @ w1
        product = tf.reduce_sum(output1 - label1) * tf.reduce_sum(output1 @ weight2 - label2)
    want, _, _ = checks.ch6._product_reference(*arrays)
    np.testing.assert_allclose(tape.gradient(product, w1).numpy(), want, rtol=1e-12)


def _sum_rule(inputs, weight1, weight2, label1, label2):
    # d(loss1 + loss2): the sum's rule applied to the product.
    return np.repeat(inputs.T, weight1.shape[1], 1) + inputs.T @ weight2.sum(1, keepdims=True).T


def _loss1_term_only(inputs, weight1, weight2, label1, label2):
    # The weight2 pattern copied: loss1 times loss2's gradient, the other term forgotten.
    loss1, _ = _losses(inputs, weight1, weight2, label1, label2)
    return loss1 * (inputs.T @ weight2.sum(axis=1, keepdims=True).T)


def _loss2_term_only(inputs, weight1, weight2, label1, label2):
    # As if loss2 did not depend on weight1.
    _, loss2 = _losses(inputs, weight1, weight2, label1, label2)
    return loss2 * np.repeat(inputs.T, weight1.shape[1], axis=1)


def _column_sums(inputs, weight1, weight2, label1, label2):
    loss1, loss2 = _losses(inputs, weight1, weight2, label1, label2)
    return loss2 * inputs.T + loss1 * inputs.T * weight2.sum(axis=0)[None, : weight1.shape[1]]


def _labels_forgotten(inputs, weight1, weight2, label1, label2):
    zeros1, zeros2 = np.zeros_like(label1), np.zeros_like(label2)
    return product_by_hand(inputs, weight1, weight2, zeros1, zeros2)


def _transposed(inputs, weight1, weight2, label1, label2):
    return product_by_hand(inputs, weight1, weight2, label1, label2).T


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (_sum_rule, "inputs (1, 2), weight1 (2, 3), weight2 (3, 4), loss1 = "),
        (_loss1_term_only, "loss1 = "),
        (_loss2_term_only, "loss2 = "),
        (_column_sums, "entry ["),
        (_labels_forgotten, "entry ["),
        (_transposed, "expected weight1's shape (2, 3), got (3, 2)"),
        (lambda *args: None, "expected weight1's shape (2, 3), got ()"),
        (lambda *args: "12", "expected weight1's shape"),
        (42, "expected a function my_product_gradient"),
    ],
)
def test_ex6_1_rejects_the_expected_mistakes_without_the_formula(answer, message) -> None:
    result = checks.ex6_1(answer)
    assert not result.passed
    assert message in result.message
    for giveaway in ("sum(axis", "row sum", "product rule", "loss1 *", "* loss2"):
        assert giveaway not in result.message


def test_ex6_1_judges_evidence_that_went_through_json() -> None:
    ex = checks.registry()["6.1"]
    evidence = ex.collect(product_by_hand)
    assert ex.verdict(decode_evidence(encode_evidence({"6.1": evidence}))["6.1"]).passed
    forged = {**evidence, "case2": np.zeros((2, 2))}
    assert not ex.verdict(forged).passed
    wrong_value = "1/3;" + evidence["exact_values"].split(";", 1)[1]
    assert not ex.verdict({**evidence, "exact_values": wrong_value}).passed
    assert not ex.verdict({**evidence, "exact_values": "12"}).passed
    assert not ex.verdict({**evidence, "exact_shape": np.array([9, 9])}).passed
    assert not ex.verdict({"case0": evidence["case0"]}).passed


def frozen_by_tape(model, ids, labels1, labels2):
    with tf.GradientTape(persistent=True) as tape:
        loss1, loss2 = losssplit.losses(model, ids, labels1, labels2)
    emb1 = tape.gradient(loss1, model.embedding_matrix)
    emb2, out2 = tape.gradient(loss2, [model.embedding_matrix, model.output2])
    del tape
    emb = tf.convert_to_tensor(emb1) + 0.5 * tf.convert_to_tensor(emb2)
    return {"embedding_matrix": emb, "output1": None, "output2": out2}


def frozen_by_two_var_list_calls(model, ids, labels1, labels2):
    # Another correct form: the book's var_list_gradients, one call per loss, combined by hand.
    own1 = losssplit.var_list_gradients(
        model, ids, labels1, labels2, var_list1=("embedding_matrix",), var_list2=()
    )
    own2 = losssplit.var_list_gradients(
        model, ids, labels1, labels2, var_list1=(), var_list2=("embedding_matrix", "output2")
    )
    emb = own1["embedding_matrix"] + 0.5 * own2["embedding_matrix"]
    return {"embedding_matrix": emb, "output1": None, "output2": own2["output2"]}


def frozen_in_one_pass(model, ids, labels1, labels2):
    # Another correct form: one joint loss, one backward pass. The forward values are unchanged
    # (0.5 x + 0.5 x), but only the first half passes loss2's gradient back into head 1.
    with tf.GradientTape() as tape:
        logits1 = tf.nn.embedding_lookup(model.embedding_matrix, ids) @ model.output1
        head2_input = 0.5 * logits1 + 0.5 * tf.stop_gradient(logits1)
        logits2 = head2_input @ model.output2
        loss1 = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels1, logits=logits1)
        )
        loss2 = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels2, logits=logits2)
        )
        total = loss1 + loss2
    emb, out2 = tape.gradient(total, [model.embedding_matrix, model.output2])
    # IndexedSlices for the embedding, as the tape gives it: the probe densifies it.
    return {"embedding_matrix": emb, "output1": None, "output2": out2}


@pytest.mark.parametrize(
    "answer", [frozen_by_tape, frozen_by_two_var_list_calls, frozen_in_one_pass]
)
def test_ex6_2_passes_right_answers_in_three_forms(answer) -> None:
    result = checks.ex6_2(answer)
    assert result.passed, result.message


def colleague(model, ids, labels1, labels2):
    # The chapter's colleague: one weighted joint loss also halves output2's gradient.
    with tf.GradientTape() as tape:
        loss1, loss2 = losssplit.losses(model, ids, labels1, labels2)
        total = loss1 + 0.5 * loss2
    emb, out2 = tape.gradient(total, [model.embedding_matrix, model.output2])
    return {"embedding_matrix": emb, "output1": None, "output2": out2}


def _joint_copied(model, ids, labels1, labels2):
    # Copied from the chapter: the joint loss's gradients with output1 dropped.
    return {**losssplit.gradients(model, ids, labels1, labels2, "joint"), "output1": None}


def _both_lists_copied(model, ids, labels1, labels2):
    # Copied from the chapter's both-lists cell with output1 removed.
    return losssplit.var_list_gradients(
        model,
        ids,
        labels1,
        labels2,
        var_list1=("embedding_matrix",),
        var_list2=("embedding_matrix", "output2"),
    )


def _cut_copied(model, ids, labels1, labels2):
    # Copied from the chapter's stop_gradient strategy with output1 dropped.
    return {**losssplit.gradients(model, ids, labels1, labels2, "stop_gradient"), "output1": None}


def _joint(model, ids, labels1, labels2):
    return losssplit.gradients(model, ids, labels1, labels2, "joint")


def _zeros_for_output1(model, ids, labels1, labels2):
    return {**frozen_by_tape(model, ids, labels1, labels2), "output1": tf.zeros((3, 4))}


def _only_loss2_for_embedding(model, ids, labels1, labels2):
    with tf.GradientTape() as tape:
        _, loss2 = losssplit.losses(model, ids, labels1, labels2)
    emb, out2 = tape.gradient(loss2, [model.embedding_matrix, model.output2])
    return {"embedding_matrix": emb, "output1": None, "output2": out2}


def _half_loss2_without_loss1(model, ids, labels1, labels2):
    grads = _only_loss2_for_embedding(model, ids, labels1, labels2)
    return {**grads, "embedding_matrix": 0.5 * tf.convert_to_tensor(grads["embedding_matrix"])}


def _loss1_halved_instead(model, ids, labels1, labels2):
    # The 0.5 put on loss1's share of the embedding instead of on loss2's.
    own1 = losssplit.var_list_gradients(model, ids, labels1, labels2, ("embedding_matrix",), ())
    own2 = losssplit.var_list_gradients(
        model, ids, labels1, labels2, (), ("embedding_matrix", "output2")
    )
    emb = 0.5 * own1["embedding_matrix"] + own2["embedding_matrix"]
    return {"embedding_matrix": emb, "output1": None, "output2": own2["output2"]}


def _trains_while_answering(model, ids, labels1, labels2):
    grads = frozen_by_tape(model, ids, labels1, labels2)
    model.output2.assign_sub(0.1 * grads["output2"])
    return grads


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (colleague, "output2: got 0.5 x loss2's gradient; output2 should take loss2's at full"),
        (_joint_copied, "embedding_matrix: got loss1's + loss2's gradient, loss2's share at full"),
        (_both_lists_copied, "embedding_matrix: got loss1's + loss2's gradient"),
        (_cut_copied, "embedding_matrix: got only loss1's gradient"),
        (_joint, "output1: expected None (it must not move), got a gradient"),
        (_zeros_for_output1, "output1: expected None, got zeros"),
        (_only_loss2_for_embedding, "embedding_matrix: got only loss2's gradient"),
        (_half_loss2_without_loss1, "embedding_matrix: got only 0.5 x loss2's gradient"),
        (_loss1_halved_instead, "embedding_matrix: gradient off by up to"),
        (_trains_while_answering, "expected the model's variables unchanged"),
        (lambda *args: [None, None, None], "expected a dict with keys"),
        (lambda *args: {"output1": None}, "expected a dict with keys"),
    ],
)
def test_ex6_2_rejects_the_expected_mistakes(answer, message) -> None:
    result = checks.ex6_2(answer)
    assert not result.passed
    assert message in result.message
    assert "TwoHeadModel(seed=11)" in result.message or "expected a dict" in result.message
    assert "stop_gradient" not in result.message


def test_ex6_2_reference_agrees_with_one_tape() -> None:
    # The judge's per-loss gradients (from var_list_gradients) must be each loss's own gradient.
    seed = 4321  # the self-check's is 11; any seed the grader draws must agree too
    model = losssplit.TwoHeadModel(seed)
    with tf.GradientTape(persistent=True) as tape:
        loss1, loss2 = losssplit.losses(model, *checks.ch6._frozen_batch(seed))
    reference = checks.ch6._frozen_reference(seed)
    for loss_name, loss in (("loss1", loss1), ("loss2", loss2)):
        for name, variable in model.by_name.items():
            grad = tape.gradient(loss, variable)
            want = np.zeros(variable.shape) if grad is None else tf.convert_to_tensor(grad)
            np.testing.assert_allclose(reference[loss_name][name], want, rtol=1e-6)
    del tape


@pytest.mark.parametrize(
    "text", ["1e999999999", "1E9", "0.1", "nan", "inf", "1_000", " 12", "9" * 61, "1/" + "9" * 61]
)
def test_ex6_1_judge_never_feeds_fraction_pathological_text(text) -> None:
    # Fraction("1e999999999") would build a billion-digit integer in the judge's process: forged
    # evidence with such an entry is refused before any conversion, and quickly.
    import time

    ex = checks.registry()["6.1"]
    evidence = ex.collect(product_by_hand)
    forged = {**evidence, "exact_values": text + ";" + evidence["exact_values"].split(";", 1)[1]}
    began = time.perf_counter()
    result = ex.verdict(forged)
    assert time.perf_counter() - began < 1.0
    assert not result.passed
    assert "expected exact numbers (fractions or integers) of reasonable size" in result.message


def test_ex6_1_refuses_huge_fractions_from_an_answer_with_a_clear_message() -> None:
    from fractions import Fraction

    def huge(inputs, weight1, weight2, label1, label2):
        result = product_by_hand(inputs, weight1, weight2, label1, label2)
        if result.dtype == object:
            result = result.copy()
            result[0, 0] = Fraction(10**5000, 3)
        return result

    result = checks.ex6_1(huge)
    assert not result.passed
    assert "of reasonable size" in result.message


def test_ex6_2_survives_forged_evidence() -> None:
    ex = checks.registry()["6.2"]
    evidence = ex.collect(frozen_by_tape)
    assert ex.verdict(decode_evidence(encode_evidence({"6.2": evidence}))["6.2"]).passed
    assert not ex.verdict({**evidence, "output2": np.zeros((2, 2))}).passed
    assert not ex.verdict({**evidence, "unchanged": "yes"}).passed
    assert not ex.verdict({"unchanged": True}).passed


def test_stubs_answer_not_yet() -> None:
    def stub(*args):
        raise NotImplementedError("Exercise 6.1: derive it by hand")

    result = checks.ex6_1(stub)
    assert not result.passed
    assert (
        result.message == "your answer raised NotImplementedError: Exercise 6.1: derive it by hand"
    )


# --- the grader's inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "answer", "has_inputs"), [("6.1", product_by_hand, True), ("6.2", frozen_by_tape, True)]
)
def test_at_the_graders_inputs_the_right_answer_passes_and_another_runs_evidence_fails(
    key, answer, has_inputs
) -> None:
    # Evidence relabelled for another run passes only where the answer itself is the evidence.
    relabelled = judged_at_drawn_inputs(checks.registry()[key], answer)
    assert [result.passed for result in relabelled] == [not has_inputs] * len(relabelled)
