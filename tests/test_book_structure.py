"""What every chapter promises its readers: front page, setup cell, clean executed outputs, exercises."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def setup_cell_source() -> str:
    """The first code cell every chapter starts with; its URL is the book's repository url."""
    url = CONFIG["repository"]["url"]
    return (
        "# On Colab, install the book's module; elsewhere it is already installed.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    repo = "{url}"\n'
        '    %pip install --quiet --no-deps "gradclinic @ git+{repo}@main"\n'
        "\n"
        "import gradclinic\n"
        "\n"
        "gradclinic.set_up(seed=0)"
    )


def toc_files() -> list[str]:
    files = [TOC["root"]]
    for part in TOC.get("parts") or [{"chapters": TOC.get("chapters") or []}]:
        files.extend(entry["file"] for entry in part["chapters"])
    return files


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def source(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def test_there_are_chapters() -> None:
    assert NOTEBOOKS, "book/ holds no notebooks"


def test_toc_lists_existing_pages_only() -> None:
    for name in toc_files():
        matches = [p for p in ROOT.glob(name + ".*") if p.suffix in {".md", ".ipynb"}]
        assert matches, f"_toc.yml lists {name!r}, which has no .md or .ipynb file"


def test_every_notebook_is_in_the_toc() -> None:
    listed = set(toc_files())
    for nb in NOTEBOOKS:
        assert f"book/{nb.stem}" in listed, f"{nb.name} is not in _toc.yml, so the book hides it"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_front_page_and_summary(nb_path: Path) -> None:
    cells = load(nb_path)["cells"]
    front = source(cells[0])
    assert cells[0]["cell_type"] == "markdown" and front.startswith("# "), "starts without a title"
    for part in ("Learning objectives", "Prerequisites", "Time to learn", "Run this chapter"):
        assert part in front, f"{nb_path.name}: front page lacks {part!r}"
    slug = CONFIG["repository"]["url"].removeprefix("https://github.com/")
    page = f"book/{nb_path.name}"
    for link in (
        f"https://mybinder.org/v2/gh/{slug}/main?urlpath=lab/tree/{page}",
        f"https://colab.research.google.com/github/{slug}/blob/main/{page}",
    ):
        assert f"]({link})" in front, f"{nb_path.name}: front page lacks the link {link}"
    headings = [source(c) for c in cells if c["cell_type"] == "markdown"]
    assert any(re.search(r"^## Summary", h, re.M) for h in headings), f"{nb_path.name}: no summary"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_sets_up_colab_and_determinism(nb_path: Path) -> None:
    code = [c for c in load(nb_path)["cells"] if c["cell_type"] == "code"]
    assert source(code[0]).strip() == setup_cell_source(), (
        f"{nb_path.name}: the first code cell must be the standard setup cell "
        "(its URL follows repository.url in _config.yml)"
    )


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_top_to_bottom_once(nb_path: Path) -> None:
    code = [c for c in load(nb_path)["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{nb_path.name}: execution counts {counts} — run it top to bottom in a fresh kernel"
    )
    assert any(c.get("outputs") for c in code), f"{nb_path.name}: no stored outputs"
    timed = [i for i, c in enumerate(code) if "execution" in c.get("metadata", {})]
    assert not timed, f"{nb_path.name}: per-cell timestamps stored (run it with `make execute`)"


MACHINE_SPECIFIC = re.compile(
    r"/work/|/home/|/tmp/|site-packages|\.venv|\d+\.\d+ ?s(ec)?\b elapsed"
)


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_clean(nb_path: Path) -> None:
    for i, cell in enumerate(load(nb_path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                assert "raises-exception" in tags(cell), (
                    f"{nb_path.name} cell {i}: stored traceback in a cell not tagged raises-exception"
                )
            text = out.get("text") or "".join(
                v if isinstance(v, str) else "".join(v)
                for k, v in out.get("data", {}).items()
                if k == "text/plain"
            )
            if isinstance(text, list):
                text = "".join(text)
            match = MACHINE_SPECIFIC.search(text or "")
            assert not match, f"{nb_path.name} cell {i}: machine-specific output {match.group(0)!r}"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_have_stub_solution_and_check(nb_path: Path) -> None:
    cells = load(nb_path)["cells"]
    text = "\n".join(source(c) for c in cells if c["cell_type"] == "markdown")
    labels = re.findall(r"```\{exercise\}[^\n]*\n:label: (\S+)", text)
    if not re.match(r"\d\d_", nb_path.stem):
        pytest.skip("only the numbered chapters have exercises")
    assert len(labels) >= 2, f"{nb_path.name}: fewer than two exercises"
    for label in labels:
        assert re.search(r"```\{solution-start\} " + re.escape(label), text), (
            f"{nb_path.name}: exercise {label} has no solution"
        )
    students = [c for c in cells if "student" in tags(c)]
    assert students, f"{nb_path.name}: no student stub cells"
    for cell in students:
        assert "remove-cell" in tags(cell), f"{nb_path.name}: a student stub is not hidden"
    for cell in cells:
        if "solution" in tags(cell) and cell["cell_type"] == "code":
            assert "student" not in tags(cell)
        if "solution" in tags(cell):
            # JupyterLab (Binder, Colab's download) folds them, as the book does.
            folded = cell["metadata"].get("jupyter", {})
            assert folded.get("source_hidden") is True, (
                f"{nb_path.name}: a solution cell is not folded in JupyterLab "
                "(metadata jupyter.source_hidden)"
            )
    checks = [c for c in cells if c["cell_type"] == "code" and "check.ex" in source(c)]
    assert len(checks) >= 2, f"{nb_path.name}: fewer than two self-check calls"
    for cell in checks:
        outputs = "".join(
            "".join(o.get("data", {}).get("text/plain", "")) + "".join(o.get("text", ""))
            for o in cell.get("outputs", [])
        )
        if "student" not in tags(cell):
            assert ": passed." in outputs, (
                f"{nb_path.name}: a self-check does not pass: {outputs!r}"
            )


PAGES = NOTEBOOKS + sorted(BOOK.glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_math_has_no_doubled_backslash_before_a_command(page: Path) -> None:
    # "\\exp" in a formula renders as a line break followed by the word "exp": an escaping slip.
    if page.suffix == ".ipynb":
        text = "\n".join(source(c) for c in load(page)["cells"] if c["cell_type"] == "markdown")
    else:
        text = page.read_text()
    slip = re.search(r"\\\\[A-Za-z]+", text)
    assert not slip, (
        f"{page.name}: {slip.group(0)!r} in the text; a TeX command takes one backslash"
    )
