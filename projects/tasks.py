"""Celery tasks of projects: thin, take ids, call one service each."""

from __future__ import annotations

from typing import Any

import structlog
from celery import shared_task
from django.db import InterfaceError, OperationalError

from projects.webhooks import webhook_deliver

logger = structlog.get_logger(__name__)


@shared_task(name="projects.webhook_deliver", bind=True, max_retries=None, ignore_result=True)
def webhook_deliver_task(self: Any, delivery_id: str) -> Any:
    """Make one attempt at delivery ``delivery_id``; schedule the next one when the service asks for it.

    The delivery row counts the attempts and stops them at APM_WEBHOOK_MAX_ATTEMPTS, so Celery's own
    retry limit is off. Our retry count tells the service how many attempts this message comes after,
    so a duplicate message (a redelivery) does not send again.
    """
    outcome = webhook_deliver(delivery_id=delivery_id, attempt=self.request.retries)
    if outcome.retry_in is None:
        return outcome.status
    # On a worker the retry is scheduled on the broker and raised. Eager Celery (the embedded default,
    # the tests) would propagate a raised Retry as an error; returned, it runs the next attempt at once.
    return self.retry(countdown=outcome.retry_in, throw=not self.request.is_eager)


# A lost database connection is worth a retry; anything else would fail the same way again.
TRANSIENT = (OperationalError, InterfaceError)


# --- Health recompute (projects.analytics) -------------------------------------------------------------


@shared_task(
    name="projects.health_recompute",
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=5,
)
def project_health_recompute_task(project_ids: list[int] | None = None) -> dict[str, int]:
    """Record the health of every active project (or of ``project_ids``): one transaction per project.

    Idempotent: a second run finds the same levels and announces no change. A project that fails is
    logged and skipped, so one broken project does not stop the others; the counts say how many changed.
    """
    from projects.analytics import project_health_record
    from projects.models import Project

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
        except TRANSIENT:
            raise
        except Exception:
            logger.exception("project_health_failed", project_id=project_id)
            counts["failed"] += 1
            continue
        counts["recorded"] += 1
        counts["changed"] += previous is not None and previous != level
    return counts


# --- Exports and the weekly digest (projects.exports) -------------------------------------------------


@shared_task(name="projects.export_run", autoretry_for=TRANSIENT, retry_backoff=2, max_retries=5)
def export_run_task(job_id: int) -> str:
    """Write export ``job_id``'s file (idempotent: a job already taken is left alone)."""
    from projects.exports import export_run

    return export_run(job_id=job_id).status


@shared_task(name="projects.digests_weekly")
def project_digests_weekly_task() -> int:
    """Queue the weekly digest export of every active project."""
    from projects.exports import project_digests_request

    return project_digests_request()


@shared_task(name="projects.exports_purge")
def exports_purge_task() -> int:
    """Delete export jobs and files older than APM_EXPORT_KEEP_DAYS."""
    from projects.exports import exports_purge

    return exports_purge()


@shared_task(name="projects.webhook_deliveries_resume")
def webhook_deliveries_resume_task() -> int:
    """Enqueue pending webhook deliveries that were never enqueued or whose attempt died."""
    from projects.webhooks import webhook_deliveries_resume

    return webhook_deliveries_resume()
