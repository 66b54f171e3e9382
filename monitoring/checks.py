"""Readiness checks: can this process reach what it needs to serve requests?"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.core.cache import cache
from django.db import connections

from monitoring.deadline import call_within, cancelled_after


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    seconds: float
    error: str = ""


def _timed(name: str, probe: Callable[[], object]) -> CheckResult:
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # a readiness probe reports every failure instead of raising it
        return CheckResult(name, False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    return CheckResult(name, True, time.perf_counter() - started)


# How long readiness waits for the database to answer ``SELECT 1``, connection included: under the probe's
# own timeout (3 s in k8s/); libpq counts whole seconds, two at least.
READINESS_DATABASE_SECONDS = 2


def database_probe(*, timeout: int = READINESS_DATABASE_SECONDS) -> None:
    """Raise unless the database answers ``SELECT 1`` within ``timeout`` seconds.

    The query runs in a thread of its own that the probe waits for ``timeout`` seconds at most
    (monitoring.deadline): a database that accepts connections and never answers (PgBouncer queueing
    every query, every backend held) makes the pod unready instead of holding the probe's thread.

    On PostgreSQL, on a connection of its own rather than the pool's: the pool would make the probe wait
    up to ``DATABASE_POOL_TIMEOUT`` (5 s) during an outage, and after one it retries at growing
    intervals, so it would say the database is away for a while after it is back.
    """
    connection = connections["default"]
    if connection.vendor == "postgresql":
        params = connection.get_connection_params()
        call_within(timeout, lambda: _postgresql_select_one(params, timeout), name="readiness-database")
        return
    call_within(timeout, _django_select_one, name="readiness-database")


def _postgresql_select_one(params: dict[str, Any], timeout: int) -> None:
    with psycopg.connect(**params, connect_timeout=timeout) as direct, cancelled_after(timeout, direct):
        direct.execute("SELECT 1").fetchone()


def _django_select_one() -> None:
    # This thread's own connection, closed when done: threads that end leave none behind.
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def cache_probe() -> None:
    # The cache ignores Redis errors on purpose (IGNORE_EXCEPTIONS); readiness asks the client directly
    # where it can, so an outage shows here even though pages keep working without the cache.
    client = getattr(cache, "client", None)
    if client is not None and hasattr(client, "get_client"):
        client.get_client(write=True).ping()
        return
    cache.set("readyz", 1, 5)


def readiness_checks() -> list[CheckResult]:
    """Run every readiness probe and return their results."""
    return [_timed("database", database_probe), _timed("cache", cache_probe)]
