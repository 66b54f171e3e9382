"""The Celery application, configured from Django settings under the ``CELERY_`` namespace.

Start a worker with ``celery -A config worker -l info``; it reads the same environment as the web
process (``CELERY_BROKER_URL``, ``DATABASE_URL``, ``REDIS_URL``).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import setup_logging
from django.conf import settings
from django_structlog.celery.steps import DjangoStructLogInitStep

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


@setup_logging.connect
def celery_logging_setup(**_: object) -> None:
    """Make workers log through APM's structlog configuration instead of Celery's own."""
    logging_setup(settings.LOGGING)
