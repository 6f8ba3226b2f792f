"""Grade submitted notebooks with the book's checks: a score table (CSV) and JUnit XML.

    python tools/grade.py --out _build/grades [--jobs N] [--chapters "3 4"] SUBMISSIONS/

SUBMISSIONS holds one folder per student with that student's notebooks
(SUBMISSIONS/<student>/<chapter>.ipynb), or notebooks directly, named after the student.
Every student is scored against the assigned chapters (all the book's, or those named): a
missing notebook or answer is a failed exercise with its reason.

The grader never runs student code itself. Each notebook is copied alone into a fresh folder
and run there in a sandbox (tools/sandbox.py: bubblewrap, time and memory limits), followed by
one cell that runs only the checks' probes on the student's objects and writes the evidence (plain
numbers and text) to a file. This process reads that file and judges it with its own copy of
the checks, so nothing the notebook does to its kernel can raise a score.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import queue
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox

EVIDENCE = "evidence.json"
NOTEBOOK = "submission.ipynb"
# Evidence is a few arrays per exercise; anything far larger is not evidence.
EVIDENCE_LIMIT = 16 * 2**20
NOTEBOOK_LIMIT = 64 * 2**20
# Appended after the student's cells: probes only, the evidence to a file, no verdict.
PROBE_CELL = """\
# Added by the grader: run the checks' probes on your answers and record what they return.
import importlib.util as _grader_util
from gradclinic.checks._core import collect_chapter as _grader_collect
from gradclinic.checks._core import encode_evidence as _grader_encode
{load}
with open({evidence!r}, "w") as _grader_file:
    _grader_file.write(_grader_encode(_grader_collect({chapter!r}, globals())))
"""
_LOAD_BOOK = """\
from gradclinic.checks._core import load_book_chapters as _grader_load_book
_grader_load_book()"""
_LOAD_FILE = """\
_grader_spec = _grader_util.spec_from_file_location({name!r}, {path!r})
_grader_spec.loader.exec_module(_grader_util.module_from_spec(_grader_spec))"""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Row:
    """One line of the score table."""

    student: str
    chapter: str
    exercise: str
    passed: bool
    message: str


@dataclass(frozen=True)
class Job:
    """One notebook to grade: whose, which chapter, where."""

    student: str
    chapter: str
    path: Path


@dataclass(frozen=True)
class Checks:
    """Where each chapter's checks come from: the book's, or a file named with --checks."""

    files: dict[str, list[Path]]  # chapter -> the check files with exercises of it
    book: frozenset[str]  # chapters with exercises in the book's own check modules

    def load_source(self, chapter: str, folder: Path | None) -> str:
        """The lines that register the chapter's checks in the student's kernel.

        With a folder, the check file is copied there first (no sandbox binds it read-only).
        """
        lines = [_LOAD_BOOK] if chapter in self.book else []
        for n, path in enumerate(self.files.get(chapter, [])):
            name = f"gradclinic_checks_file_{chapter}_{n}"
            if folder is not None:
                path = Path(shutil.copy(path, folder / f"{name}.py"))
            lines.append(_LOAD_FILE.format(name=name, path=str(path)))
        return "\n".join(lines)


def load_checks(files: list[Path]) -> Checks:
    """Register the book's checks and those of each extra file (for private or test chapters)."""
    from gradclinic.checks._core import chapter_of_key, exercises_in, load_book_chapters

    # Now, before any student code runs: nothing is read from disk for the judges later.
    book = frozenset(chapter_of_key(ex.key) for ex in exercises_in(load_book_chapters()))
    by_chapter: dict[str, list[Path]] = {}
    for path in files:
        path = path.resolve()
        spec = importlib.util.spec_from_file_location(f"gradclinic_checks_file_{path.stem}", path)
        if not path.is_file() or spec is None or spec.loader is None:
            raise ValueError(f"--checks must name Python files, got {str(path)!r}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for chapter in dict.fromkeys(chapter_of_key(ex.key) for ex in exercises_in([module])):
            by_chapter.setdefault(chapter, []).append(path)
    return Checks(by_chapter, book)


def failed_rows(student: str, chapter: str, reason: str) -> list[Row]:
    """Every exercise of a chapter failed for one student, each with the same reason."""
    from gradclinic.checks._core import chapter_exercises

    return [Row(student, chapter, ex.key, False, reason) for ex in chapter_exercises(chapter)]


def chapter_of(path: Path, nb: nbformat.NotebookNode | None) -> str | None:
    """The chapter from the notebook's metadata (set by make_assignments), else its file name."""
    chapter = nb.metadata.get("gradclinic", {}).get("chapter") if nb is not None else None
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
        if ".ipynb_checkpoints" in path.parts or not path.is_file():
            continue
        relative = path.relative_to(root)
        student = relative.parts[0] if len(relative.parts) > 1 else path.stem
        found.append((student, path))
    return found


def _read_notebook(path: Path) -> nbformat.NotebookNode:
    if path.stat().st_size > NOTEBOOK_LIMIT:
        raise ValueError(f"larger than {NOTEBOOK_LIMIT // 2**20} MB")
    return nbformat.read(path, as_version=4)


def plan(
    submissions: list[tuple[str, Path]], chapters: list[str]
) -> tuple[list[Job], list[Row], list[str]]:
    """Jobs for the assigned chapters, failed rows for what is missing, notes on what is ignored."""
    students = sorted({student for student, _ in submissions})
    jobs, missing, notes = [], [], []
    for student in students:
        by_chapter: dict[str, list[Path]] = {}
        for who, path in submissions:
            if who != student:
                continue
            try:
                nb = _read_notebook(path)
            except Exception:  # graded below as unreadable when its name gives the chapter
                nb = None
            chapter = chapter_of(path, nb)
            if chapter in chapters:
                by_chapter.setdefault(chapter, []).append(path)
            else:
                notes.append(f"{student}: ignored {path.name} (chapter {chapter or 'unknown'})")
        for chapter in chapters:
            paths = by_chapter.get(chapter, [])
            reason = None
            if not paths:
                reason = f"no notebook for chapter {chapter}"
            elif len(paths) > 1:
                names = ", ".join(p.name for p in paths)
                reason = f"more than one notebook for chapter {chapter} ({names}): hand in one"
            if reason:
                missing += failed_rows(student, chapter, reason)
            else:
                jobs.append(Job(student, chapter, paths[0]))
    return jobs, missing, notes


def _clean(message: str) -> str:
    # Messages can quote student output: one line, and no spreadsheet formula.
    message = _CONTROL.sub(" ", message).strip()
    return "'" + message if message[:1] in ("=", "+", "-", "@") else message


def read_evidence(path: Path) -> dict | None:
    """The evidence file a sandbox left, or None; never follows a link the student planted."""
    from gradclinic.checks._core import decode_evidence

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > EVIDENCE_LIMIT:
            return None
        text = handle.read(EVIDENCE_LIMIT + 1)
    try:
        return decode_evidence(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


@dataclass(frozen=True)
class Grader:
    """Everything a job needs: limits, where to work, how to sandbox, where each chapter is."""

    limits: sandbox.Limits
    work: Path
    logs: Path
    checks: Checks
    sandboxed: bool
    own_users: bool  # each slot runs as its own unprivileged user

    def readable(self) -> list[Path]:
        """What the sandbox may read: the Python environment, gradclinic's code, check files."""
        import gradclinic

        paths = {Path(sys.prefix), Path(sys.base_prefix), Path(gradclinic.__file__).parents[1]}
        paths |= {file for files in self.checks.files.values() for file in files}
        return sorted(p for p in paths if not str(p).startswith(("/usr/", "/etc/")))

    def grade(self, job: Job, slot: int, judging: threading.Lock) -> list[Row]:
        """Run one notebook in its own sandbox, then judge the evidence it left."""
        from gradclinic.checks._core import judge_chapter

        def failed(reason: str) -> list[Row]:
            return failed_rows(job.student, job.chapter, reason)

        try:
            nb = _read_notebook(job.path)
        except Exception as error:
            return failed(f"cannot read the notebook {job.path.name}: {type(error).__name__}")
        folder = Path(tempfile.mkdtemp(prefix=f"slot{slot}-", dir=self.work))
        inside = sandbox.INSIDE if self.sandboxed else folder
        nb.cells.append(
            nbformat.v4.new_code_cell(
                PROBE_CELL.format(
                    load=self.checks.load_source(job.chapter, None if self.sandboxed else folder),
                    evidence=str(inside / EVIDENCE),
                    chapter=job.chapter,
                )
            )
        )
        nbformat.write(nb, folder / NOTEBOOK)
        uid = sandbox.slot_uid(slot) if self.own_users else None
        sandbox.prepare_folder(folder, uid)
        env = _sandbox_env("/tmp" if self.sandboxed else str(folder))
        argv = [
            sys.executable,
            "-m",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--allow-errors",
            "--ExecutePreprocessor.timeout=-1",
            "--ExecutePreprocessor.kernel_name=python3",
            "--output",
            "executed.ipynb",
            str(inside / NOTEBOOK),
        ]
        log = self.logs / f"{_file_name(job.student)}-chapter{job.chapter}.log"
        try:
            outcome = sandbox.run(
                argv,
                folder,
                readable=self.readable(),
                env=env,
                limits=self.limits,
                uid=uid,
                sandboxed=self.sandboxed,
                log=log,
            )
            evidence = None if outcome.timed_out else read_evidence(folder / EVIDENCE)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if folder.exists():
                print(f"warning: could not remove {folder}", file=sys.stderr)
        if outcome.timed_out:
            return failed(f"timed out: the notebook ran longer than {self.limits.seconds:g} s")
        if evidence is None:
            if outcome.returncode != 0:
                return failed(
                    "the notebook stopped before the checks could run (its kernel died or "
                    f"was killed; exit status {outcome.returncode})"
                )
            return failed("the checks at the end of the notebook recorded no evidence")
        with judging:  # judges may call TensorFlow; one at a time keeps them simple
            results = judge_chapter(job.chapter, evidence)
        return [
            Row(job.student, job.chapter, r.exercise, r.passed, _clean(r.message)) for r in results
        ]


def _sandbox_env(home: str) -> dict[str, str]:
    # Nothing of the grader's own environment: the same variables on every machine.
    import gradclinic

    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": home,
        "PYTHONPATH": str(Path(gradclinic.__file__).parents[1]),
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
    }


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:80]


def grade_all(
    jobs: list[Job], grader: Grader, workers: int, report: Callable[[str], None] = print
) -> list[Row]:
    """Grade jobs on `workers` parallel slots, reporting each notebook as it finishes."""
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(workers):
        slots.put(slot)
    judging = threading.Lock()

    def one(job: Job) -> list[Row]:
        slot = slots.get()
        try:
            return grader.grade(job, slot, judging)
        except Exception as error:  # the grader's own failure on one notebook stops no other
            reason = f"the grader could not run this notebook ({type(error).__name__}: {error})"
            return failed_rows(job.student, job.chapter, _clean(reason))
        finally:
            slots.put(slot)

    rows: list[Row] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(one, job): job for job in jobs}
        for done, future in enumerate(as_completed(futures), start=1):
            job = futures[future]
            graded = future.result()
            passed = sum(row.passed for row in graded)
            report(f"[{done}/{len(jobs)}] {job.student} {job.path.stem}: {passed}/{len(graded)}")
            rows.extend(graded)
    return rows


def ordered(rows: list[Row]) -> list[Row]:
    """Rows by student, then chapter and exercise in numeric order."""

    from gradclinic.checks._core import key_order

    return sorted(rows, key=lambda row: (row.student, key_order(row.exercise)))


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


def gradescope_results(rows: list[Row], seconds: float) -> dict:
    """Gradescope's results.json: one test per exercise worth one point, and the total.

    Format: https://gradescope-autograders.readthedocs.io/en/latest/specs/
    """
    tests = [
        {
            "name": f"Exercise {row.exercise}",
            "score": 1.0 if row.passed else 0.0,
            "max_score": 1.0,
            "status": "passed" if row.passed else "failed",
            "output": row.message,
            "visibility": "visible",
        }
        for row in rows
    ]
    passed = sum(row.passed for row in rows)
    return {
        "score": float(passed),
        "execution_time": round(seconds),
        "output": f"{passed} of {len(rows)} exercises passed",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def parse_chapters(text: str | None) -> list[str]:
    """The assigned chapters in a "3 4" or "3,4" text (all when empty); ValueError for unknown ones."""
    from gradclinic.checks._core import chapter_exercises, chapters

    if not text or not text.strip():
        return chapters()
    wanted = list(dict.fromkeys(text.replace(",", " ").split()))
    for chapter in wanted:
        chapter_exercises(chapter)  # ValueError naming the chapters there are
    return wanted


def main(argv: list[str] | None = None) -> int:
    """Command line: grade.py --out DIR [--jobs N] [--chapters ...] SUBMISSIONS, or --gradescope."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, nargs="?", help="folder of submitted notebooks")
    parser.add_argument("--out", type=Path, help="folder for scores.csv, junit.xml and logs/")
    parser.add_argument(
        "--gradescope",
        type=Path,
        metavar="ROOT",
        help="grade ROOT/submission, write ROOT/results/results.json (Gradescope's layout)",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel notebooks")
    parser.add_argument("--chapters", help='assigned chapters, e.g. "3 4" (default: all)')
    parser.add_argument("--checks", type=Path, action="append", default=[], help="check file")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per notebook")
    parser.add_argument("--memory-limit", type=int, default=4096, help="MB per process")
    parser.add_argument(
        "--config", type=Path, help="JSON with chapters, checks, time_limit (make_autograder's)"
    )
    parser.add_argument("--work", type=Path, help="where the fresh folders go (default: /tmp)")
    parser.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "none"),
        default="auto",
        help="bwrap: require bubblewrap; none: only limits (default auto: bwrap when it works)",
    )
    args = parser.parse_args(argv)
    if (args.submissions is None) == (args.gradescope is None):
        parser.error("give SUBMISSIONS (with --out) or --gradescope ROOT")
    if args.submissions is not None and args.out is None:
        parser.error("--out is required with SUBMISSIONS")
    if args.config is not None:
        config = json.loads(args.config.read_text())
        args.chapters = args.chapters or " ".join(config.get("chapters", []))
        args.checks += [args.config.parent / path for path in config.get("checks", [])]
        args.time_limit = float(config.get("time_limit", args.time_limit))
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    try:
        limits = sandbox.Limits(seconds=args.time_limit, memory_mb=args.memory_limit)
        checks = load_checks(args.checks)
        chapters = parse_chapters(args.chapters)
    except ValueError as error:
        parser.error(str(error))
    if args.gradescope is not None:
        root = args.gradescope
        submissions = [("student", p) for p in sorted((root / "submission").rglob("*.ipynb"))]
        out = root / "results"
    else:
        submissions = find_submissions(args.submissions)
        out = args.out
        if not submissions:
            print(f"no notebooks found in {args.submissions}", file=sys.stderr)
            return 1
    jobs, rows, notes = plan(submissions, chapters)
    for note in notes:
        print(note)
    sandboxed = args.sandbox != "none" and sandbox.bwrap_works()
    if args.sandbox == "bwrap" and not sandboxed:
        print("error: --sandbox bwrap, but bubblewrap is not usable here", file=sys.stderr)
        return 2
    # As root, each slot runs as its own user; bwrap makes the environment visible to it, and
    # without bwrap that user must be able to read the environment itself.
    own_users = sandbox.slot_uid(0) is not None and (
        sandboxed or sandbox.runs_unprivileged(sys.executable, _sandbox_env("/"))
    )
    if not sandboxed:
        sandbox.warn_unsandboxed(own_users)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="gradclinic-grading-", dir=args.work))
    work.chmod(0o711)  # the slots' users may pass through, not list
    try:
        grader = Grader(limits, work, out / "logs", checks, sandboxed, own_users)
        rows += grade_all(jobs, grader, min(args.jobs, max(1, len(jobs))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if work.exists():
            print(f"warning: could not remove {work}", file=sys.stderr)
    rows = ordered(rows)
    if args.gradescope is not None:
        results = gradescope_results(rows, time.monotonic() - start)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"{results['output']}; wrote {out / 'results.json'}")
        return 0
    write_csv(rows, out / "scores.csv")
    write_junit(rows, out / "junit.xml")
    for student in sorted({row.student for row in rows}):
        mine = [row for row in rows if row.student == student]
        print(f"{student}: {sum(r.passed for r in mine)} of {len(mine)} exercises passed")
    print(f"wrote {out / 'scores.csv'} and {out / 'junit.xml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
