"""A chapter opened in JupyterLab, as Binder opens it: exercises render, solutions stay folded.

JupyterLab with jupyterlab-myst (requirements/book.txt) serves a copy of chapter 2, and
Debian's Chromium (tests/test_browser.py's fixture, skipped or failed as there) opens it.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_browser import ROOT, browser  # noqa: F401  (pytest fixture)

CHAPTER = ROOT / "book" / "02_gradient_diagnosis.ipynb"
START_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server (no token, local only) over a folder holding chapter 2."""
    folder = tmp_path_factory.mktemp("lab")
    shutil.copy(CHAPTER, folder)
    port = free_port()
    lab_command = Path(sys.executable).parent / "jupyter-lab"
    command = [
        str(lab_command),
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={folder}",
        "--LabApp.news_url=",
    ]
    # Every cell rendered at once (no windowing), and no news pop-up over the notebook.
    settings = folder / ".settings"
    for plugin, values in (
        ("notebook-extension/tracker", {"windowingMode": "none"}),
        ("apputils-extension/notification", {"fetchNews": "false"}),
    ):
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(folder / ".config"),
        JUPYTER_RUNTIME_DIR=str(folder / ".runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
    )
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + START_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    error = server.stderr.read().decode()[-2000:] if server.stderr else ""
                    pytest.fail(f"JupyterLab did not start:\n{error}")
                time.sleep(1)
        yield f"http://127.0.0.1:{port}/lab/tree/{CHAPTER.name}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def cell_with(page, text: str) -> dict:
    """Wait until a rendered markdown cell holds text; describe it."""
    script = """(t) => {
      const cells = [...document.querySelectorAll('.jp-MarkdownCell')];
      const cell = cells.find(c => c.querySelector('.myst')?.textContent.includes(t)
        || (c.querySelector('.jp-InputPlaceholder') && c.textContent.includes(t)));
      if (!cell) return null;
      cell.scrollIntoView();
      return {
        exercise: !!cell.querySelector('aside.myst-exercise'),
        folded: !!cell.querySelector('.jp-InputPlaceholder'),
        raw: cell.querySelector('.jp-MarkdownOutput, .myst')?.textContent.includes('{exercise}'),
      };
    }"""
    for _ in range(150):
        found = page.evaluate(script, text)
        if found is not None:
            return found
        time.sleep(0.2)
    pytest.fail(
        f"JupyterLab shows no cell with {text!r}, folded or rendered "
        "(an unfolded solution renders without its Markdown, so it fails here)"
    )


def solution_texts() -> list[str]:
    cells = json.loads(CHAPTER.read_text(encoding="utf-8"))["cells"]
    return [
        "".join(c["source"]).split("\n")[0][:30]
        for c in cells
        if c["cell_type"] == "markdown"
        and "solution" in c["metadata"].get("tags", [])
        and "{solution-" not in "".join(c["source"])
    ]


def test_jupyterlab_renders_the_exercise_and_folds_its_solution(browser, lab) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(lab, timeout=START_S * 1000)
        page.wait_for_selector(".jp-MarkdownCell", timeout=START_S * 1000)
        exercise = cell_with(page, "None, zero or nonzero?")
        assert exercise["exercise"], "the exercise is not rendered as an exercise box"
        assert not exercise["raw"], "the exercise shows its raw {exercise} directive"
        texts = solution_texts()
        assert texts, "chapter 2 holds no solution prose"
        for text in texts:
            assert cell_with(page, text)["folded"], f"the solution {text!r}... is not folded"
    finally:
        page.close()
