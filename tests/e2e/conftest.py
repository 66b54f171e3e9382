"""The end-to-end tests' browser: headless Chromium driven through Selenium and Debian's chromium-driver.

One browser per test module (starting one takes a second or two), handed to each test with no cookies,
so every test signs in for itself. Without Chromium the tests skip on a developer's machine and fail in
CI (APM_REQUIRE_SERVICES=1), like every other server the suite needs (tests/services.py says what is
missing). A test that fails leaves a screenshot and the page's HTML in its tmp_path, named in the report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests import services
from tests.conftest import services_required
from tests.repos.conftest import root

__all__ = ["root"]

# Wide enough for the pages' two-column grid, so the test sees the layout people see.
WINDOW_SIZE = "1280,1024"


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    problem = services.chromium_missing()
    if problem:
        if services_required():
            pytest.fail(f"the end-to-end tests need {problem}; APM_REQUIRE_SERVICES=1 says it must be there")
        pytest.skip(f"no headless browser here: {problem}")
    browser, driver = services.chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for argument in (
        "--headless=new",
        # CI runs as root, where Chromium's sandbox cannot start; containers have a small /dev/shm.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW_SIZE}",
    ):
        options.add_argument(argument)
    # The console is kept, so a test can read what the page reported (a refused script, a failed load).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver named explicitly: Selenium Manager would otherwise try to download one.
    session = webdriver.Chrome(options=options, service=Service(executable_path=str(driver)))
    session.set_page_load_timeout(30)
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture
def browser(chromium: WebDriver, live_server, tmp_path: Path) -> WebDriver:  # type: ignore[no-untyped-def]
    """The module's browser on the live server, signed out (the previous test's user is gone)."""
    chromium.get(f"{live_server.url}/static/insights/favicon.svg")
    chromium.delete_all_cookies()
    chromium.get_log("browser")  # what earlier tests left in the console
    return chromium


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    """Keep what the browser showed when a test failed: a screenshot and the HTML, in its tmp_path."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    if report.when != "call" or not report.failed or "browser" not in funcargs:
        return
    driver: WebDriver = funcargs["browser"]
    directory: Path = funcargs["tmp_path"]
    screenshot, html = directory / "screenshot.png", directory / "page.html"
    try:
        driver.save_screenshot(str(screenshot))
        html.write_text(driver.page_source, encoding="utf-8")
    except Exception as error:  # the browser may be what failed: the test's own error is the one to see
        report.sections.append(("end-to-end", f"no screenshot: {error}"))
        return
    report.sections.append(("end-to-end", f"{driver.current_url}\nscreenshot: {screenshot}\nHTML: {html}"))
