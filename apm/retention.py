"""Deleting what is past its retention: in batches of primary keys, each in a short transaction of its own.

Every purge of the schedule goes through ``batch_delete``: it never loads the old rows (only one batch of
ids at a time), no statement holds locks for long, and two purges at once only delete what is still
there. What is old, and what must be kept whatever its age, is the caller's queryset
(reports.retention has the family).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apm.jobs import task_enqueue_on_commit

DEFAULT_BATCH_SIZE = 1000
# The longest a row may be kept, in days (a century). Every APM_*_KEEP_DAYS setting is refused above it
# at start-up (config.settings), and ``cutoff`` never goes further back: a larger count would overflow
# the date arithmetic (Python dates end at year 1) and no row APM writes is that old anyway.
KEEP_DAYS_MAX = 36500


def cutoff(days: int) -> datetime.datetime:
    """The moment before which a row kept ``days`` days is old; at most ``KEEP_DAYS_MAX`` days back, so
    any count (a command's ``--older-than``) gives a moment every database can compare with."""
    return timezone.now() - datetime.timedelta(days=max(0, min(days, KEEP_DAYS_MAX)))


def deletion_mark(row: Any, *, by: Any, task: str, discard: Callable[[int], None]) -> tuple[bool, bool]:
    """Mark ``row`` (a repository or a project, locked by the caller's transaction) as being deleted and
    queue ``task`` for it at the commit; return ``(first, queued)``.

    The first request marks it (``deleting_since``, and a fresh ``deletion_progress`` naming ``by``);
    when the broker does not take the message, ``discard(row.pk)`` undoes the mark. Asked again, the
    task is queued again only if the deletion stopped moving (``deletion_stalled``: its message was
    lost): following a deletion's progress must not pile up deliveries behind the one at work.
    """
    first = row.deleting_since is None
    if first:
        row.deleting_since = timezone.now()
        row.deletion_progress = {
            "requested_by": getattr(by, "username", "") or "",
            "started_at": row.deleting_since.isoformat(),
            "deleted": {},
        }
        row.save(update_fields=["deleting_since", "deletion_progress"])
    queued = first or deletion_stalled(row.deleting_since, row.deletion_progress)
    if queued:
        pk = row.pk
        task_enqueue_on_commit(task, pk, discard=(lambda: discard(pk)) if first else (lambda: None))
    return first, queued


def deletion_progress_add(manager: Any, pk: int, table: str, count: int) -> None:
    """Add ``count`` deleted rows of ``table`` to the ``deletion_progress`` of row ``pk`` of ``manager``
    (a repository's or a project's), inside the caller's batch transaction.

    Read and written under the row's lock: two deliveries of the task at once add up, not overwrite.
    """
    row = manager.select_for_update().filter(pk=pk).only("deletion_progress").first()
    if row is None:
        return
    progress = dict(row.deletion_progress or {})
    done = dict(progress.get("deleted") or {})
    done[table] = done.get(table, 0) + count
    progress["deleted"] = done
    progress["updated_at"] = timezone.now().isoformat()
    manager.filter(pk=pk).update(deletion_progress=progress)


def deletion_stalled(deleting_since: datetime.datetime | None, progress: dict[str, Any] | None) -> bool:
    """Whether a deletion marked at ``deleting_since`` has shown no sign of progress for
    ``APM_DELETE_STALL_SECONDS``: neither its mark, nor a batch (``progress["updated_at"]``), nor a
    resumption (``progress["resumed_at"]``) is that recent. Its task is then queued again; a deletion
    still moving is left to the task already at work."""
    signs = [deleting_since or timezone.now()]
    for key in ("updated_at", "resumed_at"):
        value = (progress or {}).get(key)
        if value:
            with contextlib.suppress(ValueError):
                signs.append(datetime.datetime.fromisoformat(value))
    return timezone.now() - max(signs) > datetime.timedelta(seconds=settings.APM_DELETE_STALL_SECONDS)


def batch_delete(
    old: QuerySet[Any],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    before_delete: Callable[[QuerySet[Any]], None] | None = None,
    after_batch: Callable[[int], object] | None = None,
    raw: bool = False,
    in_order: bool = True,
) -> int:
    """Delete the rows of ``old``, ``batch_size`` primary keys at a time; return how many went.

    ``before_delete`` sees each batch first, inside its transaction (an export's files go before its
    rows; an exception there stops the purge with that batch kept, for the next run). Related rows go
    with each batch as their foreign keys say (cascade, set null); only ``old``'s own rows are counted.

    ``raw`` deletes each batch with one plain ``DELETE ... WHERE id IN (...)``: no collector, no signals,
    nothing read back. For callers that delete children before their parents themselves (a repository's
    or a project's deletion), where the collector would only read every child row again to find none.

    ``after_batch`` gets each batch's count inside the batch's transaction (progress recorded there
    counts exactly the rows that went); a false answer stops the deletion after that batch, with the
    rest left for the next call (a task that must end before its time limit).

    ``in_order=False`` reads the ids in no order: any rows will do, and the index hands the first ones
    over and stops at the limit, where ordering by id would sort every row left at each batch. The
    default reads the oldest ids first (or ``old``'s own order), as the purges expect.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, not {batch_size}")
    model = old.model
    ids_query = old.values_list("pk", flat=True)
    if not in_order:
        ids_query = ids_query.order_by()
    elif not old.query.order_by:
        ids_query = ids_query.order_by("pk")
    deleted = 0
    # The ids are read outside the batch's transaction: a row another deleter takes first is simply not
    # there to delete, and the last (empty) read opens no transaction.
    while ids := list(ids_query[:batch_size]):
        with transaction.atomic():
            # The base manager: the ids are `old`'s already, whatever a default manager would hide.
            batch = model._base_manager.filter(pk__in=ids)
            if before_delete is not None:
                before_delete(batch)
            count = batch._raw_delete(batch.db) if raw else batch.delete()[1].get(model._meta.label, 0)
            deleted += count
            carry_on = after_batch(count) if after_batch is not None else True
        if not carry_on:
            break
    return deleted
