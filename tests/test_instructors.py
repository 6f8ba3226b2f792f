"""The instructors page names exercises and answers that exist: the checks' own registry."""

import re
from pathlib import Path

from gradclinic.checks import registry

PAGE = Path(__file__).resolve().parents[1] / "book" / "instructors.md"
ROW = re.compile(r"^\| (\d+\.\d+) \| `(\w+)\(", re.M)


def test_every_exercise_row_names_the_registered_answer() -> None:
    rows = ROW.findall(PAGE.read_text(encoding="utf-8"))
    assert rows, "the instructors page lists no exercise with its answer"
    exercises = registry()
    for key, answer in rows:
        assert key in exercises, f"the instructors page lists exercise {key}, which has no check"
        assert exercises[key].answer == answer, (
            f"exercise {key}: the page names {answer!r}, the check expects "
            f"{exercises[key].answer!r}"
        )
