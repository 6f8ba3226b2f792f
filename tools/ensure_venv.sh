#!/bin/sh
# Create or reuse the virtual environment; install the locked pins only when they (or
# pyproject.toml) changed. requirements/dev-lock.txt holds every distribution, dependencies
# included (`make lock` writes it from requirements/*.txt), so a new release changes nothing.
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
want=$("$PYTHON" -c 'import hashlib; print(hashlib.sha256(b"".join(open(f, "rb").read() for f in ("pyproject.toml", "requirements/dev-lock.txt"))).hexdigest())')
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if ! "$VENV/bin/python" -m pip install --quiet -r requirements/dev-lock.txt; then
  echo "error: could not install the locked dependencies listed in requirements/dev-lock.txt (see pip's message above)." >&2
  exit 1
fi
# gradclinic without resolving anything: the lock already holds what it needs, and pip check
# fails if gradclinic's declared ranges do not admit the locked versions.
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
if ! "$VENV/bin/python" -m pip check; then
  echo "error: the locked versions do not satisfy every requirement (see above); run make lock." >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "installed the pinned environment into $VENV"
