"""The schedule's sweep for deletions that stopped: a lost task message does not leave a repository or a
project marked forever.

Each test marks something for deletion and drops the task's message (the request's commit callbacks are
captured and never run, as when the broker loses the message), ages the mark past
``APM_DELETE_STALL_SECONDS``, runs the sweep and checks the deletion finishes (eager Celery runs the
queued task here); a second sweep queues nothing and changes nothing.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import redis
from django.utils import timezone

from projects.deletion import project_delete_request
from projects.models import Project
from repos import deletion
from repos.deletion import deletions_resume, repository_delete_request
from repos.models import Repository
from repos.tasks import deletions_resume_task
from tests.faults.test_broker_down import QUEUE, publishing_to
from tests.monitoring.test_cache_outage import RedisServer, free_port, redis_server  # noqa: F401
from tests.repos.test_deletion import fill, rows_of
from tests.world import World

pytestmark = pytest.mark.django_db


def marked_and_message_lost(request: Any, callbacks_capture: Any, **kwargs: Any) -> None:
    with callbacks_capture(execute=False) as callbacks:
        request(**kwargs)
    assert callbacks  # the message that would have been sent: dropped


def age(model: Any, pk: int, *, seconds: float) -> None:
    """Move the mark and its last progress ``seconds`` into the past."""
    row = model.all_objects.get(pk=pk) if model is Project else model.objects.get(pk=pk)
    then = timezone.now() - datetime.timedelta(seconds=seconds)
    progress = dict(row.deletion_progress)
    if "updated_at" in progress:
        progress["updated_at"] = then.isoformat()
    manager = model.all_objects if model is Project else model.objects
    manager.filter(pk=pk).update(deleting_since=then, deletion_progress=progress)


def test_a_repository_whose_message_was_lost_is_deleted_by_the_sweep_and_twice_is_once(
    world: World, settings, django_capture_on_commit_callbacks
):
    repository, other = world.objects["repository"], world.objects["other_repository"]
    rows = fill(repository)
    other_rows = rows_of(other.pk)
    marked_and_message_lost(
        repository_delete_request, django_capture_on_commit_callbacks, repository=repository
    )
    # Half-way: one batch went before the worker died (its progress has an updated_at).
    deletion.repository_delete_batches(repository_id=repository.pk, batch_rows=2, deadline=0.0)
    assert rows_of(repository.pk) != rows

    age(Repository, repository.pk, seconds=settings.APM_DELETE_STALL_SECONDS - 60)
    assert deletions_resume() == {"repositories": [], "projects": []}  # still within its time
    assert Repository.objects.filter(pk=repository.pk).exists()

    age(Repository, repository.pk, seconds=settings.APM_DELETE_STALL_SECONDS + 60)
    assert deletions_resume_task.apply().get() == 1

    assert not Repository.objects.filter(pk=repository.pk).exists()
    assert rows_of(repository.pk) == dict.fromkeys(rows, 0)
    assert rows_of(other.pk) == other_rows
    assert deletions_resume() == {"repositories": [], "projects": []}  # the second sweep: nothing
    assert rows_of(other.pk) == other_rows


def test_a_project_whose_message_was_lost_is_deleted_by_the_sweep_and_twice_is_once(
    world: World, settings, django_capture_on_commit_callbacks
):
    project = world.project
    fill(world.objects["repository"])
    other_rows = rows_of(world.objects["other_repository"].pk)
    marked_and_message_lost(project_delete_request, django_capture_on_commit_callbacks, project=project)
    age(Project, project.pk, seconds=settings.APM_DELETE_STALL_SECONDS + 60)
    # Its repository is marked too, and old as well: the project's deletion takes it, not a second task.
    age(Repository, world.objects["repository"].pk, seconds=settings.APM_DELETE_STALL_SECONDS + 60)

    assert deletions_resume() == {"repositories": [], "projects": [project.pk]}

    assert not Project.all_objects.filter(pk=project.pk).exists()
    assert not Repository.objects.filter(project_id=project.pk).exists()
    assert rows_of(world.objects["repository"].pk) == dict.fromkeys(other_rows, 0)
    assert Project.objects.filter(pk=world.other.pk).exists()
    assert rows_of(world.objects["other_repository"].pk) == other_rows
    assert deletions_resume() == {"repositories": [], "projects": []}


def test_a_message_waiting_for_a_worker_is_not_queued_twice(
    world: World,
    settings,
    django_capture_on_commit_callbacks,
    redis_server: RedisServer,  # noqa: F811
):
    """A real broker with no worker: the first sweep queues the deletion once, the second adds nothing."""
    repository = world.objects["repository"]
    marked_and_message_lost(
        repository_delete_request, django_capture_on_commit_callbacks, repository=repository
    )
    age(Repository, repository.pk, seconds=settings.APM_DELETE_STALL_SECONDS + 60)
    raw = redis.Redis(port=redis_server.port)

    with publishing_to(redis_server.url):
        first = deletions_resume()
        second = deletions_resume()

    assert first == {"repositories": [repository.pk], "projects": []}
    assert second == {"repositories": [], "projects": []}
    assert raw.llen(QUEUE) == 1  # one message waits for a worker
    repository.refresh_from_db()
    assert repository.deletion_progress["resumes"] == 1
    assert repository.deleting_since is not None


def test_with_the_broker_down_the_sweep_changes_nothing(
    world: World, settings, django_capture_on_commit_callbacks
):
    repository = world.objects["repository"]
    marked_and_message_lost(
        repository_delete_request, django_capture_on_commit_callbacks, repository=repository
    )
    age(Repository, repository.pk, seconds=settings.APM_DELETE_STALL_SECONDS + 60)
    before = Repository.objects.get(pk=repository.pk).deletion_progress

    with publishing_to(f"redis://127.0.0.1:{free_port()}/0"):
        assert deletions_resume() == {"repositories": [], "projects": []}

    assert Repository.objects.get(pk=repository.pk).deletion_progress == before  # the next sweep retries
