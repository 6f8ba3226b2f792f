"""Coursework: solutions pass the checks, student copies hide them, the grader scores submissions."""

import sys
from pathlib import Path

import nbformat
import pytest
from gradclinic.checks._core import chapter_exercises, run_chapter

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTER4 = BOOK / "04_stability_exercises.ipynb"
sys.path.insert(0, str(ROOT / "tools"))

import make_assignments  # noqa: E402
from _grading import read_scores, run_grader  # noqa: E402


def _code(nb: nbformat.NotebookNode, tag: str) -> list[str]:
    return [
        c.source for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])
    ]


def _run_cells(sources: list[str]) -> dict:
    namespace: dict = {}
    for source in sources:
        exec(compile(source, "<cell>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("assignments")
    written = make_assignments.make_assignments(BOOK, out)
    return {path.name: path for path in written}


def _chapter4_without_slow_cells() -> list[str]:
    # The book's code cells in order, minus the figures, the epochs-vs-sigma measurement and
    # the hidden asserts (nbval runs those on the full chapter); solutions and the visible
    # cells they build on stay.
    cells = nbformat.read(CHAPTER4, 4).cells
    return [
        c.source
        for c in cells
        if c.cell_type == "code"
        and "student" not in c.metadata.get("tags", [])
        and "remove-cell" not in c.metadata.get("tags", [])
        and "plots." not in c.source
        and "fit_sigma(" not in c.source
    ]


def test_the_worked_solutions_pass_every_chapter_4_check() -> None:
    sources = [s for s in _chapter4_without_slow_cells() if not s.startswith("check.")]
    # The first cell is the Colab/set-up cell, whose %pip line is IPython syntax.
    results = run_chapter("4", _run_cells(sources[1:]))
    assert [r.exercise for r in results] == ["4.1", "4.2", "4.3", "4.4", "4.5"]
    assert all(results), results


def test_the_stubs_fail_every_check_with_their_own_message(copies: dict[str, Path]) -> None:
    stubs = _code(nbformat.read(copies[CHAPTER4.name], 4), "student")
    assert len(stubs) == 5
    for result in run_chapter("4", _run_cells(stubs)):
        assert not result
        assert result.message == (
            f"your answer raised NotImplementedError: Exercise {result.exercise}: "
            + result.message.split(f"Exercise {result.exercise}: ", 1)[1]
        )


def test_every_chapter_with_exercises_gets_a_copy(copies: dict[str, Path]) -> None:
    with_exercises = {
        p.name for p in BOOK.glob("*.ipynb") if make_assignments.has_exercises(nbformat.read(p, 4))
    }
    assert CHAPTER4.name in with_exercises
    assert set(copies) == with_exercises


def test_student_copies_hold_no_solution_and_readable_exercises(copies: dict[str, Path]) -> None:
    for name, path in copies.items():
        book = nbformat.read(BOOK / name, 4)
        copy = nbformat.read(path, 4)
        text = "\n".join(c.source for c in copy.cells)
        for solution in _code(book, "solution"):
            assert solution.strip() not in text, f"{name}: a solution cell leaked"
        assert "{solution" not in text and "{exercise}" not in text, name
        n_exercises = sum("{exercise}" in c.source for c in book.cells)
        assert text.count("**Exercise ") == n_exercises, name
        for cell in copy.cells:
            tags = cell.metadata.get("tags", [])
            assert "solution" not in tags
            assert "student" not in tags or "remove-cell" not in tags
            assert cell.cell_type == "markdown" or cell.outputs == []
        assert copy.metadata["gradclinic"]["chapter"] == make_assignments.chapter_of(path)


def test_exercise_fences_become_a_heading_and_text() -> None:
    fence = "Intro\n\n```{exercise} Find it\n:label: ex-4-2\n\nDo **this**.\n```\nAfter"
    assert make_assignments.exercise_to_markdown(fence) == (
        "Intro\n\n**Exercise 4.2 — Find it**\n\nDo **this**.\n\nAfter"
    )


def test_the_grader_agrees_with_the_notebooks_own_checks_on_chapter_4(
    copies: dict[str, Path], tmp_path: Path
) -> None:
    right = nbformat.v4.new_notebook(metadata={"gradclinic": {"chapter": "4"}})
    right.cells = [nbformat.v4.new_code_cell(s) for s in _chapter4_without_slow_cells()]
    wrong = nbformat.read(copies[CHAPTER4.name], 4)  # the untouched student copy
    for student, nb in (("right", right), ("wrong", wrong)):
        (tmp_path / "in" / student).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "in" / student / "submission.ipynb")
    run = run_grader(tmp_path / "in", tmp_path / "out", *("--chapters", "4", "--time-limit", "240"))
    assert run.returncode == 0, run.stderr
    rows = {(r["student"], r["exercise"]): r for r in read_scores(tmp_path / "out")}
    stubs = run_chapter("4", _run_cells(_code(wrong, "student")))
    keys = [ex.key for ex in chapter_exercises("4")]
    assert [result.exercise for result in stubs] == keys
    for result in stubs:
        assert rows[("right", result.exercise)]["passed"] == "1", rows[("right", result.exercise)]
        # Judged outside the kernel, with the same message as the notebook's self-check.
        wrong_row = rows[("wrong", result.exercise)]
        assert (wrong_row["passed"], wrong_row["message"]) == ("0", result.message)
    assert rows[("right", "total")]["message"] == f"{len(keys)} of {len(keys)} exercises passed"
    assert rows[("wrong", "total")]["passed"] == "0"
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert f'<testsuite name="right" tests="{len(keys)}" failures="0">' in junit
    assert f'<testsuite name="wrong" tests="{len(keys)}" failures="{len(keys)}">' in junit


@pytest.mark.parametrize(
    "chapter",
    sorted(p.name for p in BOOK.glob("0*.ipynb")),
)
def test_a_student_copy_runs_to_the_end_with_every_check_not_yet_passed(
    copies: dict[str, Path], chapter: str
) -> None:
    from nbclient import NotebookClient

    # What a student meets on opening the copy: every cell runs, no cell relies on a
    # solution that was removed, and each self-check answers "not yet" instead of raising.
    nb = nbformat.read(copies[chapter], 4)
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    checks = [c for c in nb.cells if c.cell_type == "code" and "check.ex" in c.source]
    assert checks, f"{chapter}: the student copy has no self-check cells"
    for cell in checks:
        text = "".join(
            "".join(o.get("data", {}).get("text/plain", "")) + "".join(o.get("text", ""))
            for o in cell.outputs
        )
        assert ": not yet." in text, f"{chapter}: {cell.source.strip()!r} gave {text!r}"
