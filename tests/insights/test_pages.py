"""The pages people look at: the dashboard, a project's page, a repository's page and their panels.

Signed-in only, scoped by membership (a non-member gets the 404 a missing project gets), the panels
rendered once per project and window and shared by every member, their query counts fixed whatever the
number of rows, and every chart backed by its numbers.
"""

from __future__ import annotations

import datetime
import itertools
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apm.cache import PORTFOLIO_NAMESPACE, generation_bump, project_key
from insights.charts import Series, bar_list, line_chart, nice_scale, sparkline
from insights.panels import PROJECT_PANELS, REPOSITORY_PANELS
from insights.selectors import PAGE_WINDOWS
from projects.models import Project
from repos.models import IngestionRun
from tasks.models import TaskEvent
from tasks.services import task_create, task_transition
from tests.api.test_query_counts import more_code, more_commits, more_projects, more_tasks
from tests.factories import (
    CommitFactory,
    CommitTaskLinkFactory,
    FileFactory,
    MembershipFactory,
    ProjectFactory,
    TaskFactory,
)

pytestmark = pytest.mark.django_db


def signed_in(world: Any, who: str) -> Client:
    client = Client()
    client.force_login(world.users[who])
    return client


def page_urls(world: Any) -> list[str]:
    repository = world.objects["repository"].pk
    return [
        "/projects/ALPHA/",
        "/projects/ALPHA/panels/burndown/?window=30",
        f"/repositories/{repository}/",
        f"/repositories/{repository}/panels/languages/",
    ]


def test_the_root_sends_people_to_the_dashboard(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/dashboard"


def test_people_who_are_not_signed_in_are_sent_to_sign_in(world):
    for url in [*page_urls(world), "/dashboard"]:
        response = Client().get(url, HTTP_ACCEPT="text/html")
        if "/panels/" in url:
            # Fetched by the page's script: a 403 it explains, not a sign-in page inside the panel.
            assert response.status_code == 403, url
            continue
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url


@pytest.mark.parametrize("who", ["owner", "viewer", "staff"])
def test_members_and_staff_see_the_pages(world, who):
    client = signed_in(world, who)
    for url in page_urls(world):
        assert client.get(url).status_code == 200, url


def test_a_non_member_gets_the_404_of_a_missing_project(world):
    client = signed_in(world, "outsider")
    for url in page_urls(world):
        assert client.get(url).status_code == 404, url
    missing = client.get("/projects/NOPE/")
    assert missing.status_code == 404
    # BETA is theirs: its page answers.
    assert client.get("/projects/BETA/").status_code == 200


def test_a_key_in_another_case_redirects_to_the_projects_page(world):
    response = signed_in(world, "owner").get("/projects/alpha/?window=30")
    assert response.status_code == 302
    assert response["Location"] == "/projects/ALPHA/?window=30"


def test_a_window_that_does_not_exist_is_a_400_naming_the_choices(world):
    client = signed_in(world, "owner")
    for url in ("/projects/ALPHA/?window=7", "/projects/ALPHA/panels/burndown/?window=all-time"):
        response = client.get(url)
        assert response.status_code == 400
        assert response.content.decode() == "window: give one of 30, 90, 365, all."
    assert client.get("/projects/ALPHA/panels/nope/").status_code == 404


def test_the_project_page_lists_its_panels_for_the_window_chosen(world):
    page = signed_in(world, "owner").get("/projects/ALPHA/?window=365").content.decode()
    sources = dict(re.findall(r'data-panel="(\w+)" data-src="([^"]+)"', page))
    assert set(sources) == {panel.name for panel in PROJECT_PANELS}
    assert sources["burndown"] == "/projects/ALPHA/panels/burndown/?window=365"
    assert sources["health"] == "/projects/ALPHA/panels/health/"  # the same in every window
    assert re.search(r'<a href="\?window=365" aria-current="page">A year</a>', page)


@pytest.mark.parametrize("window", PAGE_WINDOWS)
def test_every_panel_draws_in_every_window(world, window):
    client = signed_in(world, "member")
    more_code(world, 3)
    repository = world.objects["repository"].pk
    expected = {
        "burndown": 'data-chart="burnup"',
        "progress": 'data-chart="progress"',
        "health": 'data-table="health"',
        "priorities": 'data-chart="quadrants"',
        "hotspots": 'data-chart="hotspots"',
        "contributors": 'data-chart="contributors"',
        "coupling": "Files changed by the same commits",
        "commits": 'data-table="commits"',
        "languages": 'data-chart="languages"',
    }
    for panel in PROJECT_PANELS:
        response = client.get(f"/projects/ALPHA/panels/{panel.name}/?window={window}")
        assert response.status_code == 200, panel.name
        assert expected[panel.name] in response.content.decode(), panel.name
    for panel in REPOSITORY_PANELS:
        response = client.get(f"/repositories/{repository}/panels/{panel.name}/?window={window}")
        assert response.status_code == 200, panel.name
        assert expected[panel.name] in response.content.decode(), panel.name


def _backdated_project(world: Any) -> Any:
    """ALPHA with six tasks created 200 days ago and three closed over the last 20 days."""
    project = world.project
    owner = world.users["owner"]
    tasks = [task_create(project=project, title=f"Step {n}", source="batch", actor=owner) for n in range(6)]
    long_ago = timezone.now() - datetime.timedelta(days=200)
    TaskEvent.objects.filter(task__in=tasks).update(created_at=long_ago)
    for days_ago, task in zip((20, 10, 2), tasks, strict=False):
        task_transition(task=task, status="done", source="batch", actor=owner)
        TaskEvent.objects.filter(task=task, to_status="done").update(
            created_at=timezone.now() - datetime.timedelta(days=days_ago)
        )
    generation_bump(project_key(project.pk))
    return project


def test_the_burndown_draws_its_numbers_and_the_window_changes_them(world):
    _backdated_project(world)
    client = signed_in(world, "owner")
    month = client.get("/projects/ALPHA/panels/burndown/?window=30").content.decode()
    everything = client.get("/projects/ALPHA/panels/burndown/?window=all").content.decode()
    # The world's two tasks are created today, ours 200 days ago: 8 in scope, 3 of them done.
    # Ours were in scope a month ago; the world's two were created today; three were closed since.
    assert re.search(r"Remaining tasks from \S+ to \S+: 6 at the start, 5 now", month)
    assert "scope went from 6 to 8 (2 added, 0 removed), done from 0 to 3" in month
    # The whole history starts with the first event, 200 days ago: 201 days, tabulated by week.
    assert "Data (the first day, then 29 weeks)" in everything
    assert "Data (30 days)" in month
    assert re.search(r"Data \(the first day, then \d+ weeks\)", everything)
    remaining = re.search(r'<path class="series series-remaining" d="([^"]+)"', month)
    assert remaining is not None
    assert len(remaining.group(1).split()) == 30  # one point a day


def test_the_progress_chart_follows_history(world):
    _backdated_project(world)
    fragment = signed_in(world, "owner").get("/projects/ALPHA/panels/progress/?window=90").content.decode()
    percents = [float(value) for value in re.findall(r'<td class="num">([\d.]+)%</td>', fragment)]
    assert percents == sorted(percents)  # work was only ever closed
    assert percents[0] < percents[-1]


def test_a_panel_is_rendered_once_for_every_member_and_holds_nothing_of_the_viewer(world):
    owner, viewer = signed_in(world, "owner"), signed_in(world, "viewer")
    first = owner.get("/projects/ALPHA/panels/commits/").content
    with CaptureQueriesContext(connection) as captured:
        second = viewer.get("/projects/ALPHA/panels/commits/").content
    assert first == second
    # The session, its user, the project and the viewer's membership; the fragment is a cache hit.
    assert len(captured.captured_queries) == 4
    assert b"csrfmiddlewaretoken" not in first
    assert b"viewer" not in first
    assert b"owner" not in first


def test_a_panel_shows_a_write_at_the_next_read(world, django_capture_on_commit_callbacks):
    client = signed_in(world, "owner")
    before = client.get("/projects/ALPHA/panels/priorities/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        task_create(
            project=world.project, title="Urgent fix", source="api", actor=world.users["owner"], priority=4
        )
    after = client.get("/projects/ALPHA/panels/priorities/").content.decode()
    assert "Urgent fix" not in before
    assert "Urgent fix" in after


def test_recent_commits_show_their_linked_tasks(world):
    commit = CommitFactory(repository=world.objects["repository"], message="Fix the login\n\nfixes ALPHA-1")
    CommitTaskLinkFactory(commit=commit, task=world.objects["task"])
    fragment = signed_in(world, "member").get("/projects/ALPHA/panels/commits/").content.decode()
    assert "Fix the login" in fragment
    assert f">ALPHA-{world.objects['task'].number}</bdi></span>" in fragment


def test_the_dashboard_shows_health_labels_sparklines_my_tasks_and_runs(world):
    Project.objects.filter(pk=world.project.pk).update(health_level="at_risk", health_score=61)
    TaskFactory(project=world.project, title="Mine to do", assignee=world.users["member"])
    CommitFactory(repository=world.objects["repository"], timestamp=timezone.now())
    page = signed_in(world, "member").get("/dashboard", HTTP_ACCEPT="text/html").content.decode()
    assert "At risk" in page
    assert "at_risk</" not in page
    assert re.search(r'<svg class="spark"[^>]+aria-label="ALPHA, last 12 weeks: \d+ commits', page)
    assert "Mine to do" in page
    assert "Not visible" not in page
    assert "BETA" not in page
    assert f'href="/repositories/{world.objects["repository"].pk}/"' in page


def test_ingestion_runs_say_what_started_them(world):
    """Which run came from a push and which from the API could not be told apart on the pages."""
    repository = world.objects["repository"]
    IngestionRun.objects.create(repository=repository, trigger=IngestionRun.Trigger.WEBHOOK)
    IngestionRun.objects.create(repository=repository, trigger=IngestionRun.Trigger.API)
    client = signed_in(world, "member")

    for url in ("/dashboard", f"/repositories/{repository.pk}/"):
        page = client.get(url, HTTP_ACCEPT="text/html").content.decode()
        assert "· Push webhook" in page, url
        assert "· API" in page, url


def test_the_dashboards_json_is_unchanged_by_the_sparklines(world):
    rows = signed_in(world, "member").get("/dashboard", HTTP_ACCEPT="application/json").json()
    assert [row["key"] for row in rows] == ["ALPHA"]
    assert "activity" not in rows[0]


def queries(client: Client, url: str, *, cold: bool, world: Any) -> int:
    client.get(url)  # session and cached figures warmed
    if cold:
        generation_bump(project_key(world.project.pk))
        generation_bump(PORTFOLIO_NAMESPACE)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code == 200, url
    return len(captured.captured_queries)


PAGES = [
    "/dashboard",
    "/projects/ALPHA/",
    "/projects/ALPHA/panels/burndown/?window=all",
    "/projects/ALPHA/panels/progress/?window=365",
    "/projects/ALPHA/panels/priorities/",
    "/projects/ALPHA/panels/health/",
    "/projects/ALPHA/panels/commits/",
    "/projects/ALPHA/panels/hotspots/",
    "/repositories/{repository}/",
    "/repositories/{repository}/panels/languages/",
]


@pytest.mark.parametrize("cold", [False, True], ids=["cached", "computed"])
@pytest.mark.parametrize("path", PAGES)
def test_a_page_costs_the_same_queries_for_any_number_of_projects_tasks_and_commits(world, path, cold):
    client = signed_in(world, "member")
    url = path.format(repository=world.objects["repository"].pk)

    def grow(n: int) -> None:
        more_projects(world, n)
        more_tasks(world, n)
        more_commits(world, n)
        more_code(world, n)
        for _ in range(n):
            FileFactory(repository=world.objects["repository"], language="Python")

    grow(1)
    small = queries(client, url, cold=cold, world=world)
    grow(10)
    large = queries(client, url, cold=cold, world=world)
    assert small == large


def test_charts_escape_what_they_are_given():
    svg = line_chart(
        title="<script>alert(1)</script>",
        description='"quoted" & <b>',
        labels=["a", "b"],
        series=[Series("x<y", "remaining", [1, 2])],
    )
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "&quot;quoted&quot; &amp; &lt;b&gt;" in svg
    assert "<title>x&lt;y</title>" in svg
    bars = bar_list(title="t", rows=[("<i>", 3, "<u>")])
    assert "<i>" not in bars
    assert "<u>" not in bars
    assert "<rect" in sparkline(label="<x>", bars=[1, 2], line=[0, 1])
    assert 'aria-label="&lt;x&gt;"' in sparkline(label="<x>", bars=[1], line=[1])


def test_a_line_leaves_gaps_where_values_are_missing():
    svg = line_chart(
        title="t", description="d", labels=["a", "b", "c", "d"], series=[Series("s", "done", [1, None, 2, 3])]
    )
    path = re.search(r'<path class="series series-done" d="([^"]+)"', svg)
    assert path is not None
    commands = path.group(1).split()
    assert [command[0] for command in commands] == ["M", "M", "L"]


@pytest.mark.parametrize(
    ("highest", "whole", "expected"),
    [
        (0, True, (1.0, 1.0)),
        (3, True, (3.0, 1.0)),
        (9, True, (10.0, 5.0)),
        (22, True, (30.0, 10.0)),
        (7.3, False, (8.0, 2.0)),
        (0.9, False, (1.0, 0.25)),
        (1234, True, (1500.0, 500.0)),
    ],
)
def test_axes_end_on_round_numbers(highest, whole, expected):
    assert nice_scale(highest, whole=whole) == expected


def test_the_admin_shows_the_charts_and_links_to_the_pages_and_back(world, admin_client):
    project, repository = world.project, world.objects["repository"]
    page = admin_client.get(f"/admin/projects/project/{project.pk}/change/").content.decode()
    assert 'href="/projects/ALPHA/"' in page
    assert 'data-chart="burndown"' in page
    assert "insights/pages.css" in page
    page = admin_client.get(f"/admin/repos/repository/{repository.pk}/change/").content.decode()
    assert f'href="/repositories/{repository.pk}/"' in page
    assert "Languages" in page
    # And back: staff get a link to the admin from the pages; members who are not staff do not.
    project_page = admin_client.get("/projects/ALPHA/").content.decode()
    assert f'href="/admin/projects/project/{project.pk}/change/"' in project_page
    member_page = signed_in(world, "member").get("/projects/ALPHA/").content.decode()
    assert "/admin/" not in member_page


def test_projects_of_others_never_show_in_a_members_dashboard_even_in_activity(world):
    stranger = ProjectFactory(key="GAMMA")
    MembershipFactory(project=stranger)
    CommitFactory(repository__project=stranger, timestamp=timezone.now())
    page = signed_in(world, "member").get("/dashboard", HTTP_ACCEPT="text/html").content.decode()
    assert "GAMMA" not in page


def test_the_dashboards_table_is_shared_only_by_people_who_see_the_same_projects(world):
    stranger = ProjectFactory(key="GAMMA")
    staff_page = signed_in(world, "staff").get("/dashboard", HTTP_ACCEPT="text/html").content.decode()
    member_page = signed_in(world, "member").get("/dashboard", HTTP_ACCEPT="text/html").content.decode()
    viewer_page = signed_in(world, "viewer").get("/dashboard", HTTP_ACCEPT="text/html").content.decode()
    assert "GAMMA" in staff_page  # staff see every project
    assert "GAMMA" not in member_page
    assert stranger.name not in member_page
    # The member and the viewer see the same projects: one table, the same rows.
    table = re.compile(r"<table>.*?</table>", re.S)
    member_table, viewer_table = table.search(member_page), table.search(viewer_page)
    assert member_table is not None
    assert viewer_table is not None
    assert member_table.group(0) == viewer_table.group(0)


def test_every_family_the_pages_read_has_its_metric_series_from_the_start(world):
    from prometheus_client import REGISTRY  # noqa: PLC0415 (read here only)

    from monitoring.metrics import CACHE_FAMILIES  # noqa: PLC0415

    def counts() -> dict[str, float]:
        return {
            sample.labels["family"]: sample.value
            for metric in REGISTRY.collect()
            if metric.name == "apm_cache_lookups"
            for sample in metric.samples
            if sample.name == "apm_cache_lookups_total" and sample.labels["result"] == "miss"
        }

    client = signed_in(world, "owner")
    repository = world.objects["repository"].pk
    before = counts()
    urls = [f"/projects/ALPHA/panels/{panel.name}/" for panel in PROJECT_PANELS]
    urls += [f"/repositories/{repository}/", f"/repositories/{repository}/panels/languages/", "/dashboard"]
    for url in urls:
        assert client.get(url, HTTP_ACCEPT="text/html").status_code == 200
    read = {family for family, value in counts().items() if value > before.get(family, 0)}
    assert {"charts", "commits", "fragment", "languages", "repository", "portfolio"} <= read
    assert read <= set(CACHE_FAMILIES)


# 30 days: 5 weekly points (the first day is one day before the fifth, so not its own); 90: 13 weekly
# points and the first day; a year: the history starts 200 days ago, 29 weekly points and the first day.
@pytest.mark.parametrize(("window", "points"), [("30", 5), ("90", 14), ("365", 30)])
def test_the_progress_trend_has_evenly_spaced_points_ending_today(world, window, points):
    _backdated_project(world)
    fragment = signed_in(world, "owner").get(f"/projects/ALPHA/panels/progress/?window={window}")
    days = [
        datetime.date.fromisoformat(day)
        for day in re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td>", fragment.content.decode())
    ]
    assert len(days) == points
    assert days[-1] == timezone.localdate()
    gaps = [(later - earlier).days for earlier, later in itertools.pairwise(days)]
    assert set(gaps[1:]) == {7}
    assert 4 <= gaps[0] <= 7  # the first day, when it is not within half a week of a weekly point


def test_members_who_are_not_staff_sign_in_on_the_pages_own_form(world):
    member = world.users["member"]
    member.set_password("s3cret-enough")
    member.save()
    client = Client()
    page = client.get("/projects/ALPHA/")
    assert page["Location"] == "/accounts/login/?next=/projects/ALPHA/"
    form = client.get(page["Location"])
    assert form.status_code == 200
    assert 'name="username"' in form.content.decode()
    refused = client.post("/accounts/login/", {"username": "member", "password": "wrong"})
    assert refused.status_code == 200
    assert 'role="alert"' in refused.content.decode()
    signed = client.post(
        "/accounts/login/", {"username": "member", "password": "s3cret-enough", "next": "/projects/ALPHA/"}
    )
    assert signed["Location"] == "/projects/ALPHA/"
    assert client.get("/projects/ALPHA/").status_code == 200
    out = client.post("/accounts/logout/")
    assert out["Location"] == "/accounts/login/"
    assert client.get("/projects/ALPHA/").status_code == 302


def test_a_table_rendered_from_rows_read_before_a_write_is_not_served_after_it(
    world, django_capture_on_commit_callbacks
):
    """The dashboard reads the portfolio's generation before its rows: rows read before a write are
    stored under the generation the write leaves behind, never under the one after it."""
    from apm.cache import generation_get  # noqa: PLC0415
    from insights.panels import portfolio_table_html  # noqa: PLC0415
    from insights.selectors import project_dashboard  # noqa: PLC0415

    member = world.users["member"]
    generation = generation_get(PORTFOLIO_NAMESPACE)
    rows_before = project_dashboard(user=member)
    with django_capture_on_commit_callbacks(execute=True):
        task_create(project=world.project, title="Meanwhile", source="api", actor=world.users["owner"])
    # The slow request finishes now and stores what it read.
    portfolio_table_html(generation=generation, rows=rows_before, render=lambda: "<table>stale</table>")
    page = signed_in(world, "member").get("/dashboard", HTTP_ACCEPT="text/html").content.decode()
    assert "stale" not in page
    open_tasks = re.search(r'<td class="num">(\d+)</td>', page)
    assert open_tasks is not None
    assert int(open_tasks.group(1)) == rows_before[0]["tasks_open"] + 1


def test_a_start_date_of_year_one_does_not_make_all_history_endless(world):
    Project.objects.filter(pk=world.project.pk).update(start_date=datetime.date(1, 1, 1))
    fragment = signed_in(world, "owner").get("/projects/ALPHA/panels/burndown/?window=all").content.decode()
    weeks = re.search(r"Data \(the first day, then (\d+) weeks\)", fragment)
    assert weeks is not None
    assert int(weeks.group(1)) <= 3650 // 7 + 1
    assert len(fragment) < 200_000


def test_a_project_deleted_anyhow_leaves_every_dashboard(world, django_capture_on_commit_callbacks):
    client = signed_in(world, "staff")
    assert "BETA" in client.get("/dashboard", HTTP_ACCEPT="text/html").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        Project.objects.filter(pk=world.other.pk).delete()
    assert "BETA" not in client.get("/dashboard", HTTP_ACCEPT="text/html").content.decode()


def test_options_on_the_dashboard_answers_json(world):
    response = signed_in(world, "member").options("/dashboard")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/api/", "/api/v2/projects/", "/api/v1/nope/"])
def test_any_path_under_api_answers_json_404_even_to_a_post(world, path):
    response = world.client("member").post(path, {}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_panels_are_compressed_and_the_pages_around_them_are_not(world):
    client = signed_in(world, "owner")
    panel = client.get("/projects/ALPHA/panels/burndown/?window=90", HTTP_ACCEPT_ENCODING="gzip")
    assert panel["Content-Encoding"] == "gzip"
    page = client.get("/projects/ALPHA/", HTTP_ACCEPT_ENCODING="gzip")
    assert "Content-Encoding" not in page  # it carries the sign-out form's CSRF token (BREACH)
    assert "csrfmiddlewaretoken" in page.content.decode()


def test_axes_over_more_than_a_year_name_the_year(world):
    Project.objects.filter(pk=world.project.pk).update(
        start_date=timezone.localdate() - datetime.timedelta(days=800)
    )
    client = signed_in(world, "owner")
    everything = client.get("/projects/ALPHA/panels/burndown/?window=all").content.decode()
    month = client.get("/projects/ALPHA/panels/burndown/?window=30").content.decode()
    first = timezone.localdate() - datetime.timedelta(days=800)
    assert f'text-anchor="start">{first:%b %Y}</text>' in everything
    assert f'text-anchor="end">{timezone.localdate():%b %Y}</text>' in everything
    start = timezone.localdate() - datetime.timedelta(days=29)
    assert f'text-anchor="start">{start:%b} {start.day}</text>' in month
