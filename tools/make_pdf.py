"""`make pdf`: the whole book as one PDF for students and one for instructors.

Jupyter Book's single-page build (`--builder singlehtml`) holds every chapter in one HTML file.
Debian's Chromium, driven by Playwright, opens it, waits for MathJax to typeset, and prints it.
The students' PDF leaves the worked solutions out; the instructors' PDF prints them open.
Collapsed "Going deeper" blocks and hidden code cells print open in both, since paper has no
buttons. Nothing downloads a browser: the Chromium is Debian's (or GRADCLINIC_CHROMIUM).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TITLE = "gradient-clinic"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOAD_TIMEOUT_MS = 120_000

# Run in the page before printing. `solutions` is "drop" (students) or "open" (instructors).
PREPARE_JS = """
async (solutions) => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  if (solutions === "drop") {
    document.querySelectorAll("div.solution").forEach((el) => el.remove());
  }
  // sphinx-togglebutton hides a dropdown's body with .toggle-hidden; <details> need `open`.
  document.querySelectorAll(".toggle-hidden").forEach((el) => el.classList.remove("toggle-hidden"));
  document.querySelectorAll("details").forEach((el) => (el.open = true));
  document.querySelectorAll(".toggle-button").forEach((el) => el.remove());
  // Matplotlib animations print their first frame; their buttons mean nothing on paper.
  document.querySelectorAll(".anim-buttons, .anim-state").forEach((el) => el.remove());
  return document.querySelectorAll("h1").length;
}
"""
PRINT_CSS = """
@page { size: A4; margin: 16mm 14mm; }
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-footer, .bd-footer-content,
.header-article, .prev-next-area, .bd-header-announcement, #pst-back-to-top { display: none !important; }
.bd-main .bd-content .bd-article-container { max-width: 100% !important; }
pre, .output pre, .cell_output pre { white-space: pre-wrap !important; word-break: break-word; }
h1 { break-before: page; }
img { max-width: 100% !important; break-inside: avoid; }
"""


def chromium() -> str | None:
    """Debian's Chromium, or GRADCLINIC_CHROMIUM, if either is there."""
    return (
        os.environ.get("GRADCLINIC_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


def build_single_page(root: Path) -> Path:
    """Run Jupyter Book's single-page build and return its index.html."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(root), "--builder", "singlehtml", "--all"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: the single-page build failed:\n{done.stdout[-3000:]}")
    out = root / "_build" / "singlehtml"
    # The root page, book/intro.html, holds every chapter (index.html only redirects to it),
    # but links _static/ and _images/ as if it sat at the top: give it those folders.
    for folder in ("_static", "_images"):
        link = out / "book" / folder
        if (out / folder).is_dir() and not link.exists():
            link.symlink_to(out / folder, target_is_directory=True)
    return out / "book" / "intro.html"


def print_pdfs(page_path: Path, out: Path, browser_path: str) -> list[Path]:
    """Print the single page twice: without solutions, and with them open."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_FLAGS)
        try:
            for suffix, solutions in (("", "drop"), ("-instructor", "open")):
                page = browser.new_page()
                page.goto(page_path.resolve().as_uri(), wait_until="load", timeout=LOAD_TIMEOUT_MS)
                page.add_style_tag(content=PRINT_CSS)
                page.evaluate(PREPARE_JS, solutions)
                target = out / f"{TITLE}{suffix}.pdf"
                page.pdf(path=str(target), format="A4", print_background=True)
                page.close()
                written.append(target)
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf")
    parser.add_argument(
        "--if-possible",
        action="store_true",
        help="without Chromium, say so and exit 0 instead of failing (make test uses this)",
    )
    args = parser.parse_args(argv)
    browser_path = chromium()
    if browser_path is None:
        message = "make pdf needs Chromium (Debian: apt-get install chromium)"
        if args.if_possible:
            print(f"skipping the PDF: {message}")
            return 0
        print(f"error: {message}", file=sys.stderr)
        return 1
    written = print_pdfs(build_single_page(args.root), args.out, browser_path)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    # The site offers the students' PDF in every page's download menu (book/_static/
    # gradclinic.js), so it sits beside the HTML that `make book` wrote.
    site = args.root / "_build" / "html"
    if site.is_dir():
        shutil.copyfile(written[0], site / written[0].name)
        print(f"copied {written[0].name} into {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
