#!/bin/sh
# Create or reuse the virtual environment; install the pins only when they (or pyproject.toml) changed.
set -eu
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "error: '$PYTHON' was not found. Install Python 3.11 or newer, or run: make PYTHON=/path/to/python3.11 ..." >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "error: $("$PYTHON" --version 2>&1) is too old: The Gradient Clinic needs Python 3.11 or newer (make PYTHON=python3.11 ...)." >&2
  exit 1
fi

stamp="$VENV/.pins-installed"
want=$("$PYTHON" -c 'import hashlib; print(hashlib.sha256(b"".join(open(f, "rb").read() for f in ("pyproject.toml", "requirements/book.txt", "requirements/dev.txt"))).hexdigest())')
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The book's exact pins and gradclinic in one resolve: gradclinic's ranges must admit the pins.
if ! "$VENV/bin/python" -m pip install --quiet -r requirements/dev.txt -e .; then
  echo "error: could not install the pinned dependencies listed in requirements/dev.txt (see pip's message above)." >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "installed the pinned environment into $VENV"
