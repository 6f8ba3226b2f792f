"""The probe half of the checks: what runs in a student's kernel, and nothing else.

An exercise's *probe* calls the student's answer on the inputs it is given and returns plain
data (the evidence). The inputs come from outside: the book's own fixed ones in a notebook's
self-check, or ones the grader draws for each run from a seed the kernel never sees. The
evidence carries a digest of the inputs it was recorded for, so evidence made for other inputs
(or before the grader's inputs existed) is rejected by the judge, which lives in
gradclinic.checks and never enters the grading sandbox.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import pkgutil
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

# Evidence values: None, bool, int, float, str, or a NumPy array of one of these kinds.
# Inputs are plain data of the same kinds, encoded the same way.
Evidence = dict[str, Any]
Inputs = dict[str, Any]
ERROR_KEY = "_error"
# The digest of the inputs a probe ran on, recorded in its evidence.
INPUTS_KEY = "_inputs"
_ARRAY_KINDS = {
    "b": "bool",
    "i": "int64",
    "u": "int64",
    "f": "float64",
    "U": "str",
}


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


ProbeFunction = Callable[[Any, Inputs], Evidence]


@dataclass(frozen=True)
class Probe:
    """A registered probe: exercise key ("4.2"), the answer's name in the notebook, function."""

    key: str
    answer: str
    run: ProbeFunction

    def collect(self, answer: Any, inputs: Inputs, digest: str | None) -> Evidence:
        """Run the probe on the answer; a failure becomes evidence, never an exception.

        The evidence records `digest`, the digest of the inputs it was made for.
        """
        evidence = self._evidence(answer, inputs)
        return {**evidence, INPUTS_KEY: digest}

    def _evidence(self, answer: Any, inputs: Inputs) -> Evidence:
        try:
            evidence = self.run(answer, inputs)
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


_PROBES: dict[str, Probe] = {}


def probe(key: str, answer: str) -> Callable[[ProbeFunction], ProbeFunction]:
    """Register fn(answer, inputs) -> evidence as exercise `key`'s probe of the object `answer`."""

    def register(fn: ProbeFunction) -> ProbeFunction:
        if key in _PROBES:
            raise ValueError(f"the probe of exercise {key!r} is registered twice")
        if not callable(fn):
            raise ValueError(f"probe of exercise {key!r} must be callable, got {fn!r}")
        _PROBES[key] = Probe(key, answer, fn)
        return fn

    return register


def registered_probe(key: str) -> Probe:
    """The probe registered for exercise `key`; ValueError when there is none."""
    if key not in _PROBES:
        raise ValueError(f"no probe is registered for exercise {key!r}")
    return _PROBES[key]


def chapter_modules(package: str) -> list[ModuleType]:
    """Import a package's chapter modules (chN.py) in chapter order."""
    folder = Path(importlib.import_module(package).__file__).parent
    names = sorted(
        (info.name for info in pkgutil.iter_modules([str(folder)])),
        key=lambda name: int(name[2:]) if re.fullmatch(r"ch\d+", name) else -1,
    )
    return [
        importlib.import_module(f"{package}.{name}")
        for name in names
        if re.fullmatch(r"ch\d+", name)
    ]


def load_book_probes() -> list[ModuleType]:
    """Import the book's probe modules (gradclinic/probes/chN.py), registering their probes."""
    return chapter_modules("gradclinic.probes")


def key_order(key: str) -> tuple[int, ...]:
    """An exercise key as numbers, for numeric order: "4.10" -> (4, 10)."""
    return tuple(int(part) for part in key.split("."))


def chapter_of_key(key: str) -> str:
    """The chapter of an exercise key: "4.2" -> "4"."""
    return key.split(".")[0]


def chapter_probes(chapter: str) -> list[Probe]:
    """The registered probes of one chapter, in numeric order (the book's loaded if needed)."""
    chapter = str(chapter)
    found = [p for key, p in _PROBES.items() if chapter_of_key(key) == chapter]
    if not found:
        load_book_probes()
        found = [p for key, p in _PROBES.items() if chapter_of_key(key) == chapter]
    return sorted(found, key=lambda p: key_order(p.key))


def inputs_digest(encoded: Any) -> str:
    """The digest of one exercise's encoded inputs (as encode_evidence writes them)."""
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_inputs(text: str) -> tuple[dict[str, Inputs], dict[str, str]]:
    """Inputs by exercise from encode_evidence's JSON, and the digest of each exercise's."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("inputs must be a JSON object keyed by exercise")
    digests = {str(key): inputs_digest(items) for key, items in raw.items()}
    return decode_evidence(text), digests


def collect_chapter(
    chapter: str, namespace: Mapping[str, Any], inputs_text: str
) -> dict[str, Evidence]:
    """Probe every exercise of a chapter on the objects a notebook defined, by answer name.

    inputs_text: each exercise's inputs (JSON, as encode_evidence writes them).
    """
    inputs, digests = read_inputs(inputs_text)
    evidence: dict[str, Evidence] = {}
    for p in chapter_probes(chapter):
        if p.answer not in namespace:
            evidence[p.key] = {ERROR_KEY: f"expected an object named {p.answer}, found none"}
        else:
            mine = inputs.get(p.key, {})
            evidence[p.key] = p.collect(namespace[p.answer], mine, digests.get(p.key))
    return evidence


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
    return {
        "kind": "array",
        "dtype": dtype,
        "shape": list(array.shape),
        "data": flat,
    }


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
    """Evidence (or inputs) of several exercises as strict JSON text (NaN and inf as strings)."""
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
