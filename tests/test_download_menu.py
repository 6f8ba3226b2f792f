"""Every page's download menu offers the whole book as one PDF (book/_static/gradclinic.js).

Uses tests/test_browser.py's Chromium and local server (skipped or failed as there).
"""

from urllib.parse import urljoin

from test_browser import TIMEOUT_MS, browser, site  # noqa: F401  (pytest fixtures)


def test_download_menu_links_the_book_pdf(browser, site) -> None:  # noqa: F811
    page = browser.new_page()
    try:
        url = f"{site.url}/book/03_where_and_nan.html"
        page.goto(url, timeout=TIMEOUT_MS)
        hrefs = page.eval_on_selector_all(
            ".dropdown-download-buttons .dropdown-menu a",
            "links => links.map(a => a.getAttribute('href'))",
        )
    finally:
        page.close()
    pdfs = [h for h in hrefs if h.endswith("gradient-clinic.pdf")]
    assert pdfs, f"the download menu holds {hrefs}, no book PDF"
    assert urljoin(url, pdfs[0]) == f"{site.url}/gradient-clinic.pdf"
