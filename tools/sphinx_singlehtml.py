"""Sphinx extension for `make pdf`: the single-page build renders what the HTML build renders.

Extensions such as MyST-NB (hidden code cells) and sphinx-design (dropdowns) give their nodes
writers for the `html` builder only, and Sphinx looks writers up by builder name, so the
`singlehtml` build that tools/make_pdf.py prints stopped at the first such node. When the
single-page builder starts, it gets every `html` writer it has none of its own for.
"""

from __future__ import annotations

from typing import Any


def share_html_writers(app: Any) -> None:
    """Give the singlehtml builder the node writers registered for html."""
    if app.builder.name != "singlehtml":
        return
    handlers = app.registry.translation_handlers
    handlers["singlehtml"] = {**handlers.get("html", {}), **handlers.get("singlehtml", {})}


def setup(app: Any) -> dict[str, Any]:
    """Register the hook."""
    app.connect("builder-inited", share_html_writers)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
