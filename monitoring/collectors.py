"""Figures /metrics asks for when it is scraped: queue depths, the cache's and the broker's reachability,
the beat's last run, and this process's database pool.

Each answer is kept for ``SCRAPE_CACHE_SECONDS`` in the process that asked: several Prometheus servers,
or several web pods' scrapes in a row, cost the broker one round trip in that time, and a broker, a
Redis or a database that hangs costs each scrape one short timeout, never a hung scrape; and one scrape
at a time waits for it, the others are served what is known (``_Memo``).

The queue depths come from the web processes' /metrics (one source, the broker, seen alike by every web
pod: take the ``max`` across pods, not the sum); the workers' metrics server reports what only the
workers know (their tasks' run times, failures and last finished task per queue).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import structlog
from django.conf import settings
from django.db import connections
from django_prometheus.db import metrics as db_metrics
from kombu import Connection
from kombu.exceptions import ChannelError, OperationalError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitoring.checks import cache_probe
from monitoring.deadline import call_within, cancelled_after
from monitoring.metrics import (
    DATABASE_POOL_IN_USE,
    DATABASE_POOL_MAX,
    DATABASE_POOL_SIZE,
    DATABASE_POOL_WAITING,
)

logger = structlog.get_logger(__name__)

SCRAPE_CACHE_SECONDS = 10.0
# The broker's connect and read timeout at scrape time: Prometheus' own scrape timeout is 10 s by
# default, and a healthy broker answers in milliseconds.
BROKER_TIMEOUT_SECONDS = 1.0
# How long a scrape waits for the beat's figure (one indexed query): a database that accepts and never
# answers leaves the figure out of the scrape instead of holding it.
BEAT_TIMEOUT_SECONDS = 1.0


class _Memo:
    """One value per process, recomputed at most every ``SCRAPE_CACHE_SECONDS``.

    One scrape computes it; a scrape that arrives meanwhile is served the previous value (None before
    the first) instead of waiting behind it: a dependency that hangs holds one thread, never every
    scrape's (and with them the threads /healthz needs).
    """

    def __init__(self, compute: Callable[[], Any]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._computing = False
        self._value: Any = None
        self._expires = 0.0

    def get(self) -> Any:
        with self._lock:
            if self._computing or time.monotonic() < self._expires:
                return self._value
            self._computing = True
        try:
            value = self._compute()
        finally:
            with self._lock:
                self._computing = False
        with self._lock:
            self._value = value
            self._expires = time.monotonic() + SCRAPE_CACHE_SECONDS
        return value

    def forget(self) -> None:
        with self._lock:
            self._expires = 0.0


def _broker_is_real() -> bool:
    return not settings.CELERY_TASK_ALWAYS_EAGER and not str(settings.CELERY_BROKER_URL).startswith(
        "memory://"
    )


def queue_depths() -> dict[str, int] | None:
    """Messages waiting in each of ``APM_METRICS_QUEUES``, or None when the broker does not answer.

    Redis: the lengths of the queue's list and of its priority lists (kombu's passive declare adds them
    up); RabbitMQ: the queue's message_count. A queue no worker ever declared holds nothing: 0.
    """
    transport_options = {
        **getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
        # Redis (kombu's redis transport) ...
        "socket_timeout": BROKER_TIMEOUT_SECONDS,
        "socket_connect_timeout": BROKER_TIMEOUT_SECONDS,
    }
    url = str(settings.CELERY_BROKER_URL)
    if url.startswith(("amqp://", "amqps://", "pyamqp://")):
        # ... and RabbitMQ (py-amqp's connection) name their timeouts differently.
        transport_options = {"read_timeout": BROKER_TIMEOUT_SECONDS, "write_timeout": BROKER_TIMEOUT_SECONDS}
    depths: dict[str, int] = {}
    try:
        broker = Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS, transport_options=transport_options)
        with broker as conn:
            conn.ensure_connection(max_retries=0)
            for queue in settings.APM_METRICS_QUEUES:
                depths[queue] = _queue_depth(conn, queue)
    except (OperationalError, OSError, ConnectionError, TimeoutError) as error:
        logger.warning("metrics_broker_unreachable", error=f"{type(error).__name__}: {error}")
        return None
    return depths


def _queue_depth(conn: Connection, queue: str) -> int:
    # A channel per queue: on RabbitMQ a passive declare of a missing queue closes its channel.
    channel: Any = conn.channel()  # kombu's stubs type it as the abstract StdChannel
    try:
        if conn.transport.driver_type == "redis":
            # The LLEN of the queue's list and of its priority lists, added up. Not a passive declare:
            # kombu's existence check ignores a global_keyprefix and calls a prefixed queue missing.
            return int(channel._size(queue))
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except ChannelError:
        return 0
    finally:
        with contextlib.suppress(Exception):  # a channel RabbitMQ already closed
            channel.close()


def cache_up() -> bool:
    """The cache answers a ping within its own socket timeout (the breaker's, CACHE_SOCKET_TIMEOUT)."""
    try:
        cache_probe()
    except Exception:
        return False
    return True


def beat_last_run() -> float | None:
    """Unix time of the newest ``last_run_at`` of the beat's periodic tasks (django-celery-beat), or None
    when the database does not answer within ``BEAT_TIMEOUT_SECONDS`` (the figure is left out)."""
    try:
        return call_within(BEAT_TIMEOUT_SECONDS, _beat_newest_run, name="metrics-beat")
    except Exception as error:
        logger.warning("metrics_beat_unknown", error=f"{type(error).__name__}: {error}")
        return None


def _beat_newest_run() -> float | None:
    from django_celery_beat.models import PeriodicTask  # noqa: PLC0415  (an app model: after start-up)

    newest_first = (
        PeriodicTask.objects.exclude(last_run_at=None)
        .order_by("-last_run_at")
        .values_list("last_run_at", flat=True)
    )
    # In a thread of its own (call_within), so on a connection of its own, closed when done.
    connection = connections["default"]
    if connection.vendor == "postgresql":
        # Not the pool's: a query left waiting past the deadline (PgBouncer ignores the cancel of a query
        # it has not sent yet) must not hold one of the pool's connections, which the requests need.
        sql, params = newest_first[:1].query.sql_with_params()
        with (
            psycopg.connect(**connection.get_connection_params(), connect_timeout=2) as direct,
            cancelled_after(BEAT_TIMEOUT_SECONDS, direct),
        ):
            row = direct.execute(sql, params).fetchone()
        newest = row[0] if row is not None else None
    else:
        try:
            newest = newest_first.first()
        finally:
            connection.close()
    return newest.timestamp() if newest is not None else None


def database_pools_observe() -> None:
    """Copy this process's pool statistics into the pool gauges (no query: psycopg_pool's counters)."""
    for alias in connections:
        # The pools Django has opened, not ``connection.pool``: that property opens one, and a process that
        # never needed the database (a worker answering heartbeats, the scrape itself) would then hold
        # DATABASE_POOL_SIZE connections for nothing.
        pool = getattr(connections[alias], "_connection_pools", {}).get(alias)
        if pool is None:
            continue
        stats = pool.get_stats()
        size = stats.get("pool_size", 0)
        DATABASE_POOL_SIZE.labels(alias=alias).set(size)
        DATABASE_POOL_MAX.labels(alias=alias).set(stats.get("pool_max", 0))
        DATABASE_POOL_IN_USE.labels(alias=alias).set(max(size - stats.get("pool_available", 0), 0))
        DATABASE_POOL_WAITING.labels(alias=alias).set(stats.get("requests_waiting", 0))


_queue_depths = _Memo(queue_depths)
_cache_up = _Memo(cache_up)
_beat_last_run = _Memo(beat_last_run)


def scrape_caches_forget() -> None:
    """Ask everything again at the next scrape (tests, after changing what they measure)."""
    for memo in (_queue_depths, _cache_up, _beat_last_run):
        memo.forget()


class ScrapeCollector(Collector):
    """The figures asked for at scrape time, as Prometheus gauges."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if _broker_is_real():
            depths = _queue_depths.get()
            up = GaugeMetricFamily(
                "apm_celery_broker_up", "Whether the Celery broker answered at this scrape (1) or not."
            )
            up.add_metric([], 1.0 if depths is not None else 0.0)
            yield up
            if depths is not None:
                depth = GaugeMetricFamily(
                    "apm_celery_queue_depth",
                    "Messages waiting in a Celery queue (the broker's count, priority lists included).",
                    labels=["queue"],
                )
                for queue, count in sorted(depths.items()):
                    depth.add_metric([queue], float(count))
                yield depth
        cache = GaugeMetricFamily(
            "apm_cache_up", "Whether the cache (Redis) answered a ping within its socket timeout (1) or not."
        )
        cache.add_metric([], 1.0 if _cache_up.get() else 0.0)
        yield cache
        last_run = _beat_last_run.get()
        if last_run is not None:
            beat = GaugeMetricFamily(
                "apm_beat_last_run_timestamp_seconds",
                "Unix time the beat last sent a periodic task (django-celery-beat's newest last_run_at).",
            )
            beat.add_metric([], last_run)
            yield beat


def database_error_series_start_at_zero() -> None:
    """Export django-prometheus' connection and error counters at 0 for every database, as APM's own
    labelled counters are (monitoring.metrics): the first failure must show in ``rate()`` and fire
    DatabaseConnectionErrors/DatabaseOperationalErrors, which a series appearing at 1 would not."""
    for alias in connections:
        vendor = connections[alias].vendor
        db_metrics.connection_errors_total.labels(alias, vendor)
        for error in ("OperationalError", "InterfaceError"):
            db_metrics.errors_total.labels(alias, vendor, error)
