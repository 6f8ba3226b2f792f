"""The self-check machinery: a registry of exercises, each checked in two halves.

An exercise's *probe* runs the student's answer on inputs the check chooses and returns
plain data (the evidence); its *judge* compares that evidence with the book's own reference
and never calls student code. In a notebook both halves run in the student's kernel
(``check.ex4_2(fn)``). The grader runs only the probes in the student's kernel, carries the
evidence out as JSON (``encode_evidence``/``decode_evidence``), and judges it in its own
process, so nothing the student's code does to the kernel can change a verdict.
"""

from __future__ import annotations

import importlib
import json
import math
import pkgutil
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

# Evidence values: None, bool, int, float, str, or a NumPy array of one of these kinds.
Evidence = dict[str, Any]
ERROR_KEY = "_error"
_ARRAY_KINDS = {"b": "bool", "i": "int64", "u": "int64", "f": "float64", "U": "str"}
_MESSAGE_LIMIT = 500


class CheckFailed(Exception):
    """Raised inside a probe or judge with a message that says what input failed."""


def require_callable(answer: Any, what: str) -> Callable[..., Any]:
    """Return answer if it can be called, else fail the check naming the expected function."""
    if not callable(answer):
        raise CheckFailed(f"expected a function {what}, got {type(answer).__name__}")
    return answer


def require_number(value: Any, what: str) -> float:
    """Return a real number (Python or NumPy, not bool) as float, else fail naming what gave it."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise CheckFailed(f"{what}: expected a number, got {type(value).__name__}")
    return float(value)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one self-check, printed in the notebook and recorded by the grader."""

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else "not yet"
        return f"Exercise {self.exercise}: {verdict}. {self.message}".rstrip()


def choice_evidence(answer: Any, names: Collection[str], choices: Sequence[str]) -> Evidence:
    """Evidence of a dict answer that picks one of `choices` (strings) for each of `names`."""
    if not isinstance(answer, dict):
        raise CheckFailed(
            f"expected a dict like {{{next(iter(names))!r}: {choices[0]!r}, ...}}, "
            f"got {type(answer).__name__}"
        )
    evidence: Evidence = {}
    for name in names:
        value = answer.get(name)
        if not isinstance(value, str):
            raise CheckFailed(
                f"variant {name}: expected one of {', '.join(map(repr, choices))}, got {value!r}"
            )
        evidence[name] = value
    return evidence


def count_wrong_choices(
    evidence: Evidence, truth: Mapping[str, str], choices: Sequence[str]
) -> int:
    """How many recorded choices differ from truth; a choice outside `choices` fails the check."""
    for name in truth:
        if evidence[name] not in choices:
            raise CheckFailed(
                f"variant {name}: expected one of {', '.join(map(repr, choices))}, "
                f"got {evidence[name]!r}"
            )
    # Only a count reaches the student: with two or three choices, names would give the answer.
    return sum(evidence[name] != right for name, right in truth.items())


Probe = Callable[[Any], Evidence]
Judge = Callable[[Evidence], str]


@dataclass(frozen=True)
class Exercise:
    """A registered exercise: key ("4.2"), the answer's name in the notebook, probe and judge."""

    key: str
    answer: str
    probe: Probe
    judge: Judge

    def collect(self, answer: Any) -> Evidence:
        """Run the probe on the student's answer; a failure becomes evidence, never an exception."""
        try:
            evidence = self.probe(answer)
        except CheckFailed as failure:
            return {ERROR_KEY: str(failure)}
        except Exception as error:  # the student's code raised: report it, never hide it
            return {ERROR_KEY: f"your answer raised {type(error).__name__}: {error}"}
        if not isinstance(evidence, dict):
            raise TypeError(f"the probe of exercise {self.key} returned {type(evidence).__name__}")
        try:
            for name, value in evidence.items():
                _encode_value(value, f"exercise {self.key}, {name}")
        except TypeError as error:  # e.g. the answer returned objects where numbers belong
            return {ERROR_KEY: f"your answer's results are not plain numbers or text ({error})"}
        return evidence

    def verdict(self, evidence: Any) -> CheckResult:
        """Judge evidence (possibly forged or truncated) without running any student code."""
        if not isinstance(evidence, dict):
            return CheckResult(self.key, False, "no evidence was recorded for this exercise")
        if ERROR_KEY in evidence:
            return CheckResult(self.key, False, str(evidence[ERROR_KEY])[:_MESSAGE_LIMIT])
        try:
            message = self.judge(evidence)
        except CheckFailed as failure:
            return CheckResult(self.key, False, str(failure)[:_MESSAGE_LIMIT])
        except Exception as error:  # evidence of the wrong shape: a failed check, named as such
            detail = f"{type(error).__name__}: {error}"[:_MESSAGE_LIMIT]
            return CheckResult(
                self.key, False, f"the answer's results have the wrong form ({detail})"
            )
        return CheckResult(self.key, True, str(message)[:_MESSAGE_LIMIT])

    def __call__(self, answer: Any) -> CheckResult:
        return self.verdict(self.collect(answer))


_REGISTRY: dict[str, Exercise] = {}


def exercise(key: str, answer: str, probe: Probe) -> Callable[[Judge], Exercise]:
    """Register judge(evidence) -> success message (raising CheckFailed) with its probe as `key`.

    The decorated name becomes the Exercise, which students call with their answer.
    """

    def register(judge: Judge) -> Exercise:
        if key in _REGISTRY:
            raise ValueError(f"exercise {key!r} is registered twice")
        if not callable(probe):
            raise ValueError(f"probe of exercise {key!r} must be callable, got {probe!r}")
        ex = Exercise(key, answer, probe, judge)
        _REGISTRY[key] = ex
        return ex

    return register


def load_book_chapters() -> list[ModuleType]:
    """Import the book's check modules (gradclinic/checks/chN.py), registering their exercises."""
    names = sorted(
        (info.name for info in pkgutil.iter_modules([str(Path(__file__).parent)])),
        key=lambda name: int(name[2:]) if re.fullmatch(r"ch\d+", name) else -1,
    )
    modules = [
        importlib.import_module(f"gradclinic.checks.{name}")
        for name in names
        if re.fullmatch(r"ch\d+", name)
    ]
    return modules


def registry() -> dict[str, Exercise]:
    """Every registered exercise by key, the book's included, e.g. {"4.2": Exercise(...)}."""
    load_book_chapters()
    return dict(_REGISTRY)


def key_order(key: str) -> tuple[int, ...]:
    """An exercise key as numbers, for numeric order: "4.10" -> (4, 10)."""
    return tuple(int(part) for part in key.split("."))


def chapter_of_key(key: str) -> str:
    """The chapter of an exercise key: "4.2" -> "4"."""
    return key.split(".")[0]


def exercises_in(modules: Iterable[ModuleType]) -> list[Exercise]:
    """The exercises that the given check modules define."""
    return [value for m in modules for value in vars(m).values() if isinstance(value, Exercise)]


def _chapters_registered() -> list[str]:
    return sorted({chapter_of_key(key) for key in _REGISTRY}, key=int)


def chapters() -> list[str]:
    """Every chapter with registered exercises, the book's included, in numeric order."""
    load_book_chapters()
    return _chapters_registered()


def chapter_exercises(chapter: str) -> list[Exercise]:
    """The registered exercises of one chapter ("4" -> 4.1, 4.2, ...), in numeric order."""
    chapter = str(chapter)
    found = [ex for key, ex in _REGISTRY.items() if chapter_of_key(key) == chapter]
    if not found:
        # Loaded only when needed: a chapter registered elsewhere then probes without TensorFlow.
        load_book_chapters()
        found = [ex for key, ex in _REGISTRY.items() if chapter_of_key(key) == chapter]
    if not found:
        raise ValueError(
            f"chapter must be one with exercises ({', '.join(_chapters_registered())}); "
            f"got {chapter!r}"
        )
    return sorted(found, key=lambda ex: key_order(ex.key))


def collect_chapter(chapter: str, namespace: Mapping[str, Any]) -> dict[str, Evidence]:
    """Probe every exercise of a chapter on the objects a notebook defined, by answer name."""
    evidence: dict[str, Evidence] = {}
    for ex in chapter_exercises(chapter):
        if ex.answer not in namespace:
            evidence[ex.key] = {ERROR_KEY: f"expected an object named {ex.answer}, found none"}
        else:
            evidence[ex.key] = ex.collect(namespace[ex.answer])
    return evidence


def judge_chapter(chapter: str, evidence: Mapping[str, Any]) -> list[CheckResult]:
    """The grader's verdicts on evidence from elsewhere; an exercise without evidence fails."""
    return [ex.verdict(evidence.get(ex.key)) for ex in chapter_exercises(chapter)]


def run_chapter(chapter: str, namespace: Mapping[str, Any]) -> list[CheckResult]:
    """Probe and judge a chapter's exercises in this process (the notebook's own self-check)."""
    collected = collect_chapter(chapter, namespace)
    return [ex.verdict(collected[ex.key]) for ex in chapter_exercises(chapter)]


def _encode_value(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {"kind": "none"}
    if isinstance(value, bool | np.bool_):
        return {"kind": "bool", "value": bool(value)}
    if isinstance(value, int | np.integer):
        return {"kind": "int", "value": int(value)}
    if isinstance(value, float | np.floating):
        return {"kind": "float", "value": _float_text(float(value))}
    if isinstance(value, str):
        return {"kind": "str", "value": value}
    array = np.asarray(value)
    if array.dtype.kind not in _ARRAY_KINDS:
        raise TypeError(f"{where}: evidence must be plain data, got dtype {array.dtype}")
    dtype = _ARRAY_KINDS[array.dtype.kind]  # "str", not "<U27": the reader knows four names
    array = array.astype(dtype)
    flat = [_float_text(v) if array.dtype.kind == "f" else v for v in array.reshape(-1).tolist()]
    return {"kind": "array", "dtype": dtype, "shape": list(array.shape), "data": flat}


def _float_text(value: float) -> float | str:
    # Strict JSON has no NaN or infinity; those are exactly what some checks must see.
    return value if math.isfinite(value) else repr(value)


def _decode_float(value: Any) -> float:
    if isinstance(value, str):
        if value not in ("nan", "inf", "-inf"):
            raise ValueError(f"not a float: {value!r}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a float: {value!r}")
    return float(value)


def _decode_value(item: Any) -> Any:
    kind = item["kind"]
    if kind == "none":
        return None
    if kind == "bool":
        return bool(item["value"])
    if kind == "int":
        return int(item["value"])
    if kind == "float":
        return _decode_float(item["value"])
    if kind == "str":
        return str(item["value"])
    if kind != "array" or item["dtype"] not in _ARRAY_KINDS.values():
        raise ValueError(f"unknown evidence kind {kind!r}")
    shape = tuple(int(n) for n in item["shape"])
    data = item["data"]
    if item["dtype"] == "float64":
        data = [_decode_float(v) for v in data]
    return np.array(data, dtype=item["dtype"]).reshape(shape)


def encode_evidence(evidence: Mapping[str, Evidence]) -> str:
    """Evidence of several exercises as strict JSON text (NaN and inf spelled as strings)."""
    plain = {
        str(key): {
            str(name): _encode_value(value, f"exercise {key}, {name}")
            for name, value in items.items()
        }
        for key, items in evidence.items()
    }
    return json.dumps(plain, allow_nan=False)


def decode_evidence(text: str) -> dict[str, Evidence]:
    """Read encode_evidence's JSON back; an exercise whose evidence is malformed gets none."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("evidence must be a JSON object keyed by exercise")
    decoded: dict[str, Evidence] = {}
    for key, items in raw.items():
        try:
            decoded[str(key)] = {str(name): _decode_value(item) for name, item in items.items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            decoded[str(key)] = {ERROR_KEY: "the recorded results for this exercise are malformed"}
    return decoded
