"""Grade submitted notebooks with the book's self-checks: a score table (CSV) and JUnit XML.

    python tools/grade.py --out _build/grades SUBMISSIONS/

SUBMISSIONS holds one folder per student with that student's notebooks
(SUBMISSIONS/<student>/<chapter>.ipynb), or notebooks directly, named after the student.
Each notebook runs in a fresh kernel, cells that raise do not stop it, and the whole notebook
has a time limit. Then every registered check of its chapter runs in the same kernel on the
student's objects, looked up by name. A notebook that times out or kills its kernel scores 0
on each exercise, with the reason in the message.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

MARKER = "GRADCLINIC-RESULTS "
# Runs in the student's kernel after their notebook; prints one line the grader parses.
GRADING_CELL = """\
import json as _gradclinic_json
from gradclinic.checks._core import run_chapter as _gradclinic_run_chapter
print({marker!r} + _gradclinic_json.dumps(
    [[r.exercise, r.passed, r.message] for r in _gradclinic_run_chapter({chapter!r}, globals())]
))
"""


@dataclass(frozen=True)
class Row:
    """One line of the score table."""

    student: str
    chapter: str
    exercise: str
    passed: bool
    message: str


def chapter_of(path: Path, nb: nbformat.NotebookNode) -> str | None:
    """The chapter from the notebook's metadata (set by make_assignments), else its file name."""
    chapter = nb.metadata.get("gradclinic", {}).get("chapter")
    if chapter:
        return str(chapter)
    match = re.match(r"(\d+)_", path.name)
    return str(int(match.group(1))) if match else None


def find_submissions(root: Path) -> list[tuple[str, Path]]:
    """(student, notebook) pairs: a folder per student, or a notebook named after the student."""
    if not root.is_dir():
        raise ValueError(f"SUBMISSIONS must be a folder, got {str(root)!r}")
    found = []
    for path in sorted(root.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        relative = path.relative_to(root)
        student = relative.parts[0] if len(relative.parts) > 1 else path.stem
        found.append((student, path))
    return found


def _results_from(outputs: list) -> list[list] | None:
    for output in outputs:
        if output.get("output_type") == "stream":
            for line in output.get("text", "").splitlines():
                if line.startswith(MARKER):
                    return json.loads(line[len(MARKER) :])
    return None


def _expected_exercises(chapter: str) -> list[str]:
    from gradclinic.checks import registry

    keys = [key for key in registry() if key.split(".")[0] == chapter]
    return sorted(keys, key=lambda key: tuple(int(part) for part in key.split(".")))


def grade_notebook(
    student: str, path: Path, time_limit: float, check_time_limit: float = 120.0
) -> list[Row]:
    """Run one notebook in a fresh kernel within time_limit seconds, then its chapter's checks."""
    nb = nbformat.read(path, as_version=4)
    chapter = chapter_of(path, nb)
    exercises = _expected_exercises(chapter) if chapter else []
    if not exercises:
        reason = f"cannot tell which chapter {path.name} is, or it has no exercises"
        return [Row(student, chapter or "?", "?", False, reason)]

    def everything_failed(reason: str) -> list[Row]:
        return [Row(student, chapter, key, False, reason) for key in exercises]

    grading = nbformat.v4.new_code_cell(GRADING_CELL.format(marker=MARKER, chapter=chapter))
    client = NotebookClient(
        nb,
        timeout=time_limit,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    errors = 0
    deadline = time.monotonic() + time_limit
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CellTimeoutError(f"no time left before cell {index}")
                # nbclient limits each cell; the remaining budget makes it a notebook limit.
                client.timeout = max(1, round(left))
                client.execute_cell(cell, index)
                errors += any(out.get("output_type") == "error" for out in cell.outputs)
            nb.cells.append(grading)
            client.timeout = int(check_time_limit)
            client.execute_cell(grading, len(nb.cells) - 1)
    except CellTimeoutError:
        return everything_failed(f"timed out: the notebook ran longer than {time_limit:g} s")
    except DeadKernelError:
        return everything_failed("the kernel died while running the notebook")
    results = _results_from(grading.outputs)
    if results is None:
        error = next((o for o in grading.outputs if o.get("output_type") == "error"), None)
        detail = f"{error['ename']}: {error['evalue']}" if error else "no output"
        return everything_failed(f"the checks could not run in this notebook ({detail})")
    note = f" ({errors} cell(s) of the notebook raised an error)" if errors else ""
    return [
        Row(student, chapter, key, bool(passed), message + ("" if passed else note))
        for key, passed, message in results
    ]


def write_csv(rows: list[Row], path: Path) -> None:
    """The score table: one row per exercise, then a total row per student."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "chapter", "exercise", "passed", "message"])
        for student in sorted({row.student for row in rows}):
            mine = [row for row in rows if row.student == student]
            for row in mine:
                writer.writerow(
                    [row.student, row.chapter, row.exercise, int(row.passed), row.message]
                )
            passed = sum(row.passed for row in mine)
            writer.writerow(
                [student, "all", "total", passed, f"{passed} of {len(mine)} exercises passed"]
            )


def write_junit(rows: list[Row], path: Path) -> None:
    """JUnit XML: a test suite per student, a test case per exercise."""
    suites = ET.Element("testsuites", name="gradclinic")
    for student in sorted({row.student for row in rows}):
        mine = [row for row in rows if row.student == student]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=student,
            tests=str(len(mine)),
            failures=str(sum(not row.passed for row in mine)),
        )
        for row in mine:
            case = ET.SubElement(
                suite, "testcase", classname=f"{student}.chapter{row.chapter}", name=row.exercise
            )
            if row.passed:
                ET.SubElement(case, "system-out").text = row.message
            else:
                ET.SubElement(case, "failure", message=row.message)
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: grade.py --out DIR [--time-limit S] SUBMISSIONS."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, help="folder of submitted notebooks")
    parser.add_argument("--out", type=Path, required=True, help="folder for scores.csv, junit.xml")
    parser.add_argument(
        "--time-limit", type=float, default=300.0, help="seconds per notebook (default 300)"
    )
    args = parser.parse_args(argv)
    if not args.time_limit > 0:
        parser.error(f"--time-limit must be > 0, got {args.time_limit}")
    submissions = find_submissions(args.submissions)
    if not submissions:
        print(f"no notebooks found in {args.submissions}", file=sys.stderr)
        return 1
    rows: list[Row] = []
    for student, path in submissions:
        graded = grade_notebook(student, path, args.time_limit)
        passed = sum(row.passed for row in graded)
        print(f"{student}: {path.name}: {passed} of {len(graded)} passed")
        rows.extend(graded)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "scores.csv")
    write_junit(rows, args.out / "junit.xml")
    print(f"wrote {args.out / 'scores.csv'} and {args.out / 'junit.xml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
