"""The built book as the tests see it: its pages, an up-to-date HTML build, a local server.

GRADCLINIC_BOOK_ROOT points the site tests at another book source root (default: this
repository); its HTML is read from <root>/_build/html, as `make book` writes it.
"""

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[1]
# Pages Sphinx writes besides the ones _toc.yml lists; readers reach them from every page.
GENERATED_PAGES = ("search", "genindex")


def book_root() -> Path:
    """Return the book's source root (the repository unless GRADCLINIC_BOOK_ROOT says otherwise)."""
    return Path(os.environ.get("GRADCLINIC_BOOK_ROOT", REPO)).resolve()


def html_dir(root: Path) -> Path:
    """Return where `make book` writes the HTML of the book rooted at `root`."""
    return root / "_build" / "html"


def _toc_files(entries: list[dict]) -> Iterator[str]:
    for entry in entries:
        if "file" in entry:
            yield entry["file"]
        for key in ("parts", "chapters", "sections"):
            yield from _toc_files(entry.get(key, []))


def toc_pages(root: Path) -> list[str]:
    """Return the docnames _toc.yml lists (e.g. 'book/01_broken_layer'), in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    return [toc["root"], *_toc_files([{k: v for k, v in toc.items() if k != "root"}])]


def page_source(root: Path, docname: str) -> Path:
    """Return the source file of a page (.ipynb or .md)."""
    for suffix in (".ipynb", ".md"):
        path = root / f"{docname}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"_toc.yml lists {docname!r} but {root} has no .ipynb or .md for it")


def is_notebook(root: Path, docname: str) -> bool:
    """Whether the page is a notebook (and so carries launch buttons)."""
    return page_source(root, docname).suffix == ".ipynb"


def _markdown_texts(root: Path, docname: str) -> list[str]:
    source = page_source(root, docname)
    if source.suffix == ".md":
        return [source.read_text(encoding="utf-8")]
    cells = json.loads(source.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def directives(root: Path, docname: str) -> list[str]:
    """Return the MyST directives a page uses, by name (e.g. 'solution-start'), in order."""
    parser = MarkdownIt("commonmark")
    names = []
    for text in _markdown_texts(root, docname):
        for token in parser.parse(text):
            info = token.info.strip() if token.type == "fence" else ""
            if info.startswith("{") and "}" in info:
                names.append(info[1 : info.index("}")])
    return names


def stored_animations(root: Path, docname: str) -> int:
    """Return how many matplotlib JavaScript animations a notebook's stored outputs hold."""
    source = page_source(root, docname)
    if source.suffix != ".ipynb":
        return 0
    cells = json.loads(source.read_text(encoding="utf-8"))["cells"]
    html_outputs = [
        "".join(output.get("data", {}).get("text/html", ""))
        for cell in cells
        for output in cell.get("outputs", [])
    ]
    # matplotlib's to_jshtml names the frame image of each animation _anim_img<id>.
    return sum(html.count('id="_anim_img') for html in html_outputs)


def stale_pages(root: Path) -> list[str]:
    """Return the pages whose HTML is missing or older than their source, config or extension."""
    html = html_dir(root)
    # The local Sphinx extensions change every page (and the student copies), like the
    # configuration does.
    inputs = (
        "_config.yml",
        "_toc.yml",
        "tools/sphinx_offline.py",
        "tools/make_assignments.py",
    )
    config_time = max((root / name).stat().st_mtime for name in inputs if (root / name).is_file())
    stale = []
    for docname in toc_pages(root):
        built = html / f"{docname}.html"
        source_time = max(config_time, page_source(root, docname).stat().st_mtime)
        if not built.is_file() or built.stat().st_mtime < source_time:
            stale.append(docname)
    return stale


def ensure_built(root: Path) -> Path:
    """Build the book (as `make book` does) if any page is stale; return the HTML directory."""
    stale = stale_pages(root)
    if stale:
        jupyter_book = Path(sys.executable).parent / "jupyter-book"
        # --all: Sphinx does not notice a changed extension, and would keep pages it made.
        command = [str(jupyter_book), "build", str(root), "--all", "-W", "-n", "--keep-going"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"the strict book build failed (pages out of date: {stale}):\n{done.stdout[-3000:]}"
            )
    return html_dir(root)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output free of one access-log line per request."""


@dataclass(frozen=True)
class Site:
    """A running local server for a built book."""

    url: str
    html: Path

    def page_url(self, docname: str) -> str:
        """Return the served URL of a page."""
        return f"{self.url}/{docname}.html"

    def is_local(self, url: str) -> bool:
        """Whether a URL stays on this server's host (data: and blob: URLs never leave)."""
        parts = urlsplit(url)
        return parts.scheme in ("data", "blob") or parts.hostname == "127.0.0.1"


@contextmanager
def serve(html: Path) -> Iterator[Site]:
    """Serve a directory on 127.0.0.1 on a free port for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(url=f"http://127.0.0.1:{server.server_address[1]}", html=html)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
