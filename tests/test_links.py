"""Every link inside the built book reaches a file that exists, and an anchor that exists.

The strict build (`-n`) already fails on unresolved Sphinx cross-references; this reads the HTML
a reader gets, so it also catches plain Markdown links, images and downloads that point nowhere.
External links are `make linkcheck`'s job (it needs the network).
"""

from collections.abc import Iterator
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from book_site import GENERATED_PAGES, book_root, ensure_built, toc_pages

ROOT = book_root()
LINK_ATTRIBUTES = {"href", "src"}


class _LinksAndIds(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in LINK_ATTRIBUTES:
                self.links.append(value)
            elif name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)


@cache
def parse(page: Path) -> _LinksAndIds:
    """Return the links and element ids of one HTML file."""
    parser = _LinksAndIds()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def internal_targets(page: Path, html: Path) -> Iterator[tuple[str, Path, str]]:
    """Yield (link, target file, fragment) for each link of a page that stays inside the book."""
    for link in parse(page).links:
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or link.startswith(("#", "javascript:")) or not link:
            if link.startswith("#") and len(link) > 1:
                yield link, page, unquote(parts.fragment)
            continue
        target = (page.parent / unquote(parts.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        yield link, target, unquote(parts.fragment)


def link_problems(page: Path, html: Path) -> list[str]:
    """Return a description of every internal link of a page that leads nowhere."""
    html = html.resolve()
    problems = []
    for link, target, fragment in internal_targets(page, html):
        if not target.is_relative_to(html):
            problems.append(f"{link}: leaves the built book")
        elif not target.is_file():
            problems.append(f"{link}: no file {target.relative_to(html)}")
        elif fragment and target.suffix == ".html" and fragment not in parse(target).ids:
            problems.append(f"{link}: no id {fragment!r} in {target.relative_to(html)}")
    return problems


@pytest.fixture(scope="module")
def html() -> Path:
    return ensure_built(ROOT)


@pytest.mark.parametrize("docname", toc_pages(ROOT) + list(GENERATED_PAGES))
def test_internal_links_resolve(html: Path, docname: str) -> None:
    page = html / f"{docname}.html"
    assert page.is_file(), f"the build wrote no {page.relative_to(html)}"
    assert link_problems(page, html) == []


def test_checker_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    page = tmp_path / "sub" / "page.html"
    page.write_text(
        '<h1 id="top">T</h1><a href="#top">ok</a><a href="#gone">x</a>'
        '<a href="other.html#top">y</a><a href="https://example.org/">ext</a>'
        '<img src="../img.png"><a href="../../outside.html">z</a>',
        encoding="utf-8",
    )
    (tmp_path / "sub" / "other.html").write_text('<p id="top"></p>', encoding="utf-8")
    problems = link_problems(page, tmp_path)
    assert problems == [
        "#gone: no id 'gone' in sub/page.html",
        "../img.png: no file img.png",
        "../../outside.html: leaves the built book",
    ]
