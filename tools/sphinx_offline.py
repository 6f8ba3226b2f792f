"""Sphinx extension: the built book needs no network (MathJax served from the book itself).

`mathjax_path` in _config.yml names a file under `_static/mathjax/`; this extension copies
MathJax 3 from the pinned PyPI wheel `django-static-mathjax` (a plain copy of MathJax's es5
build, no Django needed) into the HTML output. It also drops the Font Awesome 4 stylesheet that
matplotlib's `to_jshtml` animations link from a CDN: the theme already ships Font Awesome, which
draws the animation's buttons. And it drops a duplicated inline script that raised a console
error on every page.
"""

import re
import shutil
from importlib.resources import files
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

MATHJAX_PREFIX = "mathjax/"
# matplotlib/_animation_data.py JS_INCLUDE: the only third-party request in its HTML.
CDN_FONT_AWESOME = re.compile(
    r'<link rel="stylesheet"\s+href="https://maxcdn\.bootstrapcdn\.com/font-awesome/[^"]+">\s*'
)


def mathjax_es5_dir() -> Path:
    """Return the directory of MathJax's es5 build inside the installed wheel."""
    es5 = Path(str(files("mathjax"))) / "static" / "mathjax" / "es5"
    if not (es5 / "tex-mml-chtml.js").is_file():
        raise ExtensionError(f"MathJax's es5 build is missing from {es5}: reinstall the dev pins")
    return es5


def check_mathjax_path(app: Sphinx) -> None:
    """Refuse a remote or unknown mathjax_path: readers offline would see raw LaTeX."""
    path = app.config.mathjax_path
    if not path.startswith(MATHJAX_PREFIX):
        raise ExtensionError(
            f"mathjax_path={path!r}: set it to {MATHJAX_PREFIX}<file> (a file of MathJax's es5 "
            "build) in _config.yml under sphinx.config, so the book serves MathJax itself"
        )
    entry = path.removeprefix(MATHJAX_PREFIX)
    if not (mathjax_es5_dir() / entry).is_file():
        raise ExtensionError(f"mathjax_path={path!r}: MathJax's es5 build has no {entry}")


def strip_cdn_font_awesome(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Remove the CDN stylesheet link from raw HTML outputs (matplotlib animations)."""
    for raw in list(doctree.findall(nodes.raw)):
        text = raw.astext()
        if "html" in raw.get("format", "") and CDN_FONT_AWESOME.search(text):
            raw.replace_self(nodes.raw("", CDN_FONT_AWESOME.sub("", text), format=raw["format"]))


def drop_duplicate_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: nodes.document | None
) -> None:
    """Keep one copy of each script: sphinx-thebe's inline `const THEBE_JS_URL = ...` reaches
    the page twice under Jupyter Book 1, and the second copy throws a SyntaxError in readers'
    browsers (a redeclared const)."""
    seen: set[tuple[str | None, str]] = set()
    unique = []
    for script in context.get("script_files", []):
        # The copies differ only in an empty filename: '' in one, None in the other.
        filename = getattr(script, "filename", script) or None
        key = (filename, repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    """Copy the MathJax entry script and the components it loads on demand into _static."""
    if exception is not None or app.builder.format != "html":
        return
    es5 = mathjax_es5_dir()
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    entry = app.config.mathjax_path.removeprefix(MATHJAX_PREFIX)
    shutil.copy2(es5 / entry, target / entry)
    shutil.copy2(es5.parent / "LICENSE", target / "LICENSE")
    # Top-level es5 files are alternative entry bundles; the folders hold what the entry
    # script loads lazily (fonts, TeX extensions, the menu, accessibility).
    for folder in sorted(p for p in es5.iterdir() if p.is_dir()):
        shutil.copytree(folder, target / folder.name, dirs_exist_ok=True)


def setup(app: Sphinx) -> dict[str, bool]:
    """Register the offline-asset hooks."""
    app.connect("builder-inited", check_mathjax_path)
    app.connect("doctree-resolved", strip_cdn_font_awesome)
    # Late, after every extension has added its scripts to the page.
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
