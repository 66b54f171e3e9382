"""Queueing Celery tasks by name.

A service that queues work names the task instead of importing it: the task modules call the services,
so the services cannot import them back without a cycle. Task names are stable anyway (queued messages
and the beat schedule's rows carry them), and each one is declared once, as a constant of the service
that queues it, which its task module uses in ``@shared_task(name=...)``.
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from celery.result import AsyncResult


def task_enqueue(name: str, *args: Any, **options: Any) -> AsyncResult:
    """Queue the task registered as ``name`` with ``args`` (``options`` as for ``apply_async``).

    Under eager Celery (the embedded default, the tests) the task runs here and now, as ``delay`` would.
    An unknown name raises ``celery.exceptions.NotRegistered``: a message nobody could run is never sent.
    """
    app = current_app
    if name not in app.tasks:
        # Workers import every app's tasks module when they start; another process (web, a command)
        # imports them the first time it queues something.
        app.loader.import_default_modules()
    return app.tasks[name].apply_async(args=args, **options)
