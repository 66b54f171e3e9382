"""APM's labelled counters start at 0, so that the first event of each kind shows in increase()/rate()."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from monitoring import metrics
from reports.models import ExportJob
from repos.models import CommitTaskLink, IngestionRun
from tasks.models import Task, TaskEvent
from tests.conftest import require_service
from tests.isolation import redis_broker
from tests.processes import celery_worker_start, celery_worker_stop, manage, wait_for
from tests.repos.test_commands import broker_queue_remove
from webhooks.models import WebhookDelivery, WebhookEvent
from webhooks.services import PING_EVENT

BROKER = redis_broker()  # keyed under this test process's namespace (tests/isolation.py)


def test_metrics_expose_failed_ingestions_at_zero_before_any_failure(tmp_path: Path):
    # A fresh process, as a pod after a restart: nothing has been ingested or failed in it yet.
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.test import Client; "
        "print(Client().get('/metrics', HTTP_HOST='localhost').content.decode())",
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
    )

    assert result.returncode == 0, result.stderr
    assert 'apm_ingestion_runs_total{status="failed"} 0.0' in result.stdout.splitlines()
    assert 'apm_ingestion_runs_total{status="succeeded"} 0.0' in result.stdout.splitlines()


def test_the_label_values_are_the_ones_the_services_pass():
    assert set(metrics.TASK_STATUSES) == set(Task.Status.values)
    assert set(metrics.TASK_EVENT_SOURCES) == set(TaskEvent.Source.values)
    ended = set(IngestionRun.Status.values) - {IngestionRun.Status.QUEUED, IngestionRun.Status.RUNNING}
    assert set(metrics.INGESTION_RUN_OUTCOMES) == ended
    assert set(metrics.WEBHOOK_EVENTS) == {*WebhookEvent.values, PING_EVENT}
    # A delivery left pending for another attempt is counted as retried.
    assert set(metrics.WEBHOOK_DELIVERY_OUTCOMES) == {
        "retried" if status == WebhookDelivery.Status.PENDING else status
        for status in WebhookDelivery.Status.values
    }
    assert set(metrics.COMMIT_REQUEST_OUTCOMES) <= set(CommitTaskLink.Outcome.values)
    assert set(metrics.EXPORT_OUTCOMES) == set(ExportJob.Status.values) - {"queued", "running"}


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("apm_ingestion_runs_total", {"status": "failed"}),
        ("apm_ingestion_runs_total", {"status": "succeeded"}),
        ("apm_task_transitions_total", {"to_status": "cancelled", "source": "system"}),
        ("apm_tasks_created_total", {"source": "batch"}),
        ("apm_cache_lookups_total", {"family": "burndown", "result": "miss"}),
        ("apm_webhooks_received_total", {"provider": "gitea", "outcome": "forbidden"}),
        ("apm_api_token_authentications_total", {"outcome": "refused"}),
        ("apm_webhook_deliveries_total", {"event": "ingestion.failed", "outcome": "failed"}),
        ("apm_commit_requests_total", {"outcome": "refused"}),
    ],
)
def test_every_known_label_value_has_a_series_from_the_start(name: str, labels: dict[str, str]):
    assert REGISTRY.get_sample_value(name, labels) is not None


def test_a_worker_exports_each_task_failure_counter_at_zero_when_it_starts(tmp_path: Path):
    require_service(BROKER)
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    queue = f"apm-metrics-{os.getpid()}"
    # As in the worker pods: the processes write to PROMETHEUS_MULTIPROC_DIR, the metrics container adds up.
    worker = celery_worker_start(
        queue=queue,
        env={
            "HOME": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
            "CELERY_BROKER_URL": BROKER,
            "CELERY_RESULT_BACKEND": BROKER,
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
    )
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))

    def failures(task: str) -> float | None:
        return registry.get_sample_value("apm_celery_task_failures_total", {"task": task})

    try:
        wait_for(lambda: failures("repos.ingest") is not None, timeout=60, what="the worker's metrics")
    finally:
        celery_worker_stop(worker)
        broker_queue_remove(BROKER, queue)

    assert failures("repos.ingest") == 0.0
    assert failures("repos.ingest_finish") == 0.0
    assert failures("celery.chord_unlock") is None
