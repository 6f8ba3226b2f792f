"""Run tools/grade.py as an instructor would, and read the scores.csv it writes."""

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_grader(
    submissions: Path, out: Path, *options: str, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Grade a folder of submissions into `out` with the given grade.py options."""
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "grade.py"),
            "--out",
            str(out),
            *options,
            str(submissions),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def require_bubblewrap() -> None:
    """Skip (or fail, with GRADCLINIC_REQUIRE_SANDBOX) a test whose saboteurs need bubblewrap."""
    import pytest

    sys.path.insert(0, str(ROOT / "tools"))
    import sandbox

    if not sandbox.bwrap_works():
        if os.environ.get("GRADCLINIC_REQUIRE_SANDBOX"):
            pytest.fail("bubblewrap is required (GRADCLINIC_REQUIRE_SANDBOX) but not usable")
        pytest.skip("bubblewrap (bwrap) is not usable here: apt-get install bubblewrap")


def read_scores(out: Path) -> list[dict[str, str]]:
    """The rows of out/scores.csv."""
    with (out / "scores.csv").open() as handle:
        return list(csv.DictReader(handle))


# Chapter 9's private check files: the probes (copied into each sandbox) and the judges with
# their inputs (never in a sandbox). The grader draws x for each notebook.
PROBES = """\
import numpy as np
from gradclinic.probes._core import probe, require_callable


@probe("9.1", answer="double")
def _probe_double(answer, inputs):
    fn = require_callable(answer, "double(x)")
    return {"values": np.array([fn(x) for x in inputs["x"].tolist()], dtype=float)}


@probe("9.2", answer="word")
def _probe_word(answer, inputs):
    return {"word": str(answer)}
"""
CHECKS = """\
import numpy as np
from gradclinic.checks._core import CheckFailed, exercise


def _inputs_double(rng):
    return {"x": np.array([3.0, -1.5] if rng is None else np.round(rng.uniform(-99, 99, 2), 2))}


@exercise("9.1", inputs=_inputs_double)
def ex9_1(evidence, inputs):
    x = inputs["x"]
    got = np.asarray(evidence["values"], dtype=float)
    if got.shape != x.shape or not np.allclose(got, 2 * x):
        raise CheckFailed(f"x = {x[0]:g} and {x[1]:g}: expected twice x, got {got}")
    return "doubles."


@exercise("9.2")
def ex9_2(evidence, inputs):
    if evidence["word"] != "gradient":
        raise CheckFailed(f"expected the chapter's word, got {evidence['word']!r}")
    return "the word."
"""
