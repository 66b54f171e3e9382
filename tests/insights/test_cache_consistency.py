"""Never stale: after a write through any entry point, the next read of every cached figure shows it.

One world, several writes (the REST API, the admin, a commit message, an ingestion). Before each write
every family is read twice, so its entry is in the cache (the second read is a hit); after the write,
each family's cached answer must equal the same selector's answer computed with no cache at all.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY

from insights.panels import project_panel_html
from insights.selectors import (
    code_figures_cached,
    project_burndown_cached,
    project_charts_cached,
    project_commits_recent_cached,
    project_health_cached,
    project_portfolio_cached,
    project_progress_cached,
    project_summary_cached,
    repository_counts_cached,
    repository_languages_cached,
    task_priorities_cached,
)
from monitoring.metrics import CACHE_FAMILIES
from projects.models import Project
from repos.models import IngestionRun, Repository
from repos.services import ingestion_request, repository_register
from tasks.models import Task
from tests.admin_helpers import admin_form_data
from tests.factories import UserFactory
from tests.repos.gitrepo import GitRepo

pytestmark = pytest.mark.django_db

NO_CACHE = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}


def figures(project_id: int) -> dict[str, Callable[[], Any]]:
    """Each cached family, read as the API and the admin read it (a fresh project row each time)."""
    project = Project.objects.get(pk=project_id)
    # The repository the test ingests (the world's own is registered first).
    repository = Repository.objects.select_related("project").filter(project=project).latest("pk")
    today = timezone.localdate()
    return {
        "summary": lambda: project_summary_cached(project=project),
        "portfolio": project_portfolio_cached,
        "progress": lambda: project_progress_cached(project=project),
        # Less the time it was computed at, the one field two computations never share.
        "health": lambda: {
            name: value
            for name, value in project_health_cached(project=project).items()
            if name != "checked_at"
        },
        "priorities": lambda: [
            (task.pk, task.status, task.priority, task.due_date, task.score, task.quadrant)
            for task in task_priorities_cached(project=project)
        ],
        "burndown": lambda: project_burndown_cached(
            project=project, start=today - datetime.timedelta(days=30), end=today
        ),
        "hotspots": lambda: code_figures_cached(project=project, figure="hotspots", limit=50),
        "coupling": lambda: code_figures_cached(project=project, figure="coupling", limit=50, min_shared=1),
        "contributors": lambda: code_figures_cached(project=project, figure="contributors", limit=50),
        # The pages' own figures and a rendered panel.
        "charts": lambda: project_charts_cached(project=project, window="90"),
        "commits": lambda: project_commits_recent_cached(project=project),
        "languages": lambda: repository_languages_cached(repository=repository),
        "repository": lambda: repository_counts_cached(repository=repository),
        "fragment": lambda: project_panel_html(project=project, name="burndown", window="30"),
    }


def read_all(project_id: int) -> dict[str, Any]:
    return {family: read() for family, read in figures(project_id).items()}


def computed_now(project_id: int) -> dict[str, Any]:
    """The same selectors with no cache: every figure computed from the database."""
    with override_settings(CACHES=NO_CACHE):
        return read_all(project_id)


def hits(family: str) -> float:
    return REGISTRY.get_sample_value("apm_cache_lookups_total", {"family": family, "result": "hit"}) or 0


def ingest(repository: Repository, capture: Any) -> None:
    with capture(execute=True):
        request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND)
    request.run.refresh_from_db()
    assert request.run.status == IngestionRun.Status.SUCCEEDED, request.run.error


def test_every_family_shows_every_kind_of_write_on_the_next_read(
    world, root: Path, django_capture_on_commit_callbacks
):
    project_id = world.project.pk
    api = world.client("maintainer")
    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    repo = GitRepo(root / "alpha")
    # Commits of yesterday, inside the code figures' default window (the last 90 days).
    repo._clock = int(timezone.now().timestamp()) - 86400
    repo.write("src/core.py", "one\n")
    repo.write("src/util.py", "one\n")
    repo.commit("Start")
    repository = repository_register(project=world.project, source=str(repo.path))
    ingest(repository, django_capture_on_commit_callbacks)  # history: links only, moves nothing
    yesterday = (timezone.localdate() - datetime.timedelta(days=1)).isoformat()

    def api_create() -> None:
        created = api.post("/api/v1/tasks/", {"project": "ALPHA", "title": "Through the API"}, format="json")
        assert created.status_code == 201, created.content

    def api_update() -> None:
        body = {"priority": 1, "due_date": yesterday}
        assert api.patch("/api/v1/tasks/ALPHA-2/", body, format="json").status_code == 200

    def api_transition() -> None:
        moved = api.post("/api/v1/tasks/ALPHA-2/transition/", {"status": "in_progress"}, format="json")
        assert moved.status_code == 200, moved.content

    def admin_change() -> None:
        task = Task.objects.get(project_id=project_id, number=2)
        page = reverse("admin:tasks_task_change", args=[task.pk])
        assert admin.post(page, admin_form_data(admin.get(page), status="in_review")).status_code == 302

    def commit_message() -> None:
        repo.write("src/core.py", "two\n")
        repo.write("src/util.py", "two\n")
        repo.commit("Handle the empty case\n\nfixes ALPHA-1")
        ingest(repository, django_capture_on_commit_callbacks)
        assert Task.objects.get(project_id=project_id, number=1).status == Task.Status.DONE

    def ingestion() -> None:
        repo.write("src/core.py", "three\n")
        repo.write("docs/guide.md", "new\n")
        repo.commit("Write the guide")
        ingest(repository, django_capture_on_commit_callbacks)

    # Each write, and a family its change must show in (so that no write passes by changing nothing).
    writes: list[tuple[Callable[[], None], str]] = [
        (api_create, "summary"),
        (api_update, "priorities"),
        (api_transition, "summary"),
        (admin_change, "summary"),
        (commit_message, "progress"),
        (ingestion, "hotspots"),
    ]
    for write, changed in writes:
        before = read_all(project_id)
        counted = {family: hits(family) for family in CACHE_FAMILIES}
        assert read_all(project_id) == before, write.__name__
        for family in CACHE_FAMILIES:
            assert hits(family) >= counted[family] + 1, (write.__name__, family, "not cached")

        with django_capture_on_commit_callbacks(execute=True):
            write()

        expected = computed_now(project_id)
        assert expected[changed] != before[changed], (write.__name__, changed, "the write changed nothing")
        after = read_all(project_id)
        for family in CACHE_FAMILIES:
            assert after[family] == expected[family], (write.__name__, family)
