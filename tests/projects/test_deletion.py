"""Deleting a project: gone from every list at once, its rows deleted in batches in the background.

The world's ALPHA project gets rows in every table that hangs off a project (two repositories full of
commits, file changes and runs; tasks with events, time, dependencies and subtasks; members, an
invitation, a webhook with a delivery, an export with its file). BETA has the same, and the tests
check that none of its rows go.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import connection, models
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apm.jobs import BrokerUnavailable
from insights.selectors import project_portfolio_cached
from projects import deletion
from projects.deletion import project_delete_batches, project_delete_request, project_parts
from projects.models import Invitation, Membership, Project
from projects.selectors import project_get_by_key
from projects.services import project_cache_invalidate
from projects.tasks import project_delete_task
from reports.models import ExportJob
from repos.deletion import _TABLES as REPOSITORY_TABLES
from repos.deletion import repository_delete_request
from repos.models import (
    Commit,
    CommitTaskLink,
    File,
    FileChange,
    FileHistory,
    IngestionRun,
    PushDelivery,
    Repository,
)
from repos.selectors import repository_list
from repos.services import ingestion_request
from tasks.models import Task, TaskDependency, TaskEvent, TimeEntry
from tests.factories import (
    ExportJobFactory,
    IngestionRunFactory,
    ProjectFactory,
    RepositoryFactory,
    TaskFactory,
    TimeEntryFactory,
    WebhookDeliveryFactory,
    WebhookSubscriptionFactory,
)
from tests.faults.test_broker_down import publishing_to
from tests.monitoring.test_cache_outage import free_port
from tests.repos.test_deletion import fill, queued
from tests.world import World
from webhooks.models import WebhookDelivery, WebhookSubscription
from webhooks.services import webhook_event_emit

pytestmark = pytest.mark.django_db


def rows_of(project_id: int) -> dict[str, int]:
    """Rows left per table that belong to ``project_id``."""
    return {
        "exports": ExportJob.objects.filter(project_id=project_id).count(),
        "repositories": Repository.objects.filter(project_id=project_id).count(),
        "commits": Commit.objects.filter(repository__project_id=project_id).count(),
        "file_changes": FileChange.objects.filter(repository__project_id=project_id).count(),
        "file_histories": FileHistory.objects.filter(repository__project_id=project_id).count(),
        "files": File.objects.filter(project_id=project_id).count(),
        "ingestion_runs": IngestionRun.objects.filter(repository__project_id=project_id).count(),
        "push_deliveries": PushDelivery.objects.filter(repository__project_id=project_id).count(),
        "commit_task_links": CommitTaskLink.objects.filter(task__project_id=project_id).count(),
        "time_entries": TimeEntry.objects.filter(task__project_id=project_id).count(),
        "task_dependencies": TaskDependency.objects.filter(task__project_id=project_id).count(),
        "task_events": TaskEvent.objects.filter(project_id=project_id).count(),
        "tasks": Task.objects.filter(project_id=project_id).count(),
        "webhook_deliveries": WebhookDelivery.objects.filter(subscription__project_id=project_id).count(),
        "webhook_subscriptions": WebhookSubscription.objects.filter(project_id=project_id).count(),
        "project_invitations": Invitation.objects.filter(project_id=project_id).count(),
        "project_memberships": Membership.objects.filter(project_id=project_id).count(),
        "projects": Project.all_objects.filter(pk=project_id).count(),
    }


def fill_project(project: Project) -> None:
    """Give ``project`` rows in every table that hangs off it (beyond what the world gave it)."""
    for repository in Repository.objects.filter(project=project):
        fill(repository, commits=6)
    fill(RepositoryFactory(project=project, name=f"{project.key.lower()}-second"), commits=5)
    tasks = list(Task.objects.filter(project=project).order_by("pk"))
    subtask = TaskFactory(project=project, title="Sub", parent=tasks[0])
    TaskFactory(project=project, title="Sub of sub", parent=subtask)
    TaskDependency.objects.create(task=tasks[0], depends_on=tasks[1])
    for task in tasks:
        TimeEntryFactory(task=task)
        TaskEvent.objects.bulk_create(
            TaskEvent(task=task, project=project, kind=TaskEvent.Kind.UPDATED, source=TaskEvent.Source.API)
            for _ in range(4)
        )
    subscription = WebhookSubscriptionFactory(project=project)
    WebhookDeliveryFactory(subscription=subscription)
    WebhookDeliveryFactory(subscription=subscription)
    export = ExportJobFactory(project=project, status=ExportJob.Status.SUCCEEDED)
    export.file.save(f"{project.key}-tasks.csv", ContentFile(b"key,title\n"), save=True)
    expires_at = timezone.now() + datetime.timedelta(days=3)
    Invitation.objects.create(project=project, username=f"guest-{project.key.lower()}", expires_at=expires_at)


@pytest.fixture
def filled(world: World) -> dict[str, Any]:
    fill_project(world.project)
    fill_project(world.other)
    export = ExportJob.objects.get(project=world.project)
    return {
        "rows": rows_of(world.project.pk),
        "other_rows": rows_of(world.other.pk),
        "export_file": export.file.name,
        "storage": export.file.storage,
    }


def assert_gone(world: World, filled: dict[str, Any]) -> None:
    assert rows_of(world.project.pk) == dict.fromkeys(filled["rows"], 0)
    assert rows_of(world.other.pk) == filled["other_rows"]  # BETA's rows all stay
    assert not filled["storage"].exists(filled["export_file"])


def test_a_deleted_project_is_gone_at_once_and_its_rows_go_in_batches(world: World, filled):
    project = world.project
    owner = world.client("owner")

    response = owner.delete("/api/v1/projects/alpha/")  # the task is not run yet

    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["id"], body["key"]) == (project.pk, "ALPHA")
    assert body["deleting_since"]
    assert body["deletion_progress"]["requested_by"] == "owner"
    assert body["deletion_progress"]["deleted"] == {}
    # Gone for everyone, staff too, before a single row is deleted.
    for who in ("owner", "staff"):
        client = world.client(who)
        assert "ALPHA" not in [row["key"] for row in client.get("/api/v1/projects/").json()["results"]]
        assert client.get("/api/v1/projects/ALPHA/").status_code == 404
        assert client.get("/api/v1/projects/ALPHA/summary/").status_code == 404
        assert client.get("/api/v1/projects/ALPHA/members/").status_code == 404
        tasks = client.get("/api/v1/tasks/").json()["results"]
        assert not [row for row in tasks if row["key"].startswith("ALPHA-")]
        assert client.get("/api/v1/repositories/", {"project": "ALPHA"}).json()["results"] == []
    assert project_get_by_key(key="alpha") is None
    assert not repository_list().filter(project=project).exists()
    repository = Repository.objects.filter(project=project).first()
    assert repository is not None
    assert repository.deleting_since is not None
    with pytest.raises(ValidationError, match="being deleted"):
        ingestion_request(repository=repository, trigger=IngestionRun.Trigger.API)
    pending = WebhookDelivery.objects.count()
    webhook_event_emit(project_id=project.pk, event="task.created", data={})
    assert WebhookDelivery.objects.count() == pending  # nothing more is sent for it
    taken = owner.post("/api/v1/projects/", {"name": "Again", "key": "ALPHA"}, format="json")
    assert taken.status_code == 400
    assert "being deleted" in taken.json()["errors"]["key"][0]
    assert rows_of(project.pk) == filled["rows"]  # nothing deleted yet: that is the task's work

    size = 3
    with CaptureQueriesContext(connection) as queries:
        deleted = project_delete_batches(project_id=project.pk, batch_rows=size)

    assert_gone(world, filled)
    expected = {table: count for table, count in filled["rows"].items() if count}
    expected["commit_task_links"] = filled["rows"]["commit_task_links"]
    assert deleted == expected
    # Bounded by the batches, not by the rows: at most a dozen statements per batch of 3 rows (its ids,
    # the DELETE, the two progress records, savepoints), and a few per table and repository.
    assert len(queries) < 12 * sum(expected.values()) / size + 10 * (len(project_parts()) + 2 * 8)
    assert project_delete_batches(project_id=project.pk, batch_rows=size) == {}  # twice is once


def test_progress_is_recorded_and_an_interrupted_deletion_carries_on(world: World, filled, monkeypatch):
    project = world.project
    project_delete_request(project=project, by=world.users["owner"])
    record = deletion._progress_record
    calls = {"n": 0}

    def record_then_die(project_id: int, table: str, count: int) -> None:
        record(project_id, table, count)
        calls["n"] += 1
        if calls["n"] == 4:  # the worker dies in its fourth batch, whose transaction is rolled back
            raise RuntimeError("worker lost")

    monkeypatch.setattr(deletion, "_progress_record", record_then_die)
    with pytest.raises(RuntimeError, match="worker lost"):
        project_delete_batches(project_id=project.pk, batch_rows=2)
    monkeypatch.setattr(deletion, "_progress_record", record)

    project = Project.all_objects.get(pk=project.pk)
    done = project.deletion_progress["deleted"]
    left = rows_of(project.pk)
    before = filled["rows"]
    gone = {table: before[table] - left[table] for table in left if left[table] != before[table]}
    assert 3 <= sum(done.values()) <= 3 * 2  # three committed batches of two rows at most
    assert gone == done
    assert project.deletion_progress["requested_by"] == "owner"

    # A second request (or a redelivered message) carries on; a third finds nothing and fails nothing.
    project_delete_request(project=project, by=world.users["staff"])
    assert Project.all_objects.get(pk=project.pk).deletion_progress["requested_by"] == "owner"
    project_delete_batches(project_id=project.pk, batch_rows=2)
    assert project_delete_batches(project_id=project.pk, batch_rows=2) == {}
    assert_gone(world, filled)


def test_the_task_runs_at_the_commit_and_twice_is_once(
    world: World, filled, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = world.client("owner").delete("/api/v1/projects/ALPHA/")

    assert response.status_code == 202
    assert_gone(world, filled)
    assert project_delete_task.apply(args=(world.project.pk,)).get() == 0  # redelivered: nothing to do
    assert_gone(world, filled)


@pytest.mark.parametrize(
    ("who", "code"), [("maintainer", 403), ("member", 403), ("viewer", 403), ("outsider", 404)]
)
def test_only_owners_delete(world: World, who: str, code: int):
    response = world.client(who).delete("/api/v1/projects/ALPHA/")

    assert response.status_code == code
    assert Project.objects.get(pk=world.project.pk).deleting_since is None


def test_a_project_with_a_repository_being_ingested_is_not_deleted(world: World):
    second = RepositoryFactory(project=world.project, name="second")
    IngestionRunFactory(repository=second, status=IngestionRun.Status.RUNNING, heartbeat_at=timezone.now())

    response = world.client("owner").delete("/api/v1/projects/ALPHA/")

    assert response.status_code == 400
    assert "under way" in response.json()["errors"]["project"][0]
    assert Project.objects.get(pk=world.project.pk).deleting_since is None
    assert not Repository.objects.filter(project=world.project, deleting_since__isnull=False).exists()


def test_a_repository_being_deleted_already_is_deleted_with_its_project(world: World, filled):
    repository = world.objects["repository"]
    repository_delete_request(repository=repository, by=world.users["maintainer"])

    project_delete_request(project=world.project, by=world.users["owner"])
    repository.refresh_from_db()
    assert repository.deletion_progress["requested_by"] == "maintainer"  # its own mark is kept
    project_delete_batches(project_id=world.project.pk, batch_rows=50)

    assert_gone(world, filled)


def test_the_admin_deletes_through_the_service(
    world: World, filled, admin_client, django_capture_on_commit_callbacks
):
    url = f"/admin/projects/project/{world.project.pk}/delete/"

    confirm = admin_client.get(url)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        done = admin_client.post(url, {"post": "yes"})

    assert confirm.status_code == 200
    assert "with its repositories" in confirm.content.decode()
    assert done.status_code == 302
    assert Project.all_objects.get(pk=world.project.pk).deleting_since is not None
    assert admin_client.get("/admin/projects/project/").context["cl"].result_count == 1  # BETA only
    assert rows_of(world.project.pk) == filled["rows"]
    for callback in callbacks:
        callback()
    assert_gone(world, filled)


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_the_answer_is_503_and_nothing_is_marked(world: World):
    project = world.project

    with publishing_to(f"redis://127.0.0.1:{free_port()}/0"):
        response = world.client("owner").delete("/api/v1/projects/ALPHA/")
        with pytest.raises(BrokerUnavailable):
            project_delete_request(project=project)

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    project = Project.objects.get(pk=project.pk)
    assert (project.deleting_since, project.deletion_progress) == (None, {})
    assert not Repository.objects.filter(project=project, deleting_since__isnull=False).exists()
    assert Commit.objects.filter(repository__project=project).exists()


def test_a_delivery_past_its_deadline_stops_after_one_batch_and_the_next_carries_on(
    world: World, filled, monkeypatch, settings
):
    project = world.project
    project_delete_request(project=project)

    first = project_delete_batches(project_id=project.pk, batch_rows=1, deadline=time.monotonic())

    assert first == {"exports": 1}
    assert Project.all_objects.get(pk=project.pk).deletion_progress["deleted"] == {"exports": 1}
    # Each delivery deletes one batch and queues the next (run here, eagerly) until the project is gone.
    monkeypatch.setattr(deletion, "DELETE_TASK_SECONDS", -1.0)
    settings.APM_DELETE_BATCH_ROWS = 100
    assert project_delete_task.apply(args=(project.pk,)).get() > 0
    assert_gone(world, filled)


def test_asking_again_queues_again_only_a_project_deletion_that_stopped(
    world: World, filled, django_capture_on_commit_callbacks, settings
):
    client = world.client("owner")
    with django_capture_on_commit_callbacks() as first:
        assert client.delete("/api/v1/projects/ALPHA/").status_code == 202
    with django_capture_on_commit_callbacks() as moving:
        assert client.delete("/api/v1/projects/ALPHA/").status_code == 202
    settings.APM_DELETE_STALL_SECONDS = 0  # its message lost: no sign of progress since
    with django_capture_on_commit_callbacks() as stalled:
        assert client.delete("/api/v1/projects/ALPHA/").status_code == 202

    assert (queued(first), queued(moving), queued(stalled)) == (1, 0, 1)


@pytest.mark.django_db(transaction=True)
def test_a_mark_undone_by_the_broker_refusal_brings_the_project_back_into_the_cached_portfolio():
    """The broker refuses the message after the mark was committed: a portfolio cached in that moment
    leaves the project out, and undoing the mark (deletion._mark_discard) drops it."""
    project = ProjectFactory(key="BACK")
    Project.all_objects.filter(pk=project.pk).update(deleting_since=timezone.now())  # the mark, committed
    project_cache_invalidate(project_id=project.pk)
    assert "BACK" not in [row["key"] for row in project_portfolio_cached()]  # cached while it stood

    deletion._mark_discard(project.pk)

    assert "BACK" in [row["key"] for row in project_portfolio_cached()]


def test_every_table_that_points_at_a_project_or_its_rows_is_deleted_by_a_part():
    # The parts delete with plain DELETEs, children first: a table pointing at a project, task,
    # repository or commit that no part deletes would stop the deletion on its foreign key for ever.
    part_tables = {"exports": "export_jobs"}  # parts named otherwise than their table
    deleted = {part_tables.get(part.name, part.name) for part in project_parts()}
    deleted |= {table for table, _, _ in REPOSITORY_TABLES}
    missing = [
        f"{model._meta.db_table}.{field.name}"
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if field.is_relation
        and field.related_model in (Project, Task, Repository, Commit)
        and field.remote_field.on_delete is not models.SET_NULL
        and model._meta.db_table not in deleted
    ]
    assert missing == []
