"""Export jobs: long exports run on a worker, recorded on an ``ExportJob`` row with a file when done.

``export_request`` checks the filters and queues the job once the request's transaction commits;
``export_run`` (the Celery task's one call) writes the file and closes the row. A job is claimed with a
conditional UPDATE, so a redelivered task message runs it once; a job whose worker died is taken over
after the task time limit, and only the call that holds the job closes it. Any failure marks the job
failed with its reason, keeps no file, and raises ``ExportFailed`` so that the task fails too (its
state, apm_celery_task_failures_total). Each job that ends counts once in apm_exports_total{status}.
"""

from __future__ import annotations

import datetime
import io
import tempfile
from typing import Any, NoReturn

import structlog
from botocore.exceptions import ConnectionError as StoreConnectionError
from botocore.exceptions import ReadTimeoutError
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from apm.jobs import BrokerUnavailable, task_enqueue_on_commit
from apm.replicas import replica_reads_since
from apm.retention import DEFAULT_BATCH_SIZE, batch_delete
from apm.retention import cutoff as retention_cutoff
from monitoring.metrics import EXPORTS
from projects.models import Project
from reports.digest import csv_write, digest_render, export_filters_clean, project_digest
from reports.models import ExportJob
from reports.storage import storage_describe

logger = structlog.get_logger(__name__)
Status = ExportJob.Status
Kind = ExportJob.Kind
# The Celery task that writes one export (reports.tasks); the name predates the app.
EXPORT_TASK = "projects.export_run"

_EXTENSIONS: dict[str, str] = {
    Kind.TASKS_CSV: "csv",
    Kind.COMMITS_CSV: "csv",
    Kind.DIGEST_MD: "md",
    Kind.DIGEST_HTML: "html",
}
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
}


def export_request(
    *, project: Project, kind: str, filters: dict[str, Any], requested_by: User | None = None
) -> ExportJob:
    """Queue an export of ``project``; ``ValidationError`` names each bad filter and nothing is stored."""
    clean = export_filters_clean(project=project, kind=kind, filters=filters)
    job = ExportJob.objects.create(
        project=project,
        kind=kind,
        filters=clean,
        requested_by=requested_by if requested_by is not None and requested_by.is_authenticated else None,
    )
    # A broker that does not take the message leaves no job behind (it would stay queued for ever), and
    # the caller gets ``BrokerUnavailable`` (the API's 503).
    queued = ExportJob.objects.filter(pk=job.pk, status=Status.QUEUED)
    task_enqueue_on_commit(EXPORT_TASK, job.pk, discard=queued.delete)
    return job


class ExportFailed(Exception):
    """An export ended failed; the reason is on its job (``error``). Raised after it was recorded."""

    def __init__(self, message: str, *, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


def _claim(job_id: int) -> datetime.datetime | None:
    """Move the job to running if it is queued, or running for longer than a task may (its worker died).

    Returns the claim's ``started_at``, which only this call holds, or None when the job is not free.
    """
    now = timezone.now()
    abandoned = now - datetime.timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    claimed = ExportJob.objects.filter(
        Q(status=Status.QUEUED) | Q(status=Status.RUNNING, started_at__lt=abandoned), pk=job_id
    ).update(status=Status.RUNNING, started_at=now, error="")
    return now if claimed else None


def export_run(*, job_id: int) -> ExportJob:
    """Write the job's file; safe to call twice (the second call finds the job taken and does nothing).

    Raises ``ExportFailed`` once the job is recorded failed (its reason in ``error``, no file kept).
    """
    started = _claim(job_id)
    if started is None:
        return ExportJob.objects.get(pk=job_id)
    job = ExportJob.objects.select_related("project").get(pk=job_id)
    extension = _EXTENSIONS[job.kind]
    # Only the call that still holds the claim closes the job: a worker presumed dead that finishes
    # after another took its job over changes nothing (and counts nothing).
    held = ExportJob.objects.filter(pk=job_id, status=Status.RUNNING, started_at=started)
    # Spooled: a small export stays in memory, a large one goes to a temporary file on disk.
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024, mode="w+b") as spool:

        def write() -> int:
            # From the start each time: a replica that fails half-way writes the file again, from the
            # primary (apm.replicas.replica_reads).
            spool.seek(0)
            spool.truncate()
            text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
            try:
                return _export_write(job, text)
            finally:
                text.flush()
                text.detach()  # the spool stays open: the wrapper would close it when collected

        try:
            # The replica may serve the export's reads once it holds the job's row: everything the member
            # changed before asking is then on it too (apm.replicas.replica_reads_since). The claim just
            # written is the task's bookkeeping, not what it reads.
            rows = replica_reads_since(ExportJob.objects.filter(pk=job_id), write)
        except Exception as exc:  # recorded on the job, for people, instead of lost in a worker log
            _fail(job, held, reason=str(exc) or type(exc).__name__)
        spool.seek(0)
        name = f"{job.project.key.lower()}-{job.kind.replace('_', '-')}-{job.pk}.{extension}"
        try:
            job.file.save(name, File(spool), save=False)
        except Exception as exc:
            # The store refused or did not answer (a bucket that does not exist, wrong credentials, an
            # unreachable endpoint, an unwritable MEDIA_ROOT). Every member of the project reads the
            # job's reason: where the store is (its endpoint, bucket, directory) and its own words stay
            # in this worker's log.
            logger.warning(
                "export_store_failed",
                job_id=job.pk,
                storage=storage_describe(job.file.storage),
                error=str(exc)[:2000],
            )
            _fail(job, held, reason=store_failure_reason(exc))
    try:
        closed = held.update(
            status=Status.SUCCEEDED, file=job.file.name, rows=rows, finished_at=timezone.now()
        )
    except Exception:
        job.file.delete(save=False)  # no row names the file: it would never be purged
        raise
    if not closed:
        job.file.delete(save=False)  # the job is another call's now: its file is the one that counts
        logger.warning("export_claim_lost", job_id=job_id)
        return ExportJob.objects.get(pk=job_id)
    EXPORTS.labels(status=Status.SUCCEEDED).inc()
    job.refresh_from_db()
    return job


STORE_DID_NOT_ANSWER = (
    "The export could not be stored: the file store did not answer (the operators' log has the details)."
)
STORE_REFUSED = (
    "The export could not be stored: the file store refused it (the operators' log has the details)."
)


def store_failure_reason(exc: BaseException) -> str:
    """What a project member reads of a store's failure: whether it answered, nothing of where it is."""
    # botocore's connection errors: refused, unreachable, connect timeout, connection dropped.
    if isinstance(exc, (StoreConnectionError, ReadTimeoutError, ConnectionError, TimeoutError)):
        return STORE_DID_NOT_ANSWER
    return STORE_REFUSED


def _fail(job: ExportJob, held: QuerySet[ExportJob], *, reason: str) -> NoReturn:
    """Record the job failed with ``reason`` (if this call still holds it) and raise ``ExportFailed``."""
    logger.warning("export_failed", job_id=job.pk, reason=reason, exc_info=True)
    reason = reason[:2000]
    if held.update(status=Status.FAILED, error=reason, finished_at=timezone.now()):
        EXPORTS.labels(status=Status.FAILED).inc()
    raise ExportFailed(f"Export {job.pk} failed: {reason}", job_id=job.pk)


def _export_write(job: ExportJob, out: io.TextIOBase) -> int:
    if job.kind in (Kind.TASKS_CSV, Kind.COMMITS_CSV):
        return csv_write(out=out, kind=job.kind, project=job.project, filters=job.filters)
    until = job.filters.get("until")
    digest = project_digest(
        project=job.project,
        since=datetime.date.fromisoformat(job.filters["since"]),
        until=datetime.date.fromisoformat(until) if until else None,
    )
    out.write(digest_render(digest, fmt=_EXTENSIONS[job.kind]))
    return len(digest["closed"]) + len(digest["slipped"])


def export_content_type(job: ExportJob) -> str:
    return CONTENT_TYPES[_EXTENSIONS[job.kind]]


def exports_purge(*, older_than_days: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Delete finished export jobs older than ``older_than_days`` (APM_EXPORTS_KEEP_DAYS), files included.

    Each batch's files go before its rows: a store that fails stops the purge with that batch's jobs
    kept, so the next run deletes their files again instead of leaving them without a row.
    """
    if older_than_days is None and not settings.APM_EXPORTS_KEEP_DAYS:  # 0: kept forever
        return 0
    days = settings.APM_EXPORTS_KEEP_DAYS if older_than_days is None else older_than_days
    old = exports_old(older_than_days=days)
    return batch_delete(old, batch_size=batch_size, before_delete=export_files_delete)


def exports_old(*, older_than_days: int) -> QuerySet[ExportJob]:
    """Finished export jobs created more than ``older_than_days`` days ago (queued and running stay)."""
    return ExportJob.objects.filter(
        created_at__lt=retention_cutoff(older_than_days), status__in=[Status.SUCCEEDED, Status.FAILED]
    )


def export_files_delete(jobs: QuerySet[ExportJob]) -> None:
    """Delete the stored files of ``jobs`` (their rows stay, for the caller to delete)."""
    for job in jobs.only("pk", "file"):
        if job.file:
            job.file.delete(save=False)


def project_digests_request() -> int:
    """Queue last week's Markdown digest of every active project (the weekly schedule)."""
    since = (timezone.localdate() - datetime.timedelta(days=7)).isoformat()
    count = 0
    for project in (
        Project.objects.filter(status=Project.Status.ACTIVE).order_by("pk").iterator(chunk_size=500)
    ):
        try:
            with transaction.atomic():
                export_request(project=project, kind=Kind.DIGEST_MD, filters={"since": since})
        except BrokerUnavailable as exc:
            # Nothing was kept of this digest; the others would each wait for the broker's refusal too.
            logger.warning("digests_broker_unavailable", project_id=project.pk, reason=str(exc))
            break
        count += 1
    return count
