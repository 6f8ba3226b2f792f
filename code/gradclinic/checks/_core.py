"""The self-check machinery: a registry of exercises, each graded by one function."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class CheckFailed(Exception):
    """Raised inside a check with a message that says what input failed, expected vs got."""


def require_callable(answer: Any, what: str) -> Callable[..., Any]:
    """Return answer if it can be called, else fail the check naming the expected function."""
    if not callable(answer):
        raise CheckFailed(f"expected a function {what}, got {type(answer).__name__}")
    return answer


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


@dataclass(frozen=True)
class Exercise:
    """A registered exercise: its key ("4.2"), the notebook name of the answer, and its check."""

    key: str
    answer: str
    check: Callable[[Any], CheckResult]


_REGISTRY: dict[str, Exercise] = {}


def exercise(
    key: str, answer: str
) -> Callable[[Callable[[Any], str]], Callable[[Any], CheckResult]]:
    """Register fn(answer) -> success message (raising CheckFailed otherwise) as exercise `key`."""

    def register(fn: Callable[[Any], str]) -> Callable[[Any], CheckResult]:
        @functools.wraps(fn)
        def run(obj: Any) -> CheckResult:
            try:
                message = fn(obj)
            except CheckFailed as failure:
                return CheckResult(key, False, str(failure))
            except Exception as error:  # the student's code raised: report it, never hide it
                return CheckResult(
                    key, False, f"your answer raised {type(error).__name__}: {error}"
                )
            return CheckResult(key, True, message)

        if key in _REGISTRY:
            raise ValueError(f"exercise {key!r} is registered twice")
        _REGISTRY[key] = Exercise(key, answer, run)
        return run

    return register


def registry() -> dict[str, Exercise]:
    """Every registered exercise by key, e.g. {"4.2": Exercise(...)}."""
    return dict(_REGISTRY)


def chapter_exercises(chapter: str) -> list[Exercise]:
    """The registered exercises of one chapter ("4" -> 4.1, 4.2, ...), in numeric order."""
    chapter = str(chapter)
    found = [ex for key, ex in _REGISTRY.items() if key.split(".")[0] == chapter]
    return sorted(found, key=lambda ex: tuple(int(part) for part in ex.key.split(".")))


def run_chapter(chapter: str, namespace: Mapping[str, Any]) -> list[CheckResult]:
    """Run every check of a chapter on the objects a notebook defined, looked up by answer name."""
    exercises = chapter_exercises(chapter)
    if not exercises:
        known = sorted({key.split(".")[0] for key in _REGISTRY})
        raise ValueError(
            f"chapter must be one with exercises ({', '.join(known)}); got {chapter!r}"
        )
    results = []
    for ex in exercises:
        if ex.answer not in namespace:
            results.append(
                CheckResult(ex.key, False, f"expected an object named {ex.answer}, found none")
            )
        else:
            results.append(ex.check(namespace[ex.answer]))
    return results
