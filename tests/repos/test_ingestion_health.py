"""A successful ingestion records the project's health (insights' ``projects.health_recompute``, queued
by name once the run commits): the dashboard shows a level after the first run instead of "-"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from projects.models import HealthLevel, Project
from repos.models import IngestionRun, Repository
from repos.services import ingestion_request, repository_register
from tests.factories import ProjectFactory, WebhookSubscriptionFactory
from tests.repos.gitrepo import GitRepo
from webhooks.models import WebhookDelivery, WebhookEvent

pytestmark = pytest.mark.django_db


def ingest(repository: Repository, django_capture_on_commit_callbacks) -> IngestionRun:
    # Eager Celery (the tests' default): the run, and the health task it queues, happen here.
    with django_capture_on_commit_callbacks(execute=True):
        request = ingestion_request(repository=repository, trigger=IngestionRun.Trigger.COMMAND)
    request.run.refresh_from_db()
    return request.run


def small_repo(path: Path) -> GitRepo:
    repo = GitRepo(path)
    repo.write("README.md", "# Demo\n")
    repo.commit("Initial import")
    repo.write("app.py", "print('hello')\n")
    repo.commit("Say hello")
    return repo


def test_a_successful_ingestion_records_the_projects_health(root: Path, django_capture_on_commit_callbacks):
    project = ProjectFactory(status=Project.Status.ACTIVE)
    assert project.health_level == ""
    repository = repository_register(project=project, source=str(small_repo(root / "repo").path))

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == IngestionRun.Status.SUCCEEDED
    project.refresh_from_db()
    assert project.health_level in HealthLevel.values
    assert project.health_score is not None
    assert project.health_checked_at is not None
    assert project.health_checked_at >= run.finished_at


def test_ingesting_nothing_new_records_again_without_announcing_a_change(
    root: Path, django_capture_on_commit_callbacks
):
    project = ProjectFactory(status=Project.Status.ACTIVE)
    WebhookSubscriptionFactory(
        project=project,
        events=[WebhookEvent.PROJECT_HEALTH_CHANGED.value, WebhookEvent.INGESTION_FINISHED.value],
    )
    repository = repository_register(project=project, source=str(small_repo(root / "repo").path))
    ingest(repository, django_capture_on_commit_callbacks)
    project.refresh_from_db()
    level, score, checked_at = project.health_level, project.health_score, project.health_checked_at

    again = ingest(repository, django_capture_on_commit_callbacks)

    assert again.status == IngestionRun.Status.SUCCEEDED
    assert again.commits_done == 0
    project.refresh_from_db()
    # The same history gives the same assessment, taken again (a later time) and announced never:
    # the first assessment has nothing to change from, the second changes nothing.
    assert (project.health_level, project.health_score) == (level, score)
    assert project.health_checked_at is not None
    assert checked_at is not None
    assert project.health_checked_at >= checked_at
    deliveries = WebhookDelivery.objects.filter(subscription__project=project)
    assert not deliveries.filter(event=WebhookEvent.PROJECT_HEALTH_CHANGED).exists()
    assert deliveries.filter(event=WebhookEvent.INGESTION_FINISHED).count() == 2


def test_a_failed_ingestion_records_no_health(root: Path, django_capture_on_commit_callbacks):
    project = ProjectFactory(status=Project.Status.ACTIVE)
    repo = small_repo(root / "repo")
    repository = repository_register(project=project, source=str(repo.path))
    # The source disappears after registration: the run fails at its mirror step.
    shutil.rmtree(repo.path)

    run = ingest(repository, django_capture_on_commit_callbacks)

    assert run.status == IngestionRun.Status.FAILED
    project.refresh_from_db()
    assert project.health_level == ""
    assert project.health_checked_at is None
