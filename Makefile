# The README's two commands are `make book` and `make test`; both create or
# reuse .venv and re-install only when the pins (requirements/) or pyproject.toml change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout=300

.PHONY: execute venv book test lint unit notebooks book-strict workflows assignments grade autograder bench stats pdf pdf-if-possible linkcheck lock clean

venv:
	@PYTHON="$(PYTHON)" VENV="$(VENV)" sh tools/ensure_venv.sh

book: venv
	$(BIN)/python tools/require_outputs.py book/*.ipynb
	$(BIN)/jupyter-book build . -W -n --keep-going

# `book` and `pdf` before `unit`: the browser, link and PDF tests (tests/test_browser.py,
# test_links.py, test_pdf.py) read the fresh _build/html and _build/pdf; -rs prints why a test skipped (no Chromium).
test: venv lint notebooks book pdf-if-possible unit workflows

lint: venv
	$(BIN)/ruff check code tests tools
	$(BIN)/ruff format --check code tests tools

unit: venv
	$(BIN)/pytest -rs tests

# Re-execute notebooks in place in a fresh kernel (all, or NB=book/NN_name.ipynb), without
# per-cell timestamps, so a re-run changes only what the code prints.
execute: venv
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.record_timing=False $(or $(NB),book/*.ipynb)

notebooks: venv
	$(BIN)/pytest $(NBVAL) book

workflows: venv
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

assignments: venv
	$(BIN)/python tools/make_assignments.py --out _build/assignments book

# JOBS: notebooks graded at once (default: the number of cores); CHAPTERS: the assigned
# chapters, e.g. CHAPTERS="3 4" (default: every chapter with exercises).
grade: venv
	@test -n "$(SUBMISSIONS)" || { echo 'usage: make grade SUBMISSIONS=dir/ [JOBS=N] [CHAPTERS="3 4"]'; exit 2; }
	$(BIN)/python tools/grade.py --out _build/grades $(if $(JOBS),--jobs $(JOBS)) \
	  $(if $(CHAPTERS),--chapters "$(CHAPTERS)") "$(SUBMISSIONS)"

# A Gradescope autograder zip built from the same checks and grader.
autograder: venv
	$(BIN)/python tools/make_autograder.py --out _build/autograder.zip $(if $(CHAPTERS),--chapters "$(CHAPTERS)")

bench: venv
	$(BIN)/python tools/bench.py book

# The whole book as one PDF for students and one with the solutions for instructors, printed
# by Debian's Chromium from the single-page build (tools/make_pdf.py).
pdf: venv
	$(BIN)/python tools/make_pdf.py

# What `make test` runs: without Chromium it says so and the PDF tests skip (CI requires them).
pdf-if-possible: venv
	$(BIN)/python tools/make_pdf.py --if-possible

# Each page's "Time to learn" and the instructors page's table, from one formula (tools/stats.py).
stats: venv
	$(BIN)/python tools/stats.py

# External links need the network, so this is not part of `make test` (CI has none).
# Its own output folder: jupyter-book would otherwise write output.txt into _build/html.
linkcheck: venv
	$(BIN)/jupyter-book build . --builder linkcheck --path-output _build/linkcheck

# Lock every distribution that make, Binder and CI install, from the top-level pins in
# requirements/ (tests/test_lock.py checks the two agree). A lock keeps what it already holds
# unless a pin needs otherwise; `make lock UPGRADE=1` moves everything to the newest release
# the pins allow (the weekly workflow proposes that). Binder's lock takes make's versions.
LOCK := $(BIN)/uv pip compile --quiet --universal --python-version 3.11
lock: venv
	$(LOCK) $(if $(UPGRADE),--upgrade) requirements/dev.txt -o requirements/dev-lock.txt
	$(LOCK) requirements/book.txt --constraint requirements/dev-lock.txt -o requirements/book-lock.txt

clean:
	rm -rf _build
