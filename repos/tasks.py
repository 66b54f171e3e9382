"""Celery tasks of ingestion: thin, take ids, call one service each, retry transient errors only.

``repository_ingest_task`` plans the run and fans the commit chunks out to the workers as a chord; the
chord's body plans the file step and fans its slices out the same way; the last body finishes the run.
With the embedded default (eager Celery) the same graph runs in the calling process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from celery import chord, shared_task
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError

from repos import services

logger = structlog.get_logger(__name__)

# A lost database connection is worth a retry (with backoff); anything else would fail the same way
# again, so it fails the run with its reason and the steps after it do nothing.
TRANSIENT = (OperationalError, InterfaceError)
RETRY = {"autoretry_for": TRANSIENT, "retry_backoff": 2, "retry_backoff_max": 120, "max_retries": 5}


@contextmanager
def _run_step(run_id: int) -> Iterator[None]:
    try:
        yield
    except TRANSIENT:
        raise
    except Exception as exc:  # recorded on the run, for people, instead of lost in a worker log
        reason = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        logger.warning("ingestion_failed", run_id=run_id, reason=reason, exc_info=True)
        services.ingestion_fail(run_id=run_id, reason=reason or type(exc).__name__)


@shared_task(name="repos.ingest", **RETRY)
def repository_ingest_task(run_id: int) -> None:
    """Plan run ``run_id`` and fan its commit chunks out; the file step follows when all are written."""
    with _run_step(run_id):
        plan = services.ingestion_plan(run_id=run_id)
        files_step = repository_files_task.si(run_id)
        chunks = [repository_commits_chunk_task.si(run_id, skip, count) for skip, count in plan.commit_chunks]
        if chunks:
            chord(chunks)(files_step)
        else:
            files_step.delay()


@shared_task(name="repos.ingest_commits_chunk", **RETRY)
def repository_commits_chunk_task(run_id: int, skip: int, count: int) -> None:
    with _run_step(run_id):
        services.ingestion_commits_chunk(run_id=run_id, skip=skip, count=count)


@shared_task(name="repos.ingest_files", **RETRY)
def repository_files_task(run_id: int) -> None:
    """Plan the file step of run ``run_id`` and fan its slices out; the run finishes after them."""
    with _run_step(run_id):
        slices = services.ingestion_files_plan(run_id=run_id)
        finish = repository_finish_task.si(run_id)
        if slices:
            chord([repository_files_chunk_task.si(run_id, offset, count) for offset, count in slices])(finish)
        else:
            finish.delay()


@shared_task(name="repos.ingest_files_chunk", **RETRY)
def repository_files_chunk_task(run_id: int, offset: int, count: int) -> None:
    with _run_step(run_id):
        services.ingestion_files_chunk(run_id=run_id, offset=offset, count=count)


@shared_task(name="repos.ingest_finish", **RETRY)
def repository_finish_task(run_id: int) -> None:
    with _run_step(run_id):
        services.ingestion_finish(run_id=run_id)
