"""The Celery application, configured from Django settings under the ``CELERY_`` namespace.

Start the workers with ``celery -A config worker -Q celery`` (webhooks, exports, the schedule's passes)
and ``celery -A config worker -Q ingestion`` (ingestion, config/topology.py), or one worker doing both
with ``-Q celery,ingestion``; they read the same environment as the web process
(``CELERY_BROKER_URL``, ``DATABASE_URL``, ``REDIS_URL``).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import setup_logging, worker_init
from django.conf import settings
from django_structlog.celery.steps import DjangoStructLogInitStep

from apm.heartbeat import HeartbeatThread
from config import topology
from config.logging import logging_setup
from config.otel import celery_tracing_connect

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("apm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Workers bind the request id that django-structlog put in the task headers, so a request's log lines
# and those of the tasks it enqueued share one id.
app.steps["worker"].add(DjangoStructLogInitStep)
celery_tracing_connect()  # OpenTelemetry, when the OTEL_* variables ask for it (config/otel.py)


class HeartbeatFileStep(bootsteps.StartStopStep):
    """Touch ``APM_HEARTBEAT_FILE`` from the worker's main process, broker or not (apm/heartbeat.py).

    Started with the pool, before the consumer connects to the broker: a worker that cannot reach its
    broker is alive (it reconnects by itself), and restarting it would mend nothing.
    """

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.thread: HeartbeatThread | None = None

    def start(self, parent: Any) -> None:
        if settings.APM_HEARTBEAT_FILE:
            self.thread = HeartbeatThread(settings.APM_HEARTBEAT_FILE, settings.APM_HEARTBEAT_SECONDS)
            self.thread.start()

    def stop(self, parent: Any) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None


app.steps["worker"].add(HeartbeatFileStep)


@worker_init.connect
def worker_database_pool_size(sender: Any, **_: object) -> None:
    """Size the database pool of the worker's processes by the tasks each runs at once (one per prefork
    process, ``--concurrency`` in a threads or gevent pool), before any of them connects.

    The settings were read before the worker knew its pool; DATABASE_POOL_MAX_SIZE and friends, when
    set, still win (config.topology.pool_sizes).
    """
    pool = sender.pool_cls if isinstance(sender.pool_cls, str) else sender.pool_cls.__module__
    threads = topology.worker_process_threads(pool, int(sender.concurrency or 1))
    os.environ["APM_PROCESS_THREADS"] = str(threads)
    options = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    if isinstance(options, dict):
        options["min_size"], options["max_size"] = topology.pool_sizes(threads)


@setup_logging.connect
def celery_logging_setup(**_: object) -> None:
    """Make workers log through APM's structlog configuration instead of Celery's own."""
    logging_setup(settings.LOGGING)
