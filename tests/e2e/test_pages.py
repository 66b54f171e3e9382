"""The pages in a real browser: sign in, the dashboard, a project, a repository, and the window selector.

Headless Chromium talks to a live server on the suite's database (so these tests are transactional):
pages.js must fetch every lazy panel after the first paint, the charts must be drawn from the data, and
the window selector must change the figures. The data is built through the services and the real
ingestion of a git repository, with dates chosen so that each window shows something the others do not:

- tasks: four created 200 days ago (two done 150 days ago), three created 20 days ago (one done 10 days
  ago, one in progress);
- commits: Bob's 300 days ago (``legacy/old.py``, ``README.md``), Ada's 10, 3 and 1 days ago
  (``src/app.py`` and ``src/util.py`` together, three times: change coupling).

So the last 30 days start with 2 of 4 tasks remaining, and the whole history with none (it starts with
Bob's commit, before any task); ``legacy/old.py`` is a hotspot over a year but not over 30 days.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from projects.models import Project
from projects.services import project_create
from repos.models import IngestionRun, Repository
from repos.services import ingestion_request, repository_register
from tasks.models import Task, TaskEvent
from tasks.services import task_create, task_transition
from tests.factories import UserFactory
from tests.repos.gitrepo import GitRepo

# live_server serves from another thread, which sees committed rows only.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"
ADA = ("Ada Lovelace", "ada@example.com")
BOB = ("Bob Builder", "bob@example.com")
# Long enough for a cold page and its panels on a loaded CI machine; a passing test waits far less.
WAIT_SECONDS = 20


def ago(days: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(days=days)


def lines(count: int, tag: str = "") -> str:
    return "".join(f"{tag}line {n}\n" for n in range(count))


@dataclass
class World:
    project: Project
    repository: Repository
    username: str
    assigned: Task


def task_at(project: Project, title: str, when: dt.datetime, **fields: object) -> Task:
    """A task created through the service, its ``created`` event moved back to ``when``."""
    task = task_create(project=project, title=title, source=TaskEvent.Source.API, **fields)  # type: ignore[arg-type]
    TaskEvent.objects.filter(task=task).update(created_at=when)
    return task


def move(task: Task, status: str, when: dt.datetime) -> None:
    """A transition through the service, its event moved back to ``when``."""
    task_transition(task=task, status=status, source=TaskEvent.Source.API)
    event = TaskEvent.objects.filter(task=task, kind=TaskEvent.Kind.STATUS_CHANGED).latest("id")
    TaskEvent.objects.filter(pk=event.pk).update(created_at=when)


@pytest.fixture
def world(root: Path) -> World:
    # A member, not staff: the pages are for the people on the project (staff would see every project).
    user = UserFactory(username="grace", is_staff=False, password=PASSWORD)
    project = project_create(name="End to end", key="E2E", owner=user)

    old = [task_at(project, f"Old task {n}", ago(200)) for n in range(1, 5)]
    move(old[0], Task.Status.DONE, ago(150))
    move(old[1], Task.Status.DONE, ago(150))
    recent = [task_at(project, f"Recent task {n}", ago(20)) for n in range(1, 4)]
    move(recent[0], Task.Status.DONE, ago(10))
    move(recent[1], Task.Status.IN_PROGRESS, ago(5))
    assigned = task_at(project, "Review the parser", ago(20), assignee=user)

    repo = GitRepo(root / "e2e")
    repo.write("README.md", lines(3))
    repo.write("legacy/old.py", lines(40))
    repo.commit_as("Import the legacy code", BOB, ago(300))
    repo.write("src/app.py", lines(30))
    repo.write("src/util.py", lines(10))
    repo.commit_as("Start the new parser", ADA, ago(10))
    repo.write("src/app.py", lines(35, "b"))
    repo.write("src/util.py", lines(12, "b"))
    repo.commit_as("Parser and helpers together", ADA, ago(3))
    repo.write("src/app.py", lines(36, "c"))
    repo.write("src/util.py", lines(12, "c"))
    repo.commit_as("Speed up the parser", ADA, ago(1))

    repository = repository_register(project=project, source=str(repo.path), name="parser")
    # Transactional test: the run is enqueued on commit and runs eagerly (no broker) before this returns.
    run = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND).run
    run.refresh_from_db()
    assert run.status == IngestionRun.Status.SUCCEEDED, run.error
    return World(project=project, repository=repository, username=user.username, assigned=assigned)


# --- What the browser sees ------------------------------------------------------------------------


def wait(browser: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(browser, WAIT_SECONDS)


def arrive(browser: WebDriver, path: str) -> None:
    """Wait until the browser shows ``path`` (with its query, if any), loaded whole.

    The whole path and query: the sign-in page's own URL ends with the page it leads to (``?next=``).
    """

    def there(driver: WebDriver) -> bool:
        url = urlsplit(driver.current_url)
        shown = url.path + (f"?{url.query}" if url.query else "")
        return shown == path and driver.execute_script("return document.readyState") == "complete"

    wait(browser).until(there)


def sign_in(browser: WebDriver, username: str) -> None:
    """Fill in the pages' sign-in form, which is where APM sends people who are signed out."""
    assert "/accounts/login/" in browser.current_url
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()


def panels_loaded(browser: WebDriver) -> dict[str, WebElement]:
    """Wait until pages.js has fetched every lazy panel; each one must have loaded, none failed."""
    sections = browser.find_elements(By.CSS_SELECTOR, "section[data-src]")
    assert sections, "the page has no lazy panel"
    wait(browser).until(lambda _: all(section.get_attribute("data-loaded") for section in sections))
    states = {panel.get_attribute("data-panel"): panel.get_attribute("data-loaded") for panel in sections}
    assert set(states.values()) == {"true"}, states
    for section in sections:
        assert section.find_element(By.CSS_SELECTOR, ".panel-body").get_attribute("aria-busy") is None
    return {str(section.get_attribute("data-panel")): section for section in sections}


def text_of(element: WebElement) -> str:
    # SVG <title>/<desc> are never rendered, so Selenium's .text (the visible text) is empty for them.
    return str(element.get_attribute("textContent")).strip()


def chart(panel: WebElement, name: str) -> dict[str, object]:
    """A drawn chart: its title, description and the number of points of each series."""
    figure = panel.find_element(By.CSS_SELECTOR, f"figure.chart[data-chart={name}]")
    svg = figure.find_element(By.CSS_SELECTOR, "svg[role=img]")
    assert svg.is_displayed()
    points = {}
    for path in svg.find_elements(By.CSS_SELECTOR, "path.series"):
        # class="series series-<name>", d="M<x>,<y> L<x>,<y> ...": one command a point.
        name = str(path.get_attribute("class")).split("series-")[1].split(maxsplit=1)[0]
        points[name] = len(re.findall(r"[ML][\d.]+,[\d.]+", path.get_attribute("d") or ""))
    return {
        "title": text_of(svg.find_element(By.CSS_SELECTOR, "title")),
        "desc": text_of(svg.find_element(By.CSS_SELECTOR, "desc")),
        "points": points,
    }


def table(panel: WebElement, name: str) -> list[list[str]]:
    """The rows of a table; one behind a chart (in a closed <details>) is opened as a person opens it."""
    found = panel.find_element(By.CSS_SELECTOR, f"table[data-table={name}]")
    for details in found.find_elements(By.XPATH, "ancestor::details[not(@open)]"):
        details.find_element(By.TAG_NAME, "summary").click()
    assert found.is_displayed()
    # Read in the page at once (innerText: what is shown), not cell by cell over the driver.
    rows: list[list[str]] = found.parent.execute_script(
        "return Array.from(arguments[0].tBodies[0].rows, row => Array.from(row.cells, c => c.innerText));",
        found,
    )
    return rows


def bar_labels(panel: WebElement, name: str) -> list[str]:
    items = panel.find_elements(By.CSS_SELECTOR, f"div[data-chart={name}] ul.bars li .bar-label")
    return [item.text for item in items]


def choose_window(browser: WebDriver, label: str, value: str) -> dict[str, WebElement]:
    """Click a window of the selector and wait for the page it leads to, panels and all."""
    nav = browser.find_element(By.CSS_SELECTOR, "nav.window")
    nav.find_element(By.XPATH, f".//a[normalize-space()='{label}']").click()
    arrive(browser, f"{urlsplit(browser.current_url).path}?window={value}")
    current = browser.find_elements(By.CSS_SELECTOR, "nav.window a[aria-current=page]")
    assert [element.text for element in current] == [label]
    return panels_loaded(browser)


# --- The tests -------------------------------------------------------------------------------------


def test_sign_in_then_dashboard_project_and_repository(browser, live_server, world):
    # Signed out, / leads to the dashboard, which sends people to sign in and back.
    browser.get(f"{live_server.url}/")
    arrive(browser, "/accounts/login/?next=/dashboard")
    sign_in(browser, world.username)
    arrive(browser, "/dashboard")

    row = browser.find_element(By.XPATH, "//table//tr[td/a[normalize-space()='E2E']]")
    spark = row.find_element(By.CSS_SELECTOR, "svg.spark[role=img]")
    # The last 12 weeks: Ada's three commits and the one task closed 10 days ago (Bob's and the old
    # closures are older).
    label = str(spark.get_attribute("aria-label"))
    assert "3 commits" in label, label
    assert "1 tasks closed" in label, label
    # 3 of the 8 tasks are done: 38%.
    progress = row.find_element(By.TAG_NAME, "progress")
    assert progress.get_attribute("value") == "38"
    my_tasks = browser.find_element(By.XPATH, "//section[h2[normalize-space()='My open tasks']]")
    assert f"E2E-{world.assigned.number} Review the parser" in my_tasks.text
    runs = browser.find_element(By.XPATH, "//section[h2[normalize-space()='Recent ingestion runs']]")
    assert "E2E · parser" in runs.text
    assert "Succeeded" in runs.text

    # The project page, reached by its link: the default window is 90 days.
    row.find_element(By.LINK_TEXT, "E2E").click()
    arrive(browser, "/projects/E2E/")
    assert browser.find_element(By.CSS_SELECTOR, "nav.window a[aria-current=page]").text == "90 days"
    panels = panels_loaded(browser)
    assert set(panels) == {
        "burndown",
        "progress",
        "health",
        "priorities",
        "hotspots",
        "contributors",
        "coupling",
        "commits",
    }
    burndown = chart(panels["burndown"], "burndown")
    assert burndown["title"] == "Burndown of E2E"
    # 90 days, one point a day, for both lines; 2 old tasks remaining at the start, 5 of 8 now.
    assert burndown["points"] == {"ideal": 90, "remaining": 90}
    assert "2 at the start, 5 now" in str(burndown["desc"])
    burnup = chart(panels["burndown"], "burnup")
    assert "scope went from 4 to 8 (4 added, 0 removed), done from 2 to 3" in str(burnup["desc"])
    rows = table(panels["burndown"], "burndown")
    assert len(rows) == 90
    # Scope, done and remaining of the last day (today).
    assert rows[-1][1:4] == ["8", "3", "5"]
    progress_chart = chart(panels["progress"], "progress")
    assert progress_chart["points"]["progress"] >= 2  # type: ignore[index]
    assert table(panels["progress"], "progress")
    commits = table(panels["commits"], "commits")
    assert [row[1] for row in commits] == [
        "Speed up the parser",
        "Parser and helpers together",
        "Start the new parser",
        "Import the legacy code",
    ]
    assert bar_labels(panels["contributors"], "contributors") == ["Ada Lovelace"]

    # The repository page, reached from the project's list of repositories.
    browser.find_element(By.LINK_TEXT, "parser").click()
    arrive(browser, f"/repositories/{world.repository.pk}/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "parser"
    runs = browser.find_element(By.XPATH, "//section[h2[normalize-space()='Ingestion runs']]")
    assert "Succeeded" in runs.text
    assert "4/4" in runs.text
    panels = panels_loaded(browser)
    assert set(panels) == {"hotspots", "contributors", "coupling", "languages"}
    assert set(bar_labels(panels["hotspots"], "hotspots")) == {"src/app.py", "src/util.py"}
    assert sorted(bar_labels(panels["languages"], "languages")) == ["Markdown", "Python"]
    coupling = [row[:2] for row in table(panels["coupling"], "coupling")]
    assert sorted(map(sorted, coupling)) == [["src/app.py", "src/util.py"]]


def test_the_window_selector_changes_the_project_figures(browser, live_server, world):
    browser.get(f"{live_server.url}/projects/E2E/")
    sign_in(browser, world.username)
    arrive(browser, "/projects/E2E/")
    panels_loaded(browser)

    panels = choose_window(browser, "30 days", "30")
    last_30 = chart(panels["burndown"], "burndown")
    # Only the recent tasks' changes fall in the last 30 days: the old ones are already there.
    assert last_30["points"] == {"ideal": 30, "remaining": 30}
    assert "2 at the start, 5 now" in str(last_30["desc"])
    rows = table(panels["burndown"], "burndown")
    assert len(rows) == 30
    assert rows[0][1:4] == ["4", "2", "2"]
    assert set(bar_labels(panels["hotspots"], "hotspots")) == {"src/app.py", "src/util.py"}
    assert bar_labels(panels["contributors"], "contributors") == ["Ada Lovelace"]

    panels = choose_window(browser, "All", "all")
    everything = chart(panels["burndown"], "burndown")
    # The whole history starts with Bob's commit 300 days ago, before any task: nothing remained then.
    # Longer than 120 days, it is drawn by week.
    assert "0 at the start, 5 now" in str(everything["desc"])
    assert everything["desc"] != last_30["desc"]
    weeks = table(panels["burndown"], "burndown")
    assert 42 <= len(weeks) <= 44
    assert weeks[0][1:4] == ["0", "0", "0"]
    assert weeks[-1][1:4] == ["8", "3", "5"]
    hotspots = set(bar_labels(panels["hotspots"], "hotspots"))
    assert hotspots == {"src/app.py", "src/util.py", "legacy/old.py", "README.md"}
    assert sorted(bar_labels(panels["contributors"], "contributors")) == ["Ada Lovelace", "Bob Builder"]


def test_the_window_selector_changes_the_repository_hotspots(browser, live_server, world):
    browser.get(f"{live_server.url}/repositories/{world.repository.pk}/?window=30")
    sign_in(browser, world.username)
    arrive(browser, f"/repositories/{world.repository.pk}/?window=30")
    panels = panels_loaded(browser)
    assert browser.find_element(By.CSS_SELECTOR, "nav.window a[aria-current=page]").text == "30 days"
    assert "legacy/old.py" not in bar_labels(panels["hotspots"], "hotspots")

    panels = choose_window(browser, "A year", "365")
    hotspots = table(panels["hotspots"], "hotspots")
    changes = {row[0]: int(row[2]) for row in hotspots}
    # Each file's changes over the year, as git made them.
    assert changes == {"src/app.py": 3, "src/util.py": 3, "legacy/old.py": 1, "README.md": 1}
