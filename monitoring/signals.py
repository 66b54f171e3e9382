"""Celery task metrics (run time and failures by task, last task finished by queue) and the database
pool's gauges, refreshed after every request and every task."""

from __future__ import annotations

import os
import time
from typing import Any

from celery.signals import task_failure, task_postrun, task_prerun, worker_init, worker_process_shutdown
from django.core.signals import request_finished

from monitoring.collectors import database_pools_observe
from monitoring.metrics import CELERY_LAST_TASK_FINISHED, CELERY_TASK_DURATION, CELERY_TASK_FAILURES

_started: dict[str, float] = {}


@task_prerun.connect
def celery_task_started(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@task_postrun.connect
def celery_task_finished(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    started = _started.pop(task_id, None) if task_id else None
    if started is not None and task is not None:
        CELERY_TASK_DURATION.labels(task=task.name).observe(time.perf_counter() - started)
    queue = _queue_of(task)
    if queue:
        CELERY_LAST_TASK_FINISHED.labels(queue=queue).set(time.time())
    database_pools_observe()


def _queue_of(task: Any) -> str:
    """The queue a worker took the task from ("" when run eagerly, in the caller's process)."""
    request = getattr(task, "request", None)
    if request is None or getattr(request, "is_eager", False):
        return ""
    delivery = getattr(request, "delivery_info", None) or {}
    # Celery's queues are direct: the routing key is the queue's name.
    return str(delivery.get("routing_key") or "")


@request_finished.connect
def database_pool_observed(**_: Any) -> None:
    """After each request, this process's pool in the gauges (no query; see monitoring.collectors)."""
    database_pools_observe()


@task_failure.connect
def celery_task_failed(sender: Any = None, **_: Any) -> None:
    CELERY_TASK_FAILURES.labels(task=getattr(sender, "name", "unknown")).inc()


@worker_init.connect
def celery_task_failures_start_at_zero(sender: Any = None, **_: Any) -> None:
    """Export every task's failure counter at 0 when a worker starts.

    A series that appears already at 1 shows no ``increase()``: the first failure would fire no alert.
    """
    app = getattr(sender, "app", None)
    if app is None:
        return
    for name in list(app.tasks):  # the registry as autodiscovered; Celery's own tasks are left out
        if not name.startswith("celery."):
            CELERY_TASK_FAILURES.labels(task=name)


@worker_process_shutdown.connect
def celery_process_gauges_forgotten(pid: int | None = None, **_: Any) -> None:
    """A pool process that exits (replaced, or the worker stopping) leaves the pod's "live" gauges: its
    database pool no longer counts in the pod's sum. gunicorn does the same in gunicorn.conf.py."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Only with the multiprocess directory set: the module reads it when it is imported.
        from prometheus_client import multiprocess  # noqa: PLC0415

        multiprocess.mark_process_dead(pid or os.getpid())
