"""Every list and detail route costs the same number of queries for 1 row as for 50 (no N+1).

Each request is made by a member with a token that was already used once (so no last-use write).
The counts are those after authentication: the token, joined to its user, is one more query, or none
when the shared cache (Redis) remembers it (apm.services.api_token_authenticate; tests/apm/api).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apm.cache import cache_shared, generation_bump, project_key
from insights.selectors import project_summary_cached
from projects.models import Membership
from tasks.services import task_dependency_add, task_transition
from tests.authentication import authentication_queries
from tests.factories import (
    CommitFactory,
    CommitTaskLinkFactory,
    ExportJobFactory,
    FileChangeFactory,
    FileFactory,
    IngestionRunFactory,
    MembershipFactory,
    ProjectFactory,
    RepositoryFactory,
    TaskFactory,
    UserFactory,
    WebhookDeliveryFactory,
    WebhookSubscriptionFactory,
)
from webhooks.models import WebhookSubscription

pytestmark = pytest.mark.django_db


def more_projects(world: Any, n: int) -> None:
    for _ in range(n):
        MembershipFactory(project=ProjectFactory(), user=world.users["member"], role=Membership.Role.VIEWER)


def more_tasks(world: Any, n: int) -> None:
    for _ in range(n):
        task = TaskFactory(project=world.project, assignee=world.users["member"], actor=world.users["owner"])
        task_dependency_add(task=task, depends_on=world.objects["task"], source="system")


def more_repositories(world: Any, n: int) -> None:
    for _ in range(n):
        IngestionRunFactory(repository=RepositoryFactory(project=world.project))


def more_runs(world: Any, n: int) -> None:
    for _ in range(n):
        IngestionRunFactory(repository=world.objects["repository"])


def more_commits(world: Any, n: int) -> None:
    for _ in range(n):
        commit = CommitFactory(repository=world.objects["repository"])
        CommitTaskLinkFactory(commit=commit, task=world.objects["task"])


def more_file_changes(world: Any, n: int) -> None:
    for _ in range(n):
        FileChangeFactory(commit=world.objects["commit"])


def more_files(world: Any, n: int) -> None:
    for _ in range(n):
        FileFactory(repository=world.objects["repository"])


def more_members(world: Any, n: int) -> None:
    for _ in range(n):
        MembershipFactory(project=world.project, user=UserFactory())


def more_events(world: Any, n: int) -> None:
    task = world.objects["task"]
    for i in range(n):
        task_transition(task=task, status="in_progress" if i % 2 == 0 else "todo", source="system")


def more_dependencies(world: Any, n: int) -> None:
    for _ in range(n):
        task_dependency_add(
            task=world.objects["task"], depends_on=TaskFactory(project=world.project), source="system"
        )


def more_code(world: Any, n: int) -> None:
    """Commits of a few authors, each changing two files of the tree together (code analytics)."""
    repository = world.objects["repository"]
    for number in range(n):
        commit = CommitFactory(repository=repository, author_email=f"dev{number % 7}@example.com")
        for file in (FileFactory(repository=repository), FileFactory(repository=repository)):
            FileChangeFactory(commit=commit, path=file.path)


def more_links(world: Any, n: int) -> None:
    for _ in range(n):
        CommitTaskLinkFactory(commit=world.objects["commit"], task=TaskFactory(project=world.project))


def more_task_commits(world: Any, n: int) -> None:
    for _ in range(n):
        CommitTaskLinkFactory(
            commit=CommitFactory(repository=world.objects["repository"]), task=world.objects["task"]
        )


def more_exports(world: Any, n: int) -> None:
    for _ in range(n):
        ExportJobFactory(project=world.project, requested_by=world.users["member"])


def SUMMARY_QUERIES() -> int:
    """Who may see the project: one query, or none when the shared cache remembers the answer."""
    return 0 if cache_shared() else 1


# (path, how to add rows, queries; each comment lists them after the token lookup)
CASES: list[tuple[str, Callable[[Any, int], None], int | Callable[[], int]]] = [
    # count, page (the caller's role is a subquery of the page query)
    ("/api/v1/projects/", more_projects, 2),
    # same view at the load test's path
    ("/projects", more_projects, 2),
    # count, page (project, assignee, reporter, parent joined), the page's dependencies
    ("/api/v1/tasks/", more_tasks, 3),
    # count, page (latest run id as a subquery), the page's latest runs
    ("/api/v1/repositories/", more_repositories, 3),
    # count, page
    ("/api/v1/ingestion-runs/", more_runs, 2),
    # page (cursor: no count), the page's task links with task and project
    ("/api/v1/commits/", more_commits, 2),
    # page (cursor: no count; commit sha joined)
    ("/api/v1/file-changes/", more_file_changes, 1),
    # count, page
    ("/api/v1/files/", more_files, 2),
    # the project, its members with their users
    ("/api/v1/projects/ALPHA/members/", more_members, 2),
    # the task, its dependencies; count, page of events with their actors
    ("/api/v1/tasks/ALPHA-1/history/", more_events, 4),
    # the task (its dependencies are not read here); count, page of links with their commits and repositories
    ("/api/v1/tasks/ALPHA-1/commits/", more_task_commits, 3),
    # the project (visibility as a subquery); count, page with project and requester joined
    ("/api/v1/projects/ALPHA/exports/", more_exports, 3),
    # the task, its dependencies; the tasks it waits on
    ("/api/v1/tasks/ALPHA-1/dependencies/", more_dependencies, 3),
    # the task, its dependencies
    ("/api/v1/tasks/ALPHA-1/", more_dependencies, 2),
    # the project with the caller's role
    ("/api/v1/projects/ALPHA/", more_members, 1),
    # who may see the project (remembered on a shared cache: none); its summary comes from the cache
    # filled by the warm-up request (computing it is counted below)
    ("/api/v1/projects/ALPHA/summary/", more_events, SUMMARY_QUERIES),
    # the project; progress, health, the page of priorities and the burndown come from the cache filled
    # by the warm-up request (computing them is counted in tests/insights/test_analytics.py)
    ("/api/v1/projects/ALPHA/progress/", more_tasks, 1),
    ("/api/v1/projects/ALPHA/health/", more_tasks, 1),
    ("/api/v1/projects/ALPHA/priorities/", more_tasks, 1),
    ("/api/v1/projects/ALPHA/burndown/", more_events, 1),
    # the repository (latest run id as a subquery), its latest run
    ("/api/v1/repositories/{repository}/", more_runs, 2),
    # the run
    ("/api/v1/ingestion-runs/{run}/", more_runs, 1),
    # the commit, its task links with task and project
    ("/api/v1/commits/{commit}/", more_links, 2),
    # the file change with its commit's sha
    ("/api/v1/file-changes/{file_change}/", more_file_changes, 1),
    # the file
    ("/api/v1/files/{file}/", more_files, 1),
    # the caller's project ids; the portfolio comes from the cache
    ("/dashboard", more_projects, 1),
    # Code analytics: the project; the figures come from the cache filled by the warm-up request
    # (computing them is counted below)
    ("/api/v1/projects/ALPHA/hotspots/", more_code, 1),
    ("/api/v1/projects/ALPHA/coupling/", more_code, 1),
    ("/api/v1/projects/ALPHA/contributors/", more_code, 1),
    # the project, the repository parameter checked against the project's repositories
    ("/api/v1/projects/ALPHA/hotspots/?repository={repository}", more_code, 2),
]


def queries_of(client: Any, url: str) -> int:
    """The queries of a request to ``url`` after authentication."""
    client.get(url, HTTP_ACCEPT="application/json")  # warm-up: token last use, cached summaries
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content[:300]
    return len(captured.captured_queries) - authentication_queries()


@pytest.mark.parametrize(("path", "populate", "expected"), CASES, ids=[case[0] for case in CASES])
def test_queries_do_not_grow_with_rows(world, path, populate, expected):
    client = world.client("member")
    url = path.format(**{name: obj.pk for name, obj in world.objects.items()})
    populate(world, 1)
    with_one = queries_of(client, url)

    populate(world, 49)
    with_fifty = queries_of(client, url)

    assert with_one == with_fifty == (expected() if callable(expected) else expected)


def test_computing_a_summary_costs_the_same_for_any_project_size(world):
    def summary_queries() -> int:
        generation_bump(project_key(world.project.pk))
        with CaptureQueriesContext(connection) as captured:
            project_summary_cached(project=world.project)
        return len(captured.captured_queries)

    with_one = summary_queries()
    more_tasks(world, 50)
    more_commits(world, 50)
    more_events(world, 50)
    with_fifty = summary_queries()

    # the project's row as of now, task aggregates, tasks by status, overdue tasks, repositories, commit
    # aggregates, latest events, latest commits
    assert with_one == with_fifty == 8


# Computing each code analytics answer (empty cache), after authentication, the project: the last
# commit (where the default window ends), then hotspots and coupling one query each, contributors three
# (aggregates per author, names per author, lines per author and directory); the repository parameter
# adds its check. A window given by both ends needs no last commit.
CODE_ANALYTICS = [
    ("/api/v1/projects/ALPHA/hotspots/", 3),
    ("/api/v1/projects/ALPHA/hotspots/?since=2020-01-01&until=2999-12-31", 2),
    ("/api/v1/projects/ALPHA/coupling/?min_shared=1&days=30", 3),
    ("/api/v1/projects/ALPHA/contributors/", 5),
    ("/api/v1/projects/ALPHA/contributors/?repository={repository}", 6),
]


@pytest.mark.parametrize(("path", "expected"), CODE_ANALYTICS, ids=[path for path, _ in CODE_ANALYTICS])
def test_computing_code_analytics_costs_the_same_for_any_history(world, path, expected):
    client = world.client("member")
    url = path.format(repository=world.objects["repository"].pk)
    client.get("/api/v1/me/")  # the token's first use is recorded once, not in the counts below

    def computed_queries() -> tuple[int, int]:
        generation_bump(project_key(world.project.pk))  # what an ingestion does: the next answer is computed
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        assert response.status_code == 200, response.content[:300]
        return len(captured.captured_queries) - authentication_queries(), len(response.json()["results"])

    more_code(world, 1)
    with_one, rows_one = computed_queries()
    more_code(world, 49)
    with_fifty, rows_fifty = computed_queries()

    assert rows_fifty >= rows_one > 0
    assert with_one == with_fifty == expected


# --- Outgoing webhooks (webhooks.api.views): managed by owners, so counted with an owner's token ---


def more_webhooks(world: Any, n: int) -> None:
    for _ in range(n):
        WebhookSubscriptionFactory(project=world.project, created_by=world.users["maintainer"])


def more_deliveries(world: Any, n: int) -> None:
    for _ in range(n):
        WebhookDeliveryFactory(subscription=world.objects["webhook"])


def more_exports(world: Any, n: int) -> None:
    for _ in range(n):
        ExportJobFactory(project=world.project, requested_by=world.users["member"])


# (path, how to add rows, queries; each comment lists them after the token lookup)
WEBHOOK_CASES: list[tuple[str, Callable[[Any, int], None], int]] = [
    # the project (among the caller's), the caller's role, the subscriptions with their creators
    ("/api/v1/projects/ALPHA/webhooks/", more_webhooks, 3),
    # the project, the caller's role, the subscription
    ("/api/v1/projects/ALPHA/webhooks/{webhook}/", more_webhooks, 3),
    # the project, the caller's role, the subscription, the page of deliveries (cursor: no count)
    ("/api/v1/projects/ALPHA/webhooks/{webhook}/deliveries/", more_deliveries, 4),
]


@pytest.mark.parametrize(("path", "populate", "expected"), WEBHOOK_CASES, ids=[c[0] for c in WEBHOOK_CASES])
def test_webhook_routes_cost_a_fixed_number_of_queries(world, path, populate, expected):
    client = world.client("owner")
    more_webhooks(world, 1)
    world.objects["webhook"] = WebhookSubscription.objects.get(project=world.project)
    url = path.format(webhook=world.objects["webhook"].pk)
    populate(world, 1)
    with_one = queries_of(client, url)

    populate(world, 49)
    with_fifty = queries_of(client, url)

    assert with_one == with_fifty == expected
