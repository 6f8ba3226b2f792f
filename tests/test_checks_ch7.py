"""Chapter 7's self-checks: the book's answers pass, the usual wrong causes and fixes do not."""

import math

import numpy as np
import pytest
import tensorflow as tf
from _checks import judged_at_drawn_inputs
from gradclinic import checks, patients
from gradclinic import diagnose as diagnosis
from gradclinic.checks import ch7
from gradclinic.checks._core import decode_evidence, encode_evidence
from gradclinic.diagnose import diagnose


def log_cosh(y_true, y_pred):
    magnitude = tf.abs(y_pred - y_true)
    return tf.reduce_mean(magnitude + tf.math.softplus(-2.0 * magnitude) - math.log(2.0))


def naive_log_cosh(y_true, y_pred):
    return tf.reduce_mean(tf.math.log(tf.math.cosh(y_pred - y_true)))


def distance(x, prototypes):
    squared = tf.reduce_sum(tf.square(x[:, None, :] - prototypes[None, :, :]), axis=-1)
    positive = squared > 0
    safe = tf.where(positive, squared, tf.ones_like(squared))
    return tf.where(positive, tf.sqrt(safe), tf.zeros_like(squared))


def naive_distance(x, prototypes):
    return tf.sqrt(tf.reduce_sum(tf.square(x[:, None, :] - prototypes[None, :, :]), axis=-1))


def stable_gate(z):
    positive = z >= 0
    # Each branch gets inputs on which its exp cannot overflow.
    z_pos = tf.where(positive, z, tf.zeros_like(z))
    z_neg = tf.where(positive, tf.zeros_like(z), z)
    return tf.where(positive, 1 / (1 + tf.exp(-z_pos)), tf.exp(z_neg) / (1 + tf.exp(z_neg)))


def abs_gate(z):
    e = tf.exp(-tf.abs(z))
    return tf.where(z >= 0, 1 / (1 + e), e / (1 + e))


def hand_gate(z):
    e = tf.exp(z)
    return e / (1 + e)


RIGHT = {
    "7.1": {"cause": ch7.CAUSES["LEFT_TENSORFLOW"], "fix": log_cosh},
    "7.2": {"op_type": "Sqrt", "phase": "backward", "fix": distance},
    "7.3": {"op_type": "Exp", "phase": "forward", "fix": stable_gate},
}


def test_the_three_checks_are_registered_under_their_answer_names() -> None:
    names = {key: ex.answer for key, ex in checks.registry().items() if key.startswith("7.")}
    assert names == {"7.1": "case_7_1", "7.2": "case_7_2", "7.3": "case_7_3"}


@pytest.mark.parametrize("key", sorted(RIGHT))
def test_right_answers_pass_also_through_json(key: str) -> None:
    exercise = checks.registry()[key]
    result = exercise(RIGHT[key])
    assert result.passed, result.message
    evidence = decode_evidence(encode_evidence({key: exercise.collect(RIGHT[key])}))
    assert exercise.verdict(evidence[key]).passed


def test_keras_log_cosh_and_tf_sigmoid_are_fixes_too() -> None:
    import keras

    def library_loss(y_true, y_pred):
        return tf.reduce_mean(keras.losses.log_cosh(y_true, y_pred))

    assert checks.ex7_1({**RIGHT["7.1"], "fix": library_loss}).passed
    assert checks.ex7_3({**RIGHT["7.3"], "fix": tf.sigmoid}).passed


def test_the_check_causes_are_the_diagnose_constants() -> None:
    assert tuple(ch7.CAUSES.values()) == diagnosis.CAUSES
    assert ch7.PHASES == (diagnosis.FORWARD, diagnosis.BACKWARD)


@pytest.mark.parametrize(
    ("key", "field"), [("7.1", "cause"), ("7.2", "op_type"), ("7.3", "op_type")]
)
def test_the_truth_of_each_check_is_what_diagnose_reports(key: str, field: str) -> None:
    patient = patients.exercise_patient(key)
    broken = diagnose(patient.model, patient.x, patient.y, loss=patient.loss).problems()[0]
    if field == "cause":
        found = {"cause": broken.cause}
    else:
        found = {"op_type": broken.culprit.op_type, "phase": broken.culprit.phase}
    assert checks.registry()[key]({**RIGHT[key], **found}).passed


def test_the_phase_follows_the_gradient_as_exercise_6_2_defines_it() -> None:
    # Exercise 7.2's example: log 0 makes the loss NaN, yet the gradient's NaN is born backward.
    model, x, labels = patients.confident_classifier(softmax=True)
    report = diagnosis.diagnose_loss(
        lambda: patients.probability_cross_entropy(labels, model(x)), model.trainable_variables
    )
    assert np.isnan(report.loss)
    origins = {(r.culprit.op_type, r.culprit.phase) for r in report.problems()}
    assert origins == {("Log", diagnosis.BACKWARD)}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({**RIGHT["7.1"], "cause": ch7.CAUSES["BLOCKED"]}, "not what disconnects this patient"),
        ({**RIGHT["7.1"], "cause": None}, "expected one of diagnose's cause constants"),
        ({**RIGHT["7.1"], "cause": "numpy"}, "expected one of gradclinic.diagnose."),
        ({**RIGHT["7.1"], "fix": naive_log_cosh}, "= -300.0, expected a finite loss, got inf"),
        (
            {**RIGHT["7.1"], "fix": patients.exercise_patient("7.1").loss},
            "y_pred still gets no gradient (None)",
        ),
        (
            {**RIGHT["7.1"], "fix": lambda t, p: 9 * log_cosh(t, p)},
            "for y_pred - y_true = -300.0, expected loss 299.307",
        ),
        (
            {**RIGHT["7.1"], "fix": lambda t, p: tf.reduce_sum(log_cosh(t, p) * tf.ones_like(t))},
            "expected their mean loss",
        ),
        ({"cause": ch7.CAUSES["LEFT_TENSORFLOW"]}, "expected a key 'fix'"),
        ([log_cosh], "expected a dict with keys"),
    ],
)
def test_ex7_1_rejects_wrong_answers(answer, message) -> None:
    result = checks.ex7_1(answer)
    assert not result.passed
    assert message in result.message, result.message


def test_ex7_1_reports_a_stub() -> None:
    def stub(y_true, y_pred):
        raise NotImplementedError("Exercise 7.1")

    result = checks.ex7_1({**RIGHT["7.1"], "fix": stub})
    assert result.message == "your answer raised NotImplementedError: Exercise 7.1"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({**RIGHT["7.2"], "op_type": "Exp"}, "does not come from a 'Exp' op"),
        ({**RIGHT["7.2"], "op_type": None}, "got nothing"),
        ({**RIGHT["7.2"], "phase": "forward"}, "phase: not what happens in this patient"),
        ({**RIGHT["7.2"], "phase": "later"}, "phase: expected one of ('forward', 'backward')"),
        ({**RIGHT["7.2"], "fix": naive_distance}, "row 0 is not finite"),
        (
            {**RIGHT["7.2"], "fix": lambda x, p: naive_distance(x, p + 1e-3)},
            "point 0, prototype 0: expected distance 0.00000",
        ),
        (
            {**RIGHT["7.2"], "fix": lambda x, p: distance(tf.stop_gradient(x), p)},
            "points get no gradient (None)",
        ),
    ],
)
def test_ex7_2_rejects_wrong_answers(answer, message) -> None:
    result = checks.ex7_2(answer)
    assert not result.passed
    assert message in result.message, result.message


def test_ex7_2_accepts_a_tiny_epsilon_but_not_a_large_one() -> None:
    def with_epsilon(epsilon):
        def fix(x, p):
            squared = tf.reduce_sum(tf.square(x[:, None, :] - p[None, :, :]), axis=-1)
            return tf.sqrt(squared + epsilon)

        return {**RIGHT["7.2"], "fix": fix}

    assert checks.ex7_2(with_epsilon(1e-12)).passed
    assert "expected distance" in checks.ex7_2(with_epsilon(1e-4)).message


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({**RIGHT["7.3"], "phase": "backward"}, "phase: not what happens in this patient"),
        ({**RIGHT["7.3"], "op_type": "RealDiv"}, "does not come from a 'RealDiv' op"),
        (
            {**RIGHT["7.3"], "fix": hand_gate},
            "fix: z = 11.25 in float16: expected gate 1.0000, got nan",
        ),
        (
            {**RIGHT["7.3"], "fix": lambda z: tf.cast(hand_gate(tf.cast(z, tf.float32)), z.dtype)},
            "fix: z = 250.0 in float16: expected gate 1.0000, got nan",
        ),
        ({**RIGHT["7.3"], "fix": lambda z: tf.clip_by_value(z, 0.0, 1.0)}, "expected gate 0.0474"),
        # |z| has a kink at 0 that the gate does not: autodiff returns 0 there, not 1/4.
        (
            {**RIGHT["7.3"], "fix": abs_gate},
            "fix: z = 0.0 in float16: expected d gate / dz = 0.225",
        ),
    ],
)
def test_ex7_3_rejects_wrong_answers(answer, message) -> None:
    result = checks.ex7_3(answer)
    assert not result.passed
    assert message in result.message, result.message


def test_ex7_3_rejects_a_gate_whose_gradient_breaks() -> None:
    def unselected_overflow(z):
        # Values right, but the branch not taken overflows: the chapter's lesson once more.
        return tf.where(z >= 0, 1 / (1 + tf.exp(-z)), tf.exp(z) / (1 + tf.exp(z)))

    result = checks.ex7_3({**RIGHT["7.3"], "fix": unselected_overflow})
    assert not result.passed
    assert "d gate / dz" in result.message, result.message


@pytest.mark.parametrize("key", sorted(RIGHT))
def test_judges_survive_forged_evidence(key: str) -> None:
    exercise = checks.registry()[key]
    evidence = exercise.collect(RIGHT[key])
    forged = {name: np.zeros(2) if isinstance(v, np.ndarray) else v for name, v in evidence.items()}
    assert not exercise.verdict(forged).passed


def test_messages_do_not_name_the_true_cause() -> None:
    wrong = [
        checks.ex7_1({**RIGHT["7.1"], "cause": ch7.CAUSES["UNUSED"]}),
        checks.ex7_2({**RIGHT["7.2"], "op_type": "Log"}),
        checks.ex7_3({**RIGHT["7.3"], "op_type": "Log"}),
    ]
    for result in wrong:
        assert (
            "LEFT_TENSORFLOW" not in result.message
            and ch7.CAUSES["LEFT_TENSORFLOW"] not in result.message
        )
        assert "Sqrt" not in result.message and "'Exp'" not in result.message


def test_right_fixes_in_other_forms_pass() -> None:
    def log_cosh_in_float64(y_true, y_pred):
        # The stable formula computed in float64 and returned in y_pred's dtype.
        error = tf.cast(y_pred, tf.float64) - tf.cast(y_true, tf.float64)
        magnitude = tf.abs(error)
        loss = tf.reduce_mean(magnitude + tf.math.softplus(-2.0 * magnitude) - math.log(2.0))
        return tf.cast(loss, y_pred.dtype)

    def distance_by_norm(x, prototypes):
        difference = x[:, None, :] - prototypes[None, :, :]
        on_prototype = tf.reduce_all(tf.equal(difference, 0.0), axis=-1, keepdims=True)
        safe = tf.where(on_prototype, tf.ones_like(difference), difference)
        return tf.where(on_prototype[..., 0], 0.0, tf.norm(safe, axis=-1))

    def gate_by_tanh(z):
        return 0.5 * (1.0 + tf.tanh(0.5 * z))

    assert checks.ex7_1({**RIGHT["7.1"], "fix": log_cosh_in_float64}).passed
    assert checks.ex7_2({**RIGHT["7.2"], "fix": distance_by_norm}).passed
    assert checks.ex7_3({**RIGHT["7.3"], "fix": gate_by_tanh}).passed


def test_plausible_wrong_fixes_are_rejected_without_the_answer() -> None:
    def distance_in_float64(x, prototypes):
        # More precision does not help: at a zero distance the gradient is 0/0 in any dtype.
        # (Not tf.norm: TF 2.22 made its gradient at a zero vector 0, a right fix there.)
        difference = tf.cast(x[:, None, :] - prototypes[None, :, :], tf.float64)
        distance = tf.sqrt(tf.reduce_sum(tf.square(difference), axis=-1))
        return tf.cast(distance, x.dtype)

    def clipped_gate(z):
        # Clipping z before the hand-written gate keeps it finite but zeroes its gradient there.
        e = tf.exp(tf.clip_by_value(z, -5.0, 5.0))
        return e / (1 + e)

    in_float64 = checks.ex7_2({**RIGHT["7.2"], "fix": distance_in_float64})
    clipped = checks.ex7_3({**RIGHT["7.3"], "fix": clipped_gate})
    for result in (in_float64, clipped):
        assert not result.passed
        assert "tf.where" not in result.message and "sigmoid" not in result.message


@pytest.mark.parametrize(
    "per_sample",
    [
        lambda y_true, y_pred: log_cosh_per_sample(y_true, y_pred)[:, 0],
        lambda y_true, y_pred: log_cosh_per_sample(y_true, y_pred),
    ],
    ids=["shape (n,)", "shape (n, 1)"],
)
def test_ex7_1_answers_a_per_sample_loss_with_a_clear_message(per_sample) -> None:
    # Right on one error at a time, but one loss per sample on a batch: the check names the
    # shape instead of failing in a reshape of its own.
    result = checks.ex7_1({**RIGHT["7.1"], "fix": per_sample})
    assert not result.passed
    assert "expected one number, the mean loss over the batch" in result.message
    assert "one loss per sample" in result.message
    assert "reshape" not in result.message.lower()
    assert "InvalidArgument" not in result.message


def log_cosh_per_sample(y_true, y_pred):
    magnitude = tf.abs(y_pred - y_true)
    return magnitude + tf.math.softplus(-2.0 * magnitude) - math.log(2.0)


def test_ex7_1_judge_refuses_forged_batch_shapes() -> None:
    ex = checks.registry()["7.1"]
    evidence = ex.collect(RIGHT["7.1"])
    assert list(evidence["batch_shape"]) == []
    assert ex.verdict(decode_evidence(encode_evidence({"7.1": evidence}))["7.1"]).passed
    forged = {**evidence, "batch_shape": np.array([9], dtype=np.int64)}
    assert "one loss per sample" in ex.verdict(forged).message


# --- the grader's inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "answer", "has_inputs"), [(key, RIGHT[key], True) for key in sorted(RIGHT)]
)
def test_at_the_graders_inputs_the_right_answer_passes_and_another_runs_evidence_fails(
    key, answer, has_inputs
) -> None:
    # Evidence relabelled for another run passes only where the answer itself is the evidence.
    relabelled = judged_at_drawn_inputs(checks.registry()[key], answer)
    assert [result.passed for result in relabelled] == [not has_inputs] * len(relabelled)
