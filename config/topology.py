"""Which process does what: the Celery queues, and how many database connections a process may hold.

Read by the settings before Django is set up, and by the Celery app: nothing here imports Django.

Queues. Ingestion (plan, commit and file chunks, finish, resumption) has a queue of its own,
``CELERY_INGESTION_QUEUE``, and workers of its own: a history of a million commits is hours of chunks,
and a webhook delivery or an export queued behind them would wait as long. Everything else (webhooks,
exports, digests, the schedule's passes, maintenance) stays on the default queue. A development worker
consumes both (``celery -A config worker -Q celery,ingestion``).

Database pool. A thread holds one pooled connection at most, so a process needs as many connections as
it has threads that use the database: a gunicorn process its ``GUNICORN_THREADS`` (gunicorn.conf.py
exports them as ``APM_PROCESS_THREADS`` before Django loads), a Celery pool process one per task it
runs at once plus the ingestion run's heartbeat thread beside each (repos.tasks), a management command
the threads of an eager ingestion plus its own. More connections than threads are never used; fewer
make a thread wait ``DATABASE_POOL_TIMEOUT`` and fail.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_QUEUE = "celery"
INGESTION_QUEUE = "ingestion"

# Every task of an ingestion run, by name (repos.services and repos.tasks declare them). The schedule's
# passes that only queue runs (repos.ingest_all, repos.ingestion_runs_resume) take a moment and stay on
# the default queue, so that they are not held up behind the chunks they are about.
INGESTION_TASKS = (
    "repos.ingest",
    "repos.ingest_resume",
    "repos.ingest_commits_chunk",
    "repos.ingest_files_chunk",
    "repos.ingest_finish",
)


def ingestion_queue_default(default_queue: str) -> str:
    """``ingestion``; or ``<default queue>.ingestion`` when the default queue was renamed.

    Installations sharing a broker keep apart by naming their default queue (CELERY_TASK_DEFAULT_QUEUE):
    their ingestion queues follow, so that one installation's workers never take the other's chunks.
    """
    return INGESTION_QUEUE if default_queue == DEFAULT_QUEUE else f"{default_queue}.{INGESTION_QUEUE}"


def task_routes(ingestion_queue: str) -> dict[str, dict[str, str]]:
    """Celery's ``task_routes``: every ingestion task to ``ingestion_queue``, the rest to the default."""
    return {name: {"queue": ingestion_queue} for name in INGESTION_TASKS}


def result_backend_default(broker_url: str) -> str:
    """Where task results go unless ``CELERY_RESULT_BACKEND`` says: the broker's Redis when the broker is
    Redis (persistent and never evicting, as a broker must be), else the process's memory (eager Celery).

    Never the cache's Redis: it evicts the least recently used keys when full, and an evicted chord
    counter leaves an ingestion run waiting for a finish that never comes.
    """
    if broker_url.startswith(("redis://", "rediss://")):
        return broker_url
    return "cache+memory://"


# Threads of a Celery pool process per task it runs at once: the task's own and the heartbeat thread an
# ingestion step runs beside it (repos.tasks._beating), each with a connection of its own.
CONNECTIONS_PER_TASK = 2


# The variables through which a server says how many threads its process runs, the first set winning.
SERVER_THREADS = ("APM_PROCESS_THREADS", "GUNICORN_THREADS")


def server_threads_known() -> bool:
    """Whether a server (gunicorn, a Celery worker) set this process's thread count."""
    return any(os.environ.get(name, "").strip() for name in SERVER_THREADS)


def process_threads() -> int:
    """How many threads of this process may hold a database connection at once.

    ``APM_PROCESS_THREADS`` when the server set it (gunicorn.conf.py; config.celery_app for a worker's
    pool processes), else ``GUNICORN_THREADS`` (``manage.py check`` in a web pod), else an eager
    ingestion's threads (``APM_INGEST_THREADS``, 0 = one per core) plus the command's own.
    """
    for name in SERVER_THREADS:
        value = os.environ.get(name, "")
        if value.strip():
            return max(1, whole_number(name, value))
    ingest_threads = (
        whole_number("APM_INGEST_THREADS", os.environ.get("APM_INGEST_THREADS", "")) or os.cpu_count() or 1
    )
    return ingest_threads + 1


def whole_number(name: str, value: str) -> int:
    """``value`` of the variable ``name`` as a whole number (empty: 0); a ValueError naming both if not."""
    try:
        return int(value.strip() or 0)
    except ValueError:
        raise ValueError(f"{name} is a whole number, not {value!r}.") from None


def pool_sizes(threads: int, environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """``(min_size, max_size)`` of the pool of a process with ``threads`` threads using the database.

    The most connections such a process uses is one per thread; half of them are kept open while idle.
    ``DATABASE_POOL_MAX_SIZE`` and ``DATABASE_POOL_SIZE`` (the minimum) override them; the guide's
    ``DATABASE_MAX_OVERFLOW``, when set, makes the maximum ``DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW``.
    An explicit minimum above the derived maximum raises the maximum with it, never the other way.
    """

    def number(name: str) -> int | None:
        value = environ.get(name, "").strip()
        return whole_number(name, value) if value else None

    minimum, overflow, maximum = (
        number("DATABASE_POOL_SIZE"),
        number("DATABASE_MAX_OVERFLOW"),
        number("DATABASE_POOL_MAX_SIZE"),
    )
    if maximum is None:
        maximum = (minimum or 1) + overflow if overflow is not None else max(threads, minimum or 0)
    maximum = max(1, maximum)
    minimum = max(1, maximum // 2) if minimum is None else min(minimum, maximum)
    return minimum, maximum


def worker_process_threads(pool: str, concurrency: int) -> int:
    """Threads using the database in one process of a Celery worker's ``pool`` (its name or module).

    prefork (and solo) runs one task per process; threads, gevent and eventlet run ``concurrency`` in
    the one process. Each task may have an ingestion heartbeat thread beside it.
    """
    one_task_per_process = any(name in pool for name in ("prefork", "solo", "processes"))
    return (1 if one_task_per_process else max(1, concurrency)) * CONNECTIONS_PER_TASK


# gunicorn.conf.py's defaults when GUNICORN_WORKERS and GUNICORN_THREADS are not set (tests/config/test_k8s.py
# holds the two files to the same numbers).
WEB_PROCESSES_DEFAULT = 2
WEB_THREADS_DEFAULT = 4


def connections_demand(
    *, web_processes: int, web_threads: int, worker_processes: int, environ: Mapping[str, str] = os.environ
) -> dict[str, int]:
    """The most database connections each kind of process of one installation holds at once.

    ``web_processes`` gunicorn processes of ``web_threads`` threads, ``worker_processes`` Celery pool
    processes (prefork: the ``--concurrency`` of every worker added up) and beat, each pool sized by
    :func:`pool_sizes` as the process itself sizes it. k8s/configmap.yaml adds these up per pod.
    """
    return {
        "web": web_processes * pool_sizes(web_threads, environ)[1],
        "workers": worker_processes * pool_sizes(worker_process_threads("prefork", 1), environ)[1],
        "beat": pool_sizes(1, environ)[1],
    }
