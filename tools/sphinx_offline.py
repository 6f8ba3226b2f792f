"""Sphinx extension: the built book needs no network (MathJax served from the book itself).

`mathjax_path` in _config.yml names a file under `_static/mathjax/`; this extension copies
MathJax 3 from the pinned PyPI wheel `django-static-mathjax` (a plain copy of MathJax's es5
build, no Django needed) into the HTML output. It also drops the Font Awesome 4 stylesheet that
matplotlib's `to_jshtml` animations link from a CDN: the theme already ships Font Awesome, which
draws the animation's buttons. And it drops a duplicated inline script that raised a console
error on every page.

Accessibility (WCAG 2 A/AA, checked by axe-core in tests/test_browser.py): the theme gives a
scrollable output a keyboard tab stop only when the page loads or resizes; this extension also
does it when a solution or dropdown opens. It also inlines the theme's one `@import` of Sphinx's
basic.css: axe-core 4.12 fetches an imported sheet from a URL resolved against the page instead
of the sheet (https://github.com/dequelabs/axe-core/issues/5268), gets a 404 (an error in the
console) and judges the rule css-orientation-lock on the error page instead of the book's CSS.
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
# pydata-sphinx-theme sets tabIndex 0 on scrollable outputs (and -1 on the others) at load,
# on resize and when nodes are added, but not when a sphinx-togglebutton solution or a
# <details> dropdown opens: an output that was hidden at load stays out of the tab order,
# so a keyboard cannot scroll it (axe rule scrollable-region-focusable). Same elements and
# rule as the theme's, rerun on those attribute changes.
TAB_STOPS_ON_TOGGLE_JS = """
document.addEventListener("DOMContentLoaded", () => {
  const main = document.getElementById("main-content");
  if (!main) return;
  const scrollables = "pre, .nboutput > .output_area, .cell_output > .output, "
    + ".jp-RenderedHTMLCommon, .pst-scrollable-table-container";
  const update = () => main.querySelectorAll(scrollables).forEach((el) => {
    el.tabIndex = el.scrollWidth > el.clientWidth || el.scrollHeight > el.clientHeight ? 0 : -1;
  });
  const opened = (records) => records.some(
    (r) => r.attributeName === "open" || r.target.classList.contains("toggle"));
  new MutationObserver((records) => opened(records) && update()).observe(main, {
    subtree: true, attributes: true, attributeFilter: ["class", "open"],
  });
});
"""

# pydata-sphinx-theme's styles/theme.css holds only this import of Sphinx's basic theme sheet.
BASIC_CSS_IMPORT = '@import "../basic.css";'
# url(...) relative to basic.css's folder (not absolute, not data:, not a #fragment).
RELATIVE_CSS_URL = re.compile(r"""url\((['"]?)(?![a-z][a-z0-9+.-]*:|/|#)""", re.IGNORECASE)


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


def inline_basic_css(app: Sphinx, exception: Exception | None) -> None:
    """Replace theme.css's @import of basic.css by its text, same rules in the same order."""
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    theme_css = static / "styles" / "theme.css"
    if not theme_css.is_file() or BASIC_CSS_IMPORT not in (
        text := theme_css.read_text(encoding="utf-8")
    ):
        return
    basic = (static / "basic.css").read_text(encoding="utf-8")
    # The copy lives one folder below basic.css, so its relative url()s need one more "../".
    basic = RELATIVE_CSS_URL.sub(r"url(\1../", basic)
    theme_css.write_text(text.replace(BASIC_CSS_IMPORT, basic), encoding="utf-8")


def setup(app: Sphinx) -> dict[str, bool]:
    """Register the offline-asset hooks."""
    app.connect("builder-inited", check_mathjax_path)
    app.connect("doctree-resolved", strip_cdn_font_awesome)
    # Late, after every extension has added its scripts to the page.
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("build-finished", copy_mathjax)
    app.connect("build-finished", inline_basic_css)
    app.add_js_file(None, body=TAB_STOPS_ON_TOGGLE_JS)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
