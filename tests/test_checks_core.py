"""The self-check machinery: registry, probe and judge, evidence as JSON, what the grader trusts."""

import subprocess
import sys

import numpy as np
import pytest
from gradclinic.checks import _core
from gradclinic.checks._core import (
    NOT_THIS_RUN,
    CheckFailed,
    chapter_exercises,
    chapter_inputs,
    decode_evidence,
    encode_evidence,
    exercise,
    judge_chapter,
    run_chapter,
)
from gradclinic.probes import _core as probes_core
from gradclinic.probes._core import INPUTS_KEY, collect_chapter, probe, read_inputs


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    # The book's chapters first, so their modules are imported (and registered) once, for real.
    registry = dict(_core.registry())
    monkeypatch.setattr(_core, "_REGISTRY", registry)
    monkeypatch.setattr(probes_core, "_PROBES", dict(probes_core._PROBES))
    return registry


def _inputs_double(rng) -> dict:
    return {"x": 3.0 if rng is None else float(rng.integers(4, 1000))}


def _register_double(key: str = "9.1") -> _core.Exercise:
    @probe(key, answer="double")
    def _probe_double(answer, inputs) -> dict:
        return {"got": float(answer(inputs["x"]))}

    @exercise(key, inputs=_inputs_double)
    def judge(evidence: dict, inputs: dict) -> str:
        if evidence["got"] != 2 * inputs["x"]:
            raise CheckFailed(
                f"x={inputs['x']:g}: expected {2 * inputs['x']:g}, got {evidence['got']:g}"
            )
        return "right."

    return judge


def _text(**inputs) -> str:
    return encode_evidence(inputs)


def test_a_check_reports_passed_not_yet_and_the_students_exception(scratch_registry: dict) -> None:
    ex9_1 = _register_double()
    assert repr(ex9_1(lambda v: 2 * v)) == "Exercise 9.1: passed. right."
    wrong = ex9_1(lambda v: v + 2)
    assert not wrong and repr(wrong) == "Exercise 9.1: not yet. x=3: expected 6, got 5"
    raised = ex9_1(lambda v: 1 / 0)
    assert raised.message == "your answer raised ZeroDivisionError: division by zero"
    with pytest.raises(ValueError, match=r"exercise '9\.1' is registered twice"):
        exercise("9.1")(lambda evidence, inputs: "")
    with pytest.raises(ValueError, match=r"the probe of exercise '9\.1' is registered twice"):
        probe("9.1", answer="other")(lambda answer, inputs: {})


def test_run_chapter_looks_answers_up_by_name_in_numeric_order(scratch_registry: dict) -> None:
    for key in ("9.10", "9.2", "8.1"):
        probe(key, answer=f"answer_{key.replace('.', '_')}")(lambda a, inputs: {"a": a})
        exercise(key)(lambda evidence, inputs: f"got {evidence['a']}")
    assert [ex.key for ex in chapter_exercises("9")] == ["9.2", "9.10"]
    results = run_chapter("9", {"answer_9_10": 1})
    assert [(r.exercise, r.passed) for r in results] == [("9.2", False), ("9.10", True)]
    assert results[0].message == "expected an object named answer_9_2, found none"
    with pytest.raises(ValueError, match="chapter must be one with exercises"):
        run_chapter("99", {})


def test_every_check_is_a_probe_and_a_judge(scratch_registry: dict) -> None:
    # A check run whole in the kernel would leave the grader nothing it could trust.
    with pytest.raises(ValueError, match=r"no probe is registered for exercise '9\.1'"):
        exercise("9.1")(lambda evidence, inputs: "right.")
    with pytest.raises(ValueError, match=r"probe of exercise '9\.1' must be callable"):
        probe("9.1", answer="double")(None)


def test_judging_forged_or_missing_evidence_fails_without_raising(scratch_registry: dict) -> None:
    _register_double()
    text = chapter_inputs("9", np.random.default_rng(0), run="token")
    inputs, digests = read_inputs(text)
    x, digest = inputs["9.1"]["x"], digests["9.1"]
    for forged in (None, {}, {"9.1": "passed"}, {"9.1": {"passed": True}}, {"9.1": {"got": "6"}}):
        result = judge_chapter("9", forged or {}, text)[0]
        assert result.passed is False, forged
    assert judge_chapter("9", {}, text)[0].message == "no evidence was recorded for this exercise"
    # Right-looking evidence without the digest of this run's inputs: not recorded for them.
    assert judge_chapter("9", {"9.1": {"got": 2 * x}}, text)[0].message == NOT_THIS_RUN
    assert judge_chapter("9", {"9.1": {"passed": True, INPUTS_KEY: digest}}, text)[0].message == (
        "the answer's results have the wrong form (KeyError: 'got')"
    )
    assert judge_chapter("9", {"9.1": {"got": 2 * x, INPUTS_KEY: digest}}, text)[0].passed
    long = judge_chapter("9", {"9.1": {_core.ERROR_KEY: "x" * 10_000}}, text)[0].message
    assert len(long) == 500


def test_evidence_binds_to_the_inputs_of_its_own_run(scratch_registry: dict) -> None:
    _register_double()
    first = chapter_inputs("9", np.random.default_rng(1), run="first")
    second = chapter_inputs("9", np.random.default_rng(2), run="second")
    again = chapter_inputs("9", np.random.default_rng(1), run="second")
    assert read_inputs(first)[0]["9.1"]["x"] != read_inputs(second)[0]["9.1"]["x"]
    evidence = collect_chapter("9", {"double": lambda v: 2 * v}, first)
    assert judge_chapter("9", evidence, first)[0].passed
    # Another run's judge: other inputs, and the same inputs with another run's token.
    assert judge_chapter("9", evidence, second)[0].message == NOT_THIS_RUN
    assert judge_chapter("9", evidence, again)[0].message == NOT_THIS_RUN
    # Relabelled for the second run without a working answer: the values give it away.
    relabelled = {"9.1": {**evidence["9.1"], INPUTS_KEY: read_inputs(second)[1]["9.1"]}}
    assert not judge_chapter("9", relabelled, second)[0].passed
    # The book's self-check inputs are fixed: the notebook prints the same messages every run.
    assert chapter_inputs("9", None) == chapter_inputs("9", None) == _text(**{"9.1": {"x": 3.0}})


def test_a_probe_result_that_is_not_plain_data_is_the_answers_failure(
    scratch_registry: dict,
) -> None:
    probe("9.1", answer="make")(lambda answer, inputs: {"value": np.asarray(answer())})

    @exercise("9.1")
    def ex9_1(evidence: dict, inputs: dict) -> str:
        return "plain."

    assert ex9_1(lambda: [1.0, 2.0]).passed
    result = ex9_1(lambda: object())
    assert not result
    assert result.message.startswith("your answer's results are not plain numbers or text")


def test_evidence_survives_json_with_nan_and_infinity_and_rejects_malformed_items() -> None:
    evidence = {
        "4.2": {
            "values": np.array([[1.5, np.nan], [np.inf, -np.inf]], dtype=np.float32),
            "dtype": "float32",
            "finite": np.array([True, False]),
            "names": np.array(["dense", "bump_layer"]),
            "empty": np.zeros((0, 3)),
            "count": np.int64(3),
            "none": None,
        }
    }
    text = encode_evidence(evidence)
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    back = decode_evidence(text)["4.2"]
    np.testing.assert_array_equal(back["values"], evidence["4.2"]["values"].astype(float))
    assert back["values"].dtype == np.float64 and back["values"].shape == (2, 2)
    assert back["finite"].tolist() == [True, False] and back["count"] == 3
    assert back["dtype"] == "float32" and back["none"] is None
    assert back["names"].tolist() == ["dense", "bump_layer"] and back["empty"].shape == (0, 3)
    malformed = decode_evidence(
        '{"1.1": {"v": {"kind": "array", "dtype": "float64", "shape": [3], "data": [1]}},'
        ' "1.2": {"v": {"kind": "float", "value": "1e999x"}},'
        ' "1.3": {"v": {"kind": "pickle", "value": "x"}}}'
    )
    assert {key: set(items) for key, items in malformed.items()} == {
        key: {_core.ERROR_KEY} for key in ("1.1", "1.2", "1.3")
    }
    with pytest.raises(TypeError, match="plain data"):
        encode_evidence({"1.1": {"v": np.array([object()])}})


def test_the_probe_machinery_imports_without_tensorflow_and_the_book_loads_on_use() -> None:
    code = (
        "import sys, gradclinic.probes._core, gradclinic.checks._core as core\n"
        "assert 'tensorflow' not in sys.modules\n"
        "from gradclinic import checks\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print(checks.ex4_2.key, [ex.key for ex in core.chapter_exercises('1')])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split(" ", 1)[0] == "4.2"
    assert run.stdout.split(" ", 1)[1].startswith("['1.1'")


def test_require_number_takes_python_and_numpy_numbers_and_names_the_input_otherwise() -> None:
    for value in (3, 2.5, np.float32(2.5), np.int64(3), np.array(2.5)):
        assert _core.require_number(value, "x=1") == float(value)
    for value, kind in ((True, "bool"), (np.bool_(True), "bool"), ("2.5", "str"), ([2.5], "list")):
        with pytest.raises(CheckFailed, match=f"^x=1: expected a number, got {kind}"):
            _core.require_number(value, "x=1")


@pytest.mark.parametrize("key", sorted(_core.registry(), key=_core.key_order))
def test_every_book_judge_fails_on_no_or_empty_evidence_and_says_so(key: str) -> None:
    ex = _core.registry()[key]
    for evidence in (None, {}):
        result = ex.verdict(evidence)
        assert result.passed is False and result.message, (key, evidence)
