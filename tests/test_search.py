"""The start page in a browser: the book's search finds it first for the texts readers paste.

Uses tests/test_browser.py's Chromium and local server (skipped or failed as there).
"""

from urllib.parse import quote

import pytest
from test_browser import TIMEOUT_MS, browser, site  # noqa: F401  (pytest fixtures)

# What people type or paste when a gradient goes missing or NaN (issue 19's symptoms).
SYMPTOMS = [
    "No gradients provided for any variable",
    "Gradients do not exist for variables when minimizing the loss",
    "tape.gradient returns None",
    "loss is NaN",
    "weight turns NaN",
    "weight never moves",
    "zero gradient",
    "training crawls",
    "NaN only under XLA",
    "NaN on a GPU",
    "NaN float16",
    "mixed precision NaN",
    "tf.where NaN",
    "jnp.where NaN",
]


def first_results(browser, site, query: str) -> list[str]:  # noqa: F811
    page = browser.new_page()
    try:
        page.goto(f"{site.url}/search.html?q={quote(query)}", timeout=TIMEOUT_MS)
        page.wait_for_selector("#search-results p.search-summary", timeout=TIMEOUT_MS)
        return page.eval_on_selector_all(
            "#search-results ul.search li a", "links => links.map(a => a.getAttribute('href'))"
        )
    finally:
        page.close()


@pytest.mark.parametrize("query", SYMPTOMS)
def test_search_lists_the_start_page_first(browser, site, query: str) -> None:  # noqa: F811
    results = first_results(browser, site, query)
    assert results, f"searching {query!r} finds nothing"
    assert results[0].split("#")[0].endswith("book/start_here.html"), (
        f"searching {query!r} lists {results[:3]} first, not the start page"
    )


def test_search_still_ranks_other_pages_by_their_text(browser, site) -> None:  # noqa: F811
    # A term the start page lacks: the boost must not put it where it did not match.
    results = first_results(browser, site, "Leibniz")
    assert results and not any("start_here" in r for r in results), results


def test_diagnose_call_is_within_two_screens(browser, site) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(f"{site.url}/book/start_here.html", timeout=TIMEOUT_MS)
        top = page.evaluate(
            """() => {
              const block = [...document.querySelectorAll('article pre')]
                .find(pre => pre.textContent.includes('diagnose(model'));
              return block ? block.getBoundingClientRect().top + window.scrollY : null;
            }"""
        )
        table = page.evaluate(
            """() => {
              const t = document.querySelector('article table');
              return t ? t.getBoundingClientRect().top + window.scrollY : null;
            }"""
        )
    finally:
        page.close()
    assert top is not None, "the start page shows no diagnose(model, ...) call"
    assert top < 2 * 800, f"the diagnose call starts {top:.0f} px down, below two screens"
    assert table is not None and table < 2 * 800, f"the symptom table starts at {table} px"
