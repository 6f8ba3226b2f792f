"""Sphinx extension for the API page: gradclinic's docstrings are plain text, not reStructuredText."""

from __future__ import annotations

from typing import Any


def escape_bars(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Escape "|", which reStructuredText reads as a substitution (|x| is an absolute value)."""
    lines[:] = [line.replace("|", r"\|") for line in lines]


def setup(app: Any) -> dict[str, Any]:
    """Register the docstring hook."""
    app.connect("autodoc-process-docstring", escape_bars)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
