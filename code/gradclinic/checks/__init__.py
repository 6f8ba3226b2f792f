"""Self-checks students call from the notebooks (check.ex4_2(fn)); the grader judges with them.

The chapter modules (chN.py) hold the judges, references and inputs, and load on first use;
the probes they judge are in gradclinic.probes, the only half the grading sandbox holds.
"""

from typing import Any

from gradclinic.checks._core import (
    CheckFailed,
    CheckResult,
    Exercise,
    exercise,
    load_book_chapters,
    registry,
)

__all__ = ["CheckFailed", "CheckResult", "Exercise", "exercise", "registry"]


def __getattr__(name: str) -> Any:
    # check.ex4_2 and `from gradclinic.checks import ex4_2`: the chapter module that defines it.
    for module in load_book_chapters():
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    raise AttributeError(f"module 'gradclinic.checks' has no attribute {name!r}")


def __dir__() -> list[str]:
    names = [n for m in load_book_chapters() for n in getattr(m, "__all__", ())]
    return sorted({*globals(), *names})
