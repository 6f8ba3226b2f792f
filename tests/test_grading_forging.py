"""Forgers graded together with an honest classmate: evidence made without a working answer fails.

Chapter 98 exists only here, as a private pair of check files: the probes (the only half a
sandbox gets) and the judges with their inputs and a hidden reference (never in a sandbox).
The grader draws each notebook's inputs outside the sandbox, so evidence written before its
cell, or by a replaced collector without a working answer, scores nothing; no judge or
reference, the book's or a private one, can be read from inside.
"""

import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from _checks import write_check_pair
from gradclinic.checks._core import NOT_THIS_RUN

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import grade  # noqa: E402
from _grading import read_scores, require_bubblewrap, run_grader  # noqa: E402

PROBES = """\
import numpy as np
from gradclinic.probes._core import probe, require_callable


@probe("98.1", answer="double")
def _probe_double(answer, inputs):
    fn = require_callable(answer, "double(x)")
    return {"values": np.array([fn(x) for x in inputs["x"].tolist()], dtype=float)}


probe("98.2", answer="word")(lambda answer, inputs: {"word": str(answer)})
"""
# The judges' file holds what no submission may see: MARKER stands for a hidden reference.
MARKER = "HIDDEN-REFERENCE-7c1e5"
CHECKS = f"""\
import numpy as np
from gradclinic.checks._core import CheckFailed, exercise

# {MARKER}
_SECRET_WORD = "gradient"


def _inputs_double(rng):
    return {{"x": np.array([3.0, -1.5] if rng is None else np.round(rng.uniform(-99, 99, 2), 2))}}


@exercise("98.1", inputs=_inputs_double)
def ex98_1(evidence, inputs):
    got = np.asarray(evidence["values"], dtype=float)
    if got.shape != (2,) or not np.allclose(got, 2 * inputs["x"]):
        raise CheckFailed(f"expected twice x, got {{got}}")
    return "doubles."


@exercise("98.2")
def ex98_2(evidence, inputs):
    if evidence["word"] != _SECRET_WORD:
        raise CheckFailed("not the chapter's word")
    return "the word."
"""
DOUBLE = "def double(x):\n    return 2 * x"
WORD = "word = 'gradient'"
TIME_LIMIT = 120  # generous: the shared test machine may be busy, and some import TensorFlow
KEYS = ("98.1", "98.2")
# What a saboteur prints where the instructor reads it (the log), not only in its notebook.
# (ipykernel copies what reaches the kernel's own stdout to the log, from a thread of its own.)
SAY = """\
import os
import time


def say(*parts):
    os.write(1, (" ".join(map(str, parts)) + "\\n").encode())
    time.sleep(1)
"""
# Evidence of 98.1 as the self-check records it (x = 3 and -1.5): right-looking, and stale.
STALE = "[6.0, -3.0]"


def _notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={"gradclinic": {"chapter": "98"}})
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(cell)) for cell in cells]
    return nb


def _class(base: Path, checks: Path) -> dict[str, nbformat.NotebookNode]:
    return {
        "ada": _notebook(DOUBLE, WORD),
        # (a) Its own evidence file, digests and all, as the self-check would record it; then
        # the kernel stops before the grader's cell.
        "forger": _notebook(
            f"""
            import json, os
            from gradclinic.probes._core import INPUTS_KEY, encode_evidence, read_inputs
            own = encode_evidence({{"98.1": {{"x": [3.0, -1.5]}}, "98.2": {{}}}})
            digests = read_inputs(own)[1]
            with open("evidence.json", "w") as f:
                f.write(encode_evidence({{
                    "98.1": {{"values": {STALE}, INPUTS_KEY: digests["98.1"]}},
                    "98.2": {{"word": "gradient", INPUTS_KEY: digests["98.2"]}},
                }}))
            os._exit(0)
            """
        ),
        # (a) Reads this run's inputs from the grader's cell in its own notebook file, writes
        # evidence under their digests, stale values included; then stops.
        "reader": _notebook(
            SAY,
            f"""
            import ast, json, os, re
            from gradclinic.probes._core import INPUTS_KEY, encode_evidence, read_inputs
            source = "".join(json.load(open("submission.ipynb"))["cells"][-1]["source"])
            text = ast.literal_eval(re.search(r"_grader_inputs = (.*)", source).group(1))
            inputs, digests = read_inputs(text)
            say("read the run's inputs:", inputs["98.1"]["x"].tolist())
            with open("evidence.json", "w") as f:
                f.write(encode_evidence({{
                    "98.1": {{"values": {STALE}, INPUTS_KEY: digests["98.1"]}},
                    "98.2": {{"word": "a guess", INPUTS_KEY: digests["98.2"]}},
                }}))
            os._exit(0)
            """,
        ),
        # (b) Replaces the probes' collector: stale values under this run's digests.
        "collector": _notebook(
            f"""
            import gradclinic.probes._core as core
            def forged(chapter, namespace, inputs):
                digests = core.read_inputs(inputs)[1]
                return {{"98.1": {{"values": {STALE}, core.INPUTS_KEY: digests["98.1"]}}}}
            core.collect_chapter = forged
            """
        ),
        # (b) Monkeypatches every probe to report the stale values, whatever the answer.
        "prober": _notebook(
            f"""
            import numpy as np
            import gradclinic.probes._core as core
            double = word = "no answer"
            core.Probe.collect = lambda self, answer, inputs, digest: {{
                "values": np.array({STALE}), core.INPUTS_KEY: digest
            }}
            """
        ),
        # (c) The book's judges and references: importable, or readable where they live.
        "importer": _notebook(
            SAY,
            """
            import importlib.util, os, sys
            attempts = {
                "from gradclinic.checks.ch3": (
                    "from gradclinic.checks.ch3 import smooth_step_reference as found"
                ),
                "gradclinic.checks.ch3's attribute": (
                    "import gradclinic.checks.ch3 as c; found = c.smooth_step_reference"
                ),
                "a judge's own function": (
                    "from gradclinic import checks; found = checks.ex3_2.judge"
                ),
                "gradclinic.checks.registry": (
                    "from gradclinic.checks import registry; found = registry()"
                ),
            }
            for what, code in attempts.items():
                try:
                    exec(code)
                    say("LEAKED:", what)
                except Exception as error:
                    say("refused:", what, type(error).__name__)
            """,
            f"""
            # The book's source where the grader keeps it, and anywhere on the module path.
            places = [{str(ROOT / "code")!r}, *sys.path]
            for place in places:
                path = os.path.join(place, "gradclinic", "checks", "ch3.py")
                try:
                    text = open(path).read()
                except OSError:
                    continue
                if "smooth_step_reference" in text:
                    say("LEAKED: the source of", path)
            """,
            """
            import contextlib, io
            from gradclinic import checks as check
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                check.ex3_2(lambda x: x)  # a self-check in the notebook: off while grading
            say(printed.getvalue())
            """,
        ),
        # (d) Looks for the private judges' file: where the instructor keeps it, and anywhere.
        "searcher": _notebook(
            SAY,
            f"""
            import os
            found = []
            for place in [{str(checks)!r}, {str(checks.parent)!r}]:
                if os.path.exists(place):
                    found.append(place)
            for top, dirs, files in os.walk("/"):
                dirs[:] = [
                    d for d in dirs
                    if os.path.join(top, d) not in ("/proc", "/sys", "/dev", "/usr")
                    and d != "site-packages"
                ]
                for name in files:
                    path = os.path.join(top, name)
                    if name.endswith(".py") and os.path.getsize(path) < 100_000:
                        try:
                            if "_SECRET_WORD" in open(path, errors="replace").read():
                                found.append(path)
                        except OSError:
                            pass
            for path in found:
                say("FOUND", path)
                if os.path.isfile(path):
                    say(open(path).read())
            say("searched", len(found))
            word = "not found"
            """,
        ),
        # (e) Answers everything, then its kernel dies before the grader's cell.
        "dier": _notebook(DOUBLE, WORD, "import os\nos._exit(1)"),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_bubblewrap()
    base = tmp_path_factory.mktemp("forgers")
    (base / "work").mkdir()
    (base / "private").mkdir()
    checks = write_check_pair(base / "private", "checks98", PROBES, CHECKS)
    notebooks = _class(base, checks)
    for student, nb in notebooks.items():
        (base / "in" / student).mkdir(parents=True)
        nbformat.write(nb, base / "in" / student / "98_test.ipynb")
    run = run_grader(
        base / "in",
        base / "out",
        *("--checks", str(checks), "--chapters", "98", "--jobs", "2"),
        *("--time-limit", str(TIME_LIMIT), "--work", str(base / "work"), "--sandbox", "bwrap"),
        timeout=TIME_LIMIT * len(notebooks),
    )
    rows = read_scores(base / "out") if (base / "out" / "scores.csv").exists() else []
    logs = {
        student: (base / "out" / "logs" / f"{grade._file_name(student)}-chapter98.log").read_text(
            errors="replace"
        )
        for student in notebooks
    }
    return {
        "run": run,
        "rows": {(r["student"], r["exercise"]): r for r in rows},
        "students": list(notebooks),
        "logs": logs,
    }


def _passed(graded: dict, student: str) -> dict[str, bool]:
    return {key: graded["rows"][(student, key)]["passed"] == "1" for key in KEYS}


def _message(graded: dict, student: str, key: str) -> str:
    return graded["rows"][(student, key)]["message"]


def test_every_student_is_reported_the_honest_one_in_full_and_no_forger_scores(
    graded: dict,
) -> None:
    assert graded["run"].returncode == 0, graded["run"].stderr
    progress = [line for line in graded["run"].stdout.splitlines() if line.startswith("[")]
    assert len(progress) == len(graded["students"])
    assert _passed(graded, "ada") == dict.fromkeys(KEYS, True)
    for student in graded["students"]:
        total = graded["rows"][(student, "total")]
        assert total["passed"] == ("2" if student == "ada" else "0"), student


def test_evidence_written_before_the_graders_cell_is_not_this_runs(graded: dict) -> None:
    # (a) The self-check's digests: the run's inputs did not exist when they were written.
    for key in KEYS:
        assert _message(graded, "forger", key) == NOT_THIS_RUN
    # (a) Even the run's own inputs, read early from the notebook file, give only their
    # digests: the values still had to come from a working answer.
    assert "read the run's inputs:" in graded["logs"]["reader"]
    assert _message(graded, "reader", "98.1") == "expected twice x, got [ 6. -3.]"
    assert _message(graded, "reader", "98.2") == "not the chapter's word"


def test_a_replaced_collector_or_probe_without_an_answer_scores_nothing(graded: dict) -> None:
    # (b) Under this run's digests, the stale values are judged at this run's inputs.
    for student in ("collector", "prober"):
        assert _message(graded, student, "98.1") == "expected twice x, got [ 6. -3.]", student
    assert _message(graded, "collector", "98.2") == "no evidence was recorded for this exercise"
    assert _message(graded, "prober", "98.2") == (
        "the answer's results have the wrong form (KeyError: 'word')"
    )


def test_no_judge_or_reference_of_the_book_is_importable_or_readable_in_the_sandbox(
    graded: dict,
) -> None:
    # (c)
    log = graded["logs"]["importer"]
    assert "LEAKED" not in log
    assert log.count("refused:") == 4
    assert (
        "Exercise 3.2: self-checks are off while grading; the grader checks your answer "
        "after your last cell." in log
    )
    assert _message(graded, "importer", "98.1") == "expected an object named double, found none"


def test_a_private_check_files_hidden_reference_never_reaches_a_sandbox(graded: dict) -> None:
    # (d) Neither the judges' file nor its folder is there; its probes' copy holds no secret.
    log = graded["logs"]["searcher"]
    assert "searched 0" in log and "FOUND" not in log
    for student, text in graded["logs"].items():
        assert MARKER not in text and "_SECRET_WORD" not in text, student
    assert not any(MARKER in row["message"] for row in graded["rows"].values())
    assert _message(graded, "searcher", "98.2") == "not the chapter's word"


def test_a_kernel_that_dies_before_the_checks_scores_nothing_with_the_reason(
    graded: dict,
) -> None:
    # (e) As the instructors page says: 0 for each exercise without evidence, with a reason.
    for key in KEYS:
        assert _message(graded, "dier", key).startswith(
            "the notebook stopped before the checks could run (its kernel died"
        ), key


def test_the_sandboxs_gradclinic_has_the_probes_and_public_names_but_no_judge(
    tmp_path: Path,
) -> None:
    # What the sandbox imports (also without bubblewrap, first on its module path).
    import subprocess

    from gradclinic.checks._core import Exercise, load_book_chapters

    lib = grade.make_probe_library(tmp_path)
    sources = {path: path.read_text() for path in lib.rglob("*.py")}
    assert sorted(p.name for p in (lib / "gradclinic" / "checks").iterdir()) == sorted(
        ["__init__.py", "_core.py", *(f"ch{n}.py" for n in range(1, 8))]
    )
    assert not any("smooth_step_reference" in text for text in sources.values())
    # Every name the chapters take from gradclinic.checks, but the judges (and the one helper
    # that measures an answer key, chapter 2's measure_gradient).
    public = {
        module.__name__.rsplit(".", 1)[1]: [
            name
            for name in module.__all__
            if not isinstance(getattr(module, name), Exercise) and name != "measure_gradient"
        ]
        for module in load_book_chapters()
    }
    code = textwrap.dedent(
        f"""
        import contextlib, importlib, io
        from gradclinic import checks as check
        assert check.__file__.startswith({str(lib)!r}), check.__file__
        for chapter, names in {public!r}.items():
            module = importlib.import_module("gradclinic.checks." + chapter)
            for name in names:
                getattr(module, name)
                getattr(check, name)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert check.ex4_2(None) is None
        print(printed.getvalue().strip())
        for attempt in ("from gradclinic.checks.ch3 import smooth_step_reference",
                        "from gradclinic.checks import registry",
                        "check.ex3_2.judge"):
            try:
                exec(attempt)
            except (ImportError, AttributeError):
                continue
            raise AssertionError(attempt)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=grade._sandbox_env(str(tmp_path), lib),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == (
        "Exercise 4.2: self-checks are off while grading; the grader checks your answer "
        "after your last cell."
    )
