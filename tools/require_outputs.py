"""Refuse to build the book from notebooks that were never executed (the book shows stored outputs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def unexecuted(paths: list[Path]) -> list[str]:
    """Names of notebooks that have code cells but no stored output at all."""
    bad = []
    for path in paths:
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        if code and not any(c.get("outputs") for c in code):
            bad.append(path.name)
    return bad


if __name__ == "__main__":
    missing = unexecuted([Path(p) for p in sys.argv[1:]])
    if missing:
        print(
            "error: these notebooks have no stored outputs, so their pages would be empty: "
            + ", ".join(missing)
            + "\n  execute them in a fresh kernel first: "
            ".venv/bin/jupyter nbconvert --to notebook --execute --inplace book/NAME.ipynb",
            file=sys.stderr,
        )
        sys.exit(1)
