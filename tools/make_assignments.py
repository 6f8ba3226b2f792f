"""Write student copies of the book's chapters: solutions removed, stubs shown, outputs cleared.

    python tools/make_assignments.py --out _build/assignments book

Every notebook in the book folder with cells tagged `solution` or `student` becomes
<out>/<name>.ipynb. nbconvert's TagRemovePreprocessor drops the `solution` cells and
ClearOutputPreprocessor the outputs; StudentCopyPreprocessor below turns sphinx-exercise
fences into plain Markdown and un-hides the stubs (their `remove-cell` tag only serves the book).

It is also a Sphinx extension (_config.yml, local_extensions): every HTML build of the book
publishes the same student copies under <html>/student/, so each chapter can link its
exercises without solutions (a download, and Colab through the deploy workflow's branch).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor, Preprocessor, TagRemovePreprocessor

EXERCISE_TAGS = frozenset({"solution", "student"})
# ```{exercise} Title  or  :::{exercise} Title, up to the matching closing fence.
_EXERCISE = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{exercise\}[ \t]*(?P<title>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_OPTION = re.compile(r"^:(?P<name>[\w-]+):[ \t]*(?P<value>.*)$")
_LABEL_NUMBER = re.compile(r"(\d+)-(\d+)$")

NOTE = (
    "*Student copy.* The worked solutions are removed. Each exercise has a code cell that "
    "raises `NotImplementedError`: replace its body with your answer, run it, then run the "
    "self-check below it. Submit this notebook with your answers in the same names: the "
    "grader runs it alone, top to bottom, in an empty folder without network, so everything "
    "your answers need must be in the notebook."
)


def chapter_of(path: Path) -> str | None:
    """The chapter number from a book file name ("04_stability.ipynb" -> "4"), or None."""
    match = re.match(r"(\d+)_", path.name)
    return str(int(match.group(1))) if match else None


def exercise_to_markdown(source: str) -> str:
    """Replace each sphinx-exercise fence by a bold heading and its text, readable in Jupyter."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        options, lines = {}, match.group("body").splitlines()
        while lines and (option := _OPTION.match(lines[0])):
            options[option.group("name")] = option.group("value")
            lines.pop(0)
        number = _LABEL_NUMBER.search(options.get("label", ""))
        name = f"{number.group(1)}.{number.group(2)}" if number else str(count)
        title = match.group("title").strip()
        heading = f"**Exercise {name}" + (f" — {title}**" if title else "**")
        return heading + "\n\n" + "\n".join(lines).strip() + "\n"

    return _EXERCISE.sub(replace, source)


class StudentCopyPreprocessor(Preprocessor):
    """Plain-Markdown exercises, visible stubs, no execution metadata."""

    def preprocess_cell(
        self, cell: nbformat.NotebookNode, resources: dict, index: int
    ) -> tuple[nbformat.NotebookNode, dict]:
        """Rewrite one cell for the student copy."""
        tags = cell.metadata.get("tags", [])
        if "student" in tags:
            cell.metadata["tags"] = [tag for tag in tags if tag != "remove-cell"]
        if cell.cell_type == "markdown":
            cell.source = exercise_to_markdown(cell.source)
        cell.metadata.pop("execution", None)
        return cell, resources


def has_exercises(nb: nbformat.NotebookNode) -> bool:
    """True when some cell carries a solution or student tag."""
    return any(EXERCISE_TAGS & set(cell.metadata.get("tags", [])) for cell in nb.cells)


def student_copy(nb: nbformat.NotebookNode, chapter: str | None) -> nbformat.NotebookNode:
    """The student copy of one book notebook (the input is not modified)."""
    nb = nbformat.from_dict(nb)
    resources: dict = {}
    for preprocessor in (
        TagRemovePreprocessor(remove_cell_tags={"solution"}, enabled=True),
        ClearOutputPreprocessor(),
        StudentCopyPreprocessor(),
    ):
        nb, resources = preprocessor.preprocess(nb, resources)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(NOTE))
    # The grader reads the chapter from here, so students may rename the file.
    nb.metadata["gradclinic"] = {"chapter": chapter}
    return nb


def make_assignments(book: Path, out: Path) -> list[Path]:
    """Write a student copy of every notebook in book with exercises; return the written paths."""
    if not book.is_dir():
        raise ValueError(f"book must be a folder of notebooks, got {str(book)!r}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(book.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if not has_exercises(nb):
            continue
        target = out / path.name
        nbformat.write(student_copy(nb, chapter_of(path)), target)
        written.append(target)
    return written


STUDENT_FOLDER = "student"


def publish_student_copies(app, exception: Exception | None) -> None:
    """Sphinx build-finished hook: write the student copies into the HTML output's student/."""
    if exception is not None or app.builder.name != "html":
        return
    make_assignments(Path(app.srcdir) / "book", Path(app.outdir) / STUDENT_FOLDER)


def setup(app) -> dict[str, bool]:
    """Register the hook that publishes the student copies with the site."""
    app.connect("build-finished", publish_student_copies)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    """Command line: make_assignments.py --out DIR BOOK_DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("book", type=Path, help="folder with the book's notebooks")
    parser.add_argument("--out", type=Path, required=True, help="folder for the student copies")
    args = parser.parse_args(argv)
    written = make_assignments(args.book, args.out)
    for path in written:
        print(path)
    if not written:
        print(f"no notebook in {args.book} has solution or student cells", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
