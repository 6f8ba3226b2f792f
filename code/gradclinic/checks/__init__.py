"""Self-checks students call from the notebooks (check.ex4_2(fn)); the grader runs the same ones."""

from gradclinic.checks._core import CheckFailed, CheckResult, Exercise, exercise, registry
from gradclinic.checks.ch1 import *  # noqa: F403
from gradclinic.checks.ch2 import *  # noqa: F403
from gradclinic.checks.ch3 import *  # noqa: F403
from gradclinic.checks.ch4 import *  # noqa: F403
from gradclinic.checks.ch5 import *  # noqa: F403
from gradclinic.checks.ch6 import *  # noqa: F403

__all__ = ["CheckFailed", "CheckResult", "Exercise", "exercise", "registry"]
