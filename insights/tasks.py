"""Celery tasks of insights: thin, take ids, call one service each.

The task names keep the ``projects.`` prefix they had before insights had an app of their own: queued
messages and the beat schedule's rows carry them.
"""

from __future__ import annotations

import structlog
from celery import shared_task

from apm.db import TRANSIENT_DB_ERRORS
from insights.services import project_health_record
from projects.models import Project
from repos.ingestion.pipeline import HEALTH_RECOMPUTE_TASK

logger = structlog.get_logger(__name__)


@shared_task(
    name=HEALTH_RECOMPUTE_TASK,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=5,
)
def project_health_recompute_task(project_ids: list[int] | None = None) -> dict[str, int]:
    """Record the health of every active project (or of ``project_ids``): one transaction per project.

    Idempotent: a second run finds the same levels and announces no change. A project that fails is
    logged and skipped, so one broken project does not stop the others; the counts say how many changed.
    """
    projects = Project.objects.filter(status=Project.Status.ACTIVE)
    if project_ids is not None:
        projects = projects.filter(pk__in=project_ids)
    counts = {"recorded": 0, "changed": 0, "failed": 0}
    # The ids only (a few bytes per project), read before any write so no cursor stays open across them.
    for project_id in list(projects.order_by("pk").values_list("pk", flat=True)):
        project = Project.objects.filter(pk=project_id).first()
        if project is None:  # deleted since the list was read
            continue
        try:
            previous, level = project_health_record(project=project)
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception:
            logger.exception("project_health_failed", project_id=project_id)
            counts["failed"] += 1
            continue
        counts["recorded"] += 1
        counts["changed"] += previous is not None and previous != level
    return counts
