"""APM's own Prometheus metrics, beside django-prometheus' request, database and cache metrics.

Names carry the ``apm_`` prefix; each is updated by the one service that owns the event it counts.

A labelled counter has no series until its first increment, and ``increase()``/``rate()`` cannot see a
series that appears already at 1: the first failed ingestion would never fire an alert. Every label
value known in advance is therefore exported at 0 from the start (the end of this module). The values
are spelled here, not read from the models, because every app imports this module; the tests check
them against the models' choices.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

# Label values, as the services pass them.
TASK_STATUSES = ("backlog", "todo", "in_progress", "in_review", "done", "cancelled")  # Task.Status
TASK_EVENT_SOURCES = ("admin", "api", "commit", "batch", "system")  # TaskEvent.Source
# How a lookup through apm.cache.cached was answered: a fresh entry (hit), a computation (miss), an entry
# past its freshness served while another reader recomputes it (stale), another reader's computation
# waited for (waited). Each lookup counts once: the four add up to the lookups.
CACHE_RESULTS = ("hit", "miss", "stale", "waited")
# The cached selectors' families (insights.selectors): a series of each result each from the start.
CACHE_FAMILIES = (
    "summary",
    "portfolio",
    "progress",
    "health",
    "priorities",
    "burndown",
    "hotspots",
    "coupling",
    "contributors",
    # The pages' figures and their rendered fragments (insights.selectors, insights.panels).
    "charts",
    "commits",
    "languages",
    "repository",
    "fragment",
)
INGESTION_RUN_OUTCOMES = ("succeeded", "failed")  # the IngestionRun.Status a run ends in
WEBHOOK_PROVIDERS = ("github", "gitlab", "gitea")
WEBHOOK_RECEIVED_OUTCOMES = ("queued", "ignored", "ping", "forbidden", "invalid", "replayed")
API_TOKEN_OUTCOMES = ("accepted", "refused")
# WebhookEvent and the ping sent on request.
WEBHOOK_EVENTS = (
    "task.created",
    "task.status_changed",
    "ingestion.finished",
    "ingestion.failed",
    "project.health_changed",
    "ping",
)
WEBHOOK_DELIVERY_OUTCOMES = ("succeeded", "retried", "failed")
# CommitTaskLink.Outcome a request (close, transition, time) ends in.
COMMIT_REQUEST_OUTCOMES = ("applied", "unchanged", "refused", "disabled")

TASK_TRANSITIONS = Counter(
    "apm_task_transitions_total",
    "Task status changes, by new status and by what caused them.",
    ["to_status", "source"],
)
TASKS_CREATED = Counter("apm_tasks_created_total", "Tasks created, by source.", ["source"])
CELERY_TASK_DURATION = Histogram(
    "apm_celery_task_duration_seconds",
    "Run time of APM's Celery tasks.",
    ["task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
)
CELERY_TASK_FAILURES = Counter("apm_celery_task_failures_total", "Celery tasks that raised.", ["task"])
CACHE_LOOKUPS = Counter(
    "apm_cache_lookups_total",
    "Lookups through APM's cached selectors, by family of figure and result (hit, miss, stale, waited).",
    ["family", "result"],
)
CACHE_BREAKER_OPENED = Counter(
    "apm_cache_breaker_opened_total",
    "Times a process found the cache not answering (refused or timed out) and left it alone for a while.",
)
INGESTION_RUNS = Counter("apm_ingestion_runs_total", "Ingestion runs that ended, by outcome.", ["status"])
INGESTED_COMMITS = Counter("apm_ingested_commits_total", "Commits written by ingestion.")
INGESTION_DURATION = Histogram(
    "apm_ingestion_duration_seconds",
    "Wall time of successful ingestion runs, from start to finish.",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
)
WEBHOOKS_RECEIVED = Counter(
    "apm_webhooks_received_total",
    "Inbound push webhooks, by provider and outcome (queued, ignored, ping, forbidden, invalid, replayed).",
    ["provider", "outcome"],
)
API_TOKENS_AUTHENTICATED = Counter(
    "apm_api_token_authentications_total", "API requests authenticated by token, by outcome.", ["outcome"]
)
WEBHOOK_DELIVERIES = Counter(
    "apm_webhook_deliveries_total",
    "Outgoing webhook delivery attempts, by event and outcome (succeeded, retried, failed).",
    ["event", "outcome"],
)
EXPORT_OUTCOMES = ("succeeded", "failed")  # the ExportJob.Status an export ends in
EXPORTS = Counter("apm_exports_total", "Export jobs that ended, by outcome (succeeded, failed).", ["status"])
COMMIT_TASK_LINKS = Counter("apm_commit_task_links_total", "Links written from commit messages to tasks.")
COMMIT_REQUESTS = Counter(
    "apm_commit_requests_total",
    "What commit messages asked of tasks (close, transition, time), by outcome (applied, refused, ...).",
    ["outcome"],
)

# The database pool of each process (psycopg_pool's get_stats(), read after every request and task and at
# each scrape: no query). Under gunicorn or a prefork worker each process has a pool of its own:
# "livesum" adds up the processes still running, so a pod reports its connections in all.
DATABASE_POOL_SIZE = Gauge(
    "apm_db_pool_size",
    "Connections the database pool holds (open, in use or idle), by database alias.",
    ["alias"],
    multiprocess_mode="livesum",
)
DATABASE_POOL_MAX = Gauge(
    "apm_db_pool_max_size",
    "Most connections the database pool may open (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW).",
    ["alias"],
    multiprocess_mode="livesum",
)
DATABASE_POOL_IN_USE = Gauge(
    "apm_db_pool_connections_in_use",
    "Connections checked out of the database pool, by database alias.",
    ["alias"],
    multiprocess_mode="livesum",
)
DATABASE_POOL_WAITING = Gauge(
    "apm_db_pool_requests_waiting",
    "Requests waiting for a connection from the database pool (the pool is exhausted).",
    ["alias"],
    multiprocess_mode="livesum",
)
# When a worker last finished a task taken from each queue: the newest of the pod's processes ("max",
# which keeps an exited process's value: a timestamp stays true after its process is gone).
CELERY_LAST_TASK_FINISHED = Gauge(
    "apm_celery_last_task_finished_timestamp_seconds",
    "Unix time a worker last finished a task (succeeded or failed) taken from this queue.",
    ["queue"],
    multiprocess_mode="max",
)


def _series_start_at_zero(counter: Counter, **values: Iterable[str]) -> None:
    """Create ``counter``'s series for every combination of the given label values (each at 0)."""
    names = list(values)
    for combination in itertools.product(*values.values()):
        counter.labels(**dict(zip(names, combination, strict=True)))


_series_start_at_zero(TASK_TRANSITIONS, to_status=TASK_STATUSES, source=TASK_EVENT_SOURCES)
_series_start_at_zero(TASKS_CREATED, source=TASK_EVENT_SOURCES)
_series_start_at_zero(CACHE_LOOKUPS, family=CACHE_FAMILIES, result=CACHE_RESULTS)
_series_start_at_zero(INGESTION_RUNS, status=INGESTION_RUN_OUTCOMES)
_series_start_at_zero(WEBHOOKS_RECEIVED, provider=WEBHOOK_PROVIDERS, outcome=WEBHOOK_RECEIVED_OUTCOMES)
_series_start_at_zero(API_TOKENS_AUTHENTICATED, outcome=API_TOKEN_OUTCOMES)
_series_start_at_zero(WEBHOOK_DELIVERIES, event=WEBHOOK_EVENTS, outcome=WEBHOOK_DELIVERY_OUTCOMES)
_series_start_at_zero(COMMIT_REQUESTS, outcome=COMMIT_REQUEST_OUTCOMES)
_series_start_at_zero(EXPORTS, status=EXPORT_OUTCOMES)
# apm_celery_task_failures_total is labelled by task name: the worker creates those series when it
# starts, from the tasks it knows (monitoring.signals).

# Read replicas (apm.replicas; docs/operations.md, "Read replicas"). Each process checks its replica at
# most every DATABASE_REPLICA_CHECK_SECONDS: the newest figure of the live processes ("livemax").
DATABASE_REPLICA_LAG = Gauge(
    "apm_db_replica_lag_seconds",
    "How far the read replica was behind the primary at this process's last check (-1: unknown).",
    multiprocess_mode="livemax",
)
DATABASE_REPLICA_USABLE = Gauge(
    "apm_db_replica_usable",
    "Whether the read replica answered the last check within DATABASE_REPLICA_MAX_LAG (1) or not, or "
    "no replica is configured (0).",
    multiprocess_mode="livemin",
)
DATABASE_REPLICA_FALLBACKS = Counter(
    "apm_db_replica_fallbacks_total",
    "Reads that would have gone to the replica and went to the primary, by reason (down, lagging, "
    "failed mid-read, cancelled by the replica, pinned after the user's own write, unknown before the "
    "first check).",
    ["reason"],
)
REPLICA_FALLBACK_REASONS = ("down", "lagging", "failed", "pinned", "unknown")
_series_start_at_zero(DATABASE_REPLICA_FALLBACKS, reason=REPLICA_FALLBACK_REASONS)
