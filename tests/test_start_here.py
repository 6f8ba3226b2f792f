"""The start page's symptom table: each row's case, run through diagnose, says what the row says."""

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from gradclinic.bump import bump_naive
from gradclinic.diagnose import HEALTHY, NOT_CONNECTED, ZERO, diagnose_loss

PAGE = Path(__file__).resolve().parents[1] / "book" / "start_here.md"


def table_rows() -> dict[str, str]:
    """Symptom -> the why-line column, for each row of the page's symptom table."""
    text = PAGE.read_text(encoding="utf-8")
    table = text.split("## Symptom, cause, fix", 1)[1].split("\n\n", 2)[1]
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    return {row[0].lstrip("| ").strip(): row[1].strip() for row in rows}


def unused() -> tuple[str, str]:
    used, unused = tf.Variable([1.0, 2.0]), tf.Variable(3.0)
    return "why", diagnose_loss(lambda: tf.reduce_sum(used), [used, unused])[1].why


def comparison() -> tuple[str, str]:
    threshold, x = tf.Variable(0.5), tf.constant([0.2, 0.7])
    return "why", diagnose_loss(
        lambda: tf.reduce_sum(tf.cast(x < threshold, tf.float32)), [threshold]
    )[0].why


def left_tensorflow() -> tuple[str, str]:
    w = tf.Variable([1.0, 2.0])
    return "why", diagnose_loss(lambda: tf.constant(np.sum(w.numpy())), [w])[0].why


def overflow() -> tuple[str, str]:
    w = tf.Variable([1.0, 2.0])
    return "why", diagnose_loss(lambda: tf.reduce_sum(tf.exp(500.0 * w)), [w])[0].why


def bump_nan() -> tuple[str, str]:
    # The question's bump at the input chapter 7 uses: exp overflows in the unselected branch.
    sigma, x = tf.Variable(0.5), tf.constant([0.3, 0.709])
    report = diagnose_loss(lambda: tf.reduce_sum(bump_naive(x, sigma)), [sigma])
    return "why", report[0].why


def xla_only() -> tuple[str, str]:
    # A tf.sqrt guard leaks only when compiled with XLA (chapter 3); eagerly its gradient is 0.
    x = tf.Variable([0.0, -1.0])
    loss = lambda: tf.reduce_sum(tf.where(x > 0, tf.sqrt(x), tf.zeros_like(x)))  # noqa: E731
    return "status", diagnose_loss(loss, [x])[0].status


def float16_overflow() -> tuple[str, str]:
    w = tf.Variable([12.0], dtype=tf.float16)
    return "why", diagnose_loss(lambda: tf.reduce_sum(tf.exp(w)), [w])[0].why


def dead_relu() -> tuple[str, str]:
    w = tf.Variable([1.0, 2.0])
    return "status", diagnose_loss(lambda: tf.reduce_sum(tf.nn.relu(-w)), [w])[0].status


def tiny() -> tuple[str, str]:
    w = tf.Variable([1.0, 2.0])
    record = diagnose_loss(lambda: 1e-9 * tf.reduce_sum(w), [w])[0]
    assert record.norm is not None and record.norm < 1e-6
    return "status", record.status


CASES: dict[str, tuple[Callable[[], tuple[str, str]], str | None]] = {
    "Keras 3: `No gradients provided for any variable`": (unused, NOT_CONNECTED),
    "TF 2: `Gradients do not exist for variables … when minimizing the loss`": (
        unused,
        NOT_CONNECTED,
    ),
    "`tape.gradient` returns `None`": (unused, None),
    "`None` from a comparison or a cast": (comparison, None),
    "`None` after `.numpy()` or NumPy": (left_tensorflow, None),
    "The loss is NaN or inf": (overflow, None),
    "A weight turns NaN, the loss stays finite": (bump_nan, None),
    "NaN from `tf.where` or `jnp.where`": (bump_nan, None),
    "A weight never moves": (dead_relu, ZERO),
    "Training crawls": (tiny, HEALTHY),
    "NaN only under XLA or on a GPU": (xla_only, ZERO),
    "NaN only in float16 or mixed precision": (float16_overflow, None),
}


def test_every_row_has_a_case() -> None:
    assert set(table_rows()) == set(CASES), "a row of the start page's table has no case here"


@pytest.mark.parametrize("symptom", list(CASES))
def test_diagnose_says_what_the_row_says(symptom: str) -> None:
    case, status = CASES[symptom]
    column = table_rows()[symptom]
    kind, said = case()
    if status is not None:
        # Rows whose column names a status rather than a why-line.
        if kind == "why":
            assert said, f"{symptom}: no why-line"
        else:
            assert said == status, f"{symptom}: status {said!r}, the row says {status!r}"
        return
    quoted = re.findall(r"`([^`]+)`", column)
    assert quoted, f"{symptom}: the row quotes no why-line"
    fragment = quoted[0].split("…")[0]
    assert fragment in said, f"{symptom}: why-line {said!r} lacks {fragment!r}"


def test_the_status_names_on_the_page_are_diagnose_s() -> None:
    for status in (ZERO, HEALTHY):
        assert f"the status `{status}`" in PAGE.read_text(encoding="utf-8")
