"""Measure grading throughput: submissions per minute, one at a time and in parallel.

    python tools/bench_grading.py [--notebook book/04_stability_exercises.ipynb] [--copies 6]

Grades `copies` identical submissions (the chapter as the book has it: every cell, every
worked solution) with tools/grade.py, once per --jobs value, and prints a Markdown table.
The figure depends on the machine and on what else it runs; the table says how many cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def grade_seconds(submissions: Path, out: Path, jobs: int, chapter: str) -> float:
    """Wall-clock seconds tools/grade.py takes on submissions with `jobs` parallel notebooks."""
    start = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "grade.py"),
            *("--out", str(out), "--jobs", str(jobs), "--chapters", chapter),
            str(submissions),
        ],
        check=True,
        capture_output=True,
    )
    return time.monotonic() - start


def table(copies: int, runs: list[tuple[int, float]]) -> str:
    """Markdown: jobs, seconds, submissions per minute."""
    lines = [
        f"| parallel notebooks (JOBS) | {copies} submissions in | submissions per minute |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {jobs} | {seconds:.0f} s | {60 * copies / seconds:.1f} |" for jobs, seconds in runs
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: bench_grading.py [--notebook NB] [--copies N] [--jobs 1 2]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--notebook", type=Path, default=ROOT / "book" / "04_stability_exercises.ipynb"
    )
    parser.add_argument("--copies", type=int, default=6, help="submissions per run")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if args.copies < 1 or min(args.jobs) < 1:
        parser.error("--copies and --jobs must be >= 1")
    chapter = str(int(args.notebook.name.split("_", 1)[0]))
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        submissions = Path(tmp) / "submissions"
        for n in range(args.copies):
            (submissions / f"student{n:02d}").mkdir(parents=True)
            shutil.copy(args.notebook, submissions / f"student{n:02d}" / args.notebook.name)
        for jobs in args.jobs:
            runs.append((jobs, grade_seconds(submissions, Path(tmp) / f"out{jobs}", jobs, chapter)))
            print(f"JOBS={jobs}: {runs[-1][1]:.0f} s", file=sys.stderr)
    print(f"{os.cpu_count()} cores, {args.copies} copies of {args.notebook.name}:\n")
    print(table(args.copies, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
