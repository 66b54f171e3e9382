"""Celery tasks of reports: exports and the weekly digest. Thin, take ids, call one service each.

The task names keep the ``projects.`` prefix they had before reports had an app of their own: queued
messages and the beat schedule's rows carry them.
"""

from __future__ import annotations

from celery import shared_task

from apm.db import TRANSIENT_DB_ERRORS
from reports.exports import EXPORT_TASK, ExportFailed, export_run, exports_purge, project_digests_request
from reports.retention import FAMILY, MEMBERS, member_purge


# A failed export raises ExportFailed once its job is recorded failed: the task ends in FAILURE (and
# counts in apm_celery_task_failures_total) without a retry, which would find the job closed anyway.
# ``throws`` makes the worker log it as expected, without a second traceback (export_failed has it).
@shared_task(
    name=EXPORT_TASK,
    autoretry_for=TRANSIENT_DB_ERRORS,
    retry_backoff=2,
    max_retries=5,
    throws=(ExportFailed,),
)
def export_run_task(job_id: int) -> str:
    """Write export ``job_id``'s file (idempotent: a job already taken is left alone)."""
    return export_run(job_id=job_id).status


@shared_task(name="projects.digests_weekly")
def project_digests_weekly_task() -> int:
    """Queue the weekly digest export of every active project."""
    return project_digests_request()


@shared_task(name="projects.exports_purge")
def exports_purge_task() -> int:
    """Delete export jobs and files older than APM_EXPORTS_KEEP_DAYS (none when it is 0)."""
    return exports_purge()


@shared_task(name="maintenance.retention_purge")
def retention_purge_task(member: str | None = None) -> dict[str, int]:
    """Delete what is past its retention: one member of the family by name, or all of them."""
    members = [MEMBERS[member]] if member is not None else list(FAMILY)
    return {each.name: member_purge(each) for each in members}
