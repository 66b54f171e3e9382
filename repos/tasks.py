"""Celery tasks of ingestion: thin, take ids, call one service each, retry transient errors only.

``repository_ingest_task`` plans the run and fans the commit chunks out to the workers as a chord; the
chord's body plans the file step and fans its slices out the same way; the last body finishes the run.
With the embedded default (eager Celery) the same graph runs in the calling process.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import chord, shared_task
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError

from repos import services
from repos.git import GitError

logger = structlog.get_logger(__name__)

# Database connection hiccups are worth a retry; a git failure or bad input is not (it would fail the
# same way again) and fails the run with its reason instead.
TRANSIENT = (OperationalError, InterfaceError)
RETRY = {"autoretry_for": TRANSIENT, "retry_backoff": 2, "retry_backoff_max": 120, "max_retries": 5}
PERMANENT = (GitError, ValidationError, OSError)


def _failed(run_id: int, exc: BaseException) -> None:
    reason = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
    logger.warning("ingestion_failed", run_id=run_id, reason=reason)
    services.ingestion_fail(run_id=run_id, reason=reason or type(exc).__name__)


@shared_task(name="repos.ingest", **RETRY)
def repository_ingest_task(run_id: int) -> None:
    """Plan run ``run_id`` and fan its commit chunks out; the file step follows when all are written."""
    try:
        plan = services.ingestion_plan(run_id=run_id)
    except PERMANENT as exc:
        _failed(run_id, exc)
        return
    files_step = repository_files_task.si(run_id)
    chunks = [repository_commits_chunk_task.si(run_id, skip, count) for skip, count in plan.commit_chunks]
    if chunks:
        chord(chunks)(files_step.on_error(repository_ingest_failed_task.si(run_id)))
    else:
        files_step.delay()


@shared_task(name="repos.ingest_commits_chunk", **RETRY)
def repository_commits_chunk_task(run_id: int, skip: int, count: int) -> None:
    try:
        services.ingestion_commits_chunk(run_id=run_id, skip=skip, count=count)
    except PERMANENT as exc:
        _failed(run_id, exc)
        raise


@shared_task(name="repos.ingest_files", **RETRY)
def repository_files_task(run_id: int) -> None:
    """Plan the file step of run ``run_id`` and fan its slices out; the run finishes after them."""
    try:
        slices = services.ingestion_files_plan(run_id=run_id)
    except PERMANENT as exc:
        _failed(run_id, exc)
        return
    finish = repository_finish_task.si(run_id)
    if slices:
        header = [repository_files_chunk_task.si(run_id, offset, count) for offset, count in slices]
        chord(header)(finish.on_error(repository_ingest_failed_task.si(run_id)))
    else:
        finish.delay()


@shared_task(name="repos.ingest_files_chunk", **RETRY)
def repository_files_chunk_task(run_id: int, offset: int, count: int) -> None:
    try:
        services.ingestion_files_chunk(run_id=run_id, offset=offset, count=count)
    except PERMANENT as exc:
        _failed(run_id, exc)
        raise


@shared_task(name="repos.ingest_finish", **RETRY)
def repository_finish_task(run_id: int) -> None:
    try:
        services.ingestion_finish(run_id=run_id)
    except PERMANENT as exc:
        _failed(run_id, exc)


@shared_task(name="repos.ingest_failed")
def repository_ingest_failed_task(run_id: int, *_: Any, **__: Any) -> None:
    """Chord error callback: a chunk failed for good, so the run is marked failed."""
    services.ingestion_fail(run_id=run_id, reason="a chunk of the run failed; see the worker logs")
