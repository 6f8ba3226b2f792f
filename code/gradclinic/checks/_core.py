"""The judge half of the checks: a registry of exercises, each checked in two halves.

An exercise's *probe* (gradclinic.probes) runs the student's answer on the exercise's inputs
and returns plain data (the evidence); its *judge* compares that evidence with the book's own
reference at the same inputs and never calls student code. Its *inputs* function gives those
inputs: the book's fixed ones for a notebook's self-check (``check.ex4_2(fn)``, probe and judge
both in the student's kernel), or, for the grader, ones drawn from a random generator seeded
outside the sandbox. The grader runs only the probes in the student's kernel (this package is
not there), carries the evidence out as JSON and judges it in its own process, so nothing the
student's code does to the kernel can change a verdict, and evidence recorded for other inputs
than the run's fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from gradclinic.probes._core import (
    ERROR_KEY,
    INPUTS_KEY,
    CheckFailed,
    Evidence,
    Inputs,
    Probe,
    ProbeFunction,
    chapter_modules,
    chapter_of_key,
    choice_evidence,
    collect_chapter,
    decode_evidence,
    encode_evidence,
    key_order,
    read_inputs,
    registered_probe,
    require_callable,
    require_number,
)

__all__ = [
    "ERROR_KEY",
    "CheckFailed",
    "CheckResult",
    "Evidence",
    "Exercise",
    "Inputs",
    "chapter_of_key",
    "choice_evidence",
    "collect_chapter",
    "decode_evidence",
    "encode_evidence",
    "exercise",
    "key_order",
    "require_callable",
    "require_number",
]

_MESSAGE_LIMIT = 500
NOT_THIS_RUN = (
    "these results were not recorded by the grader's checks for this run's inputs "
    "(the checks at the end of the notebook did not write them)"
)


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


def count_wrong_choices(
    evidence: Evidence, truth: Mapping[str, str], choices: tuple[str, ...]
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


Judge = Callable[[Evidence, Inputs], str]
# rng None: the book's fixed inputs (self-checks); else inputs drawn from rng (the grader's).
InputsFunction = Callable[[np.random.Generator | None], Inputs]


@dataclass(frozen=True)
class Exercise:
    """A registered exercise: key ("4.2"), the answer's name, probe, judge and inputs."""

    key: str
    answer: str
    probe: ProbeFunction
    judge: Judge
    inputs: InputsFunction | None = None  # None: the answer itself is the evidence

    def draw(self, rng: np.random.Generator | None) -> Inputs:
        """The inputs for one check: the book's fixed ones (rng None), else drawn from rng."""
        return {} if self.inputs is None else dict(self.inputs(rng))

    def instance(self, rng: np.random.Generator | None = None) -> tuple[Inputs, str]:
        """Inputs for one check, as the probe will read them (through JSON), and their digest."""
        inputs, digests = read_inputs(encode_evidence({self.key: self.draw(rng)}))
        return inputs[self.key], digests[self.key]

    def collect(
        self, answer: Any, inputs: Inputs | None = None, digest: str | None = None
    ) -> Evidence:
        """Run the probe on the answer at inputs (default: the book's fixed ones)."""
        if inputs is None:
            inputs, digest = self.instance()
        return Probe(self.key, self.answer, self.probe).collect(answer, inputs, digest)

    def verdict(
        self, evidence: Any, inputs: Inputs | None = None, digest: str | None = None
    ) -> CheckResult:
        """Judge evidence (possibly forged or truncated) at inputs, without running student code.

        inputs default to the book's fixed ones; digest is that of the inputs
        (gradclinic.probes._core.inputs_digest): evidence recorded for other inputs fails.
        """
        if inputs is None:
            inputs, digest = self.instance()
        if not isinstance(evidence, dict):
            return CheckResult(self.key, False, "no evidence was recorded for this exercise")
        if ERROR_KEY in evidence:
            return CheckResult(self.key, False, str(evidence[ERROR_KEY])[:_MESSAGE_LIMIT])
        if digest is None or evidence.get(INPUTS_KEY) != digest:
            return CheckResult(self.key, False, NOT_THIS_RUN)
        results = {name: value for name, value in evidence.items() if name != INPUTS_KEY}
        try:
            message = self.judge(results, inputs)
        except CheckFailed as failure:
            return CheckResult(self.key, False, str(failure)[:_MESSAGE_LIMIT])
        except Exception as error:  # evidence of the wrong shape: a failed check, named as such
            detail = f"{type(error).__name__}: {error}"[:_MESSAGE_LIMIT]
            return CheckResult(
                self.key, False, f"the answer's results have the wrong form ({detail})"
            )
        return CheckResult(self.key, True, str(message)[:_MESSAGE_LIMIT])

    def __call__(self, answer: Any) -> CheckResult:
        """The notebook's self-check: probe and judge here, at the book's fixed inputs."""
        inputs, digest = self.instance()
        return self.verdict(self.collect(answer, inputs, digest), inputs, digest)


_REGISTRY: dict[str, Exercise] = {}


def exercise(key: str, inputs: InputsFunction | None = None) -> Callable[[Judge], Exercise]:
    """Register judge(evidence, inputs) -> success message (raising CheckFailed) as `key`.

    The exercise's probe (and the answer's name) are those registered for `key` with
    gradclinic.probes.probe; `inputs(rng)` gives its inputs (None: it has none). The
    decorated name becomes the Exercise, which students call with their answer.
    """

    def register(judge: Judge) -> Exercise:
        if key in _REGISTRY:
            raise ValueError(f"exercise {key!r} is registered twice")
        found = registered_probe(key)
        ex = Exercise(key, found.answer, found.run, judge, inputs)
        _REGISTRY[key] = ex
        return ex

    return register


def load_book_chapters() -> list[ModuleType]:
    """Import the book's check modules (gradclinic/checks/chN.py), registering their exercises."""
    return chapter_modules("gradclinic.checks")


def registry() -> dict[str, Exercise]:
    """Every registered exercise by key, the book's included, e.g. {"4.2": Exercise(...)}."""
    load_book_chapters()
    return dict(_REGISTRY)


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
        # Loaded only when needed: a chapter registered elsewhere then checks without TensorFlow.
        load_book_chapters()
        found = [ex for key, ex in _REGISTRY.items() if chapter_of_key(key) == chapter]
    if not found:
        raise ValueError(
            f"chapter must be one with exercises ({', '.join(_chapters_registered())}); "
            f"got {chapter!r}"
        )
    return sorted(found, key=lambda ex: key_order(ex.key))


def chapter_inputs(chapter: str, rng: np.random.Generator | None, run: str | None = None) -> str:
    """Every exercise's inputs for one check of a chapter, as JSON for the kernel and judge.

    rng None: the book's fixed inputs. run: a token of the grading run, part of every
    exercise's inputs (and so of their digests), so no evidence carries over between runs.
    """
    drawn = {}
    for ex in chapter_exercises(chapter):
        inputs = ex.draw(rng)
        drawn[ex.key] = inputs if run is None else {**inputs, "_run": run}
    return encode_evidence(drawn)


def judge_chapter(chapter: str, evidence: Mapping[str, Any], inputs_text: str) -> list[CheckResult]:
    """The grader's verdicts on evidence from elsewhere; an exercise without evidence fails."""
    inputs, digests = read_inputs(inputs_text)
    return [
        ex.verdict(evidence.get(ex.key), inputs.get(ex.key, {}), digests.get(ex.key))
        for ex in chapter_exercises(chapter)
    ]


def run_chapter(chapter: str, namespace: Mapping[str, Any]) -> list[CheckResult]:
    """Probe and judge a chapter's exercises in this process at the book's fixed inputs."""
    text = chapter_inputs(chapter, None)
    return judge_chapter(chapter, collect_chapter(chapter, namespace, text), text)
