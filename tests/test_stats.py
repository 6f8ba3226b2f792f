"""`make stats` and what every page promises a reader: its stated time, a short main path,
short exercise statements, lines that fit the page, and code shown highlighted."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import stats  # noqa: E402

PAGES = stats.book_pages(ROOT)
MAX_MAIN_WORDS, MAX_STATEMENT_WORDS, MAX_LINE = 2000, 120, 80


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def text(value: str | list[str]) -> str:
    return "".join(value) if isinstance(value, list) else value


def test_the_formula_counts_main_path_words_only() -> None:
    source = (
        "Two words.\n\n```{exercise} Title\n:label: ex-9-1\nfive words in the statement\n```\n"
        "```{admonition} Going deeper: more\n:class: dropdown\nthese four are hidden\n```\n"
        "`tf.where` and $x^2$ count.\n"
    )
    kinds = [(kind, stats.count_words(t)) for kind, t in stats.split_markdown(source)]
    # "Two words." and "`tf.where` and $x^2$ count.": code and math are one word each.
    assert sum(n for kind, n in kinds if kind == "main") == 2 + 4
    assert sum(n for kind, n in kinds if kind == "exercise") == 5
    assert sum(n for kind, n in kinds if kind == "collapsed") == 4


def test_the_time_line_follows_the_formula() -> None:
    page = stats.PageStats("p", words=1000, code_lines=60, exercises=2, answers=("a", "b"))
    # 1000 / 100 + 60 / 6 = 20 minutes; two exercises of 25 minutes.
    assert page.read_minutes == 20 and page.exercise_minutes == 50
    assert page.time_line().startswith(
        "**Time to learn**: 20 minutes to read and run, plus about 50 minutes for the 2 exercises"
    )
    assert stats.PageStats("q", 1, 0, 0, ()).read_minutes == stats.ROUND_TO


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_each_page_states_the_time_make_stats_gives(path: Path) -> None:
    want = stats.page_stats(path).time_line()
    assert stats.stated_time_line(path) == want, (
        f"{path.name} states {stats.stated_time_line(path)!r}; run `make stats`"
    )


def test_the_instructors_table_is_what_make_stats_writes() -> None:
    table = (ROOT / "book" / "_stats_table.md").read_text(encoding="utf-8")
    assert table == stats.table([stats.page_stats(p) for p in PAGES]), "run `make stats`"
    instructors = (ROOT / "book" / "instructors.md").read_text(encoding="utf-8")
    assert "_stats_table.md" in instructors
    for constant in ("WORDS_PER_MINUTE", "CODE_LINES_PER_MINUTE", "EXERCISE_MINUTES"):
        assert str(getattr(stats, constant)) in instructors, f"the page must state {constant}"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_main_path_and_exercise_statements_are_short(path: Path) -> None:
    page = stats.page_stats(path)
    assert page.words <= MAX_MAIN_WORDS, f"{path.name}: main path of {page.words} words"
    for number, words in enumerate(page.statement_words, start=1):
        assert words <= MAX_STATEMENT_WORDS, f"{path.name}: exercise {number} has {words} words"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_shown_code_and_text_outputs_fit_80_characters(path: Path) -> None:
    long_lines = []
    for index, cell in enumerate(cells(path)):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] != "code" or "remove-cell" in tags:
            continue
        shown = [] if tags & {"remove-input", "hide-input"} else text(cell["source"]).splitlines()
        for output in [] if tags & {"remove-output", "hide-output"} else cell.get("outputs", []):
            data = output.get("data", {})
            # Figures and HTML scale with the page, but highlighted source (IPython.display.Code,
            # which also offers text/latex) keeps its lines: its plain text is checked.
            highlighted = "text/html" in data and "text/latex" in data
            if ("text/html" in data or "image/png" in data) and not highlighted:
                continue
            shown += text(output.get("text") or data.get("text/plain", "")).splitlines()
        long_lines += [f"cell {index}: {line[:60]}..." for line in shown if len(line) > MAX_LINE]
    assert not long_lines, f"{path.name}: lines over {MAX_LINE} characters:\n" + "\n".join(
        long_lines[:10]
    )


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_source_is_shown_highlighted_not_printed(path: Path) -> None:
    for index, cell in enumerate(cells(path)):
        if cell["cell_type"] == "code":
            assert not re.search(r"print\(\s*inspect\.getsource", text(cell["source"])), (
                f"{path.name} cell {index} prints source as plain text; use IPython.display.Code"
            )


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_summary_has_at_most_five_short_bullets(path: Path) -> None:
    summaries = [
        text(c["source"]) for c in cells(path) if re.search(r"^## Summary", text(c["source"]), re.M)
    ]
    assert summaries, f"{path.name} has no summary"
    body = summaries[-1].split("## Summary", 1)[1].split("\n## ", 1)[0]
    bullets = re.split(r"^- ", body, flags=re.M)[1:]
    assert 1 <= len(bullets) <= 5, f"{path.name}: {len(bullets)} summary bullets"
    for bullet in bullets:
        words = stats.count_words(bullet)
        assert words < 25, f"{path.name}: a summary bullet of {words} words: {bullet[:60]}..."
