"""Chapter 3's self-checks accept right answers in several forms and reject the likely wrong ones."""

import math

import numpy as np
import pytest
import tensorflow as tf
from _checks import failed_with, passed
from gradclinic import checks as check
from gradclinic.bump import bump_double_where, bump_naive, bump_stable
from gradclinic.checks._core import decode_evidence, encode_evidence
from gradclinic.checks.ch3 import _NAN_OPS, EX3_1_BRANCHES, EX3_1_INPUTS, EX3_1_OPS


def test_chapter_3_checks_are_registered_under_their_answer_names():
    names = {key: ex.answer for key, ex in check.registry().items() if key.startswith("3.")}
    assert names == {"3.1": "nan_gradient_at", "3.2": "my_bump", "3.3": "nan_window_edge"}


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


# --- 3.2: a bump right for every sigma >= 0 and |x| <= 1 --------------------------------


def safe_gap_guard(x, sigma):
    inside = tf.abs(x) < sigma
    gap = tf.where(inside, sigma - tf.square(x), tf.ones_like(x))
    return tf.where(inside, tf.exp(-sigma / gap), tf.zeros_like(x))


def float64_guard(x, sigma):
    x64 = tf.cast(x, tf.float64)
    s64 = tf.cast(sigma, tf.float64)
    inside = tf.abs(x64) < s64
    # Another correct substitute: sigma = 1 and x = 0 where unselected.
    safe_s = tf.where(inside, s64 * tf.ones_like(x64), tf.ones_like(x64))
    safe_x = tf.where(inside, x64, tf.zeros_like(x64))
    return tf.where(inside, tf.exp(-safe_s / (safe_s - safe_x**2)), tf.zeros_like(x64))


def broadcast_first(x, sigma):
    # sigma spread to x's shape first, then bump_stable's formula element by element.
    sigma = tf.broadcast_to(sigma, tf.shape(x))
    inside = tf.logical_and(tf.abs(x) < sigma, sigma - tf.square(x) > 0)
    gap = tf.where(inside, sigma - tf.square(x), tf.ones_like(x))
    return tf.where(inside, tf.exp(-sigma / gap), tf.zeros_like(x))


@pytest.mark.parametrize("fn", [safe_gap_guard, float64_guard, broadcast_first])
def test_ex3_2_accepts_correct_guards_in_other_forms(fn):
    assert passed(check.ex3_2(fn), "3.2")


def test_ex3_2_rejects_the_library_guard_that_takes_one_sigma():
    # bump_stable is right for one sigma (chapter 3 mentions it) but refuses a column.
    result = check.ex3_2(bump_stable)
    assert failed_with(
        result,
        "3.2",
        "sigma as a column of shape (6, 1), one per row of x of shape (6, 5): your answer "
        "raised ValueError: sigma must be a scalar or shape (1,)",
    ), repr(result)


def square_guard(x, sigma):
    # The known wrong answer: selects on x^2 < sigma instead of |x| < sigma.
    gap = sigma - tf.square(x)
    inside = gap > 0
    safe_gap = tf.where(inside, gap, tf.ones_like(gap))
    return tf.where(inside, tf.exp(-sigma / safe_gap), tf.zeros_like(x))


def substitute_one(x, sigma):
    inside = tf.abs(x) < sigma
    safe_x = tf.where(inside, x, tf.ones_like(x))
    return tf.where(inside, tf.exp(-sigma / (sigma - tf.square(safe_x))), tf.zeros_like(x))


def less_equal_guard(x, sigma):
    inside = tf.abs(x) <= sigma
    gap = tf.where(inside, sigma - tf.square(x), tf.ones_like(x))
    return tf.where(inside & (gap > 0), tf.exp(-sigma / gap), tf.zeros_like(x))


def frozen_numerator(x, sigma):
    # Right values, but the sigma on top of the fraction carries no gradient.
    inside = tf.abs(x) < sigma
    gap = tf.where(inside, sigma - tf.square(x), tf.ones_like(x))
    return tf.where(inside, tf.exp(-tf.stop_gradient(sigma) / gap), tf.zeros_like(x))


def detached(x, sigma):
    return safe_gap_guard(x, tf.constant(sigma.numpy()))


def summed(x, sigma):
    return tf.reduce_sum(safe_gap_guard(x, sigma), keepdims=True)


def first_sigma(x, sigma):
    # Right for one sigma; with a column, every row gets the first row's sigma.
    return safe_gap_guard(x, tf.reshape(sigma, [-1])[:1])


def column_only(x, sigma):
    # Right for sigma of shape (1,), the column rejected by the answer itself.
    if sigma.shape != (1,):
        raise ValueError("one sigma only")
    return safe_gap_guard(x, sigma)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (square_guard, "sigma=0.3, x=0.35: your value 0.1845 is not the bump's value there"),
        (bump_double_where, "sigma=0, x=0: the value is right but df/dsigma is nan"),
        (bump_naive, "sigma=0.3, x=0.5478: the value is right but df/dsigma is nan"),
        (substitute_one, "sigma=0.995, x=1: the value is right but df/dsigma is nan"),
        (less_equal_guard, "sigma=0.3, x=-0.3: your value 0.2397 is not the bump's value"),
        (detached, "no gradient reached sigma (None)"),
        (
            first_sigma,
            "in the row of sigma=0.2, x=0.1, your value 0 is not the bump's value there; "
            "each row must use its own sigma",
        ),
        (column_only, "one per row of x of shape (6, 5): your answer raised ValueError"),
    ],
)
def test_ex3_2_rejects_the_expected_wrong_guards(fn, message):
    result = check.ex3_2(fn)
    assert failed_with(result, "3.2", message), repr(result)
    # No formula and no expected value in the message.
    assert "exp(" not in repr(result) and "expected f" not in repr(result)


def test_ex3_2_rejects_a_frozen_numerator_on_its_gradient_value():
    result = check.ex3_2(frozen_numerator)
    assert failed_with(result, "3.2", "the value is right but df/dsigma = ")
    assert "is not the bump's derivative there" in repr(result)


def test_ex3_2_rejects_non_elementwise_answers_and_stubs():
    assert failed_with(check.ex3_2(summed), "3.2", "the bump must act element by element")

    def flat(x, sigma):
        return tf.reshape(safe_gap_guard(x, sigma), [-1])

    assert failed_with(check.ex3_2(flat), "3.2", "expected an output of that shape")

    def stub(x, sigma):
        raise NotImplementedError("Exercise 3.2: your guard here")

    assert failed_with(check.ex3_2(stub), "3.2", "your answer raised NotImplementedError")
    assert failed_with(check.ex3_2(None), "3.2", "expected a function my_bump")


def test_ex3_2_judge_survives_forged_evidence():
    ex = check.registry()["3.2"]
    good = ex.collect(safe_gap_guard)
    assert ex.verdict(decode_evidence(encode_evidence({"3.2": good}))["3.2"]).passed
    assert not ex.verdict({"values": good["values"]}).passed
    assert not ex.verdict({**good, "values": good["values"][:3]}).passed
    # Right values cannot hide missing gradients.
    assert not ex.verdict({**good, "no_grad": np.ones_like(good["no_grad"])}).passed
    # Nor a missing, reshaped or gradient-less column.
    without_column = {k: v for k, v in good.items() if not k.startswith("column_")}
    assert not ex.verdict(without_column).passed
    assert not ex.verdict({**good, "column_values": good["column_values"].T}).passed
    assert not ex.verdict({**good, "column_grads": None}).passed
    assert not ex.verdict({**good, "column_grads": good["column_grads"][:2]}).passed


# --- 3.3: derive where the naive layer's NaN window ends --------------------------------

FLOAT32_OVERFLOW = math.log(np.finfo(np.float32).max)


def derived_edge(sigma, overflow=FLOAT32_OVERFLOW):
    # exp(-sigma / (sigma - x^2)) overflows while sigma / (x^2 - sigma) > overflow.
    return math.sqrt(sigma * (1 + 1 / overflow))


def test_ex3_3_accepts_the_derivation_in_several_forms():
    assert passed(check.ex3_3(derived_edge), "3.3")

    def first_order(sigma):
        root = math.sqrt(sigma)
        return root + sigma / (2 * FLOAT32_OVERFLOW * root)

    assert passed(check.ex3_3(first_order), "3.3")
    assert passed(check.ex3_3(lambda s: np.float32(derived_edge(s, 88.7))), "3.3")
    assert passed(check.ex3_3(lambda s: np.sqrt(np.float64(s) * (1 + 1 / 88.72))), "3.3")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (math.sqrt, "is not beyond sqrt(sigma)"),
        (lambda s: s, "is not beyond sqrt(sigma)"),
        # float64's overflow threshold instead of float32's.
        (
            lambda s: derived_edge(s, math.log(np.finfo(np.float64).max)),
            "is not where the window ends",
        ),
        # sigma dropped from the numerator: x^2 < sigma + 1/88.7.
        (lambda s: math.sqrt(s + 1 / 88.72), "is not where the window ends"),
        # The factor applied to sqrt(sigma) instead of sigma: the window twice as wide.
        (lambda s: math.sqrt(s) * (1 + 1 / 88.72), "is not where the window ends"),
        # The inequality turned round: x^2 < sigma * (1 - 1/88.7) lies inside sqrt(sigma).
        (lambda s: math.sqrt(s * (1 - 1 / 88.72)), "is not beyond sqrt(sigma)"),
        # Right at sigma = 0.3 only (the number, hard-coded).
        (lambda s: 0.5508, "sigma=0.05: x = 0.55080 is not where the window ends"),
        (lambda s: float("nan"), "expected a finite number"),
        (lambda s: "0.55", "expected a number, got str"),
        (lambda s: tf.constant(0.55), "expected a number, got EagerTensor"),
        (0.5508, "expected a function nan_window_edge"),
    ],
)
def test_ex3_3_rejects_the_likely_wrong_edges(answer, message):
    result = check.ex3_3(answer)
    assert failed_with(result, "3.3", message), repr(result)
    assert "88.7" not in repr(result) and "1 / " not in repr(result)


def test_ex3_3_judge_survives_forged_evidence():
    ex = check.registry()["3.3"]
    good = ex.collect(derived_edge)
    assert ex.verdict(good).passed
    assert not ex.verdict({"edges": good["edges"][:2]}).passed
