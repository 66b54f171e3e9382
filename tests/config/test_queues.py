"""Ingestion has a queue of its own: its chunks never reach the default queue's workers, and a webhook or
an export is served while every ingestion worker is busy, or while none runs at all.

Two real ``celery -A config worker`` processes on a real Redis broker, as production runs them: one
consuming the default queue only, one the ingestion queue only (config/topology.py). The worker of the
default queue may not even read the repository (``APM_REPO_ROOTS`` elsewhere): any ingestion step it
took would fail the run.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from celery import current_app

from benchmarks.repogen import history_stream, repository_create
from config import topology
from reports.models import ExportJob
from repos.models import IngestionRun
from repos.services import repository_register
from tests.conftest import require_service
from tests.factories import ProjectFactory
from tests.isolation import broker_flush, celery_client, redis_broker
from tests.processes import (
    ROOT,
    celery_worker_start,
    celery_worker_stop,
    manage,
    wait_for,
    worker_database_env,
)

BROKER = redis_broker()  # keyed under this test process's namespace (tests/isolation.py)

# Every task an ingestion run sends, and tasks that must never wait behind one.
DEFAULT_QUEUE_TASKS = (
    "projects.webhook_deliver",
    "projects.export_run",
    "projects.health_recompute",
    "projects.digests_weekly",
    "repos.ingest_all",
    "repos.ingestion_runs_resume",
    "repos.delete_repository",
    "projects.delete_project",
    "repos.deletions_resume",
    "monitoring.heartbeat",
)


def test_every_ingestion_task_is_routed_to_the_ingestion_queue_and_nothing_else_is():
    router = current_app.amqp.router
    current_app.loader.import_default_modules()
    ingestion = {name for name in current_app.tasks if name.startswith("repos.ingest")} - {
        "repos.ingest_all",
        "repos.ingestion_runs_resume",
    }
    # The five steps of a run, each a registered task: none was renamed away from its route.
    assert ingestion == set(topology.INGESTION_TASKS)
    for name in topology.INGESTION_TASKS:
        assert router.route({}, name)["queue"].name == "ingestion", name
    for name in DEFAULT_QUEUE_TASKS:
        assert name in current_app.tasks, name
        assert router.route({}, name)["queue"].name == "celery", name


def test_renaming_the_default_queue_renames_the_ingestion_queue_with_it():
    assert topology.ingestion_queue_default("celery") == "ingestion"
    assert topology.ingestion_queue_default("apm-staging") == "apm-staging.ingestion"


def test_metrics_report_the_depth_of_the_queues_the_workers_consume():
    shown = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(*s.APM_METRICS_QUEUES)",
        CELERY_TASK_DEFAULT_QUEUE="apm-staging",
    )

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["apm-staging", "apm-staging.ingestion"]


def _within(condition: Callable[[], bool], *, seconds: float) -> bool:
    """Whether ``condition`` holds within ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _waiting(queue: str) -> int:
    client = redis.Redis.from_url(str(BROKER))
    try:
        return int(client.llen(f"{BROKER.keyprefix}{queue}"))
    finally:
        client.close()


@pytest.mark.django_db(transaction=True)
def test_the_default_queue_worker_serves_exports_and_never_an_ingestion_step(tmp_path: Path, settings):
    require_service(BROKER)
    broker_flush(BROKER)
    settings.APM_REPO_ROOTS = [str(tmp_path / "sources")]
    path = repository_create(tmp_path / "sources" / "history", history_stream(commits=600, files=60))
    project = ProjectFactory()
    repository = repository_register(project=project, source=str(path))
    run = IngestionRun.objects.create(repository=repository, trigger="command")
    default_queue = f"apm-queues-{os.getpid()}"
    ingestion_queue = topology.ingestion_queue_default(default_queue)
    base = worker_database_env(home=str(tmp_path), broker=BROKER, queue=default_queue)
    logs = {"default": tmp_path / "worker-default.log", "ingestion": tmp_path / "worker-ingestion.log"}
    default_worker = celery_worker_start(
        queue=default_queue,
        ingestion=False,
        log=logs["default"],
        env={
            **base,
            # This worker cannot read the repository: an ingestion step it took would fail the run.
            "APM_REPO_ROOTS": str(tmp_path / "elsewhere"),
            "APM_WORKSPACE": str(tmp_path / "default-workspace"),
        },
    )
    ingestion_worker = None
    # The producer routes as APM does for this default queue (config.settings: CELERY_TASK_ROUTES).
    client = celery_client("apm-queues-client", BROKER)
    client.conf.task_default_queue = default_queue
    client.conf.task_routes = topology.task_routes(ingestion_queue)

    def export() -> ExportJob:
        job = ExportJob.objects.create(project=project, kind=ExportJob.Kind.TASKS_CSV, filters={})
        client.send_task("projects.export_run", args=[job.pk])
        wait_for(
            lambda: ExportJob.objects.get(pk=job.pk).status == ExportJob.Status.SUCCEEDED,
            timeout=60,
            what=f"export {job.pk} on the default queue's worker",
        )
        return job

    try:
        wait_for(lambda: client.control.ping(timeout=1.0), timeout=60, what="the default queue's worker")
        # No ingestion worker at all: the run waits on its queue, and an export is served regardless.
        client.send_task("repos.ingest", args=[run.pk])
        export()
        assert _waiting(ingestion_queue) == 1
        assert IngestionRun.objects.get(pk=run.pk).status == IngestionRun.Status.QUEUED

        ingestion_worker = celery_worker_start(
            queue=ingestion_queue,
            ingestion=False,
            log=logs["ingestion"],
            env={
                **base,
                "APM_REPO_ROOTS": str(tmp_path / "sources"),
                "APM_WORKSPACE": str(tmp_path / "ingestion-workspace"),
                "APM_INGEST_CHUNK_COMMITS": "10",
                "APM_INGEST_CHUNK_FILES": "5",
            },
        )
        wait_for(
            lambda: IngestionRun.objects.get(pk=run.pk).commits_done > 0,
            timeout=120,
            what="the ingestion worker to write its first chunk",
        )
        # The ingestion worker is busy with the run's chunks: an export does not wait for them.
        export()
        assert IngestionRun.objects.get(pk=run.pk).status == IngestionRun.Status.RUNNING
        ended = _within(
            lambda: IngestionRun.objects.get(pk=run.pk).status != IngestionRun.Status.RUNNING, seconds=600
        )
        state = IngestionRun.objects.values(
            "status", "commits_done", "commits_total", "chunks_done", "error"
        ).get(pk=run.pk)
        # If it does not end, what the workers said shows why.
        assert ended, (state, *(f"{name}: {path.read_text()[-4000:]}" for name, path in logs.items()))
        # What each worker ran, by task name (each answers for itself once idle).
        totals = {
            name: set(stats["total"])
            for name, stats in (client.control.inspect(timeout=5).stats() or {}).items()
        }
    finally:
        for worker in (default_worker, ingestion_worker):
            if worker is not None:
                celery_worker_stop(worker)
                shutil.rmtree(ROOT / "var" / f"test-media-{worker.pid}", ignore_errors=True)
        client.close()
        broker_flush(BROKER)

    run.refresh_from_db()
    assert (run.status, run.error, run.commits_done) == ("succeeded", "", 600)
    assert sorted(totals.values(), key=sorted) == [
        # The exports, and the health recomputation the run's finish queued on the default queue.
        {"projects.export_run", "projects.health_recompute"},
        {"repos.ingest", "repos.ingest_commits_chunk", "repos.ingest_files_chunk", "repos.ingest_finish"},
    ]
    assert not (tmp_path / "default-workspace").exists()
