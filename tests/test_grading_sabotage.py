"""Saboteurs graded together with an honest classmate: no one stops, copies or garbles the class.

Chapter 99 exists only here (the grader loads it with --checks). Every saboteur scores 0 on
what it did not answer, the honest classmate scores in full, and every student is reported.
"""

import json
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from _checks import scratch_registries, write_check_pair

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import grade  # noqa: E402
import sandbox  # noqa: E402
from _grading import CHECKS as CHAPTER_9_CHECKS  # noqa: E402
from _grading import PROBES as CHAPTER_9_PROBES  # noqa: E402
from _grading import read_scores, require_bubblewrap, run_grader  # noqa: E402


def chapter_9_as_99(source: str) -> str:
    """A chapter-9 check file's source with its exercises renumbered as chapter 99's."""
    return source.replace('"9.', '"99.').replace("def ex9_", "def ex99_")


# Chapter 9's pair (tests/_grading.py) as chapter 99, with a third exercise whose judge
# trusts its input too much, as a real one might: Fraction("1e999999999") expands the
# exponent, one C call that runs for hours.
PROBES = (
    chapter_9_as_99(CHAPTER_9_PROBES)
    + """
probe("99.3", answer="third")(lambda answer, inputs: {"text": str(answer)})
"""
)
CHECKS = (
    chapter_9_as_99(CHAPTER_9_CHECKS).replace(
        "import numpy as np", "from fractions import Fraction\n\nimport numpy as np", 1
    )
    + """

@exercise("99.3")
def ex99_3(evidence, inputs):
    if Fraction(evidence["text"]) != Fraction(1, 3):
        raise CheckFailed("expected one third")
    return "one third."
"""
)

HONEST = ("def double(x):\n    return 2 * x", "word = 'gradient'", "third = '1/3'")
TIME_LIMIT = 90  # generous: the shared test machine may be busy
JUDGE_LIMIT = 100  # longer than TIME_LIMIT: a sleeper's limit must hold while a judge hangs
KEYS = ("99.1", "99.2", "99.3")


def _notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={"gradclinic": {"chapter": "99"}})
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(cell)) for cell in cells]
    return nb


# Evidence of 1.3 MB on disk that NumPy would decode to 4.4 GB: a fixed-width string array
# as wide as its longest element.
BOMB = """
import json, os
strings = ["x" * 2**20] + [""] * 1100
with open("evidence.json", "w") as f:
    json.dump({"99.1": {"values": {"kind": "array", "dtype": "str",
                                   "shape": [len(strings)], "data": strings}}}, f)
os._exit(0)
"""


def _class() -> dict[str, nbformat.NotebookNode]:
    return {
        "ada": _notebook(*HONEST),
        # The evidence file a FIFO: opening it to read would wait for a writer forever.
        # (The sandbox binds the evidence file in, so mkfifo fails there; without it, it works.)
        "fifo": _notebook(
            *HONEST,
            "import os\ntry:\n    os.mkfifo('evidence.json')\nexcept OSError:\n    pass\nos._exit(0)",
        ),
        "bomber": _notebook(BOMB),
        "judgebomb": _notebook("third = '1e999999999'"),
        "sleeper": _notebook("import time\ntime.sleep(10**6)"),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_bubblewrap()
    base = tmp_path_factory.mktemp("saboteurs")
    (base / "work").mkdir()
    checks = write_check_pair(base, "checks99", PROBES, CHECKS)
    notebooks = _class()
    for student, nb in notebooks.items():
        (base / "in" / student).mkdir(parents=True)
        nbformat.write(nb, base / "in" / student / "99_test.ipynb")
    # Submissions that are no notebook at all: a FIFO, a link to a device.
    (base / "in" / "mallory").mkdir()
    os.mkfifo(base / "in" / "mallory" / "99_test.ipynb")
    (base / "in" / "eve").mkdir()
    (base / "in" / "eve" / "99_test.ipynb").symlink_to("/dev/zero")
    # Copying through links: to a classmate's notebook, to a solved copy outside SUBMISSIONS.
    solved = base / "solved.ipynb"
    nbformat.write(_notebook(*HONEST), solved)
    for student, target in (("copier", base / "in" / "ada" / "99_test.ipynb"), ("solver", solved)):
        (base / "in" / student).mkdir()
        (base / "in" / student / "99_test.ipynb").symlink_to(target)
    (base / "in" / "linkdir").symlink_to(base / "in" / "ada")
    # A flat notebook named like a classmate's folder: a name collision, never grace's loss.
    nbformat.write(_notebook("word = 'grace'"), base / "in" / "grace.ipynb")
    (base / "in" / "grace").mkdir()
    nbformat.write(_notebook(*HONEST), base / "in" / "grace" / "99_test.ipynb")
    start = time.monotonic()
    run = run_grader(
        base / "in",
        base / "out",
        *("--checks", str(checks), "--chapters", "99", "--jobs", "2"),
        *("--time-limit", str(TIME_LIMIT), "--judge-time-limit", str(JUDGE_LIMIT)),
        *("--work", str(base / "work"), "--sandbox", "bwrap"),
        timeout=TIME_LIMIT * (len(notebooks) + 2),
    )
    seconds = time.monotonic() - start
    rows = read_scores(base / "out") if (base / "out" / "scores.csv").exists() else []
    return {
        "run": run,
        "seconds": seconds,
        "rows": {(r["student"], r["exercise"]): r for r in rows},
        "students": [*notebooks, "mallory", "eve", "copier", "solver", "grace"],
        "base": base,
    }


def _passed(graded: dict, student: str) -> dict[str, bool]:
    return {key: graded["rows"][(student, key)]["passed"] == "1" for key in KEYS}


def _message(graded: dict, student: str, key: str) -> str:
    return graded["rows"][(student, key)]["message"]


def _progress_seconds(graded: dict, student: str) -> float:
    (line,) = [
        line
        for line in graded["run"].stdout.splitlines()
        if re.match(rf"\[\d+/\d+\] {student} ", line)
    ]
    return float(re.search(r"\((\d+) s\)$", line).group(1))


def test_every_student_is_reported_and_the_honest_one_scores_in_full(graded: dict) -> None:
    assert graded["run"].returncode == 0, graded["run"].stderr
    for student in graded["students"]:
        total = graded["rows"][(student, "total")]
        assert total["message"] == f"{total['passed']} of 3 exercises passed", student
    assert _passed(graded, "ada") == dict.fromkeys(KEYS, True)
    assert _passed(graded, "grace") == dict.fromkeys(KEYS, True)
    for student in graded["students"]:
        if student not in ("ada", "grace"):
            assert graded["rows"][(student, "total")]["passed"] == "0", student


def test_a_fifo_or_oversized_evidence_file_fails_only_its_own_student(graded: dict) -> None:
    # The kernel ended with os._exit; the FIFO it left was refused, not waited on.
    assert _message(graded, "fifo", "99.1").startswith(
        "the notebook stopped before the checks could run"
    )
    assert _message(graded, "bomber", "99.1").startswith(
        "the recorded results for this exercise are too large (1101 values, 4404 MB decoded"
    )
    assert _message(graded, "bomber", "99.2") == "no evidence was recorded for this exercise"


def test_a_hanging_judge_is_stopped_and_holds_no_other_time_limit(graded: dict) -> None:
    for key in KEYS:
        assert _message(graded, "judgebomb", key) == (
            f"the checks could not judge this evidence within {JUDGE_LIMIT} s and 4096 MB "
            "(the judge was stopped)"
        )
        assert _message(graded, "sleeper", key) == (
            f"timed out: the notebook ran longer than {TIME_LIMIT} s"
        )
    # The sleeper's limit held while the judge hung (it once waited for the judge's C call).
    assert _progress_seconds(graded, "sleeper") <= TIME_LIMIT + 5
    # Its own notebook (within TIME_LIMIT), then the judge until it was stopped.
    assert JUDGE_LIMIT <= _progress_seconds(graded, "judgebomb") <= JUDGE_LIMIT + TIME_LIMIT


def test_a_fifo_or_a_link_to_a_device_as_the_notebook_blocks_nothing(graded: dict) -> None:
    for student in ("mallory", "eve"):
        assert _message(graded, student, "99.1") == "no notebook for chapter 99", student


def test_links_are_never_followed_and_a_name_collision_costs_no_one(graded: dict) -> None:
    out = graded["run"].stdout
    for student in ("copier", "solver"):
        assert _message(graded, student, "99.1") == "no notebook for chapter 99", student
        assert f"{student}: not graded: {student}/99_test.ipynb (a symbolic link)" in out
    assert "linkdir: not graded (a symbolic link)" in out
    assert ("linkdir", "total") not in graded["rows"]
    assert (
        "grace.ipynb: not graded (name collision: the folder grace/ holds grace's notebooks)" in out
    )
    assert "mallory: not graded: mallory/99_test.ipynb (a FIFO)" in out


def test_reading_refuses_links_fifos_and_devices_without_opening_them(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "kmsg").symlink_to("/proc/kmsg")  # readable by root; a read would block
    (tmp_path / "zero").symlink_to("/dev/zero")
    for name, kind in (
        ("fifo", "a FIFO"),
        ("kmsg", "a symbolic link"),
        ("zero", "a symbolic link"),
    ):
        start = time.monotonic()
        with pytest.raises(ValueError, match=f"not a regular file \\({kind}\\)"):
            grade.read_regular(tmp_path / name, 100)
        assert time.monotonic() - start < 1
    with pytest.raises(ValueError, match="not a regular file \\(a device\\)"):
        grade.read_regular(Path("/dev/zero"), 100)
    (tmp_path / "big").write_bytes(b"x" * 101)
    with pytest.raises(ValueError, match="larger than"):
        grade.read_regular(tmp_path / "big", 100)
    assert grade.read_regular(tmp_path / "big", 101) == b"x" * 101
    assert grade.read_evidence(tmp_path / "fifo") is None


def test_evidence_is_bounded_once_decoded_before_anything_is_built() -> None:
    def array(dtype: str, data: list) -> dict:
        return {"kind": "array", "dtype": dtype, "shape": [len(data)], "data": data}

    wide = ["x" * 2**20] + [""] * 20  # 84 MB as NumPy's fixed-width strings
    evidence = {
        "99.1": {"values": array("str", wide)},
        "99.2": {"word": {"kind": "str", "value": "gradient"}},
        "99.3": {"values": array("int64", [0] * (grade.EVIDENCE_ELEMENTS + 1))},
        "99.4": {"values": {"kind": "array", "dtype": "int64", "shape": [5], "data": [1]}},
    }
    decoded = grade.decode_bounded(json.dumps(evidence).encode())
    assert decoded["99.1"]["_error"].startswith(
        "the recorded results for this exercise are too large (21 values, 84 MB decoded"
    )
    assert decoded["99.2"] == {"word": "gradient"}
    assert "too large" in decoded["99.3"]["_error"]
    assert decoded["99.4"] == {"_error": "the recorded results for this exercise are malformed"}
    assert grade.decode_bounded(json.dumps({"99.1": {"v": array("str", ["ab", ""])}}).encode())[
        "99.1"
    ]["v"].tolist() == ["ab", ""]


def test_scores_junit_and_logs_survive_hostile_names(tmp_path: Path) -> None:
    formula = '=HYPERLINK("http://evil.example","ok")'
    names = [formula, "+1", "-1", "@sum", "\tx", "\rx", "bell\x07\x1b[31mred", "ada lovelace"]
    rows = [
        grade.Row(name, "99", "99.1", False, "-0.5: \x1b]0;title\x07 wrong\x01") for name in names
    ]
    grade.write_csv(rows, tmp_path / "scores.csv")
    cells = [row for row in read_scores(tmp_path) if row["exercise"] == "99.1"]
    assert sorted(row["student"] for row in cells) == sorted(
        [f"'{formula}", "'+1", "'-1", "'@sum", "'\tx", "x", "bellred", "ada lovelace"]
    )
    assert {row["message"] for row in cells} == {"'-0.5:  wrong"}
    grade.write_junit(rows, tmp_path / "junit.xml")
    suites = grade.ET.parse(tmp_path / "junit.xml").getroot()  # one bad character broke this
    assert len(suites) == len(names)
    assert "\x1b" not in (tmp_path / "junit.xml").read_text()
    assert grade._display("ok\x1b[2J\x1b]0;pwned\x07\u202eend") == "okend"
    assert grade._file_name("ada lovelace") != grade._file_name("ada_lovelace")
    assert grade._file_name("ada lovelace").startswith("ada_lovelace-")


def test_without_bwrap_or_an_unprivileged_user_grading_needs_an_explicit_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scratch_registries(monkeypatch)
    monkeypatch.setattr(sandbox, "bwrap_works", lambda: False)
    monkeypatch.setattr(sandbox, "slot_uid", lambda slot: None)
    checks = write_check_pair(tmp_path, "checks99", PROBES, CHECKS)
    (tmp_path / "in" / "ada").mkdir(parents=True)
    nbformat.write(_notebook(*HONEST), tmp_path / "in" / "ada" / "99_test.ipynb")
    options = ["--out", str(tmp_path / "out"), "--checks", str(checks), "--chapters", "99"]
    assert grade.main([*options, str(tmp_path / "in")]) == 2
    assert "pass --sandbox none to grade anyway" in capsys.readouterr().err
    assert not (tmp_path / "out" / "scores.csv").exists()
