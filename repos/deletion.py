"""Deleting a repository: marked at once, its rows deleted in batches by a background task.

A repository with millions of file changes cannot go through Django's collector (it reads every row it
deletes into memory) nor in one statement (one transaction holding millions of row locks, and a
replica's lag with it). So a request only marks the repository (``deleting_since``): from then on no
list, page, API answer or ingestion sees it. The task ``repos.delete_repository`` then deletes its rows
table by table, children first, ``APM_DELETE_BATCH_ROWS`` primary keys at a time, each batch its own
transaction, and records after each batch how many rows of each table went (``deletion_progress``).
The repository row goes last.

The task can be delivered twice, stopped half-way or requested again: each batch deletes what is still
there, so any number of runs ends where one would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from apm.jobs import BrokerUnavailable, task_enqueue
from apm.retention import batch_delete, deletion_mark, deletion_progress_add, deletion_stalled
from projects.deletion import DELETE_TASK as PROJECT_DELETE_TASK
from projects.deletion import ProjectPart, project_part_register, rows_part
from projects.models import Project
from projects.services import project_cache_invalidate
from repos.ingestion.pipeline import ACTIVE_STATUSES
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
from repos.services import run_is_stale

logger = structlog.get_logger(__name__)
# The Celery task that deletes a marked repository's rows (repos.tasks); on the default queue.
DELETE_TASK = "repos.delete_repository"
# How long one delivery of the task deletes before it queues the next: far below the task time limit.
DELETE_TASK_SECONDS = 300.0

# Children before their parents, so no foreign key ever points at a deleted row: links and file
# changes before commits, deliveries (which point at runs) before runs. Each table is read through an
# index that starts with the repository (or, for links, the commit).
_TABLES: tuple[tuple[str, type[models.Model], str], ...] = (
    ("commit_task_links", CommitTaskLink, "commit__repository_id"),
    ("file_changes", FileChange, "repository_id"),
    ("file_histories", FileHistory, "repository_id"),
    ("files", File, "repository_id"),
    ("push_deliveries", PushDelivery, "repository_id"),
    ("ingestion_runs", IngestionRun, "repository_id"),
    ("commits", Commit, "repository_id"),
)


def repository_delete_request(*, repository: Repository, by: Any = None) -> Repository:
    """Mark ``repository`` as being deleted and queue the task that deletes it; return it, marked.

    Refused (``ValidationError``) while one of its ingestion runs is queued or running: the run would
    write rows behind the deletion. A request for a repository marked already queues the task again
    (which carries on where the last one stopped) when it has shown no progress for
    ``APM_DELETE_STALL_SECONDS``; otherwise the request only answers its progress. A broker that does
    not take the message raises ``BrokerUnavailable`` and leaves the repository as it was (unmarked,
    still listed).
    """
    with transaction.atomic():
        locked = Repository.objects.select_for_update().get(pk=repository.pk)
        if locked.deleting_since is None:
            # A run silent for APM_INGEST_STALE_SECONDS was abandoned by its worker, as for ingestion.
            active = IngestionRun.objects.filter(repository=locked, status__in=ACTIVE_STATUSES)
            if any(not run_is_stale(run) for run in active):
                refusal = "An ingestion of this repository is under way; delete it when it is over."
                raise ValidationError({"repository": [refusal]})
        first, queue = deletion_mark(locked, by=by, task=DELETE_TASK, discard=_mark_discard)
    project_cache_invalidate(project_id=locked.project_id)
    logger.info(
        "repository_delete_requested",
        repository_id=locked.pk,
        first=first,
        queued=queue,
        by=getattr(by, "username", "") or "",
    )
    return locked


def repository_deletion_pending(repository_id: int) -> bool:
    return Repository.objects.filter(pk=repository_id, deleting_since__isnull=False).exists()


def _mark_discard(repository_id: int) -> None:
    repository = Repository.objects.filter(pk=repository_id).first()
    Repository.objects.filter(pk=repository_id).update(deleting_since=None, deletion_progress={})
    if repository is not None:
        # Figures cached while the mark stood (between its commit and the broker's refusal) leave the
        # repository out; it is back, so they are dropped with it.
        project_cache_invalidate(project_id=repository.project_id)


def repository_delete_batches(
    *,
    repository_id: int,
    batch_rows: int | None = None,
    deadline: float | None = None,
    also_record: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Delete the rows of marked repository ``repository_id``, then the repository; return the rows
    deleted by this call per table. A repository gone or not marked is left alone (returns ``{}``).

    With ``deadline`` (a ``time.monotonic()`` value) it stops after the first batch that ends past it,
    leaving the rest for the next call: the task keeps each delivery well inside Celery's time limit.
    ``also_record(table, count)`` is told of every batch in its transaction, as the repository's own
    progress is (a project's deletion adds the figures to its own).
    """
    size = batch_rows or settings.APM_DELETE_BATCH_ROWS
    if not Repository.objects.filter(pk=repository_id, deleting_since__isnull=False).exists():
        return {}
    deleted: dict[str, int] = {}
    for table, model, field in _TABLES:
        if not _table_delete(
            table=table,
            rows=model._default_manager.filter(**{field: repository_id}),
            size=size,
            deadline=deadline,
            deleted=deleted,
            record=lambda table, count: _record_both(repository_id, table, count, also_record),
        ):
            return deleted
    with transaction.atomic():
        repository = Repository.objects.select_for_update().filter(pk=repository_id).first()
        if repository is not None:
            Repository.objects.filter(pk=repository_id)._raw_delete(Repository.objects.db)
            deleted["repositories"] = 1
            if also_record is not None:
                also_record("repositories", 1)
            project_cache_invalidate(project_id=repository.project_id)
            logger.info(
                "repository_deleted",
                repository_id=repository_id,
                deleted=repository.deletion_progress.get("deleted", {}),
                started_at=repository.deletion_progress.get("started_at"),
                finished_at=timezone.now().isoformat(),
            )
    return deleted


def _table_delete(
    *,
    table: str,
    rows: models.QuerySet[Any],
    size: int,
    deadline: float | None,
    deleted: dict[str, int],
    record: Callable[[str, int], None],
) -> bool:
    """Delete ``rows`` in batches through ``batch_delete``, counting them under ``table`` in ``deleted``
    and recording each batch with ``record`` in its transaction; False when ``deadline`` stopped it.

    Plain ``DELETE ... WHERE id IN (...)`` statements (no collector, no signals, no rows read back), ids
    read in no order (any rows of the owner will do, and the index hands the first ones over and stops
    at the limit; sorting by id would sort all the rows left at every batch). At least one batch per
    call whatever the deadline, so every call moves the deletion on.
    """
    stopped = False

    def after_batch(count: int) -> bool:
        nonlocal stopped
        deleted[table] = deleted.get(table, 0) + count
        record(table, count)
        stopped = deadline is not None and time.monotonic() > deadline
        return not stopped

    batch_delete(rows, batch_size=size, after_batch=after_batch, raw=True, in_order=False)
    return not stopped


def _record_both(
    repository_id: int, table: str, count: int, also_record: Callable[[str, int], None] | None
) -> None:
    _progress_record(repository_id, table, count)
    if also_record is not None:
        also_record(table, count)


def _progress_record(repository_id: int, table: str, count: int) -> None:
    deletion_progress_add(Repository.objects, repository_id, table, count)


# --- A project's deletion (projects.deletion): its repositories go through the deletion above ----------


def _project_repositories_mark(project_id: int, requested_by: str) -> None:
    """Mark every repository of the project, under their row locks (as ingestion requests take them):
    refused while one is being ingested; a repository marked already keeps its own mark and progress."""
    repositories = list(Repository.objects.select_for_update().filter(project_id=project_id).order_by("pk"))
    for repository in repositories:
        if repository.deleting_since is not None:
            continue
        active = IngestionRun.objects.filter(repository=repository, status__in=ACTIVE_STATUSES)
        if any(not run_is_stale(run) for run in active):
            refusal = f"An ingestion of {repository.name} is under way; delete the project when it is over."
            raise ValidationError({"project": [refusal]})
    now = timezone.now()
    for repository in repositories:
        if repository.deleting_since is None:
            Repository.objects.filter(pk=repository.pk).update(
                deleting_since=now,
                deletion_progress={
                    "requested_by": requested_by,
                    "started_at": now.isoformat(),
                    "deleted": {},
                    # Its project's deletion marked it: undone with the project's mark.
                    "with_project": True,
                },
            )


def _project_repositories_unmark(project_id: int) -> None:
    Repository.objects.filter(
        project_id=project_id, deleting_since__isnull=False, deletion_progress__with_project=True
    ).update(deleting_since=None, deletion_progress={})


def _project_repositories_delete(
    project_id: int, batch_rows: int, deadline: float | None, record: Callable[[str, int], None]
) -> bool:
    """Each repository of the project in turn, through the repository's own deletion (marked first if
    it came after the request: none can, the project is hidden, but a row is never left behind)."""
    for repository_id in (
        Repository.objects.filter(project_id=project_id).order_by("pk").values_list("pk", flat=True)
    ):
        Repository.objects.filter(pk=repository_id, deleting_since__isnull=True).update(
            deleting_since=timezone.now()
        )
        repository_delete_batches(
            repository_id=repository_id, batch_rows=batch_rows, deadline=deadline, also_record=record
        )
        if repository_deletion_pending(repository_id):
            return False  # the deadline stopped it: the next delivery carries on here
    return True


project_part_register(
    ProjectPart(
        order=200,
        name="repositories",
        delete=_project_repositories_delete,
        mark=_project_repositories_mark,
        unmark=_project_repositories_unmark,
    )
)
# Links from other projects' commits to this project's tasks, if any: they would hold the tasks back.
project_part_register(
    rows_part(
        250,
        "commit_task_links",
        lambda project_id: CommitTaskLink.objects.filter(task__project_id=project_id),
    )
)


# --- The sweep for deletions that stopped --------------------------------------------------------------


def deletions_resume() -> dict[str, list[int]]:
    """Queue again the deletion of every repository and project marked for longer than
    ``APM_DELETE_STALL_SECONDS`` without a sign of progress; return the ids queued, by kind.

    Run by the schedule. A task message the broker lost, or a worker that died with a message that is
    not delivered again, would leave a repository or a project marked (hidden, part-deleted) forever.
    The last sign is the newest of the mark, the last batch recorded (``deletion_progress.updated_at``)
    and the last time this sweep queued it (``resumed_at``, written once the broker took the message),
    so a second sweep right after the first queues nothing, and a deletion still under way is left
    alone. A repository of a project being deleted is the project's deletion's to finish.
    """
    queued: dict[str, list[int]] = {"repositories": [], "projects": []}
    stalled: list[tuple[str, str, Any, int]] = []
    # Marked rows are few (each waits for its task): read them whole, compare the dates here (the JSON
    # field's timestamps are not comparable in SQL the same way on every database).
    for project in Project.all_objects.filter(deleting_since__isnull=False).order_by("pk"):
        if deletion_stalled(project.deleting_since, project.deletion_progress):
            stalled.append(("projects", PROJECT_DELETE_TASK, Project.all_objects, project.pk))
    repositories = Repository.objects.filter(
        deleting_since__isnull=False, project__deleting_since__isnull=True
    ).order_by("pk")
    for repository in repositories:
        if deletion_stalled(repository.deleting_since, repository.deletion_progress):
            stalled.append(("repositories", DELETE_TASK, Repository.objects, repository.pk))
    for kind, task, manager, pk in stalled:
        try:
            task_enqueue(task, pk)
        except BrokerUnavailable as exc:
            # Nothing was queued: the rows stay as they are, for the next sweep.
            logger.warning("deletions_resume_broker_unavailable", reason=str(exc))
            break
        _resumed_record(manager, pk)
        queued[kind].append(pk)
        logger.info("deletion_resumed", kind=kind, id=pk)
    return queued


def _resumed_record(manager: models.Manager[Any], pk: int) -> None:
    # Under the row's lock, as the batches record theirs: a worker already on it adds, never overwrites.
    with transaction.atomic():
        row = manager.select_for_update().filter(pk=pk).only("deletion_progress").first()
        if row is None:
            return  # deleted already (with eager Celery the deletion ran inside task_enqueue)
        progress = dict(row.deletion_progress or {})
        progress["resumed_at"] = timezone.now().isoformat()
        progress["resumes"] = int(progress.get("resumes") or 0) + 1
        manager.filter(pk=pk).update(deletion_progress=progress)
