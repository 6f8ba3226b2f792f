"""`make stats`: each page's reading load and the "Time to learn" it states, from one formula.

For every notebook page of the book it counts the main path's words (markdown outside
exercises, solutions and collapsed blocks; inline code and math count as words), the code
lines a reader sees, and the exercises. The time to learn is

    read and run  = words / WORDS_PER_MINUTE + code lines / CODE_LINES_PER_MINUTE,
                    rounded up to 5 minutes
    exercises     = EXERCISE_MINUTES per exercise

`make stats` writes that time into each page's "**Time to learn**" line and the table
book/_stats_table.md (included by the instructors page); `--check` only compares and exits 1
naming every page whose stated time differs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

WORDS_PER_MINUTE = 100
CODE_LINES_PER_MINUTE = 6
EXERCISE_MINUTES = 25
ROUND_TO = 5

COLLAPSED = {"exercise", "solution", "dropdown", "toggle", "solution-start", "exercise-start"}
FENCE = re.compile(r"^(\s*)(`{3,}|:{3,})\{([\w-]+)\}(.*)$")
TIME_LINE = re.compile(r"^\*\*Time to learn\*\*:.*$", re.M)
HIDDEN_CODE = {"remove-cell", "remove-input", "hide-cell", "hide-input"}
SKIPPED_MARKDOWN = {"remove-cell", "hide-cell", "solution"}


@dataclass(frozen=True)
class PageStats:
    """What a reader meets on one page, and the time the formula gives for it."""

    name: str
    words: int
    code_lines: int
    exercises: int
    answers: tuple[str, ...]
    # Words of each exercise statement, in order.
    statement_words: tuple[int, ...] = ()

    @property
    def read_minutes(self) -> int:
        """Minutes to read the main path and run its visible code, rounded up to 5."""
        raw = self.words / WORDS_PER_MINUTE + self.code_lines / CODE_LINES_PER_MINUTE
        return max(ROUND_TO, ROUND_TO * math.ceil(raw / ROUND_TO))

    @property
    def exercise_minutes(self) -> int:
        """Minutes for the page's exercises."""
        return EXERCISE_MINUTES * self.exercises

    def time_line(self) -> str:
        """The page's "Time to learn" line."""
        line = f"**Time to learn**: {self.read_minutes} minutes to read and run"
        if self.exercises:
            plural = "s" if self.exercises > 1 else ""
            line += (
                f", plus about {self.exercise_minutes} minutes for the "
                f"{self.exercises} exercise{plural}"
            )
        return line + " ({ref}`how this is estimated <time-to-learn>`)"


def count_words(text: str) -> int:
    """Words of markdown prose; inline code and math count, link targets and labels do not."""
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"^\s*\([\w-]+\)=\s*$", " ", text, flags=re.M)
    text = re.sub(r"^\s*:[\w-]+:.*$", " ", text, flags=re.M)
    return len(re.findall(r"\S+", re.sub(r"[#*_>|`]", " ", text)))


def split_markdown(source: str) -> list[tuple[str, str]]:
    """(kind, text) pieces of one markdown cell: main, exercise or collapsed."""
    pieces: list[tuple[str, str]] = []
    stack: list[tuple[str, str]] = []  # (fence, kind)
    buffer: list[str] = []

    def flush(kind: str) -> None:
        pieces.append((kind, "\n".join(buffer)))
        buffer.clear()

    for line in source.splitlines():
        current = stack[-1][1] if stack else "main"
        if stack and re.fullmatch(r"\s*" + re.escape(stack[-1][0]) + r"\s*", line):
            flush(current)
            stack.pop()
            continue
        opening = FENCE.match(line)
        if opening:
            flush(current)
            name = opening.group(3)
            if current != "main":
                kind = current
            elif name in ("exercise", "exercise-start"):
                kind = "exercise"
            elif name in COLLAPSED:
                kind = "collapsed"
            else:
                kind = "main"
            stack.append((opening.group(2), kind))
            continue
        if stack and stack[-1][1] == "main" and re.match(r"^\s*:class:.*\bdropdown\b", line):
            flush("main")
            stack[-1] = (stack[-1][0], "collapsed")
            continue
        buffer.append(line)
    flush(stack[-1][1] if stack else "main")
    return pieces


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def page_stats(path: Path) -> PageStats:
    """Count the main path's words, the visible code lines and the exercises of a notebook."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    words = code_lines = exercises = 0
    answers: list[str] = []
    statements: list[int] = []
    in_solution = False
    for cell in cells:
        source, tags = _source(cell), _tags(cell)
        starts = "{solution-start}" in source
        in_solution = in_solution or starts
        if cell["cell_type"] == "markdown":
            exercises += len(re.findall(r"^\s*(`{3,}|:{3,})\{exercise(-start)?\}", source, re.M))
            if not (in_solution or tags & SKIPPED_MARKDOWN):
                pieces = split_markdown(source)
                words += sum(count_words(t) for kind, t in pieces if kind == "main")
                statements += [
                    count_words(t) for kind, t in pieces if kind == "exercise" and t.strip()
                ]
        elif not (in_solution or tags & (HIDDEN_CODE | {"solution"})):
            code_lines += sum(1 for line in source.splitlines() if line.strip())
            answers += re.findall(r"\bcheck\.ex\d+_\d+\(\s*(\w+)\s*\)", source)
        if "{solution-end}" in source:
            in_solution = False
    return PageStats(path.stem, words, code_lines, exercises, tuple(answers), tuple(statements))


def stated_time_line(path: Path) -> str | None:
    """The "Time to learn" line the page's first cell states, or None."""
    first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
    match = TIME_LINE.search(_source(first))
    return match.group(0) if match else None


def write_time_line(path: Path, line: str) -> bool:
    """Put `line` in place of the page's "Time to learn" line; True if the file changed."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    first = notebook["cells"][0]
    old = _source(first)
    new = TIME_LINE.sub(line, old, count=1)
    if new == old:
        return False
    first["source"] = new.splitlines(keepends=True)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def table(rows: list[PageStats]) -> str:
    """The per-page table for the instructors page, as markdown."""
    lines = [
        "| page | main-path words | visible code lines | exercises | read and run | "
        "exercises' time | answer names |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        names = ", ".join(f"`{n}`" for n in r.answers) or "-"
        lines.append(
            f"| {r.name} | {r.words} | {r.code_lines} | {r.exercises} | {r.read_minutes} min | "
            f"{r.exercise_minutes} min | {names} |"
        )
    return "\n".join(lines) + "\n"


def book_pages(root: Path) -> list[Path]:
    """The notebook pages the table of contents lists, in its order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]
    for part in toc.get("parts") or []:
        files += [entry["file"] for entry in part["chapters"]]
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a mismatch")
    args = parser.parse_args(argv)
    pages = book_pages(args.root)
    rows = [page_stats(p) for p in pages]
    wrong = []
    for path, row in zip(pages, rows, strict=True):
        want, have = row.time_line(), stated_time_line(path)
        if have is None:
            wrong.append(f"{path.name}: no '**Time to learn**:' line in its first cell")
        elif have != want:
            if args.check:
                wrong.append(f"{path.name}: states {have!r}, make stats gives {want!r}")
            else:
                write_time_line(path, want)
    table_path = args.root / "book" / "_stats_table.md"
    if args.check:
        if not table_path.is_file() or table_path.read_text(encoding="utf-8") != table(rows):
            wrong.append(f"{table_path.name} is not what make stats writes")
    else:
        table_path.write_text(table(rows), encoding="utf-8")
    print(table(rows), end="")
    for message in wrong:
        print("error:", message, file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
