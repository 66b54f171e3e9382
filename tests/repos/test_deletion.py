"""Deleting a repository: gone from every list at once, its rows deleted in batches in the background.

The world's ALPHA repository gets a few hundred rows in every table that hangs off a repository; BETA's
repository keeps its own, and the tests check that none of them go. Batches are made small
(``batch_rows``) so that each table takes several, and the queries of a whole deletion are counted.
"""

from __future__ import annotations

import datetime
import math
import time
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apm.jobs import BrokerUnavailable
from repos import deletion
from repos.deletion import repository_delete_batches, repository_delete_request
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
from repos.selectors import commit_list, file_change_list, file_list, push_candidates, repository_list
from repos.services import ingestion_request, repository_register
from repos.tasks import repository_delete_task
from tests.factories import CommitFactory, CommitTaskLinkFactory, IngestionRunFactory, TaskFactory
from tests.faults.test_broker_down import publishing_to
from tests.monitoring.test_cache_outage import free_port
from tests.world import World

pytestmark = pytest.mark.django_db

MODELS = (CommitTaskLink, FileChange, FileHistory, File, PushDelivery, IngestionRun, Commit)


def rows_of(repository_id: int) -> dict[str, int]:
    """Rows left per table for ``repository_id``."""
    return {
        table: model._default_manager.filter(**{field: repository_id}).count()
        for table, model, field in deletion._TABLES
    }


def fill(repository: Repository, *, commits: int = 12, changes_per_commit: int = 3) -> dict[str, int]:
    """Give ``repository`` rows in every table that hangs off it; return how many per table."""
    task = TaskFactory(project=repository.project)
    made = [CommitFactory(repository=repository) for _ in range(commits)]
    FileChange.objects.bulk_create(
        FileChange(commit=commit, repository=repository, path=f"src/{n}.py", change_type="M", added=1)
        for commit in made
        for n in range(changes_per_commit)
    )
    paths = [f"src/{n}.py" for n in range(changes_per_commit)]
    FileHistory.objects.bulk_create(FileHistory(repository=repository, path=path) for path in paths)
    File.objects.bulk_create(File(repository=repository, project=repository.project, path=p) for p in paths)
    for commit in made[:5]:
        CommitTaskLinkFactory(commit=commit, task=task)
    runs = [
        IngestionRunFactory(repository=repository, status=IngestionRun.Status.SUCCEEDED) for _ in range(3)
    ]
    for n, run in enumerate(runs):
        PushDelivery.objects.create(
            repository=repository, delivery_id=f"d{n}", body_sha256=f"{n:064d}", run=run
        )
    return rows_of(repository.pk)


@pytest.fixture
def filled(world: World) -> dict[str, Any]:
    repository = world.objects["repository"]
    other = world.objects["other_repository"]
    fill(other, commits=4)
    return {"repository": repository, "rows": fill(repository), "other_rows": rows_of(other.pk)}


def test_a_deleted_repository_is_gone_at_once_and_its_rows_go_in_batches(world: World, filled):
    repository, other = filled["repository"], world.objects["other_repository"]
    client = world.client("owner")

    response = client.delete(f"/api/v1/repositories/{repository.pk}/")  # the task is not run yet

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["id"] == repository.pk
    assert body["deleting_since"]
    assert body["deletion_progress"]["requested_by"] == "owner"
    assert body["deletion_progress"]["deleted"] == {}
    # Gone from the API, the selectors and the push webhook's lookup before a single row is deleted.
    listed = [row["id"] for row in client.get("/api/v1/repositories/").json()["results"]]
    assert repository.pk not in listed
    assert client.get(f"/api/v1/repositories/{repository.pk}/").status_code == 404
    assert not repository_list().filter(pk=repository.pk).exists()
    assert not commit_list().filter(repository=repository).exists()
    assert not file_change_list().filter(repository=repository).exists()
    assert not file_list().filter(repository=repository).exists()
    assert not push_candidates(repository_id=str(repository.pk), urls=[]).exists()
    assert client.get("/api/v1/commits/", {"repository": repository.pk}).json()["results"] == []
    with pytest.raises(ValidationError, match="being deleted"):
        ingestion_request(repository=repository, trigger=IngestionRun.Trigger.API)
    with pytest.raises(ValidationError, match="being deleted"):
        repository_register(project=world.project, source=repository.source)
    project_page = world.client("owner").get("/api/v1/projects/ALPHA/summary/").json()
    assert project_page["repositories"] == 0
    assert rows_of(repository.pk) == filled["rows"]  # nothing deleted yet: that is the task's work

    size = 4
    with CaptureQueriesContext(connection) as queries:
        deleted = repository_delete_batches(repository_id=repository.pk, batch_rows=size)

    assert deleted == {**filled["rows"], "repositories": 1}
    assert rows_of(repository.pk) == dict.fromkeys(filled["rows"], 0)
    assert not Repository.objects.filter(pk=repository.pk).exists()
    assert rows_of(other.pk) == filled["other_rows"]
    # Bounded by the batches, not the rows: per batch its ids, the DELETE and the progress (read under
    # lock, written), plus a savepoint's two statements; per table one last, empty read of ids.
    batches = sum(math.ceil(count / size) for count in filled["rows"].values())
    assert len(queries) <= 6 * batches + len(MODELS) + 6
    assert sum(filled["rows"].values()) > 2 * batches  # the figure above says something


def test_progress_is_recorded_and_an_interrupted_deletion_carries_on(world: World, filled, monkeypatch):
    repository = filled["repository"]
    repository_delete_request(repository=repository, by=world.users["maintainer"])
    record = deletion._progress_record
    calls = {"n": 0}

    def record_then_die(repository_id: int, table: str, count: int) -> None:
        record(repository_id, table, count)
        calls["n"] += 1
        if calls["n"] == 5:  # the worker dies in its fifth batch, whose transaction is rolled back
            raise RuntimeError("worker lost")

    monkeypatch.setattr(deletion, "_progress_record", record_then_die)
    with pytest.raises(RuntimeError, match="worker lost"):
        repository_delete_batches(repository_id=repository.pk, batch_rows=3)
    monkeypatch.setattr(deletion, "_progress_record", record)

    repository.refresh_from_db()
    done = repository.deletion_progress["deleted"]
    left = rows_of(repository.pk)
    assert done == {"commit_task_links": 5, "file_changes": 6}
    assert {
        table: filled["rows"][table] - left[table] for table in left if left[table] != filled["rows"][table]
    } == done
    assert repository.deletion_progress["requested_by"] == "maintainer"

    # A second request (or a redelivered message) carries on; a third finds nothing and fails nothing.
    assert repository_delete_request(repository=repository, by=world.users["owner"]).deleting_since
    repository.refresh_from_db()
    assert repository.deletion_progress["requested_by"] == "maintainer"  # still the first request
    deleted = repository_delete_batches(repository_id=repository.pk, batch_rows=3)
    assert deleted["file_changes"] == filled["rows"]["file_changes"] - 6
    assert "commit_task_links" not in deleted
    assert repository_delete_batches(repository_id=repository.pk, batch_rows=3) == {}
    assert rows_of(repository.pk) == dict.fromkeys(filled["rows"], 0)
    assert not Repository.objects.filter(pk=repository.pk).exists()
    assert rows_of(world.objects["other_repository"].pk) == filled["other_rows"]


def test_the_task_runs_at_the_commit_and_twice_is_once(
    world: World, filled, django_capture_on_commit_callbacks
):
    repository = filled["repository"]

    with django_capture_on_commit_callbacks(execute=True):
        response = world.client("maintainer").delete(f"/api/v1/repositories/{repository.pk}/")

    assert response.status_code == 202
    assert not Repository.objects.filter(pk=repository.pk).exists()
    assert rows_of(repository.pk) == dict.fromkeys(filled["rows"], 0)
    assert repository_delete_task.apply(args=(repository.pk,)).get() == 0  # redelivered: nothing to do
    assert rows_of(world.objects["other_repository"].pk) == filled["other_rows"]


@pytest.mark.parametrize(("who", "code"), [("member", 403), ("viewer", 403), ("outsider", 404)])
def test_only_owners_and_maintainers_delete(world: World, who: str, code: int):
    repository = world.objects["repository"]

    response = world.client(who).delete(f"/api/v1/repositories/{repository.pk}/")

    assert response.status_code == code
    repository.refresh_from_db()
    assert repository.deleting_since is None


def test_a_repository_being_ingested_is_not_deleted(world: World):
    repository = world.objects["repository"]
    IngestionRunFactory(
        repository=repository, status=IngestionRun.Status.RUNNING, heartbeat_at=timezone.now()
    )

    response = world.client("owner").delete(f"/api/v1/repositories/{repository.pk}/")

    assert response.status_code == 400
    assert "under way" in response.json()["errors"]["repository"][0]
    repository.refresh_from_db()
    assert repository.deleting_since is None


def test_a_run_abandoned_by_its_worker_does_not_block_the_deletion(world: World, settings):
    repository = world.objects["repository"]
    silent = timezone.now() - datetime.timedelta(seconds=settings.APM_INGEST_STALE_SECONDS + 60)
    IngestionRunFactory(repository=repository, status=IngestionRun.Status.RUNNING, heartbeat_at=silent)

    assert repository_delete_request(repository=repository).deleting_since is not None


def test_the_admin_deletes_through_the_service(
    world: World, filled, admin_client, django_capture_on_commit_callbacks
):
    repository = filled["repository"]
    url = f"/admin/repos/repository/{repository.pk}/delete/"

    confirm = admin_client.get(url)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        done = admin_client.post(url, {"post": "yes"})

    assert confirm.status_code == 200
    assert done.status_code == 302
    assert callbacks  # the task, queued at the commit (and the project's figures dropped)
    repository.refresh_from_db()
    assert repository.deleting_since is not None
    assert admin_client.get("/admin/repos/repository/").context["cl"].result_count == 1  # BETA's only
    for callback in callbacks:
        callback()
    assert not Repository.objects.filter(pk=repository.pk).exists()
    assert rows_of(repository.pk) == dict.fromkeys(filled["rows"], 0)
    assert rows_of(world.objects["other_repository"].pk) == filled["other_rows"]


@pytest.mark.django_db(transaction=True)
def test_with_the_broker_down_the_answer_is_503_and_nothing_is_marked(world: World):
    repository = world.objects["repository"]

    with publishing_to(f"redis://127.0.0.1:{free_port()}/0"):
        response = world.client("owner").delete(f"/api/v1/repositories/{repository.pk}/")
        with pytest.raises(BrokerUnavailable):
            repository_delete_request(repository=repository)

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    repository.refresh_from_db()
    assert (repository.deleting_since, repository.deletion_progress) == (None, {})
    assert Commit.objects.filter(repository=repository).exists()


def test_a_delivery_past_its_deadline_stops_after_one_batch_and_the_next_carries_on(
    world: World, filled, monkeypatch, settings
):
    repository = filled["repository"]
    repository_delete_request(repository=repository)

    first = repository_delete_batches(repository_id=repository.pk, batch_rows=2, deadline=time.monotonic())

    assert first == {"commit_task_links": 2}
    repository.refresh_from_db()
    assert repository.deletion_progress["deleted"] == {"commit_task_links": 2}
    # Each delivery deletes one batch and queues the next (run here, eagerly) until the repository is gone.
    monkeypatch.setattr(deletion, "DELETE_TASK_SECONDS", -1.0)
    settings.APM_DELETE_BATCH_ROWS = 10
    assert repository_delete_task.apply(args=(repository.pk,)).get() == 3  # its batch: the links left
    assert not Repository.objects.filter(pk=repository.pk).exists()
    assert rows_of(repository.pk) == dict.fromkeys(filled["rows"], 0)


def test_asking_again_answers_the_progress_and_queues_again_only_a_deletion_that_stopped(
    world: World, filled, django_capture_on_commit_callbacks, settings
):
    repository = filled["repository"]
    client = world.client("owner")
    url = f"/api/v1/repositories/{repository.pk}/"
    with django_capture_on_commit_callbacks() as first:
        assert client.delete(url).status_code == 202
    repository_delete_batches(repository_id=repository.pk, batch_rows=4, deadline=0)  # one batch

    with django_capture_on_commit_callbacks() as moving:
        again = client.delete(url)

    assert again.status_code == 202
    assert again.json()["deletion_progress"]["deleted"]  # the batch done shows
    assert (queued(first), queued(moving)) == (1, 0)  # a deletion at work gets no second delivery
    # Its message lost: nothing happened for longer than APM_DELETE_STALL_SECONDS.
    settings.APM_DELETE_STALL_SECONDS = 0
    with django_capture_on_commit_callbacks() as stalled:
        assert client.delete(url).status_code == 202
    assert queued(stalled) == 1


def queued(callbacks: list[Any]) -> int:
    """How many of a transaction's on-commit callbacks queue a task (apm.jobs.task_enqueue_on_commit)."""
    return sum("task_enqueue_on_commit" in callback.__qualname__ for callback in callbacks)
