"""Celery tasks of ingestion: thin, take ids, call one service each, retry transient errors only.

``repository_ingest_task`` plans the run and fans its commit chunks and file slices out to the workers
as one chord, whose body finishes the run.
With the embedded default (eager Celery) the same graph runs in the calling process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypedDict

import structlog
from celery import Signature, chord, current_app, shared_task
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections

from apm.db import TRANSIENT_DB_ERRORS
from apm.errors import validation_text
from repos import services
from repos.git import GitError
from repos.ingestion import pipeline

logger = structlog.get_logger(__name__)


class _RetryOptions(TypedDict):
    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: int
    retry_backoff_max: int
    max_retries: int


# A lost database connection is worth a retry (with backoff); anything else would fail the same way
# again, so it fails the run with its reason and the steps after it do nothing.
RETRY: _RetryOptions = {
    "autoretry_for": TRANSIENT_DB_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "max_retries": 5,
}


@contextmanager
def _run_step(run_id: int) -> Iterator[None]:
    try:
        yield
    except TRANSIENT_DB_ERRORS:
        raise
    except Exception as exc:  # recorded on the run, for people, instead of lost in a worker log
        reason = validation_text(exc) if isinstance(exc, ValidationError) else str(exc)
        # A refused source or git's own failure is expected and fully said by its reason; anything else
        # is a defect of APM, logged with its traceback.
        expected = isinstance(exc, ValidationError | GitError)
        logger.warning("ingestion_failed", run_id=run_id, reason=reason, exc_info=not expected)
        pipeline.ingestion_fail(run_id=run_id, reason=reason or type(exc).__name__)


def _fan_out(header: list[Signature], *, then: Signature) -> None:
    """Run ``header`` in parallel, then ``then``.

    On workers this is a chord: the chunks spread over every worker process on every machine. With the
    embedded default (eager Celery, no workers) the process does the spreading itself: a thread pool
    runs the chunks, so their git processes use every core while the threads wait on git and the
    database.
    """
    if not header:
        then.delay()
        return
    if not current_app.conf.task_always_eager:
        chord(header)(then)
        return
    threads = settings.APM_INGEST_THREADS or os.cpu_count() or 1
    if threads <= 1 or len(header) == 1:
        for signature in header:
            signature.apply()
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="apm-ingest") as executor:
            for future in [executor.submit(_apply_closing_connections, signature) for signature in header]:
                future.result()
    then.apply()


def _apply_closing_connections(signature: Signature) -> None:
    try:
        signature.apply()
    finally:
        connections.close_all()  # give this thread's connection back (to the pool on PostgreSQL)


@shared_task(name=services.INGEST_TASK, **RETRY)
def repository_ingest_task(run_id: int) -> None:
    """Plan run ``run_id`` and fan its commit chunks out; the file step follows when all are written."""
    with _run_step(run_id):
        plan = pipeline.ingestion_plan(run_id=run_id)
        chunks = [repository_commits_chunk_task.si(run_id, skip, count) for skip, count in plan.commit_chunks]
        chunks += [repository_files_chunk_task.si(run_id, entries) for entries in plan.file_slices]
        _fan_out(chunks, then=repository_finish_task.si(run_id))


@shared_task(name="repos.ingest_commits_chunk", **RETRY)
def repository_commits_chunk_task(run_id: int, skip: int, count: int) -> None:
    with _run_step(run_id):
        pipeline.ingestion_commits_chunk(run_id=run_id, skip=skip, count=count)


@shared_task(name="repos.ingest_files_chunk", **RETRY)
def repository_files_chunk_task(run_id: int, entries: Sequence[Sequence[Any]]) -> None:
    with _run_step(run_id):
        pipeline.ingestion_files_chunk(run_id=run_id, entries=[tuple(entry) for entry in entries])


@shared_task(name="repos.ingest_finish", **RETRY)
def repository_finish_task(run_id: int) -> None:
    with _run_step(run_id):
        pipeline.ingestion_finish(run_id=run_id)


@shared_task(name="repos.ingest_all", **RETRY)
def repositories_ingest_all_task() -> int:
    """The schedule's incremental ingestion of every active repository; returns the runs queued."""
    return sum(
        1
        for entry in services.repositories_ingest_all()
        if entry.request is not None and entry.request.created
    )


@shared_task(name="repos.purge_ingestion_runs", **RETRY)
def ingestion_runs_purge_task(older_than_days: int | None = None) -> int:
    """Delete finished runs older than ``older_than_days`` (APM_INGESTION_RUNS_KEEP_DAYS by default)."""
    days = settings.APM_INGESTION_RUNS_KEEP_DAYS if older_than_days is None else older_than_days
    return services.ingestion_runs_purge(older_than_days=days)


@shared_task(name="repos.purge_push_deliveries", **RETRY)
def push_deliveries_purge_task(older_than_days: int | None = None) -> int:
    """Delete push deliveries older than ``older_than_days`` (APM_PUSH_DELIVERIES_KEEP_DAYS by default)."""
    days = settings.APM_PUSH_DELIVERIES_KEEP_DAYS if older_than_days is None else older_than_days
    return services.push_deliveries_purge(older_than_days=days)
