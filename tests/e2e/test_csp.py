"""Every kind of HTML page under the Content-Security-Policy, in a real browser: nothing refused.

Chromium writes each Content-Security-Policy violation (a refused script, style, image, frame or worker)
to its console; each test reads the console after every page and checks that the page really rendered
(panels loaded, charts drawn, Swagger's operations and ReDoc's sections built by their scripts), so a
page that breaks quietly under the policy, or one that rendered nothing to be refused, both fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from projects.models import Project
from projects.services import project_create
from repos.models import IngestionRun, Repository
from repos.services import ingestion_request, repository_register
from tasks.models import TaskEvent
from tasks.services import task_create, task_transition
from tests.factories import UserFactory
from tests.repos.gitrepo import GitRepo

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
WAIT_SECONDS = 20
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
# How Chromium words the refusal of an inline script.
INLINE = "Executing inline script violates"


class World:
    def __init__(self, project: Project, repository: Repository, username: str) -> None:
        self.project, self.repository, self.username = project, repository, username


@pytest.fixture
def world(root: Path) -> World:
    # Staff, so that one person sees the pages, the admin and the API.
    user = UserFactory(username="csp", is_staff=True, is_superuser=True, password=PASSWORD)
    project = project_create(name="Policy", key="CSP", owner=user)
    for n in range(3):
        task = task_create(project=project, title=f"Task {n}", source=TaskEvent.Source.API)
    task_transition(task=task, status="done", source=TaskEvent.Source.API)
    repo = GitRepo(root / "csp")
    repo.write("src/app.py", "print('one')\n")
    repo.commit("Start")
    repo.write("src/app.py", "print('two')\n")
    repo.commit("Go on")
    repository = repository_register(project=project, source=str(repo.path), name="policy")
    run = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND).run
    run.refresh_from_db()
    assert run.status == IngestionRun.Status.SUCCEEDED, run.error
    return World(project, repository, user.username)


def violations(browser: WebDriver) -> list[str]:
    """The console's Content-Security-Policy messages since the last read."""
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Content-Security-Policy" in entry["message"]
    ]


NOT_ENFORCED = "no policy in force: an inline script injected into the page ran"


def refusals(browser: WebDriver) -> list[str]:
    """What the policy refused on the page so far, once the policy is shown to be in force.

    An inline script is injected last: the policy must refuse it (else the list names NOT_ENFORCED),
    and its own refusal is read off the console, so it does not count against the page.
    """
    found = violations(browser)
    ran = browser.execute_script(
        "const probe = document.createElement('script');"
        "probe.textContent = 'window.cspProbeRan = true;';"
        "document.head.appendChild(probe);"
        "return window.cspProbeRan === true;"
    )
    if ran:
        return [*found, NOT_ENFORCED]
    after: list[str] = []
    wait(browser).until(lambda _: after.extend(violations(browser)) or any(INLINE in m for m in after))
    after.remove(next(message for message in after if INLINE in message))
    return found + after


def wait(browser: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(browser, WAIT_SECONDS)


def loaded(browser: WebDriver) -> bool:
    return browser.execute_script("return document.readyState") == "complete"


def gone(element: WebElement) -> bool:
    """The page holding ``element`` was replaced.

    While Chromium swaps documents, asking about an element of the old one may fail with an inspector
    error ("Node with given id does not belong to the document") instead of a stale reference: both
    mean the old page is gone.
    """
    try:
        element.is_enabled()
    except WebDriverException:
        return True
    return False


def visit(browser: WebDriver, url: str, rendered: str) -> None:
    """Open ``url`` and wait until the CSS selector ``rendered`` matches a shown element."""
    browser.get(url)
    wait(browser).until(loaded)
    wait(browser).until(
        lambda _: any(e.is_displayed() for e in browser.find_elements(By.CSS_SELECTOR, rendered))
    )


def panels_loaded(browser: WebDriver) -> None:
    """pages.js fetched every lazy panel, and none failed."""
    sections = browser.find_elements(By.CSS_SELECTOR, "section[data-src]")
    assert sections, "the page has no lazy panel"
    wait(browser).until(lambda _: all(section.get_attribute("data-loaded") for section in sections))
    assert {section.get_attribute("data-loaded") for section in sections} == {"true"}


def sign_in(browser: WebDriver, url: str, username: str) -> None:
    browser.get(url)
    wait(browser).until(loaded)
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()


def test_the_pages_run_under_the_policy(browser, live_server, world):
    seen: dict[str, list[str]] = {}

    sign_in(browser, f"{live_server.url}/accounts/login/", world.username)
    wait(browser).until(lambda driver: driver.current_url.endswith("/dashboard") and loaded(driver))
    seen["sign-in"] = refusals(browser)

    visit(browser, f"{live_server.url}/dashboard", "table a[href='/projects/CSP/']")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.spark[role=img]")
    seen["dashboard"] = refusals(browser)

    visit(browser, f"{live_server.url}/projects/CSP/", "nav.window")
    panels_loaded(browser)
    assert browser.find_element(By.CSS_SELECTOR, "figure.chart[data-chart=burndown] svg").is_displayed()
    seen["project"] = refusals(browser)

    visit(browser, f"{live_server.url}/repositories/{world.repository.pk}/", "h1")
    panels_loaded(browser)
    seen["repository"] = refusals(browser)

    assert seen == {page: [] for page in seen}


def test_the_lockout_page_runs_under_the_policy(browser, live_server, world, settings):
    settings.AXES_ENABLED = True
    for n in range(settings.AXES_FAILURE_LIMIT):
        browser.get(f"{live_server.url}/accounts/login/")
        wait(browser).until(loaded)
        browser.find_element(By.ID, "id_username").send_keys(world.username)
        browser.find_element(By.ID, "id_password").send_keys(f"guess {n}")
        submit = browser.find_element(By.CSS_SELECTOR, "form [type=submit]")
        submit.click()
        wait(browser).until(lambda _, submit=submit: gone(submit))
        wait(browser).until(loaded)

    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign-in paused"
    assert "in 15 minutes" in browser.find_element(By.CSS_SELECTOR, "p.error").text
    assert refusals(browser) == []


def test_the_admin_runs_under_the_policy(browser, live_server, world):
    seen: dict[str, list[str]] = {}

    sign_in(browser, f"{live_server.url}/admin/login/", world.username)
    wait(browser).until(lambda driver: driver.current_url.endswith("/admin/") and loaded(driver))
    seen["sign-in and index"] = refusals(browser)

    visit(browser, f"{live_server.url}/admin/projects/project/", "#result_list")
    assert "CSP" in browser.find_element(By.ID, "result_list").text
    # The admin's own scripts ran: the select-all checkbox of the actions is wired up.
    browser.find_element(By.ID, "action-toggle").click()
    assert browser.find_element(By.CSS_SELECTOR, "#result_list tbody input.action-select").is_selected()
    seen["changelist"] = refusals(browser)

    visit(
        browser, f"{live_server.url}/admin/projects/project/{world.project.pk}/change/", ".admin-charts svg"
    )
    assert browser.find_element(By.ID, "id_name").get_attribute("value") == "Policy"
    seen["change form"] = refusals(browser)

    visit(browser, f"{live_server.url}/admin/repos/repository/{world.repository.pk}/change/", "#id_name")
    seen["repository change form"] = refusals(browser)

    assert seen == {page: [] for page in seen}


def test_the_api_pages_run_under_the_policy(browser, live_server, world):
    seen: dict[str, list[str]] = {}
    sign_in(browser, f"{live_server.url}/accounts/login/", world.username)
    wait(browser).until(lambda driver: driver.current_url.endswith("/dashboard") and loaded(driver))
    violations(browser)

    visit(browser, f"{live_server.url}/api/v1/projects/", ".response-info")
    assert '"key": "CSP"' in browser.find_element(By.CSS_SELECTOR, ".response-info").text
    # The browsable API's scripts ran (jQuery and its forms' code).
    assert browser.execute_script("return typeof window.jQuery") == "function"
    seen["browsable API"] = refusals(browser)

    visit(browser, f"{live_server.url}/api/v1/docs/", ".swagger-ui .opblock")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock")) > 20
    seen["Swagger UI"] = refusals(browser)

    visit(browser, f"{live_server.url}/api/v1/redoc/", "[data-section-id^='tag/']")
    assert "APM (AutoProjectManagement) API" in browser.find_element(By.TAG_NAME, "h1").text
    # The one refusal on purpose: ReDoc's footer logo from its vendor's CDN (config/api_router.py). The
    # documentation is served from APM alone; ReDoc drops the image when it does not load.
    refused = refusals(browser)
    assert [message for message in refused if REDOC_LOGO in message and "img-src" in message] == [
        message for message in refused if REDOC_LOGO in message
    ]
    seen["ReDoc"] = [message for message in refused if REDOC_LOGO not in message]

    assert seen == {page: [] for page in seen}
