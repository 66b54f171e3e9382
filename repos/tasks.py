"""Celery tasks of ingestion: thin, take ids, call one service each, retry transient errors only.

``repository_ingest_task`` plans the run and fans its commit chunks and file slices out to the workers
as one chord, whose body finishes the run.
With the embedded default (eager Celery) the same graph runs in the calling process.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
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
from apm.jobs import BrokerUnavailable, task_enqueue
from repos import deletion, services
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
        with _beating(run_id):
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


@contextmanager
def _beating(run_id: int) -> Iterator[None]:
    """Beat the run's heartbeat every ``APM_INGEST_HEARTBEAT_SECONDS`` while a step runs on a worker.

    A run silent for longer than ``APM_INGEST_RESUME_SECONDS`` is taken for one whose worker died, and
    resumed (repos.services.ingestion_runs_resume); a chunk, a clone or a finish may take minutes, so
    the beat comes from a thread beside it rather than from the step's own progress. It dies with the
    worker process. With eager Celery nothing resumes runs that live in the caller's process: no beat.
    """
    if current_app.conf.task_always_eager:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.APM_INGEST_HEARTBEAT_SECONDS):
                try:
                    pipeline.ingestion_heartbeat(run_id=run_id)
                except Exception:  # a missed beat is not the step's failure; the next one may pass
                    logger.warning("ingestion_heartbeat_failed", run_id=run_id, exc_info=True)
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"apm-heartbeat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


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
        _plan_and_fan_out(run_id)


def _plan_and_fan_out(run_id: int) -> None:
    # A run planned already (a resumption, a second delivery) gets the chunks not written yet.
    plan = pipeline.ingestion_plan(run_id=run_id)
    chunks = [repository_commits_chunk_task.si(run_id, skip, count) for skip, count in plan.commit_chunks]
    chunks += [repository_files_chunk_task.si(run_id, entries) for entries in plan.file_slices]
    _fan_out(chunks, then=repository_finish_task.si(run_id))


@shared_task(name=services.RESUME_TASK, **RETRY)
def repository_ingest_resume_task(run_id: int, silent_since: str) -> None:
    """Carry on run ``run_id``, found silent at ``silent_since``, unless a worker was heard from since."""
    with _run_step(run_id):
        since = datetime.datetime.fromisoformat(silent_since)
        if pipeline.ingestion_resume_claim(run_id=run_id, since=since):
            _plan_and_fan_out(run_id)


@shared_task(name="repos.ingestion_runs_resume", **RETRY)
def ingestion_runs_resume_task() -> int:
    """The schedule's pass over runs whose workers went silent; returns how many were resumed."""
    try:
        return len(services.ingestion_runs_resume())
    except BrokerUnavailable as exc:
        logger.warning("ingestion_resume_broker_unavailable", reason=str(exc))
        return 0


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
    if older_than_days is None:
        if not settings.APM_INGESTION_RUNS_KEEP_DAYS:  # 0: kept forever
            return 0
        older_than_days = settings.APM_INGESTION_RUNS_KEEP_DAYS
    return services.ingestion_runs_purge(older_than_days=older_than_days)


@shared_task(name="repos.purge_push_deliveries", **RETRY)
def push_deliveries_purge_task(older_than_days: int | None = None) -> int:
    """Delete push deliveries older than ``older_than_days`` (APM_PUSH_DELIVERIES_KEEP_DAYS by default)."""
    if older_than_days is None:
        if not settings.APM_PUSH_DELIVERIES_KEEP_DAYS:  # 0: kept forever
            return 0
        older_than_days = settings.APM_PUSH_DELIVERIES_KEEP_DAYS
    return services.push_deliveries_purge(older_than_days=older_than_days)


@shared_task(name=deletion.DELETE_TASK, **RETRY)
def repository_delete_task(repository_id: int) -> int:
    """Delete marked repository ``repository_id`` in batches; returns the rows this delivery deleted.

    A delivery works for ``DELETE_TASK_SECONDS`` at most, then queues the next one, which carries on.
    """
    deadline = time.monotonic() + deletion.DELETE_TASK_SECONDS
    deleted = deletion.repository_delete_batches(repository_id=repository_id, deadline=deadline)
    if deletion.repository_deletion_pending(repository_id):
        try:
            task_enqueue(deletion.DELETE_TASK, repository_id)
        except BrokerUnavailable as exc:
            # The repository stays marked and hidden; asking for its deletion again carries it on.
            logger.warning("repository_delete_requeue_failed", repository_id=repository_id, reason=str(exc))
    return sum(deleted.values())


@shared_task(name="repos.deletions_resume", **RETRY)
def deletions_resume_task() -> int:
    """The schedule's pass over repository and project deletions that stopped; returns how many were
    queued again."""
    return sum(len(ids) for ids in deletion.deletions_resume().values())
