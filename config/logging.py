"""Structured logging: JSON lines in production, readable console output in development.

Standard-library loggers (Django, Celery, psycopg) and structlog loggers go through the same
``ProcessorFormatter``, so every line carries the same fields, including the ``request_id`` that
django-structlog binds per request and hands on to the Celery tasks the request enqueues.
"""

from __future__ import annotations

import logging.config
from typing import Any

import structlog

_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.PositionalArgumentsFormatter(),
    structlog.processors.StackInfoRenderer(),
]


def logging_config(*, level: str, json: bool) -> dict[str, Any]:
    """Return the ``LOGGING`` dict and configure structlog to render through it."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    # In JSON an exception becomes an "exception" field with its type, message and frames, for structlog's
    # lines and for the standard library's alike: Django's "Internal Server Error" records come through
    # the foreign chain with exc_info, which the JSON renderer alone would print as three reprs. The
    # console renderer prints tracebacks itself. Without the frames' local variables: they may hold a
    # password, a token or a request's body, and logs are read by more people than the database.
    exceptions: list[Any] = (
        [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        ]
        if json
        else []
    )
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            *(exceptions or [structlog.processors.UnicodeDecoder()]),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        context_class=dict,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    renderer,
                ],
                "foreign_pre_chain": [*_SHARED_PROCESSORS, *exceptions],
            },
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structured"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO", "propagate": True},
            # "Task ... succeeded in 0.06s" for every task: in a worker django-structlog already logs each
            # task's outcome with its request id (task_succeeded, task_failed), and under eager Celery
            # (the embedded default) one ingestion would print a line per chunk. Failures still show.
            "celery.app.trace": {"level": "WARNING", "propagate": True},
            "django_structlog": {"level": level, "propagate": True},
            # django-dbbackup logs each pg_dump/mysqldump command line at DEBUG: noise on every
            # `manage.py backup`, and a command line is no place to read an operator's log from.
            "dbbackup": {"level": "INFO", "propagate": True},
        },
    }


def logging_setup(config: dict[str, Any]) -> None:
    """Apply a ``LOGGING`` dict outside Django's own start-up (Celery workers use it)."""
    logging.config.dictConfig(config)
