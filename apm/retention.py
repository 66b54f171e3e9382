"""Deleting what is past its retention: in batches of primary keys, each in a short transaction of its own.

Every purge of the schedule goes through ``batch_delete``: it never loads the old rows (only one batch of
ids at a time), no statement holds locks for long, and two purges at once only delete what is still
there. What is old, and what must be kept whatever its age, is the caller's queryset
(reports.retention has the family).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

DEFAULT_BATCH_SIZE = 1000


def cutoff(days: int) -> datetime.datetime:
    """The moment before which a row kept ``days`` days is old."""
    return timezone.now() - datetime.timedelta(days=days)


def batch_delete(
    old: QuerySet[Any],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    before_delete: Callable[[QuerySet[Any]], None] | None = None,
) -> int:
    """Delete the rows of ``old``, ``batch_size`` primary keys at a time; return how many went.

    ``before_delete`` sees each batch first, inside its transaction (an export's files go before its
    rows; an exception there stops the purge with that batch kept, for the next run). Related rows go
    with each batch as their foreign keys say (cascade, set null); only ``old``'s own rows are counted.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, not {batch_size}")
    model = old.model
    ids_query = old.values_list("pk", flat=True)
    if not old.query.order_by:
        ids_query = ids_query.order_by("pk")
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(ids_query[:batch_size])
            if not ids:
                return deleted
            batch = model._default_manager.filter(pk__in=ids)
            if before_delete is not None:
                before_delete(batch)
            deleted += batch.delete()[1].get(model._meta.label, 0)
