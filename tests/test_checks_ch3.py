"""Chapter 3's self-checks accept right answers in several forms and reject the likely wrong ones."""

import numpy as np
import pytest
import tensorflow as tf
from _checks import drawn, failed_with, judged_at_drawn_inputs, passed
from gradclinic import checks as check
from gradclinic.checks._core import decode_evidence, encode_evidence
from gradclinic.checks.ch3 import (
    _NAN_OPS,
    _STEP_POINTS,
    EX3_1_BRANCHES,
    EX3_1_INPUTS,
    EX3_1_OPS,
    smooth_step_reference,
)


def test_chapter_3_checks_are_registered_under_their_answer_names():
    names = {key: ex.answer for key, ex in check.registry().items() if key.startswith("3.")}
    assert names == {"3.1": "nan_gradient_at", "3.2": "smooth_step"}


# --- 3.1: predict, then verify, which unselected branches give a NaN gradient, and why -----

# The reasoning the exercise asks for, written out: NaN where an op's backward step meets
# 0 * inf or 0 * NaN (reciprocal/rsqrt skip a zero upstream); the ops are the ones whose own
# step turns the finite gradient it receives into inf or NaN.
RIGHT_3_1 = {
    "tf.math.reciprocal(x)": {},
    "tf.math.rsqrt(x)": {},
    "tf.exp(-1.0 / x)": {0.0: ["RealDiv"]},
    "x * tf.math.log(x)": {-1.0: ["Mul"], 0.0: ["Mul", "Log"]},
    "tf.tanh(1.0 / x)": {0.0: ["RealDiv"]},
    "tf.pow(x, 1.5)": {-1.0: ["Pow"]},
    "tf.math.divide_no_nan(1.0, x)": {},
}


def test_ex3_1_accepts_the_right_answer_as_lists_tuples_sets_strings_or_ints():
    assert passed(check.ex3_1(RIGHT_3_1), "3.1")
    other_forms = {
        name: {int(x) if x == 0 else x: tuple(ops) for x, ops in at.items()}
        for name, at in RIGHT_3_1.items()
    }
    other_forms["x * tf.math.log(x)"] = {-1: "Mul", 0: {"Log", "Mul"}}
    assert passed(check.ex3_1(other_forms), "3.1")


def nan_source_ops(branch, value):
    """The op types whose own backward step takes a finite gradient and returns inf or NaN."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder_with_default(np.float32(value), [])
        out = tf.where(x > 0, branch(x), tf.zeros_like(x))
        steps = []
        for op in graph.get_operations():
            if op.type == "SelectV2" or not op.outputs or not op.outputs[0].dtype.is_floating:
                continue
            inputs = [t for t in op.inputs if t.dtype.is_floating and depends_on(t, x)]
            if not inputs:
                continue
            # The gradient arriving at the op, then only this op's step: its inputs held fixed.
            upstream = tf.gradients(out, op.outputs[0])[0]
            local = tf.gradients(op.outputs[0], inputs, grad_ys=upstream, stop_gradients=inputs)
            steps.append((op.type, upstream, local))
        with tf.compat.v1.Session(graph=graph) as session:
            found = set()
            for op_type, upstream, local in steps:
                arriving, *leaving = session.run([upstream, *local])
                if np.isfinite(arriving) and not all(np.isfinite(v) for v in leaving):
                    found.add(op_type)
    return found


def depends_on(tensor, x):
    seen, stack = set(), [tensor]
    while stack:
        t = stack.pop()
        if t is x:
            return True
        if t.op.name not in seen:
            seen.add(t.op.name)
            stack.extend(t.op.inputs)
    return False


def test_ex3_1_key_matches_what_tensorflow_computes():
    # The chapter's claim behind the exercise, measured directly: NaN inputs on the tape, and
    # the ops of the key (ch3._NAN_OPS) step by step in a graph, which computes what eager does.
    x = tf.Variable(np.array(EX3_1_INPUTS, dtype=np.float32))
    for name, branch in EX3_1_BRANCHES.items():
        with tf.GradientTape() as tape:
            out = tf.where(x > 0, branch(x), tf.zeros_like(x))
        grads = tape.gradient(out, x).numpy()
        nan_at = [v for v, g in zip(EX3_1_INPUTS, grads, strict=True) if np.isnan(g)]
        assert nan_at == sorted(RIGHT_3_1[name]), name
        measured = {v: frozenset(nan_source_ops(branch, v)) for v in nan_at}
        assert measured == {v: frozenset(ops) for v, ops in RIGHT_3_1[name].items()}, name
        assert measured == _NAN_OPS[name], name
        assert all(op in EX3_1_OPS for ops in measured.values() for op in ops)


@pytest.mark.parametrize(
    "wrong",
    [
        # "A value that is inf or NaN makes the gradient NaN": reciprocal(0) = inf, rsqrt(0) = inf.
        {
            **RIGHT_3_1,
            "tf.math.reciprocal(x)": {0.0: ["Reciprocal"]},
            "tf.math.rsqrt(x)": {-1.0: ["Rsqrt"], 0.0: ["Rsqrt"]},
        },
        # "No guard can leak": nothing is NaN.
        {key: {} for key in RIGHT_3_1},
        # "tanh(1/0) = tanh(inf) = 1 is finite, so its gradient is": 1/x's gradient is -inf there.
        {**RIGHT_3_1, "tf.tanh(1.0 / x)": {}},
        # "exp(-1/0) is exp(-inf) = 0, a finite value, so no NaN": the division's gradient
        # still multiplies by 1/x^2 = inf.
        {**RIGHT_3_1, "tf.exp(-1.0 / x)": {}},
        # "pow's derivative 1.5 * x**0.5 is 0 at 0 and fine at -1": NaN at -1 missed.
        {**RIGHT_3_1, "tf.pow(x, 1.5)": {}},
        # What TensorFlow gives under XLA (jit_compile=True), not eagerly: reciprocal leaks at 0.
        {**RIGHT_3_1, "tf.math.reciprocal(x)": {0.0: ["Reciprocal"]}},
    ],
)
def test_ex3_1_rejects_wrong_inputs_without_saying_which_input(wrong):
    result = check.ex3_1(wrong)
    assert failed_with(result, "3.1", "; not what TensorFlow gives for"), repr(result)
    # Names the expressions, never the inputs, so the message is not the answer.
    assert "x=" not in repr(result) and "x = " not in repr(result)


@pytest.mark.parametrize(
    "wrong",
    [
        # The op with the non-finite forward value (what gradclinic.diagnose reports): log(-1)
        # is NaN and log(0) = -inf, but at -1 Log's own step passes on a finite 0.
        {**RIGHT_3_1, "x * tf.math.log(x)": {-1.0: ["Log"], 0.0: ["Log"]}},
        # One op per NaN: at 0 both the product's step and log's step make one.
        {**RIGHT_3_1, "x * tf.math.log(x)": {-1.0: ["Mul"], 0.0: ["Mul"]}},
        # The outermost op: exp's and tanh's steps pass on 0 * 0 and 0 * (1 - 1) = 0.
        {**RIGHT_3_1, "tf.exp(-1.0 / x)": {0.0: ["Exp"]}, "tf.tanh(1.0 / x)": {0.0: ["Tanh"]}},
        # Every op of the expression.
        {**RIGHT_3_1, "tf.exp(-1.0 / x)": {0.0: ["Exp", "RealDiv"]}},
    ],
)
def test_ex3_1_rejects_wrong_ops_with_a_count_only(wrong):
    result = check.ex3_1(wrong)
    assert failed_with(result, "3.1", "inputs right for all 7, but the ops are wrong for"), repr(
        result
    )
    assert not any(name in repr(result) for name in RIGHT_3_1)


def test_ex3_1_rejects_malformed_answers():
    assert failed_with(check.ex3_1([0.0]), "3.1", "expected a dict")
    partial = dict(RIGHT_3_1)
    del partial["tf.pow(x, 1.5)"]
    assert failed_with(check.ex3_1(partial), "3.1", "no prediction for 'tf.pow(x, 1.5)'")
    assert failed_with(
        check.ex3_1({**RIGHT_3_1, "tf.math.rsqrt(x)": {2.0: ["Rsqrt"]}}),
        "3.1",
        "2.0 is not one of the inputs",
    )
    # The old form, a list of inputs, is not enough: the ops are part of the answer.
    assert failed_with(
        check.ex3_1({**RIGHT_3_1, "tf.pow(x, 1.5)": [-1.0]}),
        "3.1",
        "expected a dict {input: [ops]}",
    )
    assert failed_with(
        check.ex3_1({**RIGHT_3_1, "tf.pow(x, 1.5)": {-1.0: []}}), "3.1", "a non-empty list of ops"
    )
    assert failed_with(
        check.ex3_1({**RIGHT_3_1, "tf.pow(x, 1.5)": {-1.0: ["Sqrt"]}}),
        "3.1",
        "'Sqrt' is not one of EX3_1_OPS",
    )


def test_ex3_1_judge_survives_forged_evidence():
    ex = check.registry()["3.1"]
    good = ex.collect(RIGHT_3_1)
    assert ex.verdict(decode_evidence(encode_evidence({"3.1": good}))["3.1"]).passed
    # Right inputs cannot hide missing or mangled ops.
    without_ops = {k: v for k, v in good.items() if not k.startswith("ops of ")}
    assert not ex.verdict(without_ops).passed
    name = "x * tf.math.log(x)"
    assert not ex.verdict({**good, f"ops of {name}": good[f"ops of {name}"][:1]}).passed


# --- 3.2: a smooth step whose gradient stays finite at and beyond its edges ------------


def safe_psi(t):
    # The chapter's fix: a safe input (1) where t <= 0, then the formula, then the selection.
    positive = t > 0
    safe_t = tf.where(positive, t, tf.ones_like(t))
    return tf.where(positive, tf.exp(-1.0 / safe_t), tf.zeros_like(t))


def double_where_step(x):
    return safe_psi(x) / (safe_psi(x) + safe_psi(1.0 - x))


def float64_step(x):
    x64 = tf.cast(x, tf.float64)
    return tf.cast(double_where_step(x64), x.dtype)


def clamped_step(x):
    # Another right answer: tf.maximum keeps the exponent's input positive, and its gradient
    # below the bound is 0, so no inf meets the 0.
    def psi(t):
        return tf.exp(-1.0 / tf.maximum(t, 1e-3))

    return psi(x) / (psi(x) + psi(1.0 - x))


def outer_where_step(x):
    # Selects the formula only inside (0, 1): right values, the formula still runs outside.
    formula = double_where_step(x)
    return tf.where(x <= 0, tf.zeros_like(x), tf.where(x >= 1, tf.ones_like(x), formula))


@pytest.mark.parametrize("fn", [double_where_step, float64_step, clamped_step, outer_where_step])
def test_ex3_2_accepts_steps_whose_unsafe_inputs_are_replaced_first(fn):
    assert passed(check.ex3_2(fn), "3.2")


def test_ex3_2_reference_matches_what_tensorflow_computes_in_float64():
    x = tf.Variable(np.array(_STEP_POINTS, dtype=np.float64))
    with tf.GradientTape() as tape:
        out = double_where_step(x)
    values, slopes = smooth_step_reference(np.array(_STEP_POINTS))
    np.testing.assert_allclose(out.numpy(), values, atol=1e-12)
    np.testing.assert_allclose(tape.gradient(out, x).numpy(), slopes, rtol=1e-9, atol=1e-12)
    # The step is smooth: its derivative is 0 at both edges.
    assert values[_STEP_POINTS.index(0.5)] == pytest.approx(0.5)
    assert slopes[_STEP_POINTS.index(0.0)] == 0 and slopes[_STEP_POINTS.index(1.0)] == 0


def single_where_psi(t):
    # The one-tf.where pattern the chapter shows to be unsafe.
    return tf.where(t > 0, tf.exp(-1.0 / t), tf.zeros_like(t))


def single_where_step(x):
    return single_where_psi(x) / (single_where_psi(x) + single_where_psi(1.0 - x))


def single_outer_where_step(x):
    def psi(t):
        return tf.exp(-1.0 / t)

    ratio = psi(x) / (psi(x) + psi(1.0 - x))
    return tf.where(x <= 0, tf.zeros_like(x), tf.where(x >= 1, tf.ones_like(x), ratio))


def unguarded_step(x):
    return tf.exp(-1.0 / x) / (tf.exp(-1.0 / x) + tf.exp(-1.0 / (1.0 - x)))


def mirrored_step(x):
    # psi(x - 1) instead of psi(1 - x): 0 / 0 where both are 0.
    return safe_psi(x) / (safe_psi(x) + safe_psi(x - 1.0))


def numpy_step(x):
    values, _ = smooth_step_reference(np.asarray(x))
    return values.astype(np.float32)


def batch_normalised_step(x):
    step = double_where_step(x)
    return step / tf.reduce_max(step)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (single_where_step, "x=-0.005: the value is right but d/dx is nan"),
        (single_outer_where_step, "x=-0.005: the value is right but d/dx is nan"),
        (unguarded_step, "x=-3: your value 0.641834 is not the smooth step's value 0"),
        (mirrored_step, "x=-3: your value nan is not the smooth step's value 0"),
        (numpy_step, "no gradient reached x (None)"),
        (batch_normalised_step, "the step must act element by element"),
        (lambda x: tf.reshape(double_where_step(x), (-1, 1)), "expected an output of that shape"),
        (lambda x: tf.cast(x > 0.5, tf.int32), "expected a floating-point output"),
        (None, "expected a function smooth_step"),
    ],
)
def test_ex3_2_rejects_the_likely_wrong_steps(fn, message):
    result = check.ex3_2(fn)
    assert failed_with(result, "3.2", message), repr(result)


@pytest.mark.parametrize(
    "fn", [single_where_step, single_outer_where_step, unguarded_step, mirrored_step]
)
def test_ex3_2_the_graders_inputs_keep_the_edges_that_catch_the_likely_wrong_steps(fn):
    # Drawn afresh for each notebook, they still sit just outside both edges and far outside.
    ex = check.registry()["3.2"]
    for seed in range(5):
        inputs, digest = drawn("3.2", seed)
        assert not ex.verdict(ex.collect(fn, inputs, digest), inputs, digest), seed


def test_ex3_2_reports_a_stub_that_raises():
    def stub(x):
        raise NotImplementedError("Exercise 3.2: your step here")

    assert failed_with(check.ex3_2(stub), "3.2", "your answer raised NotImplementedError")


def test_ex3_2_judge_survives_forged_evidence():
    ex = check.registry()["3.2"]
    good = ex.collect(double_where_step)
    assert ex.verdict(decode_evidence(encode_evidence({"3.2": good}))["3.2"]).passed
    assert not ex.verdict({"values": good["values"]}).passed
    assert not ex.verdict({**good, "values": good["values"][:3]}).passed
    # Right values cannot hide a missing or non-finite gradient.
    assert not ex.verdict({**good, "grads": None}).passed
    assert not ex.verdict({**good, "grads": good["grads"] * np.nan}).passed


# --- the grader's inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "answer", "has_inputs"), [("3.1", RIGHT_3_1, False), ("3.2", double_where_step, True)]
)
def test_at_the_graders_inputs_the_right_answer_passes_and_another_runs_evidence_fails(
    key, answer, has_inputs
) -> None:
    # Evidence relabelled for another run passes only where the answer itself is the evidence.
    relabelled = judged_at_drawn_inputs(check.registry()[key], answer)
    assert [result.passed for result in relabelled] == [not has_inputs] * len(relabelled)
