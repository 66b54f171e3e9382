"""APM project configuration. The Celery app is imported here so ``@shared_task`` binds to it."""

from __future__ import annotations

from .celery_app import app as celery_app

__all__ = ["celery_app"]
