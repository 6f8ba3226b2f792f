"""Every page of the built book in headless Chromium, as a reader (offline) would see it.

Each page is opened once; the tests below check what that visit recorded. Chromium is Debian's
(`/usr/bin/chromium`, or GRADCLINIC_CHROMIUM), driven by Playwright; nothing downloads a browser.
Without Chromium or Playwright these tests skip loudly, unless GRADCLINIC_REQUIRE_BROWSER=1
(set by .ci/run), which turns the skip into a failure. Accessibility is judged by axe-core
(Deque's engine, bundled by the axe-playwright-python package and injected from its file, so it
runs offline) with the WCAG 2.0/2.1 A and AA rules, in the light and the dark theme.
"""

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

import pytest
import yaml
from book_site import (
    GENERATED_PAGES,
    Site,
    book_root,
    directives,
    ensure_built,
    is_notebook,
    serve,
    stored_animations,
    toc_pages,
)

ROOT = book_root()
PAGES = toc_pages(ROOT)
NOTEBOOK_PAGES = [page for page in PAGES if is_notebook(ROOT, page)]
SCREENSHOTS = ROOT / "_build" / "screenshots"
# As the machine notes advise: no background connections a closed network would refuse.
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
TIMEOUT_MS = 20_000
FRAME_CHANGE_MS = 5_000
MATHJAX_START_MS = 10_000
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}
# The theme's colours change with a 0.15 s CSS transition; contrast is judged after it.
THEME_SWITCH_MS = 500


def chromium_path() -> str | None:
    """Return Debian's Chromium (or GRADCLINIC_CHROMIUM) if it is installed."""
    wanted = os.environ.get("GRADCLINIC_CHROMIUM")
    if wanted:
        return wanted if Path(wanted).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_unavailable(request: pytest.FixtureRequest, reason: str) -> None:
    """Skip loudly, or fail when GRADCLINIC_REQUIRE_BROWSER=1 (CI)."""
    if os.environ.get("GRADCLINIC_REQUIRE_BROWSER") == "1":
        pytest.fail(f"GRADCLINIC_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    message = f"BROWSER TESTS SKIPPED: {reason} (install Debian's chromium to run them)"
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # print past pytest's output capture
            reporter.write_line(f"\n*** {message} ***", red=True, bold=True)
    pytest.skip(message)


@dataclass
class PageVisit:
    """What one visit of a page recorded."""

    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    math_elements: int = 0
    untypeset_math: list[str] = field(default_factory=list)
    launch_links: list[str] = field(default_factory=list)
    visible_launch_links: list[str] = field(default_factory=list)
    animations_changing: dict[str, bool] = field(default_factory=dict)
    solutions: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    broken_images: list[str] = field(default_factory=list)
    axe_violations: list["AxeViolation"] = field(default_factory=list)
    axe_rules_passed: int = 0
    undescribed_images: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AxeViolation:
    """One axe-core rule that failed on a page, with where its offending elements sit."""

    theme: str
    rule: str
    impact: str
    help: str
    # (part of the page, CSS selector) per element: "notebook output", "page text" (markdown
    # and directives inside the article) or "theme" (header, sidebars, footer).
    elements: tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with serve(ensure_built(ROOT)) as running:
        yield running


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable(request, "Playwright's Python package is not installed")
    executable = chromium_path()
    if executable is None:
        browser_unavailable(request, "no chromium executable found")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def visits(browser, site: Site) -> dict[str, PageVisit | str]:
    """Visit each page at most once per module run, on first use."""
    return {}


def visit(visits: dict[str, PageVisit | str], browser, site: Site, docname: str) -> PageVisit:
    """Return the recorded visit of a page, opening it if this run has not yet."""
    if docname not in visits:
        try:
            visits[docname] = open_page(browser, site, docname)
        except Exception as error:  # recorded once, so each later test fails fast with it
            visits[docname] = f"{type(error).__name__}: {error}"
    record = visits[docname]
    if isinstance(record, str):
        pytest.fail(f"{docname}: the page visit failed: {record}", pytrace=False)
    return record


def timeout_error() -> type[Exception]:
    """Playwright's TimeoutError (imported late: Playwright may be missing)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    return PlaywrightTimeout


def open_page(browser, site: Site, docname: str) -> PageVisit:
    """Open a page, wait for MathJax, exercise it as a reader would, and take a screenshot."""
    record = PageVisit()
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def route(route) -> None:
        if site.is_local(route.request.url):
            route.continue_()
        else:
            record.outside_requests.append(route.request.url)
            route.abort()

    def on_console(message) -> None:
        # Browsers ask every host for /favicon.ico on their own; the book never links it.
        if message.type == "error" and urlsplit(message.location["url"]).path != "/favicon.ico":
            record.console_errors.append(f"{message.text} ({message.location['url']})")

    def on_response(response) -> None:
        if response.status >= 400:
            record.failed_requests.append(f"{response.status} {response.url}")

    def on_request_failed(request) -> None:
        if site.is_local(request.url):
            record.failed_requests.append(f"{request.failure} {request.url}")

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", on_console)
    page.on("pageerror", lambda error: record.console_errors.append(f"uncaught: {error}"))
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    try:
        page.goto(site.page_url(docname), wait_until="load")
        check_math(page, record)
        check_images(page, record)
        check_alt_texts(page, record)
        check_launch_links(page, record)
        check_animations(page, record)
        check_solutions(page, record)
        # Once solutions are open, so their content is judged too, and before the full-page
        # screenshot resizes the page (a resize makes the theme redo its keyboard tab stops).
        check_accessibility(page, record)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{docname.replace('/', '__')}.png", full_page=True)
    finally:
        context.close()
    return record


RAW_TEX_IN_PROSE = r"""() => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const found = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.parentElement.closest('pre, code, script, style, mjx-container')) continue;
        const text = node.textContent;
        if (/\\[\[\(]|\$\$/.test(text)) found.push(text.trim().slice(0, 80));
    }
    return found;
}"""


def check_math(page, record: PageVisit) -> None:
    """Wait for MathJax to finish, then list math it left as raw LaTeX (delimiters included)."""
    record.math_elements = page.locator(".math").count()
    if record.math_elements == 0:
        record.untypeset_math = page.evaluate(RAW_TEX_IN_PROSE)
        return
    try:
        page.wait_for_function(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise",
            timeout=MATHJAX_START_MS,
        )
    except timeout_error():
        record.untypeset_math = [f"MathJax never started ({record.math_elements} math elements)"]
        return
    page.evaluate("() => MathJax.startup.promise")
    record.untypeset_math = page.evaluate(
        """() => [...document.querySelectorAll('.math')]
            .filter(el => !el.querySelector('mjx-container'))
            .map(el => el.textContent.trim().slice(0, 80))"""
    ) + page.evaluate(RAW_TEX_IN_PROSE)


def check_images(page, record: PageVisit) -> None:
    """Load every image (lazy ones too, collapsed ones too) and list those that fail."""
    record.broken_images = page.evaluate(
        """async () => {
            const images = [...document.images];
            images.forEach(img => { img.loading = 'eager'; });
            const settle = img => img.complete ? null : new Promise(done => {
                img.addEventListener('load', done); img.addEventListener('error', done); });
            const timeout = new Promise(done => setTimeout(done, 10000));
            await Promise.race([Promise.all(images.map(settle)), timeout]);
            return images.filter(img => !(img.complete && img.naturalWidth > 0))
                .map(img => (img.currentSrc || img.src || img.outerHTML).slice(0, 120));
        }"""
    )


UNDESCRIBED_IMAGES = r"""() => [...document.querySelectorAll('article img')].map((img, i) => {
    const alt = (img.getAttribute('alt') || '').trim();
    // myst-nb's fallback when a cell sets no alt is the image's path; matplotlib's is its repr.
    if (alt && !/\.(png|svg|jpe?g|gif)$/i.test(alt) && !alt.startsWith('<Figure size')) return null;
    const heading = img.closest('section')?.querySelector('h1, h2, h3, h4');
    const section = heading ? heading.textContent.replace(/#$/, '').trim() : '(no section)';
    return `image ${i + 1}${img.id ? ' #' + img.id : ''} in section "${section}"`;
}).filter(found => found !== null)"""


def check_alt_texts(page, record: PageVisit) -> None:
    """List the page's images whose alt text is missing or only a file name (axe accepts both)."""
    record.undescribed_images = page.evaluate(UNDESCRIBED_IMAGES)


def check_launch_links(page, record: PageVisit) -> None:
    """Record the launch menu's links, and which ones show once the rocket menu opens."""
    links = page.locator(".dropdown-launch-buttons a")
    record.launch_links = [links.nth(i).get_attribute("href") for i in range(links.count())]
    if record.launch_links:
        page.locator(".dropdown-launch-buttons button").first.click()
        record.visible_launch_links = [
            links.nth(i).get_attribute("href")
            for i in range(links.count())
            if links.nth(i).is_visible()
        ]
        page.keyboard.press("Escape")


def check_animations(page, record: PageVisit) -> None:
    """Press Play on each matplotlib animation and record whether its frame changes."""
    animations = page.locator("div.animation")
    for i in range(animations.count()):
        animation = animations.nth(i)
        image = animation.locator("img").first
        image_id = image.get_attribute("id")
        before = image.get_attribute("src")
        animation.scroll_into_view_if_needed()
        animation.locator('button[title="Play"]').click()
        try:
            page.wait_for_function(
                "([id, src]) => document.getElementById(id).src !== src",
                arg=[image_id, before],
                timeout=FRAME_CHANGE_MS,
            )
            record.animations_changing[image_id] = True
        except timeout_error():
            record.animations_changing[image_id] = False
        animation.locator('button[title="Pause"]').click()


def check_solutions(page, record: PageVisit) -> None:
    """Record, per solution, whether it starts collapsed and whether a click opens it."""
    solutions = page.locator("div.solution")
    for i in range(solutions.count()):
        solution = solutions.nth(i)
        body = solution.locator(":scope > :not(.admonition-title)").first
        hidden_before = not body.is_visible()
        toggle = solution.locator(".toggle-button")
        if toggle.count():
            toggle.first.click()
        record.solutions[solution.get_attribute("id")] = (hidden_before, body.is_visible())


WHERE_ELEMENTS_ARE = """(targets) => targets.map(target => {
    const element = document.querySelector(target);
    if (element === null) return "unknown";
    if (element.closest(".cell_output, .output")) return "notebook output";
    return element.closest("article") ? "page text" : "theme";
})"""


def axe_violations(page, theme: str) -> tuple[list[AxeViolation], int]:
    """Run axe-core's WCAG 2 A/AA rules on the page as it is; return violations, rules passed."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=AXE_OPTIONS).response
    violations = []
    for found in results["violations"]:
        # A target is a list of selectors only inside iframes or shadow roots, which the
        # book does not use; joined, it still names the element.
        selectors = [" >>> ".join(node["target"]) for node in found["nodes"]]
        where = page.evaluate(WHERE_ELEMENTS_ARE, [node["target"][0] for node in found["nodes"]])
        violations.append(
            AxeViolation(
                theme,
                found["id"],
                found["impact"] or "unknown",
                found["help"],
                tuple(zip(where, selectors, strict=True)),
            )
        )
    return violations, len(results["passes"])


def check_accessibility(page, record: PageVisit) -> None:
    """Record axe-core's violations in the light theme and, as the reader's OS asks, the dark."""
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        page.wait_for_function(
            "theme => document.documentElement.dataset.theme === theme", arg=theme
        )
        page.wait_for_timeout(THEME_SWITCH_MS)
        violations, passed = axe_violations(page, theme)
        record.axe_violations.extend(violations)
        record.axe_rules_passed += passed
    page.emulate_media(color_scheme="light")


def axe_report(docname: str, violations: list[AxeViolation]) -> str:
    """Spell out every violation: theme, rule id, impact, and each element with its place."""
    lines = [f"{docname}: {len(violations)} axe-core WCAG 2 A/AA violation(s):"]
    for v in violations:
        lines.append(f"  [{v.theme} theme] {v.rule} ({v.impact}): {v.help}")
        lines.extend(f"      {where}: {selector}" for where, selector in v.elements)
    places = {where for v in violations for where, _ in v.elements}
    if places & {"notebook output", "page text"}:
        lines.append(
            "  notebook output / page text: usually the chapter's to fix (figure alt text goes in "
            'the cell metadata "mystnb": {"image": {"alt": "..."}}; widgets in gradclinic.plots), '
            "unless the failing attribute is one the theme's scripts set (e.g. tabindex)"
        )
    if "theme" in places:
        lines.append("  theme: fix the markup or CSS in tools/sphinx_offline.py or _config.yml")
    return "\n".join(lines)


def expected_launch_links(docname: str) -> dict[str, str]:
    """Binder and Colab URLs for a notebook, from _config.yml's repository and launch settings."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    repository = config["repository"]
    owner_repo = urlsplit(repository["url"]).path.strip("/")
    branch = repository.get("branch", "main")
    path = f"{repository.get('path_to_book', '').strip('/')}/{docname}.ipynb".lstrip("/")
    launch = config["launch_buttons"]
    interface = "lab/tree" if launch.get("notebook_interface") == "jupyterlab" else "tree"
    binder = launch["binderhub_url"].rstrip("/")
    colab = launch["colab_url"].rstrip("/")
    return {
        "binder": f"{binder}/v2/gh/{owner_repo}/{branch}?urlpath={interface}/{path}",
        "colab": f"{colab}/github/{owner_repo}/blob/{branch}/{path}",
    }


ALL_PAGES = PAGES + list(GENERATED_PAGES)


@pytest.mark.parametrize("docname", ALL_PAGES)
def test_page_has_no_console_errors(visits, browser, site, docname: str) -> None:
    record = visit(visits, browser, site, docname)
    assert record.console_errors == [], (
        f"{docname}: JavaScript console errors: {record.console_errors}"
    )


@pytest.mark.parametrize("docname", ALL_PAGES)
def test_page_requests_nothing_outside_the_book(visits, browser, site, docname: str) -> None:
    record = visit(visits, browser, site, docname)
    assert record.outside_requests == [], (
        f"{docname}: requests leaving 127.0.0.1 (the book must work offline): "
        f"{record.outside_requests}"
    )
    assert record.failed_requests == [], f"{docname}: failed requests: {record.failed_requests}"


@pytest.mark.parametrize("docname", ALL_PAGES)
def test_every_image_loads(visits, browser, site, docname: str) -> None:
    record = visit(visits, browser, site, docname)
    assert record.broken_images == [], (
        f"{docname}: images that did not load: {record.broken_images}"
    )


@pytest.mark.parametrize("docname", ALL_PAGES)
def test_page_passes_axe_wcag2_aa(visits, browser, site, docname: str) -> None:
    record = visit(visits, browser, site, docname)
    # Both themes ran and judged something: an empty list means axe found nothing wrong.
    assert record.axe_rules_passed > 0, f"{docname}: axe-core passed no rule (did it run?)"
    assert record.axe_violations == [], axe_report(docname, record.axe_violations)


@pytest.mark.parametrize("docname", PAGES)
def test_every_figure_says_what_it_shows(visits, browser, site, docname: str) -> None:
    record = visit(visits, browser, site, docname)
    assert record.undescribed_images == [], (
        f"{docname}: images whose alt text is missing or only a file name; give each figure "
        'cell the metadata "mystnb": {"image": {"alt": "<what the figure shows>"}}: '
        + "; ".join(record.undescribed_images)
    )


def test_axe_finds_and_places_a_known_violation(browser) -> None:
    # Guards the per-page check: an image without alt text and an unlabelled slider, the two
    # faults chapter 3's animation once had, must be reported, and placed by the page part.
    page = browser.new_page()
    try:
        page.set_content(
            '<html lang="en"><head><title>t</title></head><body><main><article>'
            '<div class="cell_output"><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
            '</div><p>text</p></article><input type="range"></main></body></html>'
        )
        violations, passed = axe_violations(page, "light")
    finally:
        page.close()
    found = {v.rule: v.elements for v in violations}
    assert passed > 0
    assert found.get("image-alt") == (("notebook output", "img"),)
    assert found.get("label") == (("theme", "input"),)
    report = axe_report("demo", violations)
    assert "image-alt (critical)" in report and "theme: input" in report


@pytest.mark.parametrize("docname", PAGES)
def test_math_is_typeset(visits, browser, site, docname: str) -> None:
    record = visit(visits, browser, site, docname)
    assert record.untypeset_math == [], f"{docname}: raw LaTeX left: {record.untypeset_math}"


def test_the_book_shows_math(visits, browser, site) -> None:
    # Guards the per-page check: if no page had math, "nothing left raw" would prove nothing.
    assert any(visit(visits, browser, site, page).math_elements for page in PAGES)


@pytest.mark.parametrize("docname", NOTEBOOK_PAGES)
def test_launch_buttons_open_this_notebook(visits, browser, site, docname: str) -> None:
    assert (ROOT / f"{docname}.ipynb").is_file()
    record = visit(visits, browser, site, docname)
    for service, url in expected_launch_links(docname).items():
        assert url in record.launch_links, f"{docname}: no {service} button for {url}"
        assert url in record.visible_launch_links, f"{docname}: {service} button stays hidden"


@pytest.mark.parametrize("docname", PAGES)
def test_animations_play(visits, browser, site, docname: str) -> None:
    record = visit(visits, browser, site, docname)
    stored = stored_animations(ROOT, docname)
    assert len(record.animations_changing) == stored, f"{docname}: not every stored animation shown"
    frozen = [name for name, changed in record.animations_changing.items() if not changed]
    assert frozen == [], f"{docname}: frames unchanged after Play: {frozen}"


@pytest.mark.parametrize("docname", PAGES)
def test_solutions_start_collapsed_and_open_on_click(visits, browser, site, docname) -> None:
    record = visit(visits, browser, site, docname)
    written = directives(ROOT, docname).count("solution-start")
    assert len(record.solutions) == written, f"{docname}: not every written solution shown"
    shown_at_once = [name for name, (hidden, _) in record.solutions.items() if not hidden]
    stuck = [name for name, (_, opened) in record.solutions.items() if not opened]
    assert shown_at_once == [], f"{docname}: solutions shown before a click: {shown_at_once}"
    assert stuck == [], f"{docname}: solutions a click did not open: {stuck}"


# --- Phone and desktop navigation, layout, and what a reader sees (issue 20) ---------------

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# MyST written but not rendered: a fence (```{note} or :::{note}) or a directive / role name in
# braces that reached the page's prose as text (code cells and outputs are left out).
RAW_MYST = r"""() => {
    const names = "admonition|note|warning|tip|important|caution|attention|danger|error|hint|"
        + "seealso|dropdown|exercise|solution|solution-start|solution-end|exercise-start|"
        + "exercise-end|figure|image|code-cell|glue|toctree|margin|sidebar|list-table|"
        + "code-block|ref|doc|numref|eq|download|term|math";
    const pattern = new RegExp("(`{3,}|:{3,})\\s*\\{[a-z][\\w-]*\\}|\\{(" + names + ")\\}");
    // Prose blocks only: code cells and their outputs legitimately hold braces.
    const blocks = [...document.querySelectorAll("p, li, dt, dd, td, th, h1, h2, h3, h4, summary")]
        .filter(block => !block.closest("pre, .cell_output, .output"));
    return blocks.flatMap(block => block.innerText.split("\n"))
        .filter(line => pattern.test(line)).map(line => line.trim().slice(0, 80));
}"""
# What makes the page wider than the window, outside any box that scrolls or clips itself.
TOO_WIDE = r"""() => {
    const width = document.documentElement.clientWidth;
    const found = [];
    for (const element of document.querySelectorAll("article *")) {
        const box = element.getBoundingClientRect();
        if (box.width === 0 || box.right <= width + 1) continue;
        let parent = element.parentElement, contained = false;
        while (parent && parent !== document.body) {
            if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(parent).overflowX)) {
                contained = true;
                break;
            }
            parent = parent.parentElement;
        }
        if (!contained) found.push(`${element.tagName.toLowerCase()}.${element.className}`);
    }
    return {scrollWidth: document.documentElement.scrollWidth, width, culprits: found.slice(0, 5)};
}"""


def open_at(browser, site: Site, docname: str, viewport: dict[str, int]):
    """Open a page in a fresh context of the given size; return (context, page)."""
    context = browser.new_context(viewport=viewport)
    context.route(
        "**/*",
        lambda route: route.continue_() if site.is_local(route.request.url) else route.abort(),
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(site.page_url(docname), wait_until="load")
    page.evaluate("() => window.MathJax?.startup?.promise")
    return context, page


@pytest.mark.parametrize("docname", ALL_PAGES)
def test_no_page_scrolls_sideways_on_a_phone(browser, site, docname: str) -> None:
    context, page = open_at(browser, site, docname, PHONE)
    try:
        layout = page.evaluate(TOO_WIDE)
    finally:
        context.close()
    assert layout["scrollWidth"] <= layout["width"], (
        f"{docname} at 390 px is {layout['scrollWidth']} px wide; what sticks out: "
        f"{layout['culprits']} (book/_static/gradclinic.css lets wide content scroll in its box)"
    )


@pytest.mark.parametrize("docname", PAGES)
def test_no_raw_myst_on_the_page(browser, site, docname: str) -> None:
    context, page = open_at(browser, site, docname, DESKTOP)
    try:
        raw = page.evaluate(RAW_MYST)
    finally:
        context.close()
    assert raw == [], f"{docname}: MyST shown as text instead of rendered: {raw}"


def test_raw_myst_check_finds_an_unrendered_directive(browser) -> None:
    # Guards the per-page check with the fault chapter 5 once had: an admonition whose title
    # held backticks reached the page as text; f-strings in code must not count.
    page = browser.new_page()
    try:
        page.set_content(
            "<article><p>```{admonition} The <code>tf.where</code> trap</p>"
            "<p>See {ref}`where-nan`.</p><pre>print(f'{name} = {value}')</pre></article>"
        )
        raw = page.evaluate(RAW_MYST)
    finally:
        page.close()
    assert raw == ["```{admonition} The tf.where trap", "See {ref}`where-nan`."]


@pytest.mark.parametrize("docname", PAGES)
def test_one_search_box_and_a_favicon_on_desktop(browser, site, docname: str) -> None:
    context, page = open_at(browser, site, docname, DESKTOP)
    try:
        visible_search = page.evaluate(
            """() => [...document.querySelectorAll('.search-button-field, form.bd-search')]
                .filter(el => el.offsetParent !== null).length"""
        )
        icons = page.locator('link[rel="icon"]')
        icon_urls = [icons.nth(i).evaluate("link => link.href") for i in range(icons.count())]
        statuses = [page.request.get(url).status for url in icon_urls]
    finally:
        context.close()
    assert visible_search == 1, f"{docname}: {visible_search} search boxes at 1280 px"
    assert icon_urls, f"{docname}: no <link rel=icon>, so browsers ask for /favicon.ico (404)"
    assert statuses == [200] * len(icon_urls), f"{docname}: favicon {icon_urls} -> {statuses}"


CHAPTER = NOTEBOOK_PAGES[0]


def test_menu_button_opens_the_chapter_list_on_a_phone(browser, site) -> None:
    context, page = open_at(browser, site, CHAPTER, PHONE)
    try:
        toggle = page.locator(".primary-toggle:visible")
        assert toggle.count() == 1, f"{toggle.count()} visible ☰ buttons at 390 px"
        drawer = page.locator("dialog#pst-primary-sidebar-modal")
        assert not drawer.evaluate("dialog => dialog.open")
        toggle.click()
        page.wait_for_function("() => document.querySelector('#pst-primary-sidebar-modal').open")
        target = NOTEBOOK_PAGES[1]
        link = drawer.locator(f'a[href$="{target.split("/")[-1]}.html"]').first
        assert link.is_visible(), f"the open drawer does not show a link to {target}"
        link.click()
        page.wait_for_url(f"**/{target}.html")
    finally:
        context.close()


def test_menu_button_collapses_and_reopens_the_sidebar_on_desktop(browser, site) -> None:
    context, page = open_at(browser, site, CHAPTER, DESKTOP)
    try:
        sidebar = page.locator(".bd-sidebar-primary")
        toggle = page.locator(".primary-toggle:visible")
        assert toggle.count() == 1, f"{toggle.count()} visible ☰ buttons at 1280 px"
        assert sidebar.is_visible()
        toggle.click()
        sidebar.wait_for(state="hidden")
        toggle.click()
        sidebar.wait_for(state="visible")
    finally:
        context.close()


ANIMATED_PAGES = [page for page in PAGES if stored_animations(ROOT, page)]


@pytest.mark.parametrize("docname", ANIMATED_PAGES)
def test_dark_theme_shows_the_selected_animation_mode(browser, site, docname: str) -> None:
    context, page = open_at(browser, site, docname, DESKTOP)
    try:
        page.emulate_media(color_scheme="dark")
        page.wait_for_function("() => document.documentElement.dataset.theme === 'dark'")
        modes = page.locator(".anim-state").first
        looks = """form => [...form.querySelectorAll('input[type=radio]')].map(input => {
            const label = form.querySelector(`label[for="${input.id}"]`);
            const style = getComputedStyle(label);
            return [input.checked, style.fontWeight + ' ' + style.textDecorationLine];
        })"""
        before = modes.evaluate(looks)
        modes.locator("label").first.click()  # "Once"
        after = modes.evaluate(looks)
    finally:
        context.close()
    for state in (before, after):
        selected = {look for checked, look in state if checked}
        others = {look for checked, look in state if not checked}
        assert len(selected) == 1 and selected.isdisjoint(others), (
            f"{docname}: the selected mode looks like the others in the dark theme: {state}"
        )
    assert before != after, f"{docname}: clicking Once changed nothing: {after}"


def search_snippets(browser, site: Site, query: str, block_book_js: bool) -> list[str]:
    """Return the search page's result snippets for a query (optionally without gradclinic.js)."""
    context = browser.new_context(viewport=DESKTOP)
    try:
        if block_book_js:
            context.route("**/gradclinic.js*", lambda route: route.abort())
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{site.url}/search.html?q={query}")
        page.wait_for_function(
            "() => /found \\d+ page|did not match/i.test("
            "document.querySelector('#search-results')?.innerText ?? '')"
        )
        page.wait_for_function(
            "n => document.querySelectorAll('#search-results p.context').length >= n", arg=3
        )
        page.wait_for_timeout(1_000)
        return page.locator("#search-results p.context").all_inner_texts()
    finally:
        context.close()


def test_search_snippets_show_math_as_text_not_tex(browser, site) -> None:
    raw_tex = re.compile(r"\\[()\[\]]|\\[a-zA-Z]+")
    # Without the book's script Sphinx shows the TeX: the query does reach math.
    assert any(raw_tex.search(s) for s in search_snippets(browser, site, "sigma", True))
    snippets = search_snippets(browser, site, "sigma", False)
    assert any("\N{GREEK SMALL LETTER SIGMA}" in s for s in snippets), snippets
    raw = [s[:100] for s in snippets if raw_tex.search(s)]
    assert raw == [], f"search snippets with raw TeX: {raw}"


# --- Student copies published with the site (tools/make_assignments.py as a Sphinx hook) ---

STUDENT_COPY_PAGES = [
    page
    for page in NOTEBOOK_PAGES
    if any(
        {"solution", "student"} & set(cell.get("metadata", {}).get("tags", []))
        for cell in json.loads((ROOT / f"{page}.ipynb").read_text(encoding="utf-8"))["cells"]
    )
]


def student_copy_path(docname: str) -> str:
    """Return where the site publishes a chapter's student copy, relative to its root."""
    return f"student/{docname.split('/')[-1]}.ipynb"


def test_some_chapters_have_exercises() -> None:
    # Guards the per-chapter tests below: with no chapter selected they would prove nothing.
    assert len(STUDENT_COPY_PAGES) >= 3, STUDENT_COPY_PAGES


@pytest.mark.parametrize("docname", STUDENT_COPY_PAGES)
def test_site_publishes_a_student_copy_without_solutions(site, docname: str) -> None:
    path = site.html / student_copy_path(docname)
    assert path.is_file(), f"the book build wrote no {path}"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    solutions = [i for i, c in enumerate(cells) if "solution" in c["metadata"].get("tags", [])]
    assert solutions == [], f"{path.name}: solution cells {solutions}"
    prose = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "{solution" not in prose and "{exercise" not in prose, f"{path.name}: raw MyST"
    stubs = [c for c in cells if "student" in c["metadata"].get("tags", [])]
    assert stubs, f"{path.name}: no exercise stub for the student to fill in"
    with urlopen(f"{site.url}/{student_copy_path(docname)}") as response:
        assert response.status == 200


@pytest.mark.parametrize("docname", STUDENT_COPY_PAGES)
def test_chapter_links_its_student_copy(site, docname: str) -> None:
    page = (site.html / f"{docname}.html").read_text(encoding="utf-8")
    links = re.findall(r'href="([^"]+)"', page)
    wanted = student_copy_path(docname)
    assert any(link.endswith(wanted) and "colab" not in link for link in links), (
        f"{docname}: no download link to the published {wanted}"
    )
    assert any("colab.research.google.com" in link and link.endswith(wanted) for link in links), (
        f"{docname}: no Open in Colab link to the published {wanted}"
    )
