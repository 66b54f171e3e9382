"""Deleting a project: marked at once, its rows deleted in batches by a background task.

Django's collector would read every row of every repository of the project into memory (millions of
file changes) before deleting anything, in one transaction. So, as for a repository (repos.deletion), a
request only marks the project (``deleting_since``): the default manager hides it from then on, and the
apps above mark what they own that must disappear with it (its repositories, which every list, page,
webhook lookup and ingestion already leave out once marked). The task ``projects.delete_project`` then
runs each app's part, children first, each in batches of ``APM_DELETE_BATCH_ROWS`` rows in transactions
of their own, records the rows gone after each batch (``deletion_progress``), and deletes the project's
row last.

This app sits below the ones whose rows hang off a project (repositories, tasks, webhooks, exports),
so it cannot name their models: each of them registers its part here when it is loaded
(``project_part_register`` in its ``AppConfig.ready``). The task can be delivered twice, stopped
half-way or requested again: every part deletes what is still there, so any number of runs ends where
one would.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from apm.cache import generation_bump_on_commit
from apm.retention import batch_delete, deletion_mark, deletion_progress_add
from projects.models import Invitation, Membership, Project
from projects.selectors import PROJECT_ACCESS_NAMESPACE
from projects.services import project_cache_invalidate

logger = structlog.get_logger(__name__)
# The Celery task that deletes a marked project's rows (projects.tasks); on the default queue.
DELETE_TASK = "projects.delete_project"
# How long one delivery of the task deletes before it queues the next: far below the task time limit.
DELETE_TASK_SECONDS = 300.0

# ``record(table, count)``: adds ``count`` rows of ``table`` to the project's progress; call it inside
# the transaction that deleted them, so the figures count exactly the rows that went.
Record = Callable[[str, int], None]


@dataclass(frozen=True)
class ProjectPart:
    """What an app deletes of a project, and what it marks when the deletion is requested.

    ``delete(project_id, batch_rows, deadline, record)`` deletes a batch at least, stops once
    ``deadline`` (a ``time.monotonic()`` value, or None) is past, and answers True when nothing of the
    part is left. ``mark(project_id, requested_by)`` runs under the project's row lock in the request's
    transaction; it may refuse the deletion with a ``ValidationError``. ``unmark(project_id)`` undoes it
    when the broker did not take the task's message.
    """

    order: int
    name: str
    delete: Callable[[int, int, float | None, Record], bool]
    mark: Callable[[int, str], None] | None = None
    unmark: Callable[[int], None] | None = None


_PARTS: dict[str, ProjectPart] = {}


def project_part_register(part: ProjectPart) -> None:
    """Add ``part`` to every project's deletion (again under the same name: replaced, not doubled)."""
    _PARTS[part.name] = part


def project_parts() -> list[ProjectPart]:
    """The registered parts in the order they are deleted (children before their parents)."""
    return sorted(_PARTS.values(), key=lambda part: part.order)


def rows_delete(
    rows: models.QuerySet[Any],
    *,
    table: str,
    batch_rows: int,
    deadline: float | None,
    record: Record,
    before_delete: Callable[[models.QuerySet[Any]], None] | None = None,
) -> bool:
    """Delete ``rows`` (one table) in batches with plain ``DELETE ... WHERE id IN (...)`` statements;
    True when none is left, False when ``deadline`` stopped it first (after one batch at least).

    No collector and no signals: the parts are ordered so that nothing points at a row when it goes.
    Ids are read in no order, the index of the project's column hands over the first it finds.
    """
    stopped = False

    def after_batch(count: int) -> bool:
        nonlocal stopped
        record(table, count)
        stopped = deadline is not None and time.monotonic() > deadline
        return not stopped

    batch_delete(
        rows,
        batch_size=batch_rows,
        before_delete=before_delete,
        after_batch=after_batch,
        raw=True,
        in_order=False,
    )
    return not stopped


def rows_part(
    order: int,
    table: str,
    rows: Callable[[int], models.QuerySet[Any]],
    *,
    before_delete: Callable[[models.QuerySet[Any]], None] | None = None,
) -> ProjectPart:
    """A part that deletes the rows ``rows(project_id)`` of one table."""

    def delete(project_id: int, batch_rows: int, deadline: float | None, record: Record) -> bool:
        return rows_delete(
            rows(project_id),
            table=table,
            batch_rows=batch_rows,
            deadline=deadline,
            record=record,
            before_delete=before_delete,
        )

    return ProjectPart(order=order, name=table, delete=delete)


# This app's own rows go last, just before the project.
project_part_register(
    rows_part(900, "project_invitations", lambda project_id: Invitation.objects.filter(project_id=project_id))
)
project_part_register(
    rows_part(910, "project_memberships", lambda project_id: Membership.objects.filter(project_id=project_id))
)


def project_delete_request(*, project: Project, by: Any = None) -> Project:
    """Mark ``project`` as being deleted and queue the task that deletes it; return it, marked.

    Every part marks what it owns in the same transaction (its repositories, refused with a
    ``ValidationError`` while one of them is being ingested). A request for a project marked already
    queues the task again (which carries on where the last one stopped) only when it has shown no
    progress for ``APM_DELETE_STALL_SECONDS``; otherwise it only answers its progress. A broker that
    does not take the message raises ``BrokerUnavailable`` and leaves the project and its repositories
    as they were.
    """
    with transaction.atomic():
        locked = Project.all_objects.select_for_update().get(pk=project.pk)
        if locked.deleting_since is None:
            for part in project_parts():
                if part.mark is not None:
                    part.mark(locked.pk, getattr(by, "username", "") or "")
        first, queue = deletion_mark(locked, by=by, task=DELETE_TASK, discard=_mark_discard)
    project_cache_invalidate(project_id=locked.pk)
    logger.info(
        "project_delete_requested",
        project_id=locked.pk,
        key=locked.key,
        first=first,
        queued=queue,
        by=getattr(by, "username", "") or "",
    )
    return locked


def project_deletion_pending(project_id: int) -> bool:
    return Project.all_objects.filter(pk=project_id, deleting_since__isnull=False).exists()


def _mark_discard(project_id: int) -> None:
    with transaction.atomic():
        for part in project_parts():
            if part.unmark is not None:
                part.unmark(project_id)
        Project.all_objects.filter(pk=project_id).update(deleting_since=None, deletion_progress={})
        # The portfolio cached while the mark stood leaves the project out; it is back, for its members too.
        project_cache_invalidate(project_id=project_id)
        generation_bump_on_commit(PROJECT_ACCESS_NAMESPACE)


def project_delete_batches(
    *, project_id: int, batch_rows: int | None = None, deadline: float | None = None
) -> dict[str, int]:
    """Delete the rows of marked project ``project_id`` part by part, then the project; return the rows
    deleted by this call per table. A project gone or not marked is left alone (returns ``{}``).

    With ``deadline`` (a ``time.monotonic()`` value) it stops after the first batch that ends past it,
    leaving the rest for the next call: the task keeps each delivery well inside Celery's time limit.
    """
    size = batch_rows or settings.APM_DELETE_BATCH_ROWS
    if not project_deletion_pending(project_id):
        return {}
    deleted: dict[str, int] = {}

    def record(table: str, count: int) -> None:
        deleted[table] = deleted.get(table, 0) + count
        _progress_record(project_id, table, count)

    for part in project_parts():
        if not part.delete(project_id, size, deadline, record):
            return deleted
    with transaction.atomic():
        project = Project.all_objects.select_for_update().filter(pk=project_id).first()
        if project is not None:
            Project.all_objects.filter(pk=project_id)._raw_delete(Project.all_objects.db)
            deleted["projects"] = 1
            project_cache_invalidate(project_id=project_id)
            logger.info(
                "project_deleted",
                project_id=project_id,
                key=project.key,
                deleted=project.deletion_progress.get("deleted", {}),
                started_at=project.deletion_progress.get("started_at"),
                finished_at=timezone.now().isoformat(),
            )
    return deleted


def _progress_record(project_id: int, table: str, count: int) -> None:
    deletion_progress_add(Project.all_objects, project_id, table, count)
