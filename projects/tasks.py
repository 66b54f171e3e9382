"""Celery tasks of the projects app: a project's deletion in the background."""

from __future__ import annotations

import time

import structlog
from celery import shared_task

from apm.db import TRANSIENT_DB_ERRORS
from apm.jobs import BrokerUnavailable, task_enqueue
from projects import deletion

logger = structlog.get_logger(__name__)


# A lost database connection is worth a retry with backoff (as for a repository's deletion, repos.tasks).
@shared_task(
    name=deletion.DELETE_TASK,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=5,
)
def project_delete_task(project_id: int) -> int:
    """Delete marked project ``project_id`` in batches; returns the rows this delivery deleted.

    A delivery works for ``DELETE_TASK_SECONDS`` at most, then queues the next one, which carries on.
    """
    deadline = time.monotonic() + deletion.DELETE_TASK_SECONDS
    deleted = deletion.project_delete_batches(project_id=project_id, deadline=deadline)
    if deletion.project_deletion_pending(project_id):
        try:
            task_enqueue(deletion.DELETE_TASK, project_id)
        except BrokerUnavailable as exc:
            # The project stays marked and hidden; the sweep (or a new request) carries it on.
            logger.warning("project_delete_requeue_failed", project_id=project_id, reason=str(exc))
    return sum(deleted.values())
