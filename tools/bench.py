"""`make bench`: run each chapter in a fresh kernel, time it, and measure the kernel's peak memory.

A floor notebook that only imports TensorFlow and matplotlib runs in the same invocation, so the
budget is relative to this machine: every chapter must take at most 2x the floor's wall time and
peak at most 1000 MB (1 GB). The floor and every chapter run in each of several rounds (3 by
default), and the table compares medians, because one run of either can be off by a third on a
shared machine. Prints a table and writes it (with the date and machine) as markdown to
book/_bench_table.md, which the instructors page includes. Exits 1 naming any chapter over budget.
"""

import argparse
import datetime
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

FLOOR_SOURCE = "import tensorflow as tf\nimport matplotlib.pyplot as plt"
FLOOR_NAME = "floor: import tensorflow, matplotlib"
SAMPLE_SECONDS = 0.05
# The budget per chapter: wall time as a multiple of the floor's, and peak resident memory.
MAX_RATIO = 2.0
MAX_MB = 1000.0
# What `gradclinic.set_up()` sets in every chapter, set for the floor too so both load TensorFlow
# the same way (and its startup log stays out of the table).
KERNEL_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


@dataclass(frozen=True)
class Run:
    """One notebook's measurement."""

    name: str
    seconds: float
    peak_mb: float
    # (seconds, cell index) per code cell, to say where an over-budget chapter spends its time.
    cell_seconds: tuple[tuple[float, int], ...] = ()


def peak_rss_mb(pid: int) -> float | None:
    """Return the process's peak resident memory (Linux VmHWM) in MB, or None off Linux."""
    status = Path(f"/proc/{pid}/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


class PeakSampler:
    """Track a kernel's peak memory: VmHWM on Linux (exact), psutil samples elsewhere."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self, pid: int) -> None:
        """Begin tracking the kernel process `pid`."""
        self.pid = pid
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.record()

    def record(self) -> None:
        """Update the peak from the kernel's current state (no-op once it has exited)."""
        if self.pid is None:
            return
        try:
            exact = peak_rss_mb(self.pid)
            now = exact if exact is not None else psutil.Process(self.pid).memory_info().rss / 2**20
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            return
        self.peak_mb = max(self.peak_mb, now)

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def run_notebook(nb: nbformat.NotebookNode, name: str, cwd: Path, timeout: int) -> Run:
    """Execute a notebook in a fresh kernel; return its wall time and the kernel's peak memory."""
    sampler = PeakSampler()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    cell_started: dict[int, float] = {}
    cell_seconds: list[tuple[float, int]] = []

    def cell_executed(cell: nbformat.NotebookNode, cell_index: int, execute_reply: dict) -> None:
        # Read the peak after every cell, while the kernel is certainly alive.
        sampler.record()
        cell_seconds.append((time.perf_counter() - cell_started[cell_index], cell_index))

    client.on_notebook_start = lambda notebook: sampler.start(client.km.provisioner.pid)
    client.on_cell_start = lambda cell, cell_index: cell_started.update(
        {cell_index: time.perf_counter()}
    )
    client.on_cell_executed = cell_executed
    start = time.perf_counter()
    try:
        client.execute(env=KERNEL_ENV)
    finally:
        sampler.stop()
    seconds = time.perf_counter() - start
    return Run(name, seconds, sampler.peak_mb, tuple(sorted(cell_seconds, reverse=True)))


def median_run(runs: list[Run]) -> Run:
    """Return the run of median wall time (the lower one of an even count), with the highest peak."""
    if not runs:
        raise ValueError("runs must hold at least one Run")
    ordered = sorted(runs, key=lambda run: run.seconds)
    middle = ordered[(len(ordered) - 1) // 2]
    return Run(middle.name, middle.seconds, max(run.peak_mb for run in runs), middle.cell_seconds)


def floor_notebook() -> nbformat.NotebookNode:
    """A notebook that only imports TensorFlow and matplotlib: the cost every chapter pays."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(FLOOR_SOURCE)]
    return nb


def cpu_model() -> str:
    """Return the CPU model name (from /proc/cpuinfo on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def over_budget(run: Run, floor: Run, max_ratio: float, max_mb: float) -> list[str]:
    """Return why a run misses the budget (empty when it fits)."""
    reasons = []
    if run.seconds > max_ratio * floor.seconds:
        reasons.append(f"{run.seconds / floor.seconds:.2f}x floor > {max_ratio:g}x")
    if run.peak_mb > max_mb:
        reasons.append(f"{run.peak_mb:.0f} MB > {max_mb:g} MB")
    return reasons


def table(runs: list[Run], floor: Run, max_ratio: float, max_mb: float) -> str:
    """Return the markdown table: chapter, seconds, x floor, peak MB, budget."""
    lines = [
        "| chapter | seconds | \N{MULTIPLICATION SIGN} floor | peak MB | within budget |",
        "|---|---:|---:|---:|---|",
        f"| {FLOOR_NAME} | {floor.seconds:.1f} | 1.00 | {floor.peak_mb:.0f} | (floor) |",
    ]
    for run in runs:
        reasons = over_budget(run, floor, max_ratio, max_mb)
        verdict = "yes" if not reasons else "**no**: " + "; ".join(reasons)
        lines.append(
            f"| {run.name} | {run.seconds:.1f} | {run.seconds / floor.seconds:.2f} "
            f"| {run.peak_mb:.0f} | {verdict} |"
        )
    return "\n".join(lines)


def report(body: str, max_ratio: float, max_mb: float, rounds: int = 1) -> str:
    """Return the markdown the instructors page includes: when, where, budget, table."""
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    machine = f"{os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}"
    return (
        f"Measured on {today} by `make bench` ({machine}). Each chapter runs top to bottom in a "
        "fresh kernel; the floor is a notebook that only imports TensorFlow and matplotlib. "
        f"{_rounds_sentence(rounds)} Budget: "
        f"≤ {max_ratio:g}\N{MULTIPLICATION SIGN} the floor and ≤ {max_mb:g} MB per chapter.\n\n{body}\n"
    )


def _rounds_sentence(rounds: int) -> str:
    if rounds == 1:
        return "Both ran once; *peak MB* is the kernel's peak resident memory."
    return (
        f"The floor and every chapter ran in each of {rounds} rounds: *seconds* is the median "
        f"of the {rounds} runs and *peak MB* the highest peak resident memory among them."
    )


def notebooks_in(paths: list[Path]) -> list[Path]:
    """Expand folders into their notebooks, sorted; keep files as given."""
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.glob("*.ipynb")) if path.is_dir() else [path])
    if not found:
        raise ValueError(f"paths={[str(p) for p in paths]}: no .ipynb notebook found")
    return found


def main(argv: list[str] | None = None) -> int:
    """Benchmark the notebooks, print and write the table, and return 1 if any is over budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks or folders of notebooks")
    parser.add_argument(
        "--max-ratio", type=float, default=MAX_RATIO, help="budget: x floor seconds"
    )
    parser.add_argument("--max-mb", type=float, default=MAX_MB, help="budget: peak MB")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of the floor and of each chapter (median)"
    )
    parser.add_argument("--table", type=Path, default=Path("book/_bench_table.md"))
    args = parser.parse_args(argv)

    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    notebooks = notebooks_in(args.paths)
    # A first, unreported import warms the disk cache, so the floor is not a cold start.
    run_notebook(floor_notebook(), FLOOR_NAME, notebooks[0].parent, args.timeout)
    floors: list[Run] = []
    chapters: dict[Path, list[Run]] = {path: [] for path in notebooks}
    # Rounds interleave the floor with the chapters, so a slow minute of the machine lands on both.
    for round_number in range(1, args.rounds + 1):
        floor = run_notebook(floor_notebook(), FLOOR_NAME, notebooks[0].parent, args.timeout)
        print(
            f"round {round_number}: floor {floor.seconds:.1f} s, {floor.peak_mb:.0f} MB", flush=True
        )
        floors.append(floor)
        for path in notebooks:
            run = run_notebook(
                nbformat.read(path, as_version=4), path.stem, path.parent, args.timeout
            )
            print(
                f"round {round_number}: {run.name} {run.seconds:.1f} s, {run.peak_mb:.0f} MB",
                flush=True,
            )
            chapters[path].append(run)
    floor = median_run(floors)
    runs = [median_run(chapter_runs) for chapter_runs in chapters.values()]

    body = table(runs, floor, args.max_ratio, args.max_mb)
    print(f"\n{body}\n")
    args.table.write_text(report(body, args.max_ratio, args.max_mb, args.rounds), encoding="utf-8")
    print(f"wrote {args.table}")
    missed = {r.name: over_budget(r, floor, args.max_ratio, args.max_mb) for r in runs}
    missed = {name: reasons for name, reasons in missed.items() if reasons}
    for run in runs:
        if run.name in missed:
            slowest = ", ".join(f"cell {i}: {t:.1f} s" for t, i in run.cell_seconds[:3])
            print(f"OVER BUDGET: {run.name}: {'; '.join(missed[run.name])} (slowest: {slowest})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
