"""Grade submitted notebooks with the book's checks: a score table (CSV) and JUnit XML.

    python tools/grade.py --out _build/grades [--jobs N] [--chapters "3 4"] SUBMISSIONS/

SUBMISSIONS holds one folder per student with that student's notebooks
(SUBMISSIONS/<student>/<chapter>.ipynb), or notebooks directly, named after the student.
Every student is scored against the assigned chapters (all the book's, or those named): a
missing notebook or answer is a failed exercise with its reason.

The grader never runs student code itself. Each notebook is copied alone into a fresh folder
and run there in a sandbox (tools/sandbox.py: bubblewrap, time and memory limits), followed by
one cell that runs only the checks' probes on the student's objects and writes the evidence (plain
numbers and text) to a file. The sandbox holds gradclinic without its checks (no judge, reference
or answer key; a private check file's probes only, never the file itself), and the probes' inputs
are drawn for each notebook from a seed the sandbox never sees and reach the kernel only in that
last cell, so evidence written earlier, or by a replaced collector without a working answer,
fails. The grader reads that file without following links or blocking, and hands it with the
same inputs to a judge process of its own (started before any student code, with its own time
and memory limit), so neither the kernel nor the evidence it leaves can raise a score or stall
the grader's threads, which enforce every other sandbox's time limit.

A private check file is a pair: X.py (judges, references, inputs; `--checks X.py`) and, beside
it, X_probes.py (the probes).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import importlib.util
import json
import math
import os
import queue
import re
import resource
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# jsonschema's optional IRI format checker, which nbformat's schema never uses, builds a
# grammar on import: 4 s of CPU for the grader and for each judge process. Left out.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]
import nbformat  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sandbox  # noqa: E402

EVIDENCE = "evidence.json"
NOTEBOOK = "submission.ipynb"
# Evidence is a few arrays per exercise; anything far larger is not evidence.
EVIDENCE_LIMIT = 16 * 2**20
# ... also once decoded: NumPy string arrays are fixed-width, so one long string among many
# empty ones in a small file would decode to gigabytes. Checked before anything is built.
EVIDENCE_ELEMENTS = 2**20  # array elements per exercise
EVIDENCE_DECODED_BYTES = 64 * 2**20  # bytes per exercise once decoded
NOTEBOOK_LIMIT = 64 * 2**20
# A judge gets this long to start (importing TensorFlow) and then each chapter's verdicts.
JUDGE_START_SECONDS = 300.0
# Appended after the student's cells: probes only, on inputs drawn for this run outside the
# sandbox, the evidence to a file, no verdict.
PROBE_CELL = """\
# Added by the grader: run the checks' probes on your answers and record what they return.
import importlib.util as _grader_util
from gradclinic.probes._core import collect_chapter as _grader_collect
from gradclinic.probes._core import encode_evidence as _grader_encode
{load}
_grader_inputs = {inputs!r}
with open({evidence!r}, "w") as _grader_file:
    _grader_file.write(_grader_encode(_grader_collect({chapter!r}, globals(), _grader_inputs)))
"""
_LOAD_BOOK = """\
from gradclinic.probes._core import load_book_probes as _grader_load_book
_grader_load_book()"""
_LOAD_FILE = """\
_grader_spec = _grader_util.spec_from_file_location({name!r}, {path!r})
_grader_spec.loader.exec_module(_grader_util.module_from_spec(_grader_spec))"""
# What the sandbox holds in place of gradclinic.checks (judges, references, answer keys):
# a notebook's self-checks say they are off, and the chapters' public names still import.
_OFF_INIT = '''"""Self-checks are off while grading: the grader checks your answers after your last cell."""

import re as _re

from gradclinic.probes._core import load_book_probes as _load


class _Off:
    def __init__(self, key):
        self.key = key

    def __call__(self, *args, **kwargs):
        print(
            f"Exercise {self.key}: self-checks are off while grading; "
            "the grader checks your answer after your last cell."
        )


def __getattr__(name):
    match = _re.fullmatch(r"ex(\\d+)_(\\d+)", name)
    if match:
        return _Off(f"{match[1]}.{match[2]}")
    for module in _load():
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
'''
_OFF_CHAPTER = """\
from gradclinic.checks import __getattr__
from gradclinic.probes.{name} import *
"""
_OFF_CORE = """\
from gradclinic.probes._core import *
"""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# Terminal escape sequences (CSI, OSC and the like, 7- and 8-bit) and lone control or
# direction-changing characters: none of a student's text may steer the instructor's terminal.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|$)"  # OSC, DCS, ...
    r"|\x1b[ -/]*[0-~]?"  # other ESC sequences
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]",
    re.DOTALL,
)


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


PROBES_SUFFIX = "_probes"


def probes_file(path: Path) -> Path:
    """The probe half of a check file: X_probes.py beside X.py."""
    return path.with_name(f"{path.stem}{PROBES_SUFFIX}.py")


@dataclass(frozen=True)
class Checks:
    """Where each chapter's checks come from: the book's, or a pair of files named with --checks.

    A private check file X.py holds judges, references and inputs; its probes live beside it
    in X_probes.py. Only the probes file is ever copied into a sandbox.
    """

    files: dict[str, list[Path]]  # chapter -> the check (judge) files with exercises of it
    book: frozenset[str]  # chapters with exercises in the book's own check modules

    def load_source(self, chapter: str, folder: Path, inside: Path) -> str:
        """The lines that register the chapter's probes in the student's kernel.

        Each check file's probes file is copied into the sandbox's folder (seen there as
        `inside`); the check file itself never is.
        """
        lines = [_LOAD_BOOK] if chapter in self.book else []
        for n, path in enumerate(self.files.get(chapter, [])):
            name = f"gradclinic_probes_file_{chapter}_{n}"
            shutil.copy(probes_file(path), folder / f"{name}.py")
            lines.append(_LOAD_FILE.format(name=name, path=str(inside / f"{name}.py")))
        return "\n".join(lines)


def _load_file(path: Path, prefix: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{prefix}_{path.stem}", path)
    if not path.is_file() or spec is None or spec.loader is None:
        raise ValueError(f"--checks must name Python files, got {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_check_pair(path: Path) -> ModuleType:
    """Register a check file's probes (X_probes.py), then its exercises (X.py); X.py's module."""
    probes = probes_file(path)
    if not probes.is_file():
        raise ValueError(
            f"--checks {str(path)!r}: its probes must be beside it in {probes.name} "
            "(the only half that enters the sandbox)"
        )
    _load_file(probes, "gradclinic_probes_file")
    return _load_file(path, "gradclinic_checks_file")


def load_checks(files: list[Path]) -> Checks:
    """Register the book's checks and those of each extra file (for private or test chapters)."""
    from gradclinic.checks._core import chapter_of_key, exercises_in, load_book_chapters

    # Now, before any student code runs: nothing is read from disk for the judges later.
    book = frozenset(chapter_of_key(ex.key) for ex in exercises_in(load_book_chapters()))
    by_chapter: dict[str, list[Path]] = {}
    for path in files:
        path = path.resolve()
        if path.stem.endswith(PROBES_SUFFIX):
            raise ValueError(f"--checks names the judges' file X.py, not {path.name}")
        module = load_check_pair(path)
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


def find_submissions(root: Path) -> tuple[list[tuple[str, Path]], list[str], set[str]]:
    """(student, notebook) pairs, notes on what is not graded and why, and every student seen.

    A folder per student, or a notebook named after the student. Only regular files inside the
    student's own folder count: links are never followed (a link to a classmate's notebook or
    to a solved copy scores nothing) and a flat notebook whose name is also a folder's is a name
    collision, reported, which never costs the folder's owner anything.
    """
    if not root.is_dir():
        raise ValueError(f"SUBMISSIONS must be a folder, got {str(root)!r}")
    found: list[tuple[str, Path]] = []
    notes: list[str] = []
    entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    folders = {entry.name for entry in entries if entry.is_dir(follow_symlinks=False)}
    students = set(folders)
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            found += [(entry.name, nb) for nb in _notebooks_in(path, entry.name, notes)]
        elif entry.name.endswith(".ipynb"):
            student = path.stem
            why = _not_regular(path)
            if student in folders:
                why = f"name collision: the folder {student}/ holds {student}'s notebooks"
            if why:
                notes.append(f"{_display(entry.name)}: not graded ({why})")
            else:
                students.add(student)
                found.append((student, path))
        elif entry.is_symlink():
            notes.append(f"{_display(entry.name)}: not graded (a symbolic link)")
    return found, notes, students


def _not_regular(path: Path) -> str | None:
    # Why a path is no regular file of its own (a link, a FIFO, ...), or None when it is one.
    mode = os.lstat(path).st_mode
    return None if stat.S_ISREG(mode) else _file_kind(mode)


def _notebooks_in(folder: Path, student: str, notes: list[str]) -> list[Path]:
    # Regular .ipynb files under folder, without following a link; notes on the rest.
    notebooks = []
    for parent, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d != ".ipynb_checkpoints")
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(parent, d))]:
            path = Path(parent, name)
            if not name.endswith(".ipynb") and not path.is_symlink():
                continue
            why = _not_regular(path)
            if why:
                where = _display(str(path.relative_to(folder.parent)))
                notes.append(f"{_display(student)}: not graded: {where} ({why})")
            else:
                notebooks.append(path)
    return notebooks


def read_regular(path: Path, limit: int) -> bytes:
    """A regular file's bytes (at most limit); ValueError for a link, FIFO, device or larger file.

    Checked before the open (so no device is opened), opened without following a link and
    without blocking (a FIFO swapped in meanwhile), checked again on what was opened.
    """
    before = os.lstat(path)
    if not stat.S_ISREG(before.st_mode):
        raise ValueError(f"not a regular file ({_file_kind(before.st_mode)})")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (
            before.st_dev,
            before.st_ino,
        ):
            raise ValueError("the file changed while it was opened")
        if info.st_size > limit:
            raise ValueError(f"larger than {limit // 2**20} MB")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit // 2**20} MB")
    return data


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISLNK: "a symbolic link",
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a device",
        stat.S_ISBLK: "a device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def _read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.reads(read_regular(path, NOTEBOOK_LIMIT).decode("utf-8"), as_version=4)


def plan(
    submissions: list[tuple[str, Path]], chapters: list[str], everyone: set[str] = frozenset()
) -> tuple[list[Job], list[Row], list[str]]:
    """Jobs for the assigned chapters, failed rows for what is missing, notes on what is ignored.

    Every student in `everyone` is scored too, even one who handed in no notebook.
    """
    students = sorted({student for student, _ in submissions} | set(everyone))
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
    return _CONTROL.sub(" ", message).strip()


def _cell(value: object) -> str:
    """A score-table cell that no spreadsheet reads as a formula and no terminal as a command."""
    text = _ESCAPES.sub("", str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# What XML 1.0 cannot hold at all (one such character made junit.xml unreadable for the class).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("", _ESCAPES.sub("", text))


def _display(text: str) -> str:
    """Text a student chose (a folder or file name, a message), safe to print on a terminal."""
    return _ESCAPES.sub("", text).replace("\t", " ").replace("\n", " ")


def read_evidence(path: Path) -> bytes | None:
    """The evidence file a sandbox left, or None for none, a link, a FIFO or an oversized file."""
    try:
        return read_regular(path, EVIDENCE_LIMIT)
    except (OSError, ValueError):
        return None


def _oversized(items: Any) -> str | None:
    # Walks the raw JSON of one exercise; says why it would decode too large, before decoding.
    if not isinstance(items, dict):
        return None  # decode_evidence reports it as malformed
    elements = decoded = 0
    for item in items.values():
        if not isinstance(item, dict) or item.get("kind") != "array":
            continue
        data, shape = item.get("data"), item.get("shape")
        if not isinstance(data, list) or not isinstance(shape, list) or len(shape) > 32:
            return "the recorded results for this exercise are malformed"
        if not all(isinstance(n, int) and n >= 0 for n in shape) or math.prod(shape) != len(data):
            return "the recorded results for this exercise are malformed"
        elements += len(data)
        width = 8
        if item.get("dtype") == "str":  # fixed width: every element as long as the longest
            width = 4 * max((len(v) for v in data if isinstance(v, str)), default=1)
        decoded += width * len(data)
    if elements > EVIDENCE_ELEMENTS or decoded > EVIDENCE_DECODED_BYTES:
        return (
            f"the recorded results for this exercise are too large ({elements} values, "
            f"{decoded // 2**20} MB decoded; at most {EVIDENCE_ELEMENTS} values and "
            f"{EVIDENCE_DECODED_BYTES // 2**20} MB)"
        )
    return None


def decode_bounded(data: bytes) -> dict:
    """Evidence bytes decoded; an exercise whose results would decode too large gets an error."""
    from gradclinic.checks._core import ERROR_KEY, decode_evidence

    raw = json.loads(data.decode("utf-8"))
    if not isinstance(raw, dict):
        raise ValueError("evidence must be a JSON object keyed by exercise")
    problems = {str(key): _oversized(items) for key, items in raw.items()}
    kept = {key: items for key, items in raw.items() if problems[str(key)] is None}
    decoded = decode_evidence(json.dumps(kept))
    decoded.update({key: {ERROR_KEY: why} for key, why in problems.items() if why is not None})
    return decoded


def judge_worker(argv: list[str]) -> int:
    """The judge process: MEMORY_MB BOOK FILE...; verdicts for each request on stdin, in order.

    A request is a line "CHAPTER NINPUTS NBYTES", the NINPUTS bytes of the inputs drawn for
    that notebook's run and NBYTES of evidence; the answer is one JSON line, a list of
    [exercise, passed, message], or a string naming why the evidence was unreadable.
    """
    from gradclinic.checks._core import judge_chapter, load_book_chapters

    memory = int(argv[0]) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if argv[1] == "1":
        load_book_chapters()
    for path in argv[2:]:  # the same files the grader loaded: they register their exercises
        load_check_pair(Path(path))
    requests, answers = sys.stdin.buffer, sys.stdout
    answers.write("ready\n")
    answers.flush()
    while header := requests.readline():
        chapter, inputs_size, size = header.decode().split()
        inputs = requests.read(int(inputs_size)).decode("utf-8")
        data = requests.read(int(size))
        try:
            evidence = decode_bounded(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as error:
            answer: Any = f"the evidence file is unreadable ({type(error).__name__})"
        else:
            verdicts = judge_chapter(chapter, evidence, inputs)
            answer = [[r.exercise, r.passed, r.message] for r in verdicts]
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0


class JudgeProcess:
    """A judge in its own process, with a time limit per request and a memory limit.

    It is started (and loads every check) before any student code runs, and started afresh
    after a request that overran. Evidence is judged there, never in the grader's threads.
    """

    def __init__(
        self, checks: Checks, chapters: list[str], seconds: float, memory_mb: int, log: Path
    ):
        files = sorted({str(file) for files in checks.files.values() for file in files})
        book = "1" if any(chapter in checks.book for chapter in chapters) else "0"
        self.argv = [sys.executable, __file__, "--judge-worker", str(memory_mb), book, *files]
        self.seconds, self.memory_mb, self.log = seconds, memory_mb, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until its checks are loaded."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        if self._line(time.monotonic() + JUDGE_START_SECONDS) != b"ready":
            self.stop()
            raise RuntimeError(f"the judge process did not start; see {self.log}")

    def stop(self) -> None:
        """End the process and everything it started."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()
            self.process = None

    def _line(self, deadline: float) -> bytes | None:
        # One line of the answer, or None when the deadline passes or the process ends first.
        assert self.process is not None and self.process.stdout is not None
        fd, data = self.process.stdout.fileno(), b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            data += chunk
        return data.rstrip(b"\n")

    def _send(self, data: bytes, deadline: float) -> bool:
        assert self.process is not None and self.process.stdin is not None
        fd = self.process.stdin.fileno()
        view = memoryview(data)
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                return False
            try:
                view = view[os.write(fd, view[: 1 << 16]) :]
            except BrokenPipeError:
                return False
        return True

    def judge(
        self, chapter: str, inputs: str, evidence: bytes
    ) -> list[tuple[str, bool, str]] | str:
        """The verdicts on evidence recorded at inputs, or why there are none (unreadable, too
        slow, too large)."""
        if self.process is None:
            self.start()
        deadline = time.monotonic() + self.seconds
        answer = None
        drawn = inputs.encode("utf-8")
        request = f"{chapter} {len(drawn)} {len(evidence)}\n".encode() + drawn + evidence
        if self._send(request, deadline):
            answer = self._line(deadline)
        if answer is None:
            self.stop()  # overran or died: the next request gets a fresh judge
            return (
                f"the checks could not judge this evidence within {self.seconds:g} s "
                f"and {self.memory_mb} MB (the judge was stopped)"
            )
        verdicts = json.loads(answer)
        if isinstance(verdicts, str):
            return verdicts
        return [(str(key), bool(passed), str(message)) for key, passed, message in verdicts]


@dataclass(frozen=True)
class Grader:
    """Everything a job needs: limits, where to work, how to sandbox, where each chapter is."""

    limits: sandbox.Limits
    work: Path
    logs: Path
    checks: Checks
    sandboxed: bool
    own_users: bool  # each slot runs as its own unprivileged user
    lib: Path  # gradclinic without its checks (make_probe_library): what the sandbox imports
    judge_seconds: float = 60.0  # per chapter's verdicts on one notebook's evidence
    judge_memory_mb: int = 4096
    shares: sandbox.CpuShares | None = None  # an equal CPU share per slot, where one can be made

    def judge_process(self, chapters: list[str]) -> JudgeProcess:
        """A judge for these chapters with this grader's limits (not started yet)."""
        log = self.logs / "judges.log"
        return JudgeProcess(self.checks, chapters, self.judge_seconds, self.judge_memory_mb, log)

    def readable(self) -> list[Path]:
        """What the sandbox may read: the Python environment and gradclinic without its checks.

        Not gradclinic's own folder (its judges and references), not any check file: a private
        check file's probes are copied into the submission's folder.
        """
        paths = {Path(sys.prefix), Path(sys.base_prefix), self.lib}
        return sorted(p for p in paths if not str(p).startswith(("/usr/", "/etc/")))

    def grade(self, job: Job, slot: int, judge: JudgeProcess) -> list[Row]:
        """Run one notebook in its own sandbox, then have the slot's judge judge its evidence."""

        def failed(reason: str) -> list[Row]:
            return failed_rows(job.student, job.chapter, reason)

        try:
            nb = _read_notebook(job.path)
        except Exception as error:
            return failed(f"cannot read the notebook {job.path.name}: {type(error).__name__}")
        folder = Path(tempfile.mkdtemp(prefix=f"slot{slot}-", dir=self.work))
        inside = sandbox.INSIDE if self.sandboxed else folder
        # Drawn here, from a seed the sandbox never sees; the kernel gets only the inputs, in
        # the cell after the student's, and the judge the same inputs.
        inputs = draw_inputs(job.chapter)
        nb.cells.append(
            nbformat.v4.new_code_cell(
                PROBE_CELL.format(
                    load=self.checks.load_source(job.chapter, folder, inside),
                    evidence=str(inside / EVIDENCE),
                    chapter=job.chapter,
                    inputs=inputs,
                )
            )
        )
        nbformat.write(nb, folder / NOTEBOOK)
        uid = sandbox.slot_uid(slot) if self.own_users else None
        sandbox.prepare_folder(folder, uid)
        env = _sandbox_env("/tmp" if self.sandboxed else str(folder), self.lib)
        argv = sandbox.notebook_argv(sys.executable, inside / NOTEBOOK)
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
                keep=(EVIDENCE,),
                share=self.shares.slot(slot) if self.shares is not None else None,
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
        verdicts = judge.judge(job.chapter, inputs, evidence)
        if isinstance(verdicts, str):
            return failed(verdicts)
        return [
            Row(job.student, job.chapter, key, passed, _clean(message))
            for key, passed, message in verdicts
        ]


def draw_inputs(chapter: str) -> str:
    """A chapter's inputs for one grading run (JSON): drawn from a fresh secret seed, with a
    fresh run token in each exercise's inputs, so no evidence made elsewhere matches them."""
    from gradclinic.checks._core import chapter_inputs

    rng = np.random.default_rng(secrets.randbits(128))
    return chapter_inputs(chapter, rng, run=secrets.token_hex(16))


def make_probe_library(folder: Path) -> Path:
    """A copy of gradclinic for the sandbox: the probes, not the checks (judges, references).

    In place of gradclinic.checks, a package whose self-checks say they are off while grading
    and whose chapter modules give the chapters' public names (from gradclinic.probes).
    """
    import gradclinic

    source = Path(gradclinic.__file__).parent
    lib = folder / "lib"
    target = lib / "gradclinic"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checks", "__pycache__", "*.pyc"))
    checks = target / "checks"
    checks.mkdir()
    (checks / "__init__.py").write_text(_OFF_INIT)
    (checks / "_core.py").write_text(_OFF_CORE)
    for module in sorted((source / "probes").glob("ch*.py")):
        (checks / module.name).write_text(_OFF_CHAPTER.format(name=module.stem))
    for path in [lib, *lib.rglob("*")]:  # every slot's user reads it, no one writes it
        path.chmod(0o755 if path.is_dir() else 0o644)
    return lib


def _sandbox_env(home: str, lib: Path) -> dict[str, str]:
    # Nothing of the grader's own environment: the same variables on every machine.
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": home,
        # First on the path: gradclinic without its checks, before any installed copy.
        "PYTHONPATH": str(lib),
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
    }


def _file_name(text: str) -> str:
    # Readable, and unique per student: "ada lovelace" and "ada_lovelace" differ by the hash.
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', text)[:60]}-{digest}"


def grade_all(
    jobs: list[Job], grader: Grader, workers: int, report: Callable[[str], None] = print
) -> list[Row]:
    """Grade jobs on `workers` parallel slots, reporting each notebook as it finishes.

    Each slot has its own judge process, started (checks loaded) before any notebook runs.
    """
    judges = [grader.judge_process(sorted({job.chapter for job in jobs})) for _ in range(workers)]
    slots: queue.Queue[int] = queue.Queue()
    try:
        if jobs:  # at once: each loads the checks (TensorFlow) on a core of its own
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(JudgeProcess.start, judges))
        for slot in range(workers):
            slots.put(slot)

        def one(job: Job) -> tuple[list[Row], float]:
            slot, start = slots.get(), time.monotonic()
            try:
                return grader.grade(job, slot, judges[slot]), time.monotonic() - start
            except Exception as error:  # the grader's own failure on one notebook stops no other
                reason = f"the grader could not run this notebook ({type(error).__name__}: {error})"
                return failed_rows(
                    job.student, job.chapter, _clean(reason)
                ), time.monotonic() - start
            finally:
                slots.put(slot)

        rows: list[Row] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(one, job): job for job in jobs}
            for done, future in enumerate(as_completed(futures), start=1):
                job = futures[future]
                graded, seconds = future.result()
                passed = sum(row.passed for row in graded)
                report(
                    f"[{done}/{len(jobs)}] {_display(job.student)} {_display(job.path.stem)}: "
                    f"{passed}/{len(graded)} ({seconds:.0f} s)"
                )
                rows.extend(graded)
    finally:
        for judge in judges:
            judge.stop()
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
                    map(
                        _cell,
                        [row.student, row.chapter, row.exercise, int(row.passed), row.message],
                    )
                )
            passed = sum(row.passed for row in mine)
            total = [student, "all", "total", passed, f"{passed} of {len(mine)} exercises passed"]
            writer.writerow(map(_cell, total))


def write_junit(rows: list[Row], path: Path) -> None:
    """JUnit XML: a test suite per student, a test case per exercise."""
    suites = ET.Element("testsuites", name="gradclinic")
    for student in sorted({row.student for row in rows}):
        mine = [row for row in rows if row.student == student]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=_xml(student),
            tests=str(len(mine)),
            failures=str(sum(not row.passed for row in mine)),
        )
        for row in mine:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_xml(f"{student}.chapter{row.chapter}"),
                name=_xml(row.exercise),
            )
            if row.passed:
                ET.SubElement(case, "system-out").text = _xml(row.message)
            else:
                ET.SubElement(case, "failure", message=_xml(row.message))
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
    parser.add_argument(
        "--checks",
        type=Path,
        action="append",
        default=[],
        help="a private check file X.py (judges, inputs), its probes beside it in X_probes.py",
    )
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per notebook")
    parser.add_argument("--memory-limit", type=int, default=4096, help="MB per process")
    parser.add_argument(
        "--folder-limit", type=int, default=512, help="MB of each RAM-backed /tmp and work folder"
    )
    parser.add_argument(
        "--judge-time-limit", type=float, default=60.0, help="seconds to judge one notebook"
    )
    parser.add_argument(
        "--judge-memory-limit", type=int, default=4096, help="MB for each judge process"
    )
    parser.add_argument(
        "--config", type=Path, help="JSON with chapters, checks, time_limit (make_autograder's)"
    )
    parser.add_argument("--work", type=Path, help="where the fresh folders go (default: /tmp)")
    parser.add_argument(
        "--sandbox",
        choices=("auto", "bwrap", "none"),
        default="auto",
        help="bwrap: require bubblewrap; none: only limits, even as your own user (default auto: "
        "bwrap when it works, else an unprivileged user per slot, else refuse)",
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
    if not 1 <= args.jobs <= sandbox.SLOTS:
        parser.error(f"--jobs must be between 1 and {sandbox.SLOTS}, got {args.jobs}")
    if not (args.judge_time_limit > 0 and args.judge_memory_limit > 0):
        parser.error("--judge-time-limit and --judge-memory-limit must be > 0")
    try:
        limits = sandbox.Limits(
            seconds=args.time_limit, memory_mb=args.memory_limit, folder_mb=args.folder_limit
        )
        checks = load_checks(args.checks)
        chapters = parse_chapters(args.chapters)
    except ValueError as error:
        parser.error(str(error))
    if args.gradescope is not None:
        root = args.gradescope
        found: list[str] = []
        paths = _notebooks_in(root / "submission", "student", found)
        submissions, everyone = [("student", path) for path in paths], {"student"}
        out = root / "results"
    else:
        submissions, found, everyone = find_submissions(args.submissions)
        out = args.out
        if not everyone:
            print(f"no notebooks found in {args.submissions}", file=sys.stderr)
            return 1
    jobs, rows, notes = plan(submissions, chapters, everyone)
    for note in found + notes:
        print(_display(note))
    sandboxed = args.sandbox != "none" and sandbox.bwrap_works()
    if args.sandbox == "bwrap" and not sandboxed:
        print("error: --sandbox bwrap, but bubblewrap is not usable here", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gradclinic-grading-", dir=args.work))
    work.chmod(0o711)  # the slots' users may pass through, not list
    try:
        lib = make_probe_library(work)
        return _grade_class(args, work, lib, sandboxed, limits, checks, jobs, rows, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if work.exists():
            print(f"warning: could not remove {work}", file=sys.stderr)


def _grade_class(
    args: argparse.Namespace,
    work: Path,
    lib: Path,
    sandboxed: bool,
    limits: sandbox.Limits,
    checks: Checks,
    jobs: list[Job],
    rows: list[Row],
    out: Path,
) -> int:
    # As root, each slot runs as its own user; bwrap makes the environment visible to it, and
    # without bwrap that user must be able to read the environment itself.
    own_users = sandbox.slot_uid(0) is not None and (
        sandboxed or sandbox.runs_unprivileged(sys.executable, _sandbox_env("/", lib))
    )
    if not sandboxed and not own_users and args.sandbox != "none":
        # Student code would run as you: it could rewrite the scores and outlive the run.
        print(
            "error: bubblewrap is not usable here and no unprivileged user is available (run as "
            "root with an environment other users can read), so student code would run as you. "
            "Install bubblewrap, or pass --sandbox none to grade anyway.",
            file=sys.stderr,
        )
        return 2
    if not sandboxed:
        sandbox.warn_unsandboxed(own_users)
        for path in sorted({path for paths in checks.files.values() for path in paths}):
            if path.stat().st_mode & 0o004:
                # Without bubblewrap only file permissions keep a judge's file from students.
                print(
                    f"warning: {path} is readable by every user, so student code can read its "
                    f"references here; make it readable by you alone (chmod 600 {path})",
                    file=sys.stderr,
                )
    elif not sandbox.bwrap_sizes_tmpfs():
        sandbox.warn_unsized()
    jobs_at_once = min(args.jobs, max(1, len(jobs)))
    shares = sandbox.CpuShares.make() if jobs_at_once > 1 else None
    if shares is not None and shares.kind == "none":
        print(
            "warning: no CPU share per notebook here (no cgroup the grader may use): a notebook "
            "that starts many busy processes slows those graded beside it; --jobs 1 grades "
            "one at a time.",
            file=sys.stderr,
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    start = time.monotonic()
    try:
        grader = Grader(
            limits,
            work,
            out / "logs",
            checks,
            sandboxed,
            own_users,
            lib,
            args.judge_time_limit,
            args.judge_memory_limit,
            shares=shares,
        )
        rows = ordered(rows + grade_all(jobs, grader, jobs_at_once))
    finally:
        if shares is not None:
            shares.close()
    if args.gradescope is not None:
        results = gradescope_results(rows, time.monotonic() - start)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(f"{results['output']}; wrote {out / 'results.json'}")
        return 0
    write_csv(rows, out / "scores.csv")
    write_junit(rows, out / "junit.xml")
    for student in sorted({row.student for row in rows}):
        mine = [row for row in rows if row.student == student]
        print(f"{_display(student)}: {sum(r.passed for r in mine)} of {len(mine)} exercises passed")
    print(f"wrote {out / 'scores.csv'} and {out / 'junit.xml'}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--judge-worker"]:
        sys.exit(judge_worker(sys.argv[2:]))
    sys.exit(main())
