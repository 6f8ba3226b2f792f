"""Write a Gradescope autograder zip that grades with the book's own checks and grader.

    python tools/make_autograder.py --out _build/autograder.zip [--chapters "3 4"] [--checks F]

The zip follows https://gradescope-autograders.readthedocs.io/en/latest/specs/: `setup.sh`
(run once when Gradescope builds the image) installs bubblewrap and the pinned environment,
`run_autograder` (run per submission) grades every notebook in submission/ with tools/grade.py
and writes results/results.json. Both honour AUTOGRADER_ROOT (default /autograder), so a
folder laid out like Gradescope's container can stand in for it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import grade

ROOT = Path(__file__).resolve().parents[1]
# What grading needs beyond the book's runtime pins (requirements/book.txt, which has the
# kernel); their pins come from requirements/dev.txt, the one place the tools are pinned.
GRADING_PACKAGES = ("nbconvert", "nbclient")
CONFIG = "gradclinic_autograder.json"

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image. The book needs
# Python >= 3.11; Gradescope's Ubuntu 22.04 base image has 3.10, so a newer one is found or
# installed (apt's python3.11 from Ubuntu's universe, else uv's standalone build) or this
# stops with a message that says so.
set -euo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
fits() {{ "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }}
find_python() {{
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null && fits "$(command -v "$candidate")"; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}}
apt-get update -qq || true
apt-get install -y -qq bubblewrap >/dev/null || echo "setup.sh: no bubblewrap; see the instructors page"
PYTHON="$(find_python)" || {{
  apt-get install -y -qq python3.11 python3.11-venv >/dev/null 2>&1 || true
  PYTHON="$(find_python)"
}} || {{
  # A standalone Python under $ROOT (readable by the grading users, unlike /root).
  apt-get install -y -qq python3-pip >/dev/null 2>&1 || true
  python3 -m pip install --quiet uv >/dev/null 2>&1 \\
    && UV_PYTHON_INSTALL_DIR="$ROOT/python" python3 -m uv python install 3.11 >/dev/null 2>&1 \\
    && PYTHON="$(UV_PYTHON_INSTALL_DIR="$ROOT/python" python3 -m uv python find 3.11)"
}} || {{
  echo "setup.sh: the grader needs Python 3.11 or newer and could not find or install one" >&2
  echo "(python3 here is $(python3 -V 2>&1 || echo missing)). Pick Gradescope's newest Ubuntu" >&2
  echo "base image, or install python3.11 (e.g. the deadsnakes PPA) before this script." >&2
  exit 1
}}
echo "setup.sh: grading with $PYTHON ($("$PYTHON" -V))"
"$PYTHON" -m venv "$ROOT/venv" 2>/dev/null || {{
  apt-get install -y -qq "python3.$("$PYTHON" -c 'import sys; print(sys.version_info[1])')-venv" \\
    >/dev/null 2>&1 || true
  "$PYTHON" -m venv "$ROOT/venv"
}}
"$ROOT/venv/bin/python" -m pip install --quiet -r "$ROOT/source/requirements/book.txt" \\
  {packages} "$ROOT/source"

# Without bubblewrap (Docker's default seccomp profile refuses its namespaces) each parallel
# slot runs student code as a user of its own: gradclinicN, user id = group id = 2000000000 + N
# (tools/sandbox.py), no home, no login. They must reach the Python and the book's code, and
# nothing else of ours: not the private check files, not the results.
SLOTS="$(nproc 2>/dev/null || echo 2)"
for ((slot = 0; slot < SLOTS; slot++)); do
  id=$((2000000000 + slot))
  getent passwd "gradclinic$slot" >/dev/null && continue
  getent group "gradclinic$slot" >/dev/null || groupadd --gid "$id" "gradclinic$slot" || true
  useradd --uid "$id" --gid "$id" --no-log-init --no-create-home --home-dir /nonexistent \\
    --shell /usr/sbin/nologin "gradclinic$slot" || echo "setup.sh: no user gradclinic$slot"
done
reachable() {{  # every folder above $1 may be passed through (not listed) by anyone
  local path="$1"
  while [ -n "$path" ] && [ "$path" != / ]; do chmod o+x "$path" || true; path="${{path%/*}}"; done
}}
BASE="$("$ROOT/venv/bin/python" -c 'import sys; print(sys.base_prefix)')"
for path in "$ROOT/venv" "$BASE" "$ROOT/source/code"; do
  [ -n "$path" ] && [ -e "$path" ] || continue
  reachable "$path"
  case "$path" in /usr | /usr/*) ;; *) chmod -R o+rX "$path" || true ;; esac
done
if [ -d "$ROOT/source/checks" ]; then chmod -R go-rwx "$ROOT/source/checks"; fi  # must hold
chmod go-rwx "$ROOT/source/gradclinic_autograder.json" 2>/dev/null || true
if setpriv --reuid=2000000000 --regid=2000000000 --clear-groups env PYTHONPATH="$ROOT/source/code" \\
  "$ROOT/venv/bin/python" -c 'import gradclinic.checks._core, nbconvert' >/dev/null 2>&1; then
  echo "setup.sh: the grading users (gradclinic0 ...) can run $ROOT/venv/bin/python"
else
  echo "setup.sh: the grading user gradclinic0 cannot run $ROOT/venv/bin/python; without" \\
    "bubblewrap, grading will refuse to run student code (see the instructors page)" >&2
fi
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for each submission; it writes $ROOT/results/results.json.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${GRADCLINIC_PYTHON:-$ROOT/venv/bin/python}"
# Private check files: for the grader (root) alone, never for a submission's user.
chmod -R go-rwx "$ROOT/source/checks" 2>/dev/null || true
export PYTHONPATH="$ROOT/source/code"
exec "$PYTHON" "$ROOT/source/tools/grade.py" --gradescope "$ROOT" \\
  --config "$ROOT/source/gradclinic_autograder.json"
"""


def grading_pins() -> list[str]:
    """The pinned requirements of the grading packages, read from requirements/dev.txt."""
    lines = (ROOT / "requirements" / "dev.txt").read_text().splitlines()
    wanted = [
        line.strip()
        for line in lines
        if re.split(r"[=<>~! ;\[]", line.strip(), maxsplit=1)[0] in GRADING_PACKAGES
    ]
    if len(wanted) != len(GRADING_PACKAGES):
        raise ValueError(f"requirements/dev.txt must pin {', '.join(GRADING_PACKAGES)}")
    return wanted


def make_autograder(
    out: Path,
    chapters: list[str] | None = None,
    checks: Sequence[Path] = (),
    time_limit: float = 300,
) -> Path:
    """Write the autograder zip to out and return its path."""
    if not time_limit > 0:
        raise ValueError(f"time_limit must be > 0, got {time_limit}")
    names = [Path(path).name for path in checks]
    if len(set(names)) != len(names):
        raise ValueError(
            f"--checks files must have different names (they share checks/), got {names}"
        )
    # Checked here, as grade.py will check them on Gradescope, where an error would only
    # show as a submission without results.
    grade.load_checks([Path(path) for path in checks])
    if chapters:
        chapters = grade.parse_chapters(" ".join(chapters))
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "chapters": chapters or [],
        "checks": [f"checks/{Path(path).name}" for path in checks],
        "time_limit": time_limit,
    }
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:

        def script(name: str, text: str) -> None:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o100755 << 16  # executable, as Gradescope runs them
            archive.writestr(info, text)

        packages = " ".join(f"'{pin}'" for pin in grading_pins())
        script("setup.sh", SETUP_SH.format(packages=packages))
        script("run_autograder", RUN_AUTOGRADER)
        archive.writestr(CONFIG, json.dumps(config, indent=2))
        for path in (
            "pyproject.toml",
            "README.md",
            "LICENSE",
            "requirements/book.txt",
            "tools/grade.py",
            "tools/sandbox.py",
        ):
            archive.write(ROOT / path, path)
        for path in sorted((ROOT / "code" / "gradclinic").rglob("*.py")):
            archive.write(path, path.relative_to(ROOT))
        for path in checks:  # the judges' file and, beside it, its probes (X_probes.py)
            archive.write(path, f"checks/{Path(path).name}")
            probes = grade.probes_file(Path(path))
            archive.write(probes, f"checks/{probes.name}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: make_autograder.py --out ZIP [--chapters ...] [--checks FILE]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the zip to write")
    parser.add_argument("--chapters", help='assigned chapters, e.g. "3 4" (default: all)')
    parser.add_argument(
        "--checks",
        type=Path,
        action="append",
        default=[],
        help="a private check file X.py (judges, inputs), its probes beside it in X_probes.py",
    )
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per notebook")
    args = parser.parse_args(argv)
    chapters = args.chapters.replace(",", " ").split() if args.chapters else None
    try:
        path = make_autograder(args.out, chapters, args.checks, args.time_limit)
    except ValueError as error:
        parser.error(str(error))
    print(f"wrote {path}: upload it as the assignment's autograder on Gradescope")
    return 0


if __name__ == "__main__":
    sys.exit(main())
