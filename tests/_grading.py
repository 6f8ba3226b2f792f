"""Run tools/grade.py as an instructor would, and read the scores.csv it writes."""

import csv
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


def read_scores(out: Path) -> list[dict[str, str]]:
    """The rows of out/scores.csv."""
    with (out / "scores.csv").open() as handle:
        return list(csv.DictReader(handle))
