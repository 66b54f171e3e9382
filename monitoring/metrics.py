"""APM's own Prometheus metrics, beside django-prometheus' request, database and cache metrics.

Names carry the ``apm_`` prefix; each is updated by the one service that owns the event it counts.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
    "apm_cache_lookups_total", "Lookups through APM's cached selectors, by result.", ["result"]
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
    "Inbound push webhooks, by provider and outcome (queued, ignored, ping, forbidden, invalid).",
    ["provider", "outcome"],
)
API_TOKENS_AUTHENTICATED = Counter(
    "apm_api_token_authentications_total", "API requests authenticated by token, by outcome.", ["outcome"]
)
WEBHOOK_DELIVERIES = Counter(
    "apm_webhook_deliveries_total",
    "Outgoing webhook delivery attempts, by event and outcome (succeeded, retried, failed, refused).",
    ["event", "outcome"],
)
COMMIT_TASK_LINKS = Counter("apm_commit_task_links_total", "Links written from commit messages to tasks.")
COMMIT_REQUESTS = Counter(
    "apm_commit_requests_total",
    "What commit messages asked of tasks (close, transition, time), by outcome (applied, refused, ...).",
    ["outcome"],
)
