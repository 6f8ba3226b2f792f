"""The grader against cheating and sabotage: a class of tiny notebooks on a test-only chapter.

Chapter 9 below exists only here (the grader loads it with --checks); its two exercises are
cheap, so each notebook costs a kernel start and the whole class runs in one grading pass.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
from _checks import scratch_registries, write_check_pair
from gradclinic.checks._core import NOT_THIS_RUN

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import grade  # noqa: E402
import make_autograder  # noqa: E402
import sandbox  # noqa: E402
from _grading import CHECKS, PROBES, read_scores, require_bubblewrap, run_grader  # noqa: E402

DOUBLE = "def double(x):\n    return 2 * x"
WORD = "word = 'gradient'"
TIME_LIMIT = 40


def _notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={"gradclinic": {"chapter": "9"}})
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(cell)) for cell in cells]
    return nb


def _class(base: Path) -> dict[str, nbformat.NotebookNode]:
    out, canary = base / "out", base / "canary.txt"
    honest = base / "in" / "ada" / "09_test.ipynb"
    return {
        "ada": _notebook(DOUBLE, WORD),
        "bob": _notebook(WORD, DOUBLE),
        "wrong": _notebook("def double(x):\n    return x + 3", "word = 'grad'"),
        # Answers 9.2, then makes the probes' collector report 9.1 as the self-check saw it,
        # under the digest of this run's inputs (all it lacks is a working double).
        "patcher": _notebook(
            WORD,
            """
            import gradclinic.probes._core as core
            collect = core.collect_chapter
            def forged(chapter, namespace, inputs):
                evidence = collect(chapter, namespace, inputs)
                digest = core.read_inputs(inputs)[1]["9.1"]
                evidence["9.1"] = {"values": [6.0, -3.0], core.INPUTS_KEY: digest}
                return evidence
            core.collect_chapter = forged
            """,
        ),
        # Answers 9.2; writes a verdict-shaped evidence file, then stops the run before the
        # grader's cell (whose evidence the forged file then stands for).
        "forger": _notebook(
            WORD,
            """
            import json, os
            with open("evidence.json", "w") as f:
                json.dump({
                    "9.1": {"passed": {"kind": "bool", "value": True},
                            "legacy_message": {"kind": "str", "value": "passed"}},
                    "9.2": {"word": {"kind": "str", "value": "gradient"}},
                }, f)
            os._exit(0)
            """,
        ),
        # What the old grader parsed from stdout, and a verdict for every exercise.
        "printer": _notebook(
            """
            print('GRADCLINIC-RESULTS [["9.1", true, "ok"], ["9.2", true, "ok"]]')
            print("Exercise 9.1: passed. Exercise 9.2: passed.")
            """
        ),
        # Points the evidence file at a neighbour's.
        "linker": _notebook(
            f"""
            import os
            os.symlink({str(base / "work")!r}, "evidence.json")
            """
        ),
        "killer": _notebook(
            WORD,
            """
            import os, signal
            os.kill(os.getppid(), signal.SIGKILL)
            os.killpg(0, signal.SIGKILL)
            os.kill(-1, signal.SIGKILL)
            """,
        ),
        # Answers 9.2, then tries to overwrite a neighbour, the score table and a file it knows.
        "vandal": _notebook(
            WORD,
            f"""
            import glob, os
            for path in [{str(honest)!r}, {str(out / "scores.csv")!r}, {str(canary)!r},
                         *glob.glob({str(base)!r} + "/**/*.ipynb", recursive=True),
                         *glob.glob({str(base)!r} + "/**/evidence.json", recursive=True)]:
                if os.path.abspath(path) == os.path.abspath("evidence.json"):
                    continue
                try:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "w") as f:
                        f.write("student,chapter,exercise,passed,message\\nvandal,9,9.1,1,x\\n")
                except OSError:
                    pass
            """,
        ),
        "deleter": _notebook(
            f"""
            import os, shutil
            for path in [{str(base / "in")!r}, {str(out)!r}, {str(canary)!r}]:
                shutil.rmtree(path, ignore_errors=True)
                try:
                    os.remove(path)
                except OSError:
                    pass
            """
        ),
        # 9.2 is right only if allocating 10 GB was refused (Python allocates it lazily otherwise).
        "hog": _notebook(
            """
            try:
                ballast = bytearray(10 * 2**30)
                word = "allocated"
            except MemoryError:
                word = "gradient"
            """
        ),
        "forker": _notebook(
            """
            import os, time
            while True:
                try:
                    os.fork()
                except OSError:
                    time.sleep(0.5)
            """
        ),
        "sleeper": _notebook(DOUBLE, "import time\ntime.sleep(10**6)"),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_bubblewrap()
    base = tmp_path_factory.mktemp("class")
    (base / "work").mkdir()
    checks = write_check_pair(base, "checks9", PROBES, CHECKS)
    (base / "canary.txt").write_text("keep me")
    notebooks = _class(base)
    for student, nb in notebooks.items():
        (base / "in" / student).mkdir(parents=True)
        nbformat.write(nb, base / "in" / student / "09_test.ipynb")
    before = {p: p.read_bytes() for p in (base / "in").rglob("*.ipynb")}
    run = run_grader(
        base / "in",
        base / "out",
        *("--checks", str(checks), "--chapters", "9", "--jobs", "2"),
        *("--time-limit", str(TIME_LIMIT), "--work", str(base / "work"), "--sandbox", "bwrap"),
        timeout=TIME_LIMIT * len(notebooks),
    )
    rows = read_scores(base / "out")
    return {
        "run": run,
        "rows": {(r["student"], r["exercise"]): r for r in rows},
        "students": list(notebooks),
        "before": before,
        "base": base,
    }


def _passed(graded: dict, student: str) -> dict[str, bool]:
    return {key: graded["rows"][(student, key)]["passed"] == "1" for key in ("9.1", "9.2")}


def test_the_run_finishes_and_reports_every_student(graded: dict) -> None:
    assert graded["run"].returncode == 0, graded["run"].stderr
    progress = [line for line in graded["run"].stdout.splitlines() if line.startswith("[")]
    assert len(progress) == len(graded["students"])
    assert f"[{len(progress)}/{len(progress)}] " in progress[-1]
    for student in graded["students"]:
        total = graded["rows"][(student, "total")]
        assert total["chapter"] == "all"
        assert total["message"] == f"{total['passed']} of 2 exercises passed"


def test_honest_neighbours_score_in_full_and_wrong_answers_score_nothing(graded: dict) -> None:
    assert _passed(graded, "ada") == {"9.1": True, "9.2": True}
    assert _passed(graded, "bob") == {"9.1": True, "9.2": True}
    assert _passed(graded, "wrong") == {"9.1": False, "9.2": False}
    # The grader's own x, drawn for this notebook: not the self-check's 3.0 and -1.5.
    message = graded["rows"][("wrong", "9.1")]["message"]
    x = [
        float(v) for v in re.match(r"x = (\S+) and (\S+): expected twice x, got ", message).groups()
    ]
    assert x != [3.0, -1.5]
    np.testing.assert_allclose(
        [float(v) for v in message.split("got [")[1].rstrip("]").split()], np.add(x, 3), atol=0.01
    )


def test_patching_the_checks_or_forging_evidence_earns_only_what_was_answered(
    graded: dict,
) -> None:
    for cheat in ("patcher", "vandal"):
        assert _passed(graded, cheat) == {"9.1": False, "9.2": True}, cheat
    # Its evidence was written before the grader drew this run's inputs: none of it counts.
    assert _passed(graded, "forger") == {"9.1": False, "9.2": False}
    for key in ("9.1", "9.2"):
        assert graded["rows"][("forger", key)]["message"] == NOT_THIS_RUN
    assert re.fullmatch(
        r"x = \S+ and \S+: expected twice x, got \[ 6\. -3\.\]",
        graded["rows"][("patcher", "9.1")]["message"],
    )
    assert _passed(graded, "printer") == {"9.1": False, "9.2": False}
    # The evidence file is bound into the sandbox: it cannot be replaced by a link.
    assert _passed(graded, "linker") == {"9.1": False, "9.2": False}


def test_memory_is_limited_and_hangs_forks_and_kills_end_with_a_reason(graded: dict) -> None:
    assert _passed(graded, "hog") == {"9.1": False, "9.2": True}
    for student in ("sleeper", "forker"):
        for key in ("9.1", "9.2"):
            row = graded["rows"][(student, key)]
            assert row["passed"] == "0"
            assert row["message"] == f"timed out: the notebook ran longer than {TIME_LIMIT} s"
    assert graded["rows"][("killer", "9.2")]["message"].startswith(
        "the notebook stopped before the checks could run"
    )


def test_no_submission_touches_files_outside_its_folder(graded: dict) -> None:
    base = graded["base"]
    assert (base / "canary.txt").read_text() == "keep me"
    assert {p: p.read_bytes() for p in (base / "in").rglob("*.ipynb")} == graded["before"]
    assert ("vandal", "total") in graded["rows"] and ("deleter", "total") in graded["rows"]
    assert not any(row["student"] not in graded["students"] for row in graded["rows"].values())
    # Every fresh folder was removed; nothing a submission wrote is left behind.
    assert list((base / "work").iterdir()) == []


def _write_class(base: Path, notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    for student, nb in notebooks.items():
        (base / "in" / student).mkdir(parents=True)
        nbformat.write(nb, base / "in" / student / "09_test.ipynb")
    return write_check_pair(base, "checks9", PROBES, CHECKS)


def test_without_bubblewrap_the_grader_warns_and_still_grades_the_class(tmp_path: Path) -> None:
    killer = (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.killpg(0, signal.SIGKILL)"
    )
    notebooks = {
        "ada": _notebook(DOUBLE, WORD),
        "killer": _notebook(WORD, killer),
        "patcher": _class(tmp_path)["patcher"],
    }
    checks = _write_class(tmp_path, notebooks)
    run = run_grader(
        tmp_path / "in",
        tmp_path / "out",
        *("--checks", str(checks), "--chapters", "9", "--jobs", "2"),
        *("--time-limit", str(TIME_LIMIT), "--sandbox", "none"),
        timeout=TIME_LIMIT * 4,
    )
    assert run.returncode == 0, run.stderr
    assert "WARNING: bubblewrap (bwrap) is not usable here" in run.stderr
    # Only file permissions then keep the judges' file from student code: the grader says so.
    assert f"warning: {checks.resolve()} is readable by every user" in run.stderr
    totals = {
        r["student"]: r["passed"] for r in read_scores(tmp_path / "out") if r["chapter"] == "all"
    }
    assert totals == {"ada": "2", "killer": "0", "patcher": "1"}


def test_a_missing_notebook_or_answer_fails_against_the_assignment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch_registries(monkeypatch)  # copies, so that chapter 9 stays out of the other tests
    checks = _write_class(tmp_path, {"ada": _notebook(DOUBLE)})
    (tmp_path / "in" / "grace").mkdir()
    nbformat.write(_notebook(WORD), tmp_path / "in" / "grace" / "notes.ipynb")
    loaded = grade.load_checks([checks])
    assert loaded.files == {"9": [checks.resolve()]} and "4" in loaded.book
    # The kernel loads what the chapter needs: the probes file alone (no TensorFlow), or with
    # the book's probes; only the probes file enters the sandbox's folder, never the judges'.
    folder = tmp_path / "slot"
    folder.mkdir()
    source = loaded.load_source("9", folder, Path("/grading"))
    assert "load_book_probes" not in source and str(checks.parent) not in source
    assert [path.name for path in folder.iterdir()] == ["gradclinic_probes_file_9_0.py"]
    assert (folder / "gradclinic_probes_file_9_0.py").read_text() == PROBES
    assert "/grading/gradclinic_probes_file_9_0.py" in source
    submissions, found, everyone = grade.find_submissions(tmp_path / "in")
    assert found == [] and everyone == {"ada", "grace"}
    jobs, missing, notes = grade.plan(submissions, ["9", "4"], everyone)
    assert [(job.student, job.chapter) for job in jobs] == [("ada", "9"), ("grace", "9")]
    assert {(r.student, r.exercise, r.message) for r in missing} == {
        (student, f"4.{n}", "no notebook for chapter 4")
        for student in ("ada", "grace")
        for n in range(1, 6)
    }
    assert notes == []
    extra = write_check_pair(
        tmp_path,
        "extra4",
        PROBES.replace('"9.1"', '"4.9"').replace('"9.2"', '"9.3"'),
        CHECKS.replace('"9.1"', '"4.9"').replace('"9.2"', '"9.3"'),
    )
    both = grade.load_checks([extra]).load_source("4", folder, Path("/grading"))
    assert "load_book_probes" in both and "gradclinic_probes_file_4_0.py" in both
    # A check file without its probes beside it is refused before anything runs.
    (tmp_path / "lonely.py").write_text(CHECKS)
    with pytest.raises(ValueError, match=r"its probes must be beside it in lonely_probes\.py"):
        grade.load_checks([tmp_path / "lonely.py"])


def test_the_evidence_reader_refuses_links_and_oversized_files(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text(json.dumps({"9.2": {"word": {"kind": "str", "value": "gradient"}}}))
    assert grade.decode_bounded(grade.read_evidence(real)) == {"9.2": {"word": "gradient"}}
    (tmp_path / "link.json").symlink_to(real)
    assert grade.read_evidence(tmp_path / "link.json") is None
    with (tmp_path / "big.json").open("wb") as handle:
        handle.truncate(grade.EVIDENCE_LIMIT + 1)
    assert grade.read_evidence(tmp_path / "big.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError):  # the judge process names it unreadable
        grade.decode_bounded(grade.read_evidence(tmp_path / "bad.json"))


def test_the_sandbox_binds_only_what_it_is_given_read_only(tmp_path: Path) -> None:
    (tmp_path / "submission.ipynb").write_text("{}")
    (tmp_path / "evidence.json").touch()
    command = sandbox.bwrap_command(
        ["python"],
        tmp_path,
        [Path("/opt/env"), Path("/srv/code")],
        uid=sandbox.FIRST_UID + 1,
        limits=sandbox.Limits(folder_mb=32),
        keep=("evidence.json",),
    )
    assert "--unshare-net" in command and "--die-with-parent" in command
    # Of the host, only the file named in keep is writable; the folder itself is RAM-backed.
    binds = [command[i + 1 : i + 3] for i, arg in enumerate(command) if arg == "--bind"]
    assert binds == [[str(tmp_path / "evidence.json"), str(sandbox.INSIDE / "evidence.json")]]
    ro = {command[i + 2] for i, arg in enumerate(command) if arg == "--ro-bind"}
    assert {"/opt/env", "/srv/code", "/usr", "/etc", "/grading/submission.ipynb"} <= ro
    sizes = {command[i + 3]: command[i + 1] for i, arg in enumerate(command) if arg == "--size"}
    assert sizes == {
        "/tmp": str(32 * 2**20),
        str(sandbox.INSIDE): str(32 * 2**20),
        "/dev/shm": str(sandbox.SHM_MB * 2**20),
    }
    assert command[command.index("--remount-ro") + 1] == "/dev"
    assert command[command.index("setpriv") + 1 :] == [
        f"--reuid={sandbox.FIRST_UID + 1}",
        f"--regid={sandbox.FIRST_UID + 1}",
        "--clear-groups",
        "--",
        "python",
    ]
    with pytest.raises(ValueError, match="memory_mb must be > 0"):
        sandbox.Limits(memory_mb=0)


def test_the_gradescope_autograder_grades_a_right_and_a_wrong_submission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # make_autograder loads the check files: into copies, so chapter 9 stays out of the other tests.
    scratch_registries(monkeypatch)
    checks = write_check_pair(tmp_path, "checks9", PROBES, CHECKS)
    archive = make_autograder.make_autograder(
        tmp_path / "autograder.zip", chapters=["9"], checks=[checks], time_limit=TIME_LIMIT
    )
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
    assert {"setup.sh", "run_autograder", "checks/checks9.py", "checks/checks9_probes.py"} <= names
    results = {}
    for student, nb in (("right", _notebook(DOUBLE, WORD)), ("wrong", _notebook(WORD))):
        root = tmp_path / student
        shutil.unpack_archive(archive, root / "source")
        (root / "submission").mkdir()
        nbformat.write(nb, root / "submission" / "whatever_name.ipynb")
        run = subprocess.run(
            ["bash", str(root / "source" / "run_autograder")],
            env={
                **os.environ,
                "AUTOGRADER_ROOT": str(root),
                "GRADCLINIC_PYTHON": sys.executable,
            },
            capture_output=True,
            text=True,
            cwd=root,
            timeout=TIME_LIMIT * 3,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        results[student] = json.loads((root / "results" / "results.json").read_text())
    for student, result in results.items():
        for test in result["tests"]:
            assert set(test) >= {"name", "score", "max_score", "output"}, student
            assert isinstance(test["score"], float) and test["max_score"] == 1.0
        assert result["score"] == sum(t["score"] for t in result["tests"])
    assert [(t["name"], t["score"]) for t in results["right"]["tests"]] == [
        ("Exercise 9.1", 1.0),
        ("Exercise 9.2", 1.0),
    ]
    assert [(t["name"], t["score"], t["output"]) for t in results["wrong"]["tests"]] == [
        ("Exercise 9.1", 0.0, "expected an object named double, found none"),
        ("Exercise 9.2", 1.0, "the word."),
    ]


def test_the_autograder_refuses_unknown_chapters_and_clashing_check_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch_registries(monkeypatch)
    with pytest.raises(ValueError, match=r"chapter must be one with exercises \(1, .*; got '44'"):
        make_autograder.make_autograder(tmp_path / "a.zip", chapters=["44"])
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    clashing = [tmp_path / "one" / "checks.py", tmp_path / "two" / "checks.py"]
    for path in clashing:
        path.write_text("")
    with pytest.raises(ValueError, match="--checks files must have different names"):
        make_autograder.make_autograder(tmp_path / "b.zip", checks=clashing)
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "b.zip").exists()
