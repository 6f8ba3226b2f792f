"""The self-check machinery: a registry of exercises, each graded by one function."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class CheckFailed(Exception):
    """Raised inside a check with a message that says what input failed, expected vs got."""


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
